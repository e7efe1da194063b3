/*
 * Stopping under load, and hosts that do not ignore SIGPIPE (issue 6).
 *
 * The graceful-stop tests run the real tern-echo program (build/bin, next
 * to this test's directory) and send it SIGTERM while 100 clients each have
 * 256 KiB of answers pending: the listener must close at once, every byte
 * must arrive intact, and the process must exit 0 well before the drain
 * deadline; clients that never read are cut off at the deadline instead.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "srvutil.h"
#include "testutil.h"

/* ---- running tern-echo ---- */

struct proc {
        pid_t pid;
        uint16_t port;
        int err_fd;
};

/* Starts tern-echo with @workers on an ephemeral loopback port; reads the
 * port from its start-up line. */
static void spawn_echo(struct proc *p, const char *workers)
{
        char path[4200];
        if (!tu_app_path("tern-echo", path, sizeof(path)))
                cr_skip_test("tern-echo is not built next to this test (build/bin)");
        int errp[2];
        cr_assert_eq(pipe(errp), 0);
        p->pid = fork();
        if (p->pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(errp[1], 2);
                close(errp[0]);
                char *argv[] = {path,        "--port",        "0", "--bind", "127.0.0.1",
                                "--workers", (char *)workers, NULL};
                char *env[] = {NULL};
                execve(path, argv, env);
                _exit(127);
        }
        close(errp[1]);
        p->err_fd = errp[0];
        char log[4096];
        size_t len = 0;
        unsigned port = 0;
        const char *key = "listening on 127.0.0.1 port ";
        while (!port && len < sizeof(log) - 1) {
                ssize_t n = read(p->err_fd, log + len, sizeof(log) - 1 - len);
                cr_assert_gt(n, 0, "tern-echo exited before listening");
                len += (size_t)n;
                log[len] = '\0';
                const char *k = strstr(log, key);
                if (k && strchr(k, '\n'))
                        sscanf(k + strlen(key), "%u", &port);
        }
        cr_assert_gt(port, 0);
        p->port = (uint16_t)port;
        /* Keep its log flowing so it never blocks on a full pipe. */
        fcntl(p->err_fd, F_SETFL, O_NONBLOCK);
}

static void drain_log(struct proc *p)
{
        char buf[4096];
        while (read(p->err_fd, buf, sizeof(buf)) > 0)
                ;
}

/* Waits for the process to exit; returns its wait status, or -1 after @ms. */
static int wait_exit(struct proc *p, int ms)
{
        int64_t end = tu_now_ms() + ms;
        do {
                int status;
                drain_log(p);
                if (waitpid(p->pid, &status, WNOHANG) == p->pid)
                        return status;
                usleep(5000);
        } while (tu_now_ms() < end);
        return -1;
}

/* ---- the clients ---- */

enum {
        CLIENTS = 100,
        PENDING = 256 * 1024,
        /* More than loopback's socket buffers hold, so that some of it is
         * still queued in tern when the deadline comes. */
        STUBBORN_PENDING = 8 << 20,
        DRAIN_MS = 5000, /* tern-echo's default drain_timeout_ms */
};

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 1099511628211ull;
        return h;
}

/* Connects with a small receive buffer (set before connecting, so the
 * window stays small): the answers then wait in the server, not here. */
static int connect_small(uint16_t port)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        int small = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
        return fd;
}

/* How long after SIGTERM a new connection is refused: the listener closed. */
static int64_t refused_after(uint16_t port, int64_t t0)
{
        while (tu_now_ms() - t0 < 2000) {
                int fd = tu_connect(port, false);
                if (fd == -ECONNREFUSED)
                        return tu_now_ms() - t0;
                if (fd >= 0)
                        close(fd);
                usleep(2000);
        }
        return -1;
}

/*
 * 100 clients send 256 KiB each and read nothing, so the echo of all of it
 * is pending when SIGTERM arrives; @stubborn more do the same but never
 * read. Returns the ms from SIGTERM to the exit, after checking every
 * reader's bytes.
 */
