/*
 * tern-kv's store: an in-memory map from byte-string keys to byte-string
 * values, shared by every worker thread.
 *
 * Design: KV_SHARDS independent shards, each a chained hash table behind its
 * own mutex; a key's shard is picked by the top bits of a keyed SipHash-1-3.
 * Why locks rather than liburcu's lock-free rculfhash or ck_ht:
 *   - Redis semantics need atomic multi-key commands (MSET sets all keys or
 *     none, visible at once; MGET reads one snapshot) and read-modify-write
 *     (INCR). With shards they are cheap: lock the shards involved in
 *     ascending order (a 64-bit mask), never deadlocking. A lock-free table
 *     gives neither without a lock on top.
 *   - A value freed now is freed now: no grace period, no call_rcu thread,
 *     so --max-memory accounting is exact, FLUSHALL gives memory back at
 *     once, and teardown has nothing deferred to wait for.
 *   - Critical sections are a hash lookup plus a copy of the value, so with
 *     64 shards two workers rarely meet on one lock; when they do (every
 *     redis-benchmark client uses the same key by default) the adaptive
 *     mutex spins briefly instead of sleeping.
 * The cost is that a GET takes a lock that an RCU reader would not: two
 * uncontended atomic operations, small next to the read and write syscalls
 * every request costs anyway.
 *
 * Values are strings, hashes, lists, sets or sorted sets (obj.h holds the
 * containers); a key of the wrong type gets -EPROTOTYPE, Redis's WRONGTYPE.
 * Keys may carry an expiry time: an expired key is removed by the first
 * lookup that finds it, and kv_store_tick() samples keys with a TTL on every
 * worker's timer so that memory comes back without reads (store.c).
 *
 * Transactions: kv_hold() locks a set of shards for the calling thread;
 * until kv_release() every function called on that thread skips the locks
 * it already holds, so a queued command runs exactly as it would alone
 * while no other thread can see or touch its keys in between.
 *
 * Every function may be called from any thread at once, and none of them
 * keeps a pointer to its arguments after returning.
 */
#ifndef TERN_KV_STORE_H
#define TERN_KV_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "buf.h"
#include "resp.h"

#define KV_SHARDS 64 /* a power of two up to 64: lock sets are a uint64_t */

struct kv_store;

enum kv_type { KV_NONE, KV_STRING, KV_HASH, KV_LIST, KV_SET, KV_ZSET };

/* --maxmemory-policy: what a write does once memory is over the cap. */
enum kv_policy {
        KV_NOEVICTION,   /* refuse it with -ENOSPC (-OOM) */
        KV_ALLKEYS_LRU,  /* evict keys least recently used, by sampling */
        KV_VOLATILE_TTL, /* evict keys with a TTL, soonest to expire first */
};

struct kv_store_stats {
        size_t keys;    /* keys in the table */
        size_t bytes;   /* accounted memory: entries, containers, bucket arrays */
        size_t entries; /* entry allocations not yet freed: == keys at rest */
        size_t expires; /* keys with a TTL */
        size_t expired; /* keys removed because their TTL passed */
        size_t evicted; /* keys removed to stay under max_memory */
        size_t hits;    /* lookups that found their key */
        size_t misses;  /* lookups that did not */
};

enum kv_set_cond {
        KV_SET_ALWAYS,
        KV_SET_NX, /* only if the key does not exist */
        KV_SET_XX, /* only if it does */
};

/* Where a command's reply goes: @buf in protocol @proto (2 or 3), at most
 * @max bytes for replies whose size the client chooses (KEYS, LRANGE). */
struct kv_reply {
        struct tern_buf *buf;
        int proto;
        size_t max;
};

/* Replies that differ between RESP2 and RESP3. Return 0 or -ENOMEM. */
int kv_put_null(const struct kv_reply *r);       /* $-1 or _ */
int kv_put_null_array(const struct kv_reply *r); /* *-1 or _ */
int kv_put_map(const struct kv_reply *r, size_t pairs);
int kv_put_double(const struct kv_reply *r, double d);

/* Milliseconds since the epoch (CLOCK_REALTIME), the clock TTLs use. */
int64_t kv_now_ms(void);

/*
 * kv_store_new - an empty store. @max_memory caps the accounted bytes
 * (0 = no cap): once they are over it, writes that may add memory first
 * evict keys as @policy says, and fail with -ENOSPC when that cannot bring
 * them under. Returns NULL with errno ENOMEM.
 */
struct kv_store *kv_store_new(size_t max_memory);
void kv_store_set_policy(struct kv_store *st, enum kv_policy policy);
size_t kv_store_max_memory(const struct kv_store *st);
enum kv_policy kv_store_policy(const struct kv_store *st);

/* Frees the store and every key and value in it. No call may be running. */
void kv_store_free(struct kv_store *st);

