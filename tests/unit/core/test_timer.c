/*
 * Timer wheel behaviour: exact expiry across every level and the overflow
 * list, ordering, callbacks that arm and cancel, repeating timers, the
 * timeout() bound, and bookkeeping (count, live counter, destroy).
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "live.h"
#include "timer_internal.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static uint64_t rnd_below(uint64_t n)
{
        return rnd() % n;
}

static long live_timers(void)
{
        struct tern_live_counts c;

        tern_live_counts(&c);
        return c.timers;
}

/* A timer that records when and in which order it fired. */
struct probe {
        struct tern_timer t;
        struct tern__wheel *w;
        uint64_t armed_for; /* expiry of the current arming */
        uint64_t armed_now; /* wheel's now when it was armed */
        uint64_t fired_now; /* wheel's now at the latest firing */
        unsigned fires;
        unsigned seq;
        bool model_armed;
        bool early; /* fired before armed_for */
        bool late;  /* an earlier expire() call had reached armed_for */
};

static unsigned fire_seq;
/* @now of the expire() call before the running one: a timer must fire in the
 * first call whose now reaches its expiry, so prev_now < expiry <= now. */
static uint64_t prev_now;

static void probe_cb(struct tern_timer *t, void *arg)
{
        struct probe *p = arg;

        p->fires++;
        p->seq = ++fire_seq;
        p->fired_now = p->w->now;
        if (p->armed_for > p->w->now)
                p->early = true;
        /* Armed already due, it fires in the next call, whatever it says. */
        if (p->armed_for <= prev_now && p->armed_for > p->armed_now)
                p->late = true;
        if (p->t.repeat) {
                /* Already re-armed for its next period. */
                p->armed_for = p->t.expires;
                p->armed_now = p->w->now;
        } else {
                p->model_armed = false;
        }
}

static void probe_init(struct probe *p, struct tern__wheel *w)
{
        memset(p, 0, sizeof(*p));
        p->w = w;
        tern_timer_init(&p->t, probe_cb, p);
}

static void probe_arm(struct probe *p, uint64_t expires, uint64_t repeat)
{
        p->armed_for = expires;
        p->armed_now = p->w->now;
        p->model_armed = true;
        tern__timer_arm(p->w, &p->t, expires, repeat);
}

static size_t expire(struct tern__wheel *w, uint64_t now)
{
        size_t n;

        prev_now = w->now;
        n = tern__wheel_expire(w, now);
        return n;
}

/* Delays that sit on both sides of every level boundary and of the overflow. */
static const uint64_t edge_delays[] = {
    1,
    2,
    63,
    64,
    65,
    127,
    128,
    4095,
    4096,
    4097,
    262143,
    262144,
    262145,
    (1ull << 24) - 1,
    1ull << 24,
    (1ull << 30) + 1,
    (1ull << 36) - 1,
    1ull << 36,
    (1ull << 36) + 1,
    (1ull << 42) + 12345,
};
#define N_EDGE (sizeof(edge_delays) / sizeof(edge_delays[0]))

Test(timer, fires_in_expiry_order_across_levels)
{
        struct tern__wheel w;
        struct probe p[N_EDGE];
        uint64_t base = 1000003;
        long live0 = live_timers();

        tern__wheel_init(&w, base);
        /* Arm latest first so list order cannot masquerade as time order. */
        for (size_t i = N_EDGE; i-- > 0;) {
                probe_init(&p[i], &w);
                probe_arm(&p[i], base + edge_delays[i], 0);
        }
        cr_assert_eq(tern__wheel_count(&w), N_EDGE);
        cr_assert_eq(live_timers() - live0, (long)N_EDGE);

        fire_seq = 0;
        cr_assert_eq(expire(&w, base + (1ull << 43)), N_EDGE);
        for (size_t i = 0; i < N_EDGE; i++) {
                cr_assert_eq(p[i].fires, 1, "delay %llu fired %u times",
                             (unsigned long long)edge_delays[i], p[i].fires);
                cr_assert_eq(p[i].seq, i + 1, "delay %llu fired %u-th",
                             (unsigned long long)edge_delays[i], p[i].seq);
                cr_assert_not(tern_timer_armed(&p[i].t));
        }
        cr_assert_eq(tern__wheel_count(&w), 0);
        cr_assert_eq(live_timers(), live0);
        cr_assert_eq(tern__wheel_timeout(&w, w.now), -1);
        cr_assert_eq(tern__wheel_destroy(&w), 0);
}

