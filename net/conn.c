/*
 * Connections: the read path, the write path, codec dispatch and closing.
 *
 * Reads: when the input buffer holds nothing, read straight into the loop's
 * 64 KiB spill area and hand the application a view of it; only bytes the
 * application leaves unconsumed are copied into a buffer of the connection's
 * own. An echo-style server therefore never allocates per message, and an
 * idle connection holds no buffer memory.
 *
 * Writes: when nothing is queued, write to the socket at once and queue only
 * what the kernel refused. EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET is registered
 * once, so a refused write is finished by the next EPOLLOUT edge without any
 * epoll_ctl on the data path.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "addr.h"
#include "conn_internal.h"
#include "error.h"
#include "fault_internal.h"
#include "live_internal.h"
#include "log.h"
#include "loop_internal.h"

static const struct tern_conn_ops no_ops;

/*
 * The hot-path syscalls go through syscall(2) rather than glibc's read() and
 * send(): those are cancellation points, and in a multi-threaded process each
 * call pays two atomic compare-exchanges for deferred cancellation (measured
 * with callgrind: about 60 of tern-echo's 370 user-space instructions per
 * request). tern's threads are never cancelled, so that work buys nothing.
 */
static inline ssize_t sys_read(int fd, void *buf, size_t len)
{
        return TERN__READ(fd, buf, len); /* syscall(SYS_read), or fault.c in tests */
}

static inline ssize_t sys_send(int fd, const void *buf, size_t len, int flags)
{
        return TERN__SEND(fd, buf, len, flags); /* syscall(SYS_sendto), or fault.c */
}

/*
 * Test builds only (compiled out otherwise): an injected EAGAIN or short
 * transfer left the socket ready, without the edge that follows a real one
 * when data or space arrives. Re-arming the fd makes epoll report it again,
 * as if that data or space had come just after. Keeps errno.
 */