static int64_t stop_with_pending(int stubborn, const char *workers, int *status)
{
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        struct proc p;
        spawn_echo(&p, workers);
        int n = CLIENTS + stubborn;
        int *fds = calloc((size_t)n, sizeof(int));
        uint8_t *out = malloc(STUBBORN_PENDING), *in = malloc(STUBBORN_PENDING);
        for (int i = 0; i < n; i++) {
                size_t len = i < CLIENTS ? PENDING : STUBBORN_PENDING;
                fds[i] = connect_small(p.port);
                tu_pattern(out, len, (uint32_t)i, 0);
                cr_assert_eq(tu_write_all(fds[i], out, len), 0, "client %d", i);
        }
        usleep(200000); /* let the server read the last of it */

        int64_t t0 = tu_now_ms();
        cr_assert_eq(kill(p.pid, SIGTERM), 0);
        int64_t refused = refused_after(p.port, t0);
        cr_log_info("listener closed %lld ms after SIGTERM", (long long)refused);
        cr_assert_geq(refused, 0, "still accepting 2 s after SIGTERM");
        cr_assert_lt(refused, 500, "listener closed only %lld ms after SIGTERM",
                     (long long)refused);

        for (int i = 0; i < CLIENTS; i++) {
                tu_pattern(out, PENDING, (uint32_t)i, 0);
                cr_assert_eq(tu_read_exact(fds[i], in, PENDING, 10000), 0,
                             "client %d: pending answer not delivered", i);
                cr_assert_eq(fnv1a(in, PENDING), fnv1a(out, PENDING), "client %d: checksum", i);
                cr_assert_eq(tu_wait_eof(fds[i], 5000), 0, "client %d: no FIN", i);
        }
        *status = wait_exit(&p, DRAIN_MS + 3000);
        int64_t took = tu_now_ms() - t0;
        if (*status == -1)
                kill(p.pid, SIGKILL);
        /* The stubborn ones: whatever the kernel still held, then the end. */
        for (int i = CLIENTS; i < n; i++) {
                size_t got = 0;
                ssize_t r;
                while ((r = recv(fds[i], in, STUBBORN_PENDING, 0)) > 0)
                        got += (size_t)r;
                cr_assert_lt(got, STUBBORN_PENDING, "stubborn client %d got everything", i);
        }
        for (int i = 0; i < n; i++)
                close(fds[i]);
        close(p.err_fd);
        free(fds);
        free(out);
        free(in);
        return took;
}

/* 2 workers: an acceptor thread, signals on the main thread, which only
 * waits. 1 worker: the main thread is the worker (tern_server_run), so the
 * signal interrupts the loop itself. */
Test(stop, sigterm_delivers_every_pending_byte_and_exits_0_early)
{
        const char *workers[] = {"2", "1"};
        for (int i = 0; i < 2; i++) {
                int status;
                int64_t took = stop_with_pending(0, workers[i], &status);
                cr_log_info("%s worker(s): 100 x 256 KiB delivered; exited %lld ms after SIGTERM",
                            workers[i], (long long)took);
                cr_assert_neq(status, -1, "tern-echo did not exit");
                cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
                cr_assert_lt(took, DRAIN_MS / 2,
                             "exit took %lld ms: not well within the %d ms deadline",
                             (long long)took, DRAIN_MS);
        }
}

Test(stop, clients_not_reading_are_cut_at_the_drain_deadline)
{
        int status;
        int64_t took = stop_with_pending(5, "1", &status);
        cr_log_info("exited %lld ms after SIGTERM with 5 clients not reading", (long long)took);
        cr_assert_neq(status, -1, "tern-echo did not exit");
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
        cr_assert_geq(took, DRAIN_MS - 100, "exited before the deadline: %lld ms", (long long)took);
        cr_assert_lt(took, DRAIN_MS + 2000, "exit took %lld ms", (long long)took);
}

/* ---- SIGPIPE ---- */

static uint8_t reply[256 * 1024];

static void reply_big(tern_conn *c, struct tern_buf *in)
{
        for (size_t i = 0; i < tern_buf_len(in) && !tern_conn_closing(c); i++)
                tern_conn_send(c, reply, sizeof(reply));
        tern_buf_consume(in, tern_buf_len(in));
}

static tern_handle handles[64];
static int nhandles;
static pthread_mutex_t hmu = PTHREAD_MUTEX_INITIALIZER;

static void keep_handle(tern_conn *c)
{
        pthread_mutex_lock(&hmu);
        if (nhandles < 64)
                handles[nhandles++] = tern_conn_handle(c);
        pthread_mutex_unlock(&hmu);
}

static const struct tern_conn_ops big_ops = {.on_open = keep_handle, .on_message = reply_big};

/* The host: SIGPIPE at its default action (terminate), an in-process server
 * writing to peers that reset or vanish, from its loops and through
 * handles from this thread. Exits 0 if it survived. */
static int sigpipe_host(void)
{
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.bind = "127.0.0.1";
        o.workers = 2;
        o.ops = &big_ops;
        tern_server *s = tern_server_new(&o);
        if (!s || tern_server_start(s))
                return 2;
        for (int round = 0; round < 40; round++) {
                int fd = tu_connect(tern_server_port(s), false);
                if (fd < 0)
                        return 3;
                int small = 4096;
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
                if (tu_write_all(fd, "xxxxxxxx", 8))
                        return 4;
                usleep(2000);
                if (round % 2)
                        tu_set_rst_on_close(fd); /* else a FIN with unread data: RST too */
                close(fd);
                /* Keep writing to it, from this thread, through its handle. */
                pthread_mutex_lock(&hmu);
                tern_handle h = nhandles ? handles[nhandles - 1] : TERN_HANDLE_NONE;
                pthread_mutex_unlock(&hmu);
                for (int k = 0; k < 20 && h != TERN_HANDLE_NONE; k++)
                        tern_handle_send(s, h, reply, 4096);
        }
        usleep(100000);
        tern_server_stop(s);
        if (tern_server_wait(s))
                return 5;
        tern_server_free(s);
        return 0;
}

Test(stop, a_host_that_does_not_ignore_sigpipe_survives_dead_peers)
{
        pid_t pid = fork();
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                _exit(sigpipe_host());
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(!(WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE), "killed by SIGPIPE");
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "host status %d", status);
}
