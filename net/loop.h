/**
 * @file
 * Event loops: one per worker thread, epoll in edge-triggered mode.
 *
 * A loop owns its connections, its timer wheel and its mailbox. Code running
 * on a loop's thread (callbacks of its connections, timers and tasks) may
 * touch everything that loop owns; other threads talk to it only through
 * tern_loop_post() and the handle functions of conn.h.
 *
 * Calling contexts, in the manner of liburcu's documentation:
 *   [any]   any thread, including threads tern did not create
 *   [loop]  only the loop's own thread (inside its callbacks)
 */
#ifndef TERN_LOOP_H
#define TERN_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "timer.h"

/** An event loop (opaque): one per worker thread. */
typedef struct tern_loop tern_loop;
/** A task for tern_loop_post(), run on @p loop's thread with the @p arg posted. */
typedef void (*tern_task_cb)(tern_loop *loop, void *arg);

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
int tern_loop_post(tern_loop *loop, tern_task_cb cb, void *arg);

/** The loop whose thread is calling, or NULL. [any] */
tern_loop *tern_loop_current(void);

/** Worker index of @p loop, 0..workers-1. [any] */
int tern_loop_index(const tern_loop *loop);

/** Cached monotonic milliseconds, refreshed after every epoll_wait. [loop] */
uint64_t tern_loop_now(const tern_loop *loop);

/**
 * tern_loop_timer_start - arm @p t (prepared with tern_timer_init()) to fire
 * on @p loop after at least @p after_ms, then every @p repeat_ms (0 = once). [loop]
 * Re-arms if already armed. The loop borrows @p t: it must stay valid until it
 * fires (one-shot) or is stopped. Callbacks run on the loop's thread.
 * Never fires early; the wheel's tick is 1 ms.
 */
void tern_loop_timer_start(tern_loop *loop, struct tern_timer *t, uint64_t after_ms,
                           uint64_t repeat_ms);

/** Disarms @p t; a no-op if it is not armed. [loop] */
void tern_loop_timer_stop(tern_loop *loop, struct tern_timer *t);

#endif