Test(timer, fires_exactly_at_expiry_from_any_base)
{
        const uint64_t bases[] = {
            0, 1, 63, 64, 4095, 4096, 262143, (1ull << 36) - 1, 1ull << 36, 0xfedcba987654321ull,
        };

        for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
                for (size_t i = 0; i < N_EDGE; i++) {
                        struct tern__wheel w;
                        struct probe p;
                        uint64_t exp = bases[b] + edge_delays[i];

                        tern__wheel_init(&w, bases[b]);
                        probe_init(&p, &w);
                        probe_arm(&p, exp, 0);
                        cr_assert_eq(expire(&w, exp - 1), 0, "base %llu delay %llu fired early",
                                     (unsigned long long)bases[b],
                                     (unsigned long long)edge_delays[i]);
                        /* One tick before, the bound must be exact. */
                        cr_assert_eq(tern__wheel_timeout(&w, exp - 1), 1);
                        cr_assert_eq(tern__wheel_timeout(&w, exp), 0);
                        cr_assert_eq(expire(&w, exp), 1, "base %llu delay %llu did not fire",
                                     (unsigned long long)bases[b],
                                     (unsigned long long)edge_delays[i]);
                        cr_assert_eq(p.fires, 1);
                        cr_assert_eq(tern__wheel_destroy(&w), 0);
                }
        }
}

#define POOL 1500

/* Arms idle probes at random delays mixing all low levels. */
static void arm_some(struct probe *pool, size_t n, uint64_t now)
{
        for (int k = 0; k < 4; k++) {
                struct probe *p = &pool[rnd_below(n)];
                uint64_t spread[] = {64, 4096, 100000};

                if (tern_timer_armed(&p->t))
                        continue;
                probe_arm(p, now + 1 + rnd_below(spread[rnd_below(3)]), 0);
        }
}

Test(timer, never_early_stepping_one_ms)
{
        static struct probe pool[POOL];
        struct tern__wheel w;
        uint64_t now = rnd();
        unsigned total = 0;

        now >>= 2; /* room to run */
        tern__wheel_init(&w, now);
        for (size_t i = 0; i < POOL; i++)
                probe_init(&pool[i], &w);
        for (int step = 0; step < 300000; step++) {
                if (step < 200000 && rnd_below(8) == 0)
                        arm_some(pool, POOL, now);
                now++;
                total += expire(&w, now);
        }
        cr_assert_eq(tern__wheel_count(&w), 0, "%zu never fired", tern__wheel_count(&w));
        cr_assert_gt(total, 10000);
        for (size_t i = 0; i < POOL; i++) {
                cr_assert_not(pool[i].early || pool[i].late, "probe %zu fired at %llu for %llu", i,
                              (unsigned long long)pool[i].fired_now,
                              (unsigned long long)pool[i].armed_for);
                /* Stepping one tick at a time, the first call that reaches
                 * the expiry is the one at the expiry itself. */
                if (pool[i].fires)
                        cr_assert_eq(pool[i].fired_now, pool[i].armed_for);
        }
}

Test(timer, never_early_in_random_steps)
{
        static struct probe pool[POOL];
        struct tern__wheel w;
        uint64_t now = rnd() >> 2;

        tern__wheel_init(&w, now);
        for (size_t i = 0; i < POOL; i++)
                probe_init(&pool[i], &w);
        for (int step = 0; step < 100000; step++) {
                uint64_t r = rnd_below(1000);

                arm_some(pool, POOL, now);
                if (r == 0)
                        now += rnd_below(1u << 22); /* rare long stall */
                else if (r < 300)
                        now += 0; /* a wakeup with nothing elapsed */
                else
                        now += 1 + rnd_below(r < 900 ? 10 : 3000);
                expire(&w, now);
                for (size_t i = 0; step % 4096 == 0 && i < POOL; i++)
                        if (tern_timer_armed(&pool[i].t))
                                cr_assert_gt(pool[i].t.expires, now);
        }
        expire(&w, now + 200000);
        cr_assert_eq(tern__wheel_count(&w), 0);
        for (size_t i = 0; i < POOL; i++)
                cr_assert_not(pool[i].early || pool[i].late, "probe %zu fired at %llu for %llu", i,
                              (unsigned long long)pool[i].fired_now,
                              (unsigned long long)pool[i].armed_for);
}

