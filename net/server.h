/**
 * @file
 * Servers: an acceptor plus N worker loops.
 *
 * The acceptor accepts in bursts and hands each connection round-robin to a
 * worker through a single-producer ring, waking each worker once per burst.
 * From then on the worker owns the connection (see conn.h). The acceptor runs
 * on a thread of its own, or on worker 0's loop (see tern_accept_mode).
 *
 * Calling contexts: [any] any thread; [signal] also from a signal handler.
 */
#ifndef TERN_SERVER_H
#define TERN_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "conn.h"
#include "loop.h"

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

/** Options for tern_server_new(); start from tern_server_opts_init(). */
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
        bool no_delay_off;               /**< true: leave Nagle on (TCP_NODELAY is the default) */
        bool reuseport;                  /**< SO_REUSEPORT on the listeners */
        bool no_listen;                  /**< no listeners: the workers only run
                                            connectors (a client-only process) */
        const struct tern_conn_ops *ops; /**< borrowed; must outlive the server */
        const struct tern_codec *codec;  /**< optional, for every connection */
        const void *codec_config;        /**< borrowed until tern_server_free() */
        void *user;                      /**< tern_server_user() */
        /** Run on each worker thread as it starts / just before it exits
         * (after its connections closed): set up and stop per-loop timers. */
        /** @{ */
        void (*on_worker_start)(tern_loop *loop, void *user);
        void (*on_worker_stop)(tern_loop *loop, void *user);
        /** @} */
};

/** Per-worker counters; readable from any thread without locks. */
struct tern_stats {
        uint64_t conns;            /**< open now */
        uint64_t accepted;         /**< handed to this worker */
        uint64_t closed;           /**< closed so far */
        uint64_t rejected;         /**< over max_conns (acceptor only) */
        uint64_t accept_errors;    /**< EMFILE and friends (acceptor only) */
        uint64_t bytes_in;         /**< read from sockets */
        uint64_t bytes_out;        /**< written to sockets */
        uint64_t writes;           /**< send syscalls */
        uint64_t loop_iters;       /**< event loop iterations */
        uint64_t wakeups;          /**< eventfd wake-ups */
        uint64_t codec_errors;     /**< connections closed by a codec error */
        uint64_t outbuf_overflows; /**< connections closed past max_outbuf */
        uint64_t inbuf_overflows;  /**< connections closed past max_inbuf */
        uint64_t idle_timeouts;    /**< connections closed by the idle timeout */
        uint64_t connects;         /**< outgoing connections established (client.h) */
        uint64_t connect_errors;   /**< outgoing connect attempts that failed */
        uint64_t setup_errors;     /**< new connections dropped: no memory, epoll_ctl */
};

/** Fills @p o with the defaults documented above. [any] */
void tern_server_opts_init(struct tern_server_opts *o);

/**
 * tern_server_new - create a server and bind its listeners. [any]
 * Copies @p o (pointers inside are borrowed as documented above).
 * Returns NULL with errno set (EADDRINUSE, EINVAL for bad options, ...).
 */
tern_server *tern_server_new(const struct tern_server_opts *o);

/** Starts the workers and the acceptor. Returns 0 or -errno. [any] */
int tern_server_start(tern_server *s);

/**
 * tern_server_stop - begin a graceful stop: listeners close at once, every
 * connection gets on_drain then a graceful close, and whatever has not
 * flushed by drain_timeout_ms is aborted. Returns at once; idempotent.
 * [signal] Async-signal-safe: call it from a SIGTERM handler.
 */
void tern_server_stop(tern_server *s);

/** Waits until a server started with tern_server_start() has stopped and
 * joined all threads. [any, but not a worker of @p s] Returns 0 or -errno
 * (-EINVAL if it was not started, or runs in tern_server_run()). */
int tern_server_wait(tern_server *s);

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
int tern_server_run(tern_server *s);

/** Frees a server that was never started or has been waited for. [any] */
void tern_server_free(tern_server *s);

uint16_t tern_server_port(const tern_server *s); /**< bound port [any] */
int tern_server_workers(const tern_server *s);   /**< [any] */
void *tern_server_user(const tern_server *s);    /**< [any] */
/** Loop of worker @p i (0-based), or NULL. [any] */
tern_loop *tern_server_loop(const tern_server *s, int i);

/** Sums the counters of every worker and the acceptor into @p total (when not
 * NULL); fills @p per_worker[0..workers-1] when it is not NULL. [any] */
void tern_server_stats(const tern_server *s, struct tern_stats *total,
                       struct tern_stats *per_worker);

/** CPUs this process may use: its affinity mask capped by a cgroup CPU quota
 * (see cpu.h), at least 1. [any] */
int tern_default_workers(void);

#endif
