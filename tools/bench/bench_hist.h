/*
 * A log-linear latency histogram in the manner of HdrHistogram.
 *
 * Values (nanoseconds, or any unsigned 64-bit quantity) below 2^p are counted
 * exactly; above that, every power-of-two range [2^e, 2^(e+1)) is split into
 * 2^p equal buckets. A bucket's width is therefore at most 1/2^p of the values
 * it holds: with the default p = 7 that is 1/128, under 0.8%.
 *
 * Precision contract (what the tests check): for a recorded value v,
 * bench_hist_bucket_high(h, v) = hv with v <= hv <= v + v / 2^p, and hv == v
 * for v < 2^p. Percentiles and the reported maximum obey the same bound
 * relative to the exact answer; min and max are also kept exactly.
 *
 * The whole 64-bit range is covered, so recording never fails or clamps.
 * A histogram is owned by one thread while recording; merge per-thread
 * histograms into one after the threads have stopped.
 */
#ifndef TERN_BENCH_HIST_H
#define TERN_BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_DEFAULT_PRECISION 7
#define BENCH_HIST_MAX_PRECISION     14

struct bench_hist {
        unsigned precision; /* p: 2^p linear buckets per power of two */
        unsigned nbuckets;
        uint64_t *counts;
        uint64_t total;
        uint64_t min; /* exact; UINT64_MAX while empty */
        uint64_t max; /* exact; 0 while empty */
        long double sum;
};

/*
 * bench_hist_init - set up an empty histogram in caller-owned storage.
 * @precision: p in [1, BENCH_HIST_MAX_PRECISION].
 * Allocates the bucket array (owned by @h until bench_hist_destroy).
 * Returns 0, -EINVAL for a precision out of range, or -ENOMEM.
 */
int bench_hist_init(struct bench_hist *h, unsigned precision);

/* Frees the bucket array. Safe on a zeroed or already destroyed histogram. */
void bench_hist_destroy(struct bench_hist *h);

/* Forgets every recorded value, keeping the allocation. */
void bench_hist_reset(struct bench_hist *h);

/* Records @n occurrences of @value. Owner thread only; never fails. */
void bench_hist_record_n(struct bench_hist *h, uint64_t value, uint64_t n);

static inline void bench_hist_record(struct bench_hist *h, uint64_t value)
{
        bench_hist_record_n(h, value, 1);
}

/*
 * bench_hist_merge - add every count of @src into @dst (@src is borrowed and
 * left unchanged). Neither may be recorded into concurrently.
 * Returns 0, or -EINVAL when the precisions differ.
 */
int bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);

/*
 * bench_hist_percentile - the value at or below which @pct percent of the
 * recorded values lie (the smallest recorded value v with at least
 * ceil(pct/100 * total) values <= v), reported as the upper edge of its
 * bucket but never above the exact maximum. @pct is clamped to [0, 100];
 * 0 gives the exact minimum, 100 the exact maximum. Returns 0 when empty.
 */
uint64_t bench_hist_percentile(const struct bench_hist *h, double pct);

/* Mean of the recorded values (exact up to long double rounding); 0 if empty. */
double bench_hist_mean(const struct bench_hist *h);

/* Highest value that shares @value's bucket: the precision contract above. */
uint64_t bench_hist_bucket_high(const struct bench_hist *h, uint64_t value);

#endif