/* Cancels the probe passed as "victim" when it fires. */
struct canceller {
        struct tern_timer t;
        struct tern__wheel *w;
        struct tern_timer *victim;
        unsigned fires;
};

static void cancel_cb(struct tern_timer *t, void *arg)
{
        struct canceller *c = arg;

        c->fires++;
        tern__timer_cancel(c->w, c->victim);
}

Test(timer, cancel_by_earlier_callback_in_same_expire)
{
        struct tern__wheel w;
        struct canceller a = {.w = &w}, b = {.w = &w};
        struct probe later, far;
        long live0 = live_timers();

        tern__wheel_init(&w, 0);
        /* Same tick: whichever fires first cancels the other. */
        tern_timer_init(&a.t, cancel_cb, &a);
        tern_timer_init(&b.t, cancel_cb, &b);
        a.victim = &b.t;
        b.victim = &a.t;
        tern__timer_arm(&w, &a.t, 10, 0);
        tern__timer_arm(&w, &b.t, 10, 0);
        cr_assert_eq(expire(&w, 10), 1);
        cr_assert_eq(a.fires + b.fires, 1);
        cr_assert_eq(tern__wheel_count(&w), 0);

        /* Earlier tick cancels timers due later in the same call, one in a
         * low level and one that must first cascade down from level 2. */
        a.fires = 0;
        tern__timer_arm(&w, &a.t, 20, 0);
        probe_init(&later, &w);
        probe_init(&far, &w);
        probe_arm(&later, 21, 0);
        probe_arm(&far, 5000, 0);
        a.victim = &later.t;
        cr_assert_eq(expire(&w, 10000), 2);
        cr_assert_eq(a.fires, 1);
        cr_assert_eq(later.fires, 0);
        cr_assert_eq(far.fires, 1);
        cr_assert_not(tern_timer_armed(&later.t));
        cr_assert_eq(live_timers(), live0);

        /* An earlier callback cancelling a timer of the very same tick. */
        a.fires = 0;
        probe_arm(&later, 20000, 0);
        tern__timer_arm(&w, &a.t, 19999, 0);
        cr_assert_eq(expire(&w, 30000), 1);
        cr_assert_eq(later.fires, 0);
        cr_assert_eq(tern__wheel_destroy(&w), 0);
}

/* Re-arms itself at an offset from the wheel's now (possibly <= now). */
struct rearmer {
        struct tern_timer t;
        struct tern__wheel *w;
        int64_t offset;
        unsigned fires;
        unsigned max_fires;
};

static void rearm_cb(struct tern_timer *t, void *arg)
{
        struct rearmer *r = arg;

        if (++r->fires < r->max_fires)
                tern__timer_arm(r->w, t, r->w->now + (uint64_t)r->offset, 0);
}

Test(timer, rearm_from_own_callback)
{
        struct tern__wheel w;
        struct rearmer r = {.w = &w, .offset = 0, .max_fires = 1000};

        tern__wheel_init(&w, 100);
        tern_timer_init(&r.t, rearm_cb, &r);
        tern__timer_arm(&w, &r.t, 100, 0);
        /* Re-armed to "now" from its own callback: once per call, no loop. */
        cr_assert_eq(expire(&w, 100), 1);
        cr_assert(tern_timer_armed(&r.t));
        cr_assert_eq(tern__wheel_timeout(&w, 100), 0);
        cr_assert_eq(expire(&w, 100), 1);
        cr_assert_eq(r.fires, 2);

        /* Into the future: fires when reached and not before. */
        r.offset = 5;
        cr_assert_eq(expire(&w, 101), 1); /* the pending "now" arming */
        cr_assert_eq(r.t.expires, 106);
        cr_assert_eq(expire(&w, 105), 0);
        cr_assert_eq(expire(&w, 106), 1);
        cr_assert_eq(r.t.expires, 111);

        /* The callback's last firing leaves it unarmed. */
        r.max_fires = r.fires + 1;
        cr_assert_eq(expire(&w, 111), 1);
        cr_assert_not(tern_timer_armed(&r.t));
        cr_assert_eq(tern__wheel_count(&w), 0);
        cr_assert_eq(tern__wheel_destroy(&w), 0);
}

struct arm_other {
        struct tern_timer t;
        struct tern__wheel *w;
        struct probe *other;
        uint64_t at;
};

