/* Private: the worker loop, its mailbox and its connection slot table. */
#ifndef TERN_LOOP_INTERNAL_H
#define TERN_LOOP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ck_ring.h>
#include <urcu/wfcqueue.h>

#include "loop.h"
#include "server.h"
#include "buf.h"
#include "timer.h"

/*
 * ck_ring and wfcqueue publish through inline-asm fences that ThreadSanitizer
 * cannot see. In TSan builds we state the same happens-before edge the queue
 * really provides (producer's writes before enqueue -> consumer after
 * dequeue), so TSan checks everything else instead of flagging the queues.
 */
#ifdef TERN_TSAN
#include <sanitizer/tsan_interface.h>
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
#define TERN__HB_RELEASE(addr)    __tsan_release(addr)
#define TERN__HB_ACQUIRE(addr)    __tsan_acquire(addr)
#define TERN__TSAN_IGNORE_BEGIN() __tsan_ignore_thread_begin()
#define TERN__TSAN_IGNORE_END()   __tsan_ignore_thread_end()
#else
#define TERN__HB_RELEASE(addr)    ((void)(addr))
#define TERN__HB_ACQUIRE(addr)    ((void)(addr))
#define TERN__TSAN_IGNORE_BEGIN() ((void)0)
#define TERN__TSAN_IGNORE_END()   ((void)0)
#endif

#define TERN__SPILL_SIZE (64 * 1024)
#define TERN__RING_SIZE  4096 /* power of two; hand-off ring entries */
#define TERN__MAX_EVENTS 256

struct tern_conn;

enum tern__task_kind {
        TERN__TASK_LOOP,       /* cb(loop, arg) */
        TERN__TASK_CONN,       /* conn_cb(conn or NULL, arg) */
        TERN__TASK_CONN_SEND,  /* copy of bytes for a handle */
        TERN__TASK_CONN_CLOSE, /* graceful close of a handle */
        TERN__TASK_NEW_FD,     /* ring overflow: a new connection's fd */
};

/* One mailbox entry; SEND tasks carry their bytes inline. */
struct tern__task {
        struct cds_wfcq_node node;
        enum tern__task_kind kind;
        tern_handle handle;
        union {
                tern_task_cb loop_cb;
                tern_conn_task_cb conn_cb;
        };
        void *arg;
        int fd;
        size_t len;
        uint8_t data[];
};

/* Slot table entry: owner-thread only, so no atomics. */
struct tern__slot {
        struct tern_conn *conn; /* NULL when free */
        uint32_t gen;
        uint32_t next_free;
};

/*
 * Counters written only by the owning thread (ck_pr stores) and read by any
 * thread (ck_pr loads): no locks, no read-modify-write on the hot path.
 */
struct tern__counters {
        uint64_t v[sizeof(struct tern_stats) / sizeof(uint64_t)];
};
#define TERN__STAT(field) (offsetof(struct tern_stats, field) / sizeof(uint64_t))

struct tern_loop {
        /* Written by other threads: keep on its own cache line. */
        struct cds_wfcq_head mb_head;
        struct cds_wfcq_tail mb_tail;
        int mb_inflight; /* posters between "is it open?" and enqueue */
        bool mb_closed;  /* no more posts accepted */
        bool stop_req;   /* acceptor asks for a graceful drain */

        int epfd;
        int evfd;
        int index;
        pthread_t thread;
        struct tern_server *server;
        struct ck_ring ring; /* acceptor -> worker, single producer */
        struct ck_ring_buffer *ring_buf;

        struct tern_timer_wheel wheel;
        uint64_t now;

        struct tern__slot *slots;
        uint32_t nslots;
        uint32_t free_slot; /* head of the free list, UINT32_MAX if none */
        uint32_t nconns;

        struct tern_connector *connectors; /* client.c; freed with the loop */
        struct tern_conn *ready;           /* must be served without waiting for an edge */
        struct tern_conn *closed;          /* free at the end of the iteration */

