/*
 * The loop. One iteration reads top to bottom:
 *
 *   1. take the ready list        (objects that used their read budget and
 *                                  get no new edge)
 *   2. compute the timeout        (0 if something is ready, else the wheel's)
 *   3. RCU-offline, epoll_wait, RCU-online
 *   4. dispatch                   (events, then the ready list)
 *   5. expire timers
 *   6. drain the mailbox          (cross-thread tasks)
 *   7. end-of-iteration hooks     (the acceptor's hand-off ring, ...)
 *   8. write what was batched     (one write per connection for all it was
 *                                  sent this iteration by others), then free
 *                                  what was closed (never during dispatch)
 *   9. RCU quiescent state
 *
 * After every step that runs callbacks, the pending list: callbacks owed
 * by calls the application made inside the step (a close, a water mark, a
 * write completion) run here, at the top level, never inside those calls.
 *
 * This file includes nothing from the layers above: they register objects
 * of a kind (loop_internal.h) and hooks.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <urcu-qsbr.h>

#include "clock.h"
#include "fault_internal.h"
#include "live_internal.h"
#include "log.h"
#include "loop_internal.h"

#define TAG_EVENTFD 0u /* the wake-up eventfd; a handle's top byte is never 0 */

static __thread struct tern_loop *current_loop;

tern_loop *tern_loop_current(void)
{
        return current_loop;
}

int tern_loop_index(const tern_loop *l)
{
        return l->index;
}

void *tern_loop_user(const tern_loop *l)
{
        return l->opts.user;
}

bool tern_loop_draining(const tern_loop *l)
{
        return l->draining;
}

uint64_t tern_loop_now(const tern_loop *l)
{
        return l->now;
}

void tern__counters_add(struct tern_stats *dst, const struct tern__counters *src)
{
        uint64_t *d = (uint64_t *)dst;
        for (size_t i = 0; i < sizeof(*dst) / sizeof(uint64_t); i++)
                d[i] += ck_pr_load_64((uint64_t *)&src->v[i]);
}

void tern_loop_stats(const tern_loop *l, struct tern_stats *out)
{
        memset(out, 0, sizeof(*out));
        tern__counters_add(out, &l->stats);
}

/* ---- histograms ---- */

/* 1-2-5 steps, 1 us to 1 s: fine enough where a loop iteration lives. */
const uint64_t tern__hist_bounds_ns[TERN_HIST_BOUNDS] = {
    1000,    2000,    5000,     10000,    50000,     100000,    500000,
    1000000, 5000000, 10000000, 50000000, 100000000, 500000000, 1000000000,
};

uint64_t tern_hist_bound_ns(int i)
{
        return i >= 0 && i < TERN_HIST_BOUNDS ? tern__hist_bounds_ns[i] : UINT64_MAX;
}

static void hist_load(struct tern_hist *dst, const struct tern_hist *src)
{
        dst->sum_ns = ck_pr_load_64(&src->sum_ns);
        for (int i = 0; i <= TERN_HIST_BOUNDS; i++)
                dst->buckets[i] = ck_pr_load_64(&src->buckets[i]);
}

void tern_hist_observe(struct tern_hist *h, uint64_t ns)
{
        tern__hist_observe(h, ns);
}

void tern_hist_read(struct tern_hist *dst, const struct tern_hist *src)
{
        hist_load(dst, src);
}

void tern_loop_histograms(const tern_loop *l, struct tern_hist *iter, struct tern_hist *delay)
{
        if (iter)
                hist_load(iter, &l->iter_hist);
        if (delay)
                hist_load(delay, &l->delay_hist);
}

/* ---- timers ---- */

int tern__loop_timer_arm(struct tern_loop *l, struct tern_timer *t, uint64_t after_ms,
                         uint64_t repeat_ms)
{
        /* +1: the clock is truncated to whole ms, so "now" may be up to 1 ms
         * behind real time; rounding up keeps the never-early promise. */
        return tern__timer_arm(&l->wheel, t, tern_now_ms() + after_ms + 1, repeat_ms);
}

void tern__loop_timer_cancel(struct tern_loop *l, struct tern_timer *t)
{
        tern__timer_cancel(&l->wheel, t);
}

/* [loop]: the loop's own thread while it runs, anyone while it does not.
 * A wrong thread would corrupt the wheel; refuse instead. */
static bool wrong_thread(const struct tern_loop *l)
{
        return current_loop != l && __atomic_load_n(&l->running, __ATOMIC_ACQUIRE);
}

