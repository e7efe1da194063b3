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
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "client_internal.h"
#include "conn_internal.h"
#include "error.h"
#include "fault_internal.h"
#include "live_internal.h"
#include "log.h"
#include "loop_internal.h"
#include "server_internal.h"

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
        if (TERN__FAULT_EDGE_OWED(c->fd)) {
                int e = errno;
                /* the mask the connection was registered with */
                struct epoll_event ev = {
                    .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                    .data.u64 = tern__slot_handle(c->loop, c->slot),
                };
                epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev);
                errno = e;
        }
}

const char *tern_close_reason_str(enum tern_close_reason r)
{
        static const char *const names[] = {"local",     "peer",     "error",    "idle",
                                            "out-limit", "protocol", "shutdown", "in-limit"};
        return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}

static inline const struct tern_server_opts *opts_of(const struct tern_conn *c)
{
        return &c->loop->server->opts;
}

static void idle_timer_cb(struct tern_timer *t, void *arg);
static void close_after_flush(struct tern_conn *c, enum tern_close_reason reason, int err);

/* A connection the loop could not take on (no memory for it, its slot or its
 * codec state; epoll_ctl refused: @err) is closed at once. Say so, but at 1, 2, 4,
 * 8... failures only: under memory pressure a line per connection would
 * bury the log. */
static void note_setup_error(struct tern_loop *l, int fd, int err)
{
        tern__stat_add(l, TERN__STAT(setup_errors), 1);
        uint64_t n = l->stats.v[TERN__STAT(setup_errors)];
        if ((n & (n - 1)) == 0)
                tern_warn("worker %d: dropped a new connection (fd %d): %s (%llu so far)", l->index,
                          fd, strerror(err), (unsigned long long)n);
}

struct tern_conn *tern__conn_setup(struct tern_loop *l, int fd, const struct tern__conn_params *p)
{
        int err = ENOMEM;
        struct tern_conn *c = TERN__CALLOC(1, sizeof(*c));
        if (!c)
                goto out_close_fd;
        c->fd = fd;
        c->loop = l;
        c->ops = p->ops ? p->ops : &no_ops;
        c->connector = p->connector;
        if (p->connector)
                c->flags = TERN__CONN_CLIENT | TERN__CONN_CONNECTING;
        c->idle_ms = p->idle_timeout_ms; /* armed when the connection opens */
        tern_timer_init(&c->idle_timer, idle_timer_cb, c);
        int r = tern__slot_alloc(l, c, &c->slot);
        if (r < 0) {
                err = -r;
                goto out_free_conn;
        }
        r = p->codec ? tern_conn_set_codec(c, p->codec, p->codec_config) : 0;
        if (r < 0) {
                err = -r;
                goto out_free_slot;
        }

        if (!p->no_delay_off) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        /* Also for a connect in progress: its completion is the EPOLLOUT
         * edge (or EPOLLERR), so this stays the only epoll_ctl. The event
         * carries the handle, not the pointer: see tern__conn_close. */
        struct epoll_event ev = {
            .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
            .data.u64 = tern__slot_handle(l, c->slot),
        };
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                err = errno;
                goto out_free_codec;
        }

        tern__live_add(TERN__LIVE_CONNS, 1);
        l->nconns++;
        if (!p->connector) {
                tern__stat_add(l, TERN__STAT(accepted), 1);
                tern__conn_connected(c);
        }
        /* Data may have arrived before registration; the ET edge for it was
         * reported at EPOLL_CTL_ADD, so nothing to do here. */
        return c;

out_free_codec:
        if (c->codec && c->codec->state_free)
                c->codec->state_free(c->codec_state);
out_free_slot:
        tern__slot_free(l, c->slot);
out_free_conn:
        free(c);
out_close_fd:
        note_setup_error(l, fd, err); /* before the peer can see the close */
        close(fd);
        return NULL;
}

void tern__conn_connected(struct tern_conn *c)
{
        struct tern_loop *l = c->loop;
        c->flags &= ~TERN__CONN_CONNECTING;
        if (c->flags & TERN__CONN_CLIENT)
                tern__stat_add(l, TERN__STAT(connects), 1);
        tern__stat_add(l, TERN__STAT(conns), 1);
        c->last_active = (uint32_t)l->now;
        if (c->idle_ms)
                tern_conn_set_idle_timeout(c, c->idle_ms);
        if (c->ops->on_open)
                c->ops->on_open(c);
}

