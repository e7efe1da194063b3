/*
 * Connectors: outgoing connections with timeout, retry and reconnect.
 *
 * An attempt is a non-blocking connect() whose socket is registered as a
 * connection right away (tern__conn_setup, the same single IN|OUT|RDHUP|ET
 * registration as an accepted one) in the CONNECTING state; the EPOLLOUT or
 * EPOLLERR edge finishes it in conn.c. So a connected connector needs no
 * re-registration, no second object and no copy of the connection code.
 *
 * Every outcome reaches the application from the loop (an epoll event or a
 * timer), never from inside tern_connector_start(): a connect() that fails
 * at once is reported through a zero-delay timer.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client_internal.h"
#include "clock.h"
#include "conn_internal.h"
#include "error.h"
#include "log.h"
#include "loop_internal.h"

void tern_connector_opts_init(struct tern_connector_opts *o)
{
        memset(o, 0, sizeof(*o));
        o->connect_timeout_ms = 10000;
        o->backoff_min_ms = 100;
        o->backoff_max_ms = 30000;
        o->max_attempts = 1;
}

uint32_t tern__backoff_delay(uint32_t min_ms, uint32_t max_ms, uint32_t failures, uint32_t *rng)
{
        uint64_t cap = min_ms;
        for (uint32_t i = 1; i < failures && cap < max_ms; i++)
                cap *= 2; /* no shift overflow for any failure count */
        if (cap > max_ms)
                cap = max_ms;
        uint32_t x = *rng ? *rng : 0x9e3779b9u;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *rng = x;
        uint64_t half = cap / 2;
        uint64_t d = half + x % (cap - half + 1);
        if (d < min_ms)
                d = min_ms;
        if (d > max_ms)
                d = max_ms;
        return (uint32_t)d;
}

static void timer_cb(struct tern_timer *t, void *arg);

static int resolve(struct tern_connector *cn)
{
        char port[8];
        snprintf(port, sizeof(port), "%u", cn->opts.port);
        struct addrinfo hints = {
            .ai_family = AF_UNSPEC,
            .ai_socktype = SOCK_STREAM,
            .ai_flags = AI_NUMERICSERV,
        };
        struct addrinfo *res;
        int r = getaddrinfo(cn->opts.host, port, &hints, &res);
        if (r != 0) {
                tern_error("connector: cannot resolve '%s': %s", cn->opts.host, gai_strerror(r));
                return -EINVAL;
        }
        for (struct addrinfo *ai = res; ai && cn->naddrs < TERN__CONNECTOR_MAX_ADDRS;
             ai = ai->ai_next) {
                if (ai->ai_addrlen > sizeof(cn->addrs[0]))
                        continue;
                memcpy(&cn->addrs[cn->naddrs], ai->ai_addr, ai->ai_addrlen);
                cn->addr_lens[cn->naddrs++] = ai->ai_addrlen;
        }
        freeaddrinfo(res);
        return cn->naddrs ? 0 : -EINVAL;
}

tern_connector *tern_connector_new(tern_loop *l, const struct tern_connector_opts *o)
{
        if (!l || !o->host || !o->port || !o->backoff_min_ms ||
            o->backoff_max_ms < o->backoff_min_ms) {
                errno = EINVAL;
                return NULL;
        }
        if (l->draining) {
                errno = ESHUTDOWN;
                return NULL;
        }
        struct tern_connector *cn = calloc(1, sizeof(*cn));
        if (!cn)
                return NULL;
        cn->opts = *o;
        cn->loop = l;
        int r = resolve(cn);
        if (r < 0) {
                free(cn);
                errno = -r;
                return NULL;
        }
        cn->opts.host = NULL; /* borrowed only for the call; never used again */
        cn->rng = (uint32_t)(uintptr_t)cn ^ (uint32_t)tern_now_ms() ^ 0x2545f491u;
        tern_timer_init(&cn->timer, timer_cb, cn);
        cn->next = l->connectors;
        if (cn->next)
                cn->next->pprev = &cn->next;
        cn->pprev = &l->connectors;
        l->connectors = cn;
        return cn;
}

static void arm(struct tern_connector *cn, uint32_t after_ms)
{
        tern_loop_timer_start(cn->loop, &cn->timer, after_ms, 0);
}

/* Reports a failure from the loop rather than from inside the caller. */
static void defer_failure(struct tern_connector *cn, int err)
{
        cn->state = TERN__CN_WAITING;
        cn->deferred_err = err;
        arm(cn, 0);
}

/* One connect() to the next address. Returns 0 (the outcome will be
 * reported) or -errno from socket(). */
