/*
 * tern-proxy in-process (apps/proxy/proxy.c): echo traffic through it from
 * many clients with every byte checked, a half-close passed through, a
 * destination that is down, and backpressure: a destination that does not
 * read holds the source back, with the proxy's queued bytes bounded, and
 * every byte still arrives once it reads.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../apps/proxy/proxy.c"
#include "srvutil.h"
#include "testutil.h"

static tern_server *start_proxy(struct proxy *px, uint16_t to_port, size_t high_water)
{
        cr_assert_eq(proxy_init(px, "127.0.0.1", to_port, 2000), 0);
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 2;
        o.high_water = high_water;
        proxy_apply(&o, px);
        return su_start(&o);
}

static void stop_free(tern_server *s)
{
        tern_server_stop(s);
        cr_assert_eq(tern_server_wait(s), 0);
        tern_server_free(s);
}

static bool no_pairs(void *p)
{
        return __atomic_load_n(&((struct proxy *)p)->pairs, __ATOMIC_RELAXED) == 0;
}

/* ---- echo through the proxy ---- */

enum { CLIENTS = 16, ROUNDS = 25, MAX_MSG = 48 * 1024 };

struct client_arg {
        uint16_t port;
        unsigned seed;
        int failed;
        size_t bytes;
};

static void *echo_client(void *p)
{
        struct client_arg *a = p;
        uint8_t *out = malloc(MAX_MSG), *in = malloc(MAX_MSG);
        int fd = tu_connect(a->port, false);
        if (fd < 0) {
                a->failed = 1;
                goto out;
        }
        for (int r = 0; r < ROUNDS && !a->failed; r++) {
                size_t len = 1 + rand_r(&a->seed) % MAX_MSG;
                tu_pattern(out, len, a->seed, a->bytes);
                if (tu_write_all(fd, out, len) || tu_read_exact(fd, in, len, 10000) ||
                    memcmp(in, out, len) != 0)
                        a->failed = r + 1;
                a->bytes += len;
        }
        close(fd);
out:
        free(out);
        free(in);
        return NULL;
}

Test(proxy, echo_through_the_proxy_from_many_clients)
{
        tern_server *echo = su_start_echo(2);
        struct proxy px;
        tern_server *ps = start_proxy(&px, tern_server_port(echo), 64 * 1024);
        pthread_t th[CLIENTS];
        struct client_arg args[CLIENTS];
        for (int i = 0; i < CLIENTS; i++) {
                args[i] = (struct client_arg){.port = tern_server_port(ps), .seed = 1000u + i};
                pthread_create(&th[i], NULL, echo_client, &args[i]);
        }
        size_t total = 0;
        for (int i = 0; i < CLIENTS; i++) {
                pthread_join(th[i], NULL);
                cr_assert_eq(args[i].failed, 0, "client %d failed in round %d", i, args[i].failed);
                total += args[i].bytes;
        }
        cr_assert_gt(total, (size_t)CLIENTS * ROUNDS * 1024);
        /* Closing a client closes its destination too. */
        cr_assert(tu_wait_until(no_pairs, &px, 5000), "%ld pairs left", px.pairs);
        struct tern_stats st;
        tern_server_stats(ps, &st, NULL);
        cr_assert_eq(st.accepted, CLIENTS);
        cr_assert_eq(st.connects, CLIENTS);
        cr_assert_eq(st.conns, 0);
        cr_assert_eq(px.connect_failed, 0);
        stop_free(ps);
        stop_free(echo);
        su_assert_nothing_live();
}

Test(proxy, half_close_passes_through)
{
        tern_server *echo = su_start_echo(2);
        struct proxy px;
        tern_server *ps = start_proxy(&px, tern_server_port(echo), 0);
        int fd = tu_connect(tern_server_port(ps), false);
        static uint8_t out[200000], in[200000];
        tu_pattern(out, sizeof(out), 7, 0);
        cr_assert_eq(tu_write_all(fd, out, sizeof(out)), 0);
        /* Our FIN reaches the echo server through the proxy; its answer and
         * then its FIN come back. */
        shutdown(fd, SHUT_WR);
        cr_assert_eq(tu_read_exact(fd, in, sizeof(in), 10000), 0);
        cr_assert_eq(memcmp(in, out, sizeof(out)), 0);
        cr_assert_eq(tu_wait_eof(fd, 5000), 0);
        close(fd);
        cr_assert(tu_wait_until(no_pairs, &px, 5000));
        stop_free(ps);
        stop_free(echo);
        su_assert_nothing_live();
}

