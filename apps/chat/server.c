/*
 * Clients and the server's life: connection callbacks, room moves, the
 * slow-consumer rule, the idle timer, graceful shutdown, teardown.
 *
 * A client is freed only when the outermost chat callback on its worker
 * returns (chat_enter/chat_exit): a send deep inside a delivery may close
 * the connection and run on_close re-entrantly, and the walk that called
 * it must still be able to step past the client.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "line.h"

static long chat_live[4];

void chat_live_add(enum chat_live_kind kind, long delta)
{
        __atomic_fetch_add(&chat_live[kind], delta, __ATOMIC_RELAXED);
}

void chat_live_counts(struct chat_live_counts *out)
{
        out->clients = __atomic_load_n(&chat_live[CHAT_LIVE_CLIENTS], __ATOMIC_RELAXED);
        out->rooms = __atomic_load_n(&chat_live[CHAT_LIVE_ROOMS], __ATOMIC_RELAXED);
        out->nicks = __atomic_load_n(&chat_live[CHAT_LIVE_NICKS], __ATOMIC_RELAXED);
        out->msgs = __atomic_load_n(&chat_live[CHAT_LIVE_MSGS], __ATOMIC_RELAXED);
}

void chat_enter(struct chat_worker *w)
{
        w->depth++;
}

char chat_tsan_grace;

void chat_exit(struct chat_worker *w)
{
        if (--w->depth)
                return;
        CHAT_HB_RELEASE(&chat_tsan_grace);
        while (w->dead) {
                struct chat_client *cl = w->dead;
                w->dead = cl->next_dead;
                free(cl->pend);
                free(cl);
                chat_live_add(CHAT_LIVE_CLIENTS, -1);
        }
}

static bool stopping(const struct chat_server *cs)
{
        return __atomic_load_n(&cs->stopping, __ATOMIC_ACQUIRE);
}

/* ---- sending ---- */

int chat_send(struct chat_client *cl, const void *data, size_t len)
{
        if (cl->departed || !cl->conn)
                return -EPIPE;
        tern_conn *c = cl->conn;
        int r = tern_conn_send(c, data, len);
        if (r)
                return r; /* closed: on_close has run and cleaned up */
        size_t queued = tern_conn_queued(c);
        if (queued > cl->w->peak_queued)
                __atomic_store_n(&cl->w->peak_queued, queued, __ATOMIC_RELAXED);
        if (queued > cl->w->cs->opts.max_outbuf) {
                /* The runtime's own cap sits a full line above ours, so the
                 * notice always fits; it leaves after what is queued. */
                tern_info("tern-chat: worker %d: %s is too slow (%zu bytes pending); dropping it",
                          cl->w->index, cl->nick ? cl->nick->name : "?", queued);
                chat_client_depart(cl, "* disconnected: too slow\r\n");
                return -ENOBUFS;
        }
        return 0;
}

int chat_sendf(struct chat_client *cl, const char *fmt, ...)
{
        char line[256];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(line))
                return -EOVERFLOW; /* only ever used for short fixed lines */
        return chat_send(cl, line, (size_t)n);
}

/* ---- rooms ---- */

static void leave_room(struct chat_client *cl, bool notify)
{
        struct chat_worker *w = cl->w;
        struct chat_room *room = cl->room;
        chat_lroom_detach(w, cl);
        cl->room = NULL;
        /* Counted out before the notice goes, so a member who reacts to it
         * with /rooms or /who no longer finds us. The room's memory stays
         * valid until this worker's next quiescent state even if this was
         * its last member. */
        chat_room_put(w->cs, room, w->index);
        if (notify && cl->nick) {
                char line[2 * CHAT_NAME_MAX + 32];
                int n =
                    snprintf(line, sizeof(line), "* %s left #%s\r\n", cl->nick->name, room->name);
                chat_broadcast(w, NULL, room, line, (size_t)n);
        }
}