/*
 * kv_store_tick - background work, from every worker's repeating timer:
 * advances the LRU clock and removes expired keys from the next few
 * shards, sampling 20 keys with a TTL at a time and going on while more
 * than a quarter of a sample had expired, as Redis's active expiry does.
 * Returns how many keys it removed.
 */
size_t kv_store_tick(struct kv_store *st);

/* ---- transactions ---- */

/* The shard bit of @key, for kv_hold(). */
uint64_t kv_shard_mask(struct kv_store *st, const void *key, size_t klen);
/* Locks the shards of @mask (ascending: the one global order) for the
 * calling thread until kv_release(). Holds cannot nest. */
void kv_hold(struct kv_store *st, uint64_t mask);
void kv_release(struct kv_store *st);
/* A stamp that changes whenever @key is written, created or deleted (0 =
 * absent), for WATCH. */
uint64_t kv_version(struct kv_store *st, const void *key, size_t klen);

/* ---- strings and keys ---- */

/*
 * Errors common to what follows: -EPROTOTYPE (the key holds another type),
 * -ENOMEM, -ENOSPC (over max_memory and nothing could be evicted), -E2BIG
 * (a key, value or reply over its limit), -EINVAL (a value that is not a
 * number), -ERANGE (overflow). Nothing is changed when one is returned.
 */

/* Appends the value as a bulk string, or a null. Returns 0 or -errno. */
int kv_get(struct kv_store *st, const void *key, size_t klen, const struct kv_reply *r);

struct kv_set_opts {
        enum kv_set_cond cond;
        int64_t expire; /* unix ms; 0 = none (the key loses any TTL) */
        bool keepttl;   /* keep the TTL the key had */
        bool get;       /* append the old value (or a null) to the reply */
};

/* Returns 1 when stored, 0 when the condition said no, or -errno. */
int kv_set_full(struct kv_store *st, const void *key, size_t klen, const void *val, size_t vlen,
                const struct kv_set_opts *o, const struct kv_reply *r);
int kv_set(struct kv_store *st, const void *key, size_t klen, const void *val, size_t vlen,
           enum kv_set_cond cond);

/* Adds @by to the integer at @key (absent = 0), keeping its TTL. */
int kv_incr(struct kv_store *st, const void *key, size_t klen, int64_t by, int64_t *result);
/* The same for a floating-point value; the new value is appended as a bulk. */
int kv_incrbyfloat(struct kv_store *st, const void *key, size_t klen, long double by,
                   const struct kv_reply *r);
/* Appends @val; the new length in *@len; -E2BIG past @max_len bytes. */
int kv_append(struct kv_store *st, const void *key, size_t klen, const void *val, size_t vlen,
              size_t max_len, int64_t *len);

/* GETDEL. */
int kv_getdel(struct kv_store *st, const void *key, size_t klen, const struct kv_reply *r);
enum kv_getex_mode { KV_GETEX_KEEP, KV_GETEX_SET, KV_GETEX_PERSIST };
/* GETEX: the value, and the TTL set to @expire (unix ms) or removed. */
int kv_getex(struct kv_store *st, const void *key, size_t klen, enum kv_getex_mode mode,
             int64_t expire, const struct kv_reply *r);

/* EXPIRE's NX XX GT LT. */
enum { KV_EXP_NX = 1, KV_EXP_XX = 2, KV_EXP_GT = 4, KV_EXP_LT = 8 };
/* Sets @key to expire at @when (unix ms; at or before now deletes it).
 * Returns 1 when set, 0 when the key is absent or @flags said no. */
int kv_expire(struct kv_store *st, const void *key, size_t klen, int64_t when, int flags);
/* Milliseconds left, -1 without a TTL, -2 absent. */
int64_t kv_pttl(struct kv_store *st, const void *key, size_t klen);
/* Removes the TTL: 1, or 0 when absent or without one. */
int kv_persist(struct kv_store *st, const void *key, size_t klen);
enum kv_type kv_type_of(struct kv_store *st, const void *key, size_t klen);
const char *kv_type_name(enum kv_type t);
/* RENAME (the TTL moves with the value): 1 renamed, 0 when @nx and the
 * destination exists, -ENOENT without a source. */
int kv_rename(struct kv_store *st, const void *src, size_t slen, const void *dst, size_t dlen,
              bool nx);
/* Size of the value as STRLEN, HLEN, LLEN, SCARD, ZCARD count it, 0 when
 * absent; -EPROTOTYPE for another type. */
int64_t kv_len(struct kv_store *st, const void *key, size_t klen, enum kv_type type);

/*
 * Multi-key commands. @keys (borrowed) holds @n keys; @hash is scratch room
 * for @n hashes, so that no call allocates per key. Each locks every shard
 * involved at once: the command is atomic with respect to every other.
 */

/* Deletes the keys; returns how many existed. */
size_t kv_del(struct kv_store *st, const struct tern_resp_arg *keys, size_t n, uint64_t *hash);

/* Counts the keys that exist, a key named twice counting twice. */
size_t kv_exists(struct kv_store *st, const struct tern_resp_arg *keys, size_t n, uint64_t *hash);

