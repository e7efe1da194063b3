/**
 * @file
 * Event loops: epoll (edge-triggered for connections, level-triggered for
 * watches of other fds), a timer wheel, a mailbox.
 *
 * A loop stands alone: tern_loop_new(), tern_loop_run() on a thread of your
 * choice, tern_loop_stop() from anywhere (a signal handler too), then
 * tern_loop_free(). Connectors (connector.h), timers and fd watches work on
 * such a loop with no server; a server's workers are such loops, each run
 * on a thread of the server's.
 *
 * A loop owns what is registered with it: connections, watches, timers. Code
 * running on a loop's thread (the callbacks of what it owns, its tasks) may
 * touch all of it; other threads talk to it only through tern_loop_post()
 * and the handle functions of server.h.
 *
 * Callbacks never re-enter: no function an application calls runs one of
 * the application's callbacks before it returns. What such a call sets off
 * (a close, a water mark, a write completion) is reported by the loop after
 * the callback that made the call has returned.
 *
 * Calling contexts, in the manner of liburcu's documentation:
 *   [any]    any thread, including threads tern did not create
 *   [loop]   only the loop's own thread (inside its callbacks), or any one
 *            thread while the loop is not running (before tern_loop_run(),
 *            or after it returned)
 *   [signal] also from a signal handler
 */
#ifndef TERN_LOOP_H
#define TERN_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "export.h"
#include "timer.h"

/** An event loop (opaque). */
typedef struct tern_loop tern_loop;
/** A task for tern_loop_post(), run on @p loop's thread with the @p arg posted. */
typedef void (*tern_task_cb)(tern_loop *loop, void *arg);

/** Options for tern_loop_new(); start from tern_loop_opts_init(). */
struct tern_loop_opts {
        /** After tern_loop_stop(): how long connections may take to flush
         * and close before they are aborted. Default 5000 ms. */
        uint32_t drain_timeout_ms;
        /** Run on the loop's thread when tern_loop_run() starts, and when it
         * is about to return (after every connection closed): set up and
         * tear down per-loop state such as timers. Optional. */
        /** @{ */
        void (*on_start)(tern_loop *loop, void *user);
        void (*on_stop)(tern_loop *loop, void *user);
        /** @} */
        void *user; /**< tern_loop_user(); borrowed */
};

/** Fills @p o with the defaults documented above. [any] */
TERN_EXPORT void tern_loop_opts_init(struct tern_loop_opts *o);

/**
 * tern_loop_new - create a loop (not yet running). [any]
 * Copies @p o (NULL = defaults). Returns NULL with errno set: ENOMEM, or
 * what epoll_create1() / eventfd() failed with (EMFILE, ...).
 */
TERN_EXPORT tern_loop *tern_loop_new(const struct tern_loop_opts *o);

/**
 * tern_loop_run - run @p loop on the calling thread until tern_loop_stop()
 * and the graceful drain that follows: connectors stop, every connection
 * gets on_drain and a graceful close, bounded by drain_timeout_ms; then
 * on_stop runs and the mailbox is closed (tasks already accepted still run,
 * on this thread). A loop runs once. The calling thread must not be
 * registered with liburcu-qsbr (tern registers it for the run) nor be
 * running another loop. [any]
 * Returns 0, or -EALREADY if @p loop has already run or is running.
 */
TERN_EXPORT int tern_loop_run(tern_loop *loop);

/** tern_loop_stop - ask @p loop to drain and return from tern_loop_run().
 * Returns at once; idempotent; also before tern_loop_run() (which then
 * drains at once). [any] [signal] Async-signal-safe. */
TERN_EXPORT void tern_loop_stop(tern_loop *loop);

/**
 * tern_loop_free - free @p loop (NULL is a no-op): one that never ran, or
 * whose tern_loop_run() has returned. Connectors and watches still
 * registered are freed with it (a watch's fd is not closed); armed timers
 * are disarmed. [loop], never from the loop's own callbacks.
 */
TERN_EXPORT void tern_loop_free(tern_loop *loop);

/**
 * tern_loop_post - run @p cb(@p loop, @p arg) on @p loop's thread. [any]
 * Tasks run in the order they were posted by one thread, after the events
 * of the current iteration. The loop borrows @p arg; the task owns whatever
 * @p arg points to from the moment 0 is returned.
 * A task accepted (0) always runs exactly once, even when the loop is
 * shutting down (then during its final drain, still on the loop's thread).
 * Returns 0, -ENOMEM, or -ESHUTDOWN if the loop has finished (@p cb will not
 * run; @p arg stays the caller's).
 */
TERN_EXPORT int tern_loop_post(tern_loop *loop, tern_task_cb cb, void *arg);

