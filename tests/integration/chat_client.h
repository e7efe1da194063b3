/*
 * What the tern-chat tests (test_chat_*.c) share. Line-oriented loopback
 * clients: one blocking socket each, a receive buffer, and a poll() pump
 * for many at once. Every line the server sends must end with "\r\n"; a
 * line that does not is a failure (-EPROTO). Then the server itself,
 * compiled in, and a fixture that starts it and checks at the end that it
 * freed everything.
 */
#ifndef TERN_CHAT_CLIENT_H
#define TERN_CHAT_CLIENT_H

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "srvutil.h"
#include "testutil.h"

#define CC_LINE_MAX 16384

struct cc {
        int fd;
        char nick[64];
        char *buf; /* buf[start, len) is received, not yet returned as lines */
        size_t start, len, cap;
        bool eof;
        int err; /* socket error seen, or 0 */
};

static inline int64_t cc_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what is there (waiting up to @timeout_ms for something). Returns
 * bytes read, 0 on timeout, -ENODATA at end of stream, or -errno. */
static inline int cc_fill(struct cc *c, int timeout_ms)
{
        if (c->eof)
                return -ENODATA;
        if (c->err)
                return c->err;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int r = poll(&pfd, 1, timeout_ms);
        if (r <= 0)
                return r < 0 && errno != EINTR ? -errno : 0;
        if (c->start) {
                memmove(c->buf, c->buf + c->start, c->len - c->start);
                c->len -= c->start;
                c->start = 0;
        }
        if (c->cap - c->len < 65536) {
                size_t cap = c->cap ? c->cap * 2 : 131072;
                while (cap - c->len < 65536)
                        cap *= 2;
                c->buf = realloc(c->buf, cap);
                c->cap = cap;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (n == 0) {
                c->eof = true;
                return -ENODATA;
        }
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                c->err = -errno;
                return c->err;
        }
        c->len += (size_t)n;
        return (int)n;
}

/* Takes one complete line out of the buffer into @out (NUL-terminated,
 * without "\r\n"). Returns its length, -EAGAIN if no complete line is
 * buffered, -EPROTO for a line not ending in "\r\n" or longer than @cap. */
static inline int cc_pop(struct cc *c, char *out, size_t cap)
{
        char *p = c->buf + c->start;
        size_t avail = c->len - c->start;
        char *nl = avail ? memchr(p, '\n', avail) : NULL;
        if (!nl)
                return -EAGAIN;
        size_t end = (size_t)(nl - p);
        if (end == 0 || p[end - 1] != '\r' || end - 1 >= cap)
                return -EPROTO;
        size_t len = end - 1;
        memcpy(out, p, len);
        out[len] = '\0';
        c->start += end + 1;
        return (int)len;
}

/* The next line within @timeout_ms: its length, -ETIMEDOUT, -ENODATA (the
 * server closed), -EPROTO, or a socket error. */
static inline int cc_line(struct cc *c, char *out, size_t cap, int timeout_ms)
{
        int64_t deadline = cc_now_ms() + timeout_ms;
        for (;;) {
                int r = cc_pop(c, out, cap);
                if (r != -EAGAIN)
                        return r;
                int64_t left = deadline - cc_now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                r = cc_fill(c, (int)left);
                if (r < 0)
                        return r;
        }
}

static inline int cc_send(struct cc *c, const void *data, size_t len)
{
        return tu_write_all(c->fd, data, len);
}

static inline int cc_sendf(struct cc *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline int cc_sendf(struct cc *c, const char *fmt, ...)
{
        char line[CC_LINE_MAX];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(line))
                return -EOVERFLOW;
        return cc_send(c, line, (size_t)n);
}

/* Asserts that the next line is @want. */
#define cc_expect(c, want)                                                                         \
        do {                                                                                       \
                char cc_got_[CC_LINE_MAX];                                                         \
                int cc_r_ = cc_line((c), cc_got_, sizeof(cc_got_), 10000);                         \
                cr_assert_geq(cc_r_, 0, "%s: waiting for \"%s\": %s", (c)->nick, (want),           \
                              strerror(-cc_r_));                                                   \
                cr_assert_str_eq(cc_got_, (want), "%s: got \"%s\", want \"%s\"", (c)->nick,        \
                                 cc_got_, (want));                                                 \
        } while (0)