struct tern_conn *tern__conn_new(struct tern_loop *l, int fd)
{
        const struct tern_server_opts *o = &l->server->opts;
        struct tern__conn_params p = {
            .ops = o->ops,
            .codec = o->codec,
            .codec_config = o->codec_config,
            .idle_timeout_ms = o->idle_timeout_ms,
            .no_delay_off = o->no_delay_off,
        };
        struct tern_conn *c = tern__conn_setup(l, fd, &p);
        if (!c) /* the acceptor counted it against max_conns */
                __atomic_fetch_sub(&l->server->live_conns, 1, __ATOMIC_RELAXED);
        return c;
}

void tern__conn_free(struct tern_conn *c)
{
        struct tern_loop *l = c->loop;
        tern_buf_free(&c->in);
        tern_buf_free(&c->out);
        bool accepted = !(c->flags & TERN__CONN_CLIENT);
        free(c);
        tern__live_add(TERN__LIVE_CONNS, -1);
        if (accepted) /* only accepted connections count against max_conns */
                __atomic_fetch_sub(&l->server->live_conns, 1, __ATOMIC_RELAXED);
}

void tern__conn_close(struct tern_conn *c, enum tern_close_reason reason, int err)
{
        if (c->flags & TERN__CONN_CLOSED)
                return;
        struct tern_loop *l = c->loop;
        c->flags |= TERN__CONN_CLOSED; /* first: on_close may call close again */
        tern_timer_cancel(&l->wheel, &c->idle_timer);
        l->nconns--;
        bool opened = !(c->flags & TERN__CONN_CONNECTING);
        if (opened) {
                tern__stat_sub(l, TERN__STAT(conns), 1);
                tern__stat_add(l, TERN__STAT(closed), 1);
                /* on_close still sees the connection's handle, to unregister it. */
                if (c->ops->on_close)
                        c->ops->on_close(c, reason, err);
        }
        /* Read only now: on_close may have freed the connector, unlinking it. */
        if (c->connector)
                tern__connector_conn_closed(c->connector, c, opened, err);
        /* The handle goes stale now; the memory stays until the iteration ends. */
        tern__slot_free(l, c->slot);
        c->flags |= TERN__CONN_STALE;
        if (c->codec && c->codec->state_free)
                c->codec->state_free(c->codec_state);
        c->codec = NULL;
        /* No EPOLL_CTL_DEL: close() unregisters the fd unless another
         * descriptor shares its file (a forked child not yet exec'd, a
         * posix_spawn in flight, a dup). Then its events keep coming with
         * this connection's handle, which the slot's new generation makes
         * stale, so the loop drops them: safe without a syscall per close. */
        close(c->fd);
        c->fd = -1;
        tern_buf_free(&c->in);
        tern_buf_free(&c->out);
        c->next_closed = l->closed;
        l->closed = c;
}

/* ---- writing ---- */

/* Sends @iov directly. Returns bytes written (maybe 0 on EAGAIN) or -errno. */
static ssize_t sock_sendv(struct tern_conn *c, const struct iovec *iov, int iovcnt)
{
        struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
        int fd = c->fd;
        tern__stat_add(c->loop, TERN__STAT(writes), 1);
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
        c->last_active = (uint32_t)c->loop->now;
}

/* Called after the output buffer shrank or emptied. */
static void after_flush(struct tern_conn *c)
{
        size_t q = tern_buf_len(&c->out);
        if ((c->flags & TERN__CONN_HIGH) && q <= opts_of(c)->low_water) {
                c->flags &= ~TERN__CONN_HIGH;
                if (c->ops->on_low_water)
                        c->ops->on_low_water(c, q);
        }
        if (q)
                return;
        tern_buf_release_if_empty(&c->out);
        if (c->flags & TERN__CONN_WAS_QUEUED) {
                c->flags &= ~TERN__CONN_WAS_QUEUED;
                if (c->ops->on_write_complete && !(c->flags & TERN__CONN_CLOSED))
                        c->ops->on_write_complete(c);
        }
        if ((c->flags & (TERN__CONN_CLOSING | TERN__CONN_CLOSED)) == TERN__CONN_CLOSING)
                tern__conn_close(c, c->close_reason, c->close_err);
        else if ((c->flags & (TERN__CONN_SHUTWR | TERN__CONN_CLOSED)) == TERN__CONN_SHUTWR)
                shutdown(c->fd, SHUT_WR); /* the FIN follows the last byte */
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
                tern__stat_add(c->loop, TERN__STAT(bytes_out), (uint64_t)n);
                note_progress(c);
        }
        after_flush(c);
}