int tern_loop_timer_start(tern_loop *l, struct tern_timer *t, uint64_t after_ms, uint64_t repeat_ms)
{
        if (wrong_thread(l))
                return -EPERM;
        return tern__loop_timer_arm(l, t, after_ms, repeat_ms);
}

int tern_loop_timer_stop(tern_loop *l, struct tern_timer *t)
{
        if (wrong_thread(l))
                return -EPERM;
        return tern__timer_cancel(&l->wheel, t);
}

/* ---- the mailbox ---- */

void tern__loop_wake(struct tern_loop *l)
{
        uint64_t one = 1;
        ssize_t r = write(l->evfd, &one, sizeof(one));
        (void)r; /* EAGAIN means the counter is already non-zero: awake enough */
}

int tern__loop_enqueue(struct tern_loop *l, struct tern__task *t)
{
        /* Dekker-style handshake with close_mailbox(): either we see
         * mb_closed, or the loop sees our in-flight mark and waits for us. */
        __atomic_fetch_add(&l->mb_inflight, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&l->mb_closed, __ATOMIC_SEQ_CST)) {
                __atomic_fetch_sub(&l->mb_inflight, 1, __ATOMIC_RELEASE);
                return -ESHUTDOWN;
        }
        cds_wfcq_node_init(&t->node);
        TERN__HB_RELEASE(t);
        /* One wake-up per empty -> non-empty transition is enough: the loop
         * splices the whole queue each time it drains. */
        if (!cds_wfcq_enqueue(&l->mb_head, &l->mb_tail, &t->node))
                tern__loop_wake(l);
        __atomic_fetch_sub(&l->mb_inflight, 1, __ATOMIC_RELEASE);
        return 0;
}