static void arm_other_cb(struct tern_timer *t, void *arg)
{
        struct arm_other *a = arg;

        a->other->armed_for = a->at;
        a->other->model_armed = true;
        tern__timer_arm(a->w, &a->other->t, a->at, 0);
}

Test(timer, armed_at_or_before_now_from_callback_fires_next_call)
{
        struct tern__wheel w;
        struct arm_other a = {.w = &w};
        struct probe p;

        tern__wheel_init(&w, 0);
        probe_init(&p, &w);
        tern_timer_init(&a.t, arm_other_cb, &a);
        a.other = &p;

        /* Armed during expire(100) for 50: already reached by this call's
         * now, so it waits for the next call instead of firing now. */
        a.at = 50;
        tern__timer_arm(&w, &a.t, 10, 0);
        cr_assert_eq(expire(&w, 100), 1);
        cr_assert_eq(p.fires, 0);
        cr_assert(tern_timer_armed(&p.t));
        cr_assert_eq(tern__wheel_timeout(&w, 100), 0);
        cr_assert_eq(expire(&w, 100), 1);
        cr_assert_eq(p.fires, 1);

        /* Armed for after this call's now: an ordinary timer. */
        a.at = 300;
        tern__timer_arm(&w, &a.t, 150, 0);
        cr_assert_eq(expire(&w, 200), 1);
        cr_assert_eq(expire(&w, 299), 0);
        cr_assert_eq(expire(&w, 300), 1);
        cr_assert_eq(p.fires, 2);
        cr_assert_eq(tern__wheel_destroy(&w), 0);
}

struct repeater {
        struct tern_timer t;
        struct tern__wheel *w;
        uint64_t fired_at[64];
        unsigned fires;
        unsigned cancel_at; /* cancel itself on this firing (0 = never) */
};

static void repeat_cb(struct tern_timer *t, void *arg)
{
        struct repeater *r = arg;

        if (r->fires < 64)
                r->fired_at[r->fires] = r->w->now;
        if (++r->fires == r->cancel_at)
                tern__timer_cancel(r->w, t);
}

Test(timer, repeating_timer)
{
        struct tern__wheel w;
        struct repeater r = {.w = &w};
        long live0 = live_timers();

        tern__wheel_init(&w, 0);
        tern_timer_init(&r.t, repeat_cb, &r);
        tern__timer_arm(&w, &r.t, 10, 10);
        for (uint64_t now = 1; now <= 100; now++)
                expire(&w, now);
        cr_assert_eq(r.fires, 10);
        for (unsigned i = 0; i < 10; i++)
                cr_assert_eq(r.fired_at[i], 10 * (i + 1));
        cr_assert(tern_timer_armed(&r.t));
        cr_assert_eq(tern__wheel_count(&w), 1);
        cr_assert_eq(live_timers() - live0, 1);

        /* A long stall fires it once, then it resumes after now. */
        cr_assert_eq(expire(&w, 1000), 1);
        cr_assert_eq(r.fires, 11);
        cr_assert_eq(r.t.expires, 1001);
        cr_assert_eq(expire(&w, 1000), 0);
        cr_assert_eq(expire(&w, 1001), 1);
        cr_assert_eq(r.t.expires, 1011);

        /* A callback's own cancel overrides the automatic re-arm. */
        r.cancel_at = r.fires + 2;
        expire(&w, 1011);
        expire(&w, 1021);
        cr_assert_eq(r.fires, r.cancel_at);
        cr_assert_not(tern_timer_armed(&r.t));
        cr_assert_eq(expire(&w, 5000), 0);
        cr_assert_eq(tern__wheel_count(&w), 0);
        cr_assert_eq(live_timers(), live0);
}

Test(timer, huge_timeout_fires_only_when_reached)
{
        struct tern__wheel w;
        struct probe half, max;
        uint64_t h = UINT64_MAX / 2;
        int64_t to;

        tern__wheel_init(&w, 5);
        probe_init(&half, &w);
        probe_init(&max, &w);
        probe_arm(&half, h, 0);
        probe_arm(&max, UINT64_MAX, 0);

        to = tern__wheel_timeout(&w, 5);
        cr_assert_gt(to, 0);
        cr_assert_leq((uint64_t)to, h - 5);

        cr_assert_eq(expire(&w, 1ull << 40), 0);
        cr_assert_eq(expire(&w, 1ull << 62), 0);
        cr_assert_eq(expire(&w, h - 1), 0);
        cr_assert_eq(tern__wheel_timeout(&w, h - 1), 1);
        cr_assert_eq(expire(&w, h), 1);
        cr_assert_eq(half.fires, 1);
        cr_assert_eq(max.fires, 0);
        cr_assert_eq(expire(&w, UINT64_MAX - 1), 0);
        cr_assert_eq(expire(&w, UINT64_MAX), 1);
        cr_assert_eq(max.fires, 1);
        /* Jumping across ~2^63 ms visited a handful of ticks, not 2^63. */
        cr_assert_leq(w.steps, 3 * (TERN__WHEEL_LEVELS + 1), "visited %llu ticks",
                      (unsigned long long)w.steps);
        cr_assert_eq(tern__wheel_destroy(&w), 0);
}

