/*
 * tern-bench's latency histogram: percentiles of known inputs must come out
 * within the documented bucket precision (v <= reported <= v + v / 2^p).
 *
 * The histogram lives in tools/bench, which is not part of libtern and may
 * not even be configured (TERN_BUILD_TOOLS=OFF), so its source is compiled
 * straight into this test.
 */
#include "../../../tools/bench/bench_hist.c"

#include <criterion/criterion.h>
#include <stdint.h>

/* The documented bound: the exact answer @exact, reported as @got. */
static void assert_within_precision(uint64_t got, uint64_t exact, unsigned p)
{
        cr_assert_geq(got, exact, "reported %llu below exact %llu", (unsigned long long)got,
                      (unsigned long long)exact);
        cr_assert_leq(got, exact + (exact >> p), "reported %llu above %llu + 1/2^%u",
                      (unsigned long long)got, (unsigned long long)exact, p);
}

Test(hist, rejects_bad_precision)
{
        struct bench_hist h;

        cr_assert_eq(bench_hist_init(&h, 0), -EINVAL);
        cr_assert_eq(bench_hist_init(&h, BENCH_HIST_MAX_PRECISION + 1), -EINVAL);
        bench_hist_destroy(&h);
}

Test(hist, empty_reports_zero)
{
        struct bench_hist h;

        cr_assert_eq(bench_hist_init(&h, 7), 0);
        cr_assert_eq(bench_hist_percentile(&h, 50), 0);
        cr_assert_eq(bench_hist_percentile(&h, 100), 0);
        cr_assert_eq(h.total, 0);
        cr_assert_float_eq(bench_hist_mean(&h), 0.0, 1e-12);
        bench_hist_destroy(&h);
}

Test(hist, small_values_are_exact)
{
        struct bench_hist h;

        cr_assert_eq(bench_hist_init(&h, 7), 0);
        /* 1..100 all lie below 2^7 = 128, so every percentile is exact. */
        for (uint64_t v = 1; v <= 100; v++)
                bench_hist_record(&h, v);
        cr_assert_eq(bench_hist_percentile(&h, 0), 1);
        cr_assert_eq(bench_hist_percentile(&h, 1), 1);
        cr_assert_eq(bench_hist_percentile(&h, 50), 50);
        cr_assert_eq(bench_hist_percentile(&h, 90), 90);
        cr_assert_eq(bench_hist_percentile(&h, 99), 99);
        cr_assert_eq(bench_hist_percentile(&h, 99.9), 100);
        cr_assert_eq(bench_hist_percentile(&h, 100), 100);
        cr_assert_float_eq(bench_hist_mean(&h), 50.5, 1e-9);
        bench_hist_destroy(&h);
}

Test(hist, uniform_range_percentiles_within_precision)
{
        struct bench_hist h;
        const double pcts[] = {10, 50, 90, 99, 99.9, 99.99};
        /* k-th smallest value, k = ceil(pct% of 100000), is k * 1000. */
        const uint64_t ks[] = {10000, 50000, 90000, 99000, 99900, 99990};

        cr_assert_eq(bench_hist_init(&h, 7), 0);
        for (uint64_t v = 1; v <= 100000; v++)
                bench_hist_record(&h, v * 1000); /* 1 us .. 100 ms in ns */
        for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
                assert_within_precision(bench_hist_percentile(&h, pcts[i]), ks[i] * 1000, 7);
        cr_assert_eq(bench_hist_percentile(&h, 100), 100000000ull);
        cr_assert_eq(h.min, 1000);
        cr_assert_float_eq(bench_hist_mean(&h), 50000.5 * 1000, 1e-3);
        bench_hist_destroy(&h);
}

Test(hist, rare_outlier_shows_in_tail_only)
{
        struct bench_hist h;

        cr_assert_eq(bench_hist_init(&h, 7), 0);
        bench_hist_record_n(&h, 20000, 9990); /* 20 us */
        bench_hist_record_n(&h, 5000000, 10); /* 5 ms: the slowest 0.1% */
        assert_within_precision(bench_hist_percentile(&h, 50), 20000, 7);
        assert_within_precision(bench_hist_percentile(&h, 99.9), 20000, 7);
        assert_within_precision(bench_hist_percentile(&h, 99.91), 5000000, 7);
        cr_assert_eq(bench_hist_percentile(&h, 100), 5000000);
        cr_assert_eq(h.total, 10000);
        bench_hist_destroy(&h);
}

Test(hist, bucket_bound_holds_across_the_range)
{
        struct bench_hist h;

        for (unsigned p = 1; p <= 12; p += 11) {
                cr_assert_eq(bench_hist_init(&h, p), 0);
                /* Powers of two, their neighbours, and the top of the range. */
                for (unsigned e = 0; e < 64; e++) {
                        uint64_t base = 1ull << e;
                        uint64_t vs[] = {base - 1, base, base + 1, base + base / 3};
                        for (size_t i = 0; i < 4; i++)
                                assert_within_precision(bench_hist_bucket_high(&h, vs[i]), vs[i],
                                                        p);
                }
                cr_assert_eq(bench_hist_bucket_high(&h, UINT64_MAX), UINT64_MAX);
                bench_hist_record(&h, UINT64_MAX);
                cr_assert_eq(bench_hist_percentile(&h, 50), UINT64_MAX);
                bench_hist_destroy(&h);
        }
}

Test(hist, merge_equals_recording_into_one)
{
        struct bench_hist a, b, all;

        cr_assert_eq(bench_hist_init(&a, 7), 0);
        cr_assert_eq(bench_hist_init(&b, 7), 0);
        cr_assert_eq(bench_hist_init(&all, 7), 0);
        for (uint64_t v = 1; v <= 5000; v++) {
                bench_hist_record(v % 2 ? &a : &b, v * 37);
                bench_hist_record(&all, v * 37);
        }
        cr_assert_eq(bench_hist_merge(&a, &b), 0);
        cr_assert_eq(a.total, all.total);
        cr_assert_eq(a.min, all.min);
        cr_assert_eq(a.max, all.max);
        for (double pct = 0; pct <= 100; pct += 0.5)
                cr_assert_eq(bench_hist_percentile(&a, pct), bench_hist_percentile(&all, pct),
                             "p%.1f differs", pct);
        bench_hist_destroy(&a);
        bench_hist_destroy(&b);
        bench_hist_destroy(&all);
}

Test(hist, merge_rejects_other_precision)
{
        struct bench_hist a, b;

        cr_assert_eq(bench_hist_init(&a, 7), 0);
        cr_assert_eq(bench_hist_init(&b, 8), 0);
        bench_hist_record(&b, 42);
        cr_assert_eq(bench_hist_merge(&a, &b), -EINVAL);
        cr_assert_eq(a.total, 0);
        bench_hist_destroy(&a);
        bench_hist_destroy(&b);
}

Test(hist, reset_forgets_values)
{
        struct bench_hist h;

        cr_assert_eq(bench_hist_init(&h, 7), 0);
        bench_hist_record_n(&h, 123456, 50);
        bench_hist_reset(&h);
        cr_assert_eq(h.total, 0);
        bench_hist_record(&h, 7);
        cr_assert_eq(bench_hist_percentile(&h, 50), 7);
        cr_assert_eq(h.max, 7);
        bench_hist_destroy(&h);
}
