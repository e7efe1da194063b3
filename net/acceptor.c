/*
 * The acceptor: accepts until EAGAIN (edge-triggered listeners) and hands
 * each connection round-robin to a worker through that worker's
 * single-producer ring, writing each woken worker's eventfd once per burst
 * rather than once per connection.
 *
 * It runs in one of two places (tern_server_opts.accept):
 *
 *   - its own thread, blocked in epoll_wait on the listeners: the workers
 *     only ever see connections arrive through their rings;
 *   - worker 0's loop ("home"), which gets the listener events with its
 *     sockets' and takes its own share of connections directly, without the
 *     ring, the eventfd and the thread switch that a hand-off costs. With a
 *     single worker that cost buys nothing, so it is the default there.
 *
 * Either way one thread does all of the accepting, so the state below has a
 * single writer and needs no atomics. It includes nothing of the server:
 * the server gives it listening sockets with their stacks, and loops.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acceptor_internal.h"
#include "clock.h"
#include "fault_internal.h"
#include "log.h"

/* Back-off after EMFILE & co: 1 ms after a burst that still accepted
 * something (descriptors are being freed: drain the backlog fast), doubling
 * while nothing gets through, up to 100 ms (no busy loop when saturated). */
#define ACCEPT_PAUSE_MIN_MS 1
#define ACCEPT_PAUSE_MS     100

static void acc_stat_add(struct tern__acceptor *a, size_t idx)
{
        ck_pr_store_64(&a->stats.v[idx], a->stats.v[idx] + 1);
}

/* ---- the hand-off ---- */

/* The ring holds void *: a connection travels as its fd and the index of
 * the listening socket that took it (its stack), no allocation per accept. */
static void *pack(int fd, int k)
{
        return (void *)(((uintptr_t)k << 32) | (uint32_t)fd);
}

/* On the target's loop: the accepted @fd becomes a connection, or is
 * closed if that loop is draining (or has finished). */
static void adopt(struct tern__acceptor *a, struct tern_loop *l, void *v)
{
        int fd = (int)((uintptr_t)v & 0xffffffffu);
        const struct tern__acc_lfd *lf = &a->lfds[(uintptr_t)v >> 32];
        /* A late listener's connections are welcome until the drain's
         * last phase: the admin endpoint answers "draining" meanwhile. */
        if (l->draining && (!lf->late || l->late_phase)) {
                close(fd);
                __atomic_fetch_sub(&a->live_conns, 1, __ATOMIC_RELAXED);
                return;
        }
        struct tern_conn *c = tern__conn_setup(l, fd, lf->cfg, false);
        if (c && lf->late)
                tern__io_set_late(&c->io);
}

static bool ring_push(struct tern__acc_target *t, void *v)
{
        TERN__HB_RELEASE(&t->ring);
        TERN__TSAN_IGNORE_BEGIN(); /* the ring's slots are ordered by its fences */
        bool ok = ck_ring_enqueue_spsc(&t->ring, t->ring_buf, v);
        TERN__TSAN_IGNORE_END();
        return ok;
}

static bool ring_pop(struct tern__acc_target *t, void **v)
{
        TERN__TSAN_IGNORE_BEGIN();
        bool ok = ck_ring_dequeue_spsc(&t->ring, t->ring_buf, v);
        TERN__TSAN_IGNORE_END();
        if (ok)
                TERN__HB_ACQUIRE(&t->ring);
        return ok;
}

/* Every iteration's end on a target loop: what the acceptor handed over. */
static void inbox_hook(struct tern__hook *h, struct tern_loop *l)
{
        struct tern__acc_target *t = caa_container_of(h, struct tern__acc_target, inbox);
        void *v;
        while (ring_pop(t, &v))
                adopt(t->acc, l, v);
}

/* Ring full: the connection travels in a task instead (rare: a loop far
 * behind), which runs even in the loop's final drain. */
struct overflow {
        struct tern__acceptor *a;
        void *v;
};

static void adopt_task(tern_loop *l, void *arg)
{
        struct overflow *o = arg;
        adopt(o->a, l, o->v);
        free(o);
}

