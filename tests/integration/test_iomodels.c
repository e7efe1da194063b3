/*
 * The I/O-model lab (tools/iomodels, docs/io-models.md) must keep working:
 * every model's echo server runs the same echo check here (many clients at
 * once, requests of random sizes up to 64 KiB, every byte compared), and
 * must exit 0 on SIGTERM.
 *
 * And the classic edge-triggered bug is shown, not just described: the
 * epoll-et server run with --naive reads once per notification; it must fail
 * the same check (its clients stall with data stuck in the server's socket),
 * and the correct server must pass it.
 *
 * The servers are separate programs (build/bin/iomodel-*, TERN_IOMODELS_DIR),
 * started on port 0; each prints "port N" on stdout, or "unsupported: WHY"
 * and exits 77 when the kernel refuses the model (io_uring switched off).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#ifndef TERN_IOMODELS_DIR
#define TERN_IOMODELS_DIR "build/bin"
#endif

#define MAX_MSG    65536
#define CLIENTS    50
#define MSGS       4
#define START_MS   5000
#define STOP_MS    5000
#define PASS_STALL 10000 /* a correct server may be slow, never silent this long */
#define BUG_STALL  2000  /* how long the naive server gets to show it is stuck */

struct server {
        pid_t pid;
        uint16_t port;
};

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Starts build/bin/iomodel-@model with --port 0 and up to two more
 * arguments (or NULL) and reads the port it prints. Skips the test if the
 * binary was not built or the model is unsupported here.
 */
static void server_start(struct server *s, const char *model, const char *a1, const char *a2)
{
        char path[512], line[256];
        size_t len = 0;
        int pfd[2];

        snprintf(path, sizeof(path), "%s/iomodel-%s", TERN_IOMODELS_DIR, model);
        if (access(path, X_OK))
                cr_skip_test("%s not built (liburing-dev missing?)", path);
        cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
        s->pid = fork();
        cr_assert_geq(s->pid, 0);
        if (s->pid == 0) {
                char *argv[] = {path, "--port", "0", (char *)a1, (char *)a2, NULL};

                /* A test that fails half-way must not leave a server (or a busy loop) behind. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(pfd[1], STDOUT_FILENO);
                execv(path, argv);
                _exit(127);
        }
        close(pfd[1]);
        /* One line, within START_MS. */
        for (int64_t deadline = now_ms() + START_MS; len < sizeof(line) - 1;) {
                struct pollfd p = {.fd = pfd[0], .events = POLLIN};
                int64_t left = deadline - now_ms();
                ssize_t n;

                if (left <= 0 || poll(&p, 1, (int)left) <= 0)
                        break;
                n = read(pfd[0], line + len, 1);
                if (n <= 0 || line[len] == '\n')
                        break;
                len++;
        }
        line[len] = '\0';
        close(pfd[0]);
        if (!strncmp(line, "unsupported:", 12)) {
                waitpid(s->pid, NULL, 0);
                s->pid = 0;
                cr_skip_test("iomodel-%s: %s", model, line);
        }
        if (sscanf(line, "port %hu", &s->port) != 1) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, NULL, 0);
                cr_assert_fail("iomodel-%s did not report its port (got '%s')", model, line);
        }
}

/* SIGTERM, then the server must exit 0 within STOP_MS. */
static void server_stop(struct server *s, const char *model)
{
        int status = 0;
        pid_t r = 0;

        kill(s->pid, SIGTERM);
        for (int64_t deadline = now_ms() + STOP_MS; now_ms() < deadline;) {
                r = waitpid(s->pid, &status, WNOHANG);
                if (r != 0)
                        break;
                usleep(2000);
        }
        if (r == 0) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, &status, 0);
                cr_assert_fail("iomodel-%s ignored SIGTERM", model);
        }
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "iomodel-%s did not exit cleanly on SIGTERM (status 0x%x)", model, status);
}

