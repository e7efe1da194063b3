/*
 * Layer 1 (chat.h lists the layers; includes base.h only). The shared
 * registries: rooms and nicknames, each a liburcu lock-free hash
 * table (rculfhash) under the QSBR flavour that tern's workers already
 * follow. Lookups take no lock and write nothing shared; updates are single
 * atomic commits (add_unique, replace, del); removed entries are freed by
 * call_rcu once every worker has passed a quiescent state, so a worker that
 * found an entry may use it until its callback returns.
 *
 * Keys are names folded to lower case, which is what makes nicknames (and
 * rooms) unique ignoring case: two /nick racing for "Bob" and "bOB" both
 * try to add_unique the key "bob" and exactly one wins.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "registry.h"

/* ---- names and hashing ---- */

static uint64_t sip_key[2];
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

/* Names come from the network: a keyed hash keeps a client from choosing
 * names that all land in one bucket. */
static void sip_init(void)
{
        if (getrandom(sip_key, sizeof(sip_key), GRND_NONBLOCK) != (ssize_t)sizeof(sip_key)) {
                sip_key[0] = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
                sip_key[1] = (uint64_t)(uintptr_t)&sip_key ^ (uint64_t)clock();
        }
}

static inline uint64_t rotl64(uint64_t x, int b)
{
        return (x << b) | (x >> (64 - b));
}

static inline void sip_round(uint64_t v[4])
{
        v[0] += v[1];
        v[1] = rotl64(v[1], 13);
        v[1] ^= v[0];
        v[0] = rotl64(v[0], 32);
        v[2] += v[3];
        v[3] = rotl64(v[3], 16);
        v[3] ^= v[2];
        v[0] += v[3];
        v[3] = rotl64(v[3], 21);
        v[3] ^= v[0];
        v[2] += v[1];
        v[1] = rotl64(v[1], 17);
        v[1] ^= v[2];
        v[2] = rotl64(v[2], 32);
}

/* SipHash-2-4 of @len bytes at @data with the key (@k0, @k1). */
uint64_t chat_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
        uint64_t v[4] = {k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull,
                         k0 ^ 0x6c7967656e657261ull, k1 ^ 0x7465646279746573ull};
        const uint8_t *p = data;
        size_t full = len & ~(size_t)7;
        for (size_t i = 0; i < full; i += 8) {
                uint64_t m = 0;
                for (int j = 0; j < 8; j++)
                        m |= (uint64_t)p[i + j] << (8 * j);
                v[3] ^= m;
                sip_round(v);
                sip_round(v);
                v[0] ^= m;
        }
        uint64_t b = (uint64_t)len << 56;
        for (size_t j = 0; j < (len & 7); j++)
                b |= (uint64_t)p[full + j] << (8 * j);
        v[3] ^= b;
        sip_round(v);
        sip_round(v);
        v[0] ^= b;
        v[2] ^= 0xff;
        for (int r = 0; r < 4; r++)
                sip_round(v);
        return v[0] ^ v[1] ^ v[2] ^ v[3];
}

uint64_t chat_hash(const char *key, size_t len)
{
        pthread_once(&sip_once, sip_init);
        return chat_siphash(sip_key[0], sip_key[1], key, len);
}

static inline bool name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
}

bool chat_name_valid(const char *s, size_t len)
{
        if (len == 0 || len > CHAT_NAME_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!name_char(s[i]))
                        return false;
        return true;
}

/* @len must be valid (chat_name_valid). */
static void name_key(char *key, const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                key[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] - 'A' + 'a' : s[i]);
        key[len] = '\0';
}

