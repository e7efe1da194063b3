/*
 * Layer 7, the top (chat.h lists the layers; includes commands.h and so
 * every layer below): tern's connection callbacks and the server's life,
 * graceful shutdown and teardown.
 *
 * tern never runs one of these inside a call of ours, so each is the only
 * chat code on its thread's stack: a client freed in on_close cannot be in
 * use further up.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "line.h"

/* ---- connection callbacks ---- */

static void on_open(tern_conn *c)
{
        struct chat_worker *w = chat_worker_of(c);
        /* Refused: no client data, so every later callback ignores it. */
        if (app_conn_limit_enter(&w->cs->limit, c, "! server full\r\n") && !chat_client_open(w, c))
                app_conn_limit_leave(&w->cs->limit);
        chat_grace_release();
}

static void on_frame(tern_conn *c, const struct tern_frame *f)
{
        struct chat_client *cl = tern_conn_data(c);
        if (!cl || cl->departed)
                return;
        cl->last_input = tern_loop_now(cl->w->loop);
        chat_on_frame(cl, f);
        chat_grace_release();
}

/* The client will send no more (half-close, as `nc -N` does at the end of
 * its input): it leaves, but answers it is owed still go out first. */
static void on_eof(tern_conn *c)
{
        struct chat_client *cl = tern_conn_data(c);
        if (!cl) {
                tern_conn_close(c);
                return;
        }
        if (cl->waiting)
                cl->eof = true; /* the /who answer is on its way; see replay_pending() */
        else
                chat_client_depart(cl, NULL);
        chat_grace_release();
}

static void on_drain(tern_conn *c)
{
        struct chat_client *cl = tern_conn_data(c);
        if (!cl)
                return;
        /* Other workers may still be closing clients: from now on nobody
         * announces departures, everybody is leaving. */
        __atomic_store_n(&cl->w->cs->stopping, 1, __ATOMIC_RELEASE);
        if (!cl->departed)
                tern_conn_send(c, "* server shutting down\r\n", 24);
}

static void on_close(tern_conn *c, enum tern_close_reason reason, int err)
{
        struct chat_client *cl = tern_conn_data(c);
        if (!cl)
                return; /* refused over --max-conns (or never opened) */
        struct chat_server *cs = cl->w->cs;
        chat_client_closed(cl, reason, err);
        app_conn_limit_leave(&cs->limit);
        chat_grace_release();
}

static const struct tern_conn_ops chat_ops = {
    .on_open = on_open,
    .on_frame = on_frame,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_close = on_close,
};

/* ---- the server ---- */

void chat_opts_init(struct chat_opts *o)
{
        memset(o, 0, sizeof(*o));
        o->port = CHAT_DEFAULT_PORT;
        o->idle_timeout_ms = CHAT_DEFAULT_IDLE_S * 1000u;
        o->max_line = CHAT_DEFAULT_LINE;
        o->max_outbuf = CHAT_DEFAULT_OUTBUF;
        o->max_inbox = CHAT_DEFAULT_INBOX;
        o->flood_rate = CHAT_DEFAULT_FLOOD_RATE;
        o->flood_burst = CHAT_DEFAULT_FLOOD_BURST;
}

/* Each worker's loop, as it starts: its cluster link connects. */
static void worker_start(tern_loop *loop, void *user)
{
        struct chat_server *cs = user;
        chat_cluster_worker_start(&cs->workers[tern_loop_index(loop)]);
}

/* Each worker's loop, as it stops: nothing of ours may stay armed. */
static void worker_stop(tern_loop *loop, void *user)
{
        struct chat_server *cs = user;
        chat_client_worker_stop(&cs->workers[tern_loop_index(loop)]);
        chat_cluster_worker_stop(&cs->workers[tern_loop_index(loop)]);
}

