/*
 * tern-proxy: pairs of a source (accepted) and a destination (connector)
 * connection on one worker loop. See proxy.h.
 *
 * A pair is freed when its source, its destination and its connector are
 * all gone; each of the three clears its pointer as it goes, and whoever
 * clears the last frees it. No call runs another callback inside it (tern
 * reports closes from the loop), so that check needs no reference count.
 */
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

struct pair {
        struct proxy *px;
        tern_conn *src, *dst;
        tern_connector *cn;
        bool src_eof, dst_eof;
};

int proxy_init(struct proxy *px, const char *to_host, uint16_t to_port, uint32_t connect_timeout_ms)
{
        memset(px, 0, sizeof(*px));
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res;
        int r = getaddrinfo(to_host, NULL, &hints, &res);
        if (r != 0) {
                tern_error("tern-proxy: cannot resolve '%s': %s", to_host, gai_strerror(r));
                return -EINVAL;
        }
        r = getnameinfo(res->ai_addr, res->ai_addrlen, px->to_host, sizeof(px->to_host), NULL, 0,
                        NI_NUMERICHOST);
        freeaddrinfo(res);
        if (r != 0) {
                tern_error("tern-proxy: '%s': %s", to_host, gai_strerror(r));
                return -EINVAL;
        }
        px->to_port = to_port;
        px->connect_timeout_ms = connect_timeout_ms;
        return 0;
}