Test(timer, big_jump_visits_few_ticks)
{
        enum { N = 300 };
        static struct probe p[N];
        struct tern__wheel w;
        uint64_t base = 77;
        unsigned last_seq = 0;

        tern__wheel_init(&w, base);
        for (int i = 0; i < N; i++) {
                probe_init(&p[i], &w);
                probe_arm(&p[i], base + 1 + rnd_below(1ull << (1 + rnd_below(40))), 0);
        }
        cr_assert_eq(expire(&w, base + (1ull << 41)), N);
        /* Each timer is visited at most once per level plus once in
         * overflow, however many milliseconds passed. */
        cr_assert_leq(w.steps, (uint64_t)N * (TERN__WHEEL_LEVELS + 1));
        /* And they fired in expiry order. */
        for (int k = 0; k < N; k++) {
                int at = -1;

                for (int i = 0; i < N; i++)
                        if (p[i].seq == last_seq + 1)
                                at = i;
                cr_assert_neq(at, -1);
                for (int i = 0; i < N; i++)
                        if (p[i].seq > p[at].seq)
                                cr_assert_geq(p[i].armed_for, p[at].armed_for);
                last_seq++;
        }
}

Test(timer, million_random_ops_keep_count_and_live_counter)
{
        enum { N = 4096 };
        static struct probe p[N];
        struct tern__wheel w;
        uint64_t now = 1ull << 33;
        long live0 = live_timers();
        size_t model = 0;

        tern__wheel_init(&w, now);
        for (int i = 0; i < N; i++)
                probe_init(&p[i], &w);
        for (long op = 0; op < 1000000; op++) {
                struct probe *q = &p[rnd_below(N)];
                uint64_t r = rnd_below(100);

                if (r < 50) {
                        uint64_t exp;

                        switch (rnd_below(4)) {
                        case 0:
                                exp = now - rnd_below(10); /* already due */
                                break;
                        case 1:
                                exp = now + rnd_below(100);
                                break;
                        case 2:
                                exp = now + rnd_below(1u << 20);
                                break;
                        default:
                                exp = now + (rnd() >> rnd_below(64)); /* incl. overflow */
                                break;
                        }
                        model += !q->model_armed;
                        probe_arm(q, exp, rnd_below(8) == 0 ? 1 + rnd_below(50) : 0);
                } else if (r < 90) {
                        model -= q->model_armed;
                        q->model_armed = false;
                        tern__timer_cancel(&w, &q->t);
                } else {
                        now += rnd_below(r < 99 ? 20 : 100000);
                        expire(&w, now);
                        model = 0;
                        for (int i = 0; i < N; i++)
                                model += p[i].model_armed;
                }
                if (op % 997 == 0) {
                        cr_assert_eq(tern__wheel_count(&w), model);
                        cr_assert_eq(live_timers() - live0, (long)model);
                        for (int i = 0; i < N; i += 61)
                                cr_assert_eq(tern_timer_armed(&p[i].t), p[i].model_armed);
                }
        }
        for (int i = 0; i < N; i++) {
                cr_assert_not(p[i].early || p[i].late, "probe %d fired at %llu for %llu", i,
                              (unsigned long long)p[i].fired_now,
                              (unsigned long long)p[i].armed_for);
                tern__timer_cancel(&w, &p[i].t);
        }
        cr_assert_eq(tern__wheel_count(&w), 0);
        cr_assert_eq(live_timers(), live0);
        cr_assert_eq(tern__wheel_timeout(&w, now), -1);
        cr_assert_eq(tern__wheel_destroy(&w), 0);
}

