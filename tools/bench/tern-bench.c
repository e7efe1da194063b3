/*
 * tern-bench: a load generator for any TCP echo-style server.
 *
 * M client threads each own an edge-triggered epoll set and a share of the
 * connections; the main thread only sequences the phases (set-up, warm-up,
 * measurement, done), samples counters at the phase edges, draws the
 * progress line, and reports. Nothing here uses tern's network layer, so the
 * tool measures tern and its rivals with the same yardstick.
 *
 * Modes:
 *   pingpong  each connection sends one B-byte block, then echoes back
 *             whatever arrives; reports MiB/s received
 *   rr        closed-loop request/response, K requests of B bytes in flight
 *             per connection; reports req/s and a latency histogram
 *   churn     connect, one B-byte request, read the echo, close; -c slots run
 *             this cycle concurrently; reports connections/s and latencies
 *   idle      open N connections (each echoes one probe), hold them idle,
 *             then check each still echoes; with --pid, server RSS per conn
 *   chat      tern-chat's line protocol: N clients join a room, K send at a
 *             fixed rate (or closed-loop); delivered msg/s, delivery latency,
 *             and exactly-once in-order delivery checked per (receiver,
 *             sender) (bench_chat.c); --framing muduo for muduo's chat servers
 *
 * With --tls every connection of pingpong, rr, churn and idle speaks TLS
 * (OpenSSL, non-blocking on the same edge-triggered loop: the handshake runs
 * in CS_CONNECTING, SSL_read is drained until WANT_READ because OpenSSL
 * holds whole records, and SSL_write may write part of a buffer). In churn,
 * --tls-resume offers each slot's previous session, so handshakes resume.
 *
 * Every wait is bounded: epoll_wait times out every 50 ms to look at the
 * phase, set-up has a deadline, and the final echo check has a deadline.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench_chat.h"
#include "bench_hist.h"
#include "bench_sys.h"
#include "clock.h"

#define RBUF_SIZE       65536
#define MAX_EVENTS      256
#define POLL_MS         50
#define CONNECT_WINDOW  256 /* connects in progress at once, over all threads */
#define CHECK_TIMEOUT_S 30.0
#define MAX_THREADS     256
#define MAX_SIZE        (64u << 20)
#define MAX_PIPELINE    4096
#define STALL_NS        2000000000ull /* waiting this long at the end = stalled */

enum mode {
        MODE_PINGPONG,
        MODE_RR,
        MODE_CHURN,
        MODE_IDLE,
        MODE_CHAT,
};

struct mode_info {
        const char *name;
        enum mode mode;
        size_t def_size;
        unsigned def_conns;
        double def_duration;
        const char *what;
};

static const struct mode_info modes[] = {
    {"pingpong", MODE_PINGPONG, 16384, 100, 10, "N connections echo a B-byte block: MiB/s"},
    {"rr", MODE_RR, 32, 100, 10, "closed-loop request/response: req/s and latency"},
    {"churn", MODE_CHURN, 32, 100, 10, "connect, request, response, close: conn/s"},
    {"idle", MODE_IDLE, 16, 1000, 5, "hold N idle connections: server RSS per conn"},
    {"chat", MODE_CHAT, 0, 100, 10, "tern-chat room fan-out: delivered msg/s, verified"},
};

enum phase {
        PH_SETUP,
        PH_WARMUP,
        PH_MEASURE,
        PH_CHECK, /* idle: final echo check */
        PH_DONE,
};

enum conn_state {
        CS_NONE, /* no socket (churn slot between cycles, or lost) */
        CS_CONNECTING,
        CS_PROBING, /* one verified exchange in flight (idle probe, churn request) */
        CS_OPEN,
        CS_CHECKED, /* idle: passed the final check */
        CS_FAILED,
};

struct cfg {
        const struct mode_info *mode;
        const char *host;
        unsigned port;
        unsigned conns;
        unsigned threads;
        unsigned pipeline;
        unsigned active; /* rr: connections that send; 0 = all */
        unsigned nsrc;
        size_t size;
        double duration;
        double warmup;
        double setup_timeout;
        bool json;
        bool progress;
        bool busy_poll;
        pid_t pid;
        unsigned senders; /* chat */
        double rate;      /* chat: messages/s per sender */
        const char *room; /* chat */
        unsigned room_size;
        bool chat_idle;
        bool closed_loop; /* chat */
        enum bench_chat_framing framing;
        struct bench_target target;
        struct sockaddr_in *srcs; /* nsrc > 1: loopback source addresses */
        bool tls;                 /* --tls: connections speak TLS */
        bool tls_resume;          /* churn: resume the slot's previous session */
        const char *tls_ca;       /* verify the server against this CA file */
        const char *tls_suites;   /* TLS 1.3 cipher suites (and TLS 1.2 list) */
        SSL_CTX *ssl_ctx;         /* NULL: plain TCP */
};

struct conn {
        int fd;
        uint8_t state;
        bool passive;     /* rr with --active: open but never sends */
        uint32_t out_off; /* bytes of the current request already written */
        uint32_t got;     /* bytes of the current response received */
        uint32_t inflight;
        uint32_t pend_off, pend_len; /* pingpong: echo bytes waiting for space */
        char *pend;
        uint64_t seq_send, seq_recv;
        uint64_t t0;       /* churn: connect start */
        uint64_t t_last;   /* pingpong, rr: last time bytes arrived (or traffic began) */
        uint64_t *ts;      /* rr: send times, a ring of pipeline entries */
        SSL *ssl;          /* --tls: set once the TCP connect finished */
        SSL_SESSION *sess; /* --tls-resume: the previous connection's session */
        unsigned char hdr[8];
};

/* Written only by the owning worker; read by the main thread. */
struct counters {
        _Atomic uint64_t ops;        /* completed requests / connections */
        _Atomic uint64_t bytes;      /* bytes received */
        _Atomic uint64_t errors;     /* failed exchanges, bad echoes, lost connections */
        _Atomic uint64_t hs;         /* --tls: handshakes completed */
        _Atomic uint64_t hs_resumed; /* of which resumed a session */
};

struct worker {
        unsigned id;
        pthread_t tid;
        int epfd;
        const struct cfg *cfg;
        unsigned nconns;
        unsigned nactive; /* rr: the first nactive of conns send */
        struct conn *conns;
        unsigned next_src;
        char *rbuf;             /* RBUF_SIZE */
        char *pat;              /* max(size, RBUF_SIZE) bytes of pattern */
        char *req;              /* rr: one request, header patched per send */
        struct bench_hist lat;  /* rr: request latency; churn: connect latency */
        struct bench_hist lat2; /* churn: connect-to-response latency */
        uint64_t now;           /* clock read after each epoll_wait */
        struct counters cnt __attribute__((aligned(64)));
        _Atomic unsigned ready; /* connections set up */
        _Atomic bool setup_done;
        _Atomic bool check_done;
        _Atomic uint64_t check_ok, check_failed;
        _Atomic int fatal; /* -errno that should stop the run */
        char pad[64];
};

static _Atomic int g_phase = PH_SETUP;
static volatile sig_atomic_t g_interrupted;

static inline enum phase phase(void)
{
        return (enum phase)atomic_load_explicit(&g_phase, memory_order_acquire);
}

static inline void cnt_add(_Atomic uint64_t *c, uint64_t n)
{
        /* Single writer: a plain load and store, no locked instruction. */
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                              memory_order_relaxed);
}

static inline uint64_t cnt_get(_Atomic uint64_t *c)
{
        return atomic_load_explicit(c, memory_order_relaxed);
}

static void set_fatal(struct worker *w, int err)
{
        int zero = 0;

        atomic_compare_exchange_strong(&w->fatal, &zero, err);
}

/* ---- TLS ------------------------------------------------------------------ */

static bool g_tls_resume; /* conn_close keeps the session for the next connect */

/* Maps a failed SSL_* call to read(2)'s convention: -1 with errno EAGAIN
 * while OpenSSL waits for the socket, 0 at the peer's close_notify (or a bare
 * EOF: SSL_OP_IGNORE_UNEXPECTED_EOF), -1 with another errno on failure. */
static ssize_t tls_result(SSL *ssl, int r)
{
        int saved = errno;

        switch (SSL_get_error(ssl, r)) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
                errno = EAGAIN;
                return -1;
        case SSL_ERROR_ZERO_RETURN:
                return 0;
        case SSL_ERROR_SYSCALL:
                ERR_clear_error();
                errno = saved && saved != EAGAIN ? saved : ECONNRESET;
                return -1;
        default:
                ERR_clear_error();
                errno = EPROTO;
                return -1;
        }
}

/* read(2) and write(2), or their TLS equivalents once the handshake is done. */
static inline ssize_t io_read(struct conn *c, void *buf, size_t len)
{
        int r;

        if (!c->ssl)
                return read(c->fd, buf, len);
        errno = 0;
        r = SSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
        return r > 0 ? r : tls_result(c->ssl, r);
}