Test(proxy, destination_down_closes_the_source)
{
        struct proxy px;
        tern_server *ps = start_proxy(&px, tu_unused_port(), 0);
        int fd = tu_connect(tern_server_port(ps), false);
        cr_assert_geq(fd, 0);
        cr_assert_eq(tu_write_all(fd, "lost", 4), 0);
        cr_assert_eq(tu_wait_eof(fd, 5000), 0);
        close(fd);
        cr_assert(tu_wait_until(no_pairs, &px, 5000));
        cr_assert_eq(px.connect_failed, 1);
        stop_free(ps);
        su_assert_nothing_live();
}

/* ---- backpressure ---- */

#define PUSH_BYTES (64u << 20)
#define HIGH_WATER (256u * 1024)
#define CHUNK      (64u * 1024)

struct writer {
        int fd;
        size_t written; /* atomic */
        int err;
};

static void *writer_thread(void *p)
{
        struct writer *w = p;
        uint8_t *buf = malloc(CHUNK);
        size_t off = 0;
        while (off < PUSH_BYTES) {
                size_t n = PUSH_BYTES - off < CHUNK ? PUSH_BYTES - off : CHUNK;
                tu_pattern(buf, n, 42, off);
                if ((w->err = tu_write_all(w->fd, buf, n)) != 0)
                        break;
                off += n;
                __atomic_store_n(&w->written, off, __ATOMIC_RELAXED);
        }
        free(buf);
        return NULL;
}

Test(proxy, slow_destination_pauses_the_source)
{
        /* The destination: a plain socket that accepts and, for now, never reads. */
        int lfd = tu_listen(0, 4);
        cr_assert_geq(lfd, 0);
        struct proxy px;
        tern_server *ps = start_proxy(&px, tu_local_port(lfd), HIGH_WATER);
        struct writer w = {.fd = tu_connect(tern_server_port(ps), false)};
        cr_assert_geq(w.fd, 0);
        struct pollfd pfd = {lfd, POLLIN, 0};
        cr_assert_eq(poll(&pfd, 1, 5000), 1);
        int dfd = accept(lfd, NULL, NULL);
        cr_assert_geq(dfd, 0);

        pthread_t th;
        pthread_create(&th, NULL, writer_thread, &w);
        /* Wait until the writer is stuck: no progress for 500 ms. */
        size_t last = (size_t)-1, now;
        int still = 0;
        for (int t = 0; t < 300 && still < 5; t++) {
                usleep(100 * 1000);
                now = __atomic_load_n(&w.written, __ATOMIC_RELAXED);
                still = now == last ? still + 1 : 0;
                last = now;
        }
        cr_assert_eq(still, 5, "the writer never stalled");
        cr_assert_lt(last, PUSH_BYTES, "all %u bytes went in without the destination reading",
                     PUSH_BYTES);
        /* What the proxy holds: at most one read past its high-water mark on
         * the destination; the rest waits in kernel buffers, not in tern. */
        size_t peak = __atomic_load_n(&px.peak_queued, __ATOMIC_RELAXED);
        cr_assert_leq(peak, HIGH_WATER + CHUNK, "proxy queued %zu bytes", peak);
        struct tern_live_counts lc;
        tern_live_counts(&lc);
        cr_assert_leq(lc.bufs, 4, "%ld buffers live while stalled", lc.bufs);
        cr_log_info("stalled after %zu of %u bytes; peak queued in the proxy %zu bytes", last,
                    PUSH_BYTES, peak);

        /* Now read: reading resumes and every byte arrives, in order. */
        uint8_t *got = malloc(CHUNK), *want = malloc(CHUNK);
        for (size_t off = 0; off < PUSH_BYTES; off += CHUNK) {
                cr_assert_eq(tu_read_exact(dfd, got, CHUNK, 20000), 0, "stuck at %zu", off);
                tu_pattern(want, CHUNK, 42, off);
                cr_assert_eq(memcmp(got, want, CHUNK), 0, "corrupt chunk at %zu", off);
        }
        pthread_join(th, NULL);
        cr_assert_eq(w.err, 0);
        cr_assert_eq(w.written, PUSH_BYTES);
        cr_assert_leq(__atomic_load_n(&px.peak_queued, __ATOMIC_RELAXED), HIGH_WATER + CHUNK);
        free(got);
        free(want);
        close(w.fd);
        cr_assert_eq(tu_wait_eof(dfd, 5000), 0, "source closed, destination not");
        close(dfd);
        close(lfd);
        cr_assert(tu_wait_until(no_pairs, &px, 5000));
        stop_free(ps);
        su_assert_nothing_live();
}
