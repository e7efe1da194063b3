/*
 * Connectors over loopback: connect and round trip, refused with retries
 * and one give-up, a peer that goes away and comes back, a connect timeout
 * against a listener whose accept queue is full, and tear-down in every
 * state. Most connectors live on a client-only server (no_listen) and are
 * created and driven on its loop through tern_loop_post, as an application
 * thread would; one runs on a bare loop (tern_loop_new) with no server.
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

#include "line.h"
#include "srvutil.h"
#include "testutil.h"

/* ---- what the callbacks saw ---- */

#define MAXEV 64
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
        int opens, closes, errors, give_ups, frames;
        int err[MAXEV];
        uint32_t attempt[MAXEV];
        uint64_t err_at[MAXEV];
        int give_up_err;
        enum tern_close_reason close_reason;
        char got[256];
        size_t ngot;
} rec;

static void rec_reset(void)
{
        pthread_mutex_lock(&mu);
        memset(&rec, 0, sizeof(rec));
        pthread_mutex_unlock(&mu);
}

static int get(const int *v)
{
        pthread_mutex_lock(&mu);
        int x = *v;
        pthread_mutex_unlock(&mu);
        return x;
}

struct at_least {
        const int *v;
        int n;
};

static bool at_least_pred(void *p)
{
        struct at_least *a = p;
        return get(a->v) >= a->n;
}

static bool wait_count(const int *v, int n, int timeout_ms)
{
        struct at_least a = {v, n};
        return tu_wait_until(at_least_pred, &a, timeout_ms);
}

static size_t get_ngot(void)
{
        pthread_mutex_lock(&mu);
        size_t n = rec.ngot;
        pthread_mutex_unlock(&mu);
        return n;
}

static void on_open(tern_conn *c)
{
        pthread_mutex_lock(&mu);
        rec.opens++;
        pthread_mutex_unlock(&mu);
        cr_assert_not_null(tern_conn_connector(c));
        cr_assert_eq(tern_connector_conn(tern_conn_connector(c)), c);
        tern_conn_send(c, "hello", 5);
}

static void on_message(tern_conn *c, struct tern_buf *in)
{
        pthread_mutex_lock(&mu);
        size_t n = tern_buf_len(in);
        if (n > sizeof(rec.got) - rec.ngot)
                n = sizeof(rec.got) - rec.ngot;
        memcpy(rec.got + rec.ngot, tern_buf_data(in), n);
        rec.ngot += n;
        pthread_mutex_unlock(&mu);
        tern_buf_consume(in, tern_buf_len(in));
}

static void on_close(tern_conn *c, enum tern_close_reason r, int err)
{
        pthread_mutex_lock(&mu);
        rec.closes++;
        rec.close_reason = r;
        pthread_mutex_unlock(&mu);
}

static void on_connect_error(tern_connector *cn, int err, uint32_t attempt)
{
        pthread_mutex_lock(&mu);
        if (rec.errors < MAXEV) {
                rec.err[rec.errors] = err;
                rec.attempt[rec.errors] = attempt;
                rec.err_at[rec.errors] = tern_now_ms();
        }
        rec.errors++;
        pthread_mutex_unlock(&mu);
        cr_assert_eq(tern_connector_failures(cn), attempt);
        cr_assert_null(tern_connector_conn(cn));
}

static void on_give_up(tern_connector *cn, int err)
{
        pthread_mutex_lock(&mu);
        rec.give_ups++;
        rec.give_up_err = err;
        pthread_mutex_unlock(&mu);
}

static const struct tern_conn_ops client_ops = {
    .on_open = on_open,
    .on_message = on_message,
    .on_close = on_close,
};

/* ---- servers ---- */

/* A server with no listeners: its one worker hosts the connectors. */
static tern_server *new_client_side(void)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 1;
        o.no_listen = true;
        tern_server *s = tern_server_new(&o);
        cr_assert_not_null(s, "client-only server: %s", strerror(errno));
        cr_assert_eq(tern_server_port(s), 0);
        return s;
}

static void stop_free(tern_server *s)
{
        tern_server_stop(s);
        cr_assert_eq(tern_server_wait(s), 0);
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.conns, 0);
        tern_server_free(s);
}