static inline ssize_t io_write(struct conn *c, const void *buf, size_t len)
{
        int r;

        if (!c->ssl)
                return write(c->fd, buf, len);
        errno = 0;
        r = SSL_write(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
        return r > 0 ? r : tls_result(c->ssl, r);
}

static void tls_end(struct conn *c)
{
        if (!c->ssl)
                return;
        if (SSL_is_init_finished(c->ssl)) {
                if (g_tls_resume) {
                        /* The newest session: under TLS 1.3 the one from the
                         * server's NewSessionTicket, read before the echo. */
                        SSL_SESSION *s = SSL_get1_session(c->ssl);
                        if (s) {
                                SSL_SESSION_free(c->sess);
                                c->sess = s;
                        }
                }
                /* One close_notify, unanswered: it also keeps OpenSSL from
                 * marking the session bad, as a close without it would. */
                SSL_shutdown(c->ssl);
        }
        ERR_clear_error();
        SSL_free(c->ssl);
        c->ssl = NULL;
}

/* ---- connections -------------------------------------------------------- */

static int conn_open(struct worker *w, struct conn *c)
{
        const struct cfg *cfg = w->cfg;
        const struct sockaddr_in *src = NULL;
        struct epoll_event ev;
        int fd;

        if (cfg->nsrc > 1)
                src = &cfg->srcs[(w->next_src++ + w->id) % cfg->nsrc];
        c->t0 = tern_now_ns();
        fd = bench_connect_start(&cfg->target, src);
        if (fd < 0)
                return fd;
        /* Registered once, never modified: see echo_epoll.c on why OUT stays armed. */
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = c;
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev)) {
                int err = -errno;
                close(fd);
                return err;
        }
        c->fd = fd;
        c->state = CS_CONNECTING;
        c->out_off = c->got = c->inflight = 0;
        return 0;
}

static void conn_close(struct conn *c, enum conn_state state)
{
        tls_end(c);
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->state = (uint8_t)state;
}

/* A connect finished (EPOLLOUT or EPOLLERR seen). Returns 0 or -errno. */
static int conn_connected(struct conn *c, uint32_t events)
{
        int err = 0;
        socklen_t len = sizeof(err);

        if (!(events & (EPOLLERR | EPOLLHUP)))
                return 0;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) || !err)
                err = ECONNRESET;
        return -err;
}

/*
 * The connect finished (or progressed), and with --tls the handshake then
 * runs here on each event while the state stays CS_CONNECTING. Returns 1
 * once the connection can carry data, 0 while the handshake waits, or -errno.
 */
static int conn_ready(struct worker *w, struct conn *c, uint32_t events)
{
        SSL_CTX *ctx = w->cfg->ssl_ctx;
        int rc;

        if (!c->ssl) {
                rc = conn_connected(c, events);
                if (rc || !ctx)
                        return rc ? rc : 1;
                /* A TLS client writes its Finished and its first request
                 * separately: Nagle would hold the request for the ACK, and
                 * a delayed ACK makes that 40 ms. Real clients disable it. */
                int one = 1;
                setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                c->ssl = SSL_new(ctx);
                if (!c->ssl)
                        return -ENOMEM;
                if (SSL_set_fd(c->ssl, c->fd) != 1)
                        return -ENOMEM;
                SSL_set_connect_state(c->ssl);
                if (c->sess && g_tls_resume)
                        SSL_set_session(c->ssl, c->sess);
        }
        errno = 0;
        rc = SSL_do_handshake(c->ssl);
        if (rc == 1) {
                cnt_add(&w->cnt.hs, 1);
                if (SSL_session_reused(c->ssl))
                        cnt_add(&w->cnt.hs_resumed, 1);
                return 1;
        }
        if (tls_result(c->ssl, rc) == 0)
                return -ECONNRESET;
        return errno == EAGAIN ? 0 : -errno;
}

/* ---- one verified exchange: idle probes and churn requests --------------- */

/* Writes what is left of the B-byte pattern request. Returns 0 or -errno. */
static int exch_write(struct worker *w, struct conn *c)
{
        size_t size = w->cfg->size;

        while (c->out_off < size) {
                ssize_t n = io_write(c, w->pat + c->out_off, size - c->out_off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -errno;
                }
                c->out_off += (uint32_t)n;
        }
        return 0;
}

static int exch_begin(struct worker *w, struct conn *c)
{
        c->out_off = c->got = 0;
        c->state = CS_PROBING;
        return exch_write(w, c);
}

/* Reads the echo. Returns 1 when all B bytes came back intact, 0 if more is
 * due, -EPROTO on a wrong or surplus byte, -ECONNRESET on EOF, or -errno. */
static int exch_read(struct worker *w, struct conn *c)
{
        size_t size = w->cfg->size;

        for (;;) {
                ssize_t n = io_read(c, w->rbuf, RBUF_SIZE);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                cnt_add(&w->cnt.bytes, (uint64_t)n);
                if (c->got + (size_t)n > size || memcmp(w->rbuf, w->pat + c->got, (size_t)n))
                        return -EPROTO;
                c->got += (uint32_t)n;
                if (c->got == size)
                        return 1;
                if (n < RBUF_SIZE && !c->ssl) /* TLS: drain until WANT_READ */
                        return 0;
        }
}

/* ---- pingpong ------------------------------------------------------------ */

static int pp_queue(struct worker *w, struct conn *c, const char *data, size_t len)
{
        size_t cap = w->cfg->size > RBUF_SIZE ? w->cfg->size : RBUF_SIZE;

        if (!c->pend) {
                c->pend = malloc(cap);
                if (!c->pend)
                        return -ENOMEM;
        }
        if (c->pend_off + c->pend_len + len > cap) {
                memmove(c->pend, c->pend + c->pend_off, c->pend_len);
                c->pend_off = 0;
        }
        if (c->pend_len + len > cap)
                return -EPROTO; /* more in flight than we ever sent */
        memcpy(c->pend + c->pend_off + c->pend_len, data, len);
        c->pend_len += (uint32_t)len;
        return 0;
}

/* Returns 1 when nothing is left queued, 0 when stalled, or -errno. */
static int pp_flush(struct conn *c)
{
        while (c->pend_len) {
                ssize_t n = io_write(c, c->pend + c->pend_off, c->pend_len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -errno;
                }
                c->pend_off += (uint32_t)n;
                c->pend_len -= (uint32_t)n;
        }
        c->pend_off = 0;
        return 1;
}

/* Writes @len bytes, queueing what the socket will not take. */
static int pp_send(struct worker *w, struct conn *c, const char *data, size_t len)
{
        ssize_t n;

        do
                n = io_write(c, data, len);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                if (errno != EAGAIN)
                        return -errno;
                n = 0;
        }
        if ((size_t)n == len)
                return 0;
        return pp_queue(w, c, data + n, len - (size_t)n);
}

static int pp_start(struct worker *w, struct conn *c)
{
        return pp_send(w, c, w->pat, w->cfg->size);
}

static int pp_event(struct worker *w, struct conn *c, uint32_t events)
{
        int rc;

        if (c->pend_len) {
                rc = pp_flush(c);
                if (rc <= 0)
                        return rc;
        }
        for (;;) {
                ssize_t n = io_read(c, w->rbuf, RBUF_SIZE);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                cnt_add(&w->cnt.bytes, (uint64_t)n);
                c->t_last = w->now; /* stall detection only needs the batch's time */
                rc = pp_send(w, c, w->rbuf, (size_t)n);
                if (rc < 0)
                        return rc;
                if (c->pend_len)
                        return 0;             /* stalled: EPOLLOUT resumes us */
                if (n < RBUF_SIZE && !c->ssl) /* TLS: drain until WANT_READ */
                        return 0;
        }
}

/* ---- rr ------------------------------------------------------------------ */

static void seq_bytes(uint64_t seq, unsigned char out[8])
{
        for (int i = 0; i < 8; i++)
                out[i] = (unsigned char)(seq >> (8 * i));
}

/*
 * Keeps @pipeline requests in flight, stamping each with @now: the caller's
 * clock reading from just before (a response's arrival, when one triggered
 * this), which saves a clock read per request. Returns 0 or -errno.
 */
static int rr_send(struct worker *w, struct conn *c, uint64_t now)
{
        size_t size = w->cfg->size, hlen = size < 8 ? size : 8;
        unsigned k = w->cfg->pipeline;

        for (;;) {
                unsigned char hdr[8];
                ssize_t n;

                if (c->out_off == 0) {
                        if (c->inflight >= k || phase() >= PH_DONE)
                                return 0;
                        c->ts[c->seq_send % k] = now;
                        c->inflight++;
                }
                seq_bytes(c->seq_send, hdr);
                memcpy(w->req, hdr, hlen);
                n = io_write(c, w->req + c->out_off, size - c->out_off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -errno;
                }
                c->out_off += (uint32_t)n;
                if (c->out_off == size) {
                        c->out_off = 0;
                        c->seq_send++;
                }
        }
}