Test(timer, timeout_never_overestimates)
{
        enum { N = 300 };
        static struct probe p[N];
        struct tern__wheel w;
        uint64_t now = rnd() >> 4;
        unsigned positive = 0;

        tern__wheel_init(&w, now);
        for (int i = 0; i < N; i++)
                probe_init(&p[i], &w);
        for (int iter = 0; iter < 30000; iter++) {
                struct probe *q = &p[rnd_below(N)];
                uint64_t min = UINT64_MAX, r = rnd_below(10);
                bool any = false;

                if (r < 4) {
                        uint64_t d = rnd_below(4) ? rnd_below(1ull << rnd_below(24))
                                                  : rnd() >> rnd_below(64);

                        probe_arm(q, now + d - rnd_below(3), 0);
                } else if (r < 6)
                        tern__timer_cancel(&w, &q->t);

                for (int i = 0; i < N; i++) {
                        if (tern_timer_armed(&p[i].t) && p[i].t.expires <= min) {
                                min = p[i].t.expires;
                                any = true;
                        }
                }
                for (int k = 0; k < 3; k++) {
                        uint64_t at = now + (k ? rnd_below(k == 1 ? 100 : 1u << 30) : 0);
                        int64_t to = tern__wheel_timeout(&w, at);

                        if (!any) {
                                cr_assert_eq(to, -1);
                                continue;
                        }
                        cr_assert_geq(to, 0);
                        if (min <= at)
                                cr_assert_eq(to, 0, "due timer but timeout %lld", (long long)to);
                        else if (at == w.now)
                                /* Between calls every list starts after
                                 * now: no spurious zero-timeout wakeups. */
                                cr_assert_gt(to, 0, "nothing due at now, yet timeout 0");
                        else
                                cr_assert_leq((uint64_t)to, min - at, "timeout %lld > %llu",
                                              (long long)to, (unsigned long long)(min - at));
                }
                if (r >= 6) {
                        int64_t to = tern__wheel_timeout(&w, now);

                        /* Sleeping one tick less than the timeout finds
                         * nothing due; sleeping exactly finds it maybe. */
                        if (to > 0) {
                                positive++;
                                cr_assert_eq(expire(&w, now + (uint64_t)to - 1), 0);
                                now += (uint64_t)to;
                        }
                        /* And sometimes past it, off the wheel's own ticks. */
                        if (r == 9)
                                now += rnd_below(5000);
                        expire(&w, now);
                }
        }
        cr_assert_gt(positive, 100);
        tern__wheel_destroy(&w);
}

Test(timer, destroy_returns_still_armed)
{
        struct tern__wheel w;
        struct probe p[7];
        long live0 = live_timers();

        tern__wheel_init(&w, 1000);
        for (int i = 0; i < 7; i++)
                probe_init(&p[i], &w);
        probe_arm(&p[0], 999, 0);                   /* due */
        probe_arm(&p[1], 1010, 0);                  /* level 0 */
        probe_arm(&p[2], 1000 + (1u << 20), 0);     /* level 3 */
        probe_arm(&p[3], 1000 + (1ull << 50), 100); /* overflow, repeating */
        probe_arm(&p[4], 1020, 0);                  /* cancelled */
        probe_arm(&p[5], 1001, 0);                  /* fired */
        probe_arm(&p[6], 1002, 5);                  /* fired, still repeating */
        tern__timer_cancel(&w, &p[4].t);
        cr_assert_eq(expire(&w, 1002), 3); /* p0, p5, p6 */
        cr_assert_eq(tern__wheel_count(&w), 4);
        cr_assert_eq(live_timers() - live0, 4);

        cr_assert_eq(tern__wheel_destroy(&w), 4);
        for (int i = 0; i < 7; i++)
                cr_assert_not(tern_timer_armed(&p[i].t));
        cr_assert_eq(tern__wheel_count(&w), 0);
        cr_assert_eq(live_timers(), live0);
        cr_assert_eq(tern__wheel_timeout(&w, 1002), -1);
}