#define cc_expectf(c, ...)                                                                         \
        do {                                                                                       \
                char cc_want_[CC_LINE_MAX];                                                        \
                snprintf(cc_want_, sizeof(cc_want_), __VA_ARGS__);                                 \
                cc_expect((c), cc_want_);                                                          \
        } while (0)

/* Skips lines until one equals @want; returns how many were skipped, or a
 * negative error. */
static inline int cc_skip_to(struct cc *c, const char *want, int timeout_ms)
{
        char got[CC_LINE_MAX];
        int64_t deadline = cc_now_ms() + timeout_ms;
        for (int skipped = 0;; skipped++) {
                int64_t left = deadline - cc_now_ms();
                int r = cc_line(c, got, sizeof(got), left > 0 ? (int)left : 0);
                if (r < 0)
                        return r;
                if (strcmp(got, want) == 0)
                        return skipped;
        }
}

/* Waits for end of stream, ignoring lines. Returns 0 at EOF or reset,
 * -ETIMEDOUT otherwise. */
static inline int cc_wait_eof(struct cc *c, int timeout_ms)
{
        int64_t deadline = cc_now_ms() + timeout_ms;
        for (;;) {
                c->start = c->len = 0;
                int64_t left = deadline - cc_now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                int r = cc_fill(c, (int)left);
                if (r == -ENODATA || r == -ECONNRESET)
                        return 0;
                if (r < 0)
                        return r;
        }
}

/* Connects without reading anything. Returns 0 or -errno. */
static inline int cc_connect_raw(struct cc *c, uint16_t port)
{
        memset(c, 0, sizeof(*c));
        c->fd = tu_connect(port, false);
        if (c->fd < 0)
                return c->fd;
        snprintf(c->nick, sizeof(c->nick), "fd%d", c->fd);
        return 0;
}

/* Connects, reads "* welcome NICK" and "* NICK joined #lobby". */
static inline int cc_open(struct cc *c, uint16_t port)
{
        int r = cc_connect_raw(c, port);
        if (r)
                return r;
        char line[CC_LINE_MAX], want[128];
        r = cc_line(c, line, sizeof(line), 10000);
        if (r < 0)
                return r;
        if (strncmp(line, "* welcome ", 10) != 0 || strlen(line + 10) >= sizeof(c->nick))
                return -EPROTO;
        strcpy(c->nick, line + 10);
        snprintf(want, sizeof(want), "* %s joined #lobby", c->nick);
        r = cc_line(c, line, sizeof(line), 10000);
        if (r < 0)
                return r;
        return strcmp(line, want) ? -EPROTO : 0;
}

static inline void cc_close(struct cc *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        free(c->buf);
        c->buf = NULL;
        c->start = c->len = c->cap = 0;
}

/*
 * Pumps @n clients: reads whatever arrives and hands each complete line to
 * @on_line(i, line, len, arg) until @done(arg) or @timeout_ms. Returns 0,
 * -ETIMEDOUT, or the first error a client or @on_line reports.
 */
