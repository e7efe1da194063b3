/*
 * Cross-thread stress for issue 6, Criterion-free so that it runs under
 * ThreadSanitizer (make tsan).
 *
 * Every round starts a server and, all at once:
 *  - churners connect, echo a message, and close, again and again: each
 *    connection is one hand-off from the acceptor to a worker's ring;
 *  - posters hand tasks to the workers (tern_loop_post) and to live
 *    connections (tern_handle_post), each checked to run exactly once;
 *  - a client's 'K' message makes its worker abort other connections of
 *    the same loop in the middle of an epoll batch, so their descriptor
 *    numbers are reused by the acceptor at once (counted when the new
 *    connection opens in the same loop iteration as the old one closed);
 *  - stale-senders write through the handles of connections already closed:
 *    a stale handle must never reach the connection that took over its
 *    slot or its descriptor;
 *  - and the server is stopped at a random moment with all of it in flight.
 * Every client checks that it only ever gets back its own bytes, in order.
 * Exits non-zero on a corrupted or foreign byte, a task run twice or never,
 * or anything left alive after a round.
 *
 * Usage: stress_handoff [rounds [posts [connections]]]; the defaults (12,
 * 100000, 100000) keep a TSan run under half a minute on two cores.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tern.h"
#include "testutil.h"

#define FAIL(...)                                                                                  \
        do {                                                                                       \
                fprintf(stderr, "stress_handoff: " __VA_ARGS__);                                   \
                fputc('\n', stderr);                                                               \
                exit(1);                                                                           \
        } while (0)

enum { MAX_WORKERS = 3, TABLE = 256, DEAD = 1024, MAXFD = 65536 };

/* ---- per-loop state, touched only by that loop's thread ---- */

struct loop_state {
        tern_conn *live[TABLE];
        int nlive;
        uint64_t iter_of_close[MAXFD]; /* loop iteration + 1 when fd closed */
        unsigned seed;
};

static struct loop_state loops[MAX_WORKERS];
static tern_server *server;

/* ---- shared, under a lock ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static tern_handle dead[DEAD];
static int ndead;
static tern_handle alive[TABLE];
static int nalive;

static long same_batch_reuse, kills, stale_sends, loop_posts_run, conn_posts_run;
static long loop_posts_sent, conn_posts_sent;
static bool stop_all;

/* The loop's iteration count: it moves only at the end of an iteration, so
 * a close during dispatch and an open from the mailbox in the same
 * iteration see the same value. */
static uint64_t iteration(tern_conn *c)
{
        struct tern_stats per[MAX_WORKERS];
        tern_server_stats(tern_conn_server(c), NULL, per);
        return per[tern_loop_index(tern_conn_loop(c))].loop_iters;
}

static void on_open(tern_conn *c)
{
        tern_loop *l = tern_conn_loop(c);
        struct loop_state *ls = &loops[tern_loop_index(l)];
        int fd = tern_conn_fd(c);
        if (fd < MAXFD && ls->iter_of_close[fd] == iteration(c) + 1)
                __atomic_fetch_add(&same_batch_reuse, 1, __ATOMIC_RELAXED);
        tern_conn_set_data(c, c);
        if (ls->nlive < TABLE)
                ls->live[ls->nlive++] = c;
        pthread_mutex_lock(&mu);
        alive[nalive++ % TABLE] = tern_conn_handle(c);
        pthread_mutex_unlock(&mu);
}

static void on_close(tern_conn *c, enum tern_close_reason r, int err)
{
        tern_loop *l = tern_conn_loop(c);
        struct loop_state *ls = &loops[tern_loop_index(l)];
        int fd = tern_conn_fd(c);
        if (fd >= 0 && fd < MAXFD)
                ls->iter_of_close[fd] = iteration(c) + 1;
        for (int i = 0; i < ls->nlive; i++)
                if (ls->live[i] == c) {
                        ls->live[i] = ls->live[--ls->nlive];
                        break;
                }
        pthread_mutex_lock(&mu);
        dead[ndead++ % DEAD] = tern_conn_handle(c);
        pthread_mutex_unlock(&mu);
}

static void on_message(tern_conn *c, struct tern_buf *in)
{
        if (tern_conn_data(c) != c)
                FAIL("a connection saw another's data pointer");
        const uint8_t *p = tern_buf_data(in);
        size_t n = tern_buf_len(in);
        bool kill = memchr(p, 'K', n) != NULL;
        tern_conn_send(c, p, n);
        tern_buf_consume(in, n);
        if (!kill)
                return;
        /* Abort up to three other connections of this loop now, in the
         * middle of the batch: later events for them must be skipped, and
         * their descriptor numbers are free for the acceptor. */
        struct loop_state *ls = &loops[tern_loop_index(tern_conn_loop(c))];
        for (int k = 0; k < 3 && ls->nlive > 1; k++) {
                tern_conn *v = ls->live[rand_r(&ls->seed) % (unsigned)ls->nlive];
                if (v != c && !tern_conn_closing(v)) {
                        tern_conn_abort(v);
                        __atomic_fetch_add(&kills, 1, __ATOMIC_RELAXED);
                }
        }
}