static void hand_off(struct tern__acceptor *a, int w, int fd, int k)
{
        struct tern__acc_target *t = &a->targets[w];
        a->took = true;
        void *v = pack(fd, k);
        if (t->loop == a->home) { /* our own share: no ring, no wake-up */
                adopt(a, t->loop, v);
                return;
        }
        a->woken[w] = 1;
        if (ring_push(t, v))
                return;
        /* Ring full (a loop far behind): fall back to its mailbox, which
         * wakes it by itself. Never drop an accepted connection silently. */
        struct overflow *o = TERN__MALLOC(sizeof(*o));
        if (o) {
                *o = (struct overflow){a, v};
                if (tern_loop_post(t->loop, adopt_task, o) == 0)
                        return;
                free(o);
        }
        close(fd);
        __atomic_fetch_sub(&a->live_conns, 1, __ATOMIC_RELAXED);
}

/* Accepts until EAGAIN on listening socket @k. Returns false, errno set, if
 * accepting must pause. */
static bool accept_burst(struct tern__acceptor *a, int k)
{
        int lfd = a->lfds[k].io.fd;
        if (lfd < 0)
                return true; /* closed at the stop; a late one still serves */
        const uint32_t max = a->max_conns;
        for (;;) {
                int fd = TERN__ACCEPT4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        switch (errno) {
                        case EAGAIN:
                                return true;
                        case EINTR:
                        case ECONNABORTED:
                        case EPROTO:
                        /* accept(2): Linux reports the new socket's pending
                         * network errors here; they end that connection,
                         * not the listener: retry at once, like EAGAIN. */
                        case ENETDOWN:
                        case ENOPROTOOPT:
                        case EHOSTDOWN:
                        case ENONET:
                        case EHOSTUNREACH:
                        case EOPNOTSUPP:
                        case ENETUNREACH:
                                continue;
                        case EMFILE:
                        case ENFILE:
                        case ENOBUFS:
                        case ENOMEM:
                                acc_stat_add(a, TERN__STAT(accept_errors));
                                return false;
                        default: {
                                int e = errno;
                                /* Once per pause at most, but pauses can
                                 * repeat as fast as the backlog refills. */
                                static struct tern_log_limit limit;
                                tern_log_limited(&limit, TERN_LOG_ERROR, "accept: %s", strerror(e));
                                acc_stat_add(a, TERN__STAT(accept_errors));
                                errno = e;
                                return false;
                        }
                        }
                }
                if (max && __atomic_load_n(&a->live_conns, __ATOMIC_RELAXED) >= (long)max) {
                        /* Accept and close rather than leave it in the backlog,
                         * where the client would hang until its own timeout. */
                        acc_stat_add(a, TERN__STAT(rejected)); /* before the peer can see it */
                        close(fd);
                        continue;
                }
                __atomic_fetch_add(&a->live_conns, 1, __ATOMIC_RELAXED);
                int w = a->next;
                a->next = (w + 1) % a->ntargets;
                hand_off(a, w, fd, k);
        }
}

/*
 * Ends a round of bursts: wakes every worker that got a connection, once,
 * and on failure (@ok false, accept4's @err) works out the pause.
 * @retry: this round retried every listener after a pause.
 * Returns the pause in ms, 0 for none.
 */
static unsigned end_round(struct tern__acceptor *a, bool ok, int err, bool retry)
{
        for (int w = 0; w < a->ntargets; w++) {
                if (a->woken[w]) {
                        a->woken[w] = 0;
                        tern__loop_wake(a->targets[w].loop);
                }
        }
        bool took = a->took;
        a->took = false;
        if (ok) {
                if (retry && a->warned)
                        tern_info("accept: resumed");
                if (retry)
                        a->warned = false;
                return 0;
        }
        /* Out of fds: connections wait in the backlog; try again shortly
         * instead of spinning on an always-ready listener. */
        if (took)
                a->pause_ms = ACCEPT_PAUSE_MIN_MS;
        else
                a->pause_ms = a->pause_ms * 2 < ACCEPT_PAUSE_MS ? a->pause_ms * 2 : ACCEPT_PAUSE_MS;
        if (!a->warned)
                tern_warn("accept: %s; pausing accepts (up to %d ms at a time) until %s",
                          strerror(err), ACCEPT_PAUSE_MS,
                          err == EMFILE || err == ENFILE ? "descriptors free up" : "it clears");
        a->warned = true;
        return a->pause_ms;
}

