/*
 * Shared by the fault tests: echo servers that record which server-side
 * fd serves which client (so a plan can aim at one connection), and a
 * client that streams a checksummable byte stream while reading the echo
 * back, so that it never deadlocks on full socket buffers and notices the
 * first wrong, missing or extra byte.
 */
#ifndef TERN_FAULT_CLIENT_H
#define TERN_FAULT_CLIENT_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fault_internal.h"
#include "line.h"
#include "srvutil.h"
#include "testutil.h"

/* ---- the server side: who is who, and how each connection ended ---- */

#define FC_MAX 64

struct fc_conn_rec {
        uint16_t peer_port;
        int fd;
        bool closed;
        enum tern_close_reason reason;
        int err;
};

static pthread_mutex_t fc_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fc_conn_rec fc_recs[FC_MAX];
static int fc_nrecs;

static inline uint16_t fc_peer_port(tern_conn *c)
{
        struct sockaddr_storage a;
        socklen_t len = sizeof(a);
        if (tern_conn_peer(c, (struct sockaddr *)&a, &len) < 0 || a.ss_family != AF_INET)
                return 0;
        return ntohs(((struct sockaddr_in *)&a)->sin_port);
}

static inline void fc_on_open(tern_conn *c)
{
        uint16_t port = fc_peer_port(c);
        pthread_mutex_lock(&fc_mu);
        if (fc_nrecs < FC_MAX)
                fc_recs[fc_nrecs++] =
                    (struct fc_conn_rec){.peer_port = port, .fd = tern_conn_fd(c)};
        pthread_mutex_unlock(&fc_mu);
}

static inline void fc_on_close(tern_conn *c, enum tern_close_reason reason, int err)
{
        int fd = tern_conn_fd(c);
        pthread_mutex_lock(&fc_mu);
        for (int i = 0; i < fc_nrecs; i++) {
                if (fc_recs[i].fd == fd && !fc_recs[i].closed) {
                        fc_recs[i].closed = true;
                        fc_recs[i].reason = reason;
                        fc_recs[i].err = err;
                }
        }
        pthread_mutex_unlock(&fc_mu);
}

static inline uint16_t fc_local_port(int fd)
{
        struct sockaddr_in a;
        socklen_t len = sizeof(a);
        cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        return ntohs(a.sin_port);
}

/* The server's record of client socket @cfd, once the server has opened it. */
static inline struct fc_conn_rec fc_record_of(int cfd)
{
        uint16_t port = fc_local_port(cfd);
        for (int t = 0; t < 5000; t++) {
                pthread_mutex_lock(&fc_mu);
                for (int i = 0; i < fc_nrecs; i++) {
                        if (fc_recs[i].peer_port == port) {
                                struct fc_conn_rec r = fc_recs[i];
                                pthread_mutex_unlock(&fc_mu);
                                return r;
                        }
                }
                pthread_mutex_unlock(&fc_mu);
                usleep(1000);
        }
        cr_assert_fail("the server never opened the connection from port %u", port);
        return (struct fc_conn_rec){0};
}

/* @r as it is now: whether and how that connection has closed. Matched by
 * peer port and fd both, since a later connection may reuse either. */
static inline struct fc_conn_rec fc_record_now(struct fc_conn_rec r)
{
        pthread_mutex_lock(&fc_mu);
        for (int i = 0; i < fc_nrecs; i++) {
                if (fc_recs[i].peer_port == r.peer_port && fc_recs[i].fd == r.fd) {
                        r = fc_recs[i];
                        break;
                }
        }
        pthread_mutex_unlock(&fc_mu);
        return r;
}

/* Echo; with fc_echo_halves each reply goes out as two iovecs (sendmsg). */
static bool fc_echo_halves;

static inline void fc_echo(tern_conn *c, struct tern_buf *in)
{
        size_t n = tern_buf_len(in);
        const uint8_t *p = tern_buf_data(in);
        if (fc_echo_halves && n > 1) {
                struct iovec iov[2] = {{(void *)p, n / 2}, {(void *)(p + n / 2), n - n / 2}};
                tern_conn_sendv(c, iov, 2);
        } else {
                tern_conn_send(c, p, n);
        }
        tern_buf_consume(in, n);
}

/* A failed send_frame (ENOMEM) dropped the frame: the stream cannot go on. */
static inline void fc_echo_frame(tern_conn *c, const struct tern_frame *f)
{
        if (f->kind == TERN_FRAME_DATA && tern_conn_send_frame(c, f->data, f->len) < 0)
                tern_conn_close(c);
}

static const struct tern_conn_ops fc_echo_ops = {
    .on_open = fc_on_open,
    .on_message = fc_echo,
    .on_close = fc_on_close,
};

static const struct tern_conn_ops fc_line_ops = {
    .on_open = fc_on_open,
    .on_frame = fc_echo_frame,
    .on_close = fc_on_close,
};

static struct tern_line_config fc_line_cfg;

