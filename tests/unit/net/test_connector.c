/* The connector's retry delay: bounds, growth and jitter. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "connector_internal.h"

static uint64_t cap_of(uint32_t min, uint32_t max, uint32_t failures)
{
        uint64_t cap = min;
        for (uint32_t i = 1; i < failures && cap < max; i++)
                cap *= 2;
        return cap < max ? cap : max;
}

Test(client, backoff_stays_within_floor_and_cap)
{
        uint32_t rng = 12345;
        const uint32_t min = 100, max = 30000;
        for (uint32_t f = 1; f <= 40; f++) {
                uint64_t cap = cap_of(min, max, f);
                uint64_t lo = cap / 2 > min ? cap / 2 : min;
                for (int k = 0; k < 200; k++) {
                        uint32_t d = tern__backoff_delay(min, max, f, &rng);
                        cr_assert(d >= lo && d <= cap, "failures %u: %u not in [%lu, %lu]", f, d,
                                  (unsigned long)lo, (unsigned long)cap);
                }
        }
        /* First retry: exactly the minimum (cap = min, floor = min). */
        cr_assert_eq(tern__backoff_delay(min, max, 1, &rng), min);
}

Test(client, backoff_grows_until_the_cap)
{
        uint32_t rng = 7;
        const uint32_t min = 10, max = 5000;
        /* Until the cap is reached, every delay after n+1 failures is at
         * least every delay after n: the floor of one step is the cap of the
         * step before. min << 9 = 5120 > max, so steps 1..9 grow. */
        uint32_t prev_hi = 0;
        for (uint32_t f = 1; f <= 9; f++) {
                uint32_t lo = UINT32_MAX, hi = 0;
                for (int k = 0; k < 500; k++) {
                        uint32_t d = tern__backoff_delay(min, max, f, &rng);
                        lo = d < lo ? d : lo;
                        hi = d > hi ? d : hi;
                }
                cr_assert_geq(lo, prev_hi, "failures %u: %u below the last step's %u", f, lo,
                              prev_hi);
                prev_hi = hi;
        }
        /* Far out, every delay is within [max/2, max], and enormous failure
         * counts neither overflow nor loop for long. */
        for (int k = 0; k < 100; k++) {
                uint32_t d = tern__backoff_delay(min, max, UINT32_MAX, &rng);
                cr_assert(d >= max / 2 && d <= max);
        }
}

Test(client, backoff_jitter_spreads_over_the_range)
{
        uint32_t rng = 99;
        /* failures 5: cap 1600, range [800, 1600]. */
        uint32_t lo = UINT32_MAX, hi = 0;
        int buckets[4] = {0};
        for (int k = 0; k < 4000; k++) {
                uint32_t d = tern__backoff_delay(100, 30000, 5, &rng);
                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
                buckets[(d - 800) * 4 / 801]++;
                cr_assert_neq(rng, 0, "xorshift state must never reach 0");
        }
        cr_assert_lt(lo, 850);
        cr_assert_gt(hi, 1550);
        for (int b = 0; b < 4; b++)
                cr_assert_gt(buckets[b], 700, "bucket %d has %d of 4000", b, buckets[b]);
        /* A zero seed is repaired rather than sticking at 0. */
        uint32_t zero = 0;
        tern__backoff_delay(100, 30000, 3, &zero);
        cr_assert_neq(zero, 0);
}

Test(client, backoff_with_min_equal_max_is_constant)
{
        uint32_t rng = 1;
        for (uint32_t f = 1; f < 50; f++)
                cr_assert_eq(tern__backoff_delay(250, 250, f, &rng), 250);
}