static const struct tern_conn_ops ops = {
    .on_open = on_open, .on_message = on_message, .on_close = on_close};

/* ---- the client threads ---- */

struct churner {
        uint16_t port;
        unsigned seed;
        long conns, echoed;
        pthread_t th;
};

/* Reads up to @len bytes until the peer stops; returns how many came. */
static size_t read_some(int fd, uint8_t *buf, size_t len)
{
        size_t got = 0;
        while (got < len) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, 3000) <= 0)
                        break;
                ssize_t r = recv(fd, buf + got, len - got, 0);
                if (r <= 0)
                        break;
                got += (size_t)r;
        }
        return got;
}

/* Connect, echo one or two messages of our own pattern, close. A victim of
 * 'K' sees its connection end early; what it did get must be its own. */
static void *churn(void *p)
{
        struct churner *a = p;
        uint8_t out[300], in[300];
        while (!__atomic_load_n(&stop_all, __ATOMIC_ACQUIRE)) {
                int fd = tu_connect(a->port, false);
                if (fd < 0) {
                        usleep(1000); /* stopped: wait for the next round */
                        continue;
                }
                a->conns++;
                int msgs = 1 + rand_r(&a->seed) % 2;
                for (int m = 0; m < msgs; m++) {
                        size_t len = 1 + rand_r(&a->seed) % sizeof(out);
                        uint32_t seed = rand_r(&a->seed);
                        tu_pattern(out, len, seed, 0);
                        for (size_t i = 0; i < len; i++)
                                if (out[i] == 'K')
                                        out[i] = 'k';
                        if (rand_r(&a->seed) % 8 == 0)
                                out[len / 2] = 'K';
                        if (tu_write_all(fd, out, len))
                                break;
                        size_t got = read_some(fd, in, len);
                        if (memcmp(in, out, got))
                                FAIL("a client got bytes that are not its own");
                        if (got < len)
                                break; /* killed or stopped */
                        a->echoed++;
                }
                close(fd);
        }
        return NULL;
}

static void loop_task(tern_loop *l, void *arg)
{
        int *ran = arg;
        if (__atomic_fetch_add(ran, 1, __ATOMIC_RELAXED) != 0)
                FAIL("a loop task ran twice");
        __atomic_fetch_add(&loop_posts_run, 1, __ATOMIC_RELAXED);
        free(ran);
}

static void conn_task(tern_conn *c, void *arg)
{
        int *ran = arg;
        if (__atomic_fetch_add(ran, 1, __ATOMIC_RELAXED) != 0)
                FAIL("a connection task ran twice");
        if (c && tern_conn_data(c) != c)
                FAIL("a connection task got a foreign connection");
        __atomic_fetch_add(&conn_posts_run, 1, __ATOMIC_RELAXED);
        free(ran);
}

struct poster {
        long budget;
        unsigned seed;
        pthread_t th;
};

/* Hands tasks to loops and connections, and writes through dead handles. */
static void *post(void *p)
{
        struct poster *a = p;
        tern_server *s = server;
        int workers = tern_server_workers(s);
        while (__atomic_load_n(&a->budget, __ATOMIC_RELAXED) > 0 &&
               !__atomic_load_n(&stop_all, __ATOMIC_ACQUIRE)) {
                int *ran = calloc(1, sizeof(*ran));
                int r;
                if (rand_r(&a->seed) % 2) {
                        r = tern_loop_post(tern_server_loop(s, (int)(rand_r(&a->seed) % workers)),
                                           loop_task, ran);
                        if (!r)
                                __atomic_fetch_add(&loop_posts_sent, 1, __ATOMIC_RELAXED);
                } else {
                        pthread_mutex_lock(&mu);
                        tern_handle h = nalive ? alive[rand_r(&a->seed) %
                                                       (unsigned)(nalive < TABLE ? nalive : TABLE)]
                                               : TERN_HANDLE_NONE;
                        pthread_mutex_unlock(&mu);
                        r = h ? tern_handle_post(s, h, conn_task, ran) : -EINVAL;
                        if (!r)
                                __atomic_fetch_add(&conn_posts_sent, 1, __ATOMIC_RELAXED);
                }
                if (r) {
                        free(ran);
                        if (r != -ESHUTDOWN && r != -EINVAL)
                                FAIL("post failed: %s", tern_strerror(r));
                        if (r == -ESHUTDOWN)
                                break;
                }
                /* A write through a dead handle must go nowhere: its slot
                 * and descriptor may belong to a new connection by now. */
                pthread_mutex_lock(&mu);
                tern_handle d =
                    ndead ? dead[rand_r(&a->seed) % (unsigned)(ndead < DEAD ? ndead : DEAD)]
                          : TERN_HANDLE_NONE;
                pthread_mutex_unlock(&mu);
                if (d && tern_handle_send(s, d, "STALE", 5) == 0)
                        __atomic_fetch_add(&stale_sends, 1, __ATOMIC_RELAXED);
                __atomic_fetch_sub(&a->budget, 1, __ATOMIC_RELAXED);
        }
        return NULL;
}

