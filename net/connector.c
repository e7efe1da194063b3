/*
 * Connectors: outgoing connections with timeout, retry and reconnect.
 * A layer above the connection (conn.c knows a connector only as an owner
 * with two callbacks) and beside the acceptor.
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

#include "clock.h"
#include "conn_internal.h"
#include "connector_internal.h"
#include "error.h"
#include "fault_internal.h"
#include "live_internal.h"
#include "log.h"
#include "loop_internal.h"

void tern_connector_opts_init(struct tern_connector_opts *o)
{
        memset(o, 0, sizeof(*o));
        o->connect_timeout_ms = 10000;
        o->backoff_min_ms = 100;
        o->backoff_max_ms = 30000;
        o->max_attempts = 1;
        o->nodelay = true;
        tern_conn_limits_init(&o->limits);
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
static void on_drain_hook(struct tern__hook *h, struct tern_loop *l);
static void on_destroy_hook(struct tern__hook *h, struct tern_loop *l);
static const struct tern__conn_owner_ops owner_ops;

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
        struct tern_connector *cn = TERN__CALLOC(1, sizeof(*cn));
        if (!cn)
                return NULL;
        cn->opts = *o;
        cn->loop = l;
        int r = resolve(cn);
        if (r < 0)
                goto out_free_connector;
        /* The connection's stack, counted: it may outlive the connector. */
        struct tern__conn_cfg *cfg = TERN__CALLOC(1, sizeof(*cfg));
        if (!cfg) {
                r = -ENOMEM;
                goto out_free_connector;
        }
        cfg->ops = o->ops;
        cfg->codec = o->codec;
        cfg->codec_config = o->codec_config;
        cfg->limits = o->limits;
        cfg->idle_timeout_ms = o->idle_timeout_ms;
        cfg->nodelay = o->nodelay;
        cfg->xport = tern__xport_of(o->tls);
        if (o->tls) {
                const char *name = o->tls_server_name ? o->tls_server_name : o->host;
                cfg->server_name = name ? strdup(name) : NULL;
                if (name && !cfg->server_name) {
                        free(cfg);
                        r = -ENOMEM;
                        goto out_free_connector;
                }
        }
        cfg->owner_ops = &owner_ops;
        cfg->owner = cn;
        cfg->refs = 1;
        cn->cfg = cfg;
        cn->opts.host = NULL; /* borrowed only for the call; never used again */
        cn->rng = (uint32_t)(uintptr_t)cn ^ (uint32_t)tern_now_ms() ^ 0x2545f491u;
        tern_timer_init(&cn->timer, timer_cb, cn);
        tern__hook_add(l, TERN__HOOK_DRAIN, &cn->drain_hook, on_drain_hook);
        tern__hook_add(l, TERN__HOOK_DESTROY, &cn->destroy_hook, on_destroy_hook);
        tern__live_add(TERN__LIVE_CONNECTORS, 1);
        return cn;

out_free_connector:
        free(cn);
        errno = -r;
        return NULL;
}

static void arm(struct tern_connector *cn, uint32_t after_ms)
{
        tern__loop_timer_arm(cn->loop, &cn->timer, after_ms, 0);
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
        /* Registered now; even a connect() that completed at once reports
         * through the EPOLLOUT edge the registration itself produces. */
        struct tern_conn *c = tern__conn_setup(l, fd, cn->cfg, true);
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
                tern_debug("loop %d: connector: attempt %u failed (%s); giving up", l->index,
                           cn->failures, tern_strerror(err));
        } else {
                uint32_t d = tern__backoff_delay(cn->opts.backoff_min_ms, cn->opts.backoff_max_ms,
                                                 cn->failures, &cn->rng);
                tern_debug("loop %d: connector: attempt %u failed (%s); retry in %u ms", l->index,
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

static void on_connected(void *owner, struct tern_conn *c)
{
        struct tern_connector *cn = owner;
        tern__loop_timer_cancel(cn->loop, &cn->timer);
        cn->state = TERN__CN_CONNECTED;
        cn->failures = 0;
}

/* From the loop, after the connection's on_close (or a failed attempt). */
static void on_conn_closed(void *owner, struct tern_conn *c, bool opened, int err)
{
        struct tern_connector *cn = owner;
        if (cn->conn != c)
                return;
        cn->conn = NULL;
        if (cn->state == TERN__CN_IDLE)
                return; /* stopped: the application asked for this */
        tern__loop_timer_cancel(cn->loop, &cn->timer);
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

static const struct tern__conn_owner_ops owner_ops = {
    .connected = on_connected,
    .closed = on_conn_closed,
};

void tern_connector_stop(tern_connector *cn)
{
        enum tern__connector_state was = cn->state;
        cn->state = TERN__CN_IDLE;
        cn->deferred_err = 0;
        tern__loop_timer_cancel(cn->loop, &cn->timer);
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
        /* A connection still flushing finishes on its own, without us: its
         * stack stays until it is freed (the count). */
        cn->conn = NULL;
        cn->cfg->owner = NULL;
        tern__conn_cfg_put(cn->cfg);
        if (cn->freed)
                *cn->freed = true;
        tern__hook_del(&cn->drain_hook);
        tern__hook_del(&cn->destroy_hook);
        free(cn);
        tern__live_add(TERN__LIVE_CONNECTORS, -1);
}

/* The loop begins its graceful stop. Established connections drain like
 * accepted ones (on_drain, then a graceful close) and, with the loop
 * draining, are not re-established; what is still connecting or waiting
 * simply stops. */
static void on_drain_hook(struct tern__hook *h, struct tern_loop *l)
{
        struct tern_connector *cn = caa_container_of(h, struct tern_connector, drain_hook);
        if (cn->state != TERN__CN_CONNECTED)
                tern_connector_stop(cn);
}

/* tern_loop_free(): what the application did not free. The loop has
 * finished (or never ran), so no callback of a connection can run. */
static void on_destroy_hook(struct tern__hook *h, struct tern_loop *l)
{
        tern_connector_free(caa_container_of(h, struct tern_connector, destroy_hook));
}

tern_connector *tern_conn_connector(const tern_conn *c)
{
        return tern__conn_owner(c, &owner_ops);
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
