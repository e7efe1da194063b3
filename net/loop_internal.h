/*
 * Private: the loop and what the layers above it register with it.
 *
 * The loop knows nothing about connections, listeners, connectors or
 * servers. It owns epoll, the timer wheel, the mailbox, and a slot table of
 * I/O objects (struct tern__io) that each carry a kind: a const table of
 * what to do on an event, when taken off the ready list, for deferred
 * callbacks, at the drain, and to free. conn.c, watch.c and acceptor.c each
 * define a kind and register their objects; the loop calls through the
 * kind (redis ae's file procs, libuv's uv__io_t, muduo's Channel).
 *
 * It also keeps the lists that make "callbacks never re-enter" cheap: the
 * pending list (objects owed a callback, run from the loop's top level
 * after the current callback has returned, as libuv's closing phase) and
 * the closed list (freed at the end of the iteration, never during
 * dispatch), plus hooks where the layers above do batch work.
 */
#ifndef TERN_LOOP_INTERNAL_H
#define TERN_LOOP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_pr.h>
#include <urcu/wfcqueue.h>

#include "buf.h"
#include "loop.h"
#include "timer_internal.h"

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
#define TERN__MAX_EVENTS 256

/* A handle: loop index + 1 (top byte, never 0), slot (24 bits), generation. */
typedef uint64_t tern__handle_t;

struct tern__io;

/* What the loop does with an I/O object; every entry may be NULL but
 * on_events and on_free. All run on the loop's thread. */
struct tern__io_kind {
        const char *name;
        /* epoll reported @events for it. */
        void (*on_events)(struct tern__io *io, uint32_t events);
        /* Taken off the ready list (tern__io_ready). */
        void (*on_ready)(struct tern__io *io);
        /* Taken off the pending list (tern__io_defer): run what is owed. */
        void (*on_pending)(struct tern__io *io);
        /* The loop drains (@deadline false), or its drain deadline passed
         * (true): close gracefully, or now. */
        void (*on_drain)(struct tern__io *io, bool deadline);
        /* End of the iteration after tern__io_release(): free it. */
        void (*on_free)(struct tern__io *io);
        /* tern_loop_free() found it still registered: free it at once,
         * without callbacks (a watch the application left behind). */
        void (*on_destroy)(struct tern__io *io);
        /* The iteration ends: write what was batched (tern__io_flush_later). */
        void (*on_flush)(struct tern__io *io);
};

enum {
        TERN__IO_READY = 1u << 0,   /* on the ready list */
        TERN__IO_PENDING = 1u << 1, /* on the pending list */
        TERN__IO_DEAD = 1u << 2,    /* released: no events, on the closed list */
        TERN__IO_FLUSH = 1u << 3,   /* on the flush list */
        TERN__IO_POLLED = 1u << 4,  /* in the epoll set */
        TERN__IO_LATE = 1u << 5,    /* drained last: tern__io_set_late */
};

/* An I/O object, embedded first in its owner (conn, watch, listener). */
struct tern__io {
        const struct tern__io_kind *kind;
        struct tern_loop *loop;
        struct tern__io *next_pending; /* also the closed list, once dead */
        int fd;
        uint32_t slot;
        uint8_t state; /* TERN__IO_* */
};

/* A task in the mailbox; SEND-like tasks carry their bytes inline. */
struct tern__task;
/* An I/O task: @io is the live object behind the task's handle, or NULL if
 * the handle turned stale. The loop frees @t after it returns. */
typedef void (*tern__io_task_fn)(struct tern__io *io, struct tern__task *t);

struct tern__task {
        struct cds_wfcq_node node;
        tern__handle_t handle; /* 0: a loop task (loop_cb) */
        union {
                tern_task_cb loop_cb;
                tern__io_task_fn io_fn;
        };
        void (*data_fn)(void); /* an I/O task's own callback, for its io_fn */
        void *arg;
        size_t len;
        uint8_t data[];
};

/* A hook: batch work the layers above do at a point of every iteration. */
struct tern__hook {
        void (*fn)(struct tern__hook *h, struct tern_loop *l);
        struct tern__hook *next, **pprev;
};

enum tern__hook_point {
        TERN__HOOK_END_ITER, /* after the mailbox, before closed objects are freed */
        TERN__HOOK_DRAIN,    /* the drain begins, before every object's on_drain */
        TERN__HOOK_DRAINED,  /* the drain left only late objects (once) */
        TERN__HOOK_LATE,     /* the drain's last phase: late objects drain now */
        TERN__HOOK_DESTROY,  /* tern_loop_free(): free what was left behind */
        TERN__HOOK_POINTS,
};

