/* Connection behaviour over loopback: handles, limits, timeouts, peers
 * misbehaving, and running out of descriptors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "srvutil.h"
#include "testutil.h"

/* ---- shared recording of what the callbacks saw ---- */

#define MAXC 64
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static tern_handle handles[MAXC];
static int nopen, nclose;
static enum tern_close_reason reasons[MAXC];
static int nhigh, nlow, ncomplete;

static void rec_open(tern_conn *c)
{
        pthread_mutex_lock(&mu);
        if (nopen < MAXC)
                handles[nopen] = tern_conn_handle(c);
        nopen++;
        pthread_mutex_unlock(&mu);
}

static void rec_close(tern_conn *c, enum tern_close_reason r, int err)
{
        pthread_mutex_lock(&mu);
        if (nclose < MAXC)
                reasons[nclose] = r;
        nclose++;
        pthread_mutex_unlock(&mu);
}

static int get_locked(int *v)
{
        pthread_mutex_lock(&mu);
        int x = *v;
        pthread_mutex_unlock(&mu);
        return x;
}

static bool closed_at_least_1(void *p)
{
        return get_locked(&nclose) >= *(int *)p;
}

static bool opened_at_least(void *p)
{
        return get_locked(&nopen) >= *(int *)p;
}

static void echo_message(tern_conn *c, struct tern_buf *in)
{
        tern_conn_send(c, tern_buf_data(in), tern_buf_len(in));
        tern_buf_consume(in, tern_buf_len(in));
}

static const struct tern_conn_ops rec_echo_ops = {
    .on_open = rec_open,
    .on_message = echo_message,
    .on_close = rec_close,
};

static struct tern_server_opts echo_opts(int workers)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = workers;
        o.ops = &rec_echo_ops;
        return o;
}

/* ---- handles ---- */

struct post_rec {
        int calls;
        bool got_null;
};

static void post_cb(tern_conn *c, void *arg)
{
        struct post_rec *r = arg;
        pthread_mutex_lock(&mu);
        r->calls++;
        r->got_null = (c == NULL);
        pthread_mutex_unlock(&mu);
}

Test(conn, cross_thread_send_and_close_through_handles)
{
        struct tern_server_opts o = echo_opts(2);
        tern_server *s = su_start(&o);
        int fds[4];
        for (int i = 0; i < 4; i++)
                fds[i] = tu_connect(tern_server_port(s), false);
        int four = 4;
        cr_assert(tu_wait_until(opened_at_least, &four, 5000));

        /* Send from this (non-loop) thread to every connection. */
        for (int i = 0; i < 4; i++)
                cr_assert_eq(tern_handle_send(s, handles[i], "hello", 5), 0);
        for (int i = 0; i < 4; i++) {
                char buf[5];
                /* Handles were recorded in open order, which may differ from
                 * connect order across workers: every client gets one hello. */
                cr_assert_eq(tu_read_exact(fds[i], buf, 5, 5000), 0);
                cr_assert_eq(memcmp(buf, "hello", 5), 0);
        }

        /* Close one through its handle: exactly one client sees EOF. */
        tern_handle victim = handles[0];
        cr_assert_eq(tern_handle_close(s, victim), 0);
        int one = 1;
        cr_assert(tu_wait_until(closed_at_least_1, &one, 5000));

        /* The handle is stale now: every operation is a safe no-op. */
        cr_assert_eq(tern_handle_send(s, victim, "x", 1), 0);
        cr_assert_eq(tern_handle_close(s, victim), 0);
        struct post_rec pr = {0};
        cr_assert_eq(tern_handle_post(s, victim, post_cb, &pr), 0);
        struct post_rec live = {0};
        cr_assert_eq(tern_handle_post(s, handles[1], post_cb, &live), 0);
        int need = 1;
        cr_assert(tu_wait_until(opened_at_least, &need, 100)); /* let the loop run */
        for (int t = 0; t < 500 && (get_locked(&pr.calls) == 0 || get_locked(&live.calls) == 0);
             t++)
                usleep(1000);
        cr_assert_eq(get_locked(&pr.calls), 1);
        cr_assert(pr.got_null, "stale handle must yield a NULL connection");
        cr_assert_eq(get_locked(&live.calls), 1);
        cr_assert(!live.got_null);
        cr_assert_eq(get_locked(&nclose), 1, "a stale handle closed something");

        /* Handles that were never valid for this server. */
        cr_assert_eq(tern_handle_send(s, TERN_HANDLE_NONE, "x", 1), -EINVAL);
        cr_assert_eq(tern_handle_close(s, (tern_handle)200 << 56), -EINVAL);

        for (int i = 0; i < 4; i++)
                close(fds[i]);
        su_stop(s);
        /* After the loops finished, posting is refused, not lost. */
}