/* Consumes @n echoed bytes. Returns 0 or -EPROTO. */
static int rr_consume(struct worker *w, struct conn *c, const char *p, size_t n, uint64_t now,
                      bool measuring)
{
        size_t size = w->cfg->size, hlen = size < 8 ? size : 8;
        unsigned k = w->cfg->pipeline;

        while (n) {
                size_t take = size - c->got;
                if (take > n)
                        take = n;
                if (!c->inflight)
                        return -EPROTO; /* bytes nobody asked for */
                if (c->got < hlen) {
                        /* The header is checked whole at the end: it may arrive split. */
                        size_t h = hlen - c->got < take ? hlen - c->got : take;
                        memcpy(c->hdr + c->got, p, h);
                        if (take > h && memcmp(p + h, w->pat + hlen, take - h))
                                return -EPROTO;
                } else if (memcmp(p, w->pat + c->got, take)) {
                        return -EPROTO; /* a corrupted payload byte */
                }
                c->got += (uint32_t)take;
                p += take;
                n -= take;
                if (c->got == size) {
                        unsigned char want[8];

                        seq_bytes(c->seq_recv, want);
                        if (memcmp(c->hdr, want, hlen))
                                return -EPROTO;
                        if (measuring)
                                bench_hist_record(&w->lat, now - c->ts[c->seq_recv % k]);
                        cnt_add(&w->cnt.ops, 1);
                        c->seq_recv++;
                        c->inflight--;
                        c->got = 0;
                }
        }
        return 0;
}

static int rr_event(struct worker *w, struct conn *c, uint32_t events)
{
        uint64_t now = 0;
        int rc;

        for (;;) {
                ssize_t n = io_read(c, w->rbuf, RBUF_SIZE);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        break;
                }
                if (n == 0)
                        return -ECONNRESET;
                cnt_add(&w->cnt.bytes, (uint64_t)n);
                now = tern_now_ns();
                c->t_last = now;
                rc = rr_consume(w, c, w->rbuf, (size_t)n, now, phase() == PH_MEASURE);
                if (rc)
                        return rc;
                if (n < RBUF_SIZE && !c->ssl) /* TLS: drain until WANT_READ */
                        break;
        }
        return rr_send(w, c, now ? now : tern_now_ns());
}

/* ---- churn --------------------------------------------------------------- */

static void churn_restart(struct worker *w, struct conn *c)
{
        int rc;

        if (phase() >= PH_DONE)
                return;
        rc = conn_open(w, c);
        if (rc < 0) {
                cnt_add(&w->cnt.errors, 1);
                /* Out of fds or ports ends the run with an explanation. */
                if (rc == -EMFILE || rc == -ENFILE || rc == -EADDRNOTAVAIL || rc == -ECONNREFUSED)
                        set_fatal(w, rc);
                c->state = CS_NONE;
        }
}

static void churn_event(struct worker *w, struct conn *c, uint32_t events)
{
        uint64_t now;
        int rc;

        if (c->state == CS_CONNECTING) {
                rc = conn_ready(w, c, events);
                if (rc == 0)
                        return; /* TLS handshake under way */
                if (rc < 0) {
                        cnt_add(&w->cnt.errors, 1);
                        if (rc == -ECONNREFUSED)
                                set_fatal(w, rc);
                        conn_close(c, CS_NONE);
                        churn_restart(w, c);
                        return;
                }
                if (phase() == PH_MEASURE)
                        bench_hist_record(&w->lat, tern_now_ns() - c->t0);
                rc = exch_begin(w, c);
        } else {
                rc = exch_write(w, c);
        }
        if (!rc)
                rc = exch_read(w, c);
        if (rc == 0)
                return;
        if (rc > 0) {
                now = tern_now_ns();
                if (phase() == PH_MEASURE)
                        bench_hist_record(&w->lat2, now - c->t0);
                cnt_add(&w->cnt.ops, 1);
        } else {
                cnt_add(&w->cnt.errors, 1);
        }
        conn_close(c, CS_NONE);
        churn_restart(w, c);
}

/* ---- idle ---------------------------------------------------------------- */

/* An idle connection must stay silent: data or EOF while holding is a fault. */
static void idle_event(struct worker *w, struct conn *c, uint32_t events)
{
        int rc;

        if (c->state == CS_PROBING) {
                rc = exch_write(w, c);
                if (!rc)
                        rc = exch_read(w, c);
                if (rc == 0)
                        return;
                if (rc > 0) {
                        c->state = phase() == PH_CHECK ? CS_CHECKED : CS_OPEN;
                        if (c->state == CS_CHECKED)
                                cnt_add(&w->check_ok, 1);
                        return;
                }
                if (phase() == PH_CHECK)
                        cnt_add(&w->check_failed, 1);
                cnt_add(&w->cnt.errors, 1);
                conn_close(c, CS_FAILED);
                return;
        }
        if (c->state == CS_OPEN && (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) {
                cnt_add(&w->cnt.errors, 1);
                conn_close(c, CS_FAILED);
        }
}

/* ---- worker -------------------------------------------------------------- */

static void worker_dispatch(struct worker *w, struct conn *c, uint32_t events)
{
        int rc = 0;

        if (c->state == CS_NONE || c->state == CS_FAILED)
                return; /* a stale event for a socket closed in this batch */
        switch (w->cfg->mode->mode) {
        case MODE_PINGPONG:
                rc = pp_event(w, c, events);
                break;
        case MODE_RR:
                if (c->passive) {
                        /* Like an idle connection: anything but silence is a fault.
                         * Over TLS, late session tickets arrive: read, yield no data. */
                        if (c->ssl && (events & EPOLLIN) &&
                            !(events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP))) {
                                if (io_read(c, w->rbuf, RBUF_SIZE) >= 0 || errno != EAGAIN)
                                        rc = -EPROTO;
                        } else if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
                                rc = -EPROTO;
                        }
                        break;
                }
                if ((events & EPOLLOUT) && c->out_off)
                        rc = rr_send(w, c, tern_now_ns());
                if (!rc)
                        rc = rr_event(w, c, events);
                break;
        case MODE_CHURN:
                churn_event(w, c, events);
                return;
        case MODE_IDLE:
                idle_event(w, c, events);
                return;
        case MODE_CHAT: /* bench_chat.c runs its own loop */
                return;
        }
        if (rc < 0) {
                cnt_add(&w->cnt.errors, 1);
                conn_close(c, CS_FAILED);
        }
}

/*
 * Opens this worker's connections with at most a window of connects (and,
 * for idle, probes) in progress, so a server's accept queue never overflows
 * and drops SYNs. Returns 0, or -errno after set_fatal.
 */
static int worker_setup(struct worker *w)
{
        const struct cfg *cfg = w->cfg;
        struct epoll_event evs[MAX_EVENTS];
        unsigned window = CONNECT_WINDOW / cfg->threads, next = 0, busy = 0, done = 0;
        uint64_t deadline = tern_now_ns() + (uint64_t)(cfg->setup_timeout * 1e9);
        bool probe = cfg->mode->mode == MODE_IDLE;

        if (window < 8)
                window = 8;
        while (done < w->nconns) {
                while (next < w->nconns && busy < window) {
                        int rc = conn_open(w, &w->conns[next]);
                        if (rc) {
                                set_fatal(w, rc);
                                return rc;
                        }
                        next++;
                        busy++;
                }
                int n = epoll_wait(w->epfd, evs, MAX_EVENTS, POLL_MS);
                for (int i = 0; i < n; i++) {
                        struct conn *c = evs[i].data.ptr;
                        int rc = 0;

                        if (c->state == CS_CONNECTING) {
                                rc = conn_ready(w, c, evs[i].events);
                                if (rc > 0 && probe) {
                                        rc = exch_begin(w, c);
                                        if (!rc)
                                                rc = exch_read(w, c);
                                } else if (rc > 0) {
                                        c->state = CS_OPEN;
                                }
                        } else if (c->state == CS_PROBING) {
                                rc = exch_write(w, c);
                                if (!rc)
                                        rc = exch_read(w, c);
                        }
                        if (rc < 0) {
                                set_fatal(w, rc);
                                return rc;
                        }
                        if (rc > 0) {
                                c->state = CS_OPEN;
                                busy--;
                                done++;
                                atomic_store_explicit(&w->ready, done, memory_order_relaxed);
                        }
                }
                if (phase() >= PH_DONE)
                        return -ECANCELED;
                if (tern_now_ns() > deadline) {
                        set_fatal(w, -ETIMEDOUT);
                        return -ETIMEDOUT;
                }
        }
        return 0;
}