static void default_opts(struct tern_connector_opts *o, uint16_t port)
{
        tern_connector_opts_init(o);
        o->host = "127.0.0.1";
        o->port = port;
        o->ops = &client_ops;
        o->on_connect_error = on_connect_error;
        o->on_give_up = on_give_up;
}

/* ---- running things on the client loop ---- */

struct call {
        struct tern_connector_opts opts;
        tern_connector *cn;
        int result;
        bool done;
};

static void start_task(tern_loop *l, void *arg)
{
        struct call *c = arg;
        c->cn = tern_connector_new(l, &c->opts);
        c->result = c->cn ? tern_connector_start(c->cn) : -errno;
        /* Outcomes come later, from the loop, never from inside start. */
        cr_assert_eq(rec.errors + rec.opens, 0);
        __atomic_store_n(&c->done, true, __ATOMIC_RELEASE);
}

static void free_task(tern_loop *l, void *arg)
{
        struct call *c = arg;
        tern_connector_free(c->cn);
        __atomic_store_n(&c->done, true, __ATOMIC_RELEASE);
}

static void stop_task(tern_loop *l, void *arg)
{
        struct call *c = arg;
        tern_connector_stop(c->cn);
        __atomic_store_n(&c->done, true, __ATOMIC_RELEASE);
}

static bool done_pred(void *p)
{
        return __atomic_load_n(&((struct call *)p)->done, __ATOMIC_ACQUIRE);
}

static void run_on(tern_server *s, tern_task_cb fn, struct call *c)
{
        __atomic_store_n(&c->done, false, __ATOMIC_RELEASE);
        cr_assert_eq(tern_loop_post(tern_server_loop(s, 0), fn, c), 0);
        cr_assert(tu_wait_until(done_pred, c, 5000));
}

static int listen_on(uint16_t port, int backlog)
{
        int fd = tu_listen(port, backlog);
        cr_assert_geq(fd, 0, "listen on %u: %s", port, strerror(-fd));
        return fd;
}

static int accept_within(int lfd, int timeout_ms)
{
        struct pollfd p = {lfd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) != 1)
                return -ETIMEDOUT;
        return accept(lfd, NULL, NULL);
}

/* ---- tests ---- */

Test(client, connects_and_round_trips_through_a_tern_server)
{
        rec_reset();
        tern_server *echo = su_start_echo(1);
        tern_server *cs = new_client_side();
        cr_assert_eq(tern_server_start(cs), 0);

        struct call c;
        default_opts(&c.opts, tern_server_port(echo));
        run_on(cs, start_task, &c);
        cr_assert_eq(c.result, 0);
        cr_assert(wait_count(&rec.opens, 1, 5000));
        for (int t = 0; t < 5000; t++) {
                pthread_mutex_lock(&mu);
                size_t n = rec.ngot;
                pthread_mutex_unlock(&mu);
                if (n >= 5)
                        break;
                usleep(1000);
        }
        pthread_mutex_lock(&mu);
        cr_assert_eq(rec.ngot, 5);
        cr_assert_eq(memcmp(rec.got, "hello", 5), 0);
        pthread_mutex_unlock(&mu);
        cr_assert_eq(get(&rec.errors), 0);

        struct tern_stats st;
        tern_server_stats(cs, &st, NULL);
        cr_assert_eq(st.connects, 1);
        cr_assert_eq(st.conns, 1);
        cr_assert_eq(st.accepted, 0, "an outgoing connection is not an accepted one");

        /* Free on the loop: the connection closes gracefully, on_close runs. */
        run_on(cs, free_task, &c);
        cr_assert(wait_count(&rec.closes, 1, 5000));
        stop_free(cs);
        stop_free(echo);
        su_assert_nothing_live();
}

