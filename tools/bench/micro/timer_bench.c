/*
 * timer_bench: the timer wheel against a plain binary min-heap (the usual
 * alternative, written here with back-indices so cancel is O(log n)).
 *
 *   timer_bench [--quick]
 *
 * Workloads, each on N timers (1,000,000; 100,000 with --quick), best of
 * three runs, reported per timer:
 *   arm         arm N timers, expiries uniform over the next 10 minutes
 *   cancel      cancel those N in random order
 *   rearm       re-arm each of N armed timers to a new expiry (idle timeouts
 *               pushed back on every read)
 *   arm+expire  arm N timers over the next 10 s, then advance 1 ms at a time
 *               until all have fired
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "timer_internal.h"

struct bt {
        struct tern_timer wt;
        uint64_t expires; /* heap key */
        size_t heap_idx;  /* position in heap.v; SIZE_MAX when not queued */
};

static uint64_t fired;

static void on_fire(struct tern_timer *t, void *arg)
{
        fired++;
}

/* Called through a pointer, as the wheel calls its callbacks. */
static void (*volatile heap_fire)(struct tern_timer *t, void *arg) = on_fire;

struct heap {
        struct bt **v;
        size_t n;
};

static void heap_set(struct heap *h, size_t i, struct bt *b)
{
        h->v[i] = b;
        b->heap_idx = i;
}

static void heap_up(struct heap *h, size_t i)
{
        struct bt *b = h->v[i];

        while (i > 0) {
                size_t parent = (i - 1) / 2;

                if (h->v[parent]->expires <= b->expires)
                        break;
                heap_set(h, i, h->v[parent]);
                i = parent;
        }
        heap_set(h, i, b);
}

static void heap_down(struct heap *h, size_t i)
{
        struct bt *b = h->v[i];

        for (;;) {
                size_t c = 2 * i + 1;

                if (c >= h->n)
                        break;
                if (c + 1 < h->n && h->v[c + 1]->expires < h->v[c]->expires)
                        c++;
                if (b->expires <= h->v[c]->expires)
                        break;
                heap_set(h, i, h->v[c]);
                i = c;
        }
        heap_set(h, i, b);
}

static void heap_remove(struct heap *h, struct bt *b)
{
        size_t i = b->heap_idx;
        struct bt *last;

        if (i == SIZE_MAX)
                return;
        b->heap_idx = SIZE_MAX;
        last = h->v[--h->n];
        if (last == b)
                return;
        heap_set(h, i, last);
        if (i > 0 && h->v[(i - 1) / 2]->expires > last->expires)
                heap_up(h, i);
        else
                heap_down(h, i);
}

static void heap_arm(struct heap *h, struct bt *b, uint64_t expires)
{
        heap_remove(h, b);
        b->expires = expires;
        heap_set(h, h->n++, b);
        heap_up(h, b->heap_idx);
}

static size_t heap_expire(struct heap *h, uint64_t now)
{
        size_t n = 0;

        while (h->n && h->v[0]->expires <= now) {
                struct bt *b = h->v[0];

                heap_remove(h, b);
                heap_fire(&b->wt, NULL);
                n++;
        }
        return n;
}

static uint64_t rng;

