/*
 * What a metric costs on the data path, per update: a per-worker counter
 * (tern__stat_add: a plain add and a store, single writer, no atomic
 * read-modify-write), a histogram observation (tern__hist_observe: bucket
 * search over 14 bounds, two stores) and the clock read a histogram needs
 * (tern_now_ns, clock_gettime through the vDSO). The functions are the
 * library's own inlines, not copies.
 *
 * usage: bench-metrics_bench [ITERATIONS]   (default 50,000,000)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "loop_internal.h"

static volatile uint64_t sink;

int main(int argc, char **argv)
{
        uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 50000000u;
        if (n < 10)
                return 1;
        struct tern_loop *l = calloc(1, sizeof(*l));
        struct tern_hist *h = calloc(1, sizeof(*h));
        if (!l || !h) {
                free(l);
                free(h);
                return 1;
        }
        /* Observations spread over the buckets, as loop iterations are:
         * 0.5 us to 2 ms. */
        static const uint64_t spread[8] = {500, 1500, 3000, 8000, 40000, 90000, 400000, 2000000};

        uint64_t t0 = tern_now_ns();
        for (uint64_t i = 0; i < n; i++)
                tern__stat_add(l, TERN__STAT(bytes_in), i & 63);
        uint64_t t1 = tern_now_ns();
        for (uint64_t i = 0; i < n; i++)
                tern__hist_observe(h, spread[i & 7]);
        uint64_t t2 = tern_now_ns();
        uint64_t acc = 0, reads = n / 10;
        for (uint64_t i = 0; i < reads; i++)
                acc += tern_now_ns();
        uint64_t t3 = tern_now_ns();
        sink = acc + l->stats.v[TERN__STAT(bytes_in)] + h->sum_ns;

        printf("counter update (tern__stat_add)      %.2f ns\n", (double)(t1 - t0) / (double)n);
        printf("histogram update (tern__hist_observe) %.2f ns\n", (double)(t2 - t1) / (double)n);
        printf("clock read (tern_now_ns)              %.2f ns\n",
               (double)(t3 - t2) / (double)reads);
        free(l);
        free(h);
        return 0;
}
