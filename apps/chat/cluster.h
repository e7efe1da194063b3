/*
 * Layer 3.5 (chat.h lists the layers): instances of tern-chat pointed at the
 * same Redis (--cluster redis://HOST:PORT) form one chat. Includes fanout.h.
 * docs/chat.md, "Cluster", says what is promised and why.
 *
 * Each worker has its own link to Redis: two hiredis async connections on
 * the worker's own loop (one publishes and runs commands, one only
 * subscribes, as Redis requires), reconnected with backoff. Everything here
 * runs on the worker's thread, so nothing is shared with other workers:
 *
 *   - a room's lines go out on the speaker's worker's link (PUBLISH on the
 *     room's channel), so one sender's lines keep their order;
 *   - a worker subscribes to a room's channel while it has local members
 *     there and delivers what comes in to those members only;
 *   - nicknames (guest names too) are keys in Redis (SET NX with an
 *     expiry), refreshed by a heartbeat while their owner is connected;
 *   - each worker mirrors who is in which room into Redis for /who and
 *     /rooms, and worker 0 takes private lines for this instance.
 *
 * Without --cluster, or when tern-chat is built without hiredis, every
 * function here is a no-op and chat_cluster_on() is false. [worker] unless
 * noted.
 */
#ifndef CHAT_CLUSTER_H
#define CHAT_CLUSTER_H

#include "fanout.h"

/* How long a nickname outlives its instance: a crashed instance's names
 * are free again at most this long after its last heartbeat. */
#define CHAT_CLUSTER_NICK_TTL_MS  10000
#define CHAT_CLUSTER_HEARTBEAT_MS 3000
/* Reconnect delays: doubling from the first to the last, with jitter. */
#define CHAT_CLUSTER_BACKOFF_MIN_MS 100
#define CHAT_CLUSTER_BACKOFF_MAX_MS 3000
/* Bytes a worker may have published and not yet seen acknowledged; lines
 * past it do not cross (counted as dropped). */
#define CHAT_CLUSTER_PUB_QUEUE (1024 * 1024)
/* Largest reply accepted from Redis before the link is called broken. */
#define CHAT_CLUSTER_MAX_REPLY (1024 * 1024)

/* [any, before start] Sets up one link per worker when opts.cluster is
 * set. Returns 0, -EINVAL (a bad URL, or built without hiredis) or
 * -ENOMEM. */
int chat_cluster_init(struct chat_server *cs);
/* [after the workers stopped] Frees what chat_cluster_init() made. */
void chat_cluster_destroy(struct chat_server *cs);
/* On the worker's thread as it starts: connects. */
void chat_cluster_worker_start(struct chat_worker *w);
/* On the worker's thread as it stops: closes the link, stops its timers. */
void chat_cluster_worker_stop(struct chat_worker *w);

static inline bool chat_cluster_on(const struct chat_server *cs)
{
        return cs->cluster != NULL;
}
/* The link of @w is connected and subscribed: lines cross. */
bool chat_cluster_up(const struct chat_worker *w);

/* Sends @len bytes at @data (a finished line for @room) to the other
 * instances. Counted and not sent while the link is down or its queue is
 * full. */
void chat_cluster_publish(struct chat_worker *w, const struct chat_room *room, const char *data,
                          size_t len);
/* @room got its first member on @w: subscribe. */
void chat_cluster_room_open(struct chat_worker *w, const struct chat_room *room);
/* @room's last member on @w left: unsubscribe. */
void chat_cluster_room_close(struct chat_worker *w, const struct chat_room *room);

/* A nickname claim in flight (opaque). */
struct chat_cluster_claim;
/* @result: 0 (the name is ours in Redis), -EEXIST (someone holds it),
 * -ENOTCONN (the link went down first). */
typedef void (*chat_cluster_claim_cb)(void *arg, int result);
/* Asks Redis for the lower-case nickname @key (SET NX with the expiry).
 * Returns the claim, whose @cb runs once with the answer unless cancelled;
 * or NULL with errno ENOTCONN (the link is down) or ENOMEM. */
struct chat_cluster_claim *chat_cluster_nick_claim(struct chat_worker *w, const char *key,
                                                   chat_cluster_claim_cb cb, void *arg);
/* The claimer went away: @cb will not run; a name won meanwhile is given
 * back. */
void chat_cluster_claim_cancel(struct chat_cluster_claim *c);
/* Registers the guest name @key, unique by its instance tag, so that /msg
 * from other instances finds it; no answer is awaited. */
void chat_cluster_nick_adopt(struct chat_worker *w, const char *key);
/* Gives a name this worker holds back to the cluster (no-op otherwise). */
void chat_cluster_nick_release(struct chat_worker *w, const char *key);

/* The cluster-wide view of who is where, for /rooms and /who: each worker
 * mirrors its members (display nickname -> display room) into a hash in
 * Redis that expires unless the heartbeat refreshes it. */
void chat_cluster_member_set(struct chat_worker *w, const char *nick, const char *room);
void chat_cluster_member_del(struct chat_worker *w, const char *nick);
/* @result 0 and @n strings at @pairs; or -ENOTCONN with none. */
typedef void (*chat_cluster_list_cb)(void *arg, int result, size_t n, const char *const *pairs);
/* Asks Redis for that view: with @room NULL, every room and its member
 * count across the cluster (room, count in decimal, room, count...); else
 * the live members of the room whose lower-case name is @room (nickname,
 * room, ...). NULL (errno) as chat_cluster_nick_claim(). */
struct chat_cluster_claim *chat_cluster_members(struct chat_worker *w, const char *room,
                                                chat_cluster_list_cb cb, void *arg);
/* Sends the finished line @line (@len bytes) to the nickname @key held by
 * another instance. @cb's result: 0 (handed to that instance), -ENOENT (no
 * such name in the cluster, or its instance is gone), -ENOTCONN. */
struct chat_cluster_claim *chat_cluster_pm(struct chat_worker *w, const char *key, const char *line,
                                           size_t len, chat_cluster_claim_cb cb, void *arg);
/* Runs on worker 0 for each private line another instance sent to @key
 * here (the layer above delivers it). [before start] */
typedef void (*chat_cluster_pm_cb)(struct chat_worker *w, const char *key, const char *line,
                                   size_t len);
void chat_cluster_set_pm_handler(struct chat_server *cs, chat_cluster_pm_cb cb);

/* Lines not sent to the other instances since start: link down, or queue
 * full. [any] */
uint64_t chat_cluster_lost(const struct chat_server *cs);

#endif
