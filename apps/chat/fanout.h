/*
 * Layer 3 (chat.h lists the layers): each worker's room -> local members
 * map, delivery to those members, room broadcasts across workers, and the
 * slow-consumer rule. Includes registry.h and worker.h.
 *
 * A walk over a member list only sends: a member that falls too far behind
 * is marked, and the marked members are dropped (through the worker's
 * drop_slow callback, which the client layer supplies) by
 * chat_fanout_settle(), after the walk. A send that fails just returns:
 * tern closes the connection and the member's on_close, which the loop runs
 * later, makes it leave. So nothing ever changes a list while it is walked.
 */
#ifndef CHAT_FANOUT_H
#define CHAT_FANOUT_H

#include "registry.h"
#include "worker.h"

/* What the fan-out knows of a client: embedded in struct chat_client. */
struct chat_member {
        struct cds_list_head link; /* in lroom->members */
        struct cds_list_head slow; /* in w->slow while marked too slow */
        tern_conn *conn;           /* NULL once closed */
        struct chat_lroom *lroom;  /* this worker's state for its room, or NULL */
};

/* One worker's view of one room: its local members. Worker-private. */
struct chat_lroom {
        struct chat_lroom *next; /* hash chain */
        uint64_t id;             /* room->id: ids are never reused, pointers could be */
        struct cds_list_head members;
        uint32_t n;
};

/* Sets up @w's member lists; @drop_slow drops a member marked too slow (it
 * may broadcast, and so mark others; it must not call chat_fanout_settle).
 * [before start] Returns 0 or -ENOMEM. */
int chat_fanout_init(struct chat_worker *w, void (*drop_slow)(struct chat_member *m));
/* After the workers stopped. */
void chat_fanout_destroy(struct chat_worker *w);

void chat_member_init(struct chat_member *m, tern_conn *c);
/* Marked too slow by a send, and not dropped yet. */
static inline bool chat_member_marked(const struct chat_member *m)
{
        return m->slow.next != &m->slow;
}
/* Marked, closed or closing: the member should not speak any more. */
bool chat_member_gone(const struct chat_member *m);

/*
 * Sends @len bytes at @data (borrowed) to @m. A member whose pending output
 * passes max_outbuf is marked, and gets nothing more until it is dropped.
 * Returns 0, -EPIPE (marked or closed), -ENOBUFS (marked by this send), or
 * tern_conn_send()'s error (tern then closes the connection).
 */
int chat_member_send(struct chat_worker *w, struct chat_member *m, const void *data, size_t len);
/* Drops the members marked so far, one at a time, until none is left. */
void chat_fanout_settle(struct chat_worker *w);

/* Local membership in @room (which holds a count for this worker). */
struct chat_lroom *chat_lroom_get(struct chat_worker *w, const struct chat_room *room);
struct chat_lroom *chat_lroom_find(struct chat_worker *w, uint64_t id);
void chat_lroom_add(struct chat_worker *w, struct chat_lroom *lr, struct chat_member *m);
/* Off its member list and off the slow list; frees an emptied lroom. */
void chat_member_detach(struct chat_worker *w, struct chat_member *m);

/* Sends @len bytes at @data (borrowed) to @w's members of @lr only: for
 * lines that came from another instance (cluster.c). Marks, never drops:
 * settle afterwards. */
void chat_lroom_deliver(struct chat_worker *w, struct chat_lroom *lr, const char *data, size_t len);
/* The same to every member of every room on @w (cluster link notices). */
void chat_fanout_tell_all(struct chat_worker *w, const char *data, size_t len);

/* Delivers everything already handed to this worker. */
void chat_inbox_drain(struct chat_worker *w);
/* Sends @len bytes at @data (borrowed) to every member of @room, on every
 * worker, the caller included if it is a member. @from, if not NULL, is the
 * member speaking: nothing is sent if the inbox drain before it finds it
 * gone. Returns 0, 1 when another worker's inbox is now past max_inbox (the
 * caller should pause the speaker), or -ENOMEM. Marks, never drops: settle
 * afterwards. */
int chat_broadcast(struct chat_worker *w, const struct chat_member *from, struct chat_room *room,
                   const char *data, size_t len);

#endif
