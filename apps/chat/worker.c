/*
 * Layer 2 (chat.h lists the layers; includes base.h only): workers, room
 * messages and inboxes.
 *
 * A room message is encoded once by the worker that read it, and handed to
 * each other worker that has members in the room as one reference-counted,
 * immutable struct chat_msg appended to that worker's inbox (a wait-free
 * queue). So a message costs one allocation and one enqueue per worker, not
 * per recipient, and nothing on the path takes a lock.
 *
 * An inbox rings its owner through tern_loop_post() only when it goes from
 * empty to non-empty; the owner drains everything queued behind the ring.
 * The inbox exists (rather than one loop task per message) so that a worker
 * can deliver, on demand, everything handed to it so far (fanout.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

/* ---- messages ---- */

struct chat_msg *chat_msg_new(const struct chat_server *cs, uint64_t room_id, const char *data,
                              size_t len, uint32_t refs)
{
        size_t nodes = (size_t)cs->nworkers * sizeof(struct cds_wfcq_node);
        struct chat_msg *m = malloc(sizeof(*m) + nodes + len);
        if (!m)
                return NULL;
        m->refs = refs;
        m->len = (uint32_t)len;
        m->room_id = room_id;
        m->born_ns = tern_now_ns();
        m->data = (char *)&m->node[cs->nworkers];
        memcpy(m->data, data, len);
        chat_live_add(CHAT_LIVE_MSGS, 1);
        return m;
}

void chat_msg_put(struct chat_msg *m)
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

/* ---- inboxes ---- */

/* What a queued message holds of its worker's memory, for the bound. */
static long inbox_cost(const struct chat_msg *m)
{
        return (long)(sizeof(*m) + m->len);
}

bool chat_inbox_push(struct chat_worker *to, struct chat_msg *m)
{
        long queued = __atomic_add_fetch(&to->inbox_bytes, inbox_cost(m), __ATOMIC_RELAXED);
        size_t peak = __atomic_load_n(&to->peak_inbox, __ATOMIC_RELAXED);
        while ((size_t)queued > peak &&
               !__atomic_compare_exchange_n(&to->peak_inbox, &peak, (size_t)queued, true,
                                            __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                ;
        cds_wfcq_node_init(&m->node[to->index]);
        CHAT_HB_RELEASE(m);
        bool over = (size_t)queued > to->cs->opts.max_inbox;
        if (cds_wfcq_enqueue(&to->inbox_head, &to->inbox_tail, &m->node[to->index]))
                return over; /* not empty before: a ring is already on its way */
        int r = tern_loop_post(to->loop, to->ring, to);
        /* -ESHUTDOWN: that worker has stopped; chat_worker_destroy() frees
         * what stays queued. */
        if (r && r != -ESHUTDOWN)
                tern_error("tern-chat: cannot wake worker %d: %s", to->index, tern_strerror(r));
        return over;
}

bool chat_inboxes_drained(const struct chat_server *cs, const struct chat_worker *self)
{
        long low = (long)(cs->opts.max_inbox / 2);
        for (int i = 0; i < cs->nworkers; i++)
                if (&cs->workers[i] != self &&
                    __atomic_load_n(&cs->workers[i].inbox_bytes, __ATOMIC_RELAXED) > low)
                        return false;
        return true;
}

void chat_inbox_take(struct chat_worker *w, struct __cds_wfcq_head *head,
                     struct cds_wfcq_tail *tail)
{
        __cds_wfcq_splice_blocking(head, tail, &w->inbox_head, &w->inbox_tail);
}

struct chat_msg *chat_inbox_pop(struct chat_worker *w, struct __cds_wfcq_head *head,
                                struct cds_wfcq_tail *tail)
{
        struct cds_wfcq_node *n = __cds_wfcq_dequeue_blocking(head, tail);
        if (!n)
                return NULL;
        struct chat_msg *m = msg_of_node(n, w->index);
        CHAT_HB_ACQUIRE(m);
        __atomic_sub_fetch(&w->inbox_bytes, inbox_cost(m), __ATOMIC_RELAXED);
        return m;
}

/* ---- workers ---- */

int chat_worker_init(struct chat_worker *w, struct chat_server *cs, int index)
{
        __cds_wfcq_init(&w->inbox_head, &w->inbox_tail);
        w->cs = cs;
        w->index = index;
        w->loop = tern_server_loop(cs->srv, index);
        CDS_INIT_LIST_HEAD(&w->slow);
        CDS_INIT_LIST_HEAD(&w->throttled);
        w->scratch = malloc(cs->scratch_cap);
        return w->scratch ? 0 : -ENOMEM;
}

struct chat_worker *chat_worker_of(tern_conn *c)
{
        struct chat_server *cs = tern_server_user(tern_conn_server(c));
        return &cs->workers[tern_loop_index(tern_conn_loop(c))];
}

void chat_worker_note_queued(struct chat_worker *w, size_t queued)
{
        if (queued > w->peak_queued)
                __atomic_store_n(&w->peak_queued, queued, __ATOMIC_RELAXED);
}

void chat_worker_destroy(struct chat_worker *w)
{
        if (!w->cs)
                return; /* never initialised */
        struct cds_wfcq_node *n;
        while ((n = __cds_wfcq_dequeue_blocking(&w->inbox_head, &w->inbox_tail)))
                chat_msg_put(msg_of_node(n, w->index));
        free(w->scratch);
        w->scratch = NULL;
        w->cs = NULL;
}