static void worker_start_traffic(struct worker *w)
{
        uint64_t now = tern_now_ns();

        for (unsigned i = 0; i < w->nconns; i++) {
                struct conn *c = &w->conns[i];
                int rc = 0;

                c->t_last = now;
                switch (w->cfg->mode->mode) {
                case MODE_PINGPONG:
                        rc = pp_start(w, c);
                        break;
                case MODE_RR:
                        c->passive = i >= w->nactive;
                        if (!c->passive)
                                rc = rr_send(w, c, tern_now_ns());
                        break;
                case MODE_CHURN:
                        churn_restart(w, c);
                        break;
                case MODE_IDLE:
                case MODE_CHAT:
                        break;
                }
                if (rc < 0) {
                        cnt_add(&w->cnt.errors, 1);
                        conn_close(c, CS_FAILED);
                }
        }
}

/* idle: probe every connection again; those that failed while idle count as failed. */
static void worker_check_begin(struct worker *w)
{
        for (unsigned i = 0; i < w->nconns; i++) {
                struct conn *c = &w->conns[i];
                int rc;

                if (c->state != CS_OPEN) {
                        cnt_add(&w->check_failed, 1);
                        continue;
                }
                rc = exch_begin(w, c);
                if (!rc)
                        rc = exch_read(w, c);
                if (rc > 0) {
                        c->state = CS_CHECKED;
                        cnt_add(&w->check_ok, 1);
                } else if (rc < 0) {
                        cnt_add(&w->check_failed, 1);
                        conn_close(c, CS_FAILED);
                }
        }
}

static bool worker_check_finished(struct worker *w)
{
        return cnt_get(&w->check_ok) + cnt_get(&w->check_failed) >= w->nconns;
}

static void *worker_main(void *arg)
{
        struct worker *w = arg;
        const struct cfg *cfg = w->cfg;
        struct epoll_event evs[MAX_EVENTS];
        bool checking = false;

        if (cfg->mode->mode != MODE_CHURN && worker_setup(w))
                goto out;
        atomic_store(&w->setup_done, true);
        /* The main thread starts every worker's traffic at once. */
        while (phase() == PH_SETUP)
                usleep(200);
        if (phase() >= PH_DONE)
                goto out;
        worker_start_traffic(w);
        for (;;) {
                enum phase ph = phase();
                int n;

                if (ph >= PH_DONE)
                        break;
                if (ph == PH_CHECK && !checking) {
                        checking = true;
                        worker_check_begin(w);
                }
                if (checking && worker_check_finished(w))
                        atomic_store(&w->check_done, true);
                n = epoll_wait(w->epfd, evs, MAX_EVENTS, cfg->busy_poll ? 0 : POLL_MS);
                if (cfg->mode->mode == MODE_PINGPONG)
                        w->now = tern_now_ns();
                for (int i = 0; i < n; i++)
                        worker_dispatch(w, evs[i].data.ptr, evs[i].events);
        }
out:
        for (unsigned i = 0; i < w->nconns; i++) {
                if (w->conns[i].ssl) {
                        SSL_free(w->conns[i].ssl); /* no close_notify at exit */
                        w->conns[i].ssl = NULL;
                }
                if (w->conns[i].fd >= 0)
                        close(w->conns[i].fd);
        }
        atomic_store(&w->setup_done, true);
        return NULL;
}

static int worker_init(struct worker *w, unsigned id, const struct cfg *cfg)
{
        size_t patlen = cfg->size > RBUF_SIZE ? cfg->size : RBUF_SIZE;

        memset(w, 0, sizeof(*w));
        w->id = id;
        w->cfg = cfg;
        w->nconns = cfg->conns / cfg->threads + (id < cfg->conns % cfg->threads);
        w->nactive = cfg->active ? cfg->active / cfg->threads + (id < cfg->active % cfg->threads)
                                 : w->nconns;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (w->epfd < 0)
                return -errno;
        w->conns = calloc(w->nconns ? w->nconns : 1, sizeof(*w->conns));
        w->rbuf = malloc(RBUF_SIZE);
        w->pat = malloc(patlen);
        w->req = malloc(cfg->size);
        if (!w->conns || !w->rbuf || !w->pat || !w->req)
                return -ENOMEM;
        for (size_t i = 0; i < patlen; i++)
                w->pat[i] = (char)((i * 131 + (i >> 9) + 7) & 0xff);
        memcpy(w->req, w->pat, cfg->size);
        for (unsigned i = 0; i < w->nconns; i++) {
                w->conns[i].fd = -1;
                if (cfg->mode->mode == MODE_RR) {
                        w->conns[i].ts = calloc(cfg->pipeline, sizeof(uint64_t));
                        if (!w->conns[i].ts)
                                return -ENOMEM;
                }
        }
        if (bench_hist_init(&w->lat, BENCH_HIST_DEFAULT_PRECISION) ||
            bench_hist_init(&w->lat2, BENCH_HIST_DEFAULT_PRECISION))
                return -ENOMEM;
        return 0;
}

/*
 * Connections still waiting for an echo after STALL_NS at the end of the run:
 * a server that dropped bytes leaves them hanging rather than erroring.
 * Call after the worker has been joined.
 */
static bool waited_long(uint64_t since, uint64_t now)
{
        /* Workers run on past the end snapshot, so @since may be later than @now. */
        return now > since && now - since > STALL_NS;
}

static uint64_t worker_stalled(const struct worker *w, uint64_t now)
{
        uint64_t n = 0;

        for (unsigned i = 0; i < w->nconns; i++) {
                const struct conn *c = &w->conns[i];

                switch (w->cfg->mode->mode) {
                case MODE_PINGPONG:
                        n += c->state == CS_OPEN && waited_long(c->t_last, now);
                        break;
                case MODE_RR:
                        n += c->state == CS_OPEN && c->inflight && waited_long(c->t_last, now);
                        break;
                case MODE_CHURN:
                        n += (c->state == CS_CONNECTING || c->state == CS_PROBING) &&
                             waited_long(c->t0, now);
                        break;
                case MODE_IDLE:
                case MODE_CHAT:
                        break;
                }
        }
        return n;
}

static void worker_destroy(struct worker *w)
{
        if (w->conns) {
                for (unsigned i = 0; i < w->nconns; i++) {
                        free(w->conns[i].ts);
                        free(w->conns[i].pend);
                        SSL_SESSION_free(w->conns[i].sess);
                }
        }
        free(w->conns);
        free(w->rbuf);
        free(w->pat);
        free(w->req);
        bench_hist_destroy(&w->lat);
        bench_hist_destroy(&w->lat2);
        if (w->epfd >= 0)
                close(w->epfd);
}

/* ---- main thread: phases, progress, report ------------------------------- */

struct snapshot {
        uint64_t t_ns;
        uint64_t ops, bytes, errors;
        uint64_t hs, hs_resumed;
        uint64_t self_cpu;
        uint64_t server_cpu;
        bool server_cpu_ok;
};

static struct worker *g_workers;
static struct cfg g_cfg;

static void take_snapshot(struct snapshot *s)
{
        memset(s, 0, sizeof(*s));
        for (unsigned i = 0; i < g_cfg.threads; i++) {
                s->ops += cnt_get(&g_workers[i].cnt.ops);
                s->bytes += cnt_get(&g_workers[i].cnt.bytes);
                s->errors += cnt_get(&g_workers[i].cnt.errors);
                s->hs += cnt_get(&g_workers[i].cnt.hs);
                s->hs_resumed += cnt_get(&g_workers[i].cnt.hs_resumed);
        }
        s->t_ns = tern_now_ns();
        s->self_cpu = bench_self_cpu_ns();
        if (g_cfg.pid > 0)
                s->server_cpu_ok = !bench_proc_cpu_ns(g_cfg.pid, &s->server_cpu);
}

static int first_fatal(void)
{
        for (unsigned i = 0; i < g_cfg.threads; i++) {
                int e = atomic_load(&g_workers[i].fatal);
                if (e)
                        return e;
        }
        return 0;
}

static void progress_line(const char *label, double elapsed, double total,
                          const struct snapshot *prev, const struct snapshot *now)
{
        double dt = (double)(now->t_ns - prev->t_ns) / 1e9;
        char rate[64];

        if (!g_cfg.progress || dt <= 0)
                return;
        if (g_cfg.mode->mode == MODE_PINGPONG)
                snprintf(rate, sizeof(rate), "%.1f MiB/s",
                         (double)(now->bytes - prev->bytes) / 1048576.0 / dt);
        else if (g_cfg.mode->mode == MODE_IDLE)
                snprintf(rate, sizeof(rate), "holding");
        else
                snprintf(rate, sizeof(rate), "%.0f %s/s", (double)(now->ops - prev->ops) / dt,
                         g_cfg.mode->mode == MODE_RR ? "req" : "conn");
        fprintf(stderr, "\r\033[K%s %s %.1f/%.1f s  %s  errors %llu", g_cfg.mode->name, label,
                elapsed, total, rate, (unsigned long long)now->errors);
}

static void progress_clear(void)
{
        if (g_cfg.progress)
                fprintf(stderr, "\r\033[K");
}

/*
 * Runs one timed phase, drawing progress twice a second. Returns false when
 * it was cut short by Ctrl-C or a worker's fatal error.
 */
