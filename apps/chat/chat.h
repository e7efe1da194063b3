/*
 * tern-chat: the bundled multi-room chat server. docs/chat.md explains the
 * protocol and why the design below is race-free.
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
#ifndef CHAT_H
#define CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <urcu-qsbr.h>
#include <urcu/list.h>
#include <urcu/rculfhash.h>
#include <urcu/wfcqueue.h>

#include "line.h"
#include "tern.h"

/*
 * ThreadSanitizer cannot see the ordering liburcu's (uninstrumented) queues,
 * hash table and grace periods provide; these tell it, and compile to
 * nothing otherwise. chat_tsan_grace stands for "a grace period passed":
 * every worker releases it when its outermost callback returns, and
 * call_rcu callbacks acquire it before freeing.
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

#define CHAT_NAME_MAX       32 /* nick and room names: 1..32 of [A-Za-z0-9_-] */
#define CHAT_DEFAULT_PORT   7000
#define CHAT_DEFAULT_IDLE_S 300
#define CHAT_DEFAULT_LINE   4096
#define CHAT_DEFAULT_OUTBUF (1024 * 1024)
#define CHAT_LOBBY          "lobby"
/* Longest line the server writes besides the client's own text:
 * "[pm to " NAME "] " NAME ": " ... "\r\n" and friends. */
#define CHAT_LINE_OVERHEAD (2 * CHAT_NAME_MAX + 32)

/* ---- server (server.c) ---- */

struct chat_opts {
        const char *bind;          /* NULL: every IPv4 and IPv6 address; borrowed
                                      until chat_server_new() returns */
        uint16_t port;             /* 0: ephemeral (tests) */
        int workers;               /* 0: CPUs available */
        uint32_t idle_timeout_ms;  /* 0: off */
        uint32_t max_conns;        /* 0: unlimited */
        size_t max_line;           /* longest client line, terminator excluded */
        size_t max_outbuf;         /* pending output past which a client is dropped */
        uint32_t drain_timeout_ms; /* 0: tern's default; bounds shutdown and the
                                      linger of a dropped slow client */
};

/* Fills @o with the documented defaults (port 7000, 300 s, 4096 B, 1 MiB). [any] */
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
int chat_server_workers(const struct chat_server *cs);   /* [any] */
/* The underlying tern server (borrowed, until chat_server_free()). [any] */
tern_server *chat_server_tern(const struct chat_server *cs);
/* The most output ever pending for one client, in bytes: the memory bound
 * of the slow-consumer rule, for operators and tests. [any] */
size_t chat_server_peak_queued(const struct chat_server *cs);

/* Process-wide counts of the chat's own objects, for leak checks. [any] */
struct chat_live_counts {
        long clients;
        long rooms; /* room objects not yet freed (call_rcu pending included) */
        long nicks; /* nickname entries not yet freed */
        long msgs;  /* room messages not yet freed */
};
void chat_live_counts(struct chat_live_counts *out);

/* ---- configuration (config.c) ---- */

struct chat_config {
        struct chat_opts opts;
        enum tern_log_level log_level;
        enum tern_log_format log_format;
        const char *check; /* --check [HOST:]PORT, or NULL */
};

typedef const char *(*chat_getenv_cb)(const char *name);

/*
 * chat_config_parse - fill @cfg from environment variables (looked up with
 * @getenv_fn) and then from @argv, so that a flag wins over its variable.
 * Returns 0; 1 when --help was asked for (the text is printed to @out);
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

/* ---- internals shared between the modules ---- */

struct chat_worker;
struct chat_client;

/* A room: shared by every worker through the registry, freed with call_rcu. */
struct chat_room {
        struct cds_lfht_node node;
        struct rcu_head rcu;
        uint64_t id;                  /* unique for the process's life: never reused */
        uint32_t members;             /* atomic; 0 means dying: it can no longer be joined */
        char key[CHAT_NAME_MAX + 1];  /* lower case: the registry key */
        char name[CHAT_NAME_MAX + 1]; /* as its creator spelt it */
        /* Members on each worker. Only worker i writes count[i]; senders
         * read all of them to decide whom to hand a message to. */
        uint32_t count[];
};

/* A nickname entry: immutable once published; the owner replaces it. */
struct chat_nick {
        struct cds_lfht_node node;
        struct rcu_head rcu;
        tern_handle owner; /* the client's connection */
        char key[CHAT_NAME_MAX + 1];
        char name[CHAT_NAME_MAX + 1];
};

/* One worker's view of one room: its local members. Worker-private. */
struct chat_lroom {
        struct chat_lroom *next; /* hash chain */
        uint64_t id;             /* room->id: ids are never reused, pointers could be */
        struct cds_list_head members;
        uint32_t n;
        uint32_t pins; /* deliveries walking @members right now */
};

/*
 * A room message (or notice): encoded once, immutable, reference-counted,
 * handed to each worker that has members in the room. node[i] links it into
 * worker i's inbox, so handing it to N workers allocates nothing more.
 */
struct chat_msg {
        uint32_t refs; /* atomic */
        uint32_t len;
        uint64_t room_id;
        char *data; /* points past node[] */
        struct cds_wfcq_node node[];
};

struct chat_client {
        tern_conn *conn; /* NULL once closed */
        struct chat_worker *w;
        struct chat_nick *nick;   /* our registry entry; NULL once departed */
        struct chat_room *room;   /* counted membership; NULL when in none */
        struct chat_lroom *lroom; /* this worker's state for @room */
        struct cds_list_head member;
        struct tern_timer idle;
        uint64_t last_input; /* loop ms */
        bool departed;       /* left the chat; the connection may still flush */
        /* A /who is out to other workers: later lines wait in @pend (and
         * reading pauses) so that replies keep the order of commands. */
        bool waiting;
        bool eof;      /* the client finished sending while waiting: leave after */
        uint8_t *pend; /* records: u32 length (UINT32_MAX: too long) + bytes */
        size_t pend_len, pend_cap;
        struct chat_client *next_dead;
};

