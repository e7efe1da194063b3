/*
 * Hierarchical timing wheel: six levels of 64 slots over 1 ms ticks, plus an
 * overflow list for expiries 2^36 ms (about two years) or more ahead.
 *
 * Placement. A timer that expires after @base goes to level L = (highest bit
 * in which expires differs from base) / 6, slot (expires >> 6L) & 63. So the
 * timer shares every bit above level L with base and its level-L digit is
 * larger than base's: each occupied slot starts after base, each level's
 * slots end before the next level's begin, and the slot starting earliest is
 * the lowest set bit of the lowest non-empty level. That one bitmap scan is
 * both the timeout() answer and the next tick expire() must visit, so
 * expire() jumps from event to event and a jump of any length costs
 * O(levels * visited slots + fired timers), never O(elapsed ms).
 *
 * Visiting the start S of a level-L slot re-places its timers relative to
 * base = S: they land in lower levels, or on the firing list when expires ==
 * S. Overflow timers are re-placed when base reaches the 2^36 ms block that
 * holds the earliest of them (overflow_min, a lower bound that cancel does
 * not bother to raise).
 *
 * Firing. expire(now) first moves the due list (timers armed at or before
 * the wheel's now) to the firing list, then alternates between firing that
 * list one timer at a time and visiting the next event tick <= now. Taking
 * one timer at a time from the head means a callback may cancel or re-arm any
 * timer, and a cancelled one is simply no longer on the list. Rule for arming
 * from a callback: a timer armed to expire at or before the running
 * expire()'s @now goes to the due list and fires in the NEXT expire() call,
 * not this one. So each timer fires at most once per expire() call, and a
 * callback re-arming itself "now" cannot loop forever.
 *
 * Repeating timers are re-armed to max(expires + repeat, now + 1) just
 * before their callback runs (not after), so that inside the callback the
 * timer is armed like any other: its owner can cancel and free it there, and
 * the wheel never touches a timer after its callback returns. A callback's
 * own arm or cancel overrides the automatic re-arm.
 */
#include "timer_internal.h"

#include <errno.h>

#include <assert.h>
#include <string.h>

#include "live_internal.h"

#define LEVEL_SHIFT(l)  ((unsigned)(l)*TERN__WHEEL_BITS)
#define SLOT_MASK       ((uint64_t)TERN__WHEEL_SLOTS - 1)
#define WHEEL_SPAN_BITS (TERN__WHEEL_LEVELS * TERN__WHEEL_BITS)

_Static_assert(TERN__WHEEL_SLOTS == 64, "occupied[] holds one 64-bit word per level");
_Static_assert(WHEEL_SPAN_BITS < 64, "the wheel must not span the whole clock");

/* An unarmed timer belongs to no wheel: the release publishes everything
 * this wheel wrote to it to the next one that claims it. */
static void release(struct tern_timer *t)
{
        __atomic_store_n(&t->owner, NULL, __ATOMIC_RELEASE);
}

static void list_push(struct tern_timer **head, struct tern_timer *t)
{
        t->next = *head;
        if (t->next)
                t->next->pprev = &t->next;
        *head = t;
        t->pprev = head;
}

/*
 * Unlinks an armed timer. When @t headed a wheel slot and leaves it empty,
 * the slot's occupied bit goes too: pprev pointing into slots[][] is how a
 * timer tells where it lives without storing its level.
 */
static void list_unlink(struct tern__wheel *w, struct tern_timer *t)
{
        struct tern_timer **pprev = t->pprev;
        uintptr_t off = (uintptr_t)pprev - (uintptr_t)&w->slots[0][0];

        assert(pprev); /* only armed timers are unlinked */
        *pprev = t->next;
        if (t->next)
                t->next->pprev = pprev;
        if (off < sizeof(w->slots) && *pprev == NULL) {
                size_t idx = off / sizeof(w->slots[0][0]);

                w->occupied[idx / TERN__WHEEL_SLOTS] &= ~((uint64_t)1 << (idx % TERN__WHEEL_SLOTS));
        }
        t->next = NULL;
        t->pprev = NULL;
}