        uint8_t *spill;
        struct tern_buf scratch; /* frame encoding, reused; see send_frame */
        bool scratch_busy;
        bool draining;
        struct tern_timer drain_timer;
        struct tern__counters stats;
};

static inline void tern__stat_add(struct tern_loop *l, size_t idx, uint64_t n)
{
        ck_pr_store_64(&l->stats.v[idx], l->stats.v[idx] + n);
}

static inline void tern__stat_sub(struct tern_loop *l, size_t idx, uint64_t n)
{
        ck_pr_store_64(&l->stats.v[idx], l->stats.v[idx] - n);
}

/* Acceptor -> worker hand-off of a new fd (single producer). */
static inline bool tern__ring_push(struct tern_loop *l, int fd)
{
        TERN__HB_RELEASE(&l->ring);
        TERN__TSAN_IGNORE_BEGIN(); /* the ring's slots are ordered by its fences */
        /* The ring holds void *: the fd travels as one, no allocation per accept. */
        bool ok = ck_ring_enqueue_spsc(&l->ring, l->ring_buf, (void *)(intptr_t)fd);
        TERN__TSAN_IGNORE_END();
        return ok;
}

/* Worker side of the hand-off (single consumer). */
static inline bool tern__ring_pop(struct tern_loop *l, int *fd)
{
        void *p;
        TERN__TSAN_IGNORE_BEGIN();
        bool ok = ck_ring_dequeue_spsc(&l->ring, l->ring_buf, &p);
        TERN__TSAN_IGNORE_END();
        if (ok) {
                TERN__HB_ACQUIRE(&l->ring);
                *fd = (int)(intptr_t)p;
        }
        return ok;
}

int tern__loop_init(struct tern_loop *l, struct tern_server *s, int index);
void tern__loop_destroy(struct tern_loop *l);
void *tern__loop_thread(void *arg);
/* Runs @l's loop on the calling thread until it has drained (tern_server_run). */
void tern__loop_run_here(struct tern_loop *l);
/* Wakes the loop's epoll_wait. Async-signal-safe. */
void tern__loop_wake(struct tern_loop *l);
/* Posts a prepared task. Returns 0 or -ESHUTDOWN (task not taken). */
int tern__loop_enqueue(struct tern_loop *l, struct tern__task *t);
/* Slot table: owner thread. */
int tern__slot_alloc(struct tern_loop *l, struct tern_conn *c, uint32_t *slot);
void tern__slot_free(struct tern_loop *l, uint32_t slot);

/* A handle: worker index + 1 (top byte, never 0), slot (24 bits), generation. */
static inline tern_handle tern__slot_handle(const struct tern_loop *l, uint32_t slot)
{
        return ((uint64_t)(l->index + 1) << 56) | ((uint64_t)slot << 32) | l->slots[slot].gen;
}

/* The live connection behind @h, or NULL if the handle is stale. Inline:
 * the loop resolves every epoll event through it. */
static inline struct tern_conn *tern__slot_lookup(struct tern_loop *l, tern_handle h)
{
        uint32_t i = (uint32_t)(h >> 32) & 0xffffff;
        if (i >= l->nslots)
                return NULL;
        struct tern__slot *s = &l->slots[i];
        if (!s->conn || s->gen != (uint32_t)h)
                return NULL;
        return s->conn;
}

/*
 * What a worker's epoll event carries (data.u64): a connection's handle
 * (top byte = worker index + 1, never 0), or one of these, whose top byte
 * is 0.
 */
#define TERN__TAG_EVENTFD     0u                   /* the loop's wake-up eventfd */
#define TERN__TAG_LISTENER(i) (1u + (uint64_t)(i)) /* listener i, inline acceptor */

static inline int tern__handle_worker(tern_handle h)
{
        return (int)(h >> 56) - 1;
}

#endif
