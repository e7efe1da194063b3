/*
 * Layer 0 of tern-chat (chat.h lists the layers): what every module shares.
 * The server's process-wide state, the ThreadSanitizer annotations and the
 * leak counters. Includes nothing of the chat's but chat.h.
 *
 * Threads. Each connection (struct chat_client) belongs to one tern worker
 * and only that worker's thread touches it. Three things are shared:
 *
 *   - the room registry and the nickname registry: liburcu lock-free hash
 *     tables (rculfhash) under the QSBR flavour. tern's workers are QSBR
 *     readers already; entries are freed with call_rcu;
 *   - each room's per-worker member counts (atomics inside the shared room
 *     object), which tell a sender which workers to hand a message to;
 *   - each worker's inbox, a wait-free queue that any worker appends room
 *     messages to, drained only by its owner.
 *
 * Everything else (the per-worker room -> local members maps, the clients)
 * is private to one worker. Names here are app-internal: chat_*.
 */
#ifndef CHAT_BASE_H
#define CHAT_BASE_H

#include <string.h>

#include <urcu-qsbr.h>
#include <urcu/list.h>
#include <urcu/rculfhash.h>
#include <urcu/wfcqueue.h>

#include "../common/cli.h"
#include "chat.h"

/*
 * ThreadSanitizer cannot see the ordering liburcu's (uninstrumented) queues,
 * hash table and grace periods provide; these tell it, and compile to
 * nothing otherwise. chat_tsan_grace stands for "a grace period passed":
 * every callback tern runs on a worker releases it as it returns
 * (chat_grace_release), and call_rcu callbacks acquire it before freeing.
 */
#ifdef TERN_TSAN
#include <sanitizer/tsan_interface.h>
#define CHAT_HB_RELEASE(addr) __tsan_release((void *)(addr))
#define CHAT_HB_ACQUIRE(addr) __tsan_acquire((void *)(addr))
#else
#define CHAT_HB_RELEASE(addr) ((void)(addr))
#define CHAT_HB_ACQUIRE(addr) ((void)(addr))
#endif
extern char chat_tsan_grace;

/* The last thing each chat callback does: everything it read from the
 * registries it read before this worker's next quiescent state. */
static inline void chat_grace_release(void)
{
        CHAT_HB_RELEASE(&chat_tsan_grace);
}

/* live.c: process-wide counts of the chat's own objects (chat.h). [any] */
enum chat_live_kind { CHAT_LIVE_CLIENTS, CHAT_LIVE_ROOMS, CHAT_LIVE_NICKS, CHAT_LIVE_MSGS };
void chat_live_add(enum chat_live_kind kind, long delta);

/* Appends @len bytes at @s to the line at @buf + *@off (which has room). */
static inline void chat_put(char *buf, size_t *off, const void *s, size_t len)
{
        memcpy(buf + *off, s, len);
        *off += len;
}

static inline void chat_puts(char *buf, size_t *off, const char *s)
{
        chat_put(buf, off, s, strlen(s));
}

struct chat_worker;

/* The server: set up before the workers start, read-only afterwards but for
 * the atomics marked so. */
struct chat_server {
        tern_server *srv;
        struct chat_worker *workers;
        int nworkers;
        struct cds_lfht *rooms;
        struct cds_lfht *nicks;
        struct tern_line_config line_cfg;
        struct chat_opts opts;
        size_t scratch_cap;
        uint64_t room_seq;  /* atomic */
        uint32_t guest_seq; /* atomic */
        int stopping;       /* atomic: no leave notices during shutdown */
        /* --max-conns, enforced here rather than by tern so that a client
         * over it reads "! server full" before the close. */
        struct app_conn_limit limit;
        int tls_listener; /* its id, or 0 without TLS */
        /* --cluster (cluster.h): NULL without. @tag, 8 hex digits drawn at
         * start, names this instance in Redis and in guest names, so that
         * two instances never hand out the same guest name. */
        struct chat_cluster *cluster;
        char tag[9];
};

static inline bool chat_stopping(const struct chat_server *cs)
{
        return __atomic_load_n(&cs->stopping, __ATOMIC_ACQUIRE);
}

#endif
