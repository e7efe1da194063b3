/*
 * Layer 4 (chat.h lists the layers; includes client.h, so fanout.h,
 * registry.h and worker.h): clients, room moves, departures, the
 * slow-consumer drop, the idle timer.
 *
 * tern runs no callback of ours inside a call of ours, so a client is only
 * ever freed from its own on_close, with nothing of ours on the stack: a
 * send that fails just returns, and the departure follows in on_close. A
 * member marked too slow during a walk departs when the function that
 * walked settles (chat_fanout_settle), after the walk.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

/* ---- sending ---- */

/* Sends without settling: for the middle of a function that settles at its
 * end. */
static int send_one(struct chat_client *cl, const void *data, size_t len)
{
        if (cl->departed)
                return -EPIPE;
        return chat_member_send(cl->w, &cl->m, data, len);
}

int chat_send(struct chat_client *cl, const void *data, size_t len)
{
        int r = send_one(cl, data, len);
        if (r == -ENOBUFS)
                chat_fanout_settle(cl->w);
        return r;
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

/* Another worker's inbox is past max_inbox: stop reading from @cl, the
 * speaker that filled it, until the inboxes drain (backpressure to TCP
 * instead of memory without bound). */
static void throttle(struct chat_client *cl)
{
        struct chat_worker *w = cl->w;
        if (cl->throttled || !cl->m.conn)
                return;
        cl->throttled = true;
        tern_conn_pause_read(cl->m.conn);
        cds_list_add_tail(&cl->throttle_link, &w->throttled);
        __atomic_store_n(&w->throttles, w->throttles + 1, __ATOMIC_RELAXED);
        if (!tern_timer_armed(&w->resume))
                tern_loop_timer_start(w->loop, &w->resume, 1, 1);
}

static void unthrottle(struct chat_client *cl)
{
        if (!cl->throttled)
                return;
        cl->throttled = false;
        cds_list_del_init(&cl->throttle_link);
        /* A /who in flight keeps its own pause; its answer resumes. */
        if (cl->m.conn && !cl->waiting)
                tern_conn_resume_read(cl->m.conn);
}

/* Every millisecond while speakers are paused: once every other worker's
 * inbox is down to half the bound, they all go on. */
static void resume_cb(struct tern_timer *t, void *arg)
{
        struct chat_worker *w = arg;
        if (!chat_inboxes_drained(w->cs, w))
                return;
        while (!cds_list_empty(&w->throttled))
                unthrottle(cds_list_first_entry(&w->throttled, struct chat_client, throttle_link));
        tern_loop_timer_stop(w->loop, t);
}

int chat_room_say(struct chat_worker *w, const struct chat_member *from, struct chat_room *room,
                  const char *data, size_t len)
{
        int r = chat_broadcast(w, from, room, data, len);
        /* The same line to the other instances, from this worker's one
         * link, so that a sender's lines cross in the order it sent them. */
        if (r >= 0 && (!from || !chat_member_gone(from)))
                chat_cluster_publish(w, room, data, len);
        return r;
}

int chat_client_say(struct chat_client *cl, const char *data, size_t len)
{
        if (!cl->room)
                return chat_send(cl, data, len);
        int r = chat_room_say(cl->w, &cl->m, cl->room, data, len);
        if (r > 0)
                throttle(cl);
        chat_fanout_settle(cl->w);
        return r < 0 ? r : 0;
}

/* ---- rooms ---- */

static void leave_room(struct chat_client *cl, bool notify)
{
        struct chat_worker *w = cl->w;
        struct chat_room *room = cl->room;
        bool last = cl->m.lroom && cl->m.lroom->n == 1;
        chat_member_detach(w, &cl->m);
        cl->room = NULL;
        if (last) /* no local member left: other instances' lines are not ours */
                chat_cluster_room_close(w, room);
        /* Counted out before the notice goes, so a member who reacts to it
         * with /rooms or /who no longer finds us. The room's memory stays
         * valid until this worker's next quiescent state even if this was
         * its last member. */
        chat_room_put(w->cs, room, w->index);
        if (notify && cl->nick) {
                char line[2 * CHAT_NAME_MAX + 32];
                int n =
                    snprintf(line, sizeof(line), "* %s left #%s\r\n", cl->nick->name, room->name);
                chat_room_say(w, NULL, room, line, (size_t)n);
        }
}

/* chat_client_join() after the drain; marks, never drops. */
static int join_drained(struct chat_client *cl, const char *name, size_t len)
{
        struct chat_worker *w = cl->w;
        struct chat_server *cs = w->cs;
        if (chat_client_gone(cl))
                return 0; /* the drain found it too slow */
        /* Counted first: from here on senders hand this worker the room's
         * messages, so none sent after anyone could see the join is missed. */
        struct chat_room *room = chat_room_get(cs, name, len, w->index);
        if (!room)
                return -ENOMEM;
        /* In the new room for the cluster's /who before the leave and join
         * notices go out after it on the same connection. */
        chat_cluster_member_set(w, cl->nick->name, room->name);
        if (cl->room)
                leave_room(cl, !chat_stopping(cs));
        /* The others are told first (so by the time the joiner reads its own
         * notice, every worker has it queued), then the joiner, which enters
         * the member list last: it reads its notice before any room line. */
        char line[2 * CHAT_NAME_MAX + 32];
        int n = snprintf(line, sizeof(line), "* %s joined #%s\r\n", cl->nick->name, room->name);
        chat_room_say(w, &cl->m, room, line, (size_t)n);
        if (!chat_client_gone(cl))
                send_one(cl, line, (size_t)n);
        bool gone = chat_client_gone(cl);
        struct chat_lroom *lr = gone ? NULL : chat_lroom_get(w, room);
        if (!lr) {
                chat_cluster_member_del(w, cl->nick->name); /* in no room after all */
                chat_room_put(cs, room, w->index);
                return gone ? 0 : -ENOMEM;
        }
        bool first = lr->n == 0;
        chat_lroom_add(w, lr, &cl->m);
        cl->room = room;
        if (first) /* subscribed only while there are local members */
                chat_cluster_room_open(w, room);
        return 0;
}

int chat_client_join(struct chat_client *cl, const char *name, size_t len)
{
        if (cl->room && chat_room_is(cl->room, name, len))
                return 0;
        /* Everything already handed to this worker is delivered before the
         * move, to the rooms as they were: that is what makes a move exact
         * for messages sent before it (docs/chat.md). */
        chat_inbox_drain(cl->w);
        int r = join_drained(cl, name, len);
        chat_fanout_settle(cl->w);
        return r;
}

/* chat_client_depart() without settling: what the settle loop calls. */
static void depart_one(struct chat_client *cl, const char *why)
{
        if (cl->departed)
                return;
        struct chat_worker *w = cl->w;
        struct chat_server *cs = w->cs;
        cl->departed = true;
        tern_loop_timer_stop(w->loop, &cl->idle);
        /* Out of the cluster's /who before the leave notice goes out on
         * the same connection, so whoever reads the notice and asks does
         * not find us. */
        if (cl->nick)
                chat_cluster_member_del(w, cl->nick->name);
        if (cl->room)
                leave_room(cl, !chat_stopping(cs));
        else
                chat_member_detach(w, &cl->m); /* off the slow list */
        if (cl->claim) {                       /* a /nick in flight: its answer is nobody's now */
                chat_cluster_claim_cancel(cl->claim);
                cl->claim = NULL;
        }
        if (cl->nick) {
                chat_cluster_nick_release(w, cl->nick->key);
                chat_nick_drop(cs, cl->nick);
                cl->nick = NULL;
        }
        if (!cl->m.conn)
                return;
        /* Raw send: a departed client is past the slow-consumer rule. If it
         * fails, the close below is a no-op and on_close follows anyway. */
        if (why)
                tern_conn_send(cl->m.conn, why, strlen(why));
        tern_conn_close(cl->m.conn);
}

void chat_client_depart(struct chat_client *cl, const char *why)
{
        depart_one(cl, why);
        chat_fanout_settle(cl->w);
}

/* The fan-out's drop_slow: a member marked too slow, after the walk. */
static void drop_slow(struct chat_member *m)
{
        struct chat_client *cl = chat_client_of(m);
        /* The runtime's own cap sits a full line above ours, so the notice
         * always fits; it leaves after what is queued. */
        tern_info("tern-chat: worker %d: %s is too slow (%zu bytes pending); dropping it",
                  cl->w->index, cl->nick ? cl->nick->name : "?",
                  m->conn ? tern_conn_queued(m->conn) : 0);
        depart_one(cl, "* disconnected: too slow\r\n");
}

int chat_client_worker_init(struct chat_worker *w)
{
        tern_timer_init(&w->resume, resume_cb, w);
        return chat_fanout_init(w, drop_slow);
}

void chat_client_worker_stop(struct chat_worker *w)
{
        tern_loop_timer_stop(w->loop, &w->resume);
}

/* ---- life ---- */

static void idle_cb(struct tern_timer *t, void *arg)
{
        (void)t;
        struct chat_client *cl = arg;
        struct chat_worker *w = cl->w;
        uint64_t limit = w->cs->opts.idle_timeout_ms;
        uint64_t quiet = tern_loop_now(w->loop) - cl->last_input;
        /* Lines only stamp last_input; the timer catches up here, so the
         * line path never touches the timer wheel. */
        if (quiet < limit)
                tern_loop_timer_start(w->loop, &cl->idle, limit - quiet, 0);
        else
                chat_client_depart(cl, "* idle timeout\r\n");
        chat_grace_release();
}

struct chat_client *chat_client_open(struct chat_worker *w, tern_conn *c)
{
        struct chat_server *cs = w->cs;
        struct chat_client *cl = calloc(1, sizeof(*cl));
        if (!cl) {
                tern_warn("tern-chat: out of memory for a new client");
                tern_conn_abort(c);
                return NULL;
        }
        chat_live_add(CHAT_LIVE_CLIENTS, 1);
        chat_member_init(&cl->m, c);
        CDS_INIT_LIST_HEAD(&cl->throttle_link);
        cl->w = w;
        tern_timer_init(&cl->idle, idle_cb, cl);
        cl->last_input = tern_loop_now(w->loop);
        tern_conn_set_data(c, cl);

        cl->nick = chat_nick_guest(cs, tern_conn_handle(c));
        if (!cl->nick) {
                chat_client_depart(cl, "! server busy\r\n");
                return cl;
        }
        chat_cluster_nick_adopt(w, cl->nick->key);
        chat_sendf(cl, "* welcome %s\r\n", cl->nick->name);
        if (chat_client_gone(cl))
                return cl;
        if (chat_client_join(cl, CHAT_LOBBY, strlen(CHAT_LOBBY)) < 0 && !chat_client_gone(cl)) {
                chat_client_depart(cl, "! out of memory\r\n");
                return cl;
        }
        if (!cl->departed && cs->opts.idle_timeout_ms)
                tern_loop_timer_start(w->loop, &cl->idle, cs->opts.idle_timeout_ms, 0);
        return cl;
}

void chat_client_closed(struct chat_client *cl, enum tern_close_reason reason, int err)
{
        tern_debug("tern-chat: worker %d: %s closed (%s%s%s)", cl->w->index,
                   cl->nick ? cl->nick->name : "departed client", tern_close_reason_str(reason),
                   err ? ": " : "", err ? tern_strerror(err) : "");
        tern_conn_set_data(cl->m.conn, NULL);
        cl->m.conn = NULL;
        unthrottle(cl);
        chat_client_depart(cl, NULL);
        /* Nothing refers to it any more: off every list, its timer stopped,
         * and what other workers send it travels by handle, which the loop
         * resolves to nothing from now on. */
        free(cl->pend);
        free(cl->claim_line);
        free(cl);
        chat_live_add(CHAT_LIVE_CLIENTS, -1);
}