static inline void fault_edge(struct tern_conn *c)
{
        if (TERN__FAULT_EDGE_OWED(c->io.fd)) {
                int e = errno;
                tern__io_modify(&c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
                errno = e;
        }
}

const char *tern_close_reason_str(enum tern_close_reason r)
{
        static const char *const names[] = {"local",     "peer",     "error",    "idle",
                                            "out-limit", "protocol", "shutdown", "in-limit"};
        return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}

void tern_conn_limits_init(struct tern_conn_limits *l)
{
        memset(l, 0, sizeof(*l));
        l->max_outbuf = 64u << 20;
        l->max_inbuf = 16u << 20;
        l->read_budget = 256u << 10;
        l->linger_ms = 5000;
}

static inline const struct tern_conn_limits *limits_of(const struct tern_conn *c)
{
        return &c->cfg->limits;
}

static void idle_timer_cb(struct tern_timer *t, void *arg);
static void close_after_flush(struct tern_conn *c, enum tern_close_reason reason, int err);
static const struct tern__io_kind conn_kind;

/* A connection the loop could not take on (no memory for it, its slot or its
 * codec state; epoll_ctl refused: @err) is closed at once. Say so, but at 1, 2, 4,
 * 8... failures only: under memory pressure a line per connection would
 * bury the log. */
static void note_setup_error(struct tern_loop *l, int fd, int err)
{
        tern__stat_add(l, TERN__STAT(setup_errors), 1);
        uint64_t n = l->stats.v[TERN__STAT(setup_errors)];
        if ((n & (n - 1)) == 0)
                tern_warn("loop %d: dropped a new connection (fd %d): %s (%llu so far)", l->index,
                          fd, strerror(err), (unsigned long long)n);
}

void tern__conn_cfg_put(struct tern__conn_cfg *cfg)
{
        if (cfg->refs && --cfg->refs == 0) {
                free(cfg->server_name);
                free(cfg);
        }
}

static void conn_connected(struct tern_conn *c);

/* ---- the transport (TLS) ----
 * Kept out of the plain path: a plain connection pays one test of
 * cfg->xport per read burst and per write. */

static inline void *xstate(const struct tern_conn *c)
{
        return TERN__CONN_XSTATE(c);
}

/*
 * Transport failures come from peers, often hostile ones: each is logged
 * with the peer and the reason, but at most 10 a second per worker, and the
 * next line says how many were left out.
 */
static __thread struct {
        uint64_t second;
        uint32_t said, held;
} xlog;

/* The peer for a log line; a TLS connection remembers it, as a reset socket
 * no longer tells. */
static const char *peer_of(struct tern_conn *c, char *buf, size_t size)
{
        const char *who = NULL;
        if (c->cfg->xport && xstate(c))
                who = c->cfg->xport->ops->peer(xstate(c), buf, size);
        return who ? who : tern_conn_peer_str(c, buf, size);
}

static __attribute__((noinline, cold)) void xport_warn(struct tern_conn *c, const char *what,
                                                       int err)
{
        struct tern_loop *l = c->io.loop;
        tern__stat_add(l, TERN__STAT(tls_errors), 1);
        uint64_t sec = l->now / 1000;
        if (sec != xlog.second) {
                xlog.second = sec;
                xlog.said = 0;
        }
        if (xlog.said >= 10) {
                xlog.held++;
                return;
        }
        xlog.said++;
        char peer[TERN_ADDRSTRLEN], why[200];
        const struct tern__xport_ops *x = c->cfg->xport->ops;
        const char *reason = err ? x->why(xstate(c), err, why, sizeof(why)) : "";
        const char *who = peer_of(c, peer, sizeof(peer));
        if (xlog.held)
                tern_warn("loop %d: %s: TLS %s%s%s; closing (%u similar lines left out)", l->index,
                          who, what, err ? ": " : "", reason, xlog.held);
        else
                tern_warn("loop %d: %s: TLS %s%s%s; closing", l->index, who, what, err ? ": " : "",
                          reason);
        xlog.held = 0;
}

/* A graceful end: close_notify before the FIN. */
static void xport_bye(struct tern_conn *c)
{
        if (c->cfg->xport && !(c->flags & TERN__CONN_HANDSHAKE) && xstate(c))
                c->cfg->xport->ops->shutdown(xstate(c));
}

static void xport_free(struct tern_conn *c)
{
        if (c->cfg->xport && xstate(c)) {
                c->cfg->xport->ops->close(xstate(c));
                TERN__CONN_XSTATE(c) = NULL;
        }
}

struct tern_conn *tern__conn_setup(struct tern_loop *l, int fd, struct tern__conn_cfg *cfg,
                                   bool connecting)
{
        int err = ENOMEM;
        struct tern_conn *c = TERN__CALLOC(1, sizeof(*c) + (cfg->xport ? sizeof(void *) : 0));
        if (!c)
                goto out_close_fd;
        c->io.kind = &conn_kind;
        c->io.loop = l;
        c->io.fd = fd;
        c->cfg = cfg;
        c->ops = cfg->ops ? cfg->ops : &no_ops;
        if (connecting)
                c->flags = TERN__CONN_CLIENT | TERN__CONN_CONNECTING;
        if (cfg->unix_domain)
                c->flags |= TERN__CONN_UNIX;
        c->idle_ms = cfg->idle_timeout_ms; /* armed when the connection opens */
        tern_timer_init(&c->idle_timer, idle_timer_cb, c);
        if (cfg->xport) {
                TERN__CONN_XSTATE(c) =
                    cfg->xport->ops->open(cfg->xport, fd, connecting, cfg->server_name);
                if (!TERN__CONN_XSTATE(c))
                        goto out_free_conn;
                c->flags |= TERN__CONN_HANDSHAKE; /* opens when the handshake ends */
        }
        int r = cfg->codec ? tern_conn_set_codec(c, cfg->codec, cfg->codec_config) : 0;
        if (r < 0) {
                err = -r;
                goto out_free_xport;
        }
        if (cfg->nodelay && !cfg->unix_domain) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        /* Also for a connect in progress: its completion is the EPOLLOUT
         * edge (or EPOLLERR), so this stays the only epoll_ctl. The event
         * carries the handle, not the pointer: see finish_close. */
        r = tern__io_register(&c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
        if (r < 0) {
                err = -r;
                goto out_free_codec;
        }
        if (cfg->refs)
                cfg->refs++;
        tern__live_add(TERN__LIVE_CONNS, 1);
        tern__loop_ref(l);
        if (!connecting) {
                tern__stat_add(l, TERN__STAT(accepted), 1);
                if (cfg->xport) /* not open until the handshake ends, by a deadline */
                        tern_conn_set_idle_timeout(c, cfg->xport->handshake_timeout_ms);
                else
                        conn_connected(c);
        }
        /* Data may have arrived before registration; the ET edge for it was
         * reported at EPOLL_CTL_ADD, so nothing to do here. */
        return c;

out_free_codec:
        if (c->codec && c->codec->state_free)
                c->codec->state_free(c->codec_state);
out_free_xport:
        xport_free(c);
out_free_conn:
        free(c);
out_close_fd:
        note_setup_error(l, fd, err); /* before the peer can see the close */
        close(fd);
        if (cfg->live && !connecting) /* the acceptor counted it against max_conns */
                __atomic_fetch_sub(cfg->live, 1, __ATOMIC_RELAXED);
        return NULL;
}

static void conn_connected(struct tern_conn *c)
{
        struct tern_loop *l = c->io.loop;
        c->flags &= ~TERN__CONN_CONNECTING;
        if (c->flags & TERN__CONN_CLIENT)
                tern__stat_add(l, TERN__STAT(connects), 1);
        tern__stat_add(l, TERN__STAT(conns), 1);
        c->last_active = (uint32_t)l->now;
        if (c->idle_ms)
                tern_conn_set_idle_timeout(c, c->idle_ms);
        if (TERN_LOG_ENABLED(TERN_LOG_DEBUG)) {
                char peer[TERN_ADDRSTRLEN];
                tern_debug("loop %d: %s: %s", l->index, peer_of(c, peer, sizeof(peer)),
                           c->flags & TERN__CONN_CLIENT ? "connected" : "accepted");
        }
        if (c->ops->on_open)
                c->ops->on_open(c);
}

/* Output left queued when a connection goes leaves the worker's gauge. */
static void drop_out(struct tern_conn *c)
{
        tern__stat_sub(c->io.loop, TERN__STAT(queued_bytes), tern_buf_len(&c->out));
        tern_buf_free(&c->out);
}

static void conn_free(struct tern__io *io)
{
        struct tern_conn *c = (struct tern_conn *)io;
        tern_buf_free(&c->in);
        drop_out(c);
        bool accepted = !(c->flags & TERN__CONN_CLIENT);
        long *live = c->cfg->live;
        tern__conn_cfg_put(c->cfg);
        free(c);
        tern__live_add(TERN__LIVE_CONNS, -1);
        if (accepted && live) /* only accepted connections count against max_conns */
                __atomic_fetch_sub(live, 1, __ATOMIC_RELAXED);
}

void tern__conn_close(struct tern_conn *c, enum tern_close_reason reason, int err)
{
        if (c->flags & TERN__CONN_CLOSED)
                return;
        struct tern_loop *l = c->io.loop;
        c->flags |= TERN__CONN_CLOSED;
        c->close_reason = (uint8_t)reason;
        c->close_err = err;
        tern__loop_timer_cancel(l, &c->idle_timer);
        /* Counted now, before the peer can see the close: open ones leave
         * the gauge, and every accepted one is closed (handshake or not). */
        if (!(c->flags & (TERN__CONN_CONNECTING | TERN__CONN_HANDSHAKE)))
                tern__stat_sub(l, TERN__STAT(conns), 1);
        if (!(c->flags & TERN__CONN_CONNECTING) &&
            (!(c->flags & TERN__CONN_HANDSHAKE) || !(c->flags & TERN__CONN_CLIENT)))
                tern__stat_add(l, TERN__STAT(closed), 1);
        /* on_close and the rest of the close run from the loop's top level
         * (finish_close), never inside the call that closed. */
        tern__io_defer(&c->io);
}

/* The rest of a close, from the loop: on_close, then the fd goes. */
static void finish_close(struct tern_conn *c)
{
        struct tern_loop *l = c->io.loop;
        bool opened = !(c->flags & (TERN__CONN_CONNECTING | TERN__CONN_HANDSHAKE));
        if (opened && TERN_LOG_ENABLED(TERN_LOG_DEBUG)) {
                char peer[TERN_ADDRSTRLEN];
                tern_debug("loop %d: %s: closed (%s%s%s)", l->index, peer_of(c, peer, sizeof(peer)),
                           tern_close_reason_str((enum tern_close_reason)c->close_reason),
                           c->close_err ? ": " : "",
                           c->close_err ? tern_strerror(c->close_err) : "");
        }
        /* on_close still sees the handle (to unregister it) and the socket
         * (tern_conn_peer for its log line). */
        if (opened && c->ops->on_close)
                c->ops->on_close(c, (enum tern_close_reason)c->close_reason, c->close_err);
        /* Read only now: on_close may have freed the connector. */
        struct tern__conn_cfg *cfg = c->cfg;
        if (cfg->owner && cfg->owner_ops)
                cfg->owner_ops->closed(cfg->owner, c, opened, c->close_err);
        tern__loop_unref(l);
        if (c->codec && c->codec->state_free)
                c->codec->state_free(c->codec_state);
        c->codec = NULL;
        xport_free(c);
        /* No EPOLL_CTL_DEL: close() unregisters the fd unless another
         * descriptor shares its file (a forked child not yet exec'd, a
         * posix_spawn in flight, a dup). Then its events keep coming with
         * this connection's handle, which the slot's new generation makes
         * stale, so the loop drops them: safe without a syscall per close. */
        tern__io_release(&c->io, false);
        c->flags |= TERN__CONN_STALE;
        close(c->io.fd);
        c->io.fd = -1;
        tern_buf_free(&c->in);
        drop_out(c);
}

/* Callbacks owed by calls the application made, now that none is running. */
static void conn_on_pending(struct tern__io *io)
{
        struct tern_conn *c = (struct tern_conn *)io;
        if (c->flags & TERN__CONN_CLOSED) {
                finish_close(c);
                return;
        }
        /* Each may close the connection or owe more: then it is deferred
         * again and comes back here. */
        if (c->owed & TERN__OWE_HIGH) {
                c->owed &= (uint8_t)~TERN__OWE_HIGH;
                c->ops->on_high_water(c, tern_buf_len(&c->out));
                if (c->flags & TERN__CONN_CLOSED)
                        return;
        }
        if (c->owed & TERN__OWE_LOW) {
                c->owed &= (uint8_t)~TERN__OWE_LOW;
                c->ops->on_low_water(c, tern_buf_len(&c->out));
                if (c->flags & TERN__CONN_CLOSED)
                        return;
        }
        if (c->owed & TERN__OWE_WRITTEN) {
                c->owed &= (uint8_t)~TERN__OWE_WRITTEN;
                c->ops->on_write_complete(c);
        }
}

static void owe(struct tern_conn *c, uint8_t what)
{
        c->owed |= what;
        tern__io_defer(&c->io);
}

/* ---- writing ---- */

/*
 * sock_sendv through the transport. Small pieces are gathered into one
 * plaintext buffer first, so a line and its prefix become one TLS record and
 * one syscall, not two of each. Nothing goes out before the handshake ends:
 * it stays queued and flushes then.
 */
static __attribute__((noinline)) ssize_t xport_sendv(struct tern_conn *c, const struct iovec *iov,
                                                     int iovcnt)
{
        if (c->flags & TERN__CONN_HANDSHAKE)
                return 0;
        const struct tern__xport_ops *x = c->cfg->xport->ops;
        uint8_t gather[16384]; /* one TLS record's worth */
        size_t total = 0;
        for (int i = 0; i < iovcnt; i++)
                total += iov[i].iov_len;
        tern__stat_add(c->io.loop, TERN__STAT(writes), 1);
        ssize_t n;
        if (iovcnt == 1 || total > sizeof(gather)) {
                size_t done = 0;
                for (int i = 0; i < iovcnt; i++) {
                        n = x->write(xstate(c), iov[i].iov_base, iov[i].iov_len);
                        if (n < 0 && done == 0)
                                goto out_failed;
                        if (n <= 0)
                                break;
                        done += (size_t)n;
                        if ((size_t)n < iov[i].iov_len)
                                break;
                }
                return (ssize_t)done;
        }
        size_t off = 0;
        for (int i = 0; i < iovcnt; i++) {
                memcpy(gather + off, iov[i].iov_base, iov[i].iov_len);
                off += iov[i].iov_len;
        }
        n = x->write(xstate(c), gather, total);
        if (n >= 0)
                return n;
out_failed:
        if (n == TERN_ETLS)
                xport_warn(c, "record error", (int)n);
        return n;
}

/* Sends @iov directly. Returns bytes written (maybe 0 on EAGAIN) or -errno. */
static ssize_t sock_sendv(struct tern_conn *c, const struct iovec *iov, int iovcnt)
{
        if (c->cfg->xport)
                return xport_sendv(c, iov, iovcnt);
        struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
        int fd = c->io.fd;
        tern__stat_add(c->io.loop, TERN__STAT(writes), 1);
        for (;;) {
                /* One buffer is the common case; send() skips sendmsg()'s
                 * msghdr and iovec copy-in. MSG_NOSIGNAL: never SIGPIPE. */
                ssize_t n = iovcnt == 1 ? sys_send(fd, iov[0].iov_base, iov[0].iov_len,
                                                   MSG_NOSIGNAL | MSG_DONTWAIT)
                                        : TERN__SENDMSG(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
                fault_edge(c);
                if (n >= 0)
                        return n;
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN)
                        return 0;
                return -errno;
        }
}

static void note_progress(struct tern_conn *c)
{
        c->last_active = (uint32_t)c->io.loop->now;
}

/* Called after the output buffer shrank or emptied. */
static void after_flush(struct tern_conn *c)
{
        size_t q = tern_buf_len(&c->out);
        const struct tern_conn_limits *lim = limits_of(c);
        if ((c->flags & TERN__CONN_HIGH) &&
            q <= (lim->low_water ? lim->low_water : lim->high_water / 2)) {
                c->flags &= ~TERN__CONN_HIGH;
                if (c->ops->on_low_water)
                        owe(c, TERN__OWE_LOW);
        }
        if (q)
                return;
        tern_buf_release_if_empty(&c->out);
        if (c->flags & TERN__CONN_WAS_QUEUED) {
                c->flags &= ~TERN__CONN_WAS_QUEUED;
                if (c->ops->on_write_complete && !(c->flags & TERN__CONN_CLOSED))
                        owe(c, TERN__OWE_WRITTEN);
        }
        if ((c->flags & (TERN__CONN_CLOSING | TERN__CONN_CLOSED)) == TERN__CONN_CLOSING) {
                xport_bye(c);
                tern__conn_close(c, c->close_reason, c->close_err);
        } else if ((c->flags & (TERN__CONN_SHUTWR | TERN__CONN_CLOSED)) == TERN__CONN_SHUTWR) {
                xport_bye(c);
                shutdown(c->io.fd, SHUT_WR); /* the FIN follows the last byte */
        }
}

static void flush_out(struct tern_conn *c)
{
        while (!tern_buf_empty(&c->out)) {
                struct iovec iov = {(void *)tern_buf_data(&c->out), tern_buf_len(&c->out)};
                ssize_t n = sock_sendv(c, &iov, 1);
                if (n < 0) {
                        tern__conn_close(c, TERN_CLOSE_ERROR, (int)n);
                        return;
                }
                if (n == 0)
                        break;
                tern_buf_consume(&c->out, (size_t)n);
                tern__stat_sub(c->io.loop, TERN__STAT(queued_bytes), (uint64_t)n);
                tern__stat_add(c->io.loop, TERN__STAT(bytes_out), (uint64_t)n);
                note_progress(c);
        }
        after_flush(c);
}

/* Output would pass max_outbuf: close this connection only, with a reason. */
static int over_limit(struct tern_conn *c, size_t queued)
{
        char peer[TERN_ADDRSTRLEN];
        tern_warn("loop %d: %s: output would reach %zu bytes, over max_outbuf %zu; closing",
                  c->io.loop->index, tern_conn_peer_str(c, peer, sizeof(peer)), queued,
                  limits_of(c)->max_outbuf);
        tern__stat_add(c->io.loop, TERN__STAT(outbuf_overflows), 1);
        tern__conn_close(c, TERN_CLOSE_OUTLIMIT, TERN_EOUTLIMIT);
        return TERN_EOUTLIMIT;
}

/* Bytes were added to the output buffer. */
static void note_queued(struct tern_conn *c)
{
        const struct tern_conn_limits *lim = limits_of(c);
        size_t queued = tern_buf_len(&c->out);
        /* Batched for the loop's flush is not "queued" for write-complete:
         * only what the kernel then refuses is (conn_on_flush). */
        if (!(c->io.state & TERN__IO_FLUSH))
                c->flags |= TERN__CONN_WAS_QUEUED;
        if (lim->high_water && queued >= lim->high_water && !(c->flags & TERN__CONN_HIGH)) {
                c->flags |= TERN__CONN_HIGH;
                if (c->ops->on_high_water)
                        owe(c, TERN__OWE_HIGH); /* from the loop, not inside this send */
        }
}

int tern_conn_sendv(tern_conn *c, const struct iovec *iov, int iovcnt)
{
        if (c->flags & (TERN__CONN_CLOSED | TERN__CONN_CLOSING | TERN__CONN_SHUTWR))
                return -EPIPE;
        size_t total = 0;
        for (int i = 0; i < iovcnt; i++)
                total += iov[i].iov_len;
        if (!total)
                return 0;

        size_t written = 0;
        if (tern_buf_empty(&c->out) && !(c->flags & TERN__CONN_CORKED) &&
            (&c->io == c->io.loop->current || !tern__io_flush_later(&c->io))) {
                /* The connection being served (a reply) is written at once;
                 * any other (a fan-out, a relay, a task) is batched to the end
                 * of the iteration, so k messages to it cost one write and, with
                 * TCP_NODELAY, one segment instead of k: Nagle's batching
                 * without Nagle's wait. */
                ssize_t n = sock_sendv(c, iov, iovcnt);
                if (n < 0) {
                        tern__conn_close(c, TERN_CLOSE_ERROR, (int)n);
                        return (int)n;
                }
                written = (size_t)n;
                tern__stat_add(c->io.loop, TERN__STAT(bytes_out), written);
                if (written == total)
                        return 0;
        }

        if (tern_buf_len(&c->out) + (total - written) > limits_of(c)->max_outbuf)
                return over_limit(c, tern_buf_len(&c->out) + (total - written));
        /* Queue what the kernel did not take, skipping the written prefix. */
        for (int i = 0; i < iovcnt; i++) {
                size_t len = iov[i].iov_len;
                const uint8_t *p = iov[i].iov_base;
                if (written >= len) {
                        written -= len;
                        continue;
                }
                if (tern_buf_append(&c->out, p + written, len - written) < 0) {
                        tern__conn_close(c, TERN_CLOSE_ERROR, -ENOMEM);
                        return -ENOMEM;
                }
                tern__stat_add(c->io.loop, TERN__STAT(queued_bytes), len - written);
                written = 0;
        }
        note_queued(c);
        return 0;
}

int tern_conn_send(tern_conn *c, const void *data, size_t len)
{
        struct iovec iov = {(void *)data, len};
        return tern_conn_sendv(c, &iov, 1);
}

int tern_conn_send_frame(tern_conn *c, const void *payload, size_t len)
{
        if (!c->codec || !c->codec->encode)
                return -EINVAL;
        if (c->flags & (TERN__CONN_CLOSED | TERN__CONN_CLOSING | TERN__CONN_SHUTWR))
                return -EPIPE;
        int r;
        if (!tern_buf_empty(&c->out) || (c->flags & TERN__CONN_CORKED)) {
                /* Output is queued anyway: encode straight behind it. A
                 * failed encoder may have appended part of a frame: cut it
                 * off, or the peer would read a corrupt stream. */
                size_t queued = tern_buf_len(&c->out);
                r = c->codec->encode(c->codec_state, &c->out, payload, len);
                if (r < 0) {
                        tern_buf_truncate(&c->out, queued);
                        tern_buf_release_if_empty(&c->out);
                        return r;
                }
                tern__stat_add(c->io.loop, TERN__STAT(queued_bytes),
                               tern_buf_len(&c->out) - queued);
                if (tern_buf_len(&c->out) > limits_of(c)->max_outbuf)
                        return over_limit(c, tern_buf_len(&c->out));
                note_queued(c);
                return 0;
        }
        /* Nothing queued: encode into the loop's scratch and write directly.
         * A frame sent from inside that write (an on_close that sends on
         * another connection) gets a buffer of its own. */
        struct tern_buf local = TERN_BUF_INIT;
        struct tern_buf *b = c->io.loop->scratch_busy ? &local : &c->io.loop->scratch;
        bool own = b == &c->io.loop->scratch;
        if (own)
                c->io.loop->scratch_busy = true;
        r = c->codec->encode(c->codec_state, b, payload, len);
        if (r == 0)
                r = tern_conn_send(c, tern_buf_data(b), tern_buf_len(b));
        tern_buf_consume(b, tern_buf_len(b));
        if (own)
                c->io.loop->scratch_busy = false;
        tern_buf_free(&local);
        return r;
}

/* ---- reading ---- */

/* The codec rejected the input: say who sent it, tell the application,
 * close once what it sent in reply has flushed. */
static __attribute__((noinline, cold)) void codec_error(struct tern_conn *c, int err)
{
        char peer[TERN_ADDRSTRLEN];
        tern_warn("loop %d: %s: codec %s: %s; closing", c->io.loop->index,
                  tern_conn_peer_str(c, peer, sizeof(peer)), c->codec->name, tern_strerror(err));
        tern__stat_add(c->io.loop, TERN__STAT(codec_errors), 1);
        if (c->ops->on_codec_error)
                c->ops->on_codec_error(c, err);
        close_after_flush(c, TERN_CLOSE_PROTOCOL, err);
}

static void deliver(struct tern_conn *c, struct tern_buf *in)
{
        if (!c->codec) {
                if (c->ops->on_message)
                        c->ops->on_message(c, in);
                else
                        tern_buf_consume(in, tern_buf_len(in));
                return;
        }
        bool corked_here = false;
        /* Paused means no more frames, including ones already buffered:
         * resume delivers them. */
        while (!(c->flags & (TERN__CONN_CLOSED | TERN__CONN_CLOSING | TERN__CONN_PAUSED))) {
                size_t len = tern_buf_len(in);
                if (!len)
                        break;
                struct tern_frame f = {.kind = TERN_FRAME_NONE};
                ssize_t n = c->codec->decode(c->codec_state, tern_buf_data(in), len, &f);
                if (n == TERN_CODEC_NEED_MORE)
                        break;
                if (n < 0 || (size_t)n > len) {
                        codec_error(c, n < 0 ? (int)n : TERN_EFRAME);
                        break;
                }
                if (f.kind != TERN_FRAME_NONE && c->ops->on_frame) {
                        /* More input follows this frame: a pipelined client.
                         * Batch the replies into one write instead of one
                         * syscall each; a lone request still writes directly. */
                        if ((size_t)n < len && !(c->flags & TERN__CONN_CORKED)) {
                                c->flags |= TERN__CONN_CORKED;
                                corked_here = true;
                        }
                        c->ops->on_frame(c, &f);
                }
                if (c->flags & TERN__CONN_CLOSED)
                        break;
                tern_buf_consume(in, (size_t)n);
        }
        if (corked_here)
                tern_conn_uncork(c);
}

static void on_eof(struct tern_conn *c)
{
        c->flags |= TERN__CONN_EOF;
        if (c->ops->on_eof) {
                c->ops->on_eof(c);
                return;
        }
        close_after_flush(c, TERN_CLOSE_PEER, 0); /* a reply may still be due */
}

static void mark_ready(struct tern_conn *c)
{
        tern__io_ready(&c->io);
}

/*
 * Without a codec nothing else bounds what a peer can make us hold: an
 * on_message that waits for "more" could buffer forever. Past max_inbuf
 * the connection closes with a logged reason. (A codec refuses frames over
 * its own limit, so codec connections are left to it.)
 */
static __attribute__((noinline, cold)) void close_over_in_limit(struct tern_conn *c, size_t held)
{
        char peer[TERN_ADDRSTRLEN];
        tern_warn("loop %d: %s: %zu bytes of input left unconsumed, over max_inbuf %zu; closing",
                  c->io.loop->index, tern_conn_peer_str(c, peer, sizeof(peer)), held,
                  limits_of(c)->max_inbuf);
        tern__stat_add(c->io.loop, TERN__STAT(inbuf_overflows), 1);
        tern__conn_close(c, TERN_CLOSE_INLIMIT, TERN_EINLIMIT);
}

/* Inline: every read asks; the answer is nearly always no. */
static inline bool over_in_limit(struct tern_conn *c)
{
        size_t held = tern_buf_len(&c->in);
        if (held <= limits_of(c)->max_inbuf || c->codec || (c->flags & TERN__CONN_CLOSED))
                return false;
        close_over_in_limit(c, held);
        return true;
}

/*
 * Reads until EAGAIN, EOF, or the per-iteration budget runs out. Only input
 * the application consumed (a whole frame, or what on_message took) counts
 * as activity for the idle timeout: a slowloris peer trickling a frame that
 * never completes is as idle as a silent one.
 */
static void do_read(struct tern_conn *c)
{
        struct tern_loop *l = c->io.loop;
        size_t budget = limits_of(c)->read_budget;

        while (!(c->flags &
                 (TERN__CONN_CLOSED | TERN__CONN_CLOSING | TERN__CONN_PAUSED | TERN__CONN_EOF))) {
                ssize_t n;
                size_t asked;
                if (!c->in.base) {
                        /* Nothing pending: read into the spill and lend it out. */
                        asked = TERN__SPILL_SIZE;
                        do
                                n = sys_read(c->io.fd, l->spill, asked);
                        while (n < 0 && errno == EINTR);
                        if (n < 0)
                                n = -errno;
                        fault_edge(c);
                        if (n > 0) {
                                struct tern_buf view = {l->spill, TERN__SPILL_SIZE, 0, (size_t)n};
                                tern__stat_add(l, TERN__STAT(bytes_in), (uint64_t)n);
                                deliver(c, &view);
                                if (tern_buf_len(&view) < (size_t)n)
                                        note_progress(c);
                                if (!tern_buf_empty(&view) && !(c->flags & TERN__CONN_CLOSED) &&
                                    tern_buf_append(&c->in, tern_buf_data(&view),
                                                    tern_buf_len(&view)) < 0) {
                                        tern__conn_close(c, TERN_CLOSE_ERROR, -ENOMEM);
                                        return;
                                }
                                if (over_in_limit(c))
                                        return;
                        }
                } else {
                        asked = tern_buf_writable(&c->in) + TERN__SPILL_SIZE;
                        n = tern_buf_read_fd(&c->in, c->io.fd, l->spill, TERN__SPILL_SIZE);
                        fault_edge(c);
                        if (n > 0) {
                                tern__stat_add(l, TERN__STAT(bytes_in), (uint64_t)n);
                                size_t had = tern_buf_len(&c->in);
                                deliver(c, &c->in);
                                if (tern_buf_len(&c->in) < had)
                                        note_progress(c);
                                if (!(c->flags & TERN__CONN_CLOSED))
                                        tern_buf_release_if_empty(&c->in);
                                if (over_in_limit(c))
                                        return;
                        }
                }

                if (n == 0) {
                        on_eof(c);
                        return;
                }
                if (n < 0) {
                        if (n != -EAGAIN)
                                tern__conn_close(c, TERN_CLOSE_ERROR, (int)n);
                        return;
                }
                /* A short read drained the socket: a new edge comes with new
                 * data, so skip the read that would only say EAGAIN, unless the
                 * peer's FIN is pending (EPOLLRDHUP) and must be read as EOF. */
                if ((size_t)n < asked && !(c->flags & TERN__CONN_RDHUP))
                        return;
                /* Callbacks owed by what this read set off (a high-water
                 * mark that pauses us, say) run before we read on: the
                 * loop runs them once we return, and serves us next time. */
                if ((size_t)n >= budget || l->pending) {
                        mark_ready(c); /* no new edge will come: serve it next time */
                        return;
                }
                budget -= (size_t)n;
        }
}

/*
 * do_read through the transport. Unlike a socket, a short read says nothing:
 * OpenSSL returns one record per call and may hold more it read ahead, so
 * reading goes on until the transport says -EAGAIN (its buffers and the
 * socket are both empty) or the budget runs out.
 */
static __attribute__((noinline)) void do_read_xport(struct tern_conn *c)
{
        struct tern_loop *l = c->io.loop;
        size_t budget = limits_of(c)->read_budget;
        const struct tern__xport_ops *x = c->cfg->xport->ops;

        while (!(c->flags &
                 (TERN__CONN_CLOSED | TERN__CONN_CLOSING | TERN__CONN_PAUSED | TERN__CONN_EOF))) {
                ssize_t n = x->read(xstate(c), l->spill, TERN__SPILL_SIZE);
                if (n == 0) {
                        on_eof(c);
                        return;
                }
                if (n < 0) {
                        /* A forged or corrupt record, a reset mid-record, are
                         * told; a reset between records is an ordinary end. */
                        if (n == TERN_ETLS)
                                xport_warn(c, "read failed", (int)n);
                        if (n != -EAGAIN)
                                tern__conn_close(c, TERN_CLOSE_ERROR, (int)n);
                        return;
                }
                tern__stat_add(l, TERN__STAT(bytes_in), (uint64_t)n);
                struct tern_buf *in = &c->in;
                struct tern_buf view = {l->spill, TERN__SPILL_SIZE, 0, (size_t)n};
                if (!c->in.base)
                        in = &view; /* lend the spill out, as do_read does */
                else if (tern_buf_append(&c->in, l->spill, (size_t)n) < 0) {
                        tern__conn_close(c, TERN_CLOSE_ERROR, -ENOMEM);
                        return;
                }
                size_t had = tern_buf_len(in);
                deliver(c, in);
                if (tern_buf_len(in) < had)
                        note_progress(c);
                if (in == &view && !tern_buf_empty(&view) && !(c->flags & TERN__CONN_CLOSED) &&
                    tern_buf_append(&c->in, tern_buf_data(&view), tern_buf_len(&view)) < 0) {
                        tern__conn_close(c, TERN_CLOSE_ERROR, -ENOMEM);
                        return;
                }
                if (!(c->flags & TERN__CONN_CLOSED))
                        tern_buf_release_if_empty(&c->in);
                if (over_in_limit(c))
                        return;
                /* As do_read's short read, unless the peer's FIN is pending. */
                if (x->drained(xstate(c)) && !(c->flags & TERN__CONN_RDHUP))
                        return;
                if ((size_t)n >= budget || l->pending) {
                        mark_ready(c);
                        return;
                }
                budget -= (size_t)n;
        }
}

/*
 * Drives the transport's handshake. When it ends the connection opens
 * (on_open; a connector learns it connected only now, so a failed handshake
 * is a failed attempt), and what was queued meanwhile flushes. Returns true
 * once open.
 */
static bool xport_handshake(struct tern_conn *c)
{
        struct tern_loop *l = c->io.loop;
        const struct tern__xport_ops *x = c->cfg->xport->ops;
        int r = x->handshake(xstate(c));
        if (r == -EAGAIN)
                return false;
        if (r < 0) {
                xport_warn(c, "handshake failed", r);
                tern__conn_close(c, TERN_CLOSE_ERROR, r);
                return false;
        }
        c->flags &= ~TERN__CONN_HANDSHAKE;
        tern__stat_add(l, TERN__STAT(tls_handshakes), 1);
        if (x->resumed(xstate(c)))
                tern__stat_add(l, TERN__STAT(tls_resumed), 1);
        c->idle_ms = c->cfg->idle_timeout_ms; /* the handshake deadline ends */
        if (!c->idle_ms)
                tern__loop_timer_cancel(l, &c->idle_timer);
        struct tern__conn_cfg *cfg = c->cfg;
        if ((c->flags & TERN__CONN_CLIENT) && cfg->owner && cfg->owner_ops)
                cfg->owner_ops->connected(cfg->owner, c);
        conn_connected(c);
        if (!(c->flags & TERN__CONN_CLOSED) && !tern_buf_empty(&c->out) &&
            !(c->flags & TERN__CONN_CORKED))
                flush_out(c);
        return !(c->flags & TERN__CONN_CLOSED);
}

/* An outgoing connect() reported back. Returns false if @c is not open. */
static bool finish_connect(struct tern_conn *c, uint32_t events)
{
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (!err && (events & (EPOLLERR | EPOLLHUP)))
                err = ECONNREFUSED;
        if (err) {
                tern__conn_close(c, TERN_CLOSE_ERROR, -err); /* the connector learns */
                return false;
        }
        if (!(events & EPOLLOUT))
                return false; /* still in progress */
        if (c->flags & TERN__CONN_HANDSHAKE) {
                /* Connected; open once the handshake ends, which has a deadline. */
                c->flags &= ~TERN__CONN_CONNECTING;
                tern_conn_set_idle_timeout(c, c->cfg->xport->handshake_timeout_ms);
                return true;
        }
        struct tern__conn_cfg *cfg = c->cfg;
        if (cfg->owner && cfg->owner_ops)
                cfg->owner_ops->connected(cfg->owner, c);
        conn_connected(c);
        return !(c->flags & TERN__CONN_CLOSED);
}

static void conn_on_events(struct tern__io *io, uint32_t events)
{
        struct tern_conn *c = (struct tern_conn *)io;
        if (c->flags & TERN__CONN_CLOSED) /* closed earlier in this batch */
                return;
        if ((c->flags & TERN__CONN_CONNECTING) && !finish_connect(c, events))
                return;
        if ((events & EPOLLERR) && !(events & EPOLLIN)) {
                int err = 0;
                socklen_t len = sizeof(err);
                getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
                tern__conn_close(c, TERN_CLOSE_ERROR, err ? -err : -EIO);
                return;
        }
        if (events & EPOLLRDHUP)
                c->flags |= TERN__CONN_RDHUP;
        if (c->cfg->xport) {
                /* Any edge may be the one the transport waits for, and the
                 * handshake's last flight may carry records already read. */
                if ((c->flags & TERN__CONN_HANDSHAKE) && !xport_handshake(c))
                        return;
                if ((events & EPOLLOUT) && !tern_buf_empty(&c->out))
                        flush_out(c);
                do_read_xport(c);
                return;
        }
        /* Both may arrive together: flush first so a reply queued earlier goes
         * out before new input produces more. */
        if ((events & EPOLLOUT) && !tern_buf_empty(&c->out))
                flush_out(c);
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                do_read(c);
}

static void conn_on_ready(struct tern__io *io)
{
        struct tern_conn *c = (struct tern_conn *)io;
        if (c->flags & TERN__CONN_CLOSED)
                return;
        /* Resumed: first what was already buffered while paused. */
        if (!tern_buf_empty(&c->in) && !(c->flags & TERN__CONN_PAUSED)) {
                deliver(c, &c->in);
                if (c->flags & TERN__CONN_CLOSED)
                        return;
                tern_buf_release_if_empty(&c->in);
        }
        if (c->cfg->xport)
                do_read_xport(c);
        else
                do_read(c);
}

/* ---- closing, idle, drain ---- */

/* Closes now if nothing is queued, else once the output has flushed. */
static void close_after_flush(struct tern_conn *c, enum tern_close_reason reason, int err)
{
        if (c->flags & (TERN__CONN_CLOSED | TERN__CONN_CLOSING))
                return;
        if (tern_buf_empty(&c->out)) {
                xport_bye(c);
                tern__conn_close(c, reason, err);
                return;
        }
        c->close_reason = (uint8_t)reason;
        c->close_err = err;
        /* Flush first, but not forever: the idle timer becomes a linger
         * deadline for a peer that stopped reading. */
        c->flags |= TERN__CONN_CLOSING;
        uint32_t linger = limits_of(c)->linger_ms;
        if (!c->idle_ms || c->idle_ms > linger)
                tern_conn_set_idle_timeout(c, linger);
}

void tern_conn_close(tern_conn *c)
{
        close_after_flush(c, TERN_CLOSE_LOCAL, 0);
}

void tern_conn_shutdown(tern_conn *c)
{
        if (c->flags & (TERN__CONN_CLOSED | TERN__CONN_CLOSING | TERN__CONN_SHUTWR))
                return;
        c->flags |= TERN__CONN_SHUTWR;
        if (tern_buf_empty(&c->out)) {
                xport_bye(c);
                shutdown(c->io.fd, SHUT_WR);
        }
        /* else after_flush() sends the FIN once the queue has drained */
}

void tern_conn_abort(tern_conn *c)
{
        tern__conn_close(c, TERN_CLOSE_LOCAL, 0);
}

bool tern_conn_closing(const tern_conn *c)
{
        return c->flags & (TERN__CONN_CLOSED | TERN__CONN_CLOSING);
}

/* The loop drains: on_drain, then a graceful close; past the deadline, now. */
static void conn_on_drain(struct tern__io *io, bool deadline)
{
        struct tern_conn *c = (struct tern_conn *)io;
        if (c->flags & TERN__CONN_CLOSED)
                return;
        if (deadline) {
                char peer[TERN_ADDRSTRLEN];
                tern_warn("loop %d: %s still has %zu bytes queued at the drain deadline, closing",
                          c->io.loop->index, tern_conn_peer_str(c, peer, sizeof(peer)),
                          tern_buf_len(&c->out));
                tern__conn_close(c, TERN_CLOSE_SHUTDOWN, 0);
                return;
        }
        if (c->flags & (TERN__CONN_CONNECTING | TERN__CONN_HANDSHAKE)) { /* never opened */
                tern__conn_close(c, TERN_CLOSE_SHUTDOWN, -ESHUTDOWN);
                return;
        }
        if (c->ops->on_drain && !(c->flags & TERN__CONN_CLOSING))
                c->ops->on_drain(c);
        close_after_flush(c, TERN_CLOSE_SHUTDOWN, 0);
}

/* tern_loop_free() found it: the loop never ran, or was left mid-way. */
static void conn_on_destroy(struct tern__io *io)
{
        struct tern_conn *c = (struct tern_conn *)io;
        if (c->codec && c->codec->state_free)
                c->codec->state_free(c->codec_state);
        xport_free(c);
        tern__timer_cancel(&c->io.loop->wheel, &c->idle_timer);
        close(c->io.fd);
        conn_free(io);
}

/* The end of the iteration: one write for everything batched this round. */
static void conn_on_flush(struct tern__io *io)
{
        struct tern_conn *c = (struct tern_conn *)io;
        if (c->flags & (TERN__CONN_CLOSED | TERN__CONN_CORKED) || tern_buf_empty(&c->out))
                return;
        flush_out(c);
        /* What the kernel refused waits for EPOLLOUT: now it is queued. */
        if (!(c->flags & TERN__CONN_CLOSED) && !tern_buf_empty(&c->out))
                c->flags |= TERN__CONN_WAS_QUEUED;
}

static const struct tern__io_kind conn_kind = {
    .name = "conn",
    .on_flush = conn_on_flush,
    .on_events = conn_on_events,
    .on_ready = conn_on_ready,
    .on_pending = conn_on_pending,
    .on_drain = conn_on_drain,
    .on_free = conn_free,
    .on_destroy = conn_on_destroy,
};

static void idle_timer_cb(struct tern_timer *t, void *arg)
{
        struct tern_conn *c = arg;
        struct tern_loop *l = c->io.loop;
        /* Progress only stamps last_active; the timer catches up lazily here, so
         * the hot path never touches the wheel. */
        uint32_t idle_for = (uint32_t)l->now - c->last_active; /* wrap-safe */
        if (idle_for < c->idle_ms) {
                tern__timer_arm(&l->wheel, t, l->now + (c->idle_ms - idle_for), 0);
                return;
        }
        char peer[TERN_ADDRSTRLEN];
        if (c->flags & TERN__CONN_HANDSHAKE) {
                /* A peer that never finishes (slowloris) holds nothing long. */
                xport_warn(c, "handshake not finished in time", 0);
                tern__conn_close(c, TERN_CLOSE_IDLE, -ETIMEDOUT);
                return;
        }
        if (c->flags & TERN__CONN_CLOSING) {
                tern_warn("loop %d: %s: peer not reading, %zu bytes unsent at close deadline; "
                          "aborting",
                          l->index, tern_conn_peer_str(c, peer, sizeof(peer)),
                          tern_buf_len(&c->out));
                tern__conn_close(c, TERN_CLOSE_LOCAL, -ETIMEDOUT);
                return;
        }
        tern_debug("loop %d: %s idle for %u ms; closing", l->index,
                   tern_conn_peer_str(c, peer, sizeof(peer)), c->idle_ms);
        tern__stat_add(l, TERN__STAT(idle_timeouts), 1);
        tern__conn_close(c, TERN_CLOSE_IDLE, -ETIMEDOUT);
}

void tern_conn_set_idle_timeout(tern_conn *c, uint32_t ms)
{
        c->idle_ms = ms;
        if (!ms) {
                tern__timer_cancel(&c->io.loop->wheel, &c->idle_timer);
                return;
        }
        c->last_active = (uint32_t)c->io.loop->now;
        tern__timer_arm(&c->io.loop->wheel, &c->idle_timer, c->io.loop->now + ms + 1, 0);
}

void tern_conn_cork(tern_conn *c)
{
        c->flags |= TERN__CONN_CORKED;
}

void tern_conn_uncork(tern_conn *c)
{
        if (!(c->flags & TERN__CONN_CORKED))
                return;
        c->flags &= ~TERN__CONN_CORKED;
        if (!(c->flags & TERN__CONN_CLOSED) && !tern_buf_empty(&c->out))
                flush_out(c);
}

void tern_conn_pause_read(tern_conn *c)
{
        c->flags |= TERN__CONN_PAUSED;
}

void tern_conn_resume_read(tern_conn *c)
{
        if (!(c->flags & TERN__CONN_PAUSED))
                return;
        c->flags &= ~TERN__CONN_PAUSED;
        /* The edge for what arrived meanwhile was consumed while paused. */
        if (!(c->flags & TERN__CONN_CLOSED))
                mark_ready(c);
}

/* ---- accessors ---- */

int tern_conn_set_codec(tern_conn *c, const struct tern_codec *codec, const void *config)
{
        void *state = (void *)config;
        if (codec && codec->state_new) {
                errno = 0;
                state = codec->state_new(config);
                if (!state)
                        return errno ? -errno : -ENOMEM; /* EINVAL: bad config */
        }
        if (c->codec && c->codec->state_free)
                c->codec->state_free(c->codec_state);
        c->codec = codec;
        c->codec_state = state;
        return 0;
}

void tern_conn_set_ops(tern_conn *c, const struct tern_conn_ops *ops)
{
        c->ops = ops ? ops : &no_ops;
}

void *tern_conn_data(const tern_conn *c)
{
        return c->data;
}

void tern_conn_set_data(tern_conn *c, void *data)
{
        c->data = data;
}

tern_handle tern_conn_handle(const tern_conn *c)
{
        if (c->flags & TERN__CONN_STALE)
                return TERN_HANDLE_NONE;
        return tern__io_handle(&c->io);
}

tern_loop *tern_conn_loop(const tern_conn *c)
{
        return c->io.loop;
}

void *tern__conn_owner(const struct tern_conn *c, const struct tern__conn_owner_ops *ops)
{
        return c->cfg->owner_ops == ops ? c->cfg->owner : NULL;
}

void *tern_conn_listener_user(const tern_conn *c)
{
        return c->flags & TERN__CONN_CLIENT ? NULL : c->cfg->user;
}

int tern_conn_fd(const tern_conn *c)
{
        return c->io.fd;
}

size_t tern_conn_queued(const tern_conn *c)
{
        return tern_buf_len(&c->out);
}

int tern_conn_peer(const tern_conn *c, struct sockaddr *addr, socklen_t *len)
{
        if (c->io.fd < 0)
                return -EBADF;
        return getpeername(c->io.fd, addr, len) < 0 ? -errno : 0;
}

const char *tern_conn_peer_str(const tern_conn *c, char *buf, size_t size)
{
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (!size)
                return buf;
        if (tern_conn_peer(c, (struct sockaddr *)&ss, &len) < 0) {
                snprintf(buf, size, "fd %d", c->io.fd);
                return buf;
        }
        tern_sockaddr_str((const struct sockaddr *)&ss, len, buf, size);
        return buf;
}

/* ---- cross-thread, through handles ---- */

static void task_send(struct tern__io *io, struct tern__task *t)
{
        struct tern_conn *c = (struct tern_conn *)io;
        if (c && !(c->flags & (TERN__CONN_CLOSED | TERN__CONN_CLOSING)))
                tern_conn_send(c, t->data, t->len);
}

static void task_close(struct tern__io *io, struct tern__task *t)
{
        if (io)
                tern_conn_close((struct tern_conn *)io);
}

static void task_conn(struct tern__io *io, struct tern__task *t)
{
        struct tern_conn *c = (struct tern_conn *)io;
        /* A closed connection is as good as gone: its on_close is owed. */
        if (c && (c->flags & TERN__CONN_CLOSED))
                c = NULL;
        tern_conn_task_cb cb = (tern_conn_task_cb)(uintptr_t)t->data_fn;
        cb(c, t->arg);
}

int tern__conn_post_send(struct tern_loop *l, tern_handle h, const void *data, size_t len)
{
        struct tern__task *t = TERN__MALLOC(sizeof(*t) + len);
        if (!t)
                return -ENOMEM;
        t->len = len;
        memcpy(t->data, data, len);
        return tern__loop_post_io(l, h, task_send, t);
}

int tern__conn_post_close(struct tern_loop *l, tern_handle h)
{
        struct tern__task *t = TERN__MALLOC(sizeof(*t));
        if (!t)
                return -ENOMEM;
        return tern__loop_post_io(l, h, task_close, t);
}

int tern__conn_post_task(struct tern_loop *l, tern_handle h, tern_conn_task_cb cb, void *arg)
{
        struct tern__task *t = TERN__MALLOC(sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->data_fn = (void (*)(void))cb;
        t->arg = arg;
        return tern__loop_post_io(l, h, task_conn, t);
}