int tern_loop_post(tern_loop *l, tern_task_cb cb, void *arg)
{
        struct tern__task *t = TERN__MALLOC(sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->handle = 0;
        t->loop_cb = cb;
        t->arg = arg;
        int r = tern__loop_enqueue(l, t);
        if (r)
                free(t);
        return r;
}

int tern__loop_post_io(struct tern_loop *l, tern__handle_t h, tern__io_task_fn fn,
                       struct tern__task *t)
{
        t->handle = h;
        t->io_fn = fn;
        int r = tern__loop_enqueue(l, t);
        if (r)
                free(t);
        return r;
}

/* ---- hooks ---- */

void tern__hook_add(struct tern_loop *l, enum tern__hook_point p, struct tern__hook *h,
                    void (*fn)(struct tern__hook *h, struct tern_loop *l))
{
        struct tern__hook **pp = &l->hooks[p];
        while (*pp)
                pp = &(*pp)->next;
        h->fn = fn;
        h->next = NULL;
        h->pprev = pp;
        *pp = h;
}

void tern__hook_del(struct tern__hook *h)
{
        if (!h->pprev)
                return;
        *h->pprev = h->next;
        if (h->next)
                h->next->pprev = h->pprev;
        h->next = NULL;
        h->pprev = NULL;
}

static void run_hooks(struct tern_loop *l, enum tern__hook_point p)
{
        struct tern__hook *h = l->hooks[p];
        while (h) {
                struct tern__hook *next = h->next; /* h may remove itself */
                h->fn(h, l);
                h = next;
        }
}

/* ---- the slot table and I/O objects (owner thread only) ---- */

static int slot_alloc(struct tern_loop *l, struct tern__io *io)
{
        if (l->free_slot == UINT32_MAX) {
                uint32_t n = l->nslots ? l->nslots * 2 : 64;
                if (n > (1u << 24))
                        return -EMFILE;
                struct tern__slot *s = TERN__REALLOC(l->slots, n * sizeof(*s));
                if (!s)
                        return -ENOMEM;
                for (uint32_t i = l->nslots; i < n; i++) {
                        s[i].io = NULL;
                        s[i].gen = 1;
                        s[i].next_free = i + 1 < n ? i + 1 : UINT32_MAX;
                }
                l->slots = s;
                l->free_slot = l->nslots;
                l->nslots = n;
        }
        uint32_t i = l->free_slot;
        struct tern__slot *s = &l->slots[i];
        l->free_slot = s->next_free;
        s->io = io;
        io->slot = i;
        return 0;
}

static void slot_free(struct tern_loop *l, uint32_t i)
{
        struct tern__slot *s = &l->slots[i];
        s->io = NULL;
        /* A new generation makes every outstanding handle stale; 0 is skipped
         * so that no valid handle is ever 0 in its generation. */
        if (++s->gen == 0)
                s->gen = 1;
        s->next_free = l->free_slot;
        l->free_slot = i;
}

int tern__io_register(struct tern__io *io, uint32_t events)
{
        struct tern_loop *l = io->loop;
        io->state = 0;
        int r = slot_alloc(l, io);
        if (r < 0)
                return r;
        r = tern__io_modify(io, events);
        if (r < 0)
                slot_free(l, io->slot);
        return r;
}

int tern__io_modify(struct tern__io *io, uint32_t events)
{
        struct epoll_event ev = {.events = events, .data.u64 = tern__io_handle(io)};
        int op;
        if (!events) {
                if (!(io->state & TERN__IO_POLLED))
                        return 0;
                op = EPOLL_CTL_DEL;
        } else {
                op = io->state & TERN__IO_POLLED ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        }
        if (epoll_ctl(io->loop->epfd, op, io->fd, &ev) < 0)
                return -errno;
        if (events)
                io->state |= TERN__IO_POLLED;
        else
                io->state &= ~TERN__IO_POLLED;
        return 0;
}

void tern__io_release(struct tern__io *io, bool unregister)
{
        struct tern_loop *l = io->loop;
        if (io->state & TERN__IO_DEAD)
                return;
        if (unregister && (io->state & TERN__IO_POLLED))
                epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
        slot_free(l, io->slot);
        if (io->state & TERN__IO_LATE) {
                io->state &= ~TERN__IO_LATE;
                l->nlate--;
        }
        /* Off the pending list's duty: a dead object is owed nothing more. */
        io->state |= TERN__IO_DEAD;
        if (io->state & TERN__IO_PENDING) {
                struct tern__io **pp = &l->pending;
                while (*pp != io)
                        pp = &(*pp)->next_pending;
                *pp = io->next_pending;
                if (l->pending_tail == &io->next_pending)
                        l->pending_tail = pp;
                io->state &= ~TERN__IO_PENDING;
        }
        io->next_pending = l->closed;
        l->closed = io;
}

/* Appends @io to a growable array; false without memory. */
static bool push(struct tern__io ***a, uint32_t *n, uint32_t *cap, struct tern__io *io)
{
        if (*n == *cap) {
                uint32_t c = *cap ? *cap * 2 : 64;
                struct tern__io **g = TERN__REALLOC(*a, c * sizeof(*g));
                if (!g)
                        return false;
                *a = g;
                *cap = c;
        }
        (*a)[(*n)++] = io;
        return true;
}

void tern__io_ready(struct tern__io *io)
{
        struct tern_loop *l = io->loop;
        if (io->state & (TERN__IO_READY | TERN__IO_DEAD))
                return;
        io->state |= TERN__IO_READY;
        /* Without memory the flag alone still gets it served: next
         * iteration scans the slot table for it. */
        if (!push(&l->ready, &l->nready, &l->ready_cap, io))
                l->ready_lost = true;
}

bool tern__io_flush_later(struct tern__io *io)
{
        struct tern_loop *l = io->loop;
        if (io->state & TERN__IO_FLUSH)
                return true;
        if (!push(&l->flush, &l->nflush, &l->flush_cap, io))
                return false;
        io->state |= TERN__IO_FLUSH;
        return true;
}

/* ---- new / free ---- */

void tern_loop_opts_init(struct tern_loop_opts *o)
{
        memset(o, 0, sizeof(*o));
        o->drain_timeout_ms = 5000;
}

struct tern_loop *tern__loop_new(const struct tern_loop_opts *o, int index, void *owner)
{
        struct tern_loop *l = TERN__CALLOC(1, sizeof(*l));
        if (!l)
                return NULL;
        if (o)
                l->opts = *o;
        else
                tern_loop_opts_init(&l->opts);
        l->index = index;
        l->owner = owner;
        l->free_slot = UINT32_MAX;
        l->pending_tail = &l->pending;
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0)
                goto out_free_loop;
        l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (l->evfd < 0)
                goto out_close_epfd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = TAG_EVENTFD};
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0)
                goto out_close_evfd;
        l->spill = TERN__MALLOC(TERN__SPILL_SIZE);
        if (!l->spill) {
                errno = ENOMEM;
                goto out_close_evfd;
        }
        __cds_wfcq_init((struct __cds_wfcq_head *)&l->mb_head, &l->mb_tail);
        l->now = tern_now_ms();
        tern__wheel_init(&l->wheel, l->now);
        tern__live_add(TERN__LIVE_LOOPS, 1);
        return l;