/* Output would pass max_outbuf: close this connection only, with a reason. */
static int over_limit(struct tern_conn *c, size_t queued)
{
        tern_warn("worker %d: fd %d: output would reach %zu bytes, over max_outbuf %zu; closing",
                  c->loop->index, c->fd, queued, opts_of(c)->max_outbuf);
        tern__stat_add(c->loop, TERN__STAT(outbuf_overflows), 1);
        tern__conn_close(c, TERN_CLOSE_OUTLIMIT, TERN_EOUTLIMIT);
        return TERN_EOUTLIMIT;
}

/* Bytes were added to the output buffer. */
static void note_queued(struct tern_conn *c)
{
        const struct tern_server_opts *o = opts_of(c);
        size_t queued = tern_buf_len(&c->out);
        c->flags |= TERN__CONN_WAS_QUEUED;
        if (o->high_water && queued >= o->high_water && !(c->flags & TERN__CONN_HIGH)) {
                c->flags |= TERN__CONN_HIGH;
                if (c->ops->on_high_water)
                        c->ops->on_high_water(c, queued);
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
        if (tern_buf_empty(&c->out) && !(c->flags & TERN__CONN_CORKED)) {
                ssize_t n = sock_sendv(c, iov, iovcnt);
                if (n < 0) {
                        tern__conn_close(c, TERN_CLOSE_ERROR, (int)n);
                        return (int)n;
                }
                written = (size_t)n;
                tern__stat_add(c->loop, TERN__STAT(bytes_out), written);
                if (written == total)
                        return 0;
        }

        if (tern_buf_len(&c->out) + (total - written) > opts_of(c)->max_outbuf)
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
                if (tern_buf_len(&c->out) > opts_of(c)->max_outbuf)
                        return over_limit(c, tern_buf_len(&c->out));
                note_queued(c);
                return 0;
        }
        /* Nothing queued: encode into the loop's scratch and write directly.
         * A frame sent from inside that write (an on_close that sends on
         * another connection) gets a buffer of its own. */
        struct tern_buf local = TERN_BUF_INIT;
        struct tern_buf *b = c->loop->scratch_busy ? &local : &c->loop->scratch;
        bool own = b == &c->loop->scratch;
        if (own)
                c->loop->scratch_busy = true;
        r = c->codec->encode(c->codec_state, b, payload, len);
        if (r == 0)
                r = tern_conn_send(c, tern_buf_data(b), tern_buf_len(b));
        tern_buf_consume(b, tern_buf_len(b));
        if (own)
                c->loop->scratch_busy = false;
        tern_buf_free(&local);
        return r;
}

/* ---- reading ---- */

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
                        int err = n < 0 ? (int)n : TERN_EFRAME;
                        tern_warn("worker %d: fd %d: codec %s: %s; closing", c->loop->index, c->fd,
                                  c->codec->name, tern_strerror(err));
                        tern__stat_add(c->loop, TERN__STAT(codec_errors), 1);
                        if (c->ops->on_codec_error)
                                c->ops->on_codec_error(c, err);
                        close_after_flush(c, TERN_CLOSE_PROTOCOL, err);
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
        if (c->flags & TERN__CONN_READY)
                return;
        c->flags |= TERN__CONN_READY;
        c->next_ready = c->loop->ready;
        c->loop->ready = c;
}

/*
 * Without a codec nothing else bounds what a peer can make us hold: an
 * on_message that waits for "more" could buffer forever. Past max_inbuf
 * the connection closes with a logged reason. (A codec refuses frames over
 * its own limit, so codec connections are left to it.)
 */
