/*
 * Layer 1 (chat.h lists the layers): the shared registries of rooms and
 * nicknames, and the names and keyed hash they rest on. [worker] unless
 * noted. Includes base.h only.
 */
#ifndef CHAT_REGISTRY_H
#define CHAT_REGISTRY_H

#include "base.h"

/* A room: shared by every worker through the registry, freed with call_rcu. */
struct chat_room {
        struct cds_lfht_node node;
        struct rcu_head rcu;
        uint64_t id;                  /* unique for the process's life: never reused */
        uint32_t members;             /* atomic; 0 means dying: it can no longer be joined */
        struct chat_topic *topic;     /* RCU pointer (chat_room_topic); NULL: none set */
        char key[CHAT_NAME_MAX + 1];  /* lower case: the registry key */
        char name[CHAT_NAME_MAX + 1]; /* as its creator spelt it */
        /* Members on each worker. Only worker i writes count[i]; senders
         * read all of them to decide whom to hand a message to. */
        uint32_t count[];
};

/* A room's topic: immutable once published; /topic swaps in a new one and
 * frees the old after a grace period, so a reader needs no lock. */
struct chat_topic {
        struct rcu_head rcu;
        size_t len;
        char text[];
};

/* A nickname entry: immutable once published; the owner replaces it. */
struct chat_nick {
        struct cds_lfht_node node;
        struct rcu_head rcu;
        tern_handle owner; /* the client's connection */
        char key[CHAT_NAME_MAX + 1];
        char name[CHAT_NAME_MAX + 1];
};

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
/* The room's topic, or NULL; valid until the calling worker's next
 * quiescent state, i.e. for the rest of the callback. */
const struct chat_topic *chat_room_topic(const struct chat_room *room);
/* Sets the topic to @len bytes at @text (already sanitized). Returns 0 or
 * -ENOMEM. */
int chat_room_set_topic(struct chat_room *room, const char *text, size_t len);
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

#endif
