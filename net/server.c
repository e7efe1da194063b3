/*
 * The server: listeners, the acceptor thread and the worker threads.
 *
 * The acceptor accepts until EAGAIN (edge-triggered listeners), hands each
 * fd round-robin to a worker through that worker's single-producer ring, and
 * writes each woken worker's eventfd once per burst rather than once per
 * connection.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "cpu.h"
#include "error.h"
#include "fault_internal.h"
#include "log.h"
#include "server_internal.h"

/* Back-off after EMFILE & co: 1 ms after a burst that still accepted
 * something (descriptors are being freed: drain the backlog fast), doubling
 * while nothing gets through, up to 100 ms (no busy loop when saturated). */
#define ACCEPT_PAUSE_MIN_MS 1
#define ACCEPT_PAUSE_MS     100

int tern_default_workers(void)
{
        struct tern_cpu_limit lim;
        tern_cpu_limit(&lim);
        return lim.count;
}

void tern_server_opts_init(struct tern_server_opts *o)
{
        memset(o, 0, sizeof(*o));
        o->backlog = 1024;
        o->drain_timeout_ms = 5000;
        o->max_outbuf = 64u << 20;
        o->max_inbuf = 16u << 20;
        o->read_budget = 256u << 10;
}

static int listen_on(struct tern_server *s, const struct addrinfo *ai)
{
        const struct tern_server_opts *o = &s->opts;
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
                return -errno;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (o->reuseport)
                setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        /* Separate v4 and v6 listeners: "::" must not steal 0.0.0.0's port. */
        if (ai->ai_family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));

        struct sockaddr_storage addr;
        memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
        if (s->port) { /* an ephemeral port chosen by the first listener */
                if (addr.ss_family == AF_INET)
                        ((struct sockaddr_in *)&addr)->sin_port = htons(s->port);
                else
                        ((struct sockaddr_in6 *)&addr)->sin6_port = htons(s->port);
        }
        if (bind(fd, (struct sockaddr *)&addr, ai->ai_addrlen) < 0 || listen(fd, o->backlog) < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        socklen_t len = sizeof(addr);
        if (getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
                s->port =
                    ntohs(addr.ss_family == AF_INET ? ((struct sockaddr_in *)&addr)->sin_port
                                                    : ((struct sockaddr_in6 *)&addr)->sin6_port);
        return fd;
}

static int open_listeners(struct tern_server *s)
{
        char port[8];
        snprintf(port, sizeof(port), "%u", s->opts.port);
        struct addrinfo hints = {
            .ai_family = AF_UNSPEC,
            .ai_socktype = SOCK_STREAM,
            .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
        };
        struct addrinfo *res;
        int r = getaddrinfo(s->opts.bind, port, &hints, &res);
        if (r != 0) {
                tern_error("cannot resolve bind address '%s': %s",
                           s->opts.bind ? s->opts.bind : "*", gai_strerror(r));
                return -EINVAL;
        }
        int err = 0;
        for (struct addrinfo *ai = res; ai && s->nlisteners < TERN__MAX_LISTENERS;
             ai = ai->ai_next) {
                int fd = listen_on(s, ai);
                if (fd < 0) {
                        err = fd;
                        /* A wildcard bind on a host without IPv6 still serves v4. */
                        if (!s->opts.bind && fd == -EAFNOSUPPORT)
                                continue;
                        tern_error("cannot listen on %s port %s: %s",
                                   s->opts.bind ? s->opts.bind : "*", port, tern_strerror(fd));
                        break;
                }
                s->listen_fds[s->nlisteners++] = fd;
        }
        freeaddrinfo(res);
        if (s->nlisteners == 0 || (err && err != -EAFNOSUPPORT))
                return err ? err : -EADDRNOTAVAIL;
        return 0;
}

static void close_listeners(struct tern_server *s)
{
        for (int i = 0; i < s->nlisteners; i++)
                close(s->listen_fds[i]);
        s->nlisteners = 0;
}

tern_server *tern_server_new(const struct tern_server_opts *o)
{
        if (o->workers < 0 || o->workers > 255 || o->read_budget == 0 || o->max_outbuf == 0 ||
            o->max_inbuf == 0) {
                errno = EINVAL;
                return NULL;
        }
        struct tern_server *s = TERN__CALLOC(1, sizeof(*s));
        if (!s)
                return NULL;
        s->opts = *o;
        if (!s->opts.low_water)
                s->opts.low_water = s->opts.high_water / 2;
        s->nworkers = o->workers ? o->workers : tern_default_workers();
        if (s->nworkers > 255)
                s->nworkers = 255;
        s->acc_epfd = -1;
        s->acc_evfd = -1;

        int r = o->no_listen ? 0 : open_listeners(s);
        if (r < 0)
                goto out_free_server;
        s->acc_epfd = epoll_create1(EPOLL_CLOEXEC);
        s->acc_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->acc_epfd < 0 || s->acc_evfd < 0) {
                r = -errno;
                goto out_close_fds;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
        if (epoll_ctl(s->acc_epfd, EPOLL_CTL_ADD, s->acc_evfd, &ev) < 0) {
                r = -errno;
                goto out_close_fds;
        }
        for (int i = 0; i < s->nlisteners; i++) {
                ev.events = EPOLLIN | EPOLLET;
                ev.data.u32 = (uint32_t)i;
                if (epoll_ctl(s->acc_epfd, EPOLL_CTL_ADD, s->listen_fds[i], &ev) < 0) {
                        r = -errno;
                        goto out_close_fds;
                }
        }

        s->loops = TERN__CALLOC((size_t)s->nworkers, sizeof(*s->loops));
        if (!s->loops) {
                r = -ENOMEM;
                goto out_close_fds;
        }
        int i;
        for (i = 0; i < s->nworkers; i++) {
                r = tern__loop_init(&s->loops[i], s, i);
                if (r < 0)
                        goto out_destroy_loops;
        }
        return s;

out_destroy_loops:
        while (i-- > 0)
                tern__loop_destroy(&s->loops[i]);
        free(s->loops);
out_close_fds:
        if (s->acc_epfd >= 0)
                close(s->acc_epfd);
        if (s->acc_evfd >= 0)
                close(s->acc_evfd);
        close_listeners(s);
out_free_server:
        free(s);
        errno = -r;
        return NULL;
}

/* ---- the acceptor ---- */

static void hand_off(struct tern_server *s, struct tern_loop *l, int fd)
{
        if (tern__ring_push(l, fd))
                return;
        /* Ring full (a worker far behind): fall back to its mailbox, which
         * wakes it by itself. Never drop an accepted connection silently. */
        struct tern__task *t = TERN__MALLOC(sizeof(*t));
        if (t) {
                t->kind = TERN__TASK_NEW_FD;
                t->fd = fd;
                if (tern__loop_enqueue(l, t) == 0)
                        return;
                free(t);
        }
        close(fd);
        __atomic_fetch_sub(&s->live_conns, 1, __ATOMIC_RELAXED);
}

static void acc_stat_add(struct tern_server *s, size_t idx)
{
        ck_pr_store_64(&s->acc_stats.v[idx], s->acc_stats.v[idx] + 1);
}

/* Accepts until EAGAIN. Returns false if accepting must pause (out of fds). */
static bool accept_burst(struct tern_server *s, int lfd, uint8_t *woken, int *next)
{
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
                        default:
                                tern_error("accept: %s", strerror(errno));
                                acc_stat_add(s, TERN__STAT(accept_errors));
                                return false;
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
                int w = *next;
                *next = (w + 1) % s->nworkers;
                hand_off(s, &s->loops[w], fd);
                woken[w] = 1;
        }
}

