/*
 * Fan-out: a room message is encoded once by the worker that read it, and
 * handed to each other worker that has members in the room as one
 * reference-counted, immutable struct chat_msg appended to that worker's
 * inbox (a wait-free queue). Each worker writes it to its own members,
 * straight from the message's bytes. So a message costs one allocation and
 * one enqueue per worker, not per recipient, and nothing on the path takes
 * a lock.
 *
 * An inbox rings its owner through tern_loop_post() only when it goes from
 * empty to non-empty; the owner drains everything queued behind the ring.
 * The inbox exists (rather than one loop task per message) so that a worker
 * can deliver, on demand, everything handed to it so far: it does so before
 * any client of its changes rooms, which is what makes a room move exact
 * (docs/chat.md).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

/* ---- messages ---- */

static struct chat_msg *msg_new(const struct chat_server *cs, uint64_t room_id, const char *data,
                                size_t len, uint32_t refs)
{
        size_t nodes = (size_t)cs->nworkers * sizeof(struct cds_wfcq_node);
        struct chat_msg *m = malloc(sizeof(*m) + nodes + len);
        if (!m)
                return NULL;
        m->refs = refs;
        m->len = (uint32_t)len;
        m->room_id = room_id;
        m->data = (char *)&m->node[cs->nworkers];
        memcpy(m->data, data, len);
        chat_live_add(CHAT_LIVE_MSGS, 1);
        return m;
}

static void msg_put(struct chat_msg *m)
{
        if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL))
                return;
        free(m);
        chat_live_add(CHAT_LIVE_MSGS, -1);
}

static struct chat_msg *msg_of_node(struct cds_wfcq_node *n, int worker)
{
        return (struct chat_msg *)((char *)(n - worker) - offsetof(struct chat_msg, node));
}

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

void chat_lroom_add(struct chat_worker *w, struct chat_lroom *lr, struct chat_client *cl)
{
        cds_list_add_tail(&cl->member, &lr->members);
        lr->n++;
        cl->lroom = lr;
}

void chat_lroom_detach(struct chat_worker *w, struct chat_client *cl)
{
        struct chat_lroom *lr = cl->lroom;
        if (!lr)
                return;
        cds_list_del_init(&cl->member);
        cl->lroom = NULL;
        /* A delivery walking this list frees it when it is done. */
        if (--lr->n == 0 && lr->pins == 0)
                lroom_free(w, lr);
}

/* ---- delivery ---- */

/*
 * Writes @data to every local member of room @id. A send may drop the
 * member it writes to (too slow, or a socket error): that member unlinks
 * itself, which the _safe walk tolerates, and its "left" notice is queued
 * (w->busy) rather than delivered into the list being walked. Nothing
 * else can change the list meanwhile.
 */
static void deliver_local(struct chat_worker *w, uint64_t id, const char *data, size_t len)
{
        struct chat_lroom *lr = chat_lroom_find(w, id);
        if (!lr)
                return;
        struct chat_client *cl, *tmp;
        lr->pins++;
        w->busy++;
        cds_list_for_each_entry_safe(cl, tmp, &lr->members, member) chat_send(cl, data, len);
        w->busy--;
        if (--lr->pins == 0 && lr->n == 0)
                lroom_free(w, lr);
}

static void inbox_task(tern_loop *loop, void *arg)
{
        struct chat_worker *w = arg;
        chat_enter(w);
        chat_inbox_drain(w);
        chat_exit(w);
}

static void inbox_push(struct chat_worker *to, struct chat_msg *m)
{
        cds_wfcq_node_init(&m->node[to->index]);
        CHAT_HB_RELEASE(m);
        if (cds_wfcq_enqueue(&to->inbox_head, &to->inbox_tail, &m->node[to->index]))
                return; /* not empty before: a ring is already on its way */
        int r = tern_loop_post(to->loop, inbox_task, to);
        /* -ESHUTDOWN: that worker has stopped; chat_worker_destroy() frees
         * what stays queued. */
        if (r && r != -ESHUTDOWN)
                tern_error("tern-chat: cannot wake worker %d: %s", to->index, tern_strerror(r));
}

