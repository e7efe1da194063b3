/*
 * tern-bench chat mode's delivery verifier: crafted per-sender streams must be
 * classified as a faulty server would produce them (a drop, a duplicate, a
 * reordered pair, a lost tail) and a clean stream must show no error.
 *
 * Like test_hist.c, the verifier's source is compiled straight into this test:
 * tools/bench is not part of libtern and may not even be configured.
 */
#include "../../../tools/bench/bench_chat.c"
#include "../../../tools/bench/bench_hist.c"
#include "../../../tools/bench/bench_sys.c"

#include <criterion/criterion.h>

/* Feeds @n sequence numbers, then ends the stream with @sent sent. */
static struct bench_chat_verdict feed(const uint64_t *seqs, size_t n, uint64_t sent)
{
        struct bench_chat_stream s = {0};
        struct bench_chat_verdict v = {0};

        for (size_t i = 0; i < n; i++)
                bench_chat_stream_observe(&s, seqs[i], &v);
        bench_chat_stream_finish(&s, sent, &v);
        cr_assert_null(s.gaps, "finish must free the gap list");
        return v;
}

Test(chat_verify, clean_stream_has_no_errors)
{
        uint64_t seqs[100];

        for (size_t i = 0; i < 100; i++)
                seqs[i] = i;
        struct bench_chat_verdict v = feed(seqs, 100, 100);

        cr_assert_eq(v.in_order, 100);
        cr_assert_eq(bench_chat_verdict_errors(&v), 0);
}

Test(chat_verify, dropped_message_is_counted_once)
{
        static const uint64_t seqs[] = {0, 1, 3, 4};
        struct bench_chat_verdict v = feed(seqs, 4, 5);

        cr_assert_eq(v.dropped, 1);
        cr_assert_eq(v.missing, 0);
        cr_assert_eq(v.reordered, 0);
        cr_assert_eq(v.duplicate, 0);
        cr_assert_eq(bench_chat_verdict_errors(&v), 1);
}

Test(chat_verify, reordered_pair_is_late_not_dropped)
{
        static const uint64_t seqs[] = {0, 2, 1, 3};
        struct bench_chat_stream s = {0};
        struct bench_chat_verdict v = {0};

        cr_assert_eq(bench_chat_stream_observe(&s, 0, &v), BENCH_CHAT_IN_ORDER);
        cr_assert_eq(bench_chat_stream_observe(&s, 2, &v), BENCH_CHAT_SKIP);
        cr_assert_eq(bench_chat_stream_observe(&s, 1, &v), BENCH_CHAT_LATE);
        cr_assert_eq(bench_chat_stream_observe(&s, 3, &v), BENCH_CHAT_IN_ORDER);
        bench_chat_stream_finish(&s, 4, &v);
        cr_assert_eq(v.reordered, 1);
        cr_assert_eq(v.dropped, 0);
        cr_assert_eq(v.duplicate, 0);
        cr_assert_eq(v.missing, 0);

        struct bench_chat_verdict w = feed(seqs, 4, 4);
        cr_assert_eq(w.reordered, v.reordered);
        cr_assert_eq(bench_chat_verdict_errors(&w), 1);
}

Test(chat_verify, duplicate_is_not_reordered)
{
        static const uint64_t seqs[] = {0, 1, 1, 2, 0};
        struct bench_chat_verdict v = feed(seqs, 5, 3);

        cr_assert_eq(v.duplicate, 2);
        cr_assert_eq(v.reordered, 0);
        cr_assert_eq(v.dropped, 0);
        cr_assert_eq(v.in_order, 3);
}

Test(chat_verify, late_then_repeated_is_late_then_duplicate)
{
        static const uint64_t seqs[] = {0, 2, 1, 1};
        struct bench_chat_verdict v = feed(seqs, 4, 3);

        cr_assert_eq(v.reordered, 1);
        cr_assert_eq(v.duplicate, 1);
        cr_assert_eq(v.dropped, 0);
}

Test(chat_verify, undelivered_tail_is_missing)
{
        static const uint64_t seqs[] = {0, 1, 2};
        struct bench_chat_verdict v = feed(seqs, 3, 6);

        cr_assert_eq(v.missing, 3);
        cr_assert_eq(v.dropped, 0);
        cr_assert_eq(bench_chat_verdict_errors(&v), 3);

        struct bench_chat_verdict none = feed(NULL, 0, 2);
        cr_assert_eq(none.missing, 2);
}

Test(chat_verify, gaps_beyond_the_tracked_limit_still_count)
{
        uint64_t far = BENCH_CHAT_MAX_GAPS + 10;
        uint64_t seqs[] = {far};
        struct bench_chat_verdict v = feed(seqs, 1, far + 1);

        cr_assert_eq(v.dropped + v.untracked, far);
        cr_assert_eq(v.untracked, 10);
}

