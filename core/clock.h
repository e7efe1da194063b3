/**
 * @file
 * Monotonic clock helpers. Any thread.
 */
#ifndef TERN_CLOCK_H
#define TERN_CLOCK_H

#include <stdint.h>
#include <time.h>

/** Nanoseconds on CLOCK_MONOTONIC. Any thread. */
static inline uint64_t tern_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/** Milliseconds on CLOCK_MONOTONIC. Any thread. */
static inline uint64_t tern_now_ms(void)
{
        return tern_now_ns() / 1000000u;
}

#endif