static int attempt(struct tern_connector *cn)
{
        struct tern_loop *l = cn->loop;
        int i = cn->next_addr;
        cn->next_addr = (i + 1) % cn->naddrs;
        const struct sockaddr *a = (const struct sockaddr *)&cn->addrs[i];
        int fd = socket(a->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* EINTR: the connect goes on in the background, like EINPROGRESS. */
        if (connect(fd, a, cn->addr_lens[i]) < 0 && errno != EINPROGRESS && errno != EINTR) {
                int e = -errno;
                close(fd);
                defer_failure(cn, e);
                return 0;
        }
        struct tern__conn_params p = {
            .ops = cn->opts.ops,
            .codec = cn->opts.codec,
            .codec_config = cn->opts.codec_config,
            .idle_timeout_ms = cn->opts.idle_timeout_ms,
            .no_delay_off = cn->opts.no_delay_off,
            .connector = cn,
        };
        /* Registered now; even a connect() that completed at once reports
         * through the EPOLLOUT edge the registration itself produces. */
        struct tern_conn *c = tern__conn_setup(l, fd, &p);
        if (!c) {
                defer_failure(cn, -ENOMEM);
                return 0;
        }
        cn->conn = c;
        cn->state = TERN__CN_CONNECTING;
        if (cn->opts.connect_timeout_ms)
                arm(cn, cn->opts.connect_timeout_ms);
        return 0;
}

/* An attempt failed: count it, schedule the next one or give up, tell the
 * application. Nothing touches @cn after a callback that may free it. */
static void attempt_failed(struct tern_connector *cn, int err)
{
        struct tern_loop *l = cn->loop;
        tern__stat_add(l, TERN__STAT(connect_errors), 1);
        cn->conn = NULL;
        cn->failures++;
        bool give_up = cn->opts.max_attempts && cn->failures >= cn->opts.max_attempts;
        if (give_up) {
                cn->state = TERN__CN_IDLE;
                tern_debug("worker %d: connector: attempt %u failed (%s); giving up", l->index,
                           cn->failures, tern_strerror(err));
        } else {
                uint32_t d = tern__backoff_delay(cn->opts.backoff_min_ms, cn->opts.backoff_max_ms,
                                                 cn->failures, &cn->rng);
                tern_debug("worker %d: connector: attempt %u failed (%s); retry in %u ms", l->index,
                           cn->failures, tern_strerror(err), d);
                cn->state = TERN__CN_WAITING;
                arm(cn, d);
        }
        if (cn->opts.on_connect_error) {
                bool freed = false;
                /* cppcheck-suppress autoVariables ; reset below, or cn is gone */
                cn->freed = &freed;
                cn->opts.on_connect_error(cn, err, cn->failures);
                if (freed)
                        return;
                cn->freed = NULL;
        }
        if (give_up && cn->opts.on_give_up)
                cn->opts.on_give_up(cn, err);
}

static void timer_cb(struct tern_timer *t, void *arg)
{
        struct tern_connector *cn = arg;
        if (cn->state == TERN__CN_CONNECTING) {
                /* The attempt's close reports the failure (conn_closed). */
                tern__conn_close(cn->conn, TERN_CLOSE_ERROR, -ETIMEDOUT);
                return;
        }
        if (cn->state != TERN__CN_WAITING)
                return;
        int err = cn->deferred_err;
        cn->deferred_err = 0;
        if (!err)
                err = attempt(cn);
        if (err)
                attempt_failed(cn, err);
}

void tern__connector_connected(struct tern_connector *cn, struct tern_conn *c)
{
        tern_loop_timer_stop(cn->loop, &cn->timer);
        cn->state = TERN__CN_CONNECTED;
        cn->failures = 0;
}

void tern__connector_conn_closed(struct tern_connector *cn, struct tern_conn *c, bool opened,
                                 int err)
{
        if (cn->conn != c)
                return;
        cn->conn = NULL;
        c->connector = NULL; /* nobody reaches the connector through a dead conn */
        if (cn->state == TERN__CN_IDLE)
                return; /* stopped: the application asked for this */
        tern_loop_timer_stop(cn->loop, &cn->timer);
        if (!opened) {
                attempt_failed(cn, err);
                return;
        }
        cn->state = TERN__CN_IDLE;
        if (cn->opts.reconnect && !cn->loop->draining) {
                cn->state = TERN__CN_WAITING;
                arm(cn, tern__backoff_delay(cn->opts.backoff_min_ms, cn->opts.backoff_max_ms, 1,
                                            &cn->rng));
        }
}

int tern_connector_start(tern_connector *cn)
{
        if (cn->loop->draining)
                return -ESHUTDOWN;
        if (cn->state != TERN__CN_IDLE || cn->conn)
                return -EBUSY;
        cn->failures = 0;
        return attempt(cn);
}

void tern_connector_stop(tern_connector *cn)
{
        enum tern__connector_state was = cn->state;
        cn->state = TERN__CN_IDLE;
        cn->deferred_err = 0;
        tern_loop_timer_stop(cn->loop, &cn->timer);
        if (!cn->conn)
                return;
        if (was == TERN__CN_CONNECTING)
                tern__conn_close(cn->conn, TERN_CLOSE_LOCAL, -ECANCELED); /* silent */
        else
                tern_conn_close(cn->conn); /* unlinks in conn_closed once flushed */
}

void tern_connector_free(tern_connector *cn)
{
        if (!cn)
                return;
        tern_connector_stop(cn);
        if (cn->conn) { /* still flushing: it finishes on its own */
                cn->conn->connector = NULL;
                cn->conn = NULL;
        }
        if (cn->freed)
                *cn->freed = true;
        *cn->pprev = cn->next;
        if (cn->next)
                cn->next->pprev = cn->pprev;
        free(cn);
}

void tern__connectors_drain(struct tern_loop *l)
{
        /* Established connections drain like accepted ones (on_drain, then a
         * graceful close) and, with l->draining set, are not re-established;
         * what is still connecting or waiting simply stops. */
        for (struct tern_connector *cn = l->connectors; cn; cn = cn->next)
                if (cn->state != TERN__CN_CONNECTED)
                        tern_connector_stop(cn);
}

void tern__connectors_free_all(struct tern_loop *l)
{
        /* The loop has finished (or never ran): no connection is open, so
         * no callback can run and free another connector under us. */
        struct tern_connector *cn = l->connectors;
        while (cn) {
                struct tern_connector *next = cn->next;
                tern_connector_free(cn);
                cn = next;
        }
}

tern_conn *tern_connector_conn(const tern_connector *cn)
{
        return cn->state == TERN__CN_CONNECTED ? cn->conn : NULL;
}

tern_loop *tern_connector_loop(const tern_connector *cn)
{
        return cn->loop;
}

void *tern_connector_user(const tern_connector *cn)
{
        return cn->opts.user;
}

uint32_t tern_connector_failures(const tern_connector *cn)
{
        return cn->failures;
}
