/*
 * The acceptor in both places it can run: its own thread, or worker 0's loop
 * (tern_server_opts.accept). Over loopback, with echo servers.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "srvutil.h"
#include "testutil.h"

/* Threads of this process whose name starts with @prefix. */
static int threads_named(const char *prefix)
{
        DIR *d = opendir("/proc/self/task");
        cr_assert_not_null(d);
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                char path[300], name[32] = "";
                snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
                FILE *f = fopen(path, "r");
                if (!f)
                        continue; /* exited meanwhile */
                if (fgets(name, sizeof(name), f) && strncmp(name, prefix, strlen(prefix)) == 0)
                        n++;
                fclose(f);
        }
        closedir(d);
        return n;
}

struct named {
        const char *prefix;
        int want;
};

static bool has_threads(void *p)
{
        struct named *n = p;
        return threads_named(n->prefix) == n->want;
}

/* Thread names are set by the threads themselves: give them a moment. */
static void assert_acceptor_threads(int want, const char *why)
{
        struct named n = {"tern-acceptor", want};
        cr_assert(tu_wait_until(has_threads, &n, 5000), "%s: %d acceptor thread(s)", why,
                  threads_named(n.prefix));
}

/* Reads (and drops) whatever arrives until EOF or a reset. */
static int drain_to_close(int fd, int timeout_ms)
{
        char b[256];
        int64_t deadline = tu_now_ms() + timeout_ms;
        while (tu_now_ms() < deadline) {
                int r = tu_read_exact(fd, b, 1, (int)(deadline - tu_now_ms()));
                if (r == -ETIMEDOUT)
                        return r;
                if (r)
                        return 0; /* EOF or reset */
        }
        return -ETIMEDOUT;
}

static tern_server *start(int workers, enum tern_accept_mode mode)
{
        static const struct tern_conn_ops echo_ops = {.on_message = su_echo_message};
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = workers;
        o.accept = mode;
        o.ops = &echo_ops;
        return su_start(&o);
}

/* One connection's round trip with a @len-byte pattern. */
static void assert_echoes(int fd, uint32_t seed, size_t len)
{
        uint8_t out[4096], in[4096];
        cr_assert_leq(len, sizeof(out));
        tu_pattern(out, len, seed, 0);
        cr_assert_eq(tu_write_all(fd, out, len), 0);
        cr_assert_eq(tu_read_exact(fd, in, len, 5000), 0, "no echo");
        cr_assert_eq(memcmp(in, out, len), 0, "wrong bytes echoed");
}

Test(acceptor, auto_accepts_on_the_worker_with_one_worker_else_on_a_thread)
{
        tern_server *s = start(1, TERN_ACCEPT_AUTO);
        int fd = tu_connect(tern_server_port(s), false);
        assert_echoes(fd, 1, 100); /* the worker is up and named by now */
        cr_assert_eq(threads_named("worker-"), 1);
        cr_assert_eq(threads_named("tern-acceptor"), 0, "an acceptor thread with one worker");
        close(fd);
        su_stop(s);

        s = start(2, TERN_ACCEPT_AUTO);
        assert_acceptor_threads(1, "auto with two workers");
        su_stop(s);
        assert_acceptor_threads(0, "after stop");

        s = start(1, TERN_ACCEPT_THREAD);
        assert_acceptor_threads(1, "TERN_ACCEPT_THREAD with one worker");
        fd = tu_connect(tern_server_port(s), false);
        assert_echoes(fd, 2, 100);
        close(fd);
        su_stop(s);
}

/* Worker 0 accepts, keeps every other connection and hands the rest out. */
Test(acceptor, worker_mode_spreads_connections_round_robin)
{
        enum { WORKERS = 3, CLIENTS = 30 };
        tern_server *s = start(WORKERS, TERN_ACCEPT_WORKER);
        int fds[CLIENTS];
        for (int i = 0; i < CLIENTS; i++) {
                fds[i] = tu_connect(tern_server_port(s), false);
                cr_assert_geq(fds[i], 0);
        }
        for (int i = 0; i < CLIENTS; i++)
                assert_echoes(fds[i], (uint32_t)i, 1 + (size_t)i * 100);
        cr_assert_eq(threads_named("tern-acceptor"), 0);
        struct tern_stats per[WORKERS];
        tern_server_stats(s, NULL, per);
        for (int w = 0; w < WORKERS; w++)
                cr_assert_eq(per[w].accepted, CLIENTS / WORKERS, "worker %d accepted %lu", w,
                             (unsigned long)per[w].accepted);
        cr_assert_eq(per[0].wakeups, 0, "worker 0 was woken to take its own connections");
        for (int i = 0; i < CLIENTS; i++)
                close(fds[i]);
        su_stop(s);
}

/* Stop with clients connected and sending, in every mode, many times. */
Test(acceptor, stop_with_live_clients_in_every_mode)
{
        const enum tern_accept_mode modes[] = {TERN_ACCEPT_THREAD, TERN_ACCEPT_WORKER};
        for (int round = 0; round < 20; round++) {
                enum tern_accept_mode mode = modes[round % 2];
                int workers = 1 + round % 3;
                tern_server *s = start(workers, mode);
                int fds[8];
                for (int i = 0; i < 8; i++) {
                        fds[i] = tu_connect(tern_server_port(s), false);
                        cr_assert_geq(fds[i], 0);
                        assert_echoes(fds[i], (uint32_t)i, 64); /* accepted and served */
                        cr_assert_eq(tu_write_all(fds[i], "in flight", 9), 0);
                }
                su_stop(s); /* asserts nothing is left alive */
                for (int i = 0; i < 8; i++) {
                        cr_assert_eq(drain_to_close(fds[i], 5000), 0, "round %d: client %d open",
                                     round, i);
                        close(fds[i]);
                }
        }
}

