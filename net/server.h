/**
 * @file
 * Servers: listeners, an acceptor and N worker loops.
 *
 * A server listens on one or more addresses (TCP over IPv4/IPv6, or a
 * Unix-domain stream socket), each listener with its own stack: callbacks,
 * codec, limits. The acceptor accepts in bursts and hands each connection
 * round-robin to a worker through a single-producer ring, waking each
 * worker once per burst; from then on the worker owns the connection (see
 * conn.h). The acceptor runs on a thread of its own, or on worker 0's loop
 * (see tern_accept_mode). Every listener is served by the same workers.
 *
 * Calling contexts: [any] any thread; [signal] also from a signal handler;
 * [loop] as in loop.h.
 */
#ifndef TERN_SERVER_H
#define TERN_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/types.h>

#include "codec.h"
#include "conn.h"
#include "export.h"
#include "loop.h"

struct tern_tls; /* tls.h */

/** A server (opaque). */
typedef struct tern_server tern_server;

/** Where the acceptor runs (tern_server_opts.accept). */
enum tern_accept_mode {
        /** The default: TERN_ACCEPT_WORKER with one worker, else TERN_ACCEPT_THREAD. */
        TERN_ACCEPT_AUTO = 0,
        /** A thread of its own that only accepts: every new connection
         * reaches its worker through the ring and an eventfd wake-up. */
        TERN_ACCEPT_THREAD,
        /** Worker 0's loop accepts between its events: it keeps its own
         * share of connections without a hand-off (no ring, no wake-up, no
         * thread switch) and hands the others out as the thread would. With
         * one worker this makes the server a single-threaded loop. */
        TERN_ACCEPT_WORKER,
};

/**
 * Options for tern_server_new(); start from tern_server_opts_init().
 * Unless no_listen is set, bind/port/ops/codec describe the server's first
 * listener (id 0); tern_server_listen() adds more. The limits apply to every
 * listener that does not bring its own.
 */
struct tern_server_opts {
        const char *bind;                /**< address; NULL = every IPv4 and IPv6 address */
        uint16_t port;                   /**< 0 = an ephemeral port (see tern_server_port) */
        int workers;                     /**< 0 = CPUs this process may run on */
        enum tern_accept_mode accept;    /**< where to accept; default TERN_ACCEPT_AUTO */
        int backlog;                     /**< listen(2) backlog; default 1024 */
        uint32_t max_conns;              /**< 0 = unlimited; beyond it: accepted, closed */
        uint32_t idle_timeout_ms;        /**< 0 = off; see tern_conn_set_idle_timeout */
        uint32_t drain_timeout_ms;       /**< graceful stop / close deadline; default 5000 */
        size_t max_outbuf;               /**< hard cap on queued output; default 64 MiB */
        size_t max_inbuf;                /**< hard cap on input on_message leaves
                                            unconsumed (connections without a
                                            codec; a codec bounds its own);
                                            default 16 MiB */
        size_t high_water;               /**< 0 = no high/low water callbacks */
        size_t low_water;                /**< default high_water / 2 */
        size_t read_budget;              /**< bytes read per connection per iteration;
                                            default 256 KiB */
        bool nodelay;                    /**< TCP_NODELAY on TCP connections; default true */
        bool reuseport;                  /**< SO_REUSEPORT on the listeners */
        bool no_listen;                  /**< no first listener from bind/port: only
                                            those of tern_server_listen(), if any */
        const struct tern_conn_ops *ops; /**< borrowed; must outlive the server */
        const struct tern_codec *codec;  /**< optional, for every connection */
        const void *codec_config;        /**< borrowed until tern_server_free() */
        const struct tern_tls *tls;      /**< TLS on the first listener (tls.h);
                                              borrowed, must outlive the server;
                                              NULL = plain */
        void *user;                      /**< tern_server_user() */
        /** Run on each worker thread as it starts / just before it exits
         * (after its connections closed): set up and stop per-loop timers. */
        /** @{ */
        void (*on_worker_start)(tern_loop *loop, void *user);
        void (*on_worker_stop)(tern_loop *loop, void *user);
        /** @} */
};

