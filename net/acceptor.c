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
 * single writer and needs no atomics.
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
#include "server_internal.h"

/* Back-off after EMFILE & co: 1 ms after a burst that still accepted
 * something (descriptors are being freed: drain the backlog fast), doubling
 * while nothing gets through, up to 100 ms (no busy loop when saturated). */
#define ACCEPT_PAUSE_MIN_MS 1
#define ACCEPT_PAUSE_MS     100

static void acc_stat_add(struct tern_server *s, size_t idx)
{
        ck_pr_store_64(&s->acc_stats.v[idx], s->acc_stats.v[idx] + 1);
}

/* Ring full: the fd and its listener travel in the task's argument. */
static void adopt_task(tern_loop *l, void *arg)
{
        uintptr_t v = (uintptr_t)arg;
        struct tern_server *s = l->owner;
        tern__server_adopt(&s->workers[l->index], (int)(v & 0xffffffffu), (int)(v >> 32));
}

static void hand_off(struct tern_server *s, int w, int fd, int li)
{
        struct tern__acceptor *a = &s->acc;
        struct tern__worker *wk = &s->workers[w];
        a->took = true;
        if (wk->loop == a->home) { /* our own share: no ring, no wake-up */
                tern__server_adopt(wk, fd, li);
                return;
        }
        a->woken[w] = 1;
        if (tern__ring_push(wk, fd, li))
                return;
        /* Ring full (a worker far behind): fall back to its mailbox, which
         * wakes it by itself. Never drop an accepted connection silently. */
        if (tern_loop_post(wk->loop, adopt_task, (void *)(((uintptr_t)li << 32) | (uint32_t)fd)) ==
            0)
                return;
        close(fd);
        __atomic_fetch_sub(&s->live_conns, 1, __ATOMIC_RELAXED);
}

/* Accepts until EAGAIN on listening socket @k. Returns false, errno set, if
 * accepting must pause. */
static bool accept_burst(struct tern_server *s, int k)
{
        int lfd = s->lfds[k].io.fd;
        int li = s->lfds[k].listener;
        struct tern__acceptor *a = &s->acc;
        const uint32_t max = s->opts.max_conns;
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
                                acc_stat_add(s, TERN__STAT(accept_errors));
                                return false;
                        default: {
                                int e = errno;
                                tern_error("accept on listener %d: %s", li, strerror(e));
                                acc_stat_add(s, TERN__STAT(accept_errors));
                                errno = e;
                                return false;
                        }
                        }
                }
                if (max && __atomic_load_n(&s->live_conns, __ATOMIC_RELAXED) >= (long)max) {
                        /* Accept and close rather than leave it in the backlog,
                         * where the client would hang until its own timeout. */
                        acc_stat_add(s, TERN__STAT(rejected)); /* before the peer can see it */
                        close(fd);
                        continue;
                }
                __atomic_fetch_add(&s->live_conns, 1, __ATOMIC_RELAXED);
                int w = a->next;
                a->next = (w + 1) % s->nworkers;
                hand_off(s, w, fd, li);
        }
}

/*
 * Ends a round of bursts: wakes every worker that got a connection, once,
 * and on failure (@ok false, accept4's @err) works out the pause.
 * @retry: this round retried every listener after a pause.
 * Returns the pause in ms, 0 for none.
 */