static uint64_t rnd(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

enum op { OP_ARM, OP_CANCEL, OP_REARM, OP_ARM_EXPIRE, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"arm", "cancel", "rearm", "arm+expire"};

#define START_MS     1000000u
#define ARM_SPAN_MS  600000u /* 10 minutes */
#define FIRE_SPAN_MS 10000u  /* 10 seconds */

struct bench {
        size_t n;
        struct bt *t;
        uint64_t *when;  /* expiries, drawn once so both sides get the same */
        uint64_t *when2; /* re-arm expiries */
        size_t *order;   /* cancel order */
        struct heap heap;
};

/* Same @seed, same expiries and order: the wheel and the heap of one run
 * see identical input. */
static void fill(struct bench *b, uint64_t span, uint64_t seed)
{
        rng = seed * 0x9e3779b97f4a7c15ull | 1;
        for (size_t i = 0; i < b->n; i++) {
                b->when[i] = START_MS + 1 + rnd() % span;
                b->when2[i] = START_MS + 1 + rnd() % span;
                b->order[i] = i;
        }
        for (size_t i = b->n - 1; i > 0; i--) {
                size_t j = rnd() % (i + 1), tmp = b->order[i];

                b->order[i] = b->order[j];
                b->order[j] = tmp;
        }
        for (size_t i = 0; i < b->n; i++) {
                tern_timer_init(&b->t[i].wt, on_fire, NULL);
                b->t[i].heap_idx = SIZE_MAX;
        }
}

/* Runs @op once on the wheel; returns nanoseconds spent in the timed part. */
static uint64_t run_wheel(struct bench *b, enum op op, uint64_t seed)
{
        struct tern__wheel w;
        uint64_t t0 = 0, t1 = 0;
        size_t n = b->n;

        fill(b, op == OP_ARM_EXPIRE ? FIRE_SPAN_MS : ARM_SPAN_MS, seed);
        tern__wheel_init(&w, START_MS);
        if (op == OP_ARM || op == OP_ARM_EXPIRE)
                t0 = tern_now_ns();
        for (size_t i = 0; i < n; i++)
                tern__timer_arm(&w, &b->t[i].wt, b->when[i], 0);
        switch (op) {
        case OP_ARM:
                t1 = tern_now_ns();
                break;
        case OP_CANCEL:
                t0 = tern_now_ns();
                for (size_t i = 0; i < n; i++)
                        tern__timer_cancel(&w, &b->t[b->order[i]].wt);
                t1 = tern_now_ns();
                break;
        case OP_REARM:
                t0 = tern_now_ns();
                for (size_t i = 0; i < n; i++)
                        tern__timer_arm(&w, &b->t[i].wt, b->when2[i], 0);
                t1 = tern_now_ns();
                break;
        case OP_ARM_EXPIRE:
                fired = 0;
                for (uint64_t now = START_MS + 1; now <= START_MS + FIRE_SPAN_MS; now++)
                        tern__wheel_expire(&w, now);
                t1 = tern_now_ns();
                if (fired != n) {
                        fprintf(stderr, "timer_bench: wheel fired %llu of %zu\n",
                                (unsigned long long)fired, n);
                        exit(1);
                }
                break;
        default:
                break;
        }
        tern__wheel_destroy(&w);
        return t1 - t0;
}

static uint64_t run_heap(struct bench *b, enum op op, uint64_t seed)
{
        struct heap *h = &b->heap;
        uint64_t t0 = 0, t1 = 0;
        size_t n = b->n;

        fill(b, op == OP_ARM_EXPIRE ? FIRE_SPAN_MS : ARM_SPAN_MS, seed);
        h->n = 0;
        if (op == OP_ARM || op == OP_ARM_EXPIRE)
                t0 = tern_now_ns();
        for (size_t i = 0; i < n; i++)
                heap_arm(h, &b->t[i], b->when[i]);
        switch (op) {
        case OP_ARM:
                t1 = tern_now_ns();
                break;
        case OP_CANCEL:
                t0 = tern_now_ns();
                for (size_t i = 0; i < n; i++)
                        heap_remove(h, &b->t[b->order[i]]);
                t1 = tern_now_ns();
                break;
        case OP_REARM:
                t0 = tern_now_ns();
                for (size_t i = 0; i < n; i++)
                        heap_arm(h, &b->t[i], b->when2[i]);
                t1 = tern_now_ns();
                break;
        case OP_ARM_EXPIRE:
                fired = 0;
                for (uint64_t now = START_MS + 1; now <= START_MS + FIRE_SPAN_MS; now++)
                        heap_expire(h, now);
                t1 = tern_now_ns();
                if (fired != n) {
                        fprintf(stderr, "timer_bench: heap fired %llu of %zu\n",
                                (unsigned long long)fired, n);
                        exit(1);
                }
                break;
        default:
                break;
        }
        return t1 - t0;
}

int main(int argc, char **argv)
{
        struct bench b = {.n = 1000000};
        const int reps = 3;
        int rc = 0;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--quick") == 0) {
                        b.n = 100000;
                } else {
                        fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
                        return 2;
                }
        }
        b.t = calloc(b.n, sizeof(*b.t));
        b.when = calloc(b.n, sizeof(*b.when));
        b.when2 = calloc(b.n, sizeof(*b.when2));
        b.order = calloc(b.n, sizeof(*b.order));
        b.heap.v = calloc(b.n, sizeof(*b.heap.v));
        if (!b.t || !b.when || !b.when2 || !b.order || !b.heap.v) {
                fprintf(stderr, "timer_bench: %s\n", strerror(ENOMEM));
                rc = 1;
                goto out_free;
        }

        printf("timer_bench: %zu timers per op, best of %d runs\n", b.n, reps);
        printf("%-12s %14s %14s %12s\n", "op", "wheel ns/op", "heap ns/op", "heap/wheel");
        for (int op = 0; op < OP_COUNT; op++) {
                uint64_t wbest = UINT64_MAX, hbest = UINT64_MAX;

                for (int r = 0; r < reps; r++) {
                        uint64_t wns = run_wheel(&b, op, (uint64_t)r + 1);
                        uint64_t hns = run_heap(&b, op, (uint64_t)r + 1);

                        if (wns < wbest)
                                wbest = wns;
                        if (hns < hbest)
                                hbest = hns;
                }
                printf("%-12s %14.1f %14.1f %11.2fx\n", op_names[op], (double)wbest / (double)b.n,
                       (double)hbest / (double)b.n, wbest ? (double)hbest / (double)wbest : 0.0);
        }
out_free:
        free(b.t);
        free(b.when);
        free(b.when2);
        free(b.order);
        free(b.heap.v);
        return rc;
}
