/*
 * Peers that go away badly (issue 6): a reset with a megabyte of output
 * pending, FIN then RST on an idle connection, a half-close with a reply
 * still due, and a thousand clients killed at once. After each, the
 * server's counters and descriptors must be back to their baseline and no
 * socket of the server's port may be left in CLOSE-WAIT (a FIN tern never
 * answered with a close).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "srvutil.h"
#include "testutil.h"

/* ---- a server that answers each 'F' with 256 KiB, and echoes the rest ---- */

enum { CHUNK = 256 * 1024 };
static uint8_t big[CHUNK];

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static tern_handle last_open;
static int nclosed;
static enum tern_close_reason last_reason;

static void on_open(tern_conn *c)
{
        pthread_mutex_lock(&mu);
        last_open = tern_conn_handle(c);
        pthread_mutex_unlock(&mu);
}

static void on_message(tern_conn *c, struct tern_buf *in)
{
        const uint8_t *p = tern_buf_data(in);
        size_t n = tern_buf_len(in);
        for (size_t i = 0; i < n && !tern_conn_closing(c); i++) {
                if (p[i] == 'F')
                        tern_conn_send(c, big, sizeof(big));
                else
                        tern_conn_send(c, p + i, 1);
        }
        tern_buf_consume(in, n);
}

static void on_close(tern_conn *c, enum tern_close_reason r, int err)
{
        pthread_mutex_lock(&mu);
        nclosed++;
        last_reason = r;
        pthread_mutex_unlock(&mu);
}

static const struct tern_conn_ops ops = {
    .on_open = on_open, .on_message = on_message, .on_close = on_close};

static tern_server *start(int workers)
{
        tu_pattern(big, sizeof(big), 99, 0);
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = workers;
        o.ops = &ops;
        return su_start(&o);
}

/* ---- the baseline ---- */

/* Sockets of local port @port in CLOSE-WAIT (state 08), IPv4 and IPv6. */
static int close_wait_on(uint16_t port)
{
        static const char *const files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
        int n = 0;
        for (int f = 0; f < 2; f++) {
                FILE *fp = fopen(files[f], "r");
                if (!fp)
                        continue;
                char line[512];
                while (fgets(line, sizeof(line), fp)) {
                        char local[128];
                        unsigned st;
                        if (sscanf(line, " %*d: %127s %*s %x", local, &st) != 2)
                                continue;
                        char *colon = strrchr(local, ':');
                        if (colon && strtoul(colon + 1, NULL, 16) == port && st == 0x08)
                                n++;
                }
                fclose(fp);
        }
        return n;
}

struct baseline {
        tern_server *s;
        int fds;
        long buf_bytes;
};

static struct baseline baseline_of(tern_server *s)
{
        struct tern_live_counts lc;
        tern_live_counts(&lc);
        return (struct baseline){s, tu_open_fds(), lc.buf_bytes};
}

static bool back_to(void *p)
{
        struct baseline *b = p;
        struct tern_stats st;
        tern_server_stats(b->s, &st, NULL);
        struct tern_live_counts lc;
        tern_live_counts(&lc);
        return st.conns == 0 && st.accepted == st.closed && lc.conns == 0 &&
               lc.buf_bytes == b->buf_bytes && tu_open_fds() == b->fds &&
               close_wait_on(tern_server_port(b->s)) == 0;
}

/* Everything the peers cost must be given back within @ms. */
static void assert_back_to(struct baseline *b, int ms, const char *after)
{
        if (tu_wait_until(back_to, b, ms))
                return;
        struct tern_stats st;
        tern_server_stats(b->s, &st, NULL);
        struct tern_live_counts lc;
        tern_live_counts(&lc);
        cr_assert_fail("after %s: conns %lu (accepted %lu, closed %lu), live conns %ld, buffer "
                       "bytes %ld (baseline %ld), fds %d (baseline %d), CLOSE-WAIT %d",
                       after, (unsigned long)st.conns, (unsigned long)st.accepted,
                       (unsigned long)st.closed, lc.conns, lc.buf_bytes, b->buf_bytes,
                       tu_open_fds(), b->fds, close_wait_on(tern_server_port(b->s)));
}