/* Appends an array reply of the values (null bulks for absent keys and
 * other types) to @out. Returns 0, -ENOMEM, or -E2BIG when the reply would
 * be longer than @max_reply bytes (nothing appended either way). */
int kv_mget(struct kv_store *st, const struct tern_resp_arg *keys, size_t n, uint64_t *hash,
            struct tern_buf *out, size_t max_reply);

/*
 * kv_mset - sets @npairs pairs, @kv[2i] the key and @kv[2i + 1] its value;
 * a key named twice gets its last value. All or nothing.
 * Returns 0, -ENOMEM, -ENOSPC or -E2BIG (nothing changed).
 */
int kv_mset(struct kv_store *st, const struct tern_resp_arg *kv, size_t npairs, uint64_t *hash);
/* MSETNX: sets them only when none exists. Returns 1, 0, or -errno. */
int kv_msetnx(struct kv_store *st, const struct tern_resp_arg *kv, size_t npairs, uint64_t *hash);

/* KEYS: an array of the keys matching the glob @pat. -E2BIG past r->max. */
int kv_keys(struct kv_store *st, const void *pat, size_t plen, const struct kv_reply *r);
/*
 * SCAN: visits buckets from @cursor until @count keys are found (or ten
 * times as many buckets were visited), and appends [next cursor, keys]. A
 * key present for the whole scan is returned at least once, whatever the
 * tables do in between (Redis's reverse-binary cursor, per shard). @pat
 * NULL = every key; @type KV_NONE = every type.
 */
int kv_scan(struct kv_store *st, uint64_t cursor, const void *pat, size_t plen, size_t count,
            enum kv_type type, const struct kv_reply *r);

/* Number of keys; exact when no write runs concurrently. */
size_t kv_dbsize(struct kv_store *st);

/* Removes every key and gives their memory back, atomically. Returns 0 or
 * -ENOMEM (nothing removed). */
int kv_flushall(struct kv_store *st);

/* Counters as in struct kv_store_stats; each exact when writes are idle. */
void kv_store_stats(struct kv_store *st, struct kv_store_stats *out);

/* ---- hashes ---- */

/* HSET: @fv holds @npairs field-value pairs; *@added counts new fields. */
int kv_hset(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *fv,
            size_t npairs, int64_t *added);
int kv_hget(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *field,
            const struct kv_reply *r);
int kv_hmget(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *fields,
             size_t n, const struct kv_reply *r);
int kv_hdel(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *fields,
            size_t n, int64_t *removed);
/* HGETALL (a map in RESP3), HKEYS (@what 1) or HVALS (@what 2). */
int kv_hgetall(struct kv_store *st, const void *key, size_t klen, int what,
               const struct kv_reply *r);
int kv_hincrby(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *field,
               int64_t by, int64_t *result);
/* HEXISTS (1 or 0) or SISMEMBER, as @type says. */
int kv_hexists(struct kv_store *st, const void *key, size_t klen, enum kv_type type,
               const struct tern_resp_arg *field);

/* ---- lists ---- */

/* LPUSH (@front) or RPUSH; the new length in *@len. */
int kv_push(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *items,
            size_t n, bool front, int64_t *len);
/* LPOP or RPOP: one element (or a null) when @count < 0, else an array of
 * at most @count (a null array when absent). */
int kv_pop(struct kv_store *st, const void *key, size_t klen, bool front, int64_t count,
           const struct kv_reply *r);
int kv_lrange(struct kv_store *st, const void *key, size_t klen, int64_t start, int64_t stop,
              const struct kv_reply *r);

/* ---- sets and sorted sets ---- */

int kv_sadd(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *m,
            size_t n, int64_t *added);
/* SREM, or ZREM with @type KV_ZSET. */
int kv_srem(struct kv_store *st, const void *key, size_t klen, enum kv_type type,
            const struct tern_resp_arg *m, size_t n, int64_t *removed);
/* SPOP: one member (or a null) when @count < 0, else an array. */
int kv_spop(struct kv_store *st, const void *key, size_t klen, int64_t count,
            const struct kv_reply *r);
int kv_smembers(struct kv_store *st, const void *key, size_t klen, const struct kv_reply *r);
/* ZADD: @sm[2i] a score already checked with kv_parse_double(), @sm[2i+1]
 * its member. */
int kv_zadd(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *sm,
            size_t npairs, int64_t *added);
int kv_zscore(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *member,
              const struct kv_reply *r);
/* ZPOPMIN: the @count lowest (member, score) pairs, flat as in RESP2. */
int kv_zpopmin(struct kv_store *st, const void *key, size_t klen, int64_t count,
               const struct kv_reply *r);

/* Redis's number rules. */
bool kv_parse_i64(const uint8_t *p, size_t len, int64_t *out);
bool kv_parse_double(const uint8_t *p, size_t len, double *out);

#endif