out_close_evfd:
        close(l->evfd);
out_close_epfd : {
        int e = errno;
        close(l->epfd);
        errno = e;
}
out_free_loop : {
        int e = errno;
        free(l);
        errno = e;
        return NULL;
}
}

tern_loop *tern_loop_new(const struct tern_loop_opts *o)
{
        return tern__loop_new(o, 0, NULL);
}

static void run_pending(struct tern_loop *l);
static void free_closed(struct tern_loop *l);

void tern_loop_free(tern_loop *l)
{
        if (!l)
                return;
        /* What the application left behind: connectors first (their
         * connections close silently, never having opened or the loop
         * having finished), then whatever is still registered. */
        run_hooks(l, TERN__HOOK_DESTROY);
        run_pending(l);
        free_closed(l);
        for (uint32_t i = 0; i < l->nslots; i++) {
                struct tern__io *io = l->slots[i].io;
                if (io && io->kind->on_destroy) {
                        tern_warn("loop %d: a %s (fd %d) was still registered at tern_loop_free; "
                                  "freed",
                                  l->index, io->kind->name, io->fd);
                        tern__io_release(io, false);
                        io->kind->on_destroy(io);
                }
        }
        l->closed = NULL; /* on_destroy freed them */
        size_t left = tern__wheel_destroy(&l->wheel);
        if (left)
                tern_warn("loop %d: %zu timer(s) still armed at teardown", l->index, left);
        free(l->slots);
        free(l->flush);
        free(l->ready);
        free(l->serving);
        tern_buf_free(&l->scratch);
        free(l->spill);
        close(l->evfd);
        close(l->epfd);
        free(l);
        tern__live_add(TERN__LIVE_LOOPS, -1);
}

/* ---- the iteration's steps ---- */

static void run_pending(struct tern_loop *l)
{
        struct tern__io *io;
        while ((io = l->pending) != NULL) {
                l->pending = io->next_pending;
                if (!l->pending)
                        l->pending_tail = &l->pending;
                io->state &= ~TERN__IO_PENDING;
                io->kind->on_pending(io);
        }
}

static void serve_one(struct tern_loop *l, struct tern__io *io)
{
        io->state &= ~TERN__IO_READY;
        if (io->state & TERN__IO_DEAD)
                return;
        l->current = io;
        io->kind->on_ready(io);
        l->current = NULL;
        if (l->pending)
                run_pending(l);
}

/* What was ready when the iteration began; what becomes ready while it is
 * served waits for the next iteration (it lands in l->ready). */
static void serve_ready(struct tern_loop *l, uint32_t n, bool scan)
{
        for (uint32_t i = 0; i < n; i++)
                serve_one(l, l->serving[i]);
        if (!scan)
                return;
        /* The array could not grow: find the rest by their flag. */
        for (uint32_t i = 0; i < l->nslots; i++) {
                struct tern__io *io = l->slots[i].io;
                if (io && (io->state & TERN__IO_READY))
                        serve_one(l, io);
        }
}

/* Every registered object's on_drain (@deadline: the drain timed out, all
 * of them; else the late ones in the late phase, the others before it). */
static void drain_objects(struct tern_loop *l, bool deadline)
{
        for (uint32_t i = 0; i < l->nslots; i++) {
                struct tern__io *io = l->slots[i].io;
                bool late = io && (io->state & TERN__IO_LATE);
                if (!deadline && late != l->late_phase)
                        continue;
                if (io && io->kind->on_drain) {
                        io->kind->on_drain(io, deadline);
                        if (l->pending)
                                run_pending(l);
                }
        }
}

static void drain_timer_cb(struct tern_timer *t, void *arg)
{
        struct tern_loop *l = arg;
        tern_warn("loop %d: drain deadline (%u ms) passed with %u connection(s) open and %u "
                  "watch(es) not freed; closing the connections, leaving the watches",
                  l->index, l->opts.drain_timeout_ms, l->nlive, l->nheld);
        l->drain_expired = true;
        drain_objects(l, true);
}

static void begin_drain(struct tern_loop *l)
{
        l->draining = true;
        run_hooks(l, TERN__HOOK_DRAIN); /* listeners first, connectors */
        run_pending(l);
        drain_objects(l, false);
        if (l->nlive || l->nheld) {
                tern_timer_init(&l->drain_timer, drain_timer_cb, l);
                tern__loop_timer_arm(l, &l->drain_timer, l->opts.drain_timeout_ms, 0);
        }
}

