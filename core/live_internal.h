#ifndef TERN_LIVE_INTERNAL_H
#define TERN_LIVE_INTERNAL_H

#include "live.h"

extern long tern__live[3];

enum tern__live_kind {
        TERN__LIVE_CONNS,
        TERN__LIVE_BUFS,
        TERN__LIVE_TIMERS,
};

static inline void tern__live_add(enum tern__live_kind kind, long delta)
{
        __atomic_fetch_add(&tern__live[kind], delta, __ATOMIC_RELAXED);
}

#endif