Test(timer, cancel_and_rearm_bookkeeping)
{
        struct tern__wheel w;
        struct probe p;
        long live0 = live_timers();

        tern__wheel_init(&w, 0);
        probe_init(&p, &w);
        tern__timer_cancel(&w, &p.t); /* unarmed: no-op */
        cr_assert_eq(tern__wheel_count(&w), 0);
        cr_assert_eq(live_timers(), live0);

        probe_arm(&p, 5000, 0);
        probe_arm(&p, 70, 0); /* re-arm earlier, across levels */
        cr_assert_eq(tern__wheel_count(&w), 1);
        cr_assert_eq(live_timers() - live0, 1);
        cr_assert_eq(tern__wheel_timeout(&w, 0), 64); /* bound: slot start */
        cr_assert_eq(expire(&w, 69), 0);
        probe_arm(&p, 300, 0); /* and later again */
        cr_assert_eq(expire(&w, 299), 0);
        cr_assert_eq(expire(&w, 300), 1);
        cr_assert_eq(live_timers(), live0);

        tern__timer_cancel(&w, &p.t);
        tern__timer_cancel(&w, &p.t);
        cr_assert_eq(tern__wheel_count(&w), 0);
        cr_assert_eq(live_timers(), live0);
}

Test(timer, cancelled_overflow_minimum_leaves_others_exact)
{
        struct tern__wheel w;
        struct probe a, b;
        uint64_t at = (1ull << 38) + 5;

        tern__wheel_init(&w, 0);
        probe_init(&a, &w);
        probe_init(&b, &w);
        probe_arm(&a, 1ull << 37, 0);
        probe_arm(&b, at, 0);
        tern__timer_cancel(&w, &a.t);
        /* The stale bound may wake the caller early, never late. */
        cr_assert_leq(tern__wheel_timeout(&w, 0), (int64_t)at);
        cr_assert_eq(expire(&w, at - 1), 0);
        cr_assert_eq(tern__wheel_timeout(&w, at - 1), 1);
        cr_assert_eq(expire(&w, at), 1);
        cr_assert_eq(a.fires, 0);
        cr_assert_eq(b.fires, 1);
}

Test(timer, clock_going_back_fires_nothing_new)
{
        struct tern__wheel w;
        struct probe p, due;

        tern__wheel_init(&w, 1000);
        probe_init(&p, &w);
        probe_init(&due, &w);
        probe_arm(&p, 1005, 0);
        probe_arm(&due, 1000, 0);
        cr_assert_eq(expire(&w, 900), 1); /* what was due still fires */
        cr_assert_eq(due.fires, 1);
        cr_assert_eq(w.now, 1000);
        cr_assert_eq(expire(&w, 1004), 0);
        cr_assert_eq(expire(&w, 1005), 1);
}

struct owned {
        struct tern_timer t;
        struct tern__wheel *w;
        unsigned *fires;
};

static void free_self_cb(struct tern_timer *t, void *arg)
{
        struct owned *o = arg;

        (*o->fires)++;
        /* A repeating timer is armed inside its callback: cancel, then free. */
        tern__timer_cancel(o->w, t);
        free(o);
}

Test(timer, callback_may_free_its_own_timer)
{
        struct tern__wheel w;
        unsigned fires = 0;
        long live0 = live_timers();

        tern__wheel_init(&w, 0);
        for (int i = 0; i < 64; i++) {
                struct owned *o = malloc(sizeof(*o));

                cr_assert_not_null(o);
                o->w = &w;
                o->fires = &fires;
                tern_timer_init(&o->t, free_self_cb, o);
                tern__timer_arm(&w, &o->t, 1 + (uint64_t)i % 3, i % 2 ? 7 : 0);
        }
        /* ASan turns any touch of a freed timer into a failure. */
        cr_assert_eq(expire(&w, 10), 64);
        cr_assert_eq(fires, 64);
        cr_assert_eq(tern__wheel_count(&w), 0);
        cr_assert_eq(live_timers(), live0);
}

struct reenter {
        struct tern_timer t;
        struct tern__wheel *w;
        size_t inner;
};

static void reenter_cb(struct tern_timer *t, void *arg)
{
        struct reenter *r = arg;

        r->inner = tern__wheel_expire(r->w, r->w->now + 1000);
}

Test(timer, expire_from_callback_runs_nothing)
{
        struct tern__wheel w;
        struct reenter r = {.w = &w, .inner = 99};
        struct probe p;

        tern__wheel_init(&w, 0);
        probe_init(&p, &w);
        tern_timer_init(&r.t, reenter_cb, &r);
        tern__timer_arm(&w, &r.t, 1, 0);
        probe_arm(&p, 500, 0);
        cr_assert_eq(expire(&w, 1), 1);
        cr_assert_eq(r.inner, 0);
        cr_assert_eq(p.fires, 0);
        cr_assert_eq(w.now, 1);
        cr_assert_eq(expire(&w, 500), 1);
}
