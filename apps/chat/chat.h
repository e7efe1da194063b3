/*
 * tern-chat: the bundled multi-room chat server. docs/chat.md explains the
 * protocol and why the design is race-free.
 *
 * This header is the program's public face: the server's life, the
 * configuration, the health check and the leak counters, for main.c and
 * the tests. The modules behind it call each other in one direction only,
 * each file including only the headers of the layers below its own:
 *
 *   base.h, live.c   constants, the shared server state, leak counters
 *   registry         rooms and nicknames (shared, lock-free)
 *   worker           per-worker state, room messages, inboxes
 *   fanout           per-worker member lists, delivery, the slow-consumer mark
 *   cluster          --cluster: each worker's link to Redis (cluster.h)
 *   client           one connection's chat state: sends, joins, departures
 *   cluster_cmds     /nick /rooms /who /msg when Redis answers them
 *   who              /who's scatter-gather across workers
 *   commands         the line protocol
 *   server           tern's callbacks, the server's life
 *
 * A lower layer that must reach a higher one is handed a callback (fanout's
 * "drop this slow member", who's "the answer went out").
 */
#ifndef CHAT_H
#define CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/tlsopt.h"
#include "line.h"
#include "tern.h"

#define CHAT_NAME_MAX            32 /* nick and room names: 1..32 of [A-Za-z0-9_-] */
#define CHAT_DEFAULT_PORT        7000
#define CHAT_DEFAULT_IDLE_S      300
#define CHAT_DEFAULT_LINE        4096
#define CHAT_DEFAULT_OUTBUF      (1024 * 1024)
#define CHAT_DEFAULT_INBOX       (4 * 1024 * 1024)
#define CHAT_DEFAULT_FLOOD_RATE  10 /* lines per second, per client */
#define CHAT_DEFAULT_FLOOD_BURST 20 /* lines at once, per client */
/* A client that has this many bursts' worth of lines dropped within
 * CHAT_FLOOD_WINDOW_MS is disconnected. */
#define CHAT_FLOOD_KICK_BURSTS 5
#define CHAT_FLOOD_WINDOW_MS   10000
#define CHAT_LOBBY             "lobby"
/* Longest line the server writes besides the client's own text:
 * "[pm to " NAME "] " NAME ": " ... "\r\n" and friends. */
#define CHAT_LINE_OVERHEAD (2 * CHAT_NAME_MAX + 32)

/* ---- server (server.c) ---- */

struct chat_opts {
        const char *bind;             /* NULL: every IPv4 and IPv6 address; borrowed
                                         until chat_server_new() returns */
        uint16_t port;                /* 0: ephemeral (tests) */
        int workers;                  /* 0: CPUs available */
        enum tern_accept_mode accept; /* where connections are accepted (tern's) */
        uint32_t idle_timeout_ms;     /* 0: off */
        uint32_t max_conns;           /* 0: unlimited */
        size_t max_line;              /* longest client line, terminator excluded */
        size_t max_outbuf;            /* pending output past which a client is dropped */
        size_t max_inbox;             /* bytes other workers may have queued for one
                                         worker before their speakers pause (reading
                                         resumes below half of it) */
        uint32_t drain_timeout_ms;    /* 0: tern's default; bounds shutdown and the
                                         linger of a dropped slow client */
        uint32_t flood_rate;          /* lines per second a client may send on
                                         average; 0: no flood control */
        uint32_t flood_burst;         /* lines it may send at once; 0: no flood control */
        const tern_tls *tls;          /* also listen for TLS on tls_port, the same
                                         rooms (borrowed; outlives the server) */
        uint16_t tls_port;
        const char *cluster; /* redis://HOST:PORT shared by every instance of
                                one chat, or NULL (borrowed until
                                chat_server_new() returns) */
};

/* Fills @o with the documented defaults (port 7000, 300 s, 4096 B, 1 MiB,
 * 10 lines/s with bursts of 20). [any] */
void chat_opts_init(struct chat_opts *o);

struct chat_server;

/*
 * chat_server_new - create the registries and a tern server listening on
 * the address of @o (copied). [any thread that is not a tern worker]
 * The caller owns the result and releases it with chat_server_free().
 * Returns NULL with errno set: EINVAL for bad options or an address that
 * does not resolve, EADDRINUSE, ENOMEM, ...
 */
struct chat_server *chat_server_new(const struct chat_opts *o);
/* Starts the workers. [not a worker] Returns 0 or tern_server_start()'s
 * -errno. */
int chat_server_start(struct chat_server *cs);
/* Graceful stop: every client gets "* server shutting down", then its
 * connection closes. Idempotent. Async-signal-safe. */
