#include "live_internal.h"

long tern__live[3];

void tern_live_counts(struct tern_live_counts *out)
{
        out->conns = __atomic_load_n(&tern__live[TERN__LIVE_CONNS], __ATOMIC_RELAXED);
        out->bufs = __atomic_load_n(&tern__live[TERN__LIVE_BUFS], __ATOMIC_RELAXED);
        out->timers = __atomic_load_n(&tern__live[TERN__LIVE_TIMERS], __ATOMIC_RELAXED);
}