/** The loop whose thread is calling (inside tern_loop_run()), or NULL. [any] */
TERN_EXPORT tern_loop *tern_loop_current(void);

/** Index of @p loop among its server's workers, 0..workers-1; 0 for a loop
 * made with tern_loop_new(). [any] */
TERN_EXPORT int tern_loop_index(const tern_loop *loop);

/** The opts' user pointer (borrowed; tern never frees it). For a server's
 * worker: tern_server_opts.user. [any] */
TERN_EXPORT void *tern_loop_user(const tern_loop *loop);

/** True once @p loop has begun its graceful drain (tern_loop_stop()). [loop] */
TERN_EXPORT bool tern_loop_draining(const tern_loop *loop);

/** Cached monotonic milliseconds, refreshed after every epoll_wait. [loop] */
TERN_EXPORT uint64_t tern_loop_now(const tern_loop *loop);

/**
 * tern_loop_timer_start - arm @p t (prepared with tern_timer_init()) to fire
 * on @p loop after at least @p after_ms, then every @p repeat_ms (0 = once). [loop]
 * Re-arms if already armed on @p loop. The loop borrows @p t: it must stay
 * valid until it fires (one-shot) or is stopped. Callbacks run on the
 * loop's thread; the wheel's tick is 1 ms and a timer never fires early.
 * Returns 0; -EBUSY if @p t is armed on another loop (nothing changed); or
 * -EPERM if called from a thread other than @p loop's while it runs.
 */
TERN_EXPORT int tern_loop_timer_start(tern_loop *loop, struct tern_timer *t, uint64_t after_ms,
                                      uint64_t repeat_ms);

/** Disarms @p t (a no-op if it is not armed). [loop] Returns 0, -EBUSY if
 * @p t is armed on another loop (nothing changed), or -EPERM as above. */
TERN_EXPORT int tern_loop_timer_stop(tern_loop *loop, struct tern_timer *t);

/** Per-loop counters; readable from any thread without locks. */
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
        uint64_t connects;         /**< outgoing connections established (connector.h) */
        uint64_t connect_errors;   /**< outgoing connect attempts that failed */
        uint64_t setup_errors;     /**< new connections dropped: no memory, epoll_ctl */
        uint64_t tls_handshakes;   /**< TLS handshakes finished (tls.h) */
        uint64_t tls_resumed;      /**< of which resumed a session */
        uint64_t tls_errors;       /**< TLS connections closed by a handshake or record error,
                                        or a handshake timeout */
        uint64_t queued_bytes;     /**< output queued on this worker's connections now,
                                        not yet taken by the kernel (a gauge) */
};

/** Copies @p loop's counters into @p out. [any] */
TERN_EXPORT void tern_loop_stats(const tern_loop *loop, struct tern_stats *out);

/** Buckets of a loop histogram: TERN_HIST_BOUNDS upper bounds, then +Inf. */
#define TERN_HIST_BOUNDS 14

/**
 * A loop's histogram of durations, written by its thread only and readable
 * from any thread without locks (each field exact, the set not one atomic
 * snapshot). Buckets are per bucket, not cumulative.
 */
struct tern_hist {
        uint64_t sum_ns;                        /**< sum of the observations */
        uint64_t buckets[TERN_HIST_BOUNDS + 1]; /**< [i]: <= tern_hist_bound_ns(i), and
                                                     above the previous bound; the last:
                                                     above every bound */
};

/** Upper bound of bucket @p i in ns (0 <= i < TERN_HIST_BOUNDS), ascending
 * from 1 us to 1 s; UINT64_MAX for any other @p i. [any] */
TERN_EXPORT uint64_t tern_hist_bound_ns(int i);

/**
 * Copies @p loop's histograms: @p iter, the busy part of each iteration
 * (from epoll_wait's return to the end of the iteration's work: dispatch,
 * timers, mailbox, writes); @p delay, per iteration that had events, how
 * long the batch's last event waited from epoll_wait's return for its
 * callback to start (the longest any event of the batch waited). Either
 * may be NULL. [any]
 */
TERN_EXPORT void tern_loop_histograms(const tern_loop *loop, struct tern_hist *iter,
                                      struct tern_hist *delay);

/**
 * A histogram of an application's own, with the loops' buckets: records
 * one observation of @p ns nanoseconds into @p h (zeroed to start). One
 * thread writes a given histogram (a worker's own: no atomics shared between
 * workers, a few ns); any thread reads it with tern_hist_read(). [the
 * histogram's writer]
 */
TERN_EXPORT void tern_hist_observe(struct tern_hist *h, uint64_t ns);

/** Copies @p src into @p dst without tearing a value, while its writer
 * goes on. [any] */
TERN_EXPORT void tern_hist_read(struct tern_hist *dst, const struct tern_hist *src);

#endif