static inline tern_server *fc_start(int workers, bool lines)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = workers;
        o.ops = lines ? &fc_line_ops : &fc_echo_ops;
        if (lines) {
                tern_line_config_init(&fc_line_cfg);
                fc_line_cfg.max_len = 1 << 20;
                o.codec = &tern_line_codec;
                o.codec_config = &fc_line_cfg;
        }
        return su_start(&o);
}

/* ---- the client side ---- */

enum fc_outcome {
        FC_COMPLETE, /* every byte came back, in order */
        FC_CLOSED,   /* a correct prefix came back, then EOF or reset */
        FC_TIMEOUT,  /* neither within the deadline: a stall */
        FC_CORRUPT,  /* a wrong byte came back */
        FC_ERROR,    /* the client itself failed */
};

static inline const char *fc_outcome_str(enum fc_outcome o)
{
        static const char *const s[] = {"complete", "closed", "TIMEOUT", "CORRUPT", "error"};
        return s[o];
}

struct fc_client {
        int fd;        /* connected (blocking or not); closed by fc_run */
        uint32_t seed; /* the stream's content */
        size_t total;  /* bytes to send */
        size_t chunk;  /* most bytes per send() */
        bool lines;    /* '\n'-terminated lines of letters, each at most line_max */
        size_t line_max;
        /* results */
        size_t sent, echoed;
        enum fc_outcome outcome;
};

static inline void fc_fill(struct fc_client *c, uint8_t *buf)
{
        tu_pattern(buf, c->total, c->seed, 0);
        if (!c->lines)
                return;
        unsigned r = c->seed;
        size_t next_nl = (size_t)rand_r(&r) % (c->line_max + 1);
        for (size_t i = 0; i < c->total; i++) {
                if (i == next_nl || i == c->total - 1) {
                        buf[i] = '\n';
                        next_nl = i + 1 + (size_t)rand_r(&r) % (c->line_max + 1);
                } else {
                        buf[i] = (uint8_t)('a' + buf[i] % 26);
                }
        }
}

static inline int64_t fc_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Streams the data and checks the echo; 20 s deadline. */
static inline void *fc_run(void *arg)
{
        struct fc_client *c = arg;
        uint8_t *want = malloc(c->total);
        uint8_t *got = malloc(65536);
        fc_fill(c, want);
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        int64_t deadline = fc_now_ms() + 20000;
        bool can_send = true;
        c->outcome = FC_TIMEOUT;
        while (c->echoed < c->total && fc_now_ms() < deadline) {
                struct pollfd p = {.fd = c->fd, .events = POLLIN};
                if (can_send && c->sent < c->total)
                        p.events |= POLLOUT;
                if (poll(&p, 1, 100) < 0 && errno != EINTR) {
                        c->outcome = FC_ERROR;
                        break;
                }
                if (p.revents & POLLOUT) {
                        size_t n = c->total - c->sent;
                        if (n > c->chunk)
                                n = c->chunk;
                        ssize_t w = send(c->fd, want + c->sent, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (w > 0)
                                c->sent += (size_t)w;
                        else if (w < 0 && errno != EAGAIN && errno != EINTR)
                                can_send = false; /* the server is gone: read what is left */
                }
                if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                ssize_t r = recv(c->fd, got, 65536, MSG_DONTWAIT);
                if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE))) {
                        c->outcome = FC_CLOSED;
                        break;
                }
                if (r < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        c->outcome = FC_ERROR;
                        break;
                }
                if (c->echoed + (size_t)r > c->sent ||
                    memcmp(got, want + c->echoed, (size_t)r) != 0) {
                        c->outcome = FC_CORRUPT;
                        break;
                }
                c->echoed += (size_t)r;
        }
        if (c->echoed == c->total)
                c->outcome = FC_COMPLETE;
        close(c->fd);
        c->fd = -1;
        free(want);
        free(got);
        return NULL;
}

/* Runs every client at once and waits for them all. */
static inline void fc_run_all(struct fc_client *cs, int n)
{
        pthread_t th[FC_MAX];
        for (int i = 0; i < n; i++)
                cr_assert_eq(pthread_create(&th[i], NULL, fc_run, &cs[i]), 0);
        for (int i = 0; i < n; i++)
                pthread_join(th[i], NULL);
}

static inline struct fc_client fc_client(uint16_t port, uint32_t seed, size_t total)
{
        int fd = tu_connect(port, false);
        cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
        return (struct fc_client){.fd = fd, .seed = seed, .total = total, .chunk = 16384};
}

/* A new client gets a full echo: the server is still up and serving. */
static inline void fc_assert_serving(uint16_t port, bool lines)
{
        struct fc_client c = fc_client(port, 777, 100000);
        c.lines = lines;
        c.line_max = 1000;
        fc_run(&c);
        cr_assert_eq(c.outcome, FC_COMPLETE, "a new client after the faults: %s, %zu of %zu",
                     fc_outcome_str(c.outcome), c.echoed, c.total);
}

#endif
