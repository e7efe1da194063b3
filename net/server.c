/*
 * The server: listeners, worker threads, and the acceptor (acceptor.c),
 * which runs on its own thread or on worker 0's loop.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cpu.h"
#include "error.h"
#include "fault_internal.h"
#include "log.h"
#include "server_internal.h"

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

void tern__server_close_listeners(struct tern_server *s)
{
        for (int i = 0; i < s->nlisteners; i++)
                close(s->listen_fds[i]);
        s->nlisteners = 0;
}

tern_server *tern_server_new(const struct tern_server_opts *o)
{
        if (o->workers < 0 || o->workers > 255 || o->read_budget == 0 || o->max_outbuf == 0 ||
            o->max_inbuf == 0 || (unsigned)o->accept > TERN_ACCEPT_WORKER) {
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
        r = tern__acceptor_init(s);
        if (r < 0)
                goto out_destroy_loops;
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
        tern__server_close_listeners(s);
out_free_server:
        free(s);
        errno = -r;
        return NULL;
}

/* Starts the threads of loops @first.. and the acceptor's, if it has one. */
static int start_threads(struct tern_server *s, int first)
{
        /* Threads tern starts never take process signals: the application's
         * handler runs on its own thread and calls tern_server_stop(). */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int r = 0, w;
        for (w = first; w < s->nworkers; w++) {
                r = -pthread_create(&s->loops[w].thread, NULL, tern__loop_thread, &s->loops[w]);
                if (r)
                        break;
        }
        if (!r)
                r = tern__acceptor_start(s);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r) {
                tern_error("cannot start threads: %s", tern_strerror(r));
                for (int i = first; i < w; i++) {
                        __atomic_store_n(&s->loops[i].stop_req, true, __ATOMIC_RELEASE);
                        tern__loop_wake(&s->loops[i]);
                        pthread_join(s->loops[i].thread, NULL);
                }
        }
        return r;
}

int tern_server_start(tern_server *s)
{
        if (s->started)
                return -EALREADY;
        int r = start_threads(s, 0);
        if (!r)
                s->started = true;
        return r;
}

void tern_server_stop(tern_server *s)
{
        __atomic_store_n(&s->stop_req, true, __ATOMIC_RELEASE);
        tern__acceptor_request_stop(s);
}

int tern_server_wait(tern_server *s)
{
        if (!s->started || s->run_here)
                return -EINVAL;
        int r = tern__acceptor_join(s);
        s->started = false;
        return r;
}

int tern_server_run(tern_server *s)
{
        if (!s->acc.home) {
                int r = tern_server_start(s);
                return r ? r : tern_server_wait(s);
        }
        /* Worker 0 accepts: let it be the caller's thread, which would only
         * sleep in pthread_join otherwise. With one worker the process then
         * has no thread of tern's at all, and the kernel's single-threaded
         * fast paths (no file reference counting per system call) apply. */
        if (s->started)
                return -EALREADY;
        int r = start_threads(s, 1);
        if (r)
                return r;
        s->started = true;
        s->run_here = true;
        tern__loop_run_here(&s->loops[0]);
        for (int w = 1; w < s->nworkers; w++) {
                int e = -pthread_join(s->loops[w].thread, NULL);
                if (e && !r)
                        r = e;
        }
        s->run_here = false;
        s->started = false;
        return r;
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
        tern__server_close_listeners(s);
        if (s->acc_epfd >= 0)
                close(s->acc_epfd);
        if (s->acc_evfd >= 0)
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
