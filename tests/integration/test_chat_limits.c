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
        cr_assert_eq(cc_connect_raw(&c[2], chat_server_port(cs)), 0);
        expect_eof(&c[2]);
        close_all(c, 3);
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
