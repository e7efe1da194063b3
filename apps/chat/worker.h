/*
 * Layer 2 (chat.h lists the layers): one worker's state, the room messages
 * workers hand each other, and each worker's inbox. Includes base.h only;
 * the inbox rings its owner with a task the fan-out layer supplies.
 */
#ifndef CHAT_WORKER_H
#define CHAT_WORKER_H

#include "base.h"

struct chat_lroom;
struct chat_member;

/*
 * A room message (or notice): encoded once, immutable, reference-counted,
 * handed to each worker that has members in the room. node[i] links it into
 * worker i's inbox, so handing it to N workers allocates nothing more.
 */
struct chat_msg {
        uint32_t refs; /* atomic */
        uint32_t len;
        uint64_t room_id;
        uint64_t born_ns; /* tern_now_ns() when encoded: delivery latency */
        char *data;       /* points past node[] */
        struct cds_wfcq_node node[];
};

struct chat_worker {
        /* Any thread: producers append to the tail. */
        struct __cds_wfcq_head inbox_head;
        struct cds_wfcq_tail inbox_tail __attribute__((aligned(64)));
        long inbox_bytes;  /* atomic: queued for this worker, not yet taken */
        size_t peak_inbox; /* atomic: the most inbox_bytes ever was */
        /* This worker's thread only. */
        struct chat_server *cs __attribute__((aligned(64)));
        tern_loop *loop;
        int index;
        tern_task_cb ring; /* posted when the inbox goes from empty to not */
        /* The fan-out's (fanout.c): room id -> local members, and the
         * members marked too slow during a walk, dropped after it. */
        struct chat_lroom **lrooms;
        uint32_t lroom_mask;
        uint32_t nlrooms;
        struct cds_list_head slow;
        void (*drop_slow)(struct chat_member *m);
        /* The client layer's: speakers paused because another worker's
         * inbox is full, and the timer that resumes them once it drained. */
        struct cds_list_head throttled;
        struct tern_timer resume;
        uint64_t throttles;             /* atomic (relaxed): speakers paused so far */
        uint64_t flood_dropped;         /* atomic (relaxed): lines dropped by flood control */
        uint64_t flood_kicked;          /* atomic (relaxed): clients disconnected for flooding */
        char *scratch;                  /* one encoded line; top-level handlers only */
        struct chat_cluster_link *link; /* cluster.c's, or NULL without --cluster */
        size_t peak_queued; /* atomic (relaxed): most output a client ever had pending */
        /* Counters for the admin endpoint's /metrics: written by this
         * worker only (relaxed stores, no read-modify-write), read by
         * whichever worker serves the scrape. */
        uint64_t said;       /* lines clients said into a room */
        uint64_t delivered;  /* lines queued to members' connections */
        uint64_t slow_drops; /* members dropped as too slow */
        /* From a message's encoding on another worker to its delivery here
         * (this worker writes, a scrape reads: tern_hist_read). */
        struct tern_hist delivery;
};

/* Adds one to a counter of @w's own (single writer), visible to scrapes. */
static inline void chat_worker_count(uint64_t *counter)
{
        __atomic_store_n(counter, *counter + 1, __ATOMIC_RELAXED);
}

/* [any, before start] Returns 0 or -ENOMEM. */
int chat_worker_init(struct chat_worker *w, struct chat_server *cs, int index);
/* Drops whatever is still queued (after the workers stopped) and frees. */
void chat_worker_destroy(struct chat_worker *w);
struct chat_worker *chat_worker_of(tern_conn *c);
/* Records @queued bytes pending for one client (chat_server_peak_queued). */
void chat_worker_note_queued(struct chat_worker *w, size_t queued);

/* A message for @room_id holding a copy of @len bytes at @data, with @refs
 * references. Returns NULL when out of memory. [any] */
struct chat_msg *chat_msg_new(const struct chat_server *cs, uint64_t room_id, const char *data,
                              size_t len, uint32_t refs);
void chat_msg_put(struct chat_msg *m); /* [any] */
/* Appends @m (one of its references) to @to's inbox, ringing @to if the
 * inbox was empty. Returns true if @to's inbox is now past max_inbox: the
 * caller should stop reading from whoever spoke. [any worker] */
bool chat_inbox_push(struct chat_worker *to, struct chat_msg *m);
/* True while every other worker's inbox is at or below half of max_inbox:
 * paused speakers may go on. [any worker] */
bool chat_inboxes_drained(const struct chat_server *cs, const struct chat_worker *self);
/* Moves everything queued in @w's inbox to the private queue (@head,
 * @tail), which the caller initialised; pops with chat_inbox_pop(). */
void chat_inbox_take(struct chat_worker *w, struct __cds_wfcq_head *head,
                     struct cds_wfcq_tail *tail);
struct chat_msg *chat_inbox_pop(struct chat_worker *w, struct __cds_wfcq_head *head,
                                struct cds_wfcq_tail *tail);
static inline bool chat_inbox_empty(struct chat_worker *w)
{
        return cds_wfcq_empty(&w->inbox_head, &w->inbox_tail);
}

#endif