static unsigned end_round(struct tern_server *s, bool ok, int err, bool retry)
{
        struct tern__acceptor *a = &s->acc;
        for (int w = 0; w < s->nworkers; w++) {
                if (a->woken[w]) {
                        a->woken[w] = 0;
                        tern__loop_wake(s->workers[w].loop);
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
static bool accept_round(struct tern_server *s, int i, int *err)
{
        int end = i < 0 ? s->nlfds : i + 1;
        for (int k = i < 0 ? 0 : i; k < end; k++) {
                if (!accept_burst(s, k)) {
                        *err = errno;
                        return false;
                }
        }
        return true;
}

/* ---- on its own thread ---- */

static void *acceptor_thread(void *arg)
{
        struct tern_server *s = arg;
        tern_log_set_thread_name("acceptor");
        pthread_setname_np(pthread_self(), "tern-acceptor");

        uint64_t paused_until = 0;
        struct epoll_event evs[TERN__MAX_LFDS + 1];

        while (!__atomic_load_n(&s->stop_req, __ATOMIC_ACQUIRE)) {
                int timeout = -1;
                if (paused_until) {
                        uint64_t now = tern_now_ms();
                        timeout = now >= paused_until ? 0 : (int)(paused_until - now);
                }
                int n = epoll_wait(s->acc_epfd, evs, TERN__MAX_LFDS + 1, timeout);
                if (n < 0 && errno != EINTR) {
                        tern_error("acceptor: epoll_wait: %s", strerror(errno));
                        break;
                }
                if (__atomic_load_n(&s->stop_req, __ATOMIC_ACQUIRE))
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
                        ok = accept_round(s, -1, &err);
                } else {
                        for (int k = 0; k < n && ok; k++)
                                if (evs[k].data.u32 < (uint32_t)s->nlfds) /* not the eventfd */
                                        ok = accept_round(s, (int)evs[k].data.u32, &err);
                }
                unsigned pause = end_round(s, ok, err, retry);
                if (pause)
                        paused_until = tern_now_ms() + pause;
        }

        /* Graceful stop: no new connections, then let every worker drain. */
        tern__server_close_listeners(s);
        tern__server_stop_workers(s, NULL);
        for (int w = 0; w < s->nworkers; w++)
                pthread_join(s->workers[w].thread, NULL);
        return NULL;
}

/* ---- on worker 0's loop ---- */

/* A round on the loop; a pause is a timer on its wheel, which retries every
 * listener when it fires. */
static void home_round(struct tern_server *s, int i, bool retry)
{
        int err = 0;
        bool ok = accept_round(s, i, &err);
        unsigned pause = end_round(s, ok, err, retry);
        if (pause) {
                s->acc.paused = true;
                tern_loop_timer_start(s->acc.home, &s->acc.resume_timer, pause, 0);
        }
}

static void resume_cb(struct tern_timer *t, void *arg)
{
        (void)t;
        struct tern_server *s = arg;
        s->acc.paused = false;
        home_round(s, -1, true);
}

/* A listening socket's event on the home loop. */
static void lfd_on_events(struct tern__io *io, uint32_t events)
{
        struct tern__lfd *lf = (struct tern__lfd *)io;
        struct tern_server *s = lf->s;
        /* Paused: the resume timer retries every listener, edges or not. */
        if (s->acc.paused || io->loop->draining)
                return;
        home_round(s, (int)(lf - s->lfds), false);
}

/* Embedded in the server, which frees it. */
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
 * told, so nothing can be handed to a worker that already finished. */
static void home_drain(struct tern__hook *h, struct tern_loop *l)
{
        struct tern_server *s = caa_container_of(h, struct tern_server, acc.drain_hook);
        tern__loop_timer_cancel(l, &s->acc.resume_timer);
        tern__server_close_listeners(s);
        tern__server_stop_workers(s, l);
}

/* ---- set-up ---- */

int tern__acceptor_init(struct tern_server *s)
{
        struct tern__acceptor *a = &s->acc;
        enum tern_accept_mode mode = s->opts.accept;
        if (mode == TERN_ACCEPT_AUTO)
                mode = s->nworkers == 1 ? TERN_ACCEPT_WORKER : TERN_ACCEPT_THREAD;
        a->pause_ms = ACCEPT_PAUSE_MIN_MS;
        if (mode == TERN_ACCEPT_WORKER) {
                a->home = s->workers[0].loop;
                tern_timer_init(&a->resume_timer, resume_cb, s);
                tern__hook_add(a->home, TERN__HOOK_DRAIN, &a->drain_hook, home_drain);
                return 0;
        }
        s->acc_epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->acc_epfd < 0)
                return -errno;
        s->acc_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->acc_evfd < 0)
                return -errno;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
        if (epoll_ctl(s->acc_epfd, EPOLL_CTL_ADD, s->acc_evfd, &ev) < 0)
                return -errno;
        return 0;
}

int tern__acceptor_watch(struct tern_server *s, int k)
{
        struct tern__lfd *lf = &s->lfds[k];
        if (s->acc.home) {
                lf->io.kind = &lfd_kind;
                lf->io.loop = s->acc.home;
                int r = tern__io_register(&lf->io, EPOLLIN | EPOLLET);
                if (r < 0)
                        lf->io.loop = NULL; /* nothing to release */
                return r;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u32 = (uint32_t)k};
        return epoll_ctl(s->acc_epfd, EPOLL_CTL_ADD, lf->io.fd, &ev) < 0 ? -errno : 0;
}

int tern__acceptor_start(struct tern_server *s)
{
        if (s->acc.home)
                return 0;
        return -pthread_create(&s->acc_thread, NULL, acceptor_thread, s);
}

void tern__acceptor_request_stop(struct tern_server *s)
{
        uint64_t one = 1;
        if (s->acc.home) {
                tern_loop_stop(s->acc.home);
        } else if (s->acc_evfd >= 0) {
                ssize_t r = write(s->acc_evfd, &one, sizeof(one));
                (void)r;
        }
}

int tern__acceptor_join(struct tern_server *s)
{
        if (!s->acc.home)
                return -pthread_join(s->acc_thread, NULL);
        int r = 0;
        for (int w = 0; w < s->nworkers; w++) {
                int e = -pthread_join(s->workers[w].thread, NULL);
                if (e && !r)
                        r = e;
        }
        return r;
}