typedef int (*cc_line_cb)(int i, const char *line, size_t len, void *arg);
static inline int cc_pump(struct cc *cs, int n, cc_line_cb on_line, bool (*done)(void *), void *arg,
                          int timeout_ms)
{
        struct pollfd *pfds = calloc((size_t)n, sizeof(*pfds));
        char *line = malloc(CC_LINE_MAX);
        int64_t deadline = cc_now_ms() + timeout_ms;
        int ret = 0;
        while (!done(arg)) {
                int64_t left = deadline - cc_now_ms();
                if (left <= 0) {
                        ret = -ETIMEDOUT;
                        break;
                }
                for (int i = 0; i < n; i++)
                        pfds[i] =
                            (struct pollfd){.fd = cs[i].eof ? -1 : cs[i].fd, .events = POLLIN};
                int r = poll(pfds, (nfds_t)n, left > 100 ? 100 : (int)left);
                if (r < 0 && errno != EINTR) {
                        ret = -errno;
                        break;
                }
                for (int i = 0; i < n && ret == 0; i++) {
                        if (!(pfds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        int f = cc_fill(&cs[i], 0);
                        if (f < 0 && f != -ENODATA)
                                ret = f;
                        int len = 0;
                        while (ret == 0 && (len = cc_pop(&cs[i], line, CC_LINE_MAX)) >= 0)
                                ret = on_line(i, line, (size_t)len, arg);
                        if (ret == 0 && len == -EPROTO)
                                ret = -EPROTO;
                }
                if (ret)
                        break;
        }
        free(line);
        free(pfds);
        return ret;
}

/*
 * tern-chat is an application, not part of libtern: its modules (all but
 * main.c) are compiled into each test so that the tests can drive the
 * server in-process and check that it frees everything it allocated.
 * Listed bottom layer first (apps/chat/chat.h).
 */
#include "../../apps/common/cli.c"
#include "../../apps/common/tlsopt.c"
#include "../../apps/chat/live.c"
#include "../../apps/chat/registry.c"
#include "../../apps/chat/worker.c"
#include "../../apps/chat/fanout.c"
#include "../../apps/chat/cluster.c"
#include "../../apps/chat/client.c"
#include "../../apps/chat/cluster_cmds.c"
#include "../../apps/chat/who.c"
#include "../../apps/chat/commands.c"
#include "../../apps/chat/server.c"
#include "../../apps/chat/config.c"
#include "../../apps/chat/check.c"

/* ---- server start / stop ---- */

static inline struct chat_server *start_with(struct chat_opts *o)
{
        o->bind = "127.0.0.1";
        o->port = 0;
        if (!o->drain_timeout_ms)
                o->drain_timeout_ms = 2000;
        struct chat_server *cs = chat_server_new(o);
        cr_assert_not_null(cs, "chat_server_new: %s", strerror(errno));
        cr_assert_eq(chat_server_start(cs), 0);
        return cs;
}

static inline struct chat_server *start(int workers)
{
        struct chat_opts o;
        chat_opts_init(&o);
        o.workers = workers;
        o.flood_rate = 0; /* tests send far faster than people type */
        return start_with(&o);
}

static inline void stop(struct chat_server *cs)
{
        chat_server_stop(cs);
        cr_assert_eq(chat_server_wait(cs), 0);
        chat_server_free(cs);
        su_assert_nothing_live();
        struct chat_live_counts lc;
        chat_live_counts(&lc);
        cr_assert_eq(lc.clients, 0, "%ld clients still live", lc.clients);
        cr_assert_eq(lc.rooms, 0, "%ld rooms still live", lc.rooms);
        cr_assert_eq(lc.nicks, 0, "%ld nicknames still live", lc.nicks);
        cr_assert_eq(lc.msgs, 0, "%ld messages still live", lc.msgs);
}

/* Opens @n clients one after another; each earlier one sees each later
 * one join the lobby, and those notices are consumed here. */
static inline void open_all(struct cc *c, int n, uint16_t port)
{
        for (int i = 0; i < n; i++) {
                cr_assert_eq(cc_open(&c[i], port), 0, "client %d", i);
                for (int j = 0; j < i; j++)
                        cc_expectf(&c[j], "* %s joined #lobby", c[i].nick);
        }
}

static inline void close_all(struct cc *c, int n)
{
        for (int i = 0; i < n; i++)
                cc_close(&c[i]);
}

static inline void send_str(struct cc *c, const char *s)
{
        cr_assert_eq(cc_send(c, s, strlen(s)), 0, "%s: send failed", c->nick);
}

/* Moves @c to @room and waits for its own join notice (the room may be
 * spelt otherwise: its creator's spelling wins). */
static inline void join(struct cc *c, const char *room)
{
        cr_assert_eq(cc_sendf(c, "/join %s\r\n", room), 0);
        char want[128], got[CC_LINE_MAX];
        snprintf(want, sizeof(want), "* %s joined #%s", c->nick, room);
        int r;
        while ((r = cc_line(c, got, sizeof(got), 10000)) >= 0 && strcasecmp(got, want) != 0)
                ;
        cr_assert_geq(r, 0, "%s: no \"%s\": %s", c->nick, want, strerror(-r));
}

static inline void expect_eof(struct cc *c)
{
        char line[CC_LINE_MAX];
        int r = cc_line(c, line, sizeof(line), 10000);
        cr_assert(r == -ENODATA || r == -ECONNRESET, "%s: expected the end, got %d \"%s\"", c->nick,
                  r, r >= 0 ? line : "");
}

#endif
