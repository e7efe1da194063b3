/*
 * The worker loop. One iteration reads top to bottom:
 *
 *   1. apply deferred changes   (take the ready list: connections that used
 *                                their read budget and get no new edge)
 *   2. compute the timeout      (0 if something is ready, else the wheel's)
 *   3. RCU-offline, epoll_wait, RCU-online
 *   4. dispatch                 (socket events, then the ready list)
 *   5. expire timers
 *   6. drain the mailbox        (hand-off ring, then cross-thread tasks)
 *   7. free what was closed     (never during dispatch)
 *   8. RCU quiescent state
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <urcu-qsbr.h>

#include "client_internal.h"
#include "clock.h"
#include "conn_internal.h"
#include "fault_internal.h"
#include "log.h"
#include "loop_internal.h"
#include "server_internal.h"

static __thread struct tern_loop *current_loop;

tern_loop *tern_loop_current(void)
{
        return current_loop;
}

int tern_loop_index(const tern_loop *l)
{
        return l->index;
}

uint64_t tern_loop_now(const tern_loop *l)
{
        return l->now;
}

void tern_loop_timer_start(tern_loop *l, struct tern_timer *t, uint64_t after_ms,
                           uint64_t repeat_ms)
{
        /* +1: the clock is truncated to whole ms, so "now" may be up to 1 ms
         * behind real time; rounding up keeps the never-early promise. */
        tern_timer_arm(&l->wheel, t, tern_now_ms() + after_ms + 1, repeat_ms);
}

void tern_loop_timer_stop(tern_loop *l, struct tern_timer *t)
{
        tern_timer_cancel(&l->wheel, t);
}

void tern__loop_wake(struct tern_loop *l)
{
        uint64_t one = 1;
        ssize_t r = write(l->evfd, &one, sizeof(one));
        (void)r; /* EAGAIN means the counter is already non-zero: awake enough */
}

int tern__loop_enqueue(struct tern_loop *l, struct tern__task *t)
{
        /* Dekker-style handshake with loop_close_mailbox(): either we see
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
        t->kind = TERN__TASK_LOOP;
        t->loop_cb = cb;
        t->arg = arg;
        int r = tern__loop_enqueue(l, t);
        if (r)
                free(t);
        return r;
}

/* ---- slot table (owner thread only) ---- */

int tern__slot_alloc(struct tern_loop *l, struct tern_conn *c, uint32_t *slot)
{
        if (l->free_slot == UINT32_MAX) {
                uint32_t n = l->nslots ? l->nslots * 2 : 64;
                if (n > (1u << 24))
                        return -EMFILE;
                struct tern__slot *s = TERN__REALLOC(l->slots, n * sizeof(*s));
                if (!s)
                        return -ENOMEM;
                for (uint32_t i = l->nslots; i < n; i++) {
                        s[i].conn = NULL;
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
        s->conn = c;
        *slot = i;
        return 0;
}

void tern__slot_free(struct tern_loop *l, uint32_t i)
{
        struct tern__slot *s = &l->slots[i];
        s->conn = NULL;
        /* A new generation makes every outstanding handle stale; 0 is skipped
         * so that no valid handle is ever TERN_HANDLE_NONE-like in its gen. */
        if (++s->gen == 0)
                s->gen = 1;
        s->next_free = l->free_slot;
        l->free_slot = i;
}

/* ---- init / destroy ---- */

int tern__loop_init(struct tern_loop *l, struct tern_server *s, int index)
{
        memset(l, 0, sizeof(*l));
        l->server = s;
        l->index = index;
        l->free_slot = UINT32_MAX;
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0)
                return -errno;
        l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (l->evfd < 0)
                goto out_close_epfd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = TERN__TAG_EVENTFD};
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0)
                goto out_close_evfd;
        l->ring_buf = TERN__CALLOC(TERN__RING_SIZE, sizeof(*l->ring_buf));
        if (!l->ring_buf) {
                errno = ENOMEM;
                goto out_close_evfd;
        }
        ck_ring_init(&l->ring, TERN__RING_SIZE);
        l->spill = TERN__MALLOC(TERN__SPILL_SIZE);
        if (!l->spill) {
                errno = ENOMEM;
                goto out_free_ring;
        }
        __cds_wfcq_init((struct __cds_wfcq_head *)&l->mb_head, &l->mb_tail);
        l->now = tern_now_ms();
        tern_timer_wheel_init(&l->wheel, l->now);
        return 0;

out_free_ring:
        free(l->ring_buf);
out_close_evfd:
        close(l->evfd);
out_close_epfd : {
        int e = errno;
        close(l->epfd);
        return -e;
}
}