static bool run_phase(enum phase ph, const char *label, double seconds)
{
        uint64_t start = tern_now_ns(), end = start + (uint64_t)(seconds * 1e9);
        struct snapshot prev, now;

        atomic_store_explicit(&g_phase, ph, memory_order_release);
        take_snapshot(&prev);
        for (;;) {
                uint64_t t = tern_now_ns();
                if (t >= end)
                        return true;
                if (g_interrupted || first_fatal())
                        return false;
                uint64_t nap = end - t < 100000000u ? end - t : 100000000u;
                usleep((useconds_t)(nap / 1000));
                take_snapshot(&now);
                if (now.t_ns - prev.t_ns >= 500000000u || now.t_ns >= end) {
                        progress_line(label, (double)(now.t_ns - start) / 1e9, seconds, &prev,
                                      &now);
                        prev = now;
                }
        }
}

/* Waits for every worker's set-up. Returns 0 or the first fatal error. */
static int wait_setup(void)
{
        uint64_t start = tern_now_ns();
        uint64_t deadline = start + (uint64_t)((g_cfg.setup_timeout + 5) * 1e9);
        uint64_t last = 0;

        for (;;) {
                unsigned ready = 0, done = 0;
                int fatal = first_fatal();

                if (fatal)
                        return fatal;
                if (g_interrupted)
                        return -EINTR;
                for (unsigned i = 0; i < g_cfg.threads; i++) {
                        ready += atomic_load_explicit(&g_workers[i].ready, memory_order_relaxed);
                        done += atomic_load(&g_workers[i].setup_done);
                }
                if (done == g_cfg.threads)
                        return first_fatal();
                uint64_t t = tern_now_ns();
                if (t > deadline)
                        return -ETIMEDOUT;
                if (g_cfg.progress && t - last > 250000000u) {
                        fprintf(stderr, "\r\033[K%s connecting %u/%u  %.1f s", g_cfg.mode->name,
                                ready, g_cfg.conns, (double)(t - start) / 1e9);
                        last = t;
                }
                usleep(2000);
        }
}

/* Minimal JSON building: one flat object of numbers and strings. */
struct json {
        char buf[4096];
        size_t len;
};

