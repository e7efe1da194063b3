/*
 * Connectors across threads, without Criterion so it runs under
 * ThreadSanitizer.
 *
 * A foreign thread creates, starts and frees connectors through
 * tern_loop_post; the connections echo through a tern server, close
 * themselves and reconnect; half the connectors aim at a port where
 * nothing listens (refused, retried, given up); another thread closes and
 * posts to client connections through their handles; then the client side
 * is stopped with all of that in flight, leaving connectors for
 * tern_server_free. Repeat. Exits non-zero on a corrupted echo, a callback
 * on the wrong thread, or anything left alive.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tern.h"
#include "testutil.h"

#define FAIL(...)                                                                                  \
        do {                                                                                       \
                fprintf(stderr, "stress_client: " __VA_ARGS__);                                    \
                fputc('\n', stderr);                                                               \
                exit(1);                                                                           \
        } while (0)

enum { WORKERS = 2, PER_LOOP = 24, ROUNDS = 12, MAX_HANDLES = 1024 };

static uint16_t echo_port, dead_port;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static tern_handle handles[MAX_HANDLES];
static int nhandles;
static tern_server *client_side; /* under mu: the poker uses it while a round runs */
static bool stop_poker;
static long opened, echoed, errors, give_ups, posts_run;

/* Loop-owned: touched only by tasks and callbacks on that loop's thread. */
struct loop_state {
        tern_loop *loop;
        tern_connector *cns[PER_LOOP];
};
static struct loop_state states[WORKERS];

/* What a connection has sent and has yet to see echoed. */
struct echo_state {
        uint32_t sent, seen, rounds;
};

static void send_next(tern_conn *c, struct echo_state *e)
{
        uint8_t buf[256];
        size_t len = 1 + (e->sent * 7919u) % sizeof(buf);
        tu_pattern(buf, len, 5, e->sent);
        e->sent += (uint32_t)len;
        tern_conn_send(c, buf, len);
}

static void on_open(tern_conn *c)
{
        if (tern_loop_current() != tern_conn_loop(c))
                FAIL("on_open on the wrong thread");
        struct echo_state *e = calloc(1, sizeof(*e));
        tern_conn_set_data(c, e);
        pthread_mutex_lock(&mu);
        handles[nhandles++ % MAX_HANDLES] = tern_conn_handle(c);
        pthread_mutex_unlock(&mu);
        __atomic_fetch_add(&opened, 1, __ATOMIC_RELAXED);
        send_next(c, e);
}

static void on_message(tern_conn *c, struct tern_buf *in)
{
        struct echo_state *e = tern_conn_data(c);
        size_t n = tern_buf_len(in);
        uint8_t want[4096];
        if (n > sizeof(want))
                n = sizeof(want);
        tu_pattern(want, n, 5, e->seen);
        if (memcmp(tern_buf_data(in), want, n) != 0)
                FAIL("corrupted echo at offset %u", e->seen);
        e->seen += (uint32_t)n;
        tern_buf_consume(in, n);
        if (e->seen > e->sent)
                FAIL("more echoed than sent");
        if (e->seen == e->sent) {
                __atomic_fetch_add(&echoed, 1, __ATOMIC_RELAXED);
                if (++e->rounds == 5)
                        tern_conn_close(c); /* and the connector reconnects */
                else
                        send_next(c, e);
        }
}

static void on_close(tern_conn *c, enum tern_close_reason r, int err)
{
        free(tern_conn_data(c));
        tern_conn_set_data(c, NULL);
}

static void on_connect_error(tern_connector *cn, int err, uint32_t attempt)
{
        if (tern_loop_current() != tern_connector_loop(cn))
                FAIL("on_connect_error on the wrong thread");
        __atomic_fetch_add(&errors, 1, __ATOMIC_RELAXED);
}

static void on_give_up(tern_connector *cn, int err)
{
        __atomic_fetch_add(&give_ups, 1, __ATOMIC_RELAXED);
        /* Forget it, then free it from its own callback. */
        struct loop_state *st = tern_connector_user(cn);
        for (int i = 0; i < PER_LOOP; i++)
                if (st->cns[i] == cn)
                        st->cns[i] = NULL;
        tern_connector_free(cn);
}

static const struct tern_conn_ops ops = {
    .on_open = on_open,
    .on_message = on_message,
    .on_close = on_close,
};

static void spawn_task(tern_loop *l, void *arg)
{
        struct loop_state *st = arg;
        st->loop = l;
        for (int i = 0; i < PER_LOOP; i++) {
                struct tern_connector_opts o;
                tern_connector_opts_init(&o);
                o.host = "127.0.0.1";
                o.port = i % 2 ? dead_port : echo_port;
                o.reconnect = true;
                o.max_attempts = 3;
                o.backoff_min_ms = 1;
                o.backoff_max_ms = 8;
                o.ops = &ops;
                o.on_connect_error = on_connect_error;
                o.on_give_up = on_give_up;
                o.user = st;
                st->cns[i] = tern_connector_new(l, &o);
                if (!st->cns[i])
                        FAIL("tern_connector_new: %s", strerror(errno));
                if (tern_connector_start(st->cns[i]))
                        FAIL("tern_connector_start");
        }
}

