/*
 * The server: listeners, worker loops and their threads, and the acceptor
 * (acceptor.c), which runs on its own thread or on worker 0's loop.
 *
 * The top of the layers: it makes loops (loop.c) and their threads, gives
 * each listener a connection stack (conn.c) and its sockets to the
 * acceptor (acceptor.c), which hands connections to the workers.
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
#include <sys/stat.h>
#include <sys/un.h>
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
        struct tern_conn_limits l;
        tern_conn_limits_init(&l);
        o->backlog = 1024;
        o->drain_timeout_ms = 5000;
        o->max_outbuf = l.max_outbuf;
        o->max_inbuf = l.max_inbuf;
        o->read_budget = l.read_budget;
        o->nodelay = true;
}

void tern_listener_opts_init(struct tern_listener_opts *o)
{
        memset(o, 0, sizeof(*o));
        o->nodelay = true;
}

/* ---- listeners ---- */

static int listen_tcp_one(struct tern_server *s, struct tern__listener *ln,
                          const struct tern_listener_opts *o, const struct addrinfo *ai)
{
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
        if (ln->port) { /* an ephemeral port chosen by the first socket */
                if (addr.ss_family == AF_INET)
                        ((struct sockaddr_in *)&addr)->sin_port = htons(ln->port);
                else
                        ((struct sockaddr_in6 *)&addr)->sin6_port = htons(ln->port);
        }
        int backlog = o->backlog ? o->backlog : s->opts.backlog;
        if (bind(fd, (struct sockaddr *)&addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        socklen_t len = sizeof(addr);
        if (getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
                ln->port =
                    ntohs(addr.ss_family == AF_INET ? ((struct sockaddr_in *)&addr)->sin_port
                                                    : ((struct sockaddr_in6 *)&addr)->sin6_port);
        return fd;
}

/* The acceptor takes @fd, or it is closed. */
static int add_lfd(struct tern_server *s, int fd, struct tern__listener *ln)
{
        int r = tern__acceptor_add(&s->acc, fd, &ln->cfg, ln->drain_last);
        if (r < 0)
                close(fd);
        return r;
}

static int listen_tcp(struct tern_server *s, struct tern__listener *ln,
                      const struct tern_listener_opts *o)
{
        char port[8];
        snprintf(port, sizeof(port), "%u", o->port);
        struct addrinfo hints = {
            .ai_family = AF_UNSPEC,
            .ai_socktype = SOCK_STREAM,
            .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
        };
        struct addrinfo *res;
        int r = getaddrinfo(o->bind, port, &hints, &res);
        if (r != 0) {
                tern_error("cannot resolve bind address '%s': %s", o->bind ? o->bind : "*",
                           gai_strerror(r));
                return -EINVAL;
        }
        int err = 0, made = 0;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                int fd = listen_tcp_one(s, ln, o, ai);
                if (fd < 0) {
                        err = fd;
                        /* A wildcard bind on a host without IPv6 still serves v4. */
                        if (!o->bind && fd == -EAFNOSUPPORT)
                                continue;
                        tern_error("cannot listen on %s port %s: %s", o->bind ? o->bind : "*", port,
                                   tern_strerror(fd));
                        break;
                }
                err = add_lfd(s, fd, ln);
                if (err)
                        break;
                made++;
        }
        freeaddrinfo(res);
        if (made == 0 || (err && err != -EAFNOSUPPORT))
                return err ? err : -EADDRNOTAVAIL;
        return 0;
}

/*
 * A socket file left at @path: a stale one (a server that is gone: connect
 * is refused) is removed; a live one is EADDRINUSE; anything that is not a
 * socket is EEXIST and is never removed.
 */
static int clear_stale_socket(const struct sockaddr_un *sun)
{
        struct stat st;
        if (lstat(sun->sun_path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
        int e = errno;
        close(fd);
        if (r == 0)
                return -EADDRINUSE;
        if (e != ECONNREFUSED)
                return e == ENOENT ? 0 : -e;
        tern_info("removing stale socket file %s", sun->sun_path);
        return unlink(sun->sun_path) < 0 && errno != ENOENT ? -errno : 0;
}

static int listen_unix(struct tern_server *s, struct tern__listener *ln,
                       const struct tern_listener_opts *o)
{
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (!o->path || !o->path[0] || strlen(o->path) >= sizeof(sun.sun_path))
                return -EINVAL;
        memcpy(sun.sun_path, o->path, strlen(o->path) + 1); /* length checked above */
        int r = clear_stale_socket(&sun);
        if (r < 0) {
                tern_error("cannot listen on %s: %s", o->path,
                           r == -EEXIST ? "exists and is not a socket" : tern_strerror(r));
                return r;
        }
        ln->path = strdup(o->path);
        if (!ln->path)
                return -ENOMEM;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int backlog = o->backlog ? o->backlog : s->opts.backlog;
        struct stat st;
        if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
                goto out_close_fd;
        /* From here the file is ours: remove it on failure and at free. */
        if (lstat(o->path, &st) == 0) {
                ln->dev = st.st_dev;
                ln->ino = st.st_ino;
        }
        if ((o->mode && chmod(o->path, o->mode) < 0) || listen(fd, backlog) < 0) {
                int e = errno;
                unlink(o->path);
                ln->ino = 0;
                errno = e;
                goto out_close_fd;
        }
        return add_lfd(s, fd, ln);

out_close_fd : {
        int e = errno;
        tern_error("cannot listen on %s: %s", o->path, strerror(e));
        close(fd);
        return -e;
}
}

/* Removes a listener's socket file if it is still the one it bound. */
static void unlink_ours(const struct tern__listener *ln)
{
        struct stat st;
        if (ln->path && ln->ino && lstat(ln->path, &st) == 0 && st.st_dev == ln->dev &&
            st.st_ino == ln->ino)
                unlink(ln->path);
}

static void listener_free(struct tern__listener *ln)
{
        unlink_ours(ln);
        free(ln->path);
        free(ln);
}

int tern_server_listen(tern_server *s, const struct tern_listener_opts *o)
{
        if (s->started)
                return -EBUSY;
        if (s->nlisteners == TERN__MAX_LISTENERS)
                return -ENOSPC;
        if ((unsigned)o->kind > TERN_LISTEN_UNIX)
                return -EINVAL;
        struct tern__listener *ln = TERN__CALLOC(1, sizeof(*ln));
        if (!ln)
                return -ENOMEM;
        ln->kind = o->kind;
        ln->drain_last = o->drain_last;
        struct tern__conn_cfg *cfg = &ln->cfg;
        cfg->ops = o->ops;
        cfg->codec = o->codec;
        cfg->codec_config = o->codec_config;
        cfg->limits = o->limits ? *o->limits : s->limits;
        cfg->idle_timeout_ms = o->idle_timeout_ms;
        cfg->nodelay = o->nodelay;
        cfg->unix_domain = o->kind == TERN_LISTEN_UNIX;
        cfg->live = &s->acc.live_conns;
        cfg->user = o->user;
        cfg->xport = tern__xport_of(o->tls);

        int first = s->acc.nlfds;
        int r = o->kind == TERN_LISTEN_UNIX ? listen_unix(s, ln, o) : listen_tcp(s, ln, o);
        if (r < 0) {
                tern__acceptor_truncate(&s->acc, first);
                listener_free(ln);
                return r;
        }
        s->listeners[s->nlisteners] = ln;
        return s->nlisteners++;
}

uint16_t tern_server_listener_port(const tern_server *s, int id)
{
        return id >= 0 && id < s->nlisteners ? s->listeners[id]->port : 0;
}

uint16_t tern_server_port(const tern_server *s)
{
        for (int i = 0; i < s->nlisteners; i++)
                if (s->listeners[i]->kind == TERN_LISTEN_TCP)
                        return s->listeners[i]->port;
        return 0;
}

/* ---- new / free ---- */

static void workers_free(struct tern_server *s)
{
        if (!s->workers)
                return;
        for (int i = 0; i < s->nworkers; i++)
                tern_loop_free(s->workers[i].loop);
        free(s->workers);
}

static int workers_new(struct tern_server *s)
{
        s->workers = TERN__CALLOC((size_t)s->nworkers, sizeof(*s->workers));
        if (!s->workers)
                return -ENOMEM;
        struct tern_loop_opts lo;
        tern_loop_opts_init(&lo);
        lo.drain_timeout_ms = s->opts.drain_timeout_ms;
        lo.on_start = s->opts.on_worker_start;
        lo.on_stop = s->opts.on_worker_stop;
        lo.user = s->opts.user;
        for (int i = 0; i < s->nworkers; i++) {
                s->workers[i].loop = tern__loop_new(&lo, i, s);
                if (!s->workers[i].loop)
                        return -errno;
        }
        return 0;
}

static int acceptor_new(struct tern_server *s)
{
        enum tern_accept_mode mode = s->opts.accept;
        if (mode == TERN_ACCEPT_AUTO)
                mode = s->nworkers == 1 ? TERN_ACCEPT_WORKER : TERN_ACCEPT_THREAD;
        struct tern_loop *loops[256];
        for (int i = 0; i < s->nworkers; i++)
                loops[i] = s->workers[i].loop;
        return tern__acceptor_init(&s->acc, loops, s->nworkers, mode == TERN_ACCEPT_WORKER,
                                   s->opts.max_conns);
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
        struct tern_conn_limits *l = &s->limits;
        l->max_outbuf = o->max_outbuf;
        l->max_inbuf = o->max_inbuf;
        l->high_water = o->high_water;
        l->low_water = o->low_water ? o->low_water : o->high_water / 2;
        l->read_budget = o->read_budget;
        l->linger_ms = o->drain_timeout_ms;
        s->nworkers = o->workers ? o->workers : tern_default_workers();
        if (s->nworkers > 255)
                s->nworkers = 255;
        int r = workers_new(s);
        if (r < 0)
                goto out_free_workers;
        r = acceptor_new(s);
        if (r < 0)
                goto out_free_acceptor;
        if (!o->no_listen) {
                struct tern_listener_opts lo;
                tern_listener_opts_init(&lo);
                lo.bind = o->bind;
                lo.port = o->port;
                lo.reuseport = o->reuseport;
                lo.nodelay = o->nodelay;
                lo.ops = o->ops;
                lo.codec = o->codec;
                lo.codec_config = o->codec_config;
                lo.tls = o->tls;
                lo.idle_timeout_ms = o->idle_timeout_ms;
                r = tern_server_listen(s, &lo);
                if (r < 0)
                        goto out_free_acceptor;
        }
        return s;

out_free_acceptor:
        tern__acceptor_destroy(&s->acc);
        for (int i = 0; i < s->nlisteners; i++)
                listener_free(s->listeners[i]);
out_free_workers:
        workers_free(s);
        free(s);
        errno = -r;
        return NULL;
}

static void *worker_thread(void *arg)
{
        struct tern__worker *w = arg;
        char name[16];
        snprintf(name, sizeof(name), "worker-%d", tern_loop_index(w->loop));
        tern_log_set_thread_name(name);
        pthread_setname_np(pthread_self(), name);
        tern_loop_run(w->loop);
        return NULL;
}

/* Starts the threads of workers @first.. and the acceptor's, if it has one. */
static int start_threads(struct tern_server *s, int first)
{
        /* Threads tern starts never take process signals: the application's
         * handler runs on its own thread and calls tern_server_stop(). */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int r = 0, w;
        for (w = first; w < s->nworkers; w++) {
                r = -pthread_create(&s->workers[w].thread, NULL, worker_thread, &s->workers[w]);
                if (r)
                        break;
        }
        if (!r)
                r = tern__acceptor_start(&s->acc);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r) {
                tern_error("cannot start threads: %s", tern_strerror(r));
                /* The workers that never ran cannot reach the drain's last
                 * phase: the ones that did must not wait for them there. */
                for (int i = 0; i < s->nworkers; i++)
                        tern__loop_open_late(s->workers[i].loop);
                for (int i = first; i < w; i++) {
                        tern_loop_stop(s->workers[i].loop);
                        pthread_join(s->workers[i].thread, NULL);
                }
        }
        return r;
}

static int prepare(struct tern_server *s)
{
        return s->started ? -EALREADY : 0;
}

int tern_server_start(tern_server *s)
{
        int r = prepare(s);
        if (r)
                return r;
        r = start_threads(s, 0);
        if (!r)
                s->started = true;
        return r;
}

void tern_server_stop(tern_server *s)
{
        __atomic_store_n(&s->stop_req, true, __ATOMIC_RELEASE);
        tern__acceptor_request_stop(&s->acc);
}

bool tern_server_draining(const tern_server *s)
{
        return __atomic_load_n(&s->stop_req, __ATOMIC_ACQUIRE);
}

/* Joins the acceptor, then the workers from @first on. */
static int join_threads(struct tern_server *s, int first)
{
        int r = tern__acceptor_join(&s->acc);
        for (int w = first; w < s->nworkers; w++) {
                int e = -pthread_join(s->workers[w].thread, NULL);
                if (e && !r)
                        r = e;
        }
        return r;
}

int tern_server_wait(tern_server *s)
{
        if (!s->started || s->run_here)
                return -EINVAL;
        int r = join_threads(s, 0);
        s->started = false;
        return r;
}

int tern_server_run(tern_server *s)
{
        int r = prepare(s);
        if (r)
                return r;
        if (!s->acc.home) {
                r = tern_server_start(s);
                return r ? r : tern_server_wait(s);
        }
        /* Worker 0 accepts: let it be the caller's thread, which would only
         * sleep in pthread_join otherwise. With one worker the process then
         * has no thread of tern's at all, and the kernel's single-threaded
         * fast paths (no file reference counting per system call) apply. */
        r = start_threads(s, 1);
        if (r)
                return r;
        s->started = true;
        s->run_here = true;
        /* The caller's thread: its log name changes while it serves, its
         * process-visible name (comm) does not. */
        tern_log_set_thread_name("worker-0");
        if (__atomic_load_n(&s->stop_req, __ATOMIC_ACQUIRE))
                tern_loop_stop(s->workers[0].loop); /* stopped before it ran */
        tern_loop_run(s->workers[0].loop);
        tern_log_set_thread_name("main");
        r = join_threads(s, 1);
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
        tern__acceptor_destroy(&s->acc);
        workers_free(s);
        for (int i = 0; i < s->nlisteners; i++)
                listener_free(s->listeners[i]);
        free(s);
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
        return i >= 0 && i < s->nworkers ? s->workers[i].loop : NULL;
}

tern_server *tern_loop_server(const tern_loop *l)
{
        return l->owner;
}

tern_server *tern_conn_server(const tern_conn *c)
{
        return tern_conn_loop(c)->owner;
}

void tern_server_stats(const tern_server *s, struct tern_stats *total,
                       struct tern_stats *per_worker)
{
        struct tern_stats sum;
        memset(&sum, 0, sizeof(sum));
        for (int w = 0; w < s->nworkers; w++) {
                tern__counters_add(&sum, &s->workers[w].loop->stats);
                if (per_worker)
                        tern_loop_stats(s->workers[w].loop, &per_worker[w]);
        }
        tern__counters_add(&sum, &s->acc.stats);
        if (total)
                *total = sum;
}

/* ---- cross-thread, through handles ---- */

static struct tern_loop *owner_of(tern_server *s, tern_handle h)
{
        int w = tern__handle_index(h);
        if (w < 0 || w >= s->nworkers)
                return NULL;
        return s->workers[w].loop;
}

int tern_handle_send(tern_server *s, tern_handle h, const void *data, size_t len)
{
        struct tern_loop *l = owner_of(s, h);
        return l ? tern__conn_post_send(l, h, data, len) : -EINVAL;
}

int tern_handle_close(tern_server *s, tern_handle h)
{
        struct tern_loop *l = owner_of(s, h);
        return l ? tern__conn_post_close(l, h) : -EINVAL;
}

int tern_handle_post(tern_server *s, tern_handle h, tern_conn_task_cb cb, void *arg)
{
        struct tern_loop *l = owner_of(s, h);
        return l ? tern__conn_post_task(l, h, cb, arg) : -EINVAL;
}