struct chat_server *chat_server_new(const struct chat_opts *o)
{
        if (o->max_line == 0 || o->max_line > TERN_LINE_MAX_LEN_LIMIT || o->max_outbuf == 0 ||
            o->max_inbox == 0 || o->workers < 0 || o->workers > 255) {
                errno = EINVAL;
                return NULL;
        }
        struct chat_server *cs = calloc(1, sizeof(*cs));
        if (!cs)
                return NULL;
        cs->opts = *o;
        cs->scratch_cap = o->max_line + CHAT_LINE_OVERHEAD;

        tern_line_config_init(&cs->line_cfg);
        cs->line_cfg.max_len = o->max_line;
        cs->line_cfg.overlong = TERN_LINE_OVERLONG_DISCARD; /* "! line too long", stay open */
        cs->line_cfg.crlf_out = true;

        struct tern_server_opts so;
        tern_server_opts_init(&so);
        so.bind = o->bind;
        so.port = o->port;
        so.workers = o->workers;
        so.accept = o->accept;
        so.max_conns = 0; /* ours, in on_open: tern's would close without a word */
        cs->limit.prog = "tern-chat";
        cs->limit.max = o->max_conns;
        /* Idle means "sent no line" here, not "no bytes moved", and it ends
         * with a notice: the chat runs its own timer. */
        so.idle_timeout_ms = 0;
        /* Our limit is checked after each send; the runtime's hard cap sits
         * above it so that the goodbye line still fits. */
        so.max_outbuf = o->max_outbuf + cs->scratch_cap + 256;
        if (o->drain_timeout_ms)
                so.drain_timeout_ms = o->drain_timeout_ms;
        so.ops = &chat_ops;
        so.codec = &tern_line_codec;
        so.codec_config = &cs->line_cfg;
        so.user = cs;
        so.on_worker_start = worker_start;
        so.on_worker_stop = worker_stop;
        cs->srv = tern_server_new(&so);
        if (!cs->srv)
                goto out_free_cs;
        if (o->tls) {
                /* The same stack over TLS: one set of workers, the same rooms. */
                struct tern_listener_opts lo;
                tern_listener_opts_init(&lo);
                lo.bind = o->bind;
                lo.port = o->tls_port;
                lo.ops = so.ops;
                lo.codec = so.codec;
                lo.codec_config = so.codec_config;
                lo.tls = o->tls;
                int id = tern_server_listen(cs->srv, &lo);
                if (id < 0) {
                        tern_server_free(cs->srv);
                        errno = -id;
                        goto out_free_cs;
                }
                cs->tls_listener = id;
        }
        cs->nworkers = tern_server_workers(cs->srv);

        size_t size = (size_t)cs->nworkers * sizeof(*cs->workers);
        cs->workers = aligned_alloc(64, (size + 63) & ~(size_t)63);
        if (!cs->workers)
                goto out_free_srv;
        memset(cs->workers, 0, size);
        for (int i = 0; i < cs->nworkers; i++)
                if (chat_worker_init(&cs->workers[i], cs, i) < 0 ||
                    chat_client_worker_init(&cs->workers[i]) < 0)
                        goto out_free_workers;
        if (chat_registry_init(cs) < 0)
                goto out_free_workers;
        int cr = chat_cluster_init(cs);
        if (cr < 0) {
                chat_registry_destroy(cs);
                for (int i = 0; i < cs->nworkers; i++) {
                        chat_fanout_destroy(&cs->workers[i]);
                        chat_worker_destroy(&cs->workers[i]);
                }
                free(cs->workers);
                tern_server_free(cs->srv);
                free(cs);
                errno = -cr;
                return NULL;
        }
        chat_cluster_cmds_init(cs);
        return cs;

out_free_workers:
        for (int i = 0; i < cs->nworkers; i++) {
                chat_fanout_destroy(&cs->workers[i]);
                chat_worker_destroy(&cs->workers[i]);
        }
        free(cs->workers);
out_free_srv:
        tern_server_free(cs->srv);
        errno = ENOMEM;
out_free_cs : {
        int e = errno;
        free(cs);
        errno = e;
        return NULL;
}
}

