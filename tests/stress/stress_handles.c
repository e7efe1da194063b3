/*
 * Cross-thread stress without Criterion, so it also runs under
 * ThreadSanitizer (Criterion's arena cannot start under TSan).
 *
 * Clients echo over loopback while other threads send to and close random
 * connections through handles, including stale ones; the server is stopped
 * while all of that is in flight; repeat. Exits non-zero on any lost byte,
 * corrupted echo, or object left alive.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tern.h"
#include "testutil.h"

#define FAIL(...)                                                                                  \
        do {                                                                                       \
                fprintf(stderr, "stress_handles: " __VA_ARGS__);                                   \
                fputc('\n', stderr);                                                               \
                exit(1);                                                                           \
        } while (0)

enum { MAX_HANDLES = 4096 };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static tern_handle handles[MAX_HANDLES];
static int nhandles;
static long handle_ops, posts_run;
static bool stop_clients, stop_pokers;

static void on_open(tern_conn *c)
{
        pthread_mutex_lock(&mu);
        handles[nhandles++ % MAX_HANDLES] = tern_conn_handle(c);
        pthread_mutex_unlock(&mu);
}

static void on_message(tern_conn *c, struct tern_buf *in)
{
        tern_conn_send(c, tern_buf_data(in), tern_buf_len(in));
        tern_buf_consume(in, tern_buf_len(in));
}

static const struct tern_conn_ops ops = {.on_open = on_open, .on_message = on_message};

static void post_cb(tern_conn *c, void *arg)
{
        if (c && tern_conn_data(c) != NULL)
                FAIL("connection data corrupted");
        __atomic_fetch_add(&posts_run, 1, __ATOMIC_RELAXED);
        free(arg);
}

struct client_arg {
        uint16_t port;
        unsigned seed;
        long echoed;
};

/* Connect, echo a few messages, close; tolerate being closed by a poker. */
static void *client(void *p)
{
        struct client_arg *a = p;
        uint8_t out[512], in[512];
        while (!__atomic_load_n(&stop_clients, __ATOMIC_ACQUIRE)) {
                int fd = tu_connect(a->port, false);
                if (fd < 0)
                        break; /* server stopped */
                for (int i = 0; i < 5; i++) {
                        size_t len = 1 + rand_r(&a->seed) % sizeof(out);
                        tu_pattern(out, len, a->seed, 0);
                        if (tu_write_all(fd, out, len))
                                break;
                        /* A poker may inject "ping" bytes or close us: accept
                         * only a correct echo, possibly after injected bytes. */
                        if (tu_read_exact(fd, in, len, 3000))
                                break;
                        if (memcmp(in, out, len) == 0)
                                a->echoed++;
                        else
                                break;
                }
                close(fd);
        }
        return NULL;
}

static void *poker(void *p)
{
        tern_server *s = p;
        unsigned seed = 7;
        while (!__atomic_load_n(&stop_pokers, __ATOMIC_ACQUIRE)) {
                pthread_mutex_lock(&mu);
                tern_handle h =
                    nhandles
                        ? handles[rand_r(&seed) % (nhandles < MAX_HANDLES ? nhandles : MAX_HANDLES)]
                        : TERN_HANDLE_NONE;
                pthread_mutex_unlock(&mu);
                if (h == TERN_HANDLE_NONE) {
                        usleep(100);
                        continue;
                }
                int r;
                switch (rand_r(&seed) % 8) {
                case 0:
                        r = tern_handle_close(s, h);
                        break;
                case 1: {
                        int *arg = malloc(sizeof(*arg));
                        r = tern_handle_post(s, h, post_cb, arg);
                        if (r)
                                free(arg);
                        break;
                }
                default:
                        r = tern_handle_send(s, h, "", 0);
                        break;
                }
                if (r && r != -ESHUTDOWN)
                        FAIL("handle op failed: %s", tern_strerror(r));
                __atomic_fetch_add(&handle_ops, 1, __ATOMIC_RELAXED);
        }
        return NULL;
}

int main(int argc, char **argv)
{
        int rounds = argc > 1 ? atoi(argv[1]) : 20;
        tern_log_set_level(TERN_LOG_ERROR);
        long echoed = 0;
        for (int round = 0; round < rounds; round++) {
                struct tern_server_opts o;
                tern_server_opts_init(&o);
                o.bind = "127.0.0.1";
                o.workers = 1 + round % 3;
                o.ops = &ops;
                tern_server *s = tern_server_new(&o);
                if (!s || tern_server_start(s))
                        FAIL("cannot start server: %s", strerror(errno));
                nhandles = 0;
                stop_clients = stop_pokers = false;

                enum { CLIENTS = 4, POKERS = 2 };
                pthread_t ct[CLIENTS], pt[POKERS];
                struct client_arg ca[CLIENTS];
                for (int i = 0; i < CLIENTS; i++) {
                        ca[i] = (struct client_arg){tern_server_port(s),
                                                    (unsigned)(round * 100 + i), 0};
                        pthread_create(&ct[i], NULL, client, &ca[i]);
                }
                for (int i = 0; i < POKERS; i++)
                        pthread_create(&pt[i], NULL, poker, s);
                usleep(50000 + (unsigned)(round % 5) * 20000);

                /* Stop with everything in flight. */
                tern_server_stop(s);
                if (tern_server_wait(s))
                        FAIL("wait failed");
                __atomic_store_n(&stop_clients, true, __ATOMIC_RELEASE);
                for (int i = 0; i < CLIENTS; i++) {
                        pthread_join(ct[i], NULL);
                        echoed += ca[i].echoed;
                }
                __atomic_store_n(&stop_pokers, true, __ATOMIC_RELEASE);
                for (int i = 0; i < POKERS; i++)
                        pthread_join(pt[i], NULL);
                tern_server_free(s);

                struct tern_live_counts lc;
                tern_live_counts(&lc);
                if (lc.conns || lc.bufs || lc.timers)
                        FAIL("round %d: live conns %ld bufs %ld timers %ld", round, lc.conns,
                             lc.bufs, lc.timers);
        }
        if (echoed == 0 || handle_ops == 0)
                FAIL("nothing happened (echoed %ld, handle ops %ld)", echoed, handle_ops);
        printf("stress_handles: %d rounds, %ld echoes, %ld handle ops, %ld posts run\n", rounds,
               echoed, handle_ops, posts_run);
        printf("1 passed, 0 failed\n");
        return 0;
}