static void note_queued(struct pair *p, tern_conn *c)
{
        size_t q = tern_conn_queued(c);
        size_t seen = __atomic_load_n(&p->px->peak_queued, __ATOMIC_RELAXED);
        while (q > seen && !__atomic_compare_exchange_n(&p->px->peak_queued, &seen, q, true,
                                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                ;
}

/* The last of source, destination and connector is gone: free the pair. */
static void free_if_done(struct pair *p)
{
        if (p->src || p->dst || p->cn)
                return;
        __atomic_fetch_sub(&p->px->pairs, 1, __ATOMIC_RELAXED);
        free(p);
}

/* Bytes from @from go to @to; all of them are taken (queued or written),
 * and @to's high-water callback pauses @from when they pile up. */
static void pipe_bytes(struct pair *p, tern_conn *to, struct tern_buf *in)
{
        if (to) {
                tern_conn_send(to, tern_buf_data(in), tern_buf_len(in));
                note_queued(p, to);
        }
        tern_buf_consume(in, tern_buf_len(in)); /* no peer: closing anyway */
}

/* Both directions ended: close both once their output has flushed. */
static void close_if_both_ended(struct pair *p)
{
        if (!p->src_eof || !p->dst_eof)
                return;
        if (p->src)
                tern_conn_close(p->src);
        if (p->dst)
                tern_conn_close(p->dst);
}

/* ---- destination (connector) side ---- */

static void dst_open(tern_conn *c)
{
        struct pair *p = tern_connector_user(tern_conn_connector(c));
        p->dst = c;
        tern_conn_set_data(c, p);
        if (p->src)
                tern_conn_resume_read(p->src); /* held back until now */
}

static void dst_message(tern_conn *c, struct tern_buf *in)
{
        struct pair *p = tern_conn_data(c);
        pipe_bytes(p, p->src, in);
}

static void dst_eof(tern_conn *c)
{
        struct pair *p = tern_conn_data(c);
        p->dst_eof = true;
        if (p->src)
                tern_conn_shutdown(p->src); /* after what is queued for it */
        close_if_both_ended(p);
}

static void dst_high(tern_conn *c, size_t queued)
{
        struct pair *p = tern_conn_data(c);
        if (p->src)
                tern_conn_pause_read(p->src);
}

static void dst_low(tern_conn *c, size_t queued)
{
        struct pair *p = tern_conn_data(c);
        if (p->src)
                tern_conn_resume_read(p->src);
}

static void dst_close(tern_conn *c, enum tern_close_reason reason, int err)
{
        struct pair *p = tern_conn_data(c);
        p->dst = NULL;
        tern_connector_free(p->cn); /* allowed inside its connection's on_close */
        p->cn = NULL;
        if (p->src)
                tern_conn_close(p->src); /* what the destination sent still flushes */
        free_if_done(p);
}

static void dst_give_up(tern_connector *cn, int err)
{
        struct pair *p = tern_connector_user(cn);
        __atomic_fetch_add(&p->px->connect_failed, 1, __ATOMIC_RELAXED);
        /* Once per client while the destination is down: a flood without
         * the limit (tern_proxy_connect_failures_total has the count). */
        tern_warn_limited("tern-proxy: cannot connect to %s port %u: %s", p->px->to_host,
                          p->px->to_port, tern_strerror(err));
        tern_connector_free(cn);
        p->cn = NULL;
        if (p->src)
                tern_conn_close(p->src);
        free_if_done(p);
}

static const struct tern_conn_ops dst_ops = {
    .on_open = dst_open,
    .on_message = dst_message,
    .on_eof = dst_eof,
    .on_high_water = dst_high,
    .on_low_water = dst_low,
    .on_close = dst_close,
};

/* ---- source (accepted) side ---- */

static void src_open(tern_conn *c)
{
        struct proxy *px = tern_server_user(tern_conn_server(c));
        struct pair *p = calloc(1, sizeof(*p));
        if (!p) {
                tern_conn_abort(c);
                return;
        }
        __atomic_fetch_add(&px->pairs, 1, __ATOMIC_RELAXED);
        p->px = px;
        p->src = c;
        tern_conn_set_data(c, p);
        /* Nothing to forward to yet: the kernel holds the bytes meanwhile. */
        tern_conn_pause_read(c);

        struct tern_connector_opts o;
        tern_connector_opts_init(&o);
        o.host = px->to_host; /* numeric: no blocking resolution here */
        o.port = px->to_port;
        o.connect_timeout_ms = px->connect_timeout_ms;
        o.max_attempts = 1;
        o.ops = &dst_ops;
        o.limits = px->dst_limits; /* the same backpressure both ways */
        o.on_give_up = dst_give_up;
        o.tls = px->to_tls;
        o.tls_server_name = px->to_name;
        o.user = p;
        p->cn = tern_connector_new(tern_conn_loop(c), &o);
        int r = p->cn ? tern_connector_start(p->cn) : -errno;
        if (r < 0) {
                tern_warn("tern-proxy: cannot start a connection to %s port %u: %s", px->to_host,
                          px->to_port, tern_strerror(r));
                __atomic_fetch_add(&px->connect_failed, 1, __ATOMIC_RELAXED);
                tern_connector_free(p->cn);
                p->cn = NULL;
                tern_conn_close(c);
        }
}

static void src_message(tern_conn *c, struct tern_buf *in)
{
        struct pair *p = tern_conn_data(c);
        pipe_bytes(p, p->dst, in);
}

static void src_eof(tern_conn *c)
{
        struct pair *p = tern_conn_data(c);
        p->src_eof = true;
        if (!p->dst) { /* still connecting: nobody to tell */
                tern_conn_close(c);
                return;
        }
        tern_conn_shutdown(p->dst);
        close_if_both_ended(p);
}

static void src_high(tern_conn *c, size_t queued)
{
        struct pair *p = tern_conn_data(c);
        if (p->dst)
                tern_conn_pause_read(p->dst);
}

static void src_low(tern_conn *c, size_t queued)
{
        struct pair *p = tern_conn_data(c);
        if (p->dst)
                tern_conn_resume_read(p->dst);
}

static void src_close(tern_conn *c, enum tern_close_reason reason, int err)
{
        struct pair *p = tern_conn_data(c);
        if (!p)
                return; /* src_open could not allocate */
        p->src = NULL;
        if (p->dst) {
                tern_conn_close(p->dst); /* dst_close frees the connector */
        } else {
                tern_connector_free(p->cn); /* aborts a connect in progress */
                p->cn = NULL;
        }
        free_if_done(p);
}

static const struct tern_conn_ops src_ops = {
    .on_open = src_open,
    .on_message = src_message,
    .on_eof = src_eof,
    .on_high_water = src_high,
    .on_low_water = src_low,
    .on_close = src_close,
};

void proxy_apply(struct tern_server_opts *o, struct proxy *px)
{
        o->ops = &src_ops;
        o->user = px;
        if (!o->high_water) {
                o->high_water = PROXY_DEFAULT_HIGH_WATER;
                o->low_water = PROXY_DEFAULT_HIGH_WATER / 2;
        }
        struct tern_conn_limits *l = &px->dst_limits;
        tern_conn_limits_init(l);
        l->max_outbuf = o->max_outbuf;
        l->max_inbuf = o->max_inbuf;
        l->high_water = o->high_water;
        l->low_water = o->low_water;
        l->read_budget = o->read_budget;
        l->linger_ms = o->drain_timeout_ms;
}
