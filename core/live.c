#include "live_internal.h"

long tern__live[8];

void tern_live_counts(struct tern_live_counts *out)
{
        out->conns = __atomic_load_n(&tern__live[TERN__LIVE_CONNS], __ATOMIC_RELAXED);
        out->bufs = __atomic_load_n(&tern__live[TERN__LIVE_BUFS], __ATOMIC_RELAXED);
        out->timers = __atomic_load_n(&tern__live[TERN__LIVE_TIMERS], __ATOMIC_RELAXED);
        out->buf_bytes = __atomic_load_n(&tern__live[TERN__LIVE_BUF_BYTES], __ATOMIC_RELAXED);
        out->buf_bytes_peak =
            __atomic_load_n(&tern__live[TERN__LIVE_BUF_BYTES_PEAK], __ATOMIC_RELAXED);
        out->loops = __atomic_load_n(&tern__live[TERN__LIVE_LOOPS], __ATOMIC_RELAXED);
        out->watches = __atomic_load_n(&tern__live[TERN__LIVE_WATCHES], __ATOMIC_RELAXED);
        out->connectors = __atomic_load_n(&tern__live[TERN__LIVE_CONNECTORS], __ATOMIC_RELAXED);
}
