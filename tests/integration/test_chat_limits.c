/*
 * tern-chat's limits and life: idle clients, --max-conns, shutdown, and
 * 1,000 clients in one room. Every test tears down to zero live objects
 * (chat_client.h).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "chat_client.h"

/* ---- idle, limits, shutdown ---- */

Test(chat_limits, idle_clients_are_told_and_closed)
{
        enum { ROUNDS = 14 };
        struct chat_opts o;
        chat_opts_init(&o);
        o.workers = 4;
        o.idle_timeout_ms = 1500;
        struct chat_server *cs = start_with(&o);
        struct cc c[2];
        open_all(c, 2, chat_server_port(cs));
        /* c[1] talks every 150 ms, ten times inside the limit; c[0] only
         * listens, and listening is not activity. */
        for (int k = 0; k < ROUNDS; k++) {
                usleep(150 * 1000);
                send_str(&c[1], "still here\r\n");
        }
        char said[128], left[128], line[CC_LINE_MAX];
        snprintf(said, sizeof(said), "[#lobby] %s: still here", c[1].nick);
        snprintf(left, sizeof(left), "* %s left #lobby", c[0].nick);
        int heard = 0;
        for (;;) {
                cr_assert_geq(cc_line(&c[0], line, sizeof(line), 10000), 0);
                if (strcmp(line, "* idle timeout") == 0)
                        break;
                cr_assert_str_eq(line, said);
                heard++;
        }
        cr_assert_gt(heard, 0, "c[0] heard nothing before timing out");
        expect_eof(&c[0]);
        int echoes = 0;
        bool saw_left = false;
        while (echoes < ROUNDS) {
                cr_assert_geq(cc_line(&c[1], line, sizeof(line), 10000), 0);
                echoes += strcmp(line, said) == 0;
                saw_left |= strcmp(line, left) == 0;
                cr_assert_str_neq(line, "* idle timeout", "an active client timed out");
        }
        if (!saw_left)
                cc_expect(&c[1], left);
        close_all(c, 2);
        stop(cs);
}

Test(chat_limits, max_conns_turns_extra_clients_away)
{
        struct chat_opts o;
        chat_opts_init(&o);
        o.workers = 2;
        o.max_conns = 2;
        struct chat_server *cs = start_with(&o);
        struct cc c[3];
        open_all(c, 2, chat_server_port(cs));
        /* Over the limit: told why, then closed, and nobody saw it join. */
        for (int k = 1; k <= 3; k++) {
                cr_assert_eq(cc_connect_raw(&c[2], chat_server_port(cs)), 0);
                cc_expect(&c[2], "! server full");
                expect_eof(&c[2]);
                cc_close(&c[2]);
                cr_assert_eq(chat_server_refused(cs), (uint64_t)k);
        }
        /* --check reports a full server as not healthy, and says why. */
        char target[32], err[256];
        snprintf(target, sizeof(target), "127.0.0.1:%u", chat_server_port(cs));
        cr_assert_eq(chat_check(target, 2000, err, sizeof(err)), -EPROTO, "%s", err);
        cr_assert(strstr(err, "'! server full'"), "%s", err);
        /* A slot freed is a slot to take. */
        cc_close(&c[1]);
        cc_expectf(&c[0], "* %s left #lobby", c[1].nick);
        int r;
        int64_t deadline = cc_now_ms() + 5000;
        /* The leave notice comes before on_close frees the slot: retry. */
        while ((r = cc_open(&c[1], chat_server_port(cs))) != 0 && cc_now_ms() < deadline) {
                cc_close(&c[1]);
                usleep(10 * 1000);
        }
        cr_assert_eq(r, 0, "a freed slot was not given out: %s", strerror(-r));
        cc_expectf(&c[0], "* %s joined #lobby", c[1].nick);
        close_all(c, 3);
        stop(cs);
}

/* ---- flood control ---- */

enum { FLOOD_RATE = 10, FLOOD_BURST = 20 };

static struct chat_server *start_flood(void)
{
        struct chat_opts o;
        chat_opts_init(&o);
        o.workers = 2;
        o.flood_rate = FLOOD_RATE;
        o.flood_burst = FLOOD_BURST;
        return start_with(&o);
}

/* @n lines "PREFIXk" in one write, as a paste or a script would. */
static void send_burst(struct cc *c, const char *prefix, int n)
{
        size_t cap = (size_t)n * 32, off = 0;
        char *buf = malloc(cap);
        for (int k = 0; k < n; k++)
                off += (size_t)snprintf(buf + off, cap - off, "%s%d\r\n", prefix, k);
        cr_assert_eq(cc_send(c, buf, off), 0);
        free(buf);
}