static void loop_task(tern_loop *l, void *arg)
{
        int *ran = arg;
        __atomic_store_n(ran, tern_loop_index(l) + 1, __ATOMIC_RELEASE);
        cr_assert_eq(tern_loop_current(), l);
}

Test(conn, loop_post_runs_on_the_loop_thread)
{
        struct tern_server_opts o = echo_opts(2);
        tern_server *s = su_start(&o);
        int ran = 0;
        cr_assert_eq(tern_loop_post(tern_server_loop(s, 1), loop_task, &ran), 0);
        for (int t = 0; t < 5000 && !__atomic_load_n(&ran, __ATOMIC_ACQUIRE); t++)
                usleep(1000);
        cr_assert_eq(ran, 2);
        cr_assert_null(tern_loop_current());
        tern_loop *l0 = tern_server_loop(s, 0);
        su_stop(s);
        (void)l0;
}

/* Peers misbehaving (resets, FIN then RST, half-close, mass kill): see
 * test_peer.c, which also checks descriptors and CLOSE-WAIT afterwards. */

/* ---- limits ---- */

Test(conn, max_conns_closes_the_excess_at_once)
{
        struct tern_server_opts o = echo_opts(2);
        o.max_conns = 5;
        tern_server *s = su_start(&o);
        int fds[5];
        for (int i = 0; i < 5; i++)
                fds[i] = tu_connect(tern_server_port(s), false);
        int five = 5;
        cr_assert(tu_wait_until(opened_at_least, &five, 5000));
        int extra = tu_connect(tern_server_port(s), false);
        cr_assert_geq(extra, 0);
        cr_assert_eq(tu_wait_eof(extra, 5000), 0, "the 6th connection was not closed");
        close(extra);
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.rejected, 1, "rejected %lu accepted %lu conns %lu",
                     (unsigned long)st.rejected, (unsigned long)st.accepted,
                     (unsigned long)st.conns);
        cr_assert_eq(st.conns, 5);
        for (int i = 0; i < 5; i++) {
                char b;
                cr_assert_eq(tu_write_all(fds[i], "k", 1), 0);
                cr_assert_eq(tu_read_exact(fds[i], &b, 1, 5000), 0);
        }
        /* A slot frees up: the next client is served. */
        close(fds[0]);
        int one = 1;
        cr_assert(tu_wait_until(closed_at_least_1, &one, 5000));
        usleep(20000); /* the connection is freed at the end of its iteration */
        int again = tu_connect(tern_server_port(s), false);
        char b;
        cr_assert_eq(tu_write_all(again, "z", 1), 0);
        cr_assert_eq(tu_read_exact(again, &b, 1, 5000), 0);
        close(again);
        for (int i = 1; i < 5; i++)
                close(fds[i]);
        su_stop(s);
}

Test(conn, idle_timeout_closes_silent_clients_only)
{
        struct tern_server_opts o = echo_opts(1);
        o.idle_timeout_ms = 150;
        tern_server *s = su_start(&o);
        int quiet = tu_connect(tern_server_port(s), false);
        int chatty = tu_connect(tern_server_port(s), false);
        /* The chatty one talks every 40 ms for 600 ms. */
        for (int i = 0; i < 15; i++) {
                char b;
                cr_assert_eq(tu_write_all(chatty, "c", 1), 0);
                cr_assert_eq(tu_read_exact(chatty, &b, 1, 2000), 0);
                usleep(40000);
        }
        cr_assert_eq(tu_wait_eof(quiet, 100), 0, "idle client still open after 600 ms");
        char b;
        cr_assert_eq(tu_write_all(chatty, "c", 1), 0);
        cr_assert_eq(tu_read_exact(chatty, &b, 1, 2000), 0, "active client was closed");
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.idle_timeouts, 1);
        cr_assert_eq(reasons[0], TERN_CLOSE_IDLE);
        close(quiet);
        close(chatty);
        su_stop(s);
}

/* A server that answers "F" with 256 KiB, as often as asked. */
static void flood_message(tern_conn *c, struct tern_buf *in)
{
        static uint8_t big[256 * 1024];
        size_t n = tern_buf_len(in);
        for (size_t i = 0; i < n && !tern_conn_closing(c); i++)
                tern_conn_send(c, big, sizeof(big));
        tern_buf_consume(in, n);
}

static void rec_high(tern_conn *c, size_t q)
{
        pthread_mutex_lock(&mu);
        nhigh++;
        pthread_mutex_unlock(&mu);
}

static void rec_low(tern_conn *c, size_t q)
{
        pthread_mutex_lock(&mu);
        nlow++;
        pthread_mutex_unlock(&mu);
}

static void rec_complete(tern_conn *c)
{
        pthread_mutex_lock(&mu);
        ncomplete++;
        pthread_mutex_unlock(&mu);
}

static const struct tern_conn_ops flood_ops = {
    .on_open = rec_open,
    .on_message = flood_message,
    .on_close = rec_close,
    .on_high_water = rec_high,
    .on_low_water = rec_low,
    .on_write_complete = rec_complete,
};