struct client {
        int fd;
        unsigned msg;       /* requests completed */
        size_t size;        /* current request */
        size_t sent, recvd; /* of the current request */
        size_t off;         /* stream offset of the current request */
        uint32_t seed;
        unsigned rnd;
};

struct echo_result {
        size_t want, got; /* bytes of the requests begun, bytes echoed and verified */
        int err;          /* 0, -ETIMEDOUT (stalled), -EPROTO (wrong byte), or -errno */
};

static size_t next_size(struct client *c, size_t max, unsigned idx)
{
        /* Every fourth client starts with a full-size request; the rest are random. */
        if (c->msg == 0 && idx % 4 == 0)
                return max;
        return 1 + (size_t)rand_r(&c->rnd) % max;
}

/*
 * @nclients clients each send @msgs requests one after another (the next
 * once the previous was echoed whole), sizes up to @max, every byte from a
 * per-client pattern and checked on the way back. All clients run at once
 * from one poll loop. Gives up after @stall_ms without progress.
 */
static struct echo_result echo_check(uint16_t port, unsigned nclients, unsigned msgs, size_t max,
                                     uint32_t seed, int stall_ms)
{
        struct client *cl = calloc(nclients, sizeof(*cl));
        struct pollfd *pfd = calloc(nclients, sizeof(*pfd));
        uint8_t *out = malloc(MAX_MSG), *in = malloc(MAX_MSG), *want = malloc(MAX_MSG);
        struct echo_result r = {0, 0, 0};
        unsigned left = nclients;
        int64_t last = now_ms();

        cr_assert(cl && pfd && out && in && want && max <= MAX_MSG);
        for (unsigned i = 0; i < nclients; i++) {
                struct client *c = &cl[i];

                c->seed = seed + i;
                c->rnd = seed * 31u + i;
                c->fd = tu_connect(port, false);
                cr_assert_geq(c->fd, 0, "connect: %s", strerror(-c->fd));
                fcntl(c->fd, F_SETFL, O_NONBLOCK);
                c->size = next_size(c, max, i);
                r.want += c->size;
        }
        while (left && !r.err) {
                unsigned np = 0;
                int n;

                for (unsigned i = 0; i < nclients; i++) {
                        struct client *c = &cl[i];

                        if (c->fd < 0)
                                continue;
                        pfd[np].fd = c->fd;
                        pfd[np].events = POLLIN | (c->sent < c->size ? POLLOUT : 0);
                        np++;
                }
                n = poll(pfd, np, 100);
                if (n < 0 && errno != EINTR) {
                        r.err = -errno;
                        break;
                }
                for (unsigned i = 0, k = 0; i < nclients && n > 0; i++) {
                        struct client *c = &cl[i];
                        short rev;

                        if (c->fd < 0)
                                continue;
                        rev = pfd[k++].revents;
                        if ((rev & POLLOUT) && c->sent < c->size) {
                                size_t chunk = c->size - c->sent;
                                ssize_t w;

                                tu_pattern(out, chunk, c->seed, c->off + c->sent);
                                w = write(c->fd, out, chunk);
                                if (w < 0 && errno != EAGAIN) {
                                        r.err = -errno;
                                        break;
                                }
                                if (w > 0)
                                        c->sent += (size_t)w;
                        }
                        if (!(rev & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        ssize_t got = read(c->fd, in, MAX_MSG);
                        if (got < 0 && errno == EAGAIN)
                                continue;
                        if (got <= 0) {
                                r.err = got == 0 ? -ECONNRESET : -errno;
                                break;
                        }
                        if ((size_t)got > c->sent - c->recvd) {
                                r.err = -EPROTO; /* more than was sent */
                                break;
                        }
                        tu_pattern(want, (size_t)got, c->seed, c->off + c->recvd);
                        if (memcmp(in, want, (size_t)got)) {
                                r.err = -EPROTO;
                                break;
                        }
                        c->recvd += (size_t)got;
                        r.got += (size_t)got;
                        last = now_ms();
                        if (c->recvd < c->size)
                                continue;
                        c->off += c->size;
                        if (++c->msg == msgs) {
                                close(c->fd);
                                c->fd = -1;
                                left--;
                                continue;
                        }
                        c->size = next_size(c, max, i);
                        c->sent = c->recvd = 0;
                        r.want += c->size;
                }
                if (!r.err && now_ms() - last > stall_ms)
                        r.err = -ETIMEDOUT;
        }
        for (unsigned i = 0; i < nclients; i++)
                if (cl[i].fd >= 0)
                        close(cl[i].fd);
        free(cl);
        free(pfd);
        free(out);
        free(in);
        free(want);
        return r;
}

static void check_model(const char *model, const char *a1, const char *a2)
{
        struct server s;
        struct echo_result r;

        server_start(&s, model, a1, a2);
        r = echo_check(s.port, CLIENTS, MSGS, MAX_MSG, 0x5eed, PASS_STALL);
        cr_expect_eq(r.err, 0, "iomodel-%s: %s after %zu of %zu bytes echoed", model,
                     strerror(-r.err), r.got, r.want);
        cr_expect_eq(r.got, r.want);
        server_stop(&s, model);
}

Test(iomodels, blocking_echoes_every_byte)
{
        check_model("blocking", NULL, NULL);
}

Test(iomodels, busy_poll_echoes_every_byte)
{
        check_model("busy", NULL, NULL);
}

Test(iomodels, select_echoes_every_byte)
{
        check_model("select", NULL, NULL);
}

Test(iomodels, poll_echoes_every_byte)
{
        check_model("poll", NULL, NULL);
}

Test(iomodels, epoll_lt_echoes_every_byte)
{
        check_model("epoll-lt", NULL, NULL);
}

Test(iomodels, epoll_et_echoes_every_byte)
{
        check_model("epoll-et", NULL, NULL);
}

Test(iomodels, sigio_echoes_every_byte)
{
        check_model("sigio", NULL, NULL);
}

/*
 * With room for two queued signals the realtime queue overflows at once and
 * the kernel falls back to plain SIGIO, which names no socket: the server's
 * full scan must still find every byte.
 */
Test(iomodels, sigio_survives_signal_queue_overflow)
{
        check_model("sigio", "--sigpending", "2");
}

Test(iomodels, uring_echoes_every_byte)
{
        check_model("uring", NULL, NULL);
}

/*
 * The classic edge-triggered bug: one 64 KiB request, a server that reads
 * 16 KiB per notification. The data left in its socket raises no new edge,
 * so the echo stops short and stays short; the correct server drains until
 * EAGAIN and echoes it all.
 */
Test(iomodels, et_reading_once_per_edge_loses_data)
{
        struct server s;
        struct echo_result naive_one, naive_many, right;

        server_start(&s, "epoll-et", "--naive", NULL);
        naive_one = echo_check(s.port, 1, 1, MAX_MSG, 7, BUG_STALL);
        naive_many = echo_check(s.port, CLIENTS, MSGS, MAX_MSG, 0x5eed, BUG_STALL);
        server_stop(&s, "epoll-et --naive");
        cr_expect_eq(naive_one.err, -ETIMEDOUT, "naive ET: one 64 KiB request was not stuck");
        cr_expect_lt(naive_one.got, (size_t)MAX_MSG, "naive ET echoed all %zu bytes",
                     naive_one.got);
        cr_expect_eq(naive_many.err, -ETIMEDOUT, "naive ET passed the echo check (%zu bytes)",
                     naive_many.got);

        server_start(&s, "epoll-et", NULL, NULL);
        right = echo_check(s.port, 1, 1, MAX_MSG, 7, PASS_STALL);
        server_stop(&s, "epoll-et");
        cr_expect_eq(right.err, 0, "correct ET: %s", strerror(-right.err));
        cr_expect_eq(right.got, (size_t)MAX_MSG);
}
