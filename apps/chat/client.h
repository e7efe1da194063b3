/*
 * Layer 4 (chat.h lists the layers): one client's chat state and what it
 * does to the chat: sends to it, joins, departures, the idle timer.
 * Includes cluster.h (and so fanout.h, registry.h and worker.h). [worker]
 *
 * Every function here that fans out (a broadcast, an inbox drain, a send)
 * settles before it returns: members marked too slow meanwhile, this
 * client included, have departed by then.
 */
#ifndef CHAT_CLIENT_H
#define CHAT_CLIENT_H

#include "cluster.h"

struct chat_client {
        struct chat_member m; /* conn, room list, slow mark */
        struct chat_worker *w;
        struct chat_nick *nick; /* our registry entry; NULL once departed */
        struct chat_room *room; /* counted membership; NULL when in none */
        struct tern_timer idle;
        uint64_t last_input; /* loop ms */
        /* Flood control, a token bucket in thousandths of a line: refilled
         * at flood_rate per second up to flood_burst lines. */
        uint64_t flood_tokens;
        uint64_t flood_stamp;               /* loop ms of the last refill */
        uint64_t flood_window_start;        /* loop ms: the drops below are since then */
        uint32_t flood_drops;               /* lines dropped in the current window */
        bool flood_warned;                  /* "! slow down" sent since the last line let through */
        bool departed;                      /* left the chat; the connection may still flush */
        bool throttled;                     /* reading paused: another worker's inbox is full */
        struct cds_list_head throttle_link; /* in w->throttled while throttled */
        /* The command layer's: a /who is out to other workers, so later
         * lines wait in @pend (and reading pauses) so that replies keep the
         * order of commands. */
        bool waiting;
        bool eof;      /* the client finished sending while waiting: leave after */
        uint8_t *pend; /* records: u32 length (UINT32_MAX: too long) + bytes */
        size_t pend_len, pend_cap;
        /* A command waiting for the cluster's answer (cluster_cmds.c). */
        struct chat_cluster_claim *claim;
        void (*claim_done)(struct chat_client *cl);
        char claim_name[CHAT_NAME_MAX + 1];
        char *claim_line; /* /msg's echo, sent once the line crossed */
};

static inline struct chat_client *chat_client_of(struct chat_member *m)
{
        return caa_container_of(m, struct chat_client, m);
}

/* Departed, marked too slow, or its connection closed or closing: it should
 * not act any more (its on_close will make it leave if it has not). */
static inline bool chat_client_gone(const struct chat_client *cl)
{
        return cl->departed || chat_member_gone(&cl->m);
}

/* Sets the fan-out of @w up with this layer's slow-consumer drop. */
int chat_client_worker_init(struct chat_worker *w);
/* The worker's loop stops: resumes nobody, stops the resume timer. */
void chat_client_worker_stop(struct chat_worker *w);
/* Whether something other than a /who keeps @cl from reading (the command
 * layer resumes reading only when this is false). */
static inline bool chat_client_throttled(const struct chat_client *cl)
{
        return cl->throttled;
}

/* A new connection: greets it with a guest name and joins the lobby.
 * Returns the client (attached to @c), or NULL (the connection is then
 * aborted). */
struct chat_client *chat_client_open(struct chat_worker *w, tern_conn *c);
/* The connection closed (its on_close): departs and frees @cl. */
void chat_client_closed(struct chat_client *cl, enum tern_close_reason reason, int err);

/* Sends to one client, which departs with a notice if its pending output
 * passes max_outbuf. Returns 0 or -errno. */
int chat_send(struct chat_client *cl, const void *data, size_t len);
int chat_sendf(struct chat_client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Says @len bytes at @data to @room (on every worker and, with --cluster,
 * every instance); @from as for chat_broadcast(). Returns its result. */
int chat_room_say(struct chat_worker *w, const struct chat_member *from, struct chat_room *room,
                  const char *data, size_t len);
/* Says @len bytes at @data to the client's room (or to the client alone if
 * it is in none). Returns 0 or -ENOMEM. */
int chat_client_say(struct chat_client *cl, const char *data, size_t len);
/* Leaves the current room and joins @name: the room move of docs/chat.md.
 * Returns 0, or -ENOMEM. */
int chat_client_join(struct chat_client *cl, const char *name, size_t len);
/* Flood control for one line the client sent, before it is acted on.
 * Returns true if the line may go on; false if it is dropped (the first
 * drop of a burst answers "! slow down"; too many drops within a window
 * disconnect the client, which is then gone). */
bool chat_client_flood_ok(struct chat_client *cl);
/* Leaves the chat (room, nickname, timer); @why, if any, is sent first and
 * the connection then closes after flushing. */
void chat_client_depart(struct chat_client *cl, const char *why);

#endif