/* ---- end to end: chat mode against small fake chat servers --------------- */

#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

#define FAKE_MAX 8

/*
 * A chat server thread for up to @nmax clients, the protocol left to two
 * hooks: @greet when a client is accepted, @input when bytes arrived in
 * in[i] (it consumes what it can). With @slow_accept it accepts one client
 * per 30 ms while serving those it has, so clients are connected (in the
 * backlog) well before the server has them, and what the first ones say
 * does not reach the later ones.
 */
struct fake {
        int lfd;
        unsigned port;
        atomic_bool stop;
        pthread_t tid;
        int nmax;
        bool slow_accept;
        void (*greet)(struct fake *f, int i);
        void (*input)(struct fake *f, int i);
        int fd[FAKE_MAX];
        char in[FAKE_MAX][1024];
        size_t inlen[FAKE_MAX];
        char held[256]; /* faulty: client 2's message 5, until 6 has gone out */
};

static void fake_send(int fd, const char *s, size_t len)
{
        cr_assert_eq(chat_write_all(fd, s, len), 0);
}

static void *fake_main(void *arg)
{
        struct fake *f = arg;
        int n = 0;

        while (!atomic_load(&f->stop)) {
                struct pollfd p[FAKE_MAX + 1];

                p[0] = (struct pollfd){.fd = n < f->nmax ? f->lfd : -1, .events = POLLIN};
                for (int i = 0; i < f->nmax; i++)
                        p[i + 1] = (struct pollfd){.fd = f->fd[i], .events = POLLIN};
                if (poll(p, (nfds_t)f->nmax + 1, 20) <= 0)
                        continue;
                if (p[0].revents & POLLIN) {
                        int fd = accept(f->lfd, NULL, NULL);
                        if (fd >= 0) {
                                f->fd[n] = fd;
                                if (f->greet)
                                        f->greet(f, n);
                                n++;
                        }
                        if (f->slow_accept)
                                usleep(30000);
                }
                for (int i = 0; i < f->nmax; i++) {
                        if (f->fd[i] < 0 || !(p[i + 1].revents & (POLLIN | POLLHUP)))
                                continue;
                        ssize_t got =
                            read(f->fd[i], f->in[i] + f->inlen[i], sizeof(f->in[i]) - f->inlen[i]);
                        if (got <= 0) {
                                close(f->fd[i]);
                                f->fd[i] = -1;
                                continue;
                        }
                        f->inlen[i] += (size_t)got;
                        f->input(f, i);
                }
        }
        return NULL;
}

