/*
 * tern-kv's server side: RESP commands over the shared store (store.h).
 *
 * One struct kv_app per server. kv_app_apply() points a server's options at
 * it: the RESP codec decodes each command, kv's frame callback runs it and
 * sends the reply. Replies to pipelined commands leave in one write because
 * the runtime corks a connection while one read's frames are delivered
 * (conn.h, tern_conn_cork).
 *
 * Threads: kv_app_init / kv_app_fini from one thread, outside the server's
 * life; everything else runs on the worker threads.
 */
#ifndef TERN_KV_H
#define TERN_KV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/cli.h"
#include "resp.h"
#include "server.h"
#include "store.h"

/* Queued output past which a connection stops reading until half of it has
 * drained: a client that pipelines without reading cannot grow it further. */
#define KV_HIGH_WATER (4u << 20)

/* Longest reply one command may build: the runtime's max_outbuf, past which
 * the connection would be closed anyway. Only MGET can get near it: a 10 KiB
 * request naming one 1 MiB value 1,023 times would otherwise allocate and
 * copy 1 GiB before any output limit could look at it. */
#define KV_MAX_REPLY (64u << 20)

/* Longest client name CLIENT SETNAME accepts: names show up in every
 * CLIENT LIST, so one client cannot make that reply large. */
#define KV_NAME_MAX 128

/* Active expiry runs this often on every worker (Redis's hz 10). */
#define KV_TICK_MS 100

struct kv_client;
struct kv_worker;

struct kv_app {
        struct kv_store *store;
        struct tern_resp_config resp; /* the codec's limits, keys and values included */
        const char *requirepass;      /* borrowed; NULL = no AUTH needed */
        int64_t started_ms;           /* for INFO's uptime */
        /* Every connection and worker, for CLIENT LIST and INFO; under lock. */
        pthread_mutex_t lock;
        struct kv_client *clients;
        struct kv_worker *workers;
        size_t nclients;
        uint64_t next_id;     /* CLIENT ID; atomic */
        uint64_t connections; /* accepted so far; atomic */
        /* --max-conns, enforced here rather than by tern so that a client
         * over it reads why (.max 0: unlimited; set before the server starts). */
        struct app_conn_limit limit;
};

/*
 * kv_app_init - build @app with the limits @resp (borrowed, copied; NULL =
 * the RESP defaults) and a store capped at @max_memory bytes (0 = no cap).
 * Returns 0, -EINVAL for limits tern_resp_config_check() refuses, -ENOMEM.
 */
int kv_app_init(struct kv_app *app, const struct tern_resp_config *resp, size_t max_memory);

/* Frees the store and every value in it. The server must be freed first. */
void kv_app_fini(struct kv_app *app);

/*
 * kv_app_apply - set @o's ops, codec, codec_config, user, worker hooks and
 * water marks for tern-kv. @app is borrowed and must outlive the server.
 */
void kv_app_apply(struct tern_server_opts *o, struct kv_app *app);

#endif
