/**
 * @file
 * Hierarchical timing wheel with 1 ms ticks.
 *
 * Timers are embedded in their owners (no allocation), and arm, cancel and
 * re-arm are O(1). Time is whatever millisecond count the owner feeds in
 * (an event loop uses the monotonic clock). A timer armed to expire at T
 * fires in the first tern_timer_wheel_expire() call whose @p now >= T: never
 * early, and at most one tick late given a caller that sleeps no longer than
 * tern_timer_wheel_timeout() says.
 *
 * Callbacks run inside tern_timer_wheel_expire(). From a callback it is safe
 * to arm, re-arm or cancel any timer of the same wheel, including the one
 * running; a timer cancelled by an earlier callback of the same expire call
 * does not fire.
 *
 * Threads: a wheel and its timers belong to one thread; no locking.
 * Ownership: the wheel borrows armed timers; a timer's memory must stay
 * valid while it is armed (cancel it before freeing its owner).
 */
#ifndef TERN_TIMER_H
#define TERN_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tern_timer;
/** Runs when @p t fires, on the wheel's thread; @p arg as given to tern_timer_init(). */
typedef void (*tern_timer_cb)(struct tern_timer *t, void *arg);

/** A timer, embedded in its owner. Fields are the wheel's; use the functions. */
struct tern_timer {
        struct tern_timer *next;   /**< next in its slot */
        struct tern_timer **pprev; /**< NULL when not armed */
        uint64_t expires;          /**< absolute, ms */
        uint64_t repeat;           /**< ms; 0 = one-shot */
        tern_timer_cb cb;          /**< what to run */
        void *arg;                 /**< passed to cb (borrowed) */
};

#define TERN_WHEEL_LEVELS 6 /**< levels: 6 bits each, 36 bits of ms (~795 days) */
#define TERN_WHEEL_BITS   6 /**< log2 of the slots per level */
#define TERN_WHEEL_SLOTS  (1u << TERN_WHEEL_BITS) /**< slots per level */

/**
 * Private: read only through the functions below. A timer in level L sits in
 * slot (expires >> 6L) & 63, where L is chosen by the highest bit in which
 * expires differs from @p base, so every occupied slot lies ahead of @p base and
 * the lowest set bit of the lowest non-empty level is the next thing to do.
 */
struct tern_timer_wheel {
        struct tern_timer *slots[TERN_WHEEL_LEVELS][TERN_WHEEL_SLOTS]; /**< armed timers */
        uint64_t occupied[TERN_WHEEL_LEVELS]; /**< bit per non-empty slot */
        struct tern_timer *overflow;          /**< beyond the top level */
        uint64_t overflow_min;                /**< <= every expiry in overflow */
        struct tern_timer *due;               /**< expires <= now: next expire() fires */
        struct tern_timer *firing;            /**< being fired by the running expire() */
        uint64_t now;                         /**< @p now of the latest expire() or init */
        uint64_t base;                        /**< every tick <= base is processed */
        uint64_t steps;                       /**< ticks expire() visited (tests, stats) */
        size_t count;                         /**< armed timers */
        struct tern_timer *running;           /**< timer whose cb is running */
};

/** Prepares @p w with current time @p now_ms. */
void tern_timer_wheel_init(struct tern_timer_wheel *w, uint64_t now_ms);

/** Unlinks every armed timer without firing it. Returns how many were still
 * armed (a clean teardown returns 0). */
size_t tern_timer_wheel_destroy(struct tern_timer_wheel *w);

/** Prepares an unarmed timer. @p arg is borrowed and passed to @p cb. */
void tern_timer_init(struct tern_timer *t, tern_timer_cb cb, void *arg);

/**
 * Arms (or re-arms, if already armed) @p t to fire at absolute @p expires_ms;
 * an expiry at or before the wheel's time fires on the next expire call.
 * @p repeat_ms > 0 re-arms it that long after each firing (measured from the
 * scheduled time; a timer that fell behind is not fired twice to catch up).
 */
void tern_timer_arm(struct tern_timer_wheel *w, struct tern_timer *t, uint64_t expires_ms,
                    uint64_t repeat_ms);

/** Disarms @p t if armed; a no-op otherwise. */
void tern_timer_cancel(struct tern_timer_wheel *w, struct tern_timer *t);

/** True while @p t is armed on a wheel. */
static inline bool tern_timer_armed(const struct tern_timer *t)
{
        return t->pprev != NULL;
}

/**
 * Milliseconds from @p now_ms until the earliest expiry: 0 if something is
 * due, -1 if no timer is armed. May return less than the true distance
 * (the caller wakes up early and finds nothing due), never more.
 */
int64_t tern_timer_wheel_timeout(const struct tern_timer_wheel *w, uint64_t now_ms);

/** Advances the wheel to @p now_ms and fires every due timer. Returns the
 * number of callbacks run. */
size_t tern_timer_wheel_expire(struct tern_timer_wheel *w, uint64_t now_ms);

/** Armed timers on @p w. */
static inline size_t tern_timer_wheel_count(const struct tern_timer_wheel *w)
{
        return w->count;
}

#endif