struct chat_worker {
        /* Any thread: producers append to the tail. */
        struct __cds_wfcq_head inbox_head;
        struct cds_wfcq_tail inbox_tail __attribute__((aligned(64)));
        /* This worker's thread only. */
        struct chat_server *cs __attribute__((aligned(64)));
        tern_loop *loop;
        int index;
        struct chat_lroom **lrooms; /* hash: room id -> local state */
        uint32_t lroom_mask;
        uint32_t nlrooms;
        struct chat_client *dead; /* freed when the outermost callback returns */
        int depth;                /* nesting of chat callbacks on this thread */
        int busy;                 /* deliveries walking member lists */
        bool in_drain;
        char *scratch;      /* one encoded line; top-level handlers only */
        size_t peak_queued; /* atomic (relaxed): most output a client ever had pending */
};

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
};

/* live.c-style counters */
enum chat_live_kind { CHAT_LIVE_CLIENTS, CHAT_LIVE_ROOMS, CHAT_LIVE_NICKS, CHAT_LIVE_MSGS };
void chat_live_add(enum chat_live_kind kind, long delta);

/* registry.c: names, hashing, rooms and nicknames. [worker] unless noted */
uint64_t chat_hash(const char *key, size_t len); /* keyed SipHash-2-4 [any] */
uint64_t chat_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len); /* [any] */
bool chat_name_valid(const char *s, size_t len);                               /* [any] */
int chat_registry_init(struct chat_server *cs); /* [any, before start] */
void chat_registry_destroy(struct chat_server *cs);
/* Joins (creating if needed) the room @name: takes one member count on
 * worker @worker. Returns NULL with errno ENOMEM. */
struct chat_room *chat_room_get(struct chat_server *cs, const char *name, size_t len, int worker);
/* Drops the member count chat_room_get() took; the last one frees the room
 * after a grace period. */
void chat_room_put(struct chat_server *cs, struct chat_room *room, int worker);
bool chat_room_is(const struct chat_room *room, const char *name, size_t len);
/* "* rooms: #a(3) #b(1)\r\n", malloc'ed (caller frees), or NULL. */
char *chat_rooms_line(struct chat_server *cs, size_t *len);
/* Registers a fresh guest name for @owner. Returns NULL (errno) on failure. */
struct chat_nick *chat_nick_guest(struct chat_server *cs, tern_handle owner);
/* Replaces @old (ours) by @name. Returns the new entry, or NULL with errno
 * EEXIST (taken by someone else, ignoring case) or ENOMEM. */
struct chat_nick *chat_nick_rename(struct chat_server *cs, struct chat_nick *old, const char *name,
                                   size_t len);
void chat_nick_drop(struct chat_server *cs, struct chat_nick *nick);
/* Looks @name up ignoring case. The entry is valid until the calling
 * worker's next quiescent state, i.e. for the rest of the callback. */
struct chat_nick *chat_nick_find(struct chat_server *cs, const char *name, size_t len);

/* fanout.c: messages, inboxes, local membership, delivery. [worker] */
int chat_worker_init(struct chat_worker *w, struct chat_server *cs, int index);
/* Drops whatever is still queued (after the workers stopped) and frees. */
void chat_worker_destroy(struct chat_worker *w);
struct chat_worker *chat_worker_of(tern_conn *c);
/* Delivers everything already handed to this worker. */
void chat_inbox_drain(struct chat_worker *w);
/* Sends @len bytes at @data (borrowed) to every member of @room, on every
 * worker, the caller included if it is a member. @from, if not NULL, is the
 * client speaking: nothing is sent if it turns out to have departed. */
int chat_broadcast(struct chat_worker *w, const struct chat_client *from, struct chat_room *room,
                   const char *data, size_t len);
/* Local membership of @cl in @room (which holds a count for this worker). */
struct chat_lroom *chat_lroom_get(struct chat_worker *w, const struct chat_room *room);
void chat_lroom_add(struct chat_worker *w, struct chat_lroom *lr, struct chat_client *cl);
void chat_lroom_detach(struct chat_worker *w, struct chat_client *cl);
struct chat_lroom *chat_lroom_find(struct chat_worker *w, uint64_t id);

/* server.c: clients. [worker] */
void chat_enter(struct chat_worker *w);
void chat_exit(struct chat_worker *w);
/* Sends to one client, dropping it (with a best-effort notice) if its
 * pending output passes max_outbuf. Returns 0 or -errno. */
int chat_send(struct chat_client *cl, const void *data, size_t len);
int chat_sendf(struct chat_client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Leaves the current room (and joins @name if not NULL): the room move of
 * docs/chat.md. Returns 0, or -ENOMEM. */
int chat_client_join(struct chat_client *cl, const char *name, size_t len);
/* Leaves the chat (room, nickname, timer); @why, if any, is sent first and
 * the connection then closes after flushing. */
void chat_client_depart(struct chat_client *cl, const char *why);

/* commands.c */
void chat_on_line(struct chat_client *cl, const uint8_t *line, size_t len);
/* A frame (line or TERN_FRAME_OVERSIZED) from the client, queued behind a
 * /who in flight if there is one. */
void chat_on_frame(struct chat_client *cl, const struct tern_frame *f);
/* Copies @len bytes, replacing ASCII control characters other than TAB. */
void chat_sanitize(char *dst, const uint8_t *src, size_t len);

#endif