/** Fills @p o with the defaults documented above. [any] */
TERN_EXPORT void tern_server_opts_init(struct tern_server_opts *o);

/**
 * tern_server_new - create a server and bind its first listener. [any]
 * Copies @p o (pointers inside are borrowed as documented above).
 * Returns NULL with errno set (EADDRINUSE, EINVAL for bad options, ...).
 */
TERN_EXPORT tern_server *tern_server_new(const struct tern_server_opts *o);

/** What a listener listens on. */
enum tern_listen_kind {
        TERN_LISTEN_TCP = 0, /**< bind/port, IPv4 and IPv6 */
        TERN_LISTEN_UNIX,    /**< a Unix-domain stream socket at path */
};

/** A further listener for tern_server_listen(); start from tern_listener_opts_init(). */
struct tern_listener_opts {
        enum tern_listen_kind kind;      /**< default TERN_LISTEN_TCP */
        const char *bind;                /**< TCP: address; NULL = every IPv4 and IPv6 one */
        uint16_t port;                   /**< TCP: 0 = ephemeral (tern_server_listener_port) */
        const char *path;                /**< UNIX: the socket file (copied) */
        mode_t mode;                     /**< UNIX: permissions of the socket file
                                              (e.g. 0660); 0 = as the umask leaves them */
        int backlog;                     /**< listen(2) backlog; 0 = the server's */
        bool reuseport;                  /**< TCP: SO_REUSEPORT */
        bool nodelay;                    /**< TCP: TCP_NODELAY; default true */
        const struct tern_conn_ops *ops; /**< borrowed; must outlive the server */
        const struct tern_codec *codec;  /**< optional */
        const void *codec_config;        /**< borrowed until tern_server_free() */
        uint32_t idle_timeout_ms;        /**< 0 = off */
        const struct tern_conn_limits *limits; /**< copied; NULL = the server's */
        const struct tern_tls *tls;            /**< TLS (tls.h); borrowed, must outlive
                                                    the server; NULL = plain */
        void *user;                            /**< tern_conn_listener_user() */
        /** Serve through a graceful stop ("lame duck"): this listener keeps
         * accepting after tern_server_stop(), and its connections are left
         * alone (no on_drain) while the other listeners' connections drain;
         * once only such connections are left on every worker (or the
         * drain timeout passes) they drain like any other and the listener
         * closes. For an admin or health endpoint that must answer
         * "draining" during the drain. Default false. */
        bool drain_last;
};

/** Fills @p o with the defaults documented above. [any] */
TERN_EXPORT void tern_listener_opts_init(struct tern_listener_opts *o);

/**
 * tern_server_listen - add a listener, bound and listening at once, served
 * by the same workers as every other. Before tern_server_start() or
 * tern_server_run() only. [any]
 *
 * A Unix-domain socket file left behind by a server that is gone (nothing
 * accepts on it) is replaced; a live one is EADDRINUSE, and a path that is
 * not a socket is EEXIST (never removed). The file is removed again by
 * tern_server_free(), unless something else has replaced it meanwhile.
 *
 * Returns the listener's id (>= 0, in the order added, the first listener
 * of tern_server_new() being 0), or -EBUSY (the server has started),
 * -ENOSPC (8 listeners already), -EINVAL (bad options, a path too long),
 * or the error of socket(), bind() or listen().
 */
TERN_EXPORT int tern_server_listen(tern_server *s, const struct tern_listener_opts *o);

/** The port listener @p id is bound to (TCP), or 0. [any] */
TERN_EXPORT uint16_t tern_server_listener_port(const tern_server *s, int id);

/** Starts the workers and the acceptor. Returns 0 or -errno. [any] */
TERN_EXPORT int tern_server_start(tern_server *s);