static void fake_start(struct fake *f)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);

        cr_assert_leq(f->nmax, FAKE_MAX);
        for (int i = 0; i < FAKE_MAX; i++)
                f->fd[i] = -1;
        f->lfd = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_geq(f->lfd, 0);
        cr_assert_eq(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(listen(f->lfd, 16), 0);
        cr_assert_eq(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
        f->port = ntohs(a.sin_port);
        cr_assert_eq(pthread_create(&f->tid, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
        atomic_store(&f->stop, true);
        pthread_join(f->tid, NULL);
        for (int i = 0; i < f->nmax; i++)
                if (f->fd[i] >= 0)
                        close(f->fd[i]);
        close(f->lfd);
}

/* Runs tern-bench's chat mode against @f with @cfg's load, filled in here. */
static int fake_run(struct fake *f, struct bench_chat_cfg *cfg, struct bench_chat_verdict *v)
{
        static volatile int never;
        struct bench_target t;

        fake_start(f);
        cr_assert_eq(bench_resolve(&t, "127.0.0.1", f->port), 0);
        cfg->target = &t;
        cfg->nsrc = 1;
        cfg->host = "127.0.0.1";
        cfg->port = f->port;
        cfg->conns = (unsigned)f->nmax;
        cfg->room = "bench";
        cfg->warmup = 0;
        cfg->setup_timeout = 10;
        cfg->json = true;
        cfg->interrupted = &never;
        cfg->verdict = v;
        int rc = bench_chat_run(cfg);
        fake_stop(f);
        return rc;
}

/*
 * Faulty: speaks just enough of tern-chat's protocol (welcome, /join, room
 * messages) for tern-bench, and mangles sender 0's stream: client 1 never
 * gets message 3, client 2 gets 6 before 5, client 3 gets 7 twice.
 */
#define FAULTY_CLIENTS 4

static void faulty_send(int fd, const char *s)
{
        fake_send(fd, s, strlen(s));
}

static void faulty_greet(struct fake *f, int i)
{
        char hello[96];

        snprintf(hello, sizeof(hello), "* welcome guest%d\r\n* guest%d joined #lobby\r\n", i, i);
        faulty_send(f->fd[i], hello);
}

static void faulty_line(struct fake *f, int from, const char *l)
{
        char out[256];
        unsigned s;
        unsigned long long q;

        if (!strncmp(l, "/join ", 6)) {
                snprintf(out, sizeof(out), "* guest%d joined #%s\r\n", from, l + 6);
                for (int i = 0; i < FAULTY_CLIENTS; i++)
                        if (f->fd[i] >= 0)
                                faulty_send(f->fd[i], out);
                return;
        }
        snprintf(out, sizeof(out), "[#bench] guest%d: %s\r\n", from, l);
        bool m = sscanf(l, "m %u %llu", &s, &q) == 2 && s == 0;
        for (int i = 0; i < FAULTY_CLIENTS; i++) {
                if (f->fd[i] < 0)
                        continue;
                if (m && i == 1 && q == 3)
                        continue;
                if (m && i == 2 && q == 5) {
                        snprintf(f->held, sizeof(f->held), "%s", out);
                        continue;
                }
                faulty_send(f->fd[i], out);
                if (m && i == 2 && q == 6)
                        faulty_send(f->fd[i], f->held);
                if (m && i == 3 && q == 7)
                        faulty_send(f->fd[i], out);
        }
}

static void faulty_input(struct fake *f, int i)
{
        char *nl;

        while ((nl = memchr(f->in[i], '\n', f->inlen[i]))) {
                *nl = '\0';
                faulty_line(f, i, f->in[i]);
                f->inlen[i] -= (size_t)(nl + 1 - f->in[i]);
                memmove(f->in[i], nl + 1, f->inlen[i]);
        }
}

Test(chat_verify, faulty_server_is_caught_end_to_end)
{
        struct fake f = {.nmax = FAULTY_CLIENTS, .greet = faulty_greet, .input = faulty_input};
        struct bench_chat_verdict v = {0};
        struct bench_chat_cfg cfg = {
            .senders = 1,
            .rate = 200, /* message 7 goes out after ~35 ms, well inside the run */
            .duration = 0.2,
        };
        int rc = fake_run(&f, &cfg, &v);

        cr_assert_eq(rc, 3, "a faulty server must fail the run (got %d)", rc);
        cr_assert_eq(v.dropped, 1, "client 1's message 3");
        cr_assert_eq(v.reordered, 1, "client 2's message 5 after 6");
        cr_assert_eq(v.duplicate, 1, "client 3's message 7 twice");
        cr_assert_eq(v.missing, 0);
}

/*
 * Relay: muduo's example chat server in miniature. Every whole frame
 * (4-byte big-endian length + payload) a client sends goes to every client,
 * the sender included; nothing is said on connect; writes leave Nagle on,
 * as muduo's do. It accepts slowly, so the set-up sync must be repeated for
 * clients it had not accepted yet.
 */
static void relay_input(struct fake *f, int from)
{
        size_t off = 0;

        while (f->inlen[from] - off >= 4) {
                const unsigned char *h = (const unsigned char *)f->in[from] + off;
                size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
                if (f->inlen[from] - off < 4 + len)
                        break;
                for (int i = 0; i < f->nmax; i++)
                        if (f->fd[i] >= 0)
                                fake_send(f->fd[i], (const char *)h, 4 + len);
                off += 4 + len;
        }
        f->inlen[from] -= off;
        memmove(f->in[from], f->in[from] + off, f->inlen[from]);
}

Test(chat_verify, muduo_framing_closed_loop_end_to_end)
{
        struct fake f = {.nmax = FAKE_MAX, .slow_accept = true, .input = relay_input};
        struct bench_chat_verdict v = {0};
        struct bench_chat_cfg cfg = {
            .senders = 3,
            .rate = 1,
            .closed_loop = true,
            .framing = BENCH_CHAT_FRAMING_MUDUO,
            .duration = 0.2,
        };
        int rc = fake_run(&f, &cfg, &v);

        cr_assert_eq(rc, 0, "a correct relay must pass (got %d)", rc);
        cr_assert_eq(bench_chat_verdict_errors(&v), 0);
        /*
         * Open loop at 1/s would send at most one message per sender in
         * 0.2 s; closed loop sends the next as each comes back (the relay's
         * Nagle and the clients' delayed ACKs make that ~40 ms at worst).
         */
        cr_assert_geq(v.in_order, 2 * 3 * FAKE_MAX, "only %llu deliveries",
                      (unsigned long long)v.in_order);
        cr_assert_eq(v.in_order % FAKE_MAX, 0, "every message reaches every client");
}