/* Bursts on listening socket @i, or on every one when @i < 0. Returns
 * false, with accept4's error in *@err, when accepting must pause. */
static bool accept_round(struct tern__acceptor *a, int i, int *err)
{
        int end = i < 0 ? a->nlfds : i + 1;
        for (int k = i < 0 ? 0 : i; k < end; k++) {
                if (!accept_burst(a, k)) {
                        *err = errno;
                        return false;
                }
        }
        return true;
}

/* ---- on its own thread ---- */

/* Unregisters and closes listening socket @lf; its slot stays (the index
 * travels with connections in the rings), with fd -1. */
static void close_lfd(struct tern__acceptor *a, struct tern__acc_lfd *lf)
{
        if (lf->io.fd < 0)
                return;
        /* Unregister before close: a forked child holding a listener
         * would keep it registered, naming a closed fd. */
        if (lf->io.loop)
                tern__io_release(&lf->io, true);
        else if (a->epfd >= 0)
                epoll_ctl(a->epfd, EPOLL_CTL_DEL, lf->io.fd, NULL);
        close(lf->io.fd);
        lf->io.fd = -1;
}

/* The stop: every listener but the late ones, which serve on. */
static void close_early_listeners(struct tern__acceptor *a)
{
        for (int k = 0; k < a->nlfds; k++)
                if (!a->lfds[k].late)
                        close_lfd(a, &a->lfds[k]);
}

static bool late_listening(const struct tern__acceptor *a)
{
        for (int k = 0; k < a->nlfds; k++)
                if (a->lfds[k].late && a->lfds[k].io.fd >= 0)
                        return true;
        return false;
}

static void close_listeners(struct tern__acceptor *a)
{
        tern__acceptor_truncate(a, 0);
}

/* A target loop drained all but its late connections. Once every target
 * has, they all begin the last phase together (a worker with only an admin
 * connection keeps serving it until the busiest worker drained), and the
 * acceptor thread stops serving the late listeners. */
static void drained_hook(struct tern__hook *h, struct tern_loop *l)
{
        (void)l;
        struct tern__acc_target *t = caa_container_of(h, struct tern__acc_target, late);
        struct tern__acceptor *a = t->acc;
        tern__hook_del(h);
        if (__atomic_sub_fetch(&a->late_left, 1, __ATOMIC_ACQ_REL))
                return;
        for (int w = 0; w < a->ntargets; w++)
                tern__loop_open_late(a->targets[w].loop);
        if (a->evfd >= 0) {
                uint64_t one = 1;
                ssize_t r = write(a->evfd, &one, sizeof(one));
                (void)r;
        }
}

static void stop_targets(struct tern__acceptor *a, const struct tern_loop *except)
{
        for (int w = 0; w < a->ntargets; w++)
                if (a->targets[w].loop != except)
                        tern_loop_stop(a->targets[w].loop);
}

/* Serving on the acceptor thread: before the stop (@late false) every
 * listener until stop_req; after it (@late true) the late ones until every
 * target drained all but its late connections. */
static bool keep_serving(struct tern__acceptor *a, bool late)
{
        return late ? __atomic_load_n(&a->late_left, __ATOMIC_ACQUIRE) > 0
                    : !__atomic_load_n(&a->stop_req, __ATOMIC_ACQUIRE);
}

static void serve_thread(struct tern__acceptor *a, bool late)
{
        uint64_t paused_until = 0;
        struct epoll_event evs[TERN__MAX_LFDS + 1];

        while (keep_serving(a, late)) {
                int timeout = -1;
                if (paused_until) {
                        uint64_t now = tern_now_ms();
                        timeout = now >= paused_until ? 0 : (int)(paused_until - now);
                }
                int n = epoll_wait(a->epfd, evs, TERN__MAX_LFDS + 1, timeout);
                if (n < 0 && errno != EINTR) {
                        tern_error("acceptor: epoll_wait: %s", strerror(errno));
                        break;
                }
                if (!keep_serving(a, late))
                        break;

                bool retry = false; /* every listener, after a pause */
                if (paused_until) {
                        if (tern_now_ms() < paused_until)
                                continue; /* still paused: edges are retried then */
                        paused_until = 0;
                        retry = true;
                }
                bool ok = true;
                int err = 0;
                if (retry) {
                        ok = accept_round(a, -1, &err);
                } else {
                        for (int k = 0; k < n && ok; k++) {
                                if (evs[k].data.u32 < (uint32_t)a->nlfds) {
                                        ok = accept_round(a, (int)evs[k].data.u32, &err);
                                } else if (late) { /* the eventfd: level-triggered, clear it */
                                        uint64_t v;
                                        ssize_t r = read(a->evfd, &v, sizeof(v));
                                        (void)r;
                                }
                        }
                }
                unsigned pause = end_round(a, ok, err, retry);
                if (pause)
                        paused_until = tern_now_ms() + pause;
        }
}