int chat_client_join(struct chat_client *cl, const char *name, size_t len)
{
        struct chat_worker *w = cl->w;
        struct chat_server *cs = w->cs;
        if (cl->room && chat_room_is(cl->room, name, len))
                return 0;
        /* Everything already handed to this worker is delivered before the
         * move, to the rooms as they were: that is what makes a move exact
         * for messages sent before it (docs/chat.md). */
        chat_inbox_drain(w);
        if (cl->departed)
                return 0; /* the drain found it too slow */
        /* Counted first: from here on senders hand this worker the room's
         * messages, so none sent after anyone could see the join is missed. */
        struct chat_room *room = chat_room_get(cs, name, len, w->index);
        if (!room)
                return -ENOMEM;
        if (cl->room)
                leave_room(cl, !stopping(cs));
        /* The others are told first (so by the time the joiner reads its own
         * notice, every worker has it queued), then the joiner, which enters
         * the member list last: it reads its notice before any room line. */
        char line[2 * CHAT_NAME_MAX + 32];
        int n = snprintf(line, sizeof(line), "* %s joined #%s\r\n", cl->nick->name, room->name);
        chat_broadcast(w, cl, room, line, (size_t)n);
        if (!cl->departed)
                chat_send(cl, line, (size_t)n);
        struct chat_lroom *lr = cl->departed ? NULL : chat_lroom_get(w, room);
        if (!lr) {
                chat_room_put(cs, room, w->index);
                return cl->departed ? 0 : -ENOMEM;
        }
        chat_lroom_add(w, lr, cl);
        cl->room = room;
        return 0;
}

void chat_client_depart(struct chat_client *cl, const char *why)
{
        if (cl->departed)
                return;
        struct chat_worker *w = cl->w;
        struct chat_server *cs = w->cs;
        cl->departed = true;
        tern_loop_timer_stop(w->loop, &cl->idle);
        if (cl->room)
                leave_room(cl, !stopping(cs));
        if (cl->nick) {
                chat_nick_drop(cs, cl->nick);
                cl->nick = NULL;
        }
        if (!cl->conn)
                return;
        /* Raw sends: a departed client is past the slow-consumer rule. A
         * failed send runs on_close, which clears cl->conn. */
        if (why)
                tern_conn_send(cl->conn, why, strlen(why));
        if (cl->conn)
                tern_conn_close(cl->conn);
}

/* ---- connection callbacks ---- */

static void idle_cb(struct tern_timer *t, void *arg)
{
        struct chat_client *cl = arg;
        struct chat_worker *w = cl->w;
        chat_enter(w);
        uint64_t limit = w->cs->opts.idle_timeout_ms;
        uint64_t quiet = tern_loop_now(w->loop) - cl->last_input;
        /* Lines only stamp last_input; the timer catches up here, so the
         * line path never touches the timer wheel. */
        if (quiet < limit)
                tern_loop_timer_start(w->loop, &cl->idle, limit - quiet, 0);
        else
                chat_client_depart(cl, "* idle timeout\r\n");
        chat_exit(w);
}

static void on_open(tern_conn *c)
{
        struct chat_worker *w = chat_worker_of(c);
        struct chat_server *cs = w->cs;
        chat_enter(w);
        struct chat_client *cl = calloc(1, sizeof(*cl));
        if (!cl) {
                tern_warn("tern-chat: out of memory for a new client");
                tern_conn_abort(c);
                goto out;
        }
        chat_live_add(CHAT_LIVE_CLIENTS, 1);
        cl->conn = c;
        cl->w = w;
        CDS_INIT_LIST_HEAD(&cl->member);
        tern_timer_init(&cl->idle, idle_cb, cl);
        cl->last_input = tern_loop_now(w->loop);
        tern_conn_set_data(c, cl);

        cl->nick = chat_nick_guest(cs, tern_conn_handle(c));
        if (!cl->nick) {
                chat_client_depart(cl, "! server busy\r\n");
                goto out;
        }
        chat_sendf(cl, "* welcome %s\r\n", cl->nick->name);
        if (cl->departed)
                goto out;
        if (chat_client_join(cl, CHAT_LOBBY, strlen(CHAT_LOBBY)) < 0 && !cl->departed) {
                chat_client_depart(cl, "! out of memory\r\n");
                goto out;
        }
        if (!cl->departed && cs->opts.idle_timeout_ms)
                tern_loop_timer_start(w->loop, &cl->idle, cs->opts.idle_timeout_ms, 0);
out:
        chat_exit(w);
}