Test(conn, output_cap_closes_a_reader_that_never_reads)
{
        struct tern_server_opts o = echo_opts(1);
        o.ops = &flood_ops;
        o.max_outbuf = 1 << 20;
        tern_server *s = su_start(&o);
        int fd = tu_connect(tern_server_port(s), false);
        /* 40 requests = 10 MiB of replies that we never read. */
        cr_assert_eq(tu_write_all(fd, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", 40), 0);
        int one = 1;
        cr_assert(tu_wait_until(closed_at_least_1, &one, 5000));
        cr_assert_eq(reasons[0], TERN_CLOSE_OUTLIMIT);
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.outbuf_overflows, 1);
        close(fd);
        su_stop(s);
}

Test(conn, water_marks_and_write_complete)
{
        struct tern_server_opts o = echo_opts(1);
        o.ops = &flood_ops;
        o.high_water = 512 * 1024;
        o.low_water = 64 * 1024;
        tern_server *s = su_start(&o);
        int fd = tu_connect(tern_server_port(s), false);
        int small = 16 * 1024;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        /* 8 MiB of replies: more than loopback's socket buffers absorb. */
        cr_assert_eq(tu_write_all(fd, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", 32), 0);
        for (int t = 0; t < 5000 && get_locked(&nhigh) == 0; t++)
                usleep(1000);
        cr_assert_eq(get_locked(&nhigh), 1);
        cr_assert_eq(get_locked(&nlow), 0);
        /* Now read it all: low water, then write-complete. */
        size_t want = 32 * 256 * 1024;
        uint8_t *buf = malloc(want);
        cr_assert_eq(tu_read_exact(fd, buf, want, 10000), 0);
        free(buf);
        for (int t = 0; t < 5000 && get_locked(&ncomplete) == 0; t++)
                usleep(1000);
        cr_assert_eq(get_locked(&nlow), 1);
        cr_assert_eq(get_locked(&ncomplete), 1);
        close(fd);
        su_stop(s);
}

/* ---- timers on loops ---- */

static int timer_fired;
static struct tern_timer user_timer;

static void user_timer_cb(struct tern_timer *t, void *arg)
{
        __atomic_fetch_add(&timer_fired, 1, __ATOMIC_RELAXED);
}

static void worker_start(tern_loop *l, void *user)
{
        if (tern_loop_index(l) == 0) {
                tern_timer_init(&user_timer, user_timer_cb, NULL);
                tern_loop_timer_start(l, &user_timer, 5, 5);
        }
}

static void worker_stop(tern_loop *l, void *user)
{
        if (tern_loop_index(l) == 0)
                tern_loop_timer_stop(l, &user_timer);
}

Test(conn, repeating_user_timer_on_a_worker)
{
        struct tern_server_opts o = echo_opts(2);
        o.on_worker_start = worker_start;
        o.on_worker_stop = worker_stop;
        tern_server *s = su_start(&o);
        for (int t = 0; t < 5000 && __atomic_load_n(&timer_fired, __ATOMIC_RELAXED) < 5; t++)
                usleep(1000);
        cr_assert_geq(__atomic_load_n(&timer_fired, __ATOMIC_RELAXED), 5);
        su_stop(s); /* asserts the timer was disarmed: zero live timers */
}

/* Running out of descriptors: see abuse.fd_exhaustion_* in test_abuse.c. */

/* ---- closing from inside on_close ---- */

static tern_handle handle_in_close;
static int reentrant_closes;

static void close_reenters(tern_conn *c, enum tern_close_reason r, int err)
{
        pthread_mutex_lock(&mu);
        handle_in_close = tern_conn_handle(c);
        reentrant_closes++;
        nclose++;
        pthread_mutex_unlock(&mu);
        tern_conn_abort(c); /* must not close twice */
        tern_conn_close(c);
        cr_assert_eq(tern_conn_send(c, "x", 1), -EPIPE);
}

static const struct tern_conn_ops reenter_ops = {
    .on_open = rec_open,
    .on_message = echo_message,
    .on_close = close_reenters,
};

Test(conn, on_close_sees_its_handle_and_may_close_again)
{
        struct tern_server_opts o = echo_opts(1);
        o.ops = &reenter_ops;
        tern_server *s = su_start(&o);
        int fd = tu_connect(tern_server_port(s), false);
        int one = 1;
        cr_assert(tu_wait_until(opened_at_least, &one, 5000));
        close(fd);
        cr_assert(tu_wait_until(closed_at_least_1, &one, 5000));
        usleep(20000);
        cr_assert_eq(get_locked(&reentrant_closes), 1);
        pthread_mutex_lock(&mu);
        cr_assert_eq(handle_in_close, handles[0], "on_close saw a different handle");
        pthread_mutex_unlock(&mu);
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.closed, 1);
        su_stop(s);
}