/**
 * tern_server_stop - begin a graceful stop: listeners close at once (but
 * those with drain_last, see tern_listener_opts), every
 * connection gets on_drain then a graceful close, and whatever has not
 * flushed by drain_timeout_ms is aborted. Returns at once; idempotent.
 * [signal] Async-signal-safe: call it from a SIGTERM handler.
 */
TERN_EXPORT void tern_server_stop(tern_server *s);

/** Whether tern_server_stop() has been called: the server drains (or has
 * stopped). [any] Async-signal-safe. */
TERN_EXPORT bool tern_server_draining(const tern_server *s);

/** Waits until a server started with tern_server_start() has stopped and
 * joined all threads. [any, but not a worker of @p s] Returns 0 or -errno
 * (-EINVAL if it was not started, or runs in tern_server_run()). */
TERN_EXPORT int tern_server_wait(tern_server *s);

/**
 * tern_server_run - start, serve until stopped, then return: start + wait,
 * except that when worker 0 accepts (TERN_ACCEPT_WORKER, which is the
 * default with one worker) the calling thread becomes worker 0 instead of
 * sleeping. A one-worker server then runs entirely on the caller's thread,
 * like a libevent or libuv program: its callbacks run there, and signals
 * reach it there (tern_server_stop() from a handler is fine). The calling
 * thread must not be registered with liburcu-qsbr (tern registers it for
 * the run). [any, but not a worker of @p s] Returns 0 or -errno.
 */
TERN_EXPORT int tern_server_run(tern_server *s);

/** Frees a server that was never started or has been waited for. [any] */
TERN_EXPORT void tern_server_free(tern_server *s);

/** The port of the first TCP listener, or 0. [any] */
TERN_EXPORT uint16_t tern_server_port(const tern_server *s);
TERN_EXPORT int tern_server_workers(const tern_server *s); /**< [any] */
TERN_EXPORT void *tern_server_user(const tern_server *s);  /**< [any] */
/** Loop of worker @p i (0-based), or NULL. [any] */
TERN_EXPORT tern_loop *tern_server_loop(const tern_server *s, int i);

/** Sums the counters of every worker and the acceptor into @p total (when not
 * NULL); fills @p per_worker[0..workers-1] when it is not NULL. [any] */
TERN_EXPORT void tern_server_stats(const tern_server *s, struct tern_stats *total,
                                   struct tern_stats *per_worker);

/** The server whose worker loop owns @p c. [loop] */
TERN_EXPORT tern_server *tern_conn_server(const tern_conn *c);

/** The server whose worker @p loop is, or NULL for a loop of tern_loop_new(). [any] */
TERN_EXPORT tern_server *tern_loop_server(const tern_loop *loop);

/** @{ */
/**
 * Cross-thread operations on a connection's handle (conn.h). [any]
 * They copy what they need, post to the owning loop and return at once.
 * Returns 0 when posted (a stale handle is then silently ignored by the
 * owner), -EINVAL for a handle that was never valid for @p s, -ENOMEM, or
 * -ESHUTDOWN once the owner loop has finished.
 */
TERN_EXPORT int tern_handle_send(tern_server *s, tern_handle h, const void *data, size_t len);
TERN_EXPORT int tern_handle_close(tern_server *s, tern_handle h);
/** @} */

/** Runs @p cb(c, @p arg) on the owner with the live connection, or with c = NULL
 * if the handle turned stale, so @p arg can always be released. Exactly once
 * when 0 is returned. [any] Returns what tern_handle_send() returns. */
TERN_EXPORT int tern_handle_post(tern_server *s, tern_handle h, tern_conn_task_cb cb, void *arg);

/** CPUs this process may use: its affinity mask capped by a cgroup CPU quota
 * (see cpu.h), at least 1. [any] */
TERN_EXPORT int tern_default_workers(void);

#endif
