/*
 * Private: the hierarchical timing wheel (timer.c), 1 ms ticks. A loop owns
 * one; unit tests and the timer micro-benchmark drive one directly.
 *
 * Time is whatever millisecond count the owner feeds in (a loop uses the
 * monotonic clock). A timer armed to expire at T fires in the first
 * tern__wheel_expire() whose @now >= T: never early, and at most one tick
 * late given a caller that sleeps no longer than tern__wheel_timeout() says.
 * Callbacks run inside tern__wheel_expire(); from a callback it is safe to
 * arm, re-arm or cancel any timer of the same wheel, including the one
 * running; a timer cancelled by an earlier callback of the same expire call
 * does not fire.
 *
 * A timer armed on one wheel is owned by it (tern_timer.owner, claimed with
 * a compare-and-swap, released when it fires as a one-shot or is cancelled):
 * arming or cancelling it on another wheel returns -EBUSY and touches
 * nothing, so two loops sharing one timer cannot corrupt each other.
 */
#ifndef TERN_TIMER_INTERNAL_H
#define TERN_TIMER_INTERNAL_H

#include "timer.h"

#define TERN__WHEEL_LEVELS 6 /* levels: 6 bits each, 36 bits of ms (~795 days) */
#define TERN__WHEEL_BITS   6 /* log2 of the slots per level */
#define TERN__WHEEL_SLOTS  (1u << TERN__WHEEL_BITS)

/*
 * A timer in level L sits in slot (expires >> 6L) & 63, where L is chosen by
 * the highest bit in which expires differs from @base, so every occupied
 * slot lies ahead of @base and the lowest set bit of the lowest non-empty
 * level is the next thing to do.
 */
struct tern__wheel {
        struct tern_timer *slots[TERN__WHEEL_LEVELS][TERN__WHEEL_SLOTS]; /* armed timers */
        uint64_t occupied[TERN__WHEEL_LEVELS]; /* bit per non-empty slot */
        struct tern_timer *overflow;           /* beyond the top level */
        uint64_t overflow_min;                 /* <= every expiry in overflow */
        struct tern_timer *due;                /* expires <= now: next expire() fires */
        struct tern_timer *firing;             /* being fired by the running expire() */
        uint64_t now;                          /* @now of the latest expire() or init */
        uint64_t base;                         /* every tick <= base is processed */
        uint64_t steps;                        /* ticks expire() visited (tests, stats) */
        size_t count;                          /* armed timers */
        struct tern_timer *running;            /* timer whose cb is running */
};

/* Prepares @w with current time @now_ms. */
void tern__wheel_init(struct tern__wheel *w, uint64_t now_ms);

/* Unlinks every armed timer without firing it. Returns how many were still
 * armed (a clean teardown returns 0). */
size_t tern__wheel_destroy(struct tern__wheel *w);

/*
 * Arms (or re-arms, if already armed) @t to fire at absolute @expires_ms;
 * an expiry at or before the wheel's time fires on the next expire call.
 * @repeat_ms > 0 re-arms it that long after each firing (measured from the
 * scheduled time; a timer that fell behind is not fired twice to catch up).
 * Returns 0, or -EBUSY if @t is armed on another wheel (nothing changed).
 */
int tern__timer_arm(struct tern__wheel *w, struct tern_timer *t, uint64_t expires_ms,
                    uint64_t repeat_ms);

/* Disarms @t if armed on @w: 0 (also when not armed), or -EBUSY if @t is
 * armed on another wheel (nothing changed). */
int tern__timer_cancel(struct tern__wheel *w, struct tern_timer *t);

/*
 * Milliseconds from @now_ms until the earliest expiry: 0 if something is
 * due, -1 if no timer is armed. May return less than the true distance
 * (the caller wakes up early and finds nothing due), never more.
 */
int64_t tern__wheel_timeout(const struct tern__wheel *w, uint64_t now_ms);

/* Advances the wheel to @now_ms and fires every due timer. Returns the
 * number of callbacks run. */
size_t tern__wheel_expire(struct tern__wheel *w, uint64_t now_ms);

/* Armed timers on @w. */
static inline size_t tern__wheel_count(const struct tern__wheel *w)
{
        return w->count;
}

#endif