static void *acceptor_thread(void *arg)
{
        struct tern_server *s = arg;
        tern_log_set_thread_name("acceptor");
        pthread_setname_np(pthread_self(), "tern-acceptor");

        /* On the stack: an acceptor that could not allocate this would
         * quit, closing the listeners, on a transient ENOMEM at start. */
        uint8_t woken[256] = {0}; /* nworkers <= 255 */
        int next = 0;
        uint64_t paused_until = 0;
        unsigned pause_ms = ACCEPT_PAUSE_MIN_MS;
        bool warned = false;
        struct epoll_event evs[TERN__MAX_LISTENERS + 1];

        while (!__atomic_load_n(&s->stop_req, __ATOMIC_ACQUIRE)) {
                int timeout = -1;
                if (paused_until) {
                        uint64_t now = tern_now_ms();
                        timeout = now >= paused_until ? 0 : (int)(paused_until - now);
                }
                int n = epoll_wait(s->acc_epfd, evs, TERN__MAX_LISTENERS + 1, timeout);
                if (n < 0 && errno != EINTR) {
                        tern_error("acceptor: epoll_wait: %s", strerror(errno));
                        break;
                }
                if (__atomic_load_n(&s->stop_req, __ATOMIC_ACQUIRE))
                        break;

                bool all = false; /* retry every listener after a pause */
                if (paused_until && tern_now_ms() >= paused_until) {
                        paused_until = 0;
                        all = true;
                }
                bool ok = true;
                int err = 0; /* accept4's errno when a burst stopped short */
                if (!paused_until) {
                        for (int i = 0; i < s->nlisteners && ok; i++) {
                                bool ready = all;
                                for (int k = 0; k < n && !ready; k++)
                                        ready = evs[k].data.u32 == (uint32_t)i;
                                if (!ready)
                                        continue;
                                ok = accept_burst(s, s->listen_fds[i], woken, &next);
                                if (!ok)
                                        err = errno;
                        }
                }
                /* One eventfd write per woken worker per burst. */
                bool handed = false;
                for (int w = 0; w < s->nworkers; w++) {
                        if (woken[w]) {
                                handed = true;
                                woken[w] = 0;
                                tern__loop_wake(&s->loops[w]);
                        }
                }
                if (!ok) {
                        /* Out of fds: connections wait in the backlog; try again
                         * shortly instead of spinning on an always-ready listener. */
                        pause_ms = handed ? ACCEPT_PAUSE_MIN_MS
                                          : (pause_ms * 2 < ACCEPT_PAUSE_MS ? pause_ms * 2
                                                                            : ACCEPT_PAUSE_MS);
                        paused_until = tern_now_ms() + pause_ms;
                        if (!warned)
                                tern_warn("accept: %s; pausing accepts (up to %d ms at a "
                                          "time) until %s",
                                          strerror(err), ACCEPT_PAUSE_MS,
                                          err == EMFILE || err == ENFILE ? "descriptors free up"
                                                                         : "it clears");
                        warned = true;
                } else if (all) {
                        if (warned)
                                tern_info("accept: resumed");
                        warned = false;
                }
        }

        /* Graceful stop: no new connections, then let every worker drain. */
        close_listeners(s);
        for (int w = 0; w < s->nworkers; w++) {
                __atomic_store_n(&s->loops[w].stop_req, true, __ATOMIC_RELEASE);
                tern__loop_wake(&s->loops[w]);
        }
        for (int w = 0; w < s->nworkers; w++)
                pthread_join(s->loops[w].thread, NULL);
        return NULL;
}