static bool closed_reach(void *p)
{
        pthread_mutex_lock(&mu);
        bool r = nclosed >= *(int *)p;
        pthread_mutex_unlock(&mu);
        return r;
}

static void queued_of(tern_conn *c, void *arg)
{
        __atomic_store_n((long *)arg, c ? (long)tern_conn_queued(c) : -2, __ATOMIC_RELEASE);
}

/* Output queued on the last opened connection, asked on its own loop. */
static long server_queued(tern_server *s)
{
        long q = -1;
        pthread_mutex_lock(&mu);
        tern_handle h = last_open;
        pthread_mutex_unlock(&mu);
        cr_assert_eq(tern_handle_post(s, h, queued_of, &q), 0);
        for (int t = 0; t < 5000 && __atomic_load_n(&q, __ATOMIC_ACQUIRE) == -1; t++)
                usleep(1000);
        return __atomic_load_n(&q, __ATOMIC_ACQUIRE);
}

static bool opened(void *p)
{
        pthread_mutex_lock(&mu);
        bool r = last_open != TERN_HANDLE_NONE;
        pthread_mutex_unlock(&mu);
        return r;
}

/* ---- the peers ---- */

Test(peer, rst_with_a_megabyte_pending)
{
        tern_server *s = start(1);
        struct baseline b = baseline_of(s);
        int fd = tu_connect(tern_server_port(s), false);
        int small = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        cr_assert(tu_wait_until(opened, NULL, 5000));
        /* 32 x 256 KiB of answers we never read: the kernel's buffers take
         * a few MiB, the rest queues in the server. */
        cr_assert_eq(tu_write_all(fd, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", 32), 0);
        long q = 0;
        for (int t = 0; t < 100 && (q = server_queued(s)) < (1 << 20); t++)
                usleep(10000);
        cr_assert_geq(q, 1 << 20, "only %ld bytes queued in the server", q);
        tu_set_rst_on_close(fd);
        close(fd);
        int one = 1;
        cr_assert(tu_wait_until(closed_reach, &one, 5000));
        cr_assert_eq(last_reason, TERN_CLOSE_ERROR, "closed as %s",
                     tern_close_reason_str(last_reason));
        assert_back_to(&b, 5000, "a reset with 1 MiB pending");
        su_stop(s);
}

Test(peer, fin_then_rst_on_an_idle_connection)
{
        tern_server *s = start(1);
        struct baseline b = baseline_of(s);
        for (int i = 0; i < 20; i++) {
                int fd = tu_connect(tern_server_port(s), false);
                cr_assert_geq(fd, 0);
                shutdown(fd, SHUT_WR);
                if (i % 2) /* half of them let the server see the FIN first */
                        usleep(2000);
                tu_set_rst_on_close(fd);
                close(fd);
        }
        int all = 20;
        cr_assert(tu_wait_until(closed_reach, &all, 5000));
        assert_back_to(&b, 5000, "FIN then RST");
        su_stop(s);
}

Test(peer, half_close_with_a_reply_still_due)
{
        tern_server *s = start(1);
        struct baseline b = baseline_of(s);
        int fd = tu_connect(tern_server_port(s), false);
        /* Ask for 1 MiB and half-close at once: the answer is mostly still
         * queued in the server when its FIN arrives. */
        cr_assert_eq(tu_write_all(fd, "FFFF!", 5), 0);
        shutdown(fd, SHUT_WR);
        usleep(50000);
        cr_assert(tu_wait_until(opened, NULL, 5000));
        size_t want = 4 * CHUNK + 1;
        uint8_t *got = malloc(want);
        cr_assert_eq(tu_read_exact(fd, got, want, 10000), 0, "the reply was not delivered");
        for (int i = 0; i < 4; i++)
                cr_assert_eq(memcmp(got + (size_t)i * CHUNK, big, CHUNK), 0, "chunk %d differs", i);
        cr_assert_eq(got[want - 1], '!');
        free(got);
        cr_assert_eq(tu_wait_eof(fd, 5000), 0, "no FIN after the reply");
        int one = 1;
        cr_assert(tu_wait_until(closed_reach, &one, 5000));
        cr_assert_eq(last_reason, TERN_CLOSE_PEER);
        close(fd);
        assert_back_to(&b, 5000, "a half-close");
        su_stop(s);
}

static bool all_open(void *p)
{
        struct baseline *b = p;
        struct tern_stats st;
        tern_server_stats(b->s, &st, NULL);
        return st.conns >= 1000;
}

/* A child opens 1,000 connections (a tenth with 256 KiB of answers queued,
 * a tenth with half a request sent) and is killed with SIGKILL: the kernel
 * closes them all at once, with FINs and RSTs. */
Test(peer, a_thousand_clients_killed_at_once)
{
        enum { N = 1000 };
        struct rlimit rl;
        cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < N + 200)
                cr_skip_test("needs %d descriptors, the hard limit is %lu", N + 200,
                             (unsigned long)rl.rlim_cur);
        tern_server *s = start(2);
        struct baseline b = baseline_of(s);
        uint16_t port = tern_server_port(s);
        int ready[2];
        cr_assert_eq(pipe(ready), 0);
        pid_t pid = fork();
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(ready[0]);
                for (int i = 0; i < N; i++) {
                        int fd = tu_connect(port, false);
                        if (fd < 0)
                                _exit(10);
                        if (i % 10 == 1 && tu_write_all(fd, "F", 1))
                                _exit(11);
                        if (i % 10 == 2 && tu_write_all(fd, "xy", 2))
                                _exit(11);
                }
                if (write(ready[1], "r", 1) != 1)
                        _exit(12);
                pause();
                _exit(0);
        }
        close(ready[1]);
        char c;
        cr_assert_eq(read(ready[0], &c, 1), 1, "the child could not open %d connections", N);
        close(ready[0]);
        cr_assert(tu_wait_until(all_open, &b, 10000), "the server never saw %d connections", N);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status));
        assert_back_to(&b, 10000, "1,000 clients killed");
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.accepted, N);
        cr_assert_eq(st.closed, N);
        su_stop(s);
}