void chat_server_stop(struct chat_server *cs);
/* Waits for a started server to stop. Returns 0 or -errno. [not a worker] */
int chat_server_wait(struct chat_server *cs);
/* Frees a server that was never started or has been waited for: drops
 * undelivered messages, waits for every call_rcu callback, destroys the
 * registries. [not a worker] */
void chat_server_free(struct chat_server *cs);
uint16_t chat_server_port(const struct chat_server *cs); /* [any] */
/* The TLS listener's port, or 0 without TLS. [any] */
uint16_t chat_server_tls_port(const struct chat_server *cs);
int chat_server_workers(const struct chat_server *cs); /* [any] */
/* The underlying tern server (borrowed, until chat_server_free()). [any] */
tern_server *chat_server_tern(const struct chat_server *cs);
/* The most output ever pending for one client, in bytes: the memory bound
 * of the slow-consumer rule, for operators and tests. [any] */
size_t chat_server_peak_queued(const struct chat_server *cs);
/* The most bytes ever queued at once in one worker's inbox, and how often a
 * speaker was paused because an inbox was over max_inbox. [any] */
size_t chat_server_peak_inbox(const struct chat_server *cs);
uint64_t chat_server_throttles(const struct chat_server *cs);
/* Clients turned away over max_conns ("! server full"). [any] */
uint64_t chat_server_refused(const struct chat_server *cs);
/* Lines dropped by flood control, and clients disconnected for flooding. [any] */
uint64_t chat_server_flood_dropped(const struct chat_server *cs);
uint64_t chat_server_flood_kicked(const struct chat_server *cs);

/* One worker's counters since start, for the admin endpoint. */
struct chat_worker_stats {
        uint64_t said;        /* lines clients said into a room on this worker */
        uint64_t delivered;   /* lines queued to this worker's members */
        uint64_t slow_drops;  /* members dropped as too slow */
        uint64_t throttles;   /* speakers paused because an inbox was full */
        uint64_t inbox_bytes; /* queued for this worker now, not yet taken */
        /* Delivery latency of messages from other workers: from encoding
         * there to delivery here (tern_hist_observe). */
        struct tern_hist delivery;
};
/* Reads worker @i's counters (relaxed loads). [any] */
void chat_server_worker_stats(const struct chat_server *cs, int i, struct chat_worker_stats *out);

/* Process-wide counts of the chat's own objects, for leak checks. [any] */
struct chat_live_counts {
        long clients;
        long rooms; /* room objects not yet freed (call_rcu pending included) */
        long nicks; /* nickname entries not yet freed */
        long msgs;  /* room messages not yet freed */
};
void chat_live_counts(struct chat_live_counts *out);

/* Checks a --cluster URL, redis://HOST[:PORT] (port 6379 by default), and
 * copies HOST into @host (@cap bytes) and the port into @port when they
 * are not NULL. Returns 0 or -EINVAL. [any] (cluster.c) */
int chat_cluster_url(const char *url, char *host, size_t cap, uint16_t *port);

/* ---- configuration (config.c) ---- */

struct chat_config {
        struct chat_opts opts;
        enum tern_log_level log_level;
        enum tern_log_format log_format;
        const char *check;  /* --check [HOST:]PORT, or NULL */
        struct app_tls tls; /* --tls-*, TERN_TLS_*; loaded by main */
        const char *admin;  /* --admin / TERN_ADMIN: the admin endpoint, or NULL */
};

typedef const char *(*chat_getenv_cb)(const char *name);

/*
 * chat_config_parse - fill @cfg from environment variables (looked up with
 * @getenv_fn) and then from @argv, so that a flag wins over its variable.
 * Returns 0; 1 when --help or --version was asked for (the text is printed
 * to @out);
 * -EINVAL with a one-line explanation in @err (at most @errlen bytes) for a
 * bad flag, value or variable. Uses getopt_long (and resets it), so one
 * thread at a time. Pointers in @cfg borrow from @argv and the environment.
 */
int chat_config_parse(struct chat_config *cfg, int argc, char **argv, chat_getenv_cb getenv_fn,
                      FILE *out, char *err, size_t errlen);

/* ---- health check (check.c) ---- */

/*
 * chat_check - connect to [HOST:]PORT (@target; HOST defaults to 127.0.0.1,
 * "[v6]:port" works), expect a "* welcome " line within @timeout_ms.
 * Returns 0 if the server answered, -EINVAL for a bad @target, or -errno /
 * -ETIMEDOUT / -EPROTO; @err (at most @errlen bytes) says what went wrong.
 */
int chat_check(const char *target, int timeout_ms, char *err, size_t errlen);

/* chat_check() of the admin endpoint at @target: GET /healthz must answer
 * "HTTP/1.1 200" within @timeout_ms. Same returns. */
int chat_check_healthz(const char *target, int timeout_ms, char *err, size_t errlen);

#endif