static void *acceptor_thread(void *arg)
{
        struct tern__acceptor *a = arg;
        tern_log_set_thread_name("acceptor");
        pthread_setname_np(pthread_self(), "tern-acceptor");

        serve_thread(a, false);
        /* Graceful stop: no new connections but on late listeners, then let
         * every loop drain; those serve until every loop's drain reached
         * its last phase, and nothing can be handed to one after that. */
        close_early_listeners(a);
        stop_targets(a, NULL);
        if (late_listening(a))
                serve_thread(a, true);
        close_listeners(a);
        return NULL;
}

/* ---- on the first loop ---- */

/* A round on the loop; a pause is a timer on its wheel, which retries every
 * listener when it fires. */
static void home_round(struct tern__acceptor *a, int i, bool retry)
{
        int err = 0;
        bool ok = accept_round(a, i, &err);
        unsigned pause = end_round(a, ok, err, retry);
        if (pause) {
                a->paused = true;
                tern__loop_timer_arm(a->home, &a->resume_timer, pause, 0);
        }
}

static void resume_cb(struct tern_timer *t, void *arg)
{
        (void)t;
        struct tern__acceptor *a = arg;
        a->paused = false;
        home_round(a, -1, true);
}

/* A listening socket's event on the home loop. */
static void lfd_on_events(struct tern__io *io, uint32_t events)
{
        struct tern__acc_lfd *lf = (struct tern__acc_lfd *)io;
        struct tern__acceptor *a = lf->acc;
        /* Paused: the resume timer retries every listener, edges or not. */
        if (a->paused || (io->loop->draining && (!lf->late || io->loop->late_phase)))
                return;
        home_round(a, (int)(lf - a->lfds), false);
}

/* Embedded in the acceptor, which outlives it. */
static void lfd_on_free(struct tern__io *io)
{
        (void)io;
}

static const struct tern__io_kind lfd_kind = {
    .name = "listener",
    .on_events = lfd_on_events,
    .on_free = lfd_on_free,
    .on_destroy = lfd_on_free,
};

/* The home loop drains: the listeners close first, then the others are
 * told, so nothing can be handed to a loop that already finished. */
static void home_drain(struct tern__hook *h, struct tern_loop *l)
{
        struct tern__acceptor *a = caa_container_of(h, struct tern__acceptor, drain_hook);
        close_early_listeners(a);
        if (!late_listening(a))
                tern__loop_timer_cancel(l, &a->resume_timer);
        stop_targets(a, l);
}

/* Home's drain reached its last phase: the late listeners close too. */
static void home_late(struct tern__hook *h, struct tern_loop *l)
{
        struct tern__acceptor *a = caa_container_of(h, struct tern__acceptor, home_late_hook);
        tern__hook_del(h);
        tern__loop_timer_cancel(l, &a->resume_timer);
        close_listeners(a);
}

/* ---- set-up and tear-down ---- */

