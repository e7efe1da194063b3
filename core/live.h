/**
 * @file
 * Live-object counters: how many connections, buffer allocations and armed
 * timers exist right now, process-wide. Tests use them to prove that a
 * teardown frees everything; operators can export them.
 */
#ifndef TERN_LIVE_H
#define TERN_LIVE_H

#include "export.h"

/** The counters, as tern_live_counts() copies them out. */
struct tern_live_counts {
        long conns;  /**< connection objects not yet freed */
        long bufs;   /**< buffer allocations (input and output) not yet freed */
        long timers; /**< timers armed on any wheel */
        /** Bytes of buffer capacity allocated now, and the most ever allocated
         * at once since the process started: what a hostile peer can make
         * the process hold, which the tests bound. */
        /** @{ */
        long buf_bytes;
        long buf_bytes_peak;
        /** @} */
        long loops;      /**< event loops not yet freed */
        long watches;    /**< fd watches (tern_loop_watch) not yet freed */
        long connectors; /**< connectors not yet freed */
};

/** Snapshot of the counters. Any thread; lock-free; each field is exact, the
 * set is not one atomic snapshot. */
TERN_EXPORT void tern_live_counts(struct tern_live_counts *out);

#endif