/* Links @t, which expires after w->base, into its level (or overflow). */
static void wheel_insert(struct tern__wheel *w, struct tern_timer *t)
{
        uint64_t diff = t->expires ^ w->base;
        unsigned level = (63u - (unsigned)__builtin_clzll(diff)) / TERN__WHEEL_BITS;
        unsigned slot;

        if (level >= TERN__WHEEL_LEVELS) {
                if (!w->overflow || t->expires < w->overflow_min)
                        w->overflow_min = t->expires;
                list_push(&w->overflow, t);
                return;
        }
        slot = (unsigned)((t->expires >> LEVEL_SHIFT(level)) & SLOT_MASK);
        list_push(&w->slots[level][slot], t);
        w->occupied[level] |= (uint64_t)1 << slot;
}

/* Placement for tern__timer_arm(): see "Rule for arming from a callback". */
static void place(struct tern__wheel *w, struct tern_timer *t)
{
        if (t->expires <= w->now)
                list_push(&w->due, t);
        else
                wheel_insert(w, t);
}

/* Placement while visiting tick w->base: due timers join this expire()'s
 * firing list. */
static void replace(struct tern__wheel *w, struct tern_timer *t)
{
        if (t->expires <= w->base)
                list_push(&w->firing, t);
        else
                wheel_insert(w, t);
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/*
 * Finds the earliest tick after base at which something may expire (a level
 * slot starts) or must be re-placed (the overflow block starts). Returns the
 * level of that list, TERN__WHEEL_LEVELS for overflow, or -1 when the wheel
 * holds nothing beyond the due and firing lists.
 */
static int next_event(const struct tern__wheel *w, uint64_t *tick)
{
        for (unsigned l = 0; l < TERN__WHEEL_LEVELS; l++) {
                unsigned slot;

                if (!w->occupied[l])
                        continue;
                slot = (unsigned)__builtin_ctzll(w->occupied[l]);
                *tick = w->base >> LEVEL_SHIFT(l + 1) << LEVEL_SHIFT(l + 1) | (uint64_t)slot
                                                                                  << LEVEL_SHIFT(l);
                return (int)l;
        }
        if (w->overflow) {
                *tick = w->overflow_min >> WHEEL_SPAN_BITS << WHEEL_SPAN_BITS;
                return TERN__WHEEL_LEVELS;
        }
        return -1;
}

/*
 * Moves base to @tick, an event tick from next_event(), and re-places what
 * starts there. Exactly one list can start at a given tick: the level-L slot
 * where L is the level of the tick's lowest non-zero digit (slot 0 of a level
 * is never occupied), or the overflow list when all wheel digits are zero.
 */
static void visit(struct tern__wheel *w, uint64_t tick)
{
        unsigned level = (unsigned)__builtin_ctzll(tick) / TERN__WHEEL_BITS;
        struct tern_timer *t, *next;

        w->base = tick;
        w->steps++;
        if (level >= TERN__WHEEL_LEVELS) {
                t = w->overflow;
                w->overflow = NULL;
        } else {
                unsigned slot = (unsigned)((tick >> LEVEL_SHIFT(level)) & SLOT_MASK);

                t = w->slots[level][slot];
                w->slots[level][slot] = NULL;
                w->occupied[level] &= ~((uint64_t)1 << slot);
        }
        for (; t; t = next) {
                next = t->next;
                replace(w, t);
        }
}

/* Fires the firing list, one head at a time. Returns the callbacks run. */
static size_t fire_list(struct tern__wheel *w)
{
        size_t n = 0;
        struct tern_timer *t;

        while ((t = w->firing) != NULL) {
                tern_timer_cb cb = t->cb;
                void *arg = t->arg;

                list_unlink(w, t);
                if (t->repeat) {
                        t->expires = sat_add(t->expires, t->repeat);
                        if (t->expires <= w->now)
                                t->expires = sat_add(w->now, 1);
                        place(w, t);
                } else {
                        w->count--;
                        tern__live_add(TERN__LIVE_TIMERS, -1);
                        release(t); /* the callback may arm it again, anywhere */
                }
                w->running = t;
                cb(t, arg);
                w->running = NULL;
                n++;
        }
        return n;
}

void tern__wheel_init(struct tern__wheel *w, uint64_t now_ms)
{
        memset(w, 0, sizeof(*w));
        w->now = now_ms;
        w->base = now_ms;
}

static size_t unlink_all(struct tern__wheel *w, struct tern_timer **head)
{
        size_t n = 0;
        struct tern_timer *t;

        while ((t = *head) != NULL) {
                list_unlink(w, t);
                release(t);
                n++;
        }
        return n;
}

size_t tern__wheel_destroy(struct tern__wheel *w)
{
        size_t n = 0;

        for (unsigned l = 0; l < TERN__WHEEL_LEVELS; l++)
                for (unsigned s = 0; s < TERN__WHEEL_SLOTS; s++)
                        n += unlink_all(w, &w->slots[l][s]);
        n += unlink_all(w, &w->overflow);
        n += unlink_all(w, &w->due);
        n += unlink_all(w, &w->firing);
        if (n)
                tern__live_add(TERN__LIVE_TIMERS, -(long)n);
        w->count = 0;
        return n;
}

void tern_timer_init(struct tern_timer *t, tern_timer_cb cb, void *arg)
{
        t->next = NULL;
        t->pprev = NULL;
        t->expires = 0;
        t->repeat = 0;
        t->cb = cb;
        t->arg = arg;
        t->owner = NULL;
}

int tern__timer_arm(struct tern__wheel *w, struct tern_timer *t, uint64_t expires_ms,
                    uint64_t repeat_ms)
{
        void *owner = NULL;
        /* Claim it: acquire pairs with the release of its last owner. */
        if (!__atomic_compare_exchange_n(&t->owner, &owner, w, false, __ATOMIC_ACQUIRE,
                                         __ATOMIC_ACQUIRE) &&
            owner != w)
                return -EBUSY;
        if (t->pprev) {
                list_unlink(w, t);
        } else {
                w->count++;
                tern__live_add(TERN__LIVE_TIMERS, +1);
        }
        t->expires = expires_ms;
        t->repeat = repeat_ms;
        place(w, t);
        return 0;
}

int tern__timer_cancel(struct tern__wheel *w, struct tern_timer *t)
{
        void *owner = __atomic_load_n(&t->owner, __ATOMIC_ACQUIRE);
        if (!owner)
                return 0;
        if (owner != w)
                return -EBUSY;
        if (t->pprev) {
                list_unlink(w, t);
                w->count--;
                tern__live_add(TERN__LIVE_TIMERS, -1);
        }
        release(t);
        return 0;
}

int64_t tern__wheel_timeout(const struct tern__wheel *w, uint64_t now_ms)
{
        uint64_t earliest;
        int level;

        if (w->due || w->firing)
                return 0;
        level = next_event(w, &earliest);
        if (level < 0)
                return -1;
        /* Overflow_min bounds the expiry itself, tighter than the block. */
        if (level == TERN__WHEEL_LEVELS)
                earliest = w->overflow_min;
        if (earliest <= now_ms)
                return 0;
        if (earliest - now_ms > (uint64_t)INT64_MAX)
                return INT64_MAX;
        return (int64_t)(earliest - now_ms);
}

size_t tern__wheel_expire(struct tern__wheel *w, uint64_t now_ms)
{
        size_t n = 0;
        uint64_t tick;

        /* Re-entered from a callback: the outer call owns the firing list. */
        if (w->running)
                return 0;
        /* A clock that stepped back must not rewind the wheel (timers would
         * fire late by the step); what is due is still due. */
        if (now_ms > w->now)
                w->now = now_ms;
        w->firing = w->due;
        if (w->firing)
                w->firing->pprev = &w->firing;
        w->due = NULL;
        for (;;) {
                n += fire_list(w);
                if (next_event(w, &tick) < 0 || tick > w->now)
                        break;
                visit(w, tick);
        }
        w->base = w->now;
        return n;
}
