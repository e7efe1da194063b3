/**
 * @file
 * Timers, embedded in their owners (no allocation) and armed on an event
 * loop with tern_loop_timer_start() (loop.h). Arm, cancel and re-arm are
 * O(1); a timer never fires early, and at most about one millisecond late
 * on a loop that is not busy. The wheel that keeps them is the loop's and
 * private to tern.
 *
 * Threads: a timer belongs to the loop it is armed on, from the arm until
 * it fires (one-shot) or is stopped; only that loop's thread may touch it
 * then. Arming or stopping it from another loop is refused (-EBUSY), so a
 * timer shared by mistake between loops is an error, not a corrupted wheel.
 * Ownership: the loop borrows an armed timer; its memory must stay valid
 * while it is armed (stop it before freeing its owner).
 */
#ifndef TERN_TIMER_H
#define TERN_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "export.h"

struct tern_timer;
/** Runs when @p t fires, on its loop's thread; @p arg as given to tern_timer_init(). */
typedef void (*tern_timer_cb)(struct tern_timer *t, void *arg);

/** A timer, embedded in its owner. Every field is private: use the functions. */
struct tern_timer {
        struct tern_timer *next;   /**< private: next in its slot */
        struct tern_timer **pprev; /**< private: NULL when not armed */
        uint64_t expires;          /**< private: absolute, ms */
        uint64_t repeat;           /**< private: ms; 0 = one-shot */
        tern_timer_cb cb;          /**< private: what to run */
        void *arg;                 /**< private: passed to cb (borrowed) */
        void *owner;               /**< private: the wheel it is armed on (atomic) */
};

/** Prepares an unarmed timer; @p arg is borrowed and passed to @p cb.
 * [any thread that owns @p t; never on an armed timer] */
TERN_EXPORT void tern_timer_init(struct tern_timer *t, tern_timer_cb cb, void *arg);

/** True while @p t is armed. [the thread of the loop it is armed on] */
static inline bool tern_timer_armed(const struct tern_timer *t)
{
        return t->pprev != NULL;
}

#endif
