#ifndef TERN_LIVE_INTERNAL_H
#define TERN_LIVE_INTERNAL_H

#include "live.h"

extern long tern__live[8];

enum tern__live_kind {
        TERN__LIVE_CONNS,
        TERN__LIVE_BUFS,
        TERN__LIVE_TIMERS,
        TERN__LIVE_BUF_BYTES,
        TERN__LIVE_BUF_BYTES_PEAK,
        TERN__LIVE_LOOPS,
        TERN__LIVE_WATCHES,
        TERN__LIVE_CONNECTORS,
};

static inline void tern__live_add(enum tern__live_kind kind, long delta)
{
        __atomic_fetch_add(&tern__live[kind], delta, __ATOMIC_RELAXED);
}

/* Buffer capacity grew (> 0) or was released (< 0); keeps the peak. */
static inline void tern__live_bytes_add(long delta)
{
        long now = __atomic_add_fetch(&tern__live[TERN__LIVE_BUF_BYTES], delta, __ATOMIC_RELAXED);
        long peak = __atomic_load_n(&tern__live[TERN__LIVE_BUF_BYTES_PEAK], __ATOMIC_RELAXED);
        while (now > peak &&
               !__atomic_compare_exchange_n(&tern__live[TERN__LIVE_BUF_BYTES_PEAK], &peak, now, 1,
                                            __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                ;
}

#endif
