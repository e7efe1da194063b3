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
 * Every function may be called from any thread at once, and none of them
 * keeps a pointer to its arguments after returning.
 */
#ifndef TERN_KV_STORE_H
#define TERN_KV_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "resp.h"

#define KV_SHARDS 64 /* a power of two up to 64: lock sets are a uint64_t */

struct kv_store;

struct kv_store_stats {
        size_t keys;    /* keys in the table */
        size_t bytes;   /* accounted memory: entries and bucket arrays */
        size_t entries; /* entry allocations not yet freed: == keys at rest */
};

enum kv_set_cond {
        KV_SET_ALWAYS,
        KV_SET_NX, /* only if the key does not exist */
        KV_SET_XX, /* only if it does */
};

/*
 * kv_store_new - an empty store. @max_memory caps the accounted bytes
 * (0 = no cap): once they are over it, writes that may add memory fail with
 * -ENOSPC until deletes bring them back under (Redis's "noeviction").
 * Returns NULL with errno ENOMEM.
 */
struct kv_store *kv_store_new(size_t max_memory);

/* Frees the store and every key and value in it. No call may be running. */
void kv_store_free(struct kv_store *st);

/*
 * kv_get - appends the RESP reply for GET to @out (borrowed): the value as a
 * bulk string, or a null bulk when the key is absent. The value is copied
 * under its shard's lock, so the reply is never torn by a concurrent SET.
 * Returns 0 or -ENOMEM (nothing appended).
 */
int kv_get(struct kv_store *st, const void *key, size_t klen, struct tern_buf *out);

/*
 * kv_set - stores a copy of @val under a copy of @key, subject to @cond.
 * Returns 1 when stored, 0 when @cond said no, -ENOMEM, -ENOSPC (over
 * max_memory), or -E2BIG for a key or value of 4 GiB or more.
 */
int kv_set(struct kv_store *st, const void *key, size_t klen, const void *val, size_t vlen,
           enum kv_set_cond cond);

/*
 * kv_incr - adds @by to the integer stored at @key (an absent key counts as
 * 0) and stores the result in *@result, atomically.
 * Returns 0, -EINVAL when the value is not a base-10 64-bit integer, -ERANGE
 * when the sum would overflow, -ENOMEM or -ENOSPC (nothing changed).
 */
int kv_incr(struct kv_store *st, const void *key, size_t klen, int64_t by, int64_t *result);

/*
 * Multi-key commands. @keys (borrowed) holds @n keys; @hash is scratch room
 * for @n hashes, so that no call allocates per key. Each locks every shard
 * involved at once: the command is atomic with respect to every other.
 */

/* Deletes the keys; returns how many existed. */
size_t kv_del(struct kv_store *st, const struct tern_resp_arg *keys, size_t n, uint64_t *hash);

/* Counts the keys that exist, a key named twice counting twice. */
size_t kv_exists(struct kv_store *st, const struct tern_resp_arg *keys, size_t n, uint64_t *hash);

/* Appends an array reply of the values (null bulks for absent keys) to
 * @out. Returns 0, -ENOMEM, or -E2BIG when the reply would be longer than
 * @max_reply bytes (nothing appended either way). */
int kv_mget(struct kv_store *st, const struct tern_resp_arg *keys, size_t n, uint64_t *hash,
            struct tern_buf *out, size_t max_reply);

/*
 * kv_mset - sets @npairs pairs, @kv[2i] the key and @kv[2i + 1] its value;
 * a key named twice gets its last value. All or nothing.
 * Returns 0, -ENOMEM, -ENOSPC or -E2BIG (nothing changed).
 */
int kv_mset(struct kv_store *st, const struct tern_resp_arg *kv, size_t npairs, uint64_t *hash);

/* Number of keys; exact when no write runs concurrently. */
size_t kv_dbsize(struct kv_store *st);

/* Removes every key and gives their memory back, atomically. Returns 0 or
 * -ENOMEM (nothing removed). */
int kv_flushall(struct kv_store *st);

/* Counters as in struct kv_store_stats; each exact when writes are idle. */
void kv_store_stats(struct kv_store *st, struct kv_store_stats *out);

#endif