int tern_server_start(tern_server *s)
{
        if (s->started)
                return -EALREADY;
        /* Threads tern starts never take process signals: the application's
         * handler runs on its own thread and calls tern_server_stop(). */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int r = 0, w;
        for (w = 0; w < s->nworkers; w++) {
                r = -pthread_create(&s->loops[w].thread, NULL, tern__loop_thread, &s->loops[w]);
                if (r)
                        break;
        }
        if (!r)
                r = -pthread_create(&s->acc_thread, NULL, acceptor_thread, s);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r) {
                tern_error("cannot start threads: %s", tern_strerror(r));
                for (int i = 0; i < w; i++) {
                        __atomic_store_n(&s->loops[i].stop_req, true, __ATOMIC_RELEASE);
                        tern__loop_wake(&s->loops[i]);
                        pthread_join(s->loops[i].thread, NULL);
                }
                return r;
        }
        s->started = true;
        return 0;
}

void tern_server_stop(tern_server *s)
{
        __atomic_store_n(&s->stop_req, true, __ATOMIC_RELEASE);
        uint64_t one = 1;
        ssize_t r = write(s->acc_evfd, &one, sizeof(one));
        (void)r;
}

int tern_server_wait(tern_server *s)
{
        if (!s->started)
                return -EINVAL;
        int r = -pthread_join(s->acc_thread, NULL);
        s->started = false;
        return r;
}

int tern_server_run(tern_server *s)
{
        int r = tern_server_start(s);
        return r ? r : tern_server_wait(s);
}

void tern_server_free(tern_server *s)
{
        if (!s)
                return;
        if (s->started) {
                tern_server_stop(s);
                tern_server_wait(s);
        }
        for (int i = 0; i < s->nworkers; i++)
                tern__loop_destroy(&s->loops[i]);
        free(s->loops);
        close_listeners(s);
        close(s->acc_epfd);
        close(s->acc_evfd);
        free(s);
}

uint16_t tern_server_port(const tern_server *s)
{
        return s->port;
}

int tern_server_workers(const tern_server *s)
{
        return s->nworkers;
}

void *tern_server_user(const tern_server *s)
{
        return s->opts.user;
}

tern_loop *tern_server_loop(const tern_server *s, int i)
{
        return i >= 0 && i < s->nworkers ? &s->loops[i] : NULL;
}

static void add_counters(struct tern_stats *dst, const struct tern__counters *src)
{
        uint64_t *d = (uint64_t *)dst;
        for (size_t i = 0; i < sizeof(*dst) / sizeof(uint64_t); i++)
                d[i] += ck_pr_load_64((uint64_t *)&src->v[i]);
}

void tern_server_stats(const tern_server *s, struct tern_stats *total,
                       struct tern_stats *per_worker)
{
        struct tern_stats sum;
        memset(&sum, 0, sizeof(sum));
        for (int w = 0; w < s->nworkers; w++) {
                add_counters(&sum, &s->loops[w].stats);
                if (per_worker) {
                        memset(&per_worker[w], 0, sizeof(per_worker[w]));
                        add_counters(&per_worker[w], &s->loops[w].stats);
                }
        }
        add_counters(&sum, &s->acc_stats);
        if (total)
                *total = sum;
}