/* Slot table entry: owner-thread only, so no atomics. */
struct tern__slot {
        struct tern__io *io; /* NULL when free */
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
        bool stop_req;   /* tern_loop_stop() */
        bool running;    /* inside tern_loop_run() (atomic) */
        bool ran;        /* tern_loop_run() was called */

        int epfd;
        int evfd;
        int index;
        struct tern_loop_opts opts;
        void *owner; /* the server whose worker this is, or NULL */

        struct tern__wheel wheel;
        uint64_t now;

        struct tern__slot *slots;
        uint32_t nslots;
        uint32_t free_slot; /* head of the free list, UINT32_MAX if none */
        uint32_t nlive;     /* objects the drain waits for (connections) */
        uint32_t nheld;     /* ... and until its deadline only (watches) */
        bool drain_expired; /* the drain deadline has passed */
        uint32_t nlate;     /* live objects marked late (tern__io_set_late) */
        bool drained;       /* only late ones left: TERN__HOOK_DRAINED has run */
        bool late_gated;    /* the last phase waits for tern__loop_open_late() */
        bool late_open;     /* atomic: ... which has been called */
        bool late_phase;    /* the drain reached them: TERN__HOOK_LATE has run */

        /* Served without waiting for an edge: an array, not a list through
         * the objects, to keep an idle connection small. */
        struct tern__io **ready;
        uint32_t nready, ready_cap;
        struct tern__io **serving; /* the ready array taken this iteration */
        uint32_t serving_cap;
        bool ready_lost;                /* out of memory for the array: scan the slots */
        struct tern__io *pending;       /* owed a callback from the top level */
        struct tern__io **pending_tail; /* FIFO: reported in the order owed */
        struct tern__io *closed;        /* freed at the end of the iteration */
        struct tern__io *current;       /* the object being dispatched, or NULL */
        struct tern__io **flush;        /* written at the end of the iteration */
        uint32_t nflush, flush_cap;
        struct tern__hook *hooks[TERN__HOOK_POINTS];

        uint8_t *spill;          /* read buffer lent to connections (conn.c) */
        struct tern_buf scratch; /* frame encoding, reused; see send_frame */
        bool scratch_busy;
        bool draining;
        struct tern_timer drain_timer;
        struct tern__counters stats;
        struct tern_hist iter_hist;  /* single writer: tern__hist_observe */
        struct tern_hist delay_hist; /* ... */
};

static inline void tern__stat_add(struct tern_loop *l, size_t idx, uint64_t n)
{
        ck_pr_store_64(&l->stats.v[idx], l->stats.v[idx] + n);
}

/* The histograms' bucket bounds (loop.h, tern_hist_bound_ns). */
extern const uint64_t tern__hist_bounds_ns[TERN_HIST_BOUNDS];

/* The loop's thread only: plain stores the readers load without tearing,
 * no read-modify-write shared with anyone (tools/bench/micro/metrics_bench.c
 * times it). */
static inline void tern__hist_observe(struct tern_hist *h, uint64_t ns)
{
        int i = 0;
        while (i < TERN_HIST_BOUNDS && ns > tern__hist_bounds_ns[i])
                i++;
        ck_pr_store_64(&h->buckets[i], h->buckets[i] + 1);
        ck_pr_store_64(&h->sum_ns, h->sum_ns + ns);
}

static inline void tern__stat_sub(struct tern_loop *l, size_t idx, uint64_t n)
{
        ck_pr_store_64(&l->stats.v[idx], l->stats.v[idx] - n);
}

/* Adds @src's counters to @dst (any thread). */
void tern__counters_add(struct tern_stats *dst, const struct tern__counters *src);

/* A server's worker: tern_loop_new() with an index and an owner. */
struct tern_loop *tern__loop_new(const struct tern_loop_opts *o, int index, void *owner);
/* Wakes the loop's epoll_wait. Async-signal-safe. */
void tern__loop_wake(struct tern_loop *l);
/* Posts a prepared task. Returns 0 or -ESHUTDOWN (task not taken). */
int tern__loop_enqueue(struct tern_loop *l, struct tern__task *t);
/* Posts an I/O task for handle @h: @fn(io or NULL, t) runs on @l. @t is
 * the caller's allocation (with t->arg, t->len, t->data filled); freed
 * here on failure. Returns 0, -ESHUTDOWN. */
int tern__loop_post_io(struct tern_loop *l, tern__handle_t h, tern__io_task_fn fn,
                       struct tern__task *t);

/* Hooks run in the order added. A hook may remove itself while it runs. */
void tern__hook_add(struct tern_loop *l, enum tern__hook_point p, struct tern__hook *h,
                    void (*fn)(struct tern__hook *h, struct tern_loop *l));