/* After a stop the port is free again: the listeners were closed. */
Test(acceptor, stop_closes_the_listeners_in_worker_mode)
{
        tern_server *s = start(2, TERN_ACCEPT_WORKER);
        uint16_t port = tern_server_port(s);
        su_stop(s);
        int fd = tu_connect(port, false);
        cr_assert_lt(fd, 0, "still accepting after stop");
}

Test(acceptor, max_conns_in_worker_mode)
{
        static const struct tern_conn_ops echo_ops = {.on_message = su_echo_message};
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 1;
        o.accept = TERN_ACCEPT_WORKER;
        o.max_conns = 3;
        o.ops = &echo_ops;
        tern_server *s = su_start(&o);
        int fds[3];
        for (int i = 0; i < 3; i++) {
                fds[i] = tu_connect(tern_server_port(s), false);
                assert_echoes(fds[i], (uint32_t)i, 10);
        }
        int extra = tu_connect(tern_server_port(s), false);
        cr_assert_geq(extra, 0);
        cr_assert_eq(tu_wait_eof(extra, 5000), 0, "the fourth connection was not closed");
        close(extra);
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.rejected, 1);
        for (int i = 0; i < 3; i++)
                close(fds[i]);
        su_stop(s);
}

Test(acceptor, an_unknown_mode_is_einval)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.bind = "127.0.0.1";
        o.accept = (enum tern_accept_mode)7;
        errno = 0;
        cr_assert_null(tern_server_new(&o));
        cr_assert_eq(errno, EINVAL);
}

/* ---- tern_server_run: the caller's thread as worker 0 ---- */

static pthread_t opened_on[16];
static int opened_loop[16];
static int nopened;

static void record_open(tern_conn *c)
{
        int i = __atomic_fetch_add(&nopened, 1, __ATOMIC_ACQ_REL);
        if (i < 16) {
                opened_on[i] = pthread_self();
                opened_loop[i] = tern_loop_index(tern_conn_loop(c));
        }
}

struct runner {
        tern_server *s;
        pthread_t th;
        int result;
};

static void *run_server(void *p)
{
        struct runner *r = p;
        r->result = tern_server_run(r->s);
        return NULL;
}

static bool opened_n(void *p)
{
        return __atomic_load_n(&nopened, __ATOMIC_ACQUIRE) >= *(int *)p;
}

/* A recording echo server, served by tern_server_run on a new thread. */
static void run_recording(struct runner *r, int workers, enum tern_accept_mode mode)
{
        static const struct tern_conn_ops ops = {.on_open = record_open,
                                                 .on_message = su_echo_message};
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.bind = "127.0.0.1";
        o.workers = workers;
        o.accept = mode;
        o.ops = &ops;
        nopened = 0;
        *r = (struct runner){.s = tern_server_new(&o), .result = -1};
        cr_assert_not_null(r->s);
        cr_assert_eq(pthread_create(&r->th, NULL, run_server, r), 0);
}

static void run_on_caller(int workers, enum tern_accept_mode mode)
{
        struct runner r;
        run_recording(&r, workers, mode);
        tern_server *s = r.s;

        enum { CLIENTS = 6 };
        int fds[CLIENTS];
        for (int i = 0; i < CLIENTS; i++) {
                fds[i] = tu_connect(tern_server_port(s), false);
                assert_echoes(fds[i], (uint32_t)i, 200);
        }
        int want = CLIENTS;
        cr_assert(tu_wait_until(opened_n, &want, 5000));
        cr_assert_eq(tern_server_wait(s), -EINVAL, "wait while run serves");
        cr_assert_eq(threads_named("tern-acceptor"), 0);
        cr_assert_eq(threads_named("worker-"), workers - 1, "worker 0 has a thread of its own");
        for (int i = 0; i < CLIENTS; i++) {
                bool on_caller = pthread_equal(opened_on[i], r.th);
                cr_assert_eq(on_caller, opened_loop[i] == 0,
                             "connection %d of worker %d opened %s the caller's thread", i,
                             opened_loop[i], on_caller ? "on" : "off");
        }
        for (int i = 0; i < CLIENTS; i++)
                close(fds[i]);
        tern_server_stop(s);
        pthread_join(r.th, NULL);
        cr_assert_eq(r.result, 0);
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.conns, 0);
        tern_server_free(s);
        su_assert_nothing_live();
}

Test(acceptor, run_makes_the_calling_thread_worker_0)
{
        run_on_caller(1, TERN_ACCEPT_AUTO);
        run_on_caller(3, TERN_ACCEPT_WORKER);
}

/* With an acceptor thread, run is start + wait: every worker has a thread. */
Test(acceptor, run_with_an_acceptor_thread_starts_every_worker)
{
        struct runner r;
        run_recording(&r, 1, TERN_ACCEPT_THREAD);
        tern_server *s = r.s;
        int fd = tu_connect(tern_server_port(s), false);
        assert_echoes(fd, 9, 100);
        int one = 1;
        cr_assert(tu_wait_until(opened_n, &one, 5000));
        cr_assert_not(pthread_equal(opened_on[0], r.th));
        assert_acceptor_threads(1, "TERN_ACCEPT_THREAD under run");
        close(fd);
        tern_server_stop(s);
        pthread_join(r.th, NULL);
        cr_assert_eq(r.result, 0);
        tern_server_free(s);
        su_assert_nothing_live();
}