static void free_closed(struct tern_loop *l);

void tern__loop_destroy(struct tern_loop *l)
{
        /* Connectors the application did not free; a connection one of them
         * closed before the loop ever ran waits on the closed list. */
        tern__connectors_free_all(l);
        free_closed(l);
        size_t left = tern_timer_wheel_destroy(&l->wheel);
        if (left)
                tern_warn("worker %d: %zu timer(s) still armed at teardown", l->index, left);
        free(l->slots);
        tern_buf_free(&l->scratch);
        free(l->spill);
        free(l->ring_buf);
        close(l->evfd);
        close(l->epfd);
}

/* ---- the iteration's steps ---- */

static void serve_ready(struct tern_conn *list)
{
        while (list) {
                struct tern_conn *c = list;
                list = c->next_ready;
                c->flags &= ~TERN__CONN_READY;
                if (!(c->flags & TERN__CONN_CLOSED))
                        tern__conn_on_ready(c);
        }
}

static void drain_timer_cb(struct tern_timer *t, void *arg)
{
        struct tern_loop *l = arg;
        for (uint32_t i = 0; i < l->nslots; i++) {
                struct tern_conn *c = l->slots[i].conn;
                if (c && !(c->flags & TERN__CONN_CLOSED)) {
                        tern_warn("worker %d: fd %d still has %zu bytes queued at the drain "
                                  "deadline, closing",
                                  l->index, c->fd, tern_buf_len(&c->out));
                        tern__conn_close(c, TERN_CLOSE_SHUTDOWN, 0);
                }
        }
}

static void begin_drain(struct tern_loop *l)
{
        l->draining = true;
        if (l == l->server->acc.home)
                tern__acceptor_stop_home(l); /* listeners first, then the others */
        tern__connectors_drain(l);           /* no more attempts; connected ones drain below */
        for (uint32_t i = 0; i < l->nslots; i++) {
                struct tern_conn *c = l->slots[i].conn;
                if (c && !(c->flags & TERN__CONN_CLOSED))
                        tern__conn_drain(c);
        }
        if (l->nconns) {
                tern_timer_init(&l->drain_timer, drain_timer_cb, l);
                tern_loop_timer_start(l, &l->drain_timer, l->server->opts.drain_timeout_ms, 0);
        }
}

static void close_handed_fd(struct tern_loop *l, int fd)
{
        close(fd);
        __atomic_fetch_sub(&l->server->live_conns, 1, __ATOMIC_RELAXED);
}

static void run_task(struct tern_loop *l, struct tern__task *t, bool final)
{
        struct tern_conn *c = NULL;
        switch (t->kind) {
        case TERN__TASK_LOOP:
                t->loop_cb(l, t->arg);
                break;
        case TERN__TASK_CONN:
                c = tern__slot_lookup(l, t->handle);
                if (c && (c->flags & TERN__CONN_CLOSED))
                        c = NULL;
                t->conn_cb(c, t->arg);
                break;
        case TERN__TASK_CONN_SEND:
                c = tern__slot_lookup(l, t->handle);
                if (c && !(c->flags & (TERN__CONN_CLOSED | TERN__CONN_CLOSING)))
                        tern_conn_send(c, t->data, t->len);
                break;
        case TERN__TASK_CONN_CLOSE:
                c = tern__slot_lookup(l, t->handle);
                if (c)
                        tern_conn_close(c);
                break;
        case TERN__TASK_NEW_FD:
                if (final || l->draining)
                        close_handed_fd(l, t->fd);
                else
                        tern__conn_new(l, t->fd);
                break;
        }
        free(t);
}

static void drain_mailbox(struct tern_loop *l, bool final)
{
        int fd;
        while (tern__ring_pop(l, &fd)) {
                if (final || l->draining)
                        close_handed_fd(l, fd);
                else
                        tern__conn_new(l, fd);
        }

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
                run_task(l, t, final);
        }
}

static void free_closed(struct tern_loop *l)
{
        if (!l->closed)
                return;
        /* A closed connection may still sit on the ready list for the next
         * iteration: unlink those first so nothing points at freed memory. */
        struct tern_conn **pp = &l->ready;
        while (*pp) {
                if ((*pp)->flags & TERN__CONN_CLOSED)
                        *pp = (*pp)->next_ready;
                else
                        pp = &(*pp)->next_ready;
        }
        struct tern_conn *c = l->closed;
        l->closed = NULL;
        while (c) {
                struct tern_conn *next = c->next_closed;
                tern__conn_free(c);
                c = next;
        }
}