/* The most lines a bucket of FLOOD_BURST refilled at FLOOD_RATE can let
 * through in @ms (one more for the refill that may land on the boundary). */
static long flood_allowance(int64_t ms)
{
        return FLOOD_BURST + (long)(FLOOD_RATE * ms / 1000) + 1;
}

Test(chat_limits, a_burst_is_cut_to_the_bucket_with_one_notice)
{
        struct chat_server *cs = start_flood();
        struct cc c[2];
        open_all(c, 2, chat_server_port(cs));
        char prefix[80], want[128], line[CC_LINE_MAX];
        snprintf(prefix, sizeof(prefix), "[#lobby] %s: ", c[0].nick);

        int64_t t0 = cc_now_ms();
        send_burst(&c[0], "a", 30);
        usleep(300 * 1000);
        send_str(&c[0], "after the pause\r\n");
        snprintf(want, sizeof(want), "%safter the pause", prefix);
        int echoes = 0, notices = 0, r;
        char seen[30][128];
        while ((r = cc_line(&c[0], line, sizeof(line), 10000)) >= 0 && strcmp(line, want) != 0) {
                if (strcmp(line, "! slow down") == 0)
                        notices++;
                else if (strncmp(line, prefix, strlen(prefix)) == 0 && echoes < 30)
                        snprintf(seen[echoes++], sizeof(seen[0]), "%.127s", line);
                else
                        cr_assert_fail("unexpected line \"%s\"", line);
        }
        cr_assert_geq(r, 0, "no \"%s\": %s", want, strerror(-r));
        int64_t elapsed = cc_now_ms() - t0;
        cr_assert_eq(notices, 1, "%d \"! slow down\" for one burst", notices);
        cr_assert_geq(echoes, FLOOD_BURST, "only %d of a full bucket got through", echoes);
        cr_assert_leq(echoes, flood_allowance(elapsed), "%d lines through in %lld ms", echoes,
                      (long long)elapsed);
        cr_assert_lt(echoes, 30, "nothing was cut");
        /* The member saw exactly what the sender's echoes say. */
        for (int k = 0; k < echoes; k++) /* the same lines, whichever got through */
                cc_expect(&c[1], seen[k]);
        cc_expect(&c[1], want);

        /* A line let through ends the burst: the next one is told again. */
        send_burst(&c[0], "b", 30);
        cr_assert_geq(cc_skip_to(&c[0], "! slow down", 10000), 0);
        cr_assert_gt(chat_server_flood_dropped(cs), 0);
        cr_assert_eq(chat_server_flood_kicked(cs), 0);
        close_all(c, 2);
        stop(cs);
}

Test(chat_limits, a_flooder_is_held_to_the_rate_then_disconnected)
{
        struct chat_server *cs = start_flood();
        struct cc c[2];
        open_all(c, 2, chat_server_port(cs));
        char prefix[80], left[128], line[CC_LINE_MAX];
        snprintf(prefix, sizeof(prefix), "[#lobby] %s: ", c[0].nick);
        snprintf(left, sizeof(left), "* %s left #lobby", c[0].nick);

        int64_t t0 = cc_now_ms();
        send_burst(&c[0], "x", 300);
        /* The member gets at most what the bucket allows, then the leave. */
        int got = 0, r;
        while ((r = cc_line(&c[1], line, sizeof(line), 10000)) >= 0 && strcmp(line, left) != 0) {
                cr_assert_eq(strncmp(line, prefix, strlen(prefix)), 0, "unexpected \"%s\"", line);
                got++;
        }
        cr_assert_geq(r, 0, "the flooder never left: %s", strerror(-r));
        int64_t elapsed = cc_now_ms() - t0;
        cr_assert_geq(got, FLOOD_BURST);
        cr_assert_leq(got, flood_allowance(elapsed), "%d of 300 lines through in %lld ms", got,
                      (long long)elapsed);

        /* The flooder was told once, then shown the door. */
        int notices = 0;
        while ((r = cc_line(&c[0], line, sizeof(line), 10000)) >= 0 &&
               strcmp(line, "* disconnected: flooding") != 0)
                notices += strcmp(line, "! slow down") == 0;
        cr_assert_geq(r, 0, "no disconnect notice: %s", strerror(-r));
        cr_assert_eq(notices, 1);
        expect_eof(&c[0]);
        cr_assert_eq(chat_server_flood_kicked(cs), 1);
        cr_assert_geq(chat_server_flood_dropped(cs),
                      (uint64_t)FLOOD_BURST * CHAT_FLOOD_KICK_BURSTS);
        close_all(c, 2);
        stop(cs);
}