int chat_registry_init(struct chat_server *cs)
{
        /* Auto-resize: the nickname table grows with the number of clients,
         * the room table with the rooms they invent. */
        const int flags = CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING;
        cs->rooms = cds_lfht_new_flavor(64, 64, 0, flags, &urcu_qsbr_flavor, NULL);
        if (!cs->rooms)
                return -ENOMEM;
        cs->nicks = cds_lfht_new_flavor(1024, 64, 0, flags, &urcu_qsbr_flavor, NULL);
        if (!cs->nicks) {
                cds_lfht_destroy(cs->rooms, NULL);
                cs->rooms = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* Only once every client is gone and urcu_qsbr_barrier() ran. */
void chat_registry_destroy(struct chat_server *cs)
{
        if (cs->rooms && cds_lfht_destroy(cs->rooms, NULL))
                tern_error("tern-chat: room registry not empty at teardown");
        if (cs->nicks && cds_lfht_destroy(cs->nicks, NULL))
                tern_error("tern-chat: nickname registry not empty at teardown");
        cs->rooms = cs->nicks = NULL;
}

/* ---- rooms ---- */

static int room_match(struct cds_lfht_node *node, const void *key)
{
        const struct chat_room *r = caa_container_of(node, struct chat_room, node);
        CHAT_HB_ACQUIRE(r); /* found in the table: published by another worker */
        return strcmp(r->key, key) == 0;
}

static struct chat_room *room_new(struct chat_server *cs, const char *name, size_t len)
{
        struct chat_room *r = calloc(1, sizeof(*r) + (size_t)cs->nworkers * sizeof(r->count[0]));
        if (!r)
                return NULL;
        r->id = __atomic_add_fetch(&cs->room_seq, 1, __ATOMIC_RELAXED);
        r->members = 1; /* the creator's: a published room is never born dying */
        memcpy(r->name, name, len);
        name_key(r->key, name, len);
        chat_live_add(CHAT_LIVE_ROOMS, 1);
        CHAT_HB_RELEASE(r); /* published by add_unique / replace */
        return r;
}

static void topic_free_rcu(struct rcu_head *head)
{
        CHAT_HB_ACQUIRE(&chat_tsan_grace);
        free(caa_container_of(head, struct chat_topic, rcu));
}

/* A room that was never published needs no grace period. Its topic needs
 * none either: whoever frees the room is past every reader of the room, and
 * so of the topic it points to. */
static void room_free_now(struct chat_room *r)
{
        free(r->topic);
        free(r);
        chat_live_add(CHAT_LIVE_ROOMS, -1);
}

static void room_free_rcu(struct rcu_head *head)
{
        CHAT_HB_ACQUIRE(&chat_tsan_grace);
        room_free_now(caa_container_of(head, struct chat_room, rcu));
}

/* Takes a count unless the count already fell to zero (the room is dying). */
static bool get_unless_zero(uint32_t *count)
{
        uint32_t v = __atomic_load_n(count, __ATOMIC_RELAXED);
        while (v)
                if (__atomic_compare_exchange_n(count, &v, v + 1, true, __ATOMIC_SEQ_CST,
                                                __ATOMIC_RELAXED))
                        return true;
        return false;
}

/*
 * Lock-free join. The room's members count doubles as its reference count:
 * whoever drops it to zero unpublishes and frees the room, and a zero count
 * is final (get_unless_zero refuses it). A joiner that finds a dying room
 * does not wait for its remover: it replaces the node with a fresh room,
 * which cds_lfht_replace() refuses (-ENOENT) if the remover got there first,
 * in which case we look again. Every retry means another thread progressed.
 */
struct chat_room *chat_room_get(struct chat_server *cs, const char *name, size_t len, int worker)
{
        char key[CHAT_NAME_MAX + 1];
        name_key(key, name, len);
        unsigned long hash = (unsigned long)chat_hash(key, len);
        struct chat_room *fresh = NULL, *room = NULL;
        struct cds_lfht_iter iter;

        urcu_qsbr_read_lock();
        for (;;) {
                cds_lfht_lookup(cs->rooms, hash, room_match, key, &iter);
                struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
                if (node) {
                        room = caa_container_of(node, struct chat_room, node);
                        CHAT_HB_ACQUIRE(room);
                        if (get_unless_zero(&room->members))
                                break;
                        room = NULL;
                        if (!fresh && !(fresh = room_new(cs, name, len)))
                                break;
                        if (cds_lfht_replace(cs->rooms, &iter, hash, room_match, key,
                                             &fresh->node) == 0) {
                                room = fresh;
                                fresh = NULL;
                                break;
                        }
                        continue;
                }
                if (!fresh && !(fresh = room_new(cs, name, len)))
                        break;
                node = cds_lfht_add_unique(cs->rooms, hash, room_match, key, &fresh->node);
                if (node == &fresh->node) {
                        room = fresh;
                        fresh = NULL;
                        break;
                }
        }
        urcu_qsbr_read_unlock();

        if (fresh)
                room_free_now(fresh);
        if (!room) {
                errno = ENOMEM;
                return NULL;
        }
        /* After the members count: a sender that sees count[worker] > 0 finds
         * the room alive, and this worker's list is filled before it runs
         * anything a sender hands it (see docs/chat.md). */
        __atomic_add_fetch(&room->count[worker], 1, __ATOMIC_SEQ_CST);
        return room;
}

void chat_room_put(struct chat_server *cs, struct chat_room *room, int worker)
{
        __atomic_sub_fetch(&room->count[worker], 1, __ATOMIC_SEQ_CST);
        if (__atomic_sub_fetch(&room->members, 1, __ATOMIC_SEQ_CST))
                return;
        urcu_qsbr_read_lock();
        /* -ENOENT when a joiner already replaced the dying node. Either way
         * it is unpublished now, and it is ours to free. */
        cds_lfht_del(cs->rooms, &room->node);
        urcu_qsbr_read_unlock();
        urcu_qsbr_call_rcu(&room->rcu, room_free_rcu);
}

const struct chat_topic *chat_room_topic(const struct chat_room *room)
{
        struct chat_topic *t = rcu_dereference(room->topic);
        if (t)
                CHAT_HB_ACQUIRE(t); /* published by another worker's exchange */
        return t;
}

int chat_room_set_topic(struct chat_room *room, const char *text, size_t len)
{
        struct chat_topic *t = malloc(sizeof(*t) + len + 1);
        if (!t)
                return -ENOMEM;
        t->len = len;
        memcpy(t->text, text, len);
        t->text[len] = '\0';
        CHAT_HB_RELEASE(t);
        /* Concurrent /topic in two workers: each old value is freed once, by
         * whoever exchanged it out. */
        struct chat_topic *old = rcu_xchg_pointer(&room->topic, t);
        if (old)
                urcu_qsbr_call_rcu(&old->rcu, topic_free_rcu);
        return 0;
}

bool chat_room_is(const struct chat_room *room, const char *name, size_t len)
{
        char key[CHAT_NAME_MAX + 1];
        name_key(key, name, len);
        return strcmp(room->key, key) == 0;
}

struct room_row {
        const char *key;
        const char *name;
        uint32_t members;
};

static int room_row_cmp(const void *a, const void *b)
{
        return strcmp(((const struct room_row *)a)->key, ((const struct room_row *)b)->key);
}

char *chat_rooms_line(struct chat_server *cs, size_t *len)
{
        size_t cap = 16, n = 0;
        struct room_row *rows = malloc(cap * sizeof(*rows));
        if (!rows)
                return NULL;
        struct cds_lfht_iter iter;
        struct chat_room *r;
        char *line = NULL;

        /* The rows point into rooms; they stay valid until this worker's
         * next quiescent state, long after we are done with them. */
        urcu_qsbr_read_lock();
        cds_lfht_for_each_entry(cs->rooms, &iter, r, node)
        {
                CHAT_HB_ACQUIRE(r);
                uint32_t m = __atomic_load_n(&r->members, __ATOMIC_RELAXED);
                if (!m)
                        continue; /* dying */
                if (n == cap) {
                        struct room_row *more = realloc(rows, 2 * cap * sizeof(*rows));
                        if (!more)
                                goto out_unlock;
                        rows = more;
                        cap *= 2;
                }
                rows[n++] = (struct room_row){r->key, r->name, m};
        }
        qsort(rows, n, sizeof(*rows), room_row_cmp);
        /* " #" name "(" 10 digits ")" per room */
        size_t size = sizeof("* rooms:\r\n") + n * (CHAT_NAME_MAX + 16);
        line = malloc(size);
        if (!line)
                goto out_unlock;
        size_t off = (size_t)snprintf(line, size, "* rooms:");
        for (size_t i = 0; i < n; i++)
                off += (size_t)snprintf(line + off, size - off, " #%s(%u)", rows[i].name,
                                        rows[i].members);
        off += (size_t)snprintf(line + off, size - off, "\r\n");
        *len = off;
out_unlock:
        urcu_qsbr_read_unlock();
        free(rows);
        return line;
}

/* ---- nicknames ---- */

static int nick_match(struct cds_lfht_node *node, const void *key)
{
        const struct chat_nick *n = caa_container_of(node, struct chat_nick, node);
        CHAT_HB_ACQUIRE(n);
        return strcmp(n->key, key) == 0;
}

static struct chat_nick *nick_new(const char *name, size_t len, tern_handle owner)
{
        struct chat_nick *n = calloc(1, sizeof(*n));
        if (!n)
                return NULL;
        n->owner = owner;
        memcpy(n->name, name, len);
        name_key(n->key, name, len);
        chat_live_add(CHAT_LIVE_NICKS, 1);
        CHAT_HB_RELEASE(n); /* published by add_unique / add_replace */
        return n;
}

static void nick_free_now(struct chat_nick *n)
{
        free(n);
        chat_live_add(CHAT_LIVE_NICKS, -1);
}

static void nick_free_rcu(struct rcu_head *head)
{
        CHAT_HB_ACQUIRE(&chat_tsan_grace);
        nick_free_now(caa_container_of(head, struct chat_nick, rcu));
}

static unsigned long nick_hash(const struct chat_nick *n)
{
        return (unsigned long)chat_hash(n->key, strlen(n->key));
}

struct chat_nick *chat_nick_guest(struct chat_server *cs, tern_handle owner)
{
        /* Someone may have taken "guestN" with /nick: skip to the next N.
         * Each try consumes a fresh N, so this ends after at most as many
         * tries as there are nicknames. */
        for (int tries = 0; tries < 1 << 20; tries++) {
                unsigned n = __atomic_add_fetch(&cs->guest_seq, 1, __ATOMIC_RELAXED);
                char name[CHAT_NAME_MAX + 1];
                /* With --cluster, the instance's tag keeps guest names
                 * apart from other instances' (which count from 1 too). */
                int len = cs->tag[0] ? snprintf(name, sizeof(name), "guest%u-%s", n, cs->tag)
                                     : snprintf(name, sizeof(name), "guest%u", n);
                struct chat_nick *nick = nick_new(name, (size_t)len, owner);
                if (!nick)
                        return NULL;
                urcu_qsbr_read_lock();
                struct cds_lfht_node *node = cds_lfht_add_unique(
                    cs->nicks, nick_hash(nick), nick_match, nick->key, &nick->node);
                urcu_qsbr_read_unlock();
                if (node == &nick->node)
                        return nick;
                nick_free_now(nick);
        }
        errno = EEXIST;
        return NULL;
}

struct chat_nick *chat_nick_rename(struct chat_server *cs, struct chat_nick *old, const char *name,
                                   size_t len)
{
        struct chat_nick *nick = nick_new(name, len, old->owner);
        if (!nick)
                return NULL;
        unsigned long hash = nick_hash(nick);
        urcu_qsbr_read_lock();
        if (strcmp(nick->key, old->key) == 0) {
                /* Only the case changes. The key is ours and nobody else can
                 * remove it, so swap the entry without a moment without it. */
                cds_lfht_add_replace(cs->nicks, hash, nick_match, nick->key, &nick->node);
        } else {
                struct cds_lfht_node *node =
                    cds_lfht_add_unique(cs->nicks, hash, nick_match, nick->key, &nick->node);
                if (node != &nick->node) {
                        urcu_qsbr_read_unlock();
                        nick_free_now(nick);
                        errno = EEXIST;
                        return NULL;
                }
                cds_lfht_del(cs->nicks, &old->node);
        }
        urcu_qsbr_read_unlock();
        urcu_qsbr_call_rcu(&old->rcu, nick_free_rcu);
        return nick;
}

void chat_nick_drop(struct chat_server *cs, struct chat_nick *nick)
{
        urcu_qsbr_read_lock();
        cds_lfht_del(cs->nicks, &nick->node);
        urcu_qsbr_read_unlock();
        urcu_qsbr_call_rcu(&nick->rcu, nick_free_rcu);
}

struct chat_nick *chat_nick_find(struct chat_server *cs, const char *name, size_t len)
{
        if (!chat_name_valid(name, len))
                return NULL;
        char key[CHAT_NAME_MAX + 1];
        name_key(key, name, len);
        struct cds_lfht_iter iter;
        urcu_qsbr_read_lock();
        cds_lfht_lookup(cs->nicks, (unsigned long)chat_hash(key, len), nick_match, key, &iter);
        struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
        urcu_qsbr_read_unlock();
        if (!node)
                return NULL;
        CHAT_HB_ACQUIRE(node);
        return caa_container_of(node, struct chat_nick, node);
}