void tern__hook_del(struct tern__hook *h);

/*
 * Registers @io (kind, loop and fd set by the caller) in the slot table and
 * epoll set with @events; data carries its handle, so a stale event never
 * reaches freed memory. @events 0: a slot and a handle, but no place in the
 * epoll set (which would still report hang-ups and errors) until
 * tern__io_modify() asks for something. Returns 0 or -errno (nothing
 * registered).
 */
int tern__io_register(struct tern__io *io, uint32_t events);
/* Changes the epoll interest of @io (0: out of the epoll set). Returns 0 or
 * -errno. */
int tern__io_modify(struct tern__io *io, uint32_t events);
/* @io's handle; valid until tern__io_release(). */
static inline tern__handle_t tern__io_handle(const struct tern__io *io)
{
        return ((uint64_t)(io->loop->index + 1) << 56) | ((uint64_t)io->slot << 32) |
               io->loop->slots[io->slot].gen;
}
/*
 * Unregisters @io: its handle goes stale and its events are dropped; the
 * kind's on_free runs at the end of the iteration. @unregister: remove the
 * fd from epoll (pass false when the fd is closed right after and shares
 * its file with nobody, to save the syscall). Does not close the fd.
 */
void tern__io_release(struct tern__io *io, bool unregister);
/*
 * Drains @io last: the drain's first phase leaves it alone (no on_drain),
 * and only once every other object the drain waits for has gone (or the
 * deadline passed) does TERN__HOOK_LATE run and @io get its on_drain. An
 * admin connection answers "draining" probes that way while the data
 * connections drain. Call once, right after tern__io_register().
 */
static inline void tern__io_set_late(struct tern__io *io)
{
        if (!(io->state & TERN__IO_LATE)) {
                io->state |= TERN__IO_LATE;
                io->loop->nlate++;
        }
}
/*
 * Lets a gated loop (late_gated, set before it runs) begin its drain's last
 * phase once it has drained everything else: the acceptor opens every
 * worker's gate when all of them got there, so that a late connection on
 * an idle worker serves until the whole server has drained. Any thread;
 * async-signal-safe.
 */
void tern__loop_open_late(struct tern_loop *l);
/* Serve @io again next iteration without waiting for an edge. */
void tern__io_ready(struct tern__io *io);
/* @io is owed a callback: on_pending runs from the loop's top level, after
 * whatever callback is running now has returned. */
static inline void tern__io_defer(struct tern__io *io)
{
        struct tern_loop *l = io->loop;
        if (io->state & (TERN__IO_PENDING | TERN__IO_DEAD))
                return;
        io->state |= TERN__IO_PENDING;
        io->next_pending = NULL;
        *l->pending_tail = io;
        l->pending_tail = &io->next_pending;
}
/*
 * @io has output batched for the end of the iteration: its on_flush runs
 * then, once, however often this is called. Returns false (nothing
 * recorded) without memory for the list: then write now.
 */
bool tern__io_flush_later(struct tern__io *io);

/* Objects the drain waits for: the loop finishes once none is left. */
static inline void tern__loop_ref(struct tern_loop *l)
{
        l->nlive++;
}
static inline void tern__loop_unref(struct tern_loop *l)
{
        l->nlive--;
}
/* Objects the drain waits for until its deadline at most (the loop cannot
 * close them: watches, which their owners free). */
static inline void tern__loop_hold(struct tern_loop *l)
{
        l->nheld++;
}
static inline void tern__loop_unhold(struct tern_loop *l)
{
        l->nheld--;
}

/* The live object behind @h on @l, or NULL if the handle is stale. Inline:
 * the loop resolves every epoll event through it. */
static inline struct tern__io *tern__slot_lookup(const struct tern_loop *l, tern__handle_t h)
{
        uint32_t i = (uint32_t)(h >> 32) & 0xffffff;
        if (i >= l->nslots)
                return NULL;
        const struct tern__slot *s = &l->slots[i];
        if (!s->io || s->gen != (uint32_t)h)
                return NULL;
        return s->io;
}

/* Loop index + 1 of a handle's owner, minus one: -1 for no handle. */
static inline int tern__handle_index(tern__handle_t h)
{
        return (int)(h >> 56) - 1;
}

/* tern_loop_timer_start/stop for the layers above, which run on the loop's
 * thread by construction (no thread check); arm returns 0 or -EBUSY. */
int tern__loop_timer_arm(struct tern_loop *l, struct tern_timer *t, uint64_t after_ms,
                         uint64_t repeat_ms);
void tern__loop_timer_cancel(struct tern_loop *l, struct tern_timer *t);

#endif