Test(chat_limits, flood_control_off_lets_everything_through)
{
        struct chat_opts o;
        chat_opts_init(&o);
        o.workers = 2;
        o.flood_rate = 0;
        struct chat_server *cs = start_with(&o);
        struct cc c[2];
        open_all(c, 2, chat_server_port(cs));
        send_burst(&c[0], "y", 300);
        for (int k = 0; k < 300; k++)
                cc_expectf(&c[1], "[#lobby] %s: y%d", c[0].nick, k);
        cr_assert_eq(chat_server_flood_dropped(cs), 0);
        close_all(c, 2);
        stop(cs);
}

Test(chat_limits, shutdown_tells_every_client)
{
        struct chat_server *cs = start(4);
        struct cc c[6];
        open_all(c, 6, chat_server_port(cs));
        chat_server_stop(cs);
        /* The goodbye is the next line: nobody is told of the others
         * leaving while everybody leaves. */
        for (int i = 0; i < 6; i++) {
                cc_expect(&c[i], "* server shutting down");
                expect_eof(&c[i]);
        }
        close_all(c, 6);
        stop(cs);
}

/* ---- 1,000 clients ---- */

struct thousand {
        int n;
        int *joins; /* others' joins each client saw */
        int *hello;
        const char *hello_line;
        int complete;
        char err[256];
};

static int thousand_line(int i, const char *line, size_t len, void *arg)
{
        struct thousand *t = arg;
        if (strncmp(line, "* ", 2) == 0 && len > 14 &&
            strcmp(line + len - 14, " joined #lobby") == 0) {
                t->joins[i]++;
        } else if (strcmp(line, t->hello_line) == 0) {
                if (t->hello[i]++) {
                        snprintf(t->err, sizeof(t->err), "client %d: hello twice", i);
                        return -EPROTO;
                }
                /* Joins of later clients all came before: they happened
                 * before the hello was sent. */
                if (t->joins[i] != t->n - 1 - i) {
                        snprintf(t->err, sizeof(t->err), "client %d saw %d joins, expected %d", i,
                                 t->joins[i], t->n - 1 - i);
                        return -EPROTO;
                }
                t->complete++;
        } else {
                snprintf(t->err, sizeof(t->err), "client %d: unexpected %s", i, line);
                return -EPROTO;
        }
        return 0;
}

static bool thousand_done(void *arg)
{
        struct thousand *t = arg;
        return t->complete == t->n;
}

Test(chat_limits, a_thousand_clients)
{
        enum { N = 1000 };
        struct rlimit rl;
        cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < 2 * N + 64)
                cr_skip_test("needs %d descriptors, the hard limit is %lu", 2 * N + 64,
                             (unsigned long)rl.rlim_cur);

        int64_t t0 = cc_now_ms();
        struct chat_server *cs = start(4);
        struct cc *c = calloc(N, sizeof(*c));
        for (int i = 0; i < N; i++)
                cr_assert_eq(cc_open(&c[i], chat_server_port(cs)), 0, "client %d", i);
        int64_t t1 = cc_now_ms();

        struct thousand t = {N, calloc(N, sizeof(int)), calloc(N, sizeof(int)), NULL, 0, ""};
        char hello[128];
        snprintf(hello, sizeof(hello), "[#lobby] %s: hello, all", c[0].nick);
        t.hello_line = hello;
        send_str(&c[0], "hello, all\r\n");
        int r = cc_pump(c, N, thousand_line, thousand_done, &t, 60000);
        cr_assert_eq(r, 0, "%s %s", strerror(-r), t.err);
        int64_t t2 = cc_now_ms();

        send_str(&c[N - 1], "/rooms\r\n/who\r\n");
        cc_expect(&c[N - 1], "* rooms: #lobby(1000)");
        char *who = malloc(CC_LINE_MAX * 4);
        cr_assert_geq(cc_line(&c[N - 1], who, CC_LINE_MAX * 4, 10000), 0);
        int names = 0;
        for (char *p = who; (p = strchr(p, ' ')); p++)
                names++;
        cr_assert_eq(names, 3 + N, "%.80s...", who); /* "* members of #lobby:" has 3 */
        free(who);

        stop(cs);
        int64_t t3 = cc_now_ms();
        close_all(c, N);
        cr_log_info("1000 clients: connect+welcome %lld ms, one message to all %lld ms, "
                    "shutdown %lld ms, whole test %lld ms",
                    (long long)(t1 - t0), (long long)(t2 - t1), (long long)(t3 - t2),
                    (long long)(cc_now_ms() - t0));
        free(t.joins);
        free(t.hello);
        free(c);
}