Test(client, refused_retries_with_growing_delays_then_gives_up_once)
{
        rec_reset();
        tern_server *cs = new_client_side();
        cr_assert_eq(tern_server_start(cs), 0);
        struct call c;
        default_opts(&c.opts, tu_unused_port());
        c.opts.max_attempts = 4;
        c.opts.backoff_min_ms = 20;
        c.opts.backoff_max_ms = 1000;
        run_on(cs, start_task, &c);
        cr_assert_eq(c.result, 0);

        cr_assert(wait_count(&rec.give_ups, 1, 10000));
        usleep(300 * 1000); /* longer than any retry delay here: nothing more comes */
        pthread_mutex_lock(&mu);
        cr_assert_eq(rec.errors, 4);
        cr_assert_eq(rec.give_ups, 1);
        cr_assert_eq(rec.give_up_err, -ECONNREFUSED);
        cr_assert_eq(rec.opens, 0);
        cr_assert_eq(rec.closes, 0, "a connection that never opened reports no close");
        for (int i = 0; i < 4; i++) {
                cr_assert_eq(rec.err[i], -ECONNREFUSED, "attempt %d: %d", i + 1, rec.err[i]);
                cr_assert_eq(rec.attempt[i], (uint32_t)i + 1);
        }
        /* Never early: the wait after failure n is at least
         * max(min, min * 2^(n-1) / 2), a floor that grows. */
        uint64_t floor_ms[] = {20, 20, 40};
        for (int i = 0; i < 3; i++)
                cr_assert_geq(rec.err_at[i + 1] - rec.err_at[i], floor_ms[i],
                              "retry %d came after %lu ms", i + 1,
                              (unsigned long)(rec.err_at[i + 1] - rec.err_at[i]));
        pthread_mutex_unlock(&mu);

        struct tern_stats st;
        tern_server_stats(cs, &st, NULL);
        cr_assert_eq(st.connect_errors, 4);
        cr_assert_eq(st.connects, 0);

        /* Idle after giving up: start() tries again. */
        run_on(cs, free_task, &c);
        stop_free(cs);
        su_assert_nothing_live();
}

static bool got_at_least(void *p)
{
        pthread_mutex_lock(&mu);
        bool ok = rec.ngot >= *(size_t *)p;
        pthread_mutex_unlock(&mu);
        return ok;
}

Test(client, reconnects_when_the_peer_comes_back)
{
        rec_reset();
        uint16_t port = tu_unused_port();
        int lfd = listen_on(port, 16);
        tern_server *cs = new_client_side();
        cr_assert_eq(tern_server_start(cs), 0);
        struct call c;
        default_opts(&c.opts, port);
        c.opts.reconnect = true;
        c.opts.max_attempts = 0; /* never give up */
        c.opts.backoff_min_ms = 10;
        c.opts.backoff_max_ms = 100;
        run_on(cs, start_task, &c);

        int fd = accept_within(lfd, 5000);
        cr_assert_geq(fd, 0);
        char buf[5];
        cr_assert_eq(tu_read_exact(fd, buf, 5, 5000), 0);
        cr_assert_eq(memcmp(buf, "hello", 5), 0);
        cr_assert_eq(tu_write_all(fd, "A", 1), 0);
        size_t want = 1;
        cr_assert(tu_wait_until(got_at_least, &want, 5000));

        /* The peer goes away entirely: the connection closes, and attempts
         * are refused until it listens again. The listener goes first, so
         * no reconnect can land in its backlog and be reset. */
        close(lfd);
        close(fd);
        cr_assert(wait_count(&rec.closes, 1, 5000));
        cr_assert_eq(rec.close_reason, TERN_CLOSE_PEER);
        cr_assert(wait_count(&rec.errors, 2, 5000));

        lfd = listen_on(port, 16);
        fd = accept_within(lfd, 5000);
        cr_assert_geq(fd, 0, "no reconnect: %s", strerror(-fd));
        cr_assert_eq(tu_read_exact(fd, buf, 5, 5000), 0);
        cr_assert_eq(memcmp(buf, "hello", 5), 0);
        cr_assert(wait_count(&rec.opens, 2, 5000));
        /* It works again, both ways. */
        cr_assert_eq(tu_write_all(fd, "B", 1), 0);
        want = 2;
        cr_assert(tu_wait_until(got_at_least, &want, 5000));
        pthread_mutex_lock(&mu);
        cr_assert_eq(memcmp(rec.got, "AB", 2), 0);
        cr_assert_eq(rec.give_ups, 0);
        for (int i = 0; i < rec.errors && i < MAXEV; i++)
                cr_assert_eq(rec.err[i], -ECONNREFUSED);
        pthread_mutex_unlock(&mu);
        cr_assert_eq(tern_connector_failures(c.cn), 0, "a success resets the count");

        /* A stop closes the connection and does not come back. */
        run_on(cs, stop_task, &c);
        cr_assert_eq(tu_wait_eof(fd, 5000), 0);
        cr_assert(wait_count(&rec.closes, 2, 5000));
        cr_assert_eq(accept_within(lfd, 200), -ETIMEDOUT, "reconnected after a stop");
        close(fd);
        close(lfd);
        /* Left for tern_server_free to release. */
        stop_free(cs);
        su_assert_nothing_live();
}