static void read_eventfd(struct tern_loop *l)
{
        uint64_t v;
        ssize_t r = read(l->evfd, &v, sizeof(v));
        (void)r;
        tern__stat_add(l, TERN__STAT(wakeups), 1);
}

static void loop_run(struct tern_loop *l)
{
        struct epoll_event events[TERN__MAX_EVENTS];

        while (!(l->draining && l->nconns == 0)) {
                /* 1. deferred changes */
                struct tern_conn *ready = l->ready;
                l->ready = NULL;

                /* 2. timeout (no clock read, no wheel scan when nothing is armed) */
                int timeout = 0;
                if (!ready && !tern_timer_wheel_count(&l->wheel)) {
                        timeout = -1;
                } else if (!ready) {
                        l->now = tern_now_ms();
                        int64_t t = tern_timer_wheel_timeout(&l->wheel, l->now);
                        timeout = t < 0 ? -1 : (t > INT_MAX ? INT_MAX : (int)t);
                }

                /* 3. wait, RCU-offline so writers never wait for a sleeper */
                rcu_thread_offline();
                int n = epoll_wait(l->epfd, events, TERN__MAX_EVENTS, timeout);
                rcu_thread_online();
                if (n < 0) {
                        if (errno != EINTR)
                                tern_error("worker %d: epoll_wait: %s", l->index, strerror(errno));
                        n = 0;
                }
                l->now = tern_now_ms();

                /* 4. dispatch */
                for (int i = 0; i < n; i++) {
                        uint64_t tag = events[i].data.u64;
                        if (tag == TERN__TAG_EVENTFD) {
                                read_eventfd(l);
                        } else if (!(tag >> 56)) {
                                tern__acceptor_on_listener(l, (uint32_t)(tag - 1));
                        } else {
                                /* NULL for a connection closed earlier in this
                                 * batch, or for a stale registration (fork). */
                                struct tern_conn *c = tern__slot_lookup(l, tag);
                                if (c && !(c->flags & TERN__CONN_CLOSED))
                                        tern__conn_on_events(c, events[i].events);
                        }
                }
                serve_ready(ready);

                /* 5. timers */
                if (tern_timer_wheel_count(&l->wheel))
                        tern_timer_wheel_expire(&l->wheel, l->now);

                /* 6. mailbox */
                drain_mailbox(l, false);
                if (!l->draining && __atomic_load_n(&l->stop_req, __ATOMIC_ACQUIRE))
                        begin_drain(l);

                /* 7. free */
                free_closed(l);

                /* 8. quiescent: this thread holds no RCU references now */
                rcu_quiescent_state();
                tern__stat_add(l, TERN__STAT(loop_iters), 1);
        }
        tern_timer_cancel(&l->wheel, &l->drain_timer);
}

static void loop_close_mailbox(struct tern_loop *l)
{
        __atomic_store_n(&l->mb_closed, true, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&l->mb_inflight, __ATOMIC_SEQ_CST))
                sched_yield();
        drain_mailbox(l, true);
        free_closed(l);
}

static void loop_main(struct tern_loop *l)
{
        current_loop = l;
        rcu_register_thread();
        l->now = tern_now_ms();
        if (l->server->opts.on_worker_start)
                l->server->opts.on_worker_start(l, l->server->opts.user);
        loop_run(l);
        if (l->server->opts.on_worker_stop)
                l->server->opts.on_worker_stop(l, l->server->opts.user);
        loop_close_mailbox(l);
        rcu_unregister_thread();
        current_loop = NULL;
}

void *tern__loop_thread(void *arg)
{
        struct tern_loop *l = arg;
        char name[16];
        snprintf(name, sizeof(name), "worker-%d", l->index);
        tern_log_set_thread_name(name);
        pthread_setname_np(pthread_self(), name);
        loop_main(l);
        return NULL;
}

void tern__loop_run_here(struct tern_loop *l)
{
        /* The caller's thread: its log name changes while it serves, its
         * process-visible name (comm) does not. */
        char name[16];
        snprintf(name, sizeof(name), "worker-%d", l->index);
        tern_log_set_thread_name(name);
        loop_main(l);
        tern_log_set_thread_name("main");
}
