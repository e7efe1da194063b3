/*
 * Layer 0 (chat.h lists the layers): the leak counters every layer bumps,
 * and the ThreadSanitizer stand-in for a grace period.
 */
#include "base.h"

static long chat_live[4];

char chat_tsan_grace;

void chat_live_add(enum chat_live_kind kind, long delta)
{
        __atomic_fetch_add(&chat_live[kind], delta, __ATOMIC_RELAXED);
}

void chat_live_counts(struct chat_live_counts *out)
{
        out->clients = __atomic_load_n(&chat_live[CHAT_LIVE_CLIENTS], __ATOMIC_RELAXED);
        out->rooms = __atomic_load_n(&chat_live[CHAT_LIVE_ROOMS], __ATOMIC_RELAXED);
        out->nicks = __atomic_load_n(&chat_live[CHAT_LIVE_NICKS], __ATOMIC_RELAXED);
        out->msgs = __atomic_load_n(&chat_live[CHAT_LIVE_MSGS], __ATOMIC_RELAXED);
}