/*
 * A listener whose accept queue is full drops SYNs (Linux counts them as
 * ListenOverflows), so a connect to it stays pending: a black hole that
 * needs no routing tricks. Fills it and returns the fds used.
 */
static int fill_backlog(int lfd, uint16_t port, int *fds, int max)
{
        int n = 0;
        for (; n < max; n++) {
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
                struct sockaddr_in a = {.sin_family = AF_INET,
                                        .sin_port = htons(port),
                                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
                connect(fd, (struct sockaddr *)&a, sizeof(a));
                fds[n] = fd;
                struct pollfd p = {fd, POLLOUT, 0};
                if (poll(&p, 1, 300) == 0)
                        return n + 1; /* this one hangs: the queue is full */
        }
        return -1;
}

Test(client, connect_times_out_on_a_black_hole)
{
        rec_reset();
        uint16_t port = tu_unused_port();
        int lfd = listen_on(port, 0);
        int fds[32];
        int nfds = fill_backlog(lfd, port, fds, 32);
        cr_assert_gt(nfds, 0, "could not fill the accept queue");

        tern_server *cs = new_client_side();
        cr_assert_eq(tern_server_start(cs), 0);
        struct call c;
        default_opts(&c.opts, port);
        c.opts.connect_timeout_ms = 150;
        c.opts.max_attempts = 2;
        c.opts.backoff_min_ms = 10;
        run_on(cs, start_task, &c);
        cr_assert(wait_count(&rec.give_ups, 1, 10000));
        pthread_mutex_lock(&mu);
        cr_assert_eq(rec.errors, 2);
        cr_assert_eq(rec.err[0], -ETIMEDOUT);
        cr_assert_eq(rec.err[1], -ETIMEDOUT);
        cr_assert_eq(rec.give_up_err, -ETIMEDOUT);
        cr_assert_eq(rec.opens, 0);
        pthread_mutex_unlock(&mu);

        /* Stopping while a connect hangs is silent and frees everything. */
        rec_reset();
        c.opts.connect_timeout_ms = 60000;
        run_on(cs, start_task, &c); /* a second connector, same black hole */
        usleep(50 * 1000);
        stop_free(cs); /* the drain aborts the attempt; tern_server_free frees both */
        cr_assert_eq(get(&rec.errors), 0);
        cr_assert_eq(get(&rec.give_ups), 0);
        for (int i = 0; i < nfds; i++)
                close(fds[i]);
        close(lfd);
        su_assert_nothing_live();
}

Test(client, connector_set_up_before_the_loop_runs)
{
        /* Before tern_server_start the caller's thread owns the loop. */
        rec_reset();
        tern_server *echo = su_start_echo(1);
        tern_server *cs = new_client_side();
        struct tern_connector_opts o;
        default_opts(&o, tern_server_port(echo));
        tern_connector *cn = tern_connector_new(tern_server_loop(cs, 0), &o);
        cr_assert_not_null(cn);
        cr_assert_eq(tern_connector_start(cn), 0);
        cr_assert_eq(tern_connector_start(cn), -EBUSY);
        cr_assert_eq(tern_connector_user(cn), NULL);
        cr_assert_eq(tern_connector_loop(cn), tern_server_loop(cs, 0));
        cr_assert_eq(tern_server_start(cs), 0);
        size_t want = 5;
        cr_assert(tu_wait_until(got_at_least, &want, 5000));
        stop_free(cs); /* drains the connection; frees the connector */
        cr_assert_eq(get(&rec.closes), 1);
        stop_free(echo);
        su_assert_nothing_live();
}

Test(client, rejects_bad_options)
{
        tern_server *cs = new_client_side();
        struct tern_connector_opts o;
        tern_connector_opts_init(&o);
        cr_assert_eq(o.max_attempts, 1);
        o.port = 1;
        cr_assert_null(tern_connector_new(tern_server_loop(cs, 0), &o)); /* no host */
        cr_assert_eq(errno, EINVAL);
        o.host = "127.0.0.1";
        o.backoff_max_ms = 1;
        o.backoff_min_ms = 2;
        cr_assert_null(tern_connector_new(tern_server_loop(cs, 0), &o));
        o.backoff_max_ms = 100;
        o.host = "no such host.invalid";
        cr_assert_null(tern_connector_new(tern_server_loop(cs, 0), &o));
        cr_assert_eq(errno, EINVAL);
        tern_server_free(cs);
        su_assert_nothing_live();
}

/* ---- the same codecs as accepted connections ---- */

static void frame_open(tern_conn *c)
{
        tern_conn_send_frame(c, "ping", 4);
}

static void on_frame(tern_conn *c, const struct tern_frame *f)
{
        pthread_mutex_lock(&mu);
        if (f->len == 4 && memcmp(f->data, "ping", 4) == 0)
                rec.frames++;
        pthread_mutex_unlock(&mu);
}

static const struct tern_conn_ops frame_ops = {.on_open = frame_open, .on_frame = on_frame};

Test(client, frames_with_a_codec)
{
        rec_reset();
        tern_server *echo = su_start_echo(1);
        tern_server *cs = new_client_side();
        cr_assert_eq(tern_server_start(cs), 0);
        static struct tern_line_config lc;
        tern_line_config_init(&lc);
        struct call c;
        default_opts(&c.opts, tern_server_port(echo));
        c.opts.ops = &frame_ops;
        c.opts.codec = &tern_line_codec;
        c.opts.codec_config = &lc;
        run_on(cs, start_task, &c);
        cr_assert(wait_count(&rec.frames, 1, 5000));
        run_on(cs, free_task, &c);
        stop_free(cs);
        stop_free(echo);
        su_assert_nothing_live();
}

/* A client-only program needs no server: a loop of its own, run on the
 * calling thread, stopped from a callback. */
static void stop_on_message(tern_conn *c, struct tern_buf *in)
{
        on_message(c, in);
        if (get_ngot() >= 5)
                tern_loop_stop(tern_conn_loop(c));
}

static const struct tern_conn_ops loop_client_ops = {
    .on_open = on_open,
    .on_message = stop_on_message,
    .on_close = on_close,
};

Test(client, connects_on_a_loop_of_its_own_without_a_server)
{
        rec_reset();
        tern_server *echo = su_start_echo(1);
        tern_loop *l = tern_loop_new(NULL);
        cr_assert_not_null(l);
        struct tern_connector_opts o;
        default_opts(&o, tern_server_port(echo));
        o.ops = &loop_client_ops;
        tern_connector *cn = tern_connector_new(l, &o);
        cr_assert_not_null(cn);
        cr_assert_eq(tern_connector_start(cn), 0);
        /* Runs here until the echo comes back and on_message stops it; the
         * drain then closes the connection gracefully. */
        cr_assert_eq(tern_loop_run(l), 0);
        cr_assert_eq(get_ngot(), 5);
        cr_assert_eq(memcmp(rec.got, "hello", 5), 0);
        cr_assert_eq(get(&rec.opens), 1);
        cr_assert_eq(get(&rec.closes), 1, "drained and closed before run returned");
        struct tern_stats st;
        tern_loop_stats(l, &st);
        cr_assert_eq(st.connects, 1);
        cr_assert_eq(st.conns, 0);
        tern_loop_free(l); /* frees the connector too */
        stop_free(echo);
        su_assert_nothing_live();
}