static void free_some_task(tern_loop *l, void *arg)
{
        struct loop_state *st = arg;
        for (int i = 0; i < PER_LOOP; i += 3) {
                tern_connector_free(st->cns[i]);
                st->cns[i] = NULL;
        }
}

static void post_cb(tern_conn *c, void *arg)
{
        if (c && tern_loop_current() != tern_conn_loop(c))
                FAIL("handle task on the wrong thread");
        __atomic_fetch_add(&posts_run, 1, __ATOMIC_RELAXED);
        free(arg);
}

static void *poker(void *p)
{
        unsigned seed = 77;
        while (!__atomic_load_n(&stop_poker, __ATOMIC_ACQUIRE)) {
                /* Under the lock: main frees the server only after taking it. */
                pthread_mutex_lock(&mu);
                int n = nhandles < MAX_HANDLES ? nhandles : MAX_HANDLES;
                tern_handle h = n ? handles[rand_r(&seed) % (unsigned)n] : TERN_HANDLE_NONE;
                tern_server *s = client_side;
                if (h && s) {
                        if (rand_r(&seed) % 4 == 0) {
                                tern_handle_close(s, h);
                        } else {
                                void *arg = malloc(8);
                                if (tern_handle_post(s, h, post_cb, arg) != 0)
                                        free(arg);
                        }
                }
                pthread_mutex_unlock(&mu);
                usleep(200);
        }
        return NULL;
}

static void on_echo_message(tern_conn *c, struct tern_buf *in)
{
        tern_conn_send(c, tern_buf_data(in), tern_buf_len(in));
        tern_buf_consume(in, tern_buf_len(in));
}

static const struct tern_conn_ops echo_ops = {.on_message = on_echo_message};

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        tern_log_set_level(TERN_LOG_ERROR);
        struct tern_server_opts eo;
        tern_server_opts_init(&eo);
        eo.bind = "127.0.0.1";
        eo.workers = 2;
        eo.ops = &echo_ops;
        tern_server *echo = tern_server_new(&eo);
        if (!echo || tern_server_start(echo))
                FAIL("echo server");
        echo_port = tern_server_port(echo);
        dead_port = tu_unused_port();

        pthread_t pk;
        pthread_create(&pk, NULL, poker, NULL);
        for (int round = 0; round < ROUNDS; round++) {
                struct tern_server_opts o;
                tern_server_opts_init(&o);
                o.workers = WORKERS;
                o.no_listen = true;
                tern_server *cs = tern_server_new(&o);
                if (!cs)
                        FAIL("client-only server: %s", strerror(errno));
                /* Posted before start: they run as soon as the loops do. */
                for (int w = 0; w < WORKERS; w++)
                        if (tern_loop_post(tern_server_loop(cs, w), spawn_task, &states[w]))
                                FAIL("post spawn");
                if (tern_server_start(cs))
                        FAIL("start client side");
                pthread_mutex_lock(&mu);
                client_side = cs;
                pthread_mutex_unlock(&mu);
                usleep(100 * 1000);
                for (int w = 0; w < WORKERS; w++)
                        if (tern_loop_post(tern_server_loop(cs, w), free_some_task, &states[w]))
                                FAIL("post free");
                usleep((useconds_t)(50 + round * 10) * 1000);
                /* Stop with connects, retries, echoes and handle tasks in flight. */
                tern_server_stop(cs);
                if (tern_server_wait(cs))
                        FAIL("wait");
                pthread_mutex_lock(&mu);
                nhandles = 0; /* stale from now on; the poker must not use them */
                client_side = NULL;
                pthread_mutex_unlock(&mu);
                tern_server_free(cs); /* frees the connectors left */
                memset(states, 0, sizeof(states));
        }
        __atomic_store_n(&stop_poker, true, __ATOMIC_RELEASE);
        pthread_join(pk, NULL);
        tern_server_stop(echo);
        tern_server_wait(echo);
        tern_server_free(echo);

        struct tern_live_counts lc;
        tern_live_counts(&lc);
        if (lc.conns || lc.bufs || lc.timers)
                FAIL("left alive: %ld conns, %ld bufs, %ld timers", lc.conns, lc.bufs, lc.timers);
        if (!__atomic_load_n(&echoed, __ATOMIC_RELAXED) ||
            !__atomic_load_n(&give_ups, __ATOMIC_RELAXED))
                FAIL("nothing echoed (%ld) or nothing gave up (%ld)", echoed, give_ups);
        printf("stress_client: %d rounds, %ld opens, %ld echo rounds, %ld connect errors, "
               "%ld give-ups, %ld handle tasks\n",
               ROUNDS, opened, echoed, errors, give_ups, posts_run);
        return 0;
}