void tern__loop_open_late(struct tern_loop *l)
{
        __atomic_store_n(&l->late_open, true, __ATOMIC_RELEASE);
        tern__loop_wake(l);
}

/* Only late objects are left (or the deadline passed and closed all): they
 * drain now, unless the gate still holds them (tern__loop_open_late). */
static bool late_due(struct tern_loop *l)
{
        if (!l->draining || l->late_phase || l->nlive > l->nlate || (l->nheld && !l->drain_expired))
                return false;
        if (!l->drained) {
                l->drained = true;
                run_hooks(l, TERN__HOOK_DRAINED);
                run_pending(l);
        }
        return !l->late_gated || l->drain_expired ||
               __atomic_load_n(&l->late_open, __ATOMIC_ACQUIRE);
}

static void begin_late(struct tern_loop *l)
{
        l->late_phase = true;
        run_hooks(l, TERN__HOOK_LATE); /* late listeners close */
        run_pending(l);
        if (l->nlate)
                drain_objects(l, l->drain_expired);
}

static void run_task(struct tern_loop *l, struct tern__task *t)
{
        if (!t->handle) {
                t->loop_cb(l, t->arg);
        } else {
                struct tern__io *io = tern__slot_lookup(l, t->handle);
                t->io_fn(io, t);
        }
        free(t);
}

static void drain_mailbox(struct tern_loop *l)
{
        if (cds_wfcq_empty(&l->mb_head, &l->mb_tail))
                return;
        /* Splice once, then run: tasks posted by the tasks themselves wait
         * for the next iteration instead of starving the loop. */
        struct __cds_wfcq_head head;
        struct cds_wfcq_tail tail;
        __cds_wfcq_init(&head, &tail);
        __cds_wfcq_splice_blocking(&head, &tail, &l->mb_head, &l->mb_tail);
        struct cds_wfcq_node *n;
        while ((n = __cds_wfcq_dequeue_blocking(&head, &tail))) {
                struct tern__task *t = caa_container_of(n, struct tern__task, node);
                TERN__HB_ACQUIRE(t);
                run_task(l, t);
                if (l->pending)
                        run_pending(l);
        }
}

/* The end of the iteration: what was batched goes out, one write per
 * object for everything it was sent during the iteration. */
static void run_flush(struct tern_loop *l)
{
        /* Callbacks owed by the writes (write-complete, a close) may send
         * again: those go out in the next pass, not after the next poll. */
        while (l->nflush) {
                for (uint32_t i = 0; i < l->nflush; i++) {
                        struct tern__io *io = l->flush[i];
                        io->state &= ~TERN__IO_FLUSH;
                        if (!(io->state & TERN__IO_DEAD))
                                io->kind->on_flush(io);
                }
                l->nflush = 0;
                run_pending(l);
        }
}

static void free_closed(struct tern_loop *l)
{
        if (!l->closed)
                return;
        /* A dead object may still sit in the ready array for the next
         * iteration: drop those first so nothing points at freed memory. */
        uint32_t k = 0;
        for (uint32_t i = 0; i < l->nready; i++)
                if (!(l->ready[i]->state & TERN__IO_DEAD))
                        l->ready[k++] = l->ready[i];
        l->nready = k;
        struct tern__io *io = l->closed;
        l->closed = NULL;
        while (io) {
                struct tern__io *next = io->next_pending;
                io->kind->on_free(io);
                io = next;
        }
}

static void read_eventfd(struct tern_loop *l)
{
        uint64_t v;
        ssize_t r = read(l->evfd, &v, sizeof(v));
        (void)r;
        tern__stat_add(l, TERN__STAT(wakeups), 1);
}