static bool over_in_limit(struct tern_conn *c)
{
        size_t held = tern_buf_len(&c->in);
        if (c->codec || held <= opts_of(c)->max_inbuf || (c->flags & TERN__CONN_CLOSED))
                return false;
        tern_warn("worker %d: fd %d: %zu bytes of input left unconsumed, over max_inbuf %zu; "
                  "closing",
                  c->loop->index, c->fd, held, opts_of(c)->max_inbuf);
        tern__stat_add(c->loop, TERN__STAT(inbuf_overflows), 1);
        tern__conn_close(c, TERN_CLOSE_INLIMIT, TERN_EINLIMIT);
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
        struct tern_loop *l = c->loop;
        size_t budget = opts_of(c)->read_budget;

        while (!(c->flags &
                 (TERN__CONN_CLOSED | TERN__CONN_CLOSING | TERN__CONN_PAUSED | TERN__CONN_EOF))) {
                ssize_t n;
                size_t asked;
                if (!c->in.base) {
                        /* Nothing pending: read into the spill and lend it out. */
                        asked = TERN__SPILL_SIZE;
                        do
                                n = sys_read(c->fd, l->spill, asked);
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
                        n = tern_buf_read_fd(&c->in, c->fd, l->spill, TERN__SPILL_SIZE);
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
                if ((size_t)n >= budget) {
                        mark_ready(c); /* no new edge will come: serve it next time */
                        return;
                }
                budget -= (size_t)n;
        }
}

/* An outgoing connect() reported back. Returns false if @c is not open. */
static bool finish_connect(struct tern_conn *c, uint32_t events)
{
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (!err && (events & (EPOLLERR | EPOLLHUP)))
                err = ECONNREFUSED;
        if (err) {
                tern__conn_close(c, TERN_CLOSE_ERROR, -err); /* the connector learns */
                return false;
        }
        if (!(events & EPOLLOUT))
                return false; /* still in progress */
        tern__connector_connected(c->connector, c);
        tern__conn_connected(c);
        return !(c->flags & TERN__CONN_CLOSED);
}

void tern__conn_on_events(struct tern_conn *c, uint32_t events)
{
        if ((c->flags & TERN__CONN_CONNECTING) && !finish_connect(c, events))
                return;
        if ((events & EPOLLERR) && !(events & EPOLLIN)) {
                int err = 0;
                socklen_t len = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                tern__conn_close(c, TERN_CLOSE_ERROR, err ? -err : -EIO);
                return;
        }
        if (events & EPOLLRDHUP)
                c->flags |= TERN__CONN_RDHUP;
        /* Both may arrive together: flush first so a reply queued earlier goes
         * out before new input produces more. */
        if ((events & EPOLLOUT) && !tern_buf_empty(&c->out))
                flush_out(c);
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                do_read(c);
}

void tern__conn_on_ready(struct tern_conn *c)
{
        /* Resumed: first what was already buffered while paused. */
        if (!tern_buf_empty(&c->in) && !(c->flags & TERN__CONN_PAUSED)) {
                deliver(c, &c->in);
                if (c->flags & TERN__CONN_CLOSED)
                        return;
                tern_buf_release_if_empty(&c->in);
        }
        do_read(c);
}

/* ---- closing, idle, drain ---- */

/* Closes now if nothing is queued, else once the output has flushed. */
static void close_after_flush(struct tern_conn *c, enum tern_close_reason reason, int err)
{
        if (c->flags & (TERN__CONN_CLOSED | TERN__CONN_CLOSING))
                return;
        if (tern_buf_empty(&c->out)) {
                tern__conn_close(c, reason, err);
                return;
        }
        c->close_reason = (uint8_t)reason;
        c->close_err = err;
        /* Flush first, but not forever: the idle timer becomes a linger
         * deadline for a peer that stopped reading. */
        c->flags |= TERN__CONN_CLOSING;
        uint32_t linger = opts_of(c)->drain_timeout_ms;
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
        if (tern_buf_empty(&c->out))
                shutdown(c->fd, SHUT_WR);
        /* else after_flush() sends the FIN once the queue has drained */
}

void tern_conn_abort(tern_conn *c)
{
        tern__conn_close(c, TERN_CLOSE_LOCAL, 0);
}

bool tern_conn_closed(const tern_conn *c)
{
        return c->flags & (TERN__CONN_CLOSED | TERN__CONN_CLOSING);
}

void tern__conn_drain(struct tern_conn *c)
{
        if (c->flags & TERN__CONN_CONNECTING) { /* never opened: nothing to say */
                tern__conn_close(c, TERN_CLOSE_SHUTDOWN, -ESHUTDOWN);
                return;
        }
        if (c->ops->on_drain && !(c->flags & TERN__CONN_CLOSING))
                c->ops->on_drain(c);
        close_after_flush(c, TERN_CLOSE_SHUTDOWN, 0);
}

static void idle_timer_cb(struct tern_timer *t, void *arg)
{
        struct tern_conn *c = arg;
        struct tern_loop *l = c->loop;
        /* Progress only stamps last_active; the timer catches up lazily here, so
         * the hot path never touches the wheel. */
        uint32_t idle_for = (uint32_t)l->now - c->last_active; /* wrap-safe */
        if (idle_for < c->idle_ms) {
                tern_timer_arm(&l->wheel, t, l->now + (c->idle_ms - idle_for), 0);
                return;
        }
        if (c->flags & TERN__CONN_CLOSING) {
                tern_warn("worker %d: fd %d: peer not reading, %zu bytes unsent at close "
                          "deadline; aborting",
                          l->index, c->fd, tern_buf_len(&c->out));
                tern__conn_close(c, TERN_CLOSE_LOCAL, -ETIMEDOUT);
                return;
        }
        tern_debug("worker %d: fd %d idle for %u ms; closing", l->index, c->fd, c->idle_ms);
        tern__stat_add(l, TERN__STAT(idle_timeouts), 1);
        tern__conn_close(c, TERN_CLOSE_IDLE, -ETIMEDOUT);
}

void tern_conn_set_idle_timeout(tern_conn *c, uint32_t ms)
{
        c->idle_ms = ms;
        if (!ms) {
                tern_timer_cancel(&c->loop->wheel, &c->idle_timer);
                return;
        }
        c->last_active = (uint32_t)c->loop->now;
        tern_timer_arm(&c->loop->wheel, &c->idle_timer, c->loop->now + ms + 1, 0);
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
        return tern__slot_handle(c->loop, c->slot);
}

tern_loop *tern_conn_loop(const tern_conn *c)
{
        return c->loop;
}

tern_connector *tern_conn_connector(const tern_conn *c)
{
        return c->connector;
}

tern_server *tern_conn_server(const tern_conn *c)
{
        return c->loop->server;
}

int tern_conn_fd(const tern_conn *c)
{
        return c->fd;
}

size_t tern_conn_queued(const tern_conn *c)
{
        return tern_buf_len(&c->out);
}

int tern_conn_peer(const tern_conn *c, struct sockaddr *addr, socklen_t *len)
{
        if (c->fd < 0)
                return -EBADF;
        return getpeername(c->fd, addr, len) < 0 ? -errno : 0;
}

/* ---- cross-thread, through handles ---- */

static struct tern_loop *owner_of(tern_server *s, tern_handle h)
{
        int w = tern__handle_worker(h);
        if (w < 0 || w >= s->nworkers)
                return NULL;
        return &s->loops[w];
}

static int post_handle_task(tern_server *s, tern_handle h, struct tern__task *t)
{
        struct tern_loop *l = owner_of(s, h);
        if (!l) {
                free(t);
                return -EINVAL;
        }
        t->handle = h;
        int r = tern__loop_enqueue(l, t);
        if (r)
                free(t);
        return r;
}

int tern_handle_send(tern_server *s, tern_handle h, const void *data, size_t len)
{
        struct tern__task *t = TERN__MALLOC(sizeof(*t) + len);
        if (!t)
                return -ENOMEM;
        t->kind = TERN__TASK_CONN_SEND;
        t->len = len;
        memcpy(t->data, data, len);
        return post_handle_task(s, h, t);
}

int tern_handle_close(tern_server *s, tern_handle h)
{
        struct tern__task *t = TERN__MALLOC(sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->kind = TERN__TASK_CONN_CLOSE;
        return post_handle_task(s, h, t);
}

int tern_handle_post(tern_server *s, tern_handle h, tern_conn_task_cb cb, void *arg)
{
        struct tern__task *t = TERN__MALLOC(sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->kind = TERN__TASK_CONN;
        t->conn_cb = cb;
        t->arg = arg;
        return post_handle_task(s, h, t);
}
