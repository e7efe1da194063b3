/*
 * Log-linear histogram; see bench_hist.h for the precision contract.
 *
 * Index layout, with S = 2^p: a value v has shift = max(0, log2(v) - p) and
 * lands in bucket shift * S + (v >> shift). Values below 2S map to
 * themselves; each later group of S buckets covers one power of two with
 * buckets 2^shift wide.
 */
#include "bench_hist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static unsigned hist_index(const struct bench_hist *h, uint64_t v)
{
        unsigned shift = 0;

        if (v >> (h->precision + 1)) {
                unsigned e = 63u - (unsigned)__builtin_clzll(v);
                shift = e - h->precision;
        }
        return (shift << h->precision) + (unsigned)(v >> shift);
}

/* Highest value held by bucket @idx. */
static uint64_t hist_high(const struct bench_hist *h, unsigned idx)
{
        unsigned shift;
        uint64_t m;

        if (idx < (1u << h->precision))
                return idx;
        shift = (idx >> h->precision) - 1;
        if (shift >= 64)
                return UINT64_MAX; /* past every bucket init allows */
        m = idx - ((uint64_t)shift << h->precision);
        return (m << shift) + ((1ull << shift) - 1);
}

int bench_hist_init(struct bench_hist *h, unsigned precision)
{
        memset(h, 0, sizeof(*h));
        if (precision < 1 || precision > BENCH_HIST_MAX_PRECISION)
                return -EINVAL;
        h->precision = precision;
        h->nbuckets = (65u - precision) << precision;
        h->counts = calloc(h->nbuckets, sizeof(*h->counts));
        if (!h->counts)
                return -ENOMEM;
        h->min = UINT64_MAX;
        return 0;
}

void bench_hist_destroy(struct bench_hist *h)
{
        free(h->counts);
        h->counts = NULL;
        h->nbuckets = 0;
}

void bench_hist_reset(struct bench_hist *h)
{
        memset(h->counts, 0, h->nbuckets * sizeof(*h->counts));
        h->total = 0;
        h->min = UINT64_MAX;
        h->max = 0;
        h->sum = 0;
}

void bench_hist_record_n(struct bench_hist *h, uint64_t value, uint64_t n)
{
        if (!n)
                return;
        h->counts[hist_index(h, value)] += n;
        h->total += n;
        h->sum += (long double)value * n;
        if (value < h->min)
                h->min = value;
        if (value > h->max)
                h->max = value;
}

int bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
        if (dst->precision != src->precision)
                return -EINVAL;
        if (!src->total)
                return 0;
        for (unsigned i = 0; i < src->nbuckets; i++)
                dst->counts[i] += src->counts[i];
        dst->total += src->total;
        dst->sum += src->sum;
        if (src->min < dst->min)
                dst->min = src->min;
        if (src->max > dst->max)
                dst->max = src->max;
        return 0;
}

uint64_t bench_hist_percentile(const struct bench_hist *h, double pct)
{
        uint64_t target, seen = 0;
        long double t;

        if (!h->total)
                return 0;
        if (!(pct > 0))
                return h->min;
        if (pct >= 100)
                return h->max;
        /*
         * 99.9 is not exact in binary, so 99.9% of 1000 computes as
         * 999.00000000000005; shave a rounding-sized epsilon before ceil.
         */
        t = (long double)pct / 100.0L * (long double)h->total - 1e-6L;
        target = (uint64_t)t; /* ceil without libm: t > 0 here */
        if ((long double)target < t)
                target++;
        if (target < 1)
                target = 1;
        for (unsigned i = 0; i < h->nbuckets; i++) {
                seen += h->counts[i];
                if (seen >= target) {
                        uint64_t v = hist_high(h, i);
                        return v < h->max ? v : h->max;
                }
        }
        return h->max;
}

double bench_hist_mean(const struct bench_hist *h)
{
        return h->total ? (double)(h->sum / (long double)h->total) : 0.0;
}

uint64_t bench_hist_bucket_high(const struct bench_hist *h, uint64_t value)
{
        return hist_high(h, hist_index(h, value));
}