void chat_inbox_drain(struct chat_worker *w)
{
        if (w->in_drain || cds_wfcq_empty(&w->inbox_head, &w->inbox_tail))
                return;
        w->in_drain = true;
        /* Splice once: what is queued while we deliver (our own deferred
         * notices) rang again and waits for the next drain. */
        struct __cds_wfcq_head head;
        struct cds_wfcq_tail tail;
        __cds_wfcq_init(&head, &tail);
        __cds_wfcq_splice_blocking(&head, &tail, &w->inbox_head, &w->inbox_tail);
        struct cds_wfcq_node *n;
        while ((n = __cds_wfcq_dequeue_blocking(&head, &tail))) {
                struct chat_msg *m = msg_of_node(n, w->index);
                CHAT_HB_ACQUIRE(m);
                deliver_local(w, m->room_id, m->data, m->len);
                msg_put(m);
        }
        w->in_drain = false;
}

int chat_broadcast(struct chat_worker *w, const struct chat_client *from, struct chat_room *room,
                   const char *data, size_t len)
{
        struct chat_server *cs = w->cs;
        /* What other workers already handed us goes out before our own line:
         * a line sent after its sender saw an earlier one (its own echo
         * included) reaches this worker's members after it, as it does on
         * the other workers, where both queue in order. Not from inside a
         * delivery (busy): that one is deferred below anyway. */
        if (!w->busy && chat_lroom_find(w, room->id)) {
                chat_inbox_drain(w);
                if (from && from->departed)
                        return 0; /* the drain found it too slow */
        }
        uint8_t targets[256];
        int n = 0;
        /* A worker whose count is zero now has no member that could have
         * been in the room when this message was sent (docs/chat.md). */
        for (int i = 0; i < cs->nworkers; i++)
                if (i != w->index && __atomic_load_n(&room->count[i], __ATOMIC_SEQ_CST))
                        targets[n++] = (uint8_t)i;
        struct chat_lroom *lr = chat_lroom_find(w, room->id);
        bool defer = lr && w->busy;
        if (!n && !defer) {
                if (lr)
                        deliver_local(w, room->id, data, len);
                return 0;
        }
        struct chat_msg *m = msg_new(cs, room->id, data, len, (uint32_t)n + defer + 1);
        if (!m)
                return -ENOMEM;
        for (int i = 0; i < n; i++)
                inbox_push(&cs->workers[targets[i]], m);
        /* Local members last: by the time the sender sees its own line,
         * every other worker has the message queued. */
        if (defer)
                inbox_push(w, m);
        else if (lr)
                deliver_local(w, room->id, m->data, m->len);
        msg_put(m);
        return 0;
}

/* ---- workers ---- */

int chat_worker_init(struct chat_worker *w, struct chat_server *cs, int index)
{
        __cds_wfcq_init(&w->inbox_head, &w->inbox_tail);
        w->cs = cs;
        w->index = index;
        w->loop = tern_server_loop(cs->srv, index);
        w->lroom_mask = 15;
        w->lrooms = calloc(w->lroom_mask + 1, sizeof(*w->lrooms));
        w->scratch = malloc(cs->scratch_cap);
        if (!w->lrooms || !w->scratch) {
                free(w->lrooms);
                free(w->scratch);
                w->lrooms = NULL;
                w->scratch = NULL;
                return -ENOMEM;
        }
        return 0;
}

struct chat_worker *chat_worker_of(tern_conn *c)
{
        struct chat_server *cs = tern_server_user(tern_conn_server(c));
        return &cs->workers[tern_loop_index(tern_conn_loop(c))];
}

void chat_worker_destroy(struct chat_worker *w)
{
        if (!w->lrooms)
                return;
        struct cds_wfcq_node *n;
        while ((n = __cds_wfcq_dequeue_blocking(&w->inbox_head, &w->inbox_tail)))
                msg_put(msg_of_node(n, w->index));
        /* Every client closed before the workers stopped, so these are empty;
         * free them anyway rather than leak on a path we did not foresee. */
        for (uint32_t i = 0; i <= w->lroom_mask; i++) {
                while (w->lrooms[i]) {
                        struct chat_lroom *lr = w->lrooms[i];
                        w->lrooms[i] = lr->next;
                        free(lr);
                }
        }
        while (w->dead) {
                struct chat_client *cl = w->dead;
                w->dead = cl->next_dead;
                free(cl->pend);
                free(cl);
                chat_live_add(CHAT_LIVE_CLIENTS, -1);
        }
        free(w->lrooms);
        free(w->scratch);
        w->lrooms = NULL;
        w->scratch = NULL;
}