static void json_raw(struct json *j, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void json_raw(struct json *j, const char *key, const char *fmt, ...)
{
        va_list ap;

        if (j->len >= sizeof(j->buf))
                return;
        j->len += (size_t)snprintf(j->buf + j->len, sizeof(j->buf) - j->len,
                                   "%s\"%s\": ", j->len ? ", " : "{", key);
        if (j->len >= sizeof(j->buf))
                return;
        va_start(ap, fmt);
        j->len += (size_t)vsnprintf(j->buf + j->len, sizeof(j->buf) - j->len, fmt, ap);
        va_end(ap);
}

static void json_num(struct json *j, const char *key, double v)
{
        json_raw(j, key, "%.3f", v);
}

static void json_int(struct json *j, const char *key, long long v)
{
        json_raw(j, key, "%lld", v);
}

static void json_str(struct json *j, const char *key, const char *s)
{
        /* Only our own fixed strings and the user's host name reach here. */
        json_raw(j, key, "\"%s\"", s);
}

static void report_latency(struct json *j, const char *prefix, const char *label,
                           const struct bench_hist *h)
{
        static const struct {
                const char *key;
                double pct;
        } pcts[] = {{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p999", 99.9}};
        char key[64];

        for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
                snprintf(key, sizeof(key), "%s_%s_us", prefix, pcts[i].key);
                json_num(j, key, (double)bench_hist_percentile(h, pcts[i].pct) / 1e3);
        }
        snprintf(key, sizeof(key), "%s_max_us", prefix);
        json_num(j, key, (double)h->max / 1e3);
        snprintf(key, sizeof(key), "%s_mean_us", prefix);
        json_num(j, key, bench_hist_mean(h) / 1e3);
        snprintf(key, sizeof(key), "%s_samples", prefix);
        json_int(j, key, (long long)h->total);
        if (g_cfg.json)
                return;
        printf("  %-14s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f  (%llu "
               "samples)\n",
               label, (double)bench_hist_percentile(h, 50) / 1e3,
               (double)bench_hist_percentile(h, 90) / 1e3,
               (double)bench_hist_percentile(h, 99) / 1e3,
               (double)bench_hist_percentile(h, 99.9) / 1e3, (double)h->max / 1e3,
               bench_hist_mean(h) / 1e3, (unsigned long long)h->total);
}

static void report_header(struct json *j)
{
        json_str(j, "tool", "tern-bench");
        json_str(j, "mode", g_cfg.mode->name);
        json_str(j, "host", g_cfg.host);
        json_int(j, "port", g_cfg.port);
        json_int(j, "connections", g_cfg.conns);
        json_int(j, "threads", g_cfg.threads);
        json_int(j, "size", (long long)g_cfg.size);
        if (g_cfg.mode->mode == MODE_RR) {
                json_int(j, "pipeline", g_cfg.pipeline);
                json_int(j, "active", g_cfg.active ? g_cfg.active : g_cfg.conns);
        }
        json_int(j, "src_addrs", g_cfg.nsrc);
        json_int(j, "tls", g_cfg.tls);
        if (g_cfg.tls)
                json_int(j, "tls_resume", g_cfg.tls_resume);
        if (g_cfg.json)
                return;
        printf("tern-bench %s -> %s:%u: %u connection%s, %u thread%s, %zu B", g_cfg.mode->name,
               g_cfg.host, g_cfg.port, g_cfg.conns, g_cfg.conns == 1 ? "" : "s", g_cfg.threads,
               g_cfg.threads == 1 ? "" : "s", g_cfg.size);
        if (g_cfg.mode->mode == MODE_RR)
                printf(", pipeline %u", g_cfg.pipeline);
        if (g_cfg.active)
                printf(", %u active", g_cfg.active);
        if (g_cfg.nsrc > 1)
                printf(", %u source addresses", g_cfg.nsrc);
        if (g_cfg.tls)
                printf(", TLS%s", g_cfg.tls_resume ? " (resuming sessions)" : "");
        printf("\n");
}

static void report_cpu(struct json *j, const struct snapshot *a, const struct snapshot *b)
{
        double dt = (double)(b->t_ns - a->t_ns);
        double self = 100.0 * (double)(b->self_cpu - a->self_cpu) / dt;
        bool srv = a->server_cpu_ok && b->server_cpu_ok;
        double server = srv ? 100.0 * (double)(b->server_cpu - a->server_cpu) / dt : 0;

        json_num(j, "client_cpu_pct", self);
        if (srv)
                json_num(j, "server_cpu_pct", server);
        if (g_cfg.json)
                return;
        printf("  %-14s client %.0f%%", "cpu (1 core=100)", self);
        if (srv)
                printf("  server %.0f%%", server);
        printf("\n");
}

static int report_traffic(const struct snapshot *a, const struct snapshot *b, bool interrupted)
{
        struct bench_hist lat, lat2;
        double secs = (double)(b->t_ns - a->t_ns) / 1e9;
        uint64_t ops = b->ops - a->ops, bytes = b->bytes - a->bytes, stalled = 0;
        uint64_t errors = b->errors; /* over the whole run, set-up included */
        struct json j = {.len = 0};

        if (bench_hist_init(&lat, BENCH_HIST_DEFAULT_PRECISION) ||
            bench_hist_init(&lat2, BENCH_HIST_DEFAULT_PRECISION))
                return 1;
        for (unsigned i = 0; i < g_cfg.threads; i++) {
                bench_hist_merge(&lat, &g_workers[i].lat);
                bench_hist_merge(&lat2, &g_workers[i].lat2);
                stalled += worker_stalled(&g_workers[i], b->t_ns);
        }
        errors += stalled;
        report_header(&j);
        json_num(&j, "warmup_s", g_cfg.warmup);
        json_num(&j, "duration_s", secs);
        if (!g_cfg.json)
                printf("  %-14s %.3f s after %.1f s warm-up%s\n", "measured", secs, g_cfg.warmup,
                       interrupted ? " (cut short)" : "");
        json_int(&j, "bytes_received", (long long)bytes);
        json_num(&j, "mib_per_s", (double)bytes / 1048576.0 / secs);
        switch (g_cfg.mode->mode) {
        case MODE_PINGPONG:
                if (!g_cfg.json)
                        printf("  %-14s %.1f MiB/s received (%.1f MiB)\n", "throughput",
                               (double)bytes / 1048576.0 / secs, (double)bytes / 1048576.0);
                break;
        case MODE_RR:
                json_int(&j, "requests", (long long)ops);
                json_num(&j, "req_per_s", (double)ops / secs);
                if (!g_cfg.json)
                        printf("  %-14s %.0f req/s (%llu requests)\n", "rate", (double)ops / secs,
                               (unsigned long long)ops);
                report_latency(&j, "lat", "latency us", &lat);
                break;
        case MODE_CHURN:
                json_int(&j, "conns", (long long)ops);
                json_num(&j, "conns_per_s", (double)ops / secs);
                if (!g_cfg.json)
                        printf("  %-14s %.0f conn/s (%llu connections)\n", "rate",
                               (double)ops / secs, (unsigned long long)ops);
                report_latency(&j, "connect", "connect us", &lat);
                report_latency(&j, "txn", "to echo us", &lat2);
                break;
        case MODE_IDLE:
        case MODE_CHAT:
                break;
        }
        if (g_cfg.tls) {
                uint64_t hs = b->hs - a->hs, res = b->hs_resumed - a->hs_resumed;

                json_int(&j, "tls_handshakes", (long long)hs);
                json_int(&j, "tls_resumed", (long long)res);
                json_num(&j, "tls_handshakes_per_s", (double)hs / secs);
                if (!g_cfg.json)
                        printf("  %-14s %llu handshakes in the window (%.0f/s), %llu resumed\n",
                               "tls", (unsigned long long)hs, (double)hs / secs,
                               (unsigned long long)res);
        }
        report_cpu(&j, a, b);
        json_int(&j, "stalled", (long long)stalled);
        json_int(&j, "errors", (long long)errors);
        json_int(&j, "interrupted", interrupted);
        if (g_cfg.json)
                printf("%s}\n", j.buf);
        else
                printf("  %-14s %llu (%llu connections stalled for over %.0f s)\n", "errors",
                       (unsigned long long)errors, (unsigned long long)stalled,
                       (double)STALL_NS / 1e9);
        bench_hist_destroy(&lat);
        bench_hist_destroy(&lat2);
        return errors ? 3 : 0;
}

static int run_idle(uint64_t rss_before, bool have_rss)
{
        uint64_t rss_held = 0, ok = 0, failed = 0, t0, deadline;
        struct snapshot a, b;
        struct json j = {.len = 0};
        bool held, checked = true;

        take_snapshot(&a);
        held = run_phase(PH_MEASURE, "holding", g_cfg.duration);
        take_snapshot(&b);
        progress_clear();
        if (have_rss && bench_proc_rss(g_cfg.pid, &rss_held))
                have_rss = false;
        atomic_store_explicit(&g_phase, PH_CHECK, memory_order_release);
        t0 = tern_now_ns();
        deadline = t0 + (uint64_t)(CHECK_TIMEOUT_S * 1e9);
        for (unsigned i = 0; i < g_cfg.threads; i++) {
                while (!atomic_load(&g_workers[i].check_done)) {
                        if (tern_now_ns() > deadline || g_interrupted) {
                                checked = false;
                                break;
                        }
                        usleep(1000);
                }
        }
        for (unsigned i = 0; i < g_cfg.threads; i++) {
                ok += cnt_get(&g_workers[i].check_ok);
                failed += cnt_get(&g_workers[i].check_failed);
        }
        failed = g_cfg.conns - ok; /* unanswered at the deadline count as failed */
        report_header(&j);
        json_num(&j, "held_s", (double)(b.t_ns - a.t_ns) / 1e9);
        json_int(&j, "echo_ok", (long long)ok);
        json_int(&j, "echo_failed", (long long)failed);
        json_num(&j, "check_s", (double)(tern_now_ns() - t0) / 1e9);
        if (!g_cfg.json)
                printf("  %-14s %u connections for %.2f s%s; echo check: %llu ok, %llu failed%s\n",
                       "held", g_cfg.conns, (double)(b.t_ns - a.t_ns) / 1e9,
                       held ? "" : " (cut short)", (unsigned long long)ok,
                       (unsigned long long)failed, checked ? "" : " (check timed out)");
        if (have_rss) {
                double per = ((double)rss_held - (double)rss_before) / g_cfg.conns;
                json_int(&j, "rss_before_bytes", (long long)rss_before);
                json_int(&j, "rss_held_bytes", (long long)rss_held);
                json_num(&j, "rss_per_conn_bytes", per);
                if (!g_cfg.json)
                        printf("  %-14s %.2f MiB before, %.2f MiB holding: %.1f B per "
                               "connection\n",
                               "server rss", (double)rss_before / 1048576.0,
                               (double)rss_held / 1048576.0, per);
        }
        report_cpu(&j, &a, &b);
        json_int(&j, "errors", (long long)failed);
        json_int(&j, "interrupted", !held);
        if (g_cfg.json)
                printf("%s}\n", j.buf);
        return failed ? 3 : 0;
}

/* ---- command line -------------------------------------------------------- */

static void usage(FILE *f)
{
        fprintf(f, "usage: tern-bench MODE [options]\n"
                   "\nmodes:\n");
        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
                fprintf(f, "  %-9s %s (default -s %zu -c %u)\n", modes[i].name, modes[i].what,
                        modes[i].def_size, modes[i].def_conns);
        fprintf(f, "\noptions:\n"
                   "  -H, --host ADDR        server address (default 127.0.0.1)\n"
                   "  -p, --port P           server port (default 7000)\n"
                   "  -c, --connections N    connections (churn: concurrent cycles)\n"
                   "  -t, --threads M        client threads, each with its own epoll (default 1)\n"
                   "  -d, --duration S       measured seconds (idle: seconds held; default 10, "
                   "idle 5)\n"
                   "  -w, --warmup S         unmeasured seconds of load first (default 1)\n"
                   "  -s, --size B           block / message size in bytes\n"
                   "  -k, --pipeline K       rr: requests in flight per connection (default 1)\n"
                   "      --active K         rr: only K of the -c connections send; the others\n"
                   "                         stay open and silent (many connections, few active)\n"
                   "      --pid PID          server process: report its CPU use, and in idle "
                   "mode its RSS\n"
                   "      --src-addrs N      spread connections over 127.0.0.1..N (loopback "
                   "only;\n"
                   "                         default: as many as the port range needs)\n"
                   "      --setup-timeout S  limit for opening the connections (default 60)\n"
                   "      --json             one JSON object on stdout instead of text\n"
                   "      --no-progress      no live line on stderr (it only shows on a tty)\n"
                   "      --busy-poll        client threads spin on epoll_wait(0) instead of "
                   "sleeping:\n"
                   "                         cheaper per message, but only on dedicated cores\n"
                   "\nchat mode (tern-chat protocol):\n"
                   "      --senders K        clients that send (default 10, at most -c)\n"
                   "      --rate R           messages/s per sender (default 100)\n"
                   "      --closed-loop      each sender sends its next message as soon as its\n"
                   "                         previous one came back to it (instead of --rate)\n"
                   "      --framing F        tern (default): tern-chat's lines and /join;\n"
                   "                         muduo: 4-byte big-endian length + payload, no\n"
                   "                         join (muduo's examples/asio/chat servers)\n"
                   "      --room NAME        room to join (default bench)\n"
                   "      --idle             send nothing: hold the clients -d seconds, check "
                   "each is\n"
                   "                         still served; with --pid, server RSS per client\n"
                   "      --room-size N      with --idle: N clients per room (ROOM-0, ROOM-1...),"
                   "\n                         which keeps join notices from growing as N^2\n"
                   "\nTLS (pingpong, rr, churn, idle):\n"
                   "      --tls              connections speak TLS (the server's certificate "
                   "is not\n"
                   "                         verified unless --tls-ca)\n"
                   "      --tls-ca FILE      verify the server's certificate chain against "
                   "FILE\n"
                   "      --tls-resume       churn: offer each slot's previous session, so "
                   "handshakes\n"
                   "                         resume; reports how many the server resumed\n"
                   "      --tls-ciphersuites S  TLS 1.3 suites to offer with --tls (e.g. "
                   "TLS_AES_128_GCM_SHA256)\n"
                   "  -h, --help\n"
                   "\nexit status: 0 ok, 1 could not run, 2 usage, 3 ran but saw errors\n");
}

static bool parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s || *end || v > max || s[0] == '-')
                return false;
        *out = v;
        return true;
}

/* A tern-chat room name: 1-32 of [A-Za-z0-9_-] (docs/chat.md). */
static bool chat_room_ok(const char *s)
{
        size_t n = strlen(s);

        if (n < 1 || n > 32)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
                        return false;
        return true;
}

static bool parse_secs(const char *s, double *out)
{
        char *end;
        double v = strtod(s, &end);

        if (end == s || *end || !(v >= 0) || v > 86400)
                return false;
        *out = v;
        return true;
}

static void on_sigint(int sig)
{
        g_interrupted = 1;
}