static void loop_iterate(struct tern_loop *l)
{
        struct epoll_event events[TERN__MAX_EVENTS];
        uint64_t woke_ns = 0; /* when epoll_wait last returned; 0 before the first */

        while (!(l->late_phase && l->nlive == 0 && (l->nheld == 0 || l->drain_expired))) {
                /* 1. deferred work: take the ready array (swap, no copy) */
                uint32_t nready = l->nready;
                bool scan = l->ready_lost;
                if (nready) {
                        struct tern__io **t = l->serving;
                        uint32_t c = l->serving_cap;
                        l->serving = l->ready;
                        l->serving_cap = l->ready_cap;
                        l->ready = t;
                        l->ready_cap = c;
                        l->nready = 0;
                }
                l->ready_lost = false;
                bool ready = nready || scan || l->nflush;

                /* 2. timeout (no wheel scan when nothing is armed); the
                 * clock read ends the previous iteration's busy time */
                uint64_t idle_ns = tern_now_ns();
                if (woke_ns) {
                        tern__hist_observe(&l->iter_hist, idle_ns - woke_ns);
                        l->now = idle_ns / 1000000;
                }
                int timeout = 0;
                if (!ready && !tern__wheel_count(&l->wheel)) {
                        timeout = -1;
                } else if (!ready) {
                        int64_t t = tern__wheel_timeout(&l->wheel, l->now);
                        timeout = t < 0 ? -1 : (t > INT_MAX ? INT_MAX : (int)t);
                }

                /* 3. wait, RCU-offline so writers never wait for a sleeper */
                rcu_thread_offline();
                int n = epoll_wait(l->epfd, events, TERN__MAX_EVENTS, timeout);
                rcu_thread_online();
                if (n < 0) {
                        if (errno != EINTR)
                                tern_error("loop %d: epoll_wait: %s", l->index, strerror(errno));
                        n = 0;
                }
                woke_ns = tern_now_ns();
                l->now = woke_ns / 1000000;

                /* 4. dispatch: NULL for an object released earlier in this
                 * batch, or for a stale registration (fork). The last
                 * event's wait for its callback is the batch's longest:
                 * one clock read per batch, none for a batch of one. */
                for (int i = 0; i < n; i++) {
                        uint64_t tag = events[i].data.u64;
                        if (i == n - 1)
                                tern__hist_observe(&l->delay_hist, i ? tern_now_ns() - woke_ns : 0);
                        if (tag == TAG_EVENTFD) {
                                read_eventfd(l);
                                continue;
                        }
                        struct tern__io *io = tern__slot_lookup(l, tag);
                        if (io) {
                                l->current = io;
                                io->kind->on_events(io, events[i].events);
                                l->current = NULL;
                                if (l->pending)
                                        run_pending(l);
                        }
                }
                if (ready)
                        serve_ready(l, nready, scan);

                /* 5. timers */
                if (tern__wheel_count(&l->wheel)) {
                        tern__wheel_expire(&l->wheel, l->now);
                        run_pending(l);
                }

                /* 6. mailbox, 7. hooks */
                drain_mailbox(l);
                run_hooks(l, TERN__HOOK_END_ITER);
                run_pending(l);
                if (!l->draining && __atomic_load_n(&l->stop_req, __ATOMIC_ACQUIRE))
                        begin_drain(l);

                /* 8. write what was batched, then free */
                if (l->nflush)
                        run_flush(l);
                free_closed(l);
                /* The drain's last phase, once only late objects are left:
                 * checked after the frees that may have made it due. */
                if (late_due(l)) {
                        begin_late(l);
                        run_flush(l);
                        free_closed(l);
                }

                /* 9. quiescent: this thread holds no RCU references now */
                rcu_quiescent_state();
                tern__stat_add(l, TERN__STAT(loop_iters), 1);
        }
        tern__timer_cancel(&l->wheel, &l->drain_timer);
}

static void close_mailbox(struct tern_loop *l)
{
        __atomic_store_n(&l->mb_closed, true, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&l->mb_inflight, __ATOMIC_SEQ_CST))
                sched_yield();
        drain_mailbox(l);
        run_hooks(l, TERN__HOOK_END_ITER);
        run_pending(l);
        run_flush(l);
        free_closed(l);
}

int tern_loop_run(tern_loop *l)
{
        if (__atomic_exchange_n(&l->ran, true, __ATOMIC_ACQ_REL))
                return -EALREADY;
        struct tern_loop *outer = current_loop;
        current_loop = l;
        __atomic_store_n(&l->running, true, __ATOMIC_RELEASE);
        rcu_register_thread();
        l->now = tern_now_ms();
        if (l->opts.on_start) {
                l->opts.on_start(l, l->opts.user);
                run_pending(l);
        }
        loop_iterate(l);
        if (l->opts.on_stop) {
                l->opts.on_stop(l, l->opts.user);
                run_pending(l);
        }
        close_mailbox(l);
        rcu_unregister_thread();
        __atomic_store_n(&l->running, false, __ATOMIC_RELEASE);
        current_loop = outer;
        return 0;
}

void tern_loop_stop(tern_loop *l)
{
        __atomic_store_n(&l->stop_req, true, __ATOMIC_RELEASE);
        tern__loop_wake(l);
}