int chat_server_start(struct chat_server *cs)
{
        return tern_server_start(cs->srv);
}

void chat_server_stop(struct chat_server *cs)
{
        __atomic_store_n(&cs->stopping, 1, __ATOMIC_RELEASE);
        tern_server_stop(cs->srv);
}

int chat_server_wait(struct chat_server *cs)
{
        return tern_server_wait(cs->srv);
}

void chat_server_free(struct chat_server *cs)
{
        if (!cs)
                return;
        /* The workers are gone: what is still queued was for clients that
         * have closed. */
        for (int i = 0; i < cs->nworkers; i++) {
                chat_fanout_destroy(&cs->workers[i]);
                chat_worker_destroy(&cs->workers[i]);
        }
        /* Rooms and nicknames wait in call_rcu queues: let them all run. */
        urcu_qsbr_barrier();
        chat_cluster_destroy(cs);
        chat_registry_destroy(cs);
        tern_server_free(cs->srv);
        free(cs->workers);
        free(cs);
}

uint16_t chat_server_tls_port(const struct chat_server *cs)
{
        return cs->tls_listener ? tern_server_listener_port(cs->srv, cs->tls_listener) : 0;
}

uint16_t chat_server_port(const struct chat_server *cs)
{
        return tern_server_port(cs->srv);
}

int chat_server_workers(const struct chat_server *cs)
{
        return cs->nworkers;
}

tern_server *chat_server_tern(const struct chat_server *cs)
{
        return cs->srv;
}

size_t chat_server_peak_queued(const struct chat_server *cs)
{
        size_t peak = 0;
        for (int i = 0; i < cs->nworkers; i++) {
                size_t p = __atomic_load_n(&cs->workers[i].peak_queued, __ATOMIC_RELAXED);
                if (p > peak)
                        peak = p;
        }
        return peak;
}

size_t chat_server_peak_inbox(const struct chat_server *cs)
{
        size_t peak = 0;
        for (int i = 0; i < cs->nworkers; i++) {
                size_t p = __atomic_load_n(&cs->workers[i].peak_inbox, __ATOMIC_RELAXED);
                if (p > peak)
                        peak = p;
        }
        return peak;
}

uint64_t chat_server_throttles(const struct chat_server *cs)
{
        uint64_t n = 0;
        for (int i = 0; i < cs->nworkers; i++)
                n += __atomic_load_n(&cs->workers[i].throttles, __ATOMIC_RELAXED);
        return n;
}

uint64_t chat_server_flood_dropped(const struct chat_server *cs)
{
        uint64_t n = 0;
        for (int i = 0; i < cs->nworkers; i++)
                n += __atomic_load_n(&cs->workers[i].flood_dropped, __ATOMIC_RELAXED);
        return n;
}

uint64_t chat_server_flood_kicked(const struct chat_server *cs)
{
        uint64_t n = 0;
        for (int i = 0; i < cs->nworkers; i++)
                n += __atomic_load_n(&cs->workers[i].flood_kicked, __ATOMIC_RELAXED);
        return n;
}

uint64_t chat_server_refused(const struct chat_server *cs)
{
        return app_conn_limit_refused(&cs->limit);
}

void chat_server_worker_stats(const struct chat_server *cs, int i, struct chat_worker_stats *out)
{
        const struct chat_worker *w = &cs->workers[i];
        out->said = __atomic_load_n(&w->said, __ATOMIC_RELAXED);
        out->delivered = __atomic_load_n(&w->delivered, __ATOMIC_RELAXED);
        out->slow_drops = __atomic_load_n(&w->slow_drops, __ATOMIC_RELAXED);
        out->throttles = __atomic_load_n(&w->throttles, __ATOMIC_RELAXED);
        long ib = __atomic_load_n(&w->inbox_bytes, __ATOMIC_RELAXED);
        out->inbox_bytes = ib < 0 ? 0 : (uint64_t)ib;
        tern_hist_read(&out->delivery, &w->delivery);
}