static int parse_args(int argc, char **argv, struct cfg *cfg)
{
        enum {
                OPT_PID = 256,
                OPT_SRC,
                OPT_JSON,
                OPT_NOPROG,
                OPT_SETUP,
                OPT_BUSY,
                OPT_SENDERS,
                OPT_RATE,
                OPT_ROOM,
                OPT_IDLE,
                OPT_ROOM_SIZE,
                OPT_ACTIVE,
                OPT_CLOSED,
                OPT_FRAMING,
                OPT_TLS,
                OPT_TLS_RESUME,
                OPT_TLS_CA,
                OPT_TLS_SUITES
        };
        static const struct option opts[] = {
            {"host", required_argument, NULL, 'H'},
            {"port", required_argument, NULL, 'p'},
            {"connections", required_argument, NULL, 'c'},
            {"threads", required_argument, NULL, 't'},
            {"duration", required_argument, NULL, 'd'},
            {"warmup", required_argument, NULL, 'w'},
            {"size", required_argument, NULL, 's'},
            {"pipeline", required_argument, NULL, 'k'},
            {"pid", required_argument, NULL, OPT_PID},
            {"src-addrs", required_argument, NULL, OPT_SRC},
            {"setup-timeout", required_argument, NULL, OPT_SETUP},
            {"json", no_argument, NULL, OPT_JSON},
            {"no-progress", no_argument, NULL, OPT_NOPROG},
            {"busy-poll", no_argument, NULL, OPT_BUSY},
            {"senders", required_argument, NULL, OPT_SENDERS},
            {"rate", required_argument, NULL, OPT_RATE},
            {"room", required_argument, NULL, OPT_ROOM},
            {"idle", no_argument, NULL, OPT_IDLE},
            {"room-size", required_argument, NULL, OPT_ROOM_SIZE},
            {"active", required_argument, NULL, OPT_ACTIVE},
            {"closed-loop", no_argument, NULL, OPT_CLOSED},
            {"framing", required_argument, NULL, OPT_FRAMING},
            {"tls", no_argument, NULL, OPT_TLS},
            {"tls-resume", no_argument, NULL, OPT_TLS_RESUME},
            {"tls-ca", required_argument, NULL, OPT_TLS_CA},
            {"tls-ciphersuites", required_argument, NULL, OPT_TLS_SUITES},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        unsigned long long v;
        bool have_c = false, have_s = false, have_d = false, no_progress = false;
        int opt, li = -1;

        if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
                usage(argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : -1;
        }
        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
                if (!strcmp(argv[1], modes[i].name))
                        cfg->mode = &modes[i];
        if (!cfg->mode) {
                fprintf(stderr, "tern-bench: unknown mode '%s'\n", argv[1]);
                usage(stderr);
                return 2;
        }
        cfg->host = "127.0.0.1";
        cfg->port = 7000;
        cfg->threads = 1;
        cfg->pipeline = 1;
        cfg->warmup = 1;
        cfg->setup_timeout = 60;
        cfg->senders = 10;
        cfg->rate = 100;
        cfg->room = "bench";
        optind = 2;
        while ((opt = getopt_long(argc, argv, "H:p:c:t:d:w:s:k:h", opts, &li)) != -1) {
                bool ok = true;
                char name[32];

                if (li >= 0)
                        snprintf(name, sizeof(name), "--%s", opts[li].name);
                else
                        snprintf(name, sizeof(name), "-%c", opt);
                li = -1;

                switch (opt) {
                case 'H':
                        cfg->host = optarg;
                        break;
                case 'p':
                        ok = parse_uint(optarg, 65535, &v) && v > 0;
                        cfg->port = (unsigned)v;
                        break;
                case 'c':
                        ok = parse_uint(optarg, 10000000, &v) && v > 0;
                        cfg->conns = (unsigned)v;
                        have_c = true;
                        break;
                case 't':
                        ok = parse_uint(optarg, MAX_THREADS, &v) && v > 0;
                        cfg->threads = (unsigned)v;
                        break;
                case 'd':
                        ok = parse_secs(optarg, &cfg->duration) && cfg->duration > 0;
                        have_d = true;
                        break;
                case 'w':
                        ok = parse_secs(optarg, &cfg->warmup);
                        break;
                case 's':
                        ok = parse_uint(optarg, MAX_SIZE, &v) && v > 0;
                        cfg->size = (size_t)v;
                        have_s = true;
                        break;
                case 'k':
                        ok = parse_uint(optarg, MAX_PIPELINE, &v) && v > 0;
                        cfg->pipeline = (unsigned)v;
                        break;
                case OPT_PID:
                        ok = parse_uint(optarg, INT_MAX, &v) && v > 0;
                        cfg->pid = (pid_t)v;
                        break;
                case OPT_SRC:
                        ok = parse_uint(optarg, 254, &v) && v > 0;
                        cfg->nsrc = (unsigned)v;
                        break;
                case OPT_SETUP:
                        ok = parse_secs(optarg, &cfg->setup_timeout) && cfg->setup_timeout > 0;
                        break;
                case OPT_JSON:
                        cfg->json = true;
                        break;
                case OPT_NOPROG:
                        no_progress = true;
                        break;
                case OPT_BUSY:
                        cfg->busy_poll = true;
                        break;
                case OPT_SENDERS:
                        ok = parse_uint(optarg, 100000, &v) && v > 0;
                        cfg->senders = (unsigned)v;
                        break;
                case OPT_RATE:
                        ok =
                            parse_secs(optarg, &cfg->rate) && cfg->rate > 0 && cfg->rate <= 1000000;
                        break;
                case OPT_ROOM:
                        ok = chat_room_ok(optarg);
                        cfg->room = optarg;
                        break;
                case OPT_IDLE:
                        cfg->chat_idle = true;
                        break;
                case OPT_ROOM_SIZE:
                        ok = parse_uint(optarg, 10000000, &v) && v > 0;
                        cfg->room_size = (unsigned)v;
                        break;
                case OPT_ACTIVE:
                        ok = parse_uint(optarg, 10000000, &v) && v > 0;
                        cfg->active = (unsigned)v;
                        break;
                case OPT_CLOSED:
                        cfg->closed_loop = true;
                        break;
                case OPT_FRAMING:
                        if (!strcmp(optarg, "tern"))
                                cfg->framing = BENCH_CHAT_FRAMING_TERN;
                        else if (!strcmp(optarg, "muduo"))
                                cfg->framing = BENCH_CHAT_FRAMING_MUDUO;
                        else
                                ok = false;
                        break;
                case OPT_TLS:
                        cfg->tls = true;
                        break;
                case OPT_TLS_RESUME:
                        cfg->tls = cfg->tls_resume = true;
                        break;
                case OPT_TLS_CA:
                        cfg->tls = true;
                        cfg->tls_ca = optarg;
                        break;
                case OPT_TLS_SUITES: /* without --tls, ignored: scripts pass it always */
                        cfg->tls_suites = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return -1;
                default:
                        usage(stderr);
                        return 2;
                }
                if (!ok) {
                        fprintf(stderr, "tern-bench: bad value '%s' for %s\n", optarg, name);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "tern-bench: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }
        if (!have_c)
                cfg->conns = cfg->mode->def_conns;
        if (!have_s)
                cfg->size = cfg->mode->def_size;
        if (!have_d)
                cfg->duration = cfg->mode->def_duration;
        if (cfg->active && (cfg->mode->mode != MODE_RR || cfg->active > cfg->conns)) {
                fprintf(stderr, "tern-bench: --active is for rr, at most -c\n");
                return 2;
        }
        if (cfg->tls && cfg->mode->mode == MODE_CHAT) {
                fprintf(stderr, "tern-bench: --tls is for pingpong, rr, churn and idle\n");
                return 2;
        }
        if (cfg->tls_resume && cfg->mode->mode != MODE_CHURN) {
                fprintf(stderr, "tern-bench: --tls-resume is for churn (one handshake per "
                                "connection)\n");
                return 2;
        }
        if (cfg->mode->mode == MODE_IDLE && cfg->size > RBUF_SIZE) {
                fprintf(stderr, "tern-bench: idle probes are at most %d bytes\n", RBUF_SIZE);
                return 2;
        }
        if (cfg->mode->mode == MODE_CHAT) {
                if (cfg->room_size && !cfg->chat_idle) {
                        fprintf(stderr, "tern-bench: --room-size needs --idle (senders reach "
                                        "one room)\n");
                        return 2;
                }
                if (strlen(cfg->room) > 20) {
                        fprintf(stderr, "tern-bench: --room is at most 20 characters here\n");
                        return 2;
                }
                if (cfg->room_size && cfg->framing == BENCH_CHAT_FRAMING_MUDUO) {
                        fprintf(stderr, "tern-bench: --room-size needs rooms; muduo's chat "
                                        "servers have one\n");
                        return 2;
                }
                if (cfg->closed_loop && cfg->chat_idle) {
                        fprintf(stderr, "tern-bench: --closed-loop and --idle exclude each "
                                        "other\n");
                        return 2;
                }
                if (cfg->chat_idle)
                        cfg->senders = 0;
                else if (cfg->senders > cfg->conns) {
                        fprintf(stderr, "tern-bench: --senders %u exceeds -c %u\n", cfg->senders,
                                cfg->conns);
                        return 2;
                }
                cfg->threads = 1; /* one epoll loop drives every chat client */
        }
        if (cfg->threads > cfg->conns)
                cfg->threads = cfg->conns;
        cfg->progress = !no_progress && isatty(STDERR_FILENO);
        return 0;
}

/*
 * Checks the descriptors and ports the run needs before opening anything,
 * so a short limit is an explanation rather than a half-open run.
 */
static int plan_resources(struct cfg *cfg)
{
        uint64_t soft, hard, need = (uint64_t)cfg->conns + 2u * cfg->threads + 32;
        unsigned ports = bench_ephemeral_ports();
        unsigned want;

        if (bench_raise_nofile(&soft, &hard) == 0 && need > soft) {
                fprintf(stderr,
                        "tern-bench: %u connections need about %llu file descriptors, but this "
                        "process may open only %llu (hard limit %llu).\n"
                        "  Raise it before running, e.g. `ulimit -n %llu` (the hard limit can "
                        "only be raised by root: `ulimit -Hn N`, /etc/security/limits.conf, or "
                        "LimitNOFILE= for a systemd unit), or lower -c.\n",
                        cfg->conns, (unsigned long long)need, (unsigned long long)soft,
                        (unsigned long long)hard, (unsigned long long)need);
                return 1;
        }
        /* Leave 15% of the range for TIME_WAIT and other users of the host. */
        want = (unsigned)((cfg->conns + ports * 85ull / 100 - 1) / (ports * 85ull / 100));
        if (!cfg->nsrc)
                cfg->nsrc = cfg->target.loopback_v4 ? (want > 254 ? 254 : want) : 1;
        if (cfg->nsrc > 1 && !cfg->target.loopback_v4) {
                fprintf(stderr, "tern-bench: --src-addrs needs an IPv4 loopback host (127.x)\n");
                return 2;
        }
        if (cfg->conns > (uint64_t)cfg->nsrc * ports) {
                fprintf(stderr,
                        "tern-bench: %u connections exceed %u source address(es) x %u "
                        "ephemeral ports; use a 127.x host with --src-addrs, or widen "
                        "net.ipv4.ip_local_port_range\n",
                        cfg->conns, cfg->nsrc, ports);
                return 1;
        }
        if (cfg->nsrc > 1) {
                cfg->srcs = calloc(cfg->nsrc, sizeof(*cfg->srcs));
                if (!cfg->srcs)
                        return 1;
                for (unsigned i = 0; i < cfg->nsrc; i++)
                        cfg->srcs[i] = bench_source_addr(i);
        }
        return 0;
}

static void explain(int err)
{
        const char *why = bench_explain_errno(err, g_cfg.host, g_cfg.port);

        progress_clear();
        if (why)
                fprintf(stderr, "tern-bench: %s\n", why);
        else if (err == -ETIMEDOUT)
                fprintf(stderr, "tern-bench: set-up did not finish within %.0f s\n",
                        g_cfg.setup_timeout);
        else if (err == -EPROTO && g_cfg.tls)
                fprintf(stderr,
                        "tern-bench: TLS handshake or echo failed: does %s:%u speak TLS%s?\n",
                        g_cfg.host, g_cfg.port,
                        g_cfg.tls_ca ? " with a certificate that --tls-ca accepts" : "");
        else
                fprintf(stderr, "tern-bench: %s\n", strerror(-err));
}

/* One client context for every thread: read-only once built. */
static SSL_CTX *tls_client_ctx(const struct cfg *cfg)
{
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

        if (!ctx)
                return NULL;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
        /* Sessions are kept by hand (conn.sess), not in a shared cache. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        if (cfg->tls_suites && SSL_CTX_set_ciphersuites(ctx, cfg->tls_suites) != 1) {
                fprintf(stderr, "tern-bench: bad --tls-ciphersuites '%s'\n", cfg->tls_suites);
                SSL_CTX_free(ctx);
                return NULL;
        }
        if (cfg->tls_ca) {
                if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1) {
                        fprintf(stderr, "tern-bench: cannot load --tls-ca %s\n", cfg->tls_ca);
                        SSL_CTX_free(ctx);
                        return NULL;
                }
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        } else {
                SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        }
        return ctx;
}

static int run_chat(void)
{
        struct bench_chat_cfg cc = {
            .target = &g_cfg.target,
            .srcs = g_cfg.srcs,
            .nsrc = g_cfg.nsrc,
            .host = g_cfg.host,
            .port = g_cfg.port,
            .conns = g_cfg.conns,
            .senders = g_cfg.senders,
            .rate = g_cfg.rate,
            .room = g_cfg.room,
            .room_size = g_cfg.room_size,
            .duration = g_cfg.duration,
            .warmup = g_cfg.warmup,
            .setup_timeout = g_cfg.setup_timeout,
            .idle = g_cfg.chat_idle,
            .closed_loop = g_cfg.closed_loop,
            .framing = g_cfg.framing,
            .json = g_cfg.json,
            .progress = g_cfg.progress,
            .pid = g_cfg.pid,
            .interrupted = &g_interrupted,
        };
        int rc = bench_chat_run(&cc);

        free(g_cfg.srcs);
        return rc;
}

int main(int argc, char **argv)
{
        struct snapshot a, b;
        uint64_t rss_before = 0;
        bool have_rss = false, finished;
        unsigned started = 0;
        int rc;

        rc = parse_args(argc, argv, &g_cfg);
        if (rc)
                return rc < 0 ? 0 : rc;
        rc = bench_resolve(&g_cfg.target, g_cfg.host, g_cfg.port);
        if (rc) {
                fprintf(stderr, "tern-bench: cannot resolve %s: %s\n", g_cfg.host,
                        gai_strerror(rc));
                return 1;
        }
        rc = plan_resources(&g_cfg);
        if (rc)
                return rc;
        signal(SIGPIPE, SIG_IGN);
        signal(SIGINT, on_sigint);
        signal(SIGTERM, on_sigint);
        if (g_cfg.mode->mode == MODE_CHAT)
                return run_chat();
        if (g_cfg.tls) {
                g_cfg.ssl_ctx = tls_client_ctx(&g_cfg);
                if (!g_cfg.ssl_ctx) {
                        ERR_print_errors_fp(stderr);
                        return 1;
                }
                g_tls_resume = g_cfg.tls_resume;
        }
        if (g_cfg.pid > 0 && g_cfg.mode->mode == MODE_IDLE) {
                rc = bench_proc_rss(g_cfg.pid, &rss_before);
                if (rc) {
                        fprintf(stderr, "tern-bench: cannot read memory of pid %d: %s\n",
                                (int)g_cfg.pid, strerror(-rc));
                        return 1;
                }
                have_rss = true;
        }
        g_workers = calloc(g_cfg.threads, sizeof(*g_workers));
        if (!g_workers)
                return 1;
        for (unsigned i = 0; i < g_cfg.threads; i++) {
                rc = worker_init(&g_workers[i], i, &g_cfg);
                if (rc) {
                        fprintf(stderr, "tern-bench: %s\n", strerror(-rc));
                        return 1;
                }
        }
        for (; started < g_cfg.threads; started++) {
                rc = -pthread_create(&g_workers[started].tid, NULL, worker_main,
                                     &g_workers[started]);
                if (rc)
                        break;
        }
        if (!rc)
                rc = wait_setup();
        if (rc) {
                atomic_store(&g_phase, PH_DONE);
                for (unsigned i = 0; i < started; i++)
                        pthread_join(g_workers[i].tid, NULL);
                explain(rc);
                return 1;
        }
        progress_clear();
        if (g_cfg.mode->mode == MODE_IDLE) {
                rc = run_idle(rss_before, have_rss);
        } else {
                finished = g_cfg.warmup <= 0 || run_phase(PH_WARMUP, "warm-up", g_cfg.warmup);
                take_snapshot(&a);
                if (finished)
                        finished = run_phase(PH_MEASURE, "measuring", g_cfg.duration);
                take_snapshot(&b);
                atomic_store(&g_phase, PH_DONE);
                progress_clear();
                rc = first_fatal();
                if (rc) {
                        for (unsigned i = 0; i < started; i++)
                                pthread_join(g_workers[i].tid, NULL);
                        explain(rc);
                        return 1;
                }
                if (b.t_ns == a.t_ns) {
                        fprintf(stderr, "tern-bench: interrupted before measuring\n");
                        rc = 1;
                } else {
                        /* Join first: the histograms belong to the workers until then. */
                        for (unsigned i = 0; i < started; i++)
                                pthread_join(g_workers[i].tid, NULL);
                        started = 0;
                        rc = report_traffic(&a, &b, !finished);
                }
        }
        atomic_store(&g_phase, PH_DONE);
        for (unsigned i = 0; i < started; i++)
                pthread_join(g_workers[i].tid, NULL);
        for (unsigned i = 0; i < g_cfg.threads; i++)
                worker_destroy(&g_workers[i]);
        free(g_workers);
        free(g_cfg.srcs);
        SSL_CTX_free(g_cfg.ssl_ctx);
        return rc;
}
