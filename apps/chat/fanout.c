/*
 * Layer 3 (chat.h lists the layers; includes fanout.h, so registry.h and
 * worker.h): local member lists, delivery, broadcasts, the slow-consumer
 * mark.
 *
 * Each worker writes a room message to its own members straight from the
 * message's bytes. A worker delivers, on demand, everything handed to it
 * so far: before any client of its changes rooms and before it writes a
 * line of its own to its members, which is what makes a room move exact
 * and keeps causality (docs/chat.md).
 *
 * Walks only send. tern never runs a callback inside tern_conn_send(), so
 * no member can leave, and no list or lroom can change, while one is
 * walked: a member that falls too far behind is marked, and dropped by
 * chat_fanout_settle() once the walk is over.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fanout.h"

/* ---- this worker's rooms: id -> local members ---- */

static inline uint32_t lroom_slot(const struct chat_worker *w, uint64_t id)
{
        return (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & w->lroom_mask;
}

struct chat_lroom *chat_lroom_find(struct chat_worker *w, uint64_t id)
{
        for (struct chat_lroom *lr = w->lrooms[lroom_slot(w, id)]; lr; lr = lr->next)
                if (lr->id == id)
                        return lr;
        return NULL;
}

static void lroom_grow(struct chat_worker *w)
{
        uint32_t n = (w->lroom_mask + 1) * 2;
        struct chat_lroom **t = calloc(n, sizeof(*t));
        if (!t)
                return; /* longer chains, still correct */
        struct chat_lroom **old = w->lrooms;
        uint32_t old_n = w->lroom_mask + 1;
        w->lrooms = t;
        w->lroom_mask = n - 1;
        for (uint32_t i = 0; i < old_n; i++) {
                while (old[i]) {
                        struct chat_lroom *lr = old[i];
                        old[i] = lr->next;
                        uint32_t s = lroom_slot(w, lr->id);
                        lr->next = t[s];
                        t[s] = lr;
                }
        }
        free(old);
}

struct chat_lroom *chat_lroom_get(struct chat_worker *w, const struct chat_room *room)
{
        struct chat_lroom *lr = chat_lroom_find(w, room->id);
        if (lr)
                return lr;
        lr = calloc(1, sizeof(*lr));
        if (!lr)
                return NULL;
        lr->id = room->id;
        CDS_INIT_LIST_HEAD(&lr->members);
        if (w->nlrooms >= w->lroom_mask + 1)
                lroom_grow(w);
        uint32_t s = lroom_slot(w, lr->id);
        lr->next = w->lrooms[s];
        w->lrooms[s] = lr;
        w->nlrooms++;
        return lr;
}

static void lroom_free(struct chat_worker *w, struct chat_lroom *lr)
{
        struct chat_lroom **pp = &w->lrooms[lroom_slot(w, lr->id)];
        while (*pp != lr)
                pp = &(*pp)->next;
        *pp = lr->next;
        w->nlrooms--;
        free(lr);
}

/* ---- members ---- */

void chat_member_init(struct chat_member *m, tern_conn *c)
{
        CDS_INIT_LIST_HEAD(&m->link);
        CDS_INIT_LIST_HEAD(&m->slow);
        m->conn = c;
        m->lroom = NULL;
}

bool chat_member_gone(const struct chat_member *m)
{
        return !m->conn || chat_member_marked(m) || tern_conn_closing(m->conn);
}

void chat_lroom_add(struct chat_worker *w, struct chat_lroom *lr, struct chat_member *m)
{
        (void)w;
        cds_list_add_tail(&m->link, &lr->members);
        lr->n++;
        m->lroom = lr;
}

void chat_member_detach(struct chat_worker *w, struct chat_member *m)
{
        cds_list_del_init(&m->slow);
        struct chat_lroom *lr = m->lroom;
        if (!lr)
                return;
        cds_list_del_init(&m->link);
        m->lroom = NULL;
        if (--lr->n == 0)
                lroom_free(w, lr);
}

int chat_member_send(struct chat_worker *w, struct chat_member *m, const void *data, size_t len)
{
        if (!m->conn || chat_member_marked(m))
                return -EPIPE;
        int r = tern_conn_send(m->conn, data, len);
        if (r)
                return r; /* tern closes it; its on_close comes from the loop */
        chat_worker_count(&w->delivered);
        size_t queued = tern_conn_queued(m->conn);
        chat_worker_note_queued(w, queued);
        if (queued > w->cs->opts.max_outbuf) {
                /* Nothing more for it; chat_fanout_settle() drops it. */
                cds_list_add_tail(&m->slow, &w->slow);
                return -ENOBUFS;
        }
        return 0;
}

void chat_fanout_settle(struct chat_worker *w)
{
        /* A drop announces the departure, which may mark others: they join
         * the end of the list, and this loop gets to them too. */
        while (!cds_list_empty(&w->slow)) {
                struct chat_member *m = cds_list_first_entry(&w->slow, struct chat_member, slow);
                cds_list_del_init(&m->slow);
                w->drop_slow(m);
        }
}

/* ---- delivery ---- */

static void deliver_local(struct chat_worker *w, struct chat_lroom *lr, const char *data,
                          size_t len)
{
        struct chat_member *m;
        cds_list_for_each_entry(m, &lr->members, link) chat_member_send(w, m, data, len);
}

void chat_lroom_deliver(struct chat_worker *w, struct chat_lroom *lr, const char *data, size_t len)
{
        deliver_local(w, lr, data, len);
}

void chat_fanout_tell_all(struct chat_worker *w, const char *data, size_t len)
{
        for (uint32_t i = 0; w->lrooms && i <= w->lroom_mask; i++)
                for (struct chat_lroom *lr = w->lrooms[i]; lr; lr = lr->next)
                        deliver_local(w, lr, data, len);
}

void chat_inbox_drain(struct chat_worker *w)
{
        if (chat_inbox_empty(w))
                return;
        /* Splice once: what other workers queue while we deliver rang again
         * and waits for the next drain. */
        struct __cds_wfcq_head head;
        struct cds_wfcq_tail tail;
        __cds_wfcq_init(&head, &tail);
        chat_inbox_take(w, &head, &tail);
        /* One clock read per drain: every message of it is delivered now. */
        uint64_t now = tern_now_ns();
        struct chat_msg *m;
        while ((m = chat_inbox_pop(w, &head, &tail))) {
                struct chat_lroom *lr = chat_lroom_find(w, m->room_id);
                if (lr) {
                        tern_hist_observe(&w->delivery, now > m->born_ns ? now - m->born_ns : 0);
                        deliver_local(w, lr, m->data, m->len);
                }
                chat_msg_put(m);
        }
}

static void inbox_task(tern_loop *loop, void *arg)
{
        (void)loop;
        struct chat_worker *w = arg;
        chat_inbox_drain(w);
        chat_fanout_settle(w);
        chat_grace_release();
}

int chat_broadcast(struct chat_worker *w, const struct chat_member *from, struct chat_room *room,
                   const char *data, size_t len)
{
        struct chat_server *cs = w->cs;
        /* What other workers already handed us goes out before our own line:
         * a line sent after its sender saw an earlier one (its own echo
         * included) reaches this worker's members after it, as it does on
         * the other workers, where both queue in order. */
        struct chat_lroom *lr = chat_lroom_find(w, room->id);
        if (lr) {
                chat_inbox_drain(w);
                if (from && chat_member_gone(from))
                        return 0; /* the drain found it too slow */
        }
        uint8_t targets[256];
        int n = 0;
        /* A worker whose count is zero now has no member that could have
         * been in the room when this message was sent (docs/chat.md). */
        for (int i = 0; i < cs->nworkers; i++)
                if (i != w->index && __atomic_load_n(&room->count[i], __ATOMIC_SEQ_CST))
                        targets[n++] = (uint8_t)i;
        if (!n) {
                if (lr)
                        deliver_local(w, lr, data, len);
                return 0;
        }
        struct chat_msg *m = chat_msg_new(cs, room->id, data, len, (uint32_t)n + 1);
        if (!m)
                return -ENOMEM;
        bool over = false;
        for (int i = 0; i < n; i++)
                over |= chat_inbox_push(&cs->workers[targets[i]], m);
        /* Local members last: by the time the sender sees its own line,
         * every other worker has the message queued. */
        if (lr)
                deliver_local(w, lr, m->data, m->len);
        chat_msg_put(m);
        return over ? 1 : 0;
}

/* ---- set-up ---- */

int chat_fanout_init(struct chat_worker *w, void (*drop_slow)(struct chat_member *m))
{
        w->ring = inbox_task;
        w->drop_slow = drop_slow;
        w->lroom_mask = 15;
        w->lrooms = calloc(w->lroom_mask + 1, sizeof(*w->lrooms));
        return w->lrooms ? 0 : -ENOMEM;
}

void chat_fanout_destroy(struct chat_worker *w)
{
        if (!w->lrooms)
                return;
        /* Every client closed before the workers stopped, so these are empty;
         * free them anyway rather than leak on a path we did not foresee. */
        for (uint32_t i = 0; i <= w->lroom_mask; i++) {
                while (w->lrooms[i]) {
                        struct chat_lroom *lr = w->lrooms[i];
                        w->lrooms[i] = lr->next;
                        free(lr);
                }
        }
        free(w->lrooms);
        w->lrooms = NULL;
}