/* ---- a host that forks while connections are open ---- */

static void quit_on_q(tern_conn *c, struct tern_buf *in)
{
        if (memchr(tern_buf_data(in), 'Q', tern_buf_len(in)))
                tern_conn_abort(c);
        tern_buf_consume(in, tern_buf_len(in));
}

static const struct tern_conn_ops quit_ops = {
    .on_open = on_open, .on_message = quit_on_q, .on_close = on_close};

/*
 * A child forked without exec keeps a copy of every socket, so closing a
 * connection's descriptor in the server does not end the socket, and epoll
 * (which tracks the socket, not the descriptor) would keep reporting it
 * with a pointer to the freed connection. The peer keeps writing after the
 * server closed: nothing may reach the freed connection (ASan reports a
 * use-after-free otherwise) and the server must go on serving others.
 */
Test(peer, writes_after_close_while_a_forked_child_holds_the_socket)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 1;
        o.ops = &quit_ops;
        tern_server *s = su_start(&o);
        int fd = tu_connect(tern_server_port(s), false);
        cr_assert(tu_wait_until(opened, NULL, 5000));
        pid_t pid = fork();
        if (pid == 0) {
                usleep(500000); /* hold every inherited socket for a while */
                _exit(0);
        }
        cr_assert_eq(tu_write_all(fd, "Q", 1), 0);
        int one = 1;
        cr_assert(tu_wait_until(closed_reach, &one, 5000));
        for (int i = 0; i < 20; i++) {
                cr_assert_eq(tu_write_all(fd, "more", 4), 0);
                usleep(10000);
        }
        int other = tu_connect(tern_server_port(s), false);
        cr_assert_eq(tu_write_all(other, "Q", 1), 0);
        int two = 2;
        cr_assert(tu_wait_until(closed_reach, &two, 5000), "the server stopped serving");
        int status;
        waitpid(pid, &status, 0);
        close(fd);
        close(other);
        su_stop(s);
}