int tern__acceptor_init(struct tern__acceptor *a, struct tern_loop *const *loops, int n,
                        bool on_first_loop, uint32_t max_conns)
{
        memset(a, 0, sizeof(*a));
        a->epfd = -1;
        a->evfd = -1;
        a->max_conns = max_conns;
        a->pause_ms = ACCEPT_PAUSE_MIN_MS;
        if (n < 1 || n > 256)
                return -EINVAL;
        a->targets = TERN__CALLOC((size_t)n, sizeof(*a->targets));
        if (!a->targets)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                struct tern__acc_target *t = &a->targets[i];
                t->ring_buf = TERN__CALLOC(TERN__RING_SIZE, sizeof(*t->ring_buf));
                if (!t->ring_buf)
                        return -ENOMEM;
                ck_ring_init(&t->ring, TERN__RING_SIZE);
                t->loop = loops[i];
                t->acc = a;
                tern__hook_add(t->loop, TERN__HOOK_END_ITER, &t->inbox, inbox_hook);
                tern__hook_add(t->loop, TERN__HOOK_DRAINED, &t->late, drained_hook);
                a->ntargets++;
                a->late_left++;
        }
        if (on_first_loop) {
                a->home = loops[0];
                tern_timer_init(&a->resume_timer, resume_cb, a);
                tern__hook_add(a->home, TERN__HOOK_DRAIN, &a->drain_hook, home_drain);
                tern__hook_add(a->home, TERN__HOOK_LATE, &a->home_late_hook, home_late);
                return 0;
        }
        a->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (a->epfd < 0)
                return -errno;
        a->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (a->evfd < 0)
                return -errno;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
        if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->evfd, &ev) < 0)
                return -errno;
        return 0;
}

int tern__acceptor_add(struct tern__acceptor *a, int fd, struct tern__conn_cfg *cfg, bool late)
{
        if (a->nlfds == TERN__MAX_LFDS)
                return -ENOSPC;
        struct tern__acc_lfd *lf = &a->lfds[a->nlfds];
        memset(lf, 0, sizeof(*lf));
        lf->io.fd = fd;
        lf->acc = a;
        lf->cfg = cfg;
        lf->late = late;
        /* Only then do workers wait for each other before their drain's
         * last phase: without late listeners a drain is what it was. */
        for (int w = 0; late && w < a->ntargets; w++)
                a->targets[w].loop->late_gated = true;
        int r;
        if (a->home) {
                lf->io.kind = &lfd_kind;
                lf->io.loop = a->home;
                r = tern__io_register(&lf->io, EPOLLIN | EPOLLET);
                if (r < 0)
                        lf->io.loop = NULL; /* nothing to release */
        } else {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLET,
                                         .data.u32 = (uint32_t)a->nlfds};
                r = epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
        }
        if (r == 0)
                a->nlfds++;
        return r;
}

void tern__acceptor_truncate(struct tern__acceptor *a, int keep)
{
        while (a->nlfds > keep)
                close_lfd(a, &a->lfds[--a->nlfds]);
}

int tern__acceptor_start(struct tern__acceptor *a)
{
        if (a->home)
                return 0;
        int r = -pthread_create(&a->thread, NULL, acceptor_thread, a);
        a->thread_started = r == 0;
        return r;
}

void tern__acceptor_request_stop(struct tern__acceptor *a)
{
        uint64_t one = 1;
        if (a->home) {
                tern_loop_stop(a->home);
        } else if (a->evfd >= 0) {
                __atomic_store_n(&a->stop_req, true, __ATOMIC_RELEASE);
                ssize_t r = write(a->evfd, &one, sizeof(one));
                (void)r;
        }
}

int tern__acceptor_join(struct tern__acceptor *a)
{
        if (!a->thread_started)
                return 0;
        a->thread_started = false;
        return -pthread_join(a->thread, NULL);
}

void tern__acceptor_destroy(struct tern__acceptor *a)
{
        close_listeners(a);
        for (int w = 0; w < a->ntargets; w++) {
                struct tern__acc_target *t = &a->targets[w];
                /* Handed over but never taken: the loop has finished. */
                void *v;
                while (ring_pop(t, &v)) {
                        close((int)((uintptr_t)v & 0xffffffffu));
                        __atomic_fetch_sub(&a->live_conns, 1, __ATOMIC_RELAXED);
                }
                tern__hook_del(&t->inbox);
                tern__hook_del(&t->late);
        }
        for (int w = 0; w < a->ntargets; w++)
                free(a->targets[w].ring_buf);
        free(a->targets);
        a->targets = NULL;
        a->ntargets = 0;
        if (a->home) {
                tern__hook_del(&a->drain_hook);
                tern__hook_del(&a->home_late_hook);
        }
        if (a->epfd >= 0)
                close(a->epfd);
        if (a->evfd >= 0)
                close(a->evfd);
        a->epfd = a->evfd = -1;
}