static void *run_server(void *p)
{
        return tern_server_run(p) == 0 ? NULL : p;
}

int main(int argc, char **argv)
{
        int rounds = argc > 1 ? atoi(argv[1]) : 12;
        long handoffs = argc > 2 ? atol(argv[2]) : 100000;
        long conn_target = argc > 3 ? atol(argv[3]) : 100000;
        tern_log_set_level(TERN_LOG_ERROR);
        srand(1);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long accepted = 0, conns = 0, echoed = 0;
        for (int round = 0; round < rounds; round++) {
                struct tern_server_opts o;
                tern_server_opts_init(&o);
                o.bind = "127.0.0.1";
                o.workers = 1 + round % MAX_WORKERS;
                /* auto, thread, worker: each with 1, 2 and 3 workers */
                o.accept = (enum tern_accept_mode)((round / MAX_WORKERS) % 3);
                o.ops = &ops;
                memset(loops, 0, sizeof(loops));
                ndead = nalive = 0;
                server = tern_server_new(&o);
                if (!server)
                        FAIL("cannot create a server: %s", strerror(errno));
                /* Worker 0 accepting: serve through tern_server_run on a thread
                 * of ours, which becomes worker 0. */
                bool run_here = o.accept == TERN_ACCEPT_WORKER;
                pthread_t runner;
                if (run_here ? pthread_create(&runner, NULL, run_server, server) != 0
                             : tern_server_start(server) != 0)
                        FAIL("cannot start a server: %s", strerror(errno));
                __atomic_store_n(&stop_all, false, __ATOMIC_RELEASE);

                enum { CHURNERS = 4, POSTERS = 2 };
                struct churner ch[CHURNERS];
                struct poster po[POSTERS];
                for (int i = 0; i < CHURNERS; i++) {
                        ch[i] = (struct churner){tern_server_port(server),
                                                 (unsigned)(round * 10 + i), 0, 0, 0};
                        pthread_create(&ch[i].th, NULL, churn, &ch[i]);
                }
                for (int i = 0; i < POSTERS; i++) {
                        po[i] =
                            (struct poster){handoffs / rounds / POSTERS, (unsigned)(round + i), 0};
                        pthread_create(&po[i].th, NULL, post, &po[i]);
                }
                /* Run until the posters used their share and this round's share
                 * of connections went through (or 30 s), then stop the server
                 * at a random moment with clients in flight. */
                for (int t = 0; t < 30000; t++) {
                        bool busy = false;
                        for (int i = 0; i < POSTERS; i++)
                                busy |= __atomic_load_n(&po[i].budget, __ATOMIC_RELAXED) > 0;
                        struct tern_stats now;
                        tern_server_stats(server, &now, NULL);
                        if (!busy && (long)now.accepted >= conn_target / rounds)
                                break;
                        usleep(1000);
                }
                usleep((unsigned)(rand() % 50) * 1000);
                tern_server_stop(server);
                void *ran = NULL;
                if (run_here ? pthread_join(runner, &ran) != 0 || ran != NULL
                             : tern_server_wait(server) != 0)
                        FAIL("wait failed");
                __atomic_store_n(&stop_all, true, __ATOMIC_RELEASE);
                for (int i = 0; i < CHURNERS; i++) {
                        pthread_join(ch[i].th, NULL);
                        conns += ch[i].conns;
                        echoed += ch[i].echoed;
                }
                for (int i = 0; i < POSTERS; i++)
                        pthread_join(po[i].th, NULL);
                struct tern_stats st;
                tern_server_stats(server, &st, NULL);
                accepted += (long)st.accepted;
                tern_server_free(server);
                server = NULL;

                struct tern_live_counts lc;
                tern_live_counts(&lc);
                if (lc.conns || lc.bufs || lc.timers)
                        FAIL("round %d: live conns %ld bufs %ld timers %ld", round, lc.conns,
                             lc.bufs, lc.timers);
                /* Every accepted post ran exactly once, even across the stop. */
                if (loop_posts_run != loop_posts_sent || conn_posts_run != conn_posts_sent)
                        FAIL("round %d: loop posts %ld sent %ld run, conn posts %ld sent %ld run",
                             round, loop_posts_sent, loop_posts_run, conn_posts_sent,
                             conn_posts_run);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (!echoed || !kills || !stale_sends)
                FAIL("nothing happened: echoed %ld kills %ld stale sends %ld", echoed, kills,
                     stale_sends);
        printf("stress_handoff: %d rounds in %.1f s: %ld connections handed off (%ld by the "
               "clients' count), %ld loop posts, %ld connection posts, %ld echoes, %ld aborts "
               "mid-batch, %ld descriptor numbers reused in the same iteration, %ld writes "
               "through dead handles\n",
               rounds, secs, accepted, conns, loop_posts_run, conn_posts_run, echoed, kills,
               same_batch_reuse, stale_sends);
        printf("1 passed, 0 failed\n");
        return 0;
}