static void on_frame(tern_conn *c, const struct tern_frame *f)
{
        struct chat_client *cl = tern_conn_data(c);
        if (!cl || cl->departed)
                return;
        struct chat_worker *w = cl->w;
        chat_enter(w);
        cl->last_input = tern_loop_now(w->loop);
        chat_on_frame(cl, f);
        chat_exit(w);
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
        chat_enter(cl->w);
        if (cl->waiting)
                cl->eof = true; /* the /who answer is on its way; see replay_pending() */
        else
                chat_client_depart(cl, NULL);
        chat_exit(cl->w);
}

static void on_drain(tern_conn *c)
{
        struct chat_client *cl = tern_conn_data(c);
        if (!cl)
                return;
        struct chat_worker *w = cl->w;
        chat_enter(w);
        /* Other workers may still be closing clients: from now on nobody
         * announces departures, everybody is leaving. */
        __atomic_store_n(&w->cs->stopping, 1, __ATOMIC_RELEASE);
        if (!cl->departed && cl->conn)
                tern_conn_send(c, "* server shutting down\r\n", 24);
        chat_exit(w);
}

static void on_close(tern_conn *c, enum tern_close_reason reason, int err)
{
        struct chat_client *cl = tern_conn_data(c);
        if (!cl)
                return;
        struct chat_worker *w = cl->w;
        chat_enter(w);
        tern_debug("tern-chat: worker %d: %s closed (%s%s%s)", w->index,
                   cl->nick ? cl->nick->name : "departed client", tern_close_reason_str(reason),
                   err ? ": " : "", err ? tern_strerror(err) : "");
        cl->conn = NULL;
        tern_conn_set_data(c, NULL);
        chat_client_depart(cl, NULL);
        cl->next_dead = w->dead;
        w->dead = cl;
        chat_exit(w);
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
}

struct chat_server *chat_server_new(const struct chat_opts *o)
{
        if (o->max_line == 0 || o->max_line > TERN_LINE_MAX_LEN_LIMIT || o->max_outbuf == 0 ||
            o->workers < 0 || o->workers > 255) {
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
        so.max_conns = o->max_conns;
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
        cs->srv = tern_server_new(&so);
        if (!cs->srv)
                goto out_free_cs;
        cs->nworkers = tern_server_workers(cs->srv);

        size_t size = (size_t)cs->nworkers * sizeof(*cs->workers);
        cs->workers = aligned_alloc(64, (size + 63) & ~(size_t)63);
        if (!cs->workers)
                goto out_free_srv;
        memset(cs->workers, 0, size);
        for (int i = 0; i < cs->nworkers; i++)
                if (chat_worker_init(&cs->workers[i], cs, i) < 0)
                        goto out_free_workers;
        if (chat_registry_init(cs) < 0)
                goto out_free_workers;
        return cs;

out_free_workers:
        for (int i = 0; i < cs->nworkers; i++)
                chat_worker_destroy(&cs->workers[i]);
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
        for (int i = 0; i < cs->nworkers; i++)
                chat_worker_destroy(&cs->workers[i]);
        /* Rooms and nicknames wait in call_rcu queues: let them all run. */
        urcu_qsbr_barrier();
        chat_registry_destroy(cs);
        tern_server_free(cs->srv);
        free(cs->workers);
        free(cs);
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
