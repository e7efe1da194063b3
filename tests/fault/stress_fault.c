/*
 * Fault plans re-armed from the main thread while workers and the acceptor
 * consult them (a ThreadSanitizer check of core/fault.c and of the paths
 * the faults open), with echo clients reconnecting whenever a fault closes
 * them. Exit 0 when every client byte that came back was right, no client
 * stalled, the server still serves with the faults off, and teardown finds
 * nothing alive. A plain program, because Criterion cannot run under TSan.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fault_internal.h"
#include "tern.h"
#include "testutil.h"

#define CLIENTS 6
#define SECONDS 2

static int stop_clients;
static int failures;

static void echo(tern_conn *c, struct tern_buf *in)
{
        size_t n = tern_buf_len(in);
        const uint8_t *p = tern_buf_data(in);
        if (n > 1 && n % 2) { /* odd sizes through sendmsg */
                struct iovec iov[2] = {{(void *)p, n / 2}, {(void *)(p + n / 2), n - n / 2}};
                tern_conn_sendv(c, iov, 2);
        } else {
                tern_conn_send(c, p, n);
        }
        tern_buf_consume(in, n);
}

static const struct tern_conn_ops ops = {.on_message = echo};

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fail(const char *what, int i)
{
        fprintf(stderr, "stress_fault: client %d: %s\n", i, what);
        __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
}

/* One request/echo round of @len bytes: 1 ok, 0 closed by the server, -1 bad. */
static int round_trip(int fd, uint8_t *out, uint8_t *in, size_t len)
{
        if (tu_write_all(fd, out, len) < 0)
                return 0;
        int r = tu_read_exact(fd, in, len, 10000);
        if (r == -ETIMEDOUT)
                return -1;
        if (r < 0)
                return 0;
        return memcmp(in, out, len) ? -1 : 1;
}

struct client {
        uint16_t port;
        int index;
        long rounds, reconnects;
};

static void *client_main(void *arg)
{
        struct client *c = arg;
        uint8_t out[20000], in[20000];
        unsigned seed = (unsigned)c->index + 1;
        int fd = -1;
        while (!__atomic_load_n(&stop_clients, __ATOMIC_RELAXED)) {
                if (fd < 0) {
                        fd = tu_connect(c->port, false);
                        if (fd < 0) {
                                fail("cannot connect", c->index);
                                return NULL;
                        }
                        c->reconnects++;
                }
                size_t len = 1 + (size_t)rand_r(&seed) % sizeof(out);
                tu_pattern(out, len, seed, (size_t)c->rounds);
                int r = round_trip(fd, out, in, len);
                if (r < 0) {
                        fail("stalled or got wrong bytes", c->index);
                        break;
                }
                if (r == 0) { /* a fault closed it: fine, start over */
                        close(fd);
                        fd = -1;
                        continue;
                }
                c->rounds++;
        }
        if (fd >= 0)
                close(fd);
        return NULL;
}

int main(void)
{
        struct tern_server_opts o;
        tern_log_set_level(TERN_LOG_ERROR); /* each injected EMFILE logs a pause */
        tern_server_opts_init(&o);
        o.workers = 2;
        o.bind = "127.0.0.1";
        o.ops = &ops;
        tern_server *s = tern_server_new(&o);
        if (!s || tern_server_start(s)) {
                perror("stress_fault: server");
                return 1;
        }
        struct client cs[CLIENTS];
        pthread_t th[CLIENTS];
        for (int i = 0; i < CLIENTS; i++) {
                cs[i] = (struct client){.port = tern_server_port(s), .index = i};
                pthread_create(&th[i], NULL, client_main, &cs[i]);
        }

        /* Re-arm a different mix every 50 ms while the clients run. */
        static const int errs[] = {EINTR, EAGAIN, 0, ECONNRESET};
        unsigned seed = 1;
        uint64_t injected = 0;
        int64_t end = now_ms() + SECONDS * 1000;
        for (int round = 0; now_ms() < end; round++) {
                for (int site = TERN__FAULT_READ; site <= TERN__FAULT_SENDMSG; site++) {
                        struct tern__fault_plan p = {
                            .err = errs[rand_r(&seed) % 4],
                            .short_len = 1 + (size_t)rand_r(&seed) % 3000,
                            .prob_ppm = 20000 + (uint32_t)(rand_r(&seed) % 100000),
                            .seed = (uint64_t)round * 3 + (uint64_t)site + 1,
                        };
                        injected += tern__fault_injected((enum tern__fault_site)site);
                        tern__fault_arm((enum tern__fault_site)site, &p);
                }
                struct tern__fault_plan a = {.err = EMFILE, .prob_ppm = 50000, .seed = 9};
                tern__fault_arm(TERN__FAULT_ACCEPT, &a);
                struct tern__fault_plan m = {.err = ENOMEM, .prob_ppm = 20000, .seed = 7};
                injected += tern__fault_injected(TERN__FAULT_ALLOC);
                tern__fault_arm(TERN__FAULT_ALLOC, &m);
                usleep(50000);
        }
        for (int site = 0; site < TERN__FAULT_NSITES; site++)
                injected += tern__fault_injected((enum tern__fault_site)site);
        tern__fault_disarm_all();
        __atomic_store_n(&stop_clients, 1, __ATOMIC_RELAXED);
        long rounds = 0, reconnects = 0;
        for (int i = 0; i < CLIENTS; i++) {
                pthread_join(th[i], NULL);
                rounds += cs[i].rounds;
                reconnects += cs[i].reconnects;
        }

        /* Faults off: a fresh client is served. */
        int fd = tu_connect(tern_server_port(s), false);
        uint8_t out[1000], in[1000];
        tu_pattern(out, sizeof(out), 5, 0);
        if (fd < 0 || round_trip(fd, out, in, sizeof(out)) != 1)
                fail("not served after the faults", -1);
        if (fd >= 0)
                close(fd);

        tern_server_stop(s);
        tern_server_wait(s);
        tern_server_free(s);
        struct tern_live_counts lc;
        tern_live_counts(&lc);
        if (lc.conns || lc.bufs || lc.timers) {
                fprintf(stderr,
                        "stress_fault: live after teardown: %ld conns %ld bufs %ld timers\n",
                        lc.conns, lc.bufs, lc.timers);
                failures++;
        }
        if (!injected || !rounds) {
                fprintf(stderr, "stress_fault: nothing happened (%lu faults, %ld rounds)\n",
                        (unsigned long)injected, rounds);
                failures++;
        }
        printf("stress_fault: %ld echo rounds, %ld connections, %lu faults injected, %d failures\n",
               rounds, reconnects, (unsigned long)injected, failures);
        return failures ? 1 : 0;
}
