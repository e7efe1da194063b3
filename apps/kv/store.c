/*
 * The sharded store; store.h says why it is built this way.
 *
 * Locking rules: a single-key operation holds one shard lock; a multi-key
 * operation or FLUSHALL holds a set of them, always taken in ascending shard
 * order, so no two operations can wait on each other in a cycle. A thread
 * inside kv_hold() already owns a set taken in that order, and every
 * operation it runs stays inside the set (kv.c locks every shard a queued
 * command names before EXEC runs it); eviction, which picks shards at
 * random, only try-locks shards outside it. Memory is allocated before a
 * lock is taken and freed after it is dropped wherever that is possible, to
 * keep critical sections to lookups and copies; expired and evicted keys
 * are freed under the lock, which keeps those paths simple.
 *
 * Expiry: an entry carries its deadline (unix ms). Lookups treat a key
 * past it as absent and remove it (lazy expiry). Each shard also keeps an
 * array of its entries with a TTL (each entry knows its index, so removal
 * is a swap), which kv_store_tick() samples at random (active expiry).
 */
#include "store.h"

#include <endian.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "obj.h"

_Static_assert(KV_SHARDS >= 2 && KV_SHARDS <= 64 && (KV_SHARDS & (KV_SHARDS - 1)) == 0,
               "KV_SHARDS must be a power of two in 2..64");

#define KV_SHARD_BITS  __builtin_ctz(KV_SHARDS)
#define KV_BUCKETS_MIN 16
#define KV_INT_ROOM    20 /* "-9223372036854775808" */
#define KV_NO_XIDX     UINT32_MAX
/* Active expiry, as Redis's: keys sampled per round, rounds per shard, and
 * shards per tick (with 10 ticks a second on each worker, every shard is
 * visited several times a second). */
#define KV_EXPIRE_SAMPLE 20
#define KV_EXPIRE_ROUNDS 16
#define KV_EXPIRE_SHARDS 16
/* Eviction: keys sampled per victim (Redis's maxmemory-samples default),
 * evictions one write may make before it gives up. */
#define KV_EVICT_SAMPLE 5
#define KV_EVICT_MAX    1024
/* LRU clock resolution: tenths of a second. */
#define KV_LRU_MS 100

struct kv_entry {
        struct kv_entry *next;
        uint64_t hash;
        uint64_t ver;   /* shard stamp of its latest change, for WATCH */
        int64_t expire; /* unix ms; 0 = no TTL */
        void *obj;      /* the container of a non-string value */
        uint32_t klen;
        uint32_t vlen;
        uint32_t vcap;  /* room for the value: INCR rewrites in place */
        uint32_t xidx;  /* index in the shard's TTL array, or KV_NO_XIDX */
        uint32_t lru;   /* the store's clock at the latest access */
        uint8_t type;   /* enum kv_type */
        uint8_t data[]; /* klen key bytes, then vcap bytes of value room */
};

/* Cache-line aligned so that two workers on neighbouring shards do not
 * bounce one line between their cores. */
struct kv_shard {
        pthread_mutex_t lock;
        struct kv_entry **buckets;
        size_t mask; /* buckets - 1 */
        /* Written under the lock with atomic stores, so kv_dbsize() and the
         * memory cap can sum them without taking 64 locks. */
        size_t count;
        size_t bytes;
        /* Entries allocated for this shard and not yet freed, whether in
         * the table or in flight (atomic: allocation and freeing happen
         * outside the lock). Equal to count whenever no write runs; a
         * difference is a leak, which the tests look for. */
        size_t live;
        uint64_t ver;         /* the latest stamp given to an entry */
        struct kv_entry **xs; /* entries with a TTL */
        size_t nx, xcap;
        size_t expired, evicted, hits, misses; /* INFO's counters */
        unsigned idx;
} __attribute__((aligned(64)));

struct kv_store {
        struct kv_shard shard[KV_SHARDS];
        uint64_t key[2]; /* SipHash key: random, so clients cannot aim at one chain */
        size_t max_memory;
        enum kv_policy policy;
        uint32_t clock;         /* LRU clock, advanced by kv_store_tick() */
        unsigned expire_cursor; /* the next shard active expiry visits */
};

/* Shards this thread holds for a transaction (kv_hold). */
static __thread uint64_t kv_held;
/* Per-thread xorshift state for sampling; seeded on first use. */
static __thread uint64_t kv_rng;

static uint64_t kv_random(void)
{
        if (!kv_rng) {
                if (getrandom(&kv_rng, sizeof(kv_rng), 0) != sizeof(kv_rng) || !kv_rng)
                        kv_rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)&kv_rng;
        }
        kv_rng ^= kv_rng << 13;
        kv_rng ^= kv_rng >> 7;
        kv_rng ^= kv_rng << 17;
        return kv_rng;
}

int64_t kv_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- hashing ---- */

static inline uint64_t rotl64(uint64_t x, int b)
{
        return (x << b) | (x >> (64 - b));
}

/* The arguments are variables assigned to, so they cannot be parenthesised. */
/* NOLINTBEGIN(bugprone-macro-parentheses) */
#define SIP_ROUND(v0, v1, v2, v3)                                                                  \
        do {                                                                                       \
                v0 += v1;                                                                          \
                v1 = rotl64(v1, 13);                                                               \
                v1 ^= v0;                                                                          \
                v0 = rotl64(v0, 32);                                                               \
                v2 += v3;                                                                          \
                v3 = rotl64(v3, 16);                                                               \
                v3 ^= v2;                                                                          \
                v0 += v3;                                                                          \
                v3 = rotl64(v3, 21);                                                               \
                v3 ^= v0;                                                                          \
                v2 += v1;                                                                          \
                v1 = rotl64(v1, 17);                                                               \
                v1 ^= v2;                                                                          \
                v2 = rotl64(v2, 32);                                                               \
        } while (0)
/* NOLINTEND(bugprone-macro-parentheses) */

/*
 * SipHash-c-d (Aumasson and Bernstein) of @len bytes at @p under the 128-bit
 * key @k. tern-kv uses c = 1, d = 3, the reduced-round variant Rust's and
 * Python's hash tables use: keyed, so a client that does not know the key
 * cannot choose keys that share a bucket.
 */
static uint64_t kv_siphash(const uint64_t k[2], const void *data, size_t len, int c, int d)
{
        const uint8_t *p = data;
        uint64_t v0 = k[0] ^ 0x736f6d6570736575ULL;
        uint64_t v1 = k[1] ^ 0x646f72616e646f6dULL;
        uint64_t v2 = k[0] ^ 0x6c7967656e657261ULL;
        uint64_t v3 = k[1] ^ 0x7465646279746573ULL;
        size_t whole = len & ~(size_t)7;

        for (size_t i = 0; i < whole; i += 8) {
                uint64_t m;
                memcpy(&m, p + i, 8);
                m = le64toh(m);
                v3 ^= m;
                for (int r = 0; r < c; r++)
                        SIP_ROUND(v0, v1, v2, v3);
                v0 ^= m;
        }
        uint64_t last = (uint64_t)len << 56;
        for (size_t i = 0; i < (len & 7); i++)
                last |= (uint64_t)p[whole + i] << (8 * i);
        v3 ^= last;
        for (int r = 0; r < c; r++)
                SIP_ROUND(v0, v1, v2, v3);
        v0 ^= last;
        v2 ^= 0xff;
        for (int r = 0; r < d; r++)
                SIP_ROUND(v0, v1, v2, v3);
        return v0 ^ v1 ^ v2 ^ v3;
}

static inline uint64_t kv_hash(const struct kv_store *st, const void *key, size_t klen)
{
        return kv_siphash(st->key, key, klen, 1, 3);
}

/* The top bits pick the shard, the low bits the bucket: independent. */
static inline unsigned kv_shard_index(uint64_t h)
{
        return (unsigned)(h >> (64 - KV_SHARD_BITS));
}

static inline struct kv_shard *kv_shard_of(struct kv_store *st, uint64_t h)
{
        return &st->shard[kv_shard_index(h)];
}

/* ---- entries and shards ---- */

static size_t kv_obj_bytes(const struct kv_entry *e)
{
        switch (e->type) {
        case KV_HASH:
        case KV_SET:
        case KV_ZSET:
                return ((const struct kv_dict *)e->obj)->bytes;
        case KV_LIST:
                return ((const struct kv_list *)e->obj)->bytes;
        default:
                return 0;
        }
}

static size_t kv_entry_bytes(const struct kv_entry *e)
{
        return sizeof(*e) + e->klen + e->vcap + KV_MALLOC_OVERHEAD + kv_obj_bytes(e);
}

static size_t kv_buckets_bytes(size_t n)
{
        return n * sizeof(struct kv_entry *) + KV_MALLOC_OVERHEAD;
}

static struct kv_entry *kv_entry_new(struct kv_store *st, uint64_t h, const void *key, size_t klen,
                                     const void *val, size_t vlen, size_t vcap)
{
        struct kv_entry *e = malloc(sizeof(*e) + klen + vcap);
        if (!e)
                return NULL;
        __atomic_fetch_add(&kv_shard_of(st, h)->live, 1, __ATOMIC_RELAXED);
        e->next = NULL;
        e->hash = h;
        e->ver = 0;
        e->expire = 0;
        e->obj = NULL;
        e->klen = (uint32_t)klen;
        e->vlen = (uint32_t)vlen;
        e->vcap = (uint32_t)vcap;
        e->xidx = KV_NO_XIDX;
        e->lru = __atomic_load_n(&st->clock, __ATOMIC_RELAXED);
        e->type = KV_STRING;
        if (klen)
                memcpy(e->data, key, klen);
        if (vlen)
                memcpy(e->data + klen, val, vlen);
        return e;
}

static inline const uint8_t *kv_value(const struct kv_entry *e)
{
        return e->data + e->klen;
}

static void kv_entry_free(struct kv_store *st, struct kv_entry *e)
{
        if (!e)
                return;
        if (e->type == KV_LIST)
                kv_list_free(e->obj);
        else if (e->obj)
                kv_dict_free(e->obj);
        __atomic_fetch_sub(&kv_shard_of(st, e->hash)->live, 1, __ATOMIC_RELAXED);
        free(e);
}

static void kv_free_list(struct kv_store *st, struct kv_entry *e)
{
        while (e) {
                struct kv_entry *next = e->next;
                kv_entry_free(st, e);
                e = next;
        }
}

/* Under the lock: the link that points at @key's entry, or at the NULL
 * ending its chain (where it would be inserted). */
static struct kv_entry **kv_find(struct kv_shard *sh, uint64_t h, const void *key, size_t klen)
{
        struct kv_entry **pp = &sh->buckets[h & sh->mask];

        for (; *pp; pp = &(*pp)->next) {
                const struct kv_entry *e = *pp;
                if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0)
                        break;
        }
        return pp;
}

/* Under the lock: adjust the counters others read without it. */
static void kv_shard_account(struct kv_shard *sh, long dcount, long dbytes)
{
        __atomic_store_n(&sh->count, sh->count + (size_t)dcount, __ATOMIC_RELAXED);
        __atomic_store_n(&sh->bytes, sh->bytes + (size_t)dbytes, __ATOMIC_RELAXED);
}

static void kv_count(size_t *counter)
{
        __atomic_store_n(counter, *counter + 1, __ATOMIC_RELAXED);
}

/* Under the lock: put @e in the TTL array. Without room it stays out, and
 * then only a lookup expires it. */
static void kv_xs_add(struct kv_shard *sh, struct kv_entry *e)
{
        if (sh->nx == sh->xcap) {
                size_t ncap = sh->xcap ? sh->xcap * 2 : 16;
                struct kv_entry **nx =
                    ncap > UINT32_MAX ? NULL : realloc(sh->xs, ncap * sizeof(*nx));
                if (!nx) {
                        e->xidx = KV_NO_XIDX;
                        return;
                }
                kv_shard_account(sh, 0, (long)((ncap - sh->xcap) * sizeof(*nx)));
                sh->xs = nx;
                sh->xcap = ncap;
        }
        e->xidx = (uint32_t)sh->nx;
        sh->xs[sh->nx] = e;
        /* Stored atomically: INFO reads the count without the lock. */
        __atomic_store_n(&sh->nx, sh->nx + 1, __ATOMIC_RELAXED);
}

static void kv_xs_del(struct kv_shard *sh, struct kv_entry *e)
{
        if (e->xidx == KV_NO_XIDX)
                return;
        __atomic_store_n(&sh->nx, sh->nx - 1, __ATOMIC_RELAXED); /* as in kv_xs_add */
        struct kv_entry *last = sh->xs[sh->nx];
        sh->xs[e->xidx] = last;
        last->xidx = e->xidx;
        e->xidx = KV_NO_XIDX;
}

/* Under the lock: stamp @e as changed, for WATCH. */
static void kv_touch(struct kv_shard *sh, struct kv_entry *e)
{
        e->ver = ++sh->ver;
}

/* Under the lock: give @e the deadline @when (0 = none). */
static void kv_entry_expire(struct kv_shard *sh, struct kv_entry *e, int64_t when)
{
        if (when && !e->expire)
                kv_xs_add(sh, e);
        else if (!when && e->expire)
                kv_xs_del(sh, e);
        e->expire = when;
}

/*
 * Under the lock: doubles the bucket array once the shard holds more keys
 * than buckets. All at once rather than incrementally (as Redis does): a
 * shard holds 1/64 of the keys, so a resize moves few of them, and on
 * failure the table simply keeps longer chains.
 */
static void kv_shard_maybe_grow(struct kv_shard *sh)
{
        size_t n = sh->mask + 1;
        if (sh->count <= n || n > SIZE_MAX / 2 / sizeof(struct kv_entry *))
                return;
        struct kv_entry **nb = calloc(n * 2, sizeof(*nb));
        if (!nb)
                return;
        size_t nmask = n * 2 - 1;
        for (size_t i = 0; i < n; i++) {
                struct kv_entry *e = sh->buckets[i];
                while (e) {
                        struct kv_entry *next = e->next;
                        e->next = nb[e->hash & nmask];
                        nb[e->hash & nmask] = e;
                        e = next;
                }
        }
        free(sh->buckets);
        sh->buckets = nb;
        sh->mask = nmask;
        kv_shard_account(sh, 0, (long)(kv_buckets_bytes(n * 2) - kv_buckets_bytes(n)));
}

/* Under the lock: insert @e at the link @pp (see kv_find). */
static void kv_link(struct kv_shard *sh, struct kv_entry **pp, struct kv_entry *e)
{
        e->next = *pp;
        *pp = e;
        if (e->expire)
                kv_xs_add(sh, e);
        kv_touch(sh, e);
        kv_shard_account(sh, 1, (long)kv_entry_bytes(e));
        kv_shard_maybe_grow(sh);
}

/* Under the lock: take the entry at @pp out of the table; the caller frees. */
static struct kv_entry *kv_unlink(struct kv_shard *sh, struct kv_entry **pp)
{
        struct kv_entry *e = *pp;
        *pp = e->next;
        kv_xs_del(sh, e);
        ++sh->ver; /* a later entry for this key must not reuse a stamp */
        kv_shard_account(sh, -1, -(long)kv_entry_bytes(e));
        return e;
}

/* Under the lock: put @ne where @old was (same key); the caller frees @old.
 * @ne's expire field says which TTL it carries. */
static void kv_replace(struct kv_shard *sh, struct kv_entry **pp, struct kv_entry *old,
                       struct kv_entry *ne)
{
        ne->next = old->next;
        *pp = ne;
        kv_xs_del(sh, old);
        if (ne->expire)
                kv_xs_add(sh, ne);
        kv_touch(sh, ne);
        kv_shard_account(sh, 0, (long)kv_entry_bytes(ne) - (long)kv_entry_bytes(old));
}

static bool kv_expired(const struct kv_entry *e, int64_t now)
{
        return e->expire && e->expire <= now;
}

/* Under the lock: like kv_find, but an expired entry is removed and freed
 * first (lazy expiry); the link returned then ends the chain. */
static struct kv_entry **kv_find_live(struct kv_store *st, struct kv_shard *sh, uint64_t h,
                                      const void *key, size_t klen)
{
        struct kv_entry **pp = kv_find(sh, h, key, klen);
        struct kv_entry *e = *pp;
        if (e && e->expire && kv_expired(e, kv_now_ms())) {
                kv_entry_free(st, kv_unlink(sh, pp));
                kv_count(&sh->expired);
                /* The link now points at the next key of the chain, not
                 * at nothing: find the chain's end again. */
                pp = kv_find(sh, h, key, klen);
        }
        return pp;
}

static inline uint64_t kv_shard_bit(const struct kv_shard *sh)
{
        return 1ULL << sh->idx;
}

static void kv_lock(struct kv_shard *sh)
{
        if (!(kv_held & kv_shard_bit(sh)))
                pthread_mutex_lock(&sh->lock);
}

static void kv_unlock(struct kv_shard *sh)
{
        if (!(kv_held & kv_shard_bit(sh)))
                pthread_mutex_unlock(&sh->lock);
}

/* For work that picks shards at random while a hold may own others: a
 * blocking lock then could wait on a thread that waits on us. */
static bool kv_trylock(struct kv_shard *sh)
{
        if (kv_held & kv_shard_bit(sh))
                return true;
        if (!kv_held)
                return pthread_mutex_lock(&sh->lock) == 0;
        return pthread_mutex_trylock(&sh->lock) == 0;
}

/* Locks the shards of @mask in ascending order: the one global order. */
static void kv_lock_set(struct kv_store *st, uint64_t mask)
{
        for (uint64_t m = mask; m; m &= m - 1)
                kv_lock(&st->shard[__builtin_ctzll(m)]);
}

static void kv_unlock_set(struct kv_store *st, uint64_t mask)
{
        for (uint64_t m = mask; m; m &= m - 1)
                kv_unlock(&st->shard[__builtin_ctzll(m)]);
}

/* Hashes keys[0], keys[stride], ... into @hash; returns their shard set. */
static uint64_t kv_hash_keys(struct kv_store *st, const struct tern_resp_arg *keys, size_t n,
                             size_t stride, uint64_t *hash)
{
        uint64_t mask = 0;
        for (size_t i = 0; i < n; i++) {
                const struct tern_resp_arg *k = &keys[i * stride];
                hash[i] = kv_hash(st, k->data, k->len);
                mask |= 1ULL << kv_shard_index(hash[i]);
        }
        return mask;
}

/* One key's place, locked: kv_open() ... kv_close(). */
struct kv_at {
        struct kv_store *st;
        struct kv_shard *sh;
        struct kv_entry **pp;
        struct kv_entry *e; /* the live entry, or NULL */
        uint64_t h;
        const void *key;
        size_t klen;
};

/* kv_open() for a key whose hash @h the caller already has. */
static void kv_open_hashed(struct kv_store *st, uint64_t h, const void *key, size_t klen,
                           struct kv_at *a)
{
        a->st = st;
        a->h = h;
        a->sh = kv_shard_of(st, a->h);
        a->key = key;
        a->klen = klen;
        kv_lock(a->sh);
        a->pp = kv_find_live(st, a->sh, a->h, key, klen);
        a->e = *a->pp;
        if (a->e) {
                a->e->lru = __atomic_load_n(&st->clock, __ATOMIC_RELAXED);
                kv_count(&a->sh->hits);
        } else {
                kv_count(&a->sh->misses);
        }
}

static void kv_open(struct kv_store *st, const void *key, size_t klen, struct kv_at *a)
{
        kv_open_hashed(st, kv_hash(st, key, klen), key, klen, a);
}

static void kv_close(struct kv_at *a)
{
        kv_unlock(a->sh);
}

/* Under the lock: removes the open key and frees it. */
static void kv_at_delete(struct kv_at *a)
{
        kv_entry_free(a->st, kv_unlink(a->sh, a->pp));
        a->e = NULL;
}

/* ---- memory: the cap and eviction ---- */

static size_t kv_used(struct kv_store *st)
{
        size_t used = 0;
        for (int i = 0; i < KV_SHARDS; i++)
                used += __atomic_load_n(&st->shard[i].bytes, __ATOMIC_RELAXED);
        return used;
}

/* Under @sh's lock: a key to evict by the policy, found by sampling. */
static struct kv_entry **kv_evict_pick(struct kv_store *st, struct kv_shard *sh)
{
        struct kv_entry *best = NULL;

        if (st->policy == KV_VOLATILE_TTL) {
                for (int s = 0; s < KV_EVICT_SAMPLE && sh->nx; s++) {
                        struct kv_entry *e = sh->xs[kv_random() % sh->nx];
                        if (!best || e->expire < best->expire)
                                best = e;
                }
        } else if (sh->count) {
                /* Random buckets; every entry of a chain counts as a sample. */
                int seen = 0;
                for (size_t probe = 0; probe <= sh->mask && seen < KV_EVICT_SAMPLE; probe++) {
                        struct kv_entry *e = sh->buckets[kv_random() & sh->mask];
                        for (; e && seen < KV_EVICT_SAMPLE; e = e->next, seen++)
                                if (!best || (int32_t)(e->lru - best->lru) < 0)
                                        best = e;
                }
        }
        return best ? kv_find(sh, best->hash, best->data, best->klen) : NULL;
}

/* Evicts one key from a random shard. Returns false when none was found. */
static bool kv_evict_one(struct kv_store *st)
{
        unsigned start = (unsigned)kv_random();
        for (unsigned i = 0; i < KV_SHARDS; i++) {
                struct kv_shard *sh = &st->shard[(start + i) % KV_SHARDS];
                if (!__atomic_load_n(&sh->count, __ATOMIC_RELAXED) || !kv_trylock(sh))
                        continue;
                struct kv_entry **pp = kv_evict_pick(st, sh);
                if (pp && *pp) {
                        kv_entry_free(st, kv_unlink(sh, pp));
                        kv_count(&sh->evicted);
                }
                kv_unlock(sh);
                if (pp)
                        return true;
        }
        return false;
}

/* Before a write that may add memory: under the cap, or made so by
 * evicting (Redis's order: the check comes before the command, so one
 * command may overshoot by its own size). Returns 0 or -ENOSPC. */
static int kv_make_room(struct kv_store *st)
{
        if (!st->max_memory)
                return 0;
        for (int n = 0; kv_used(st) > st->max_memory; n++)
                if (st->policy == KV_NOEVICTION || n == KV_EVICT_MAX || !kv_evict_one(st))
                        return -ENOSPC;
        return 0;
}

/* ---- the store ---- */

static void kv_seed(uint64_t key[2])
{
        if (getrandom(key, 2 * sizeof(key[0]), 0) == (ssize_t)(2 * sizeof(key[0])))
                return;
        /* No entropy source: still different per process and per start. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        key[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
        key[1] = (uint64_t)ts.tv_sec * 0xc2b2ae3d27d4eb4fULL ^ (uint64_t)(uintptr_t)key;
}

struct kv_store *kv_store_new(size_t max_memory)
{
        struct kv_store *st;
        pthread_mutexattr_t attr;
        int i;

        if (posix_memalign((void **)&st, 64, sizeof(*st))) {
                errno = ENOMEM;
                return NULL;
        }
        memset(st, 0, sizeof(*st));
        st->max_memory = max_memory;
        kv_seed(st->key);
        pthread_mutexattr_init(&attr);
        /* Spin briefly before sleeping: critical sections are short. */
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
        for (i = 0; i < KV_SHARDS; i++) {
                struct kv_shard *sh = &st->shard[i];
                sh->buckets = calloc(KV_BUCKETS_MIN, sizeof(*sh->buckets));
                if (!sh->buckets)
                        goto out_free_shards;
                sh->mask = KV_BUCKETS_MIN - 1;
                sh->bytes = kv_buckets_bytes(KV_BUCKETS_MIN);
                sh->idx = (unsigned)i;
                pthread_mutex_init(&sh->lock, &attr);
        }
        pthread_mutexattr_destroy(&attr);
        return st;

out_free_shards:
        while (i-- > 0) {
                free(st->shard[i].buckets);
                pthread_mutex_destroy(&st->shard[i].lock);
        }
        pthread_mutexattr_destroy(&attr);
        free(st);
        errno = ENOMEM;
        return NULL;
}

void kv_store_set_policy(struct kv_store *st, enum kv_policy policy)
{
        st->policy = policy;
}

size_t kv_store_max_memory(const struct kv_store *st)
{
        return st->max_memory;
}

enum kv_policy kv_store_policy(const struct kv_store *st)
{
        return st->policy;
}

void kv_store_free(struct kv_store *st)
{
        if (!st)
                return;
        for (int i = 0; i < KV_SHARDS; i++) {
                struct kv_shard *sh = &st->shard[i];
                for (size_t b = 0; b <= sh->mask; b++)
                        kv_free_list(st, sh->buckets[b]);
                free(sh->buckets);
                free(sh->xs);
                pthread_mutex_destroy(&sh->lock);
        }
        free(st);
}

/* Removes expired keys from @sh by sampling its TTL array. */
static size_t kv_expire_shard(struct kv_store *st, struct kv_shard *sh, int64_t now)
{
        size_t removed = 0;

        kv_lock(sh);
        for (int round = 0; round < KV_EXPIRE_ROUNDS && sh->nx; round++) {
                int sample = sh->nx < KV_EXPIRE_SAMPLE ? (int)sh->nx : KV_EXPIRE_SAMPLE;
                int hit = 0;
                for (int s = 0; s < sample && sh->nx; s++) {
                        struct kv_entry *e = sh->xs[kv_random() % sh->nx];
                        if (!kv_expired(e, now))
                                continue;
                        kv_entry_free(st, kv_unlink(sh, kv_find(sh, e->hash, e->data, e->klen)));
                        kv_count(&sh->expired);
                        hit++;
                }
                removed += (size_t)hit;
                /* Fewer than a quarter expired: the rest can wait. */
                if (hit * 4 <= sample)
                        break;
        }
        kv_unlock(sh);
        return removed;
}

size_t kv_store_tick(struct kv_store *st)
{
        int64_t now = kv_now_ms();
        size_t removed = 0;

        __atomic_store_n(&st->clock, (uint32_t)(now / KV_LRU_MS), __ATOMIC_RELAXED);
        for (int i = 0; i < KV_EXPIRE_SHARDS; i++) {
                unsigned s = __atomic_fetch_add(&st->expire_cursor, 1, __ATOMIC_RELAXED);
                struct kv_shard *sh = &st->shard[s % KV_SHARDS];
                if (__atomic_load_n(&sh->count, __ATOMIC_RELAXED))
                        removed += kv_expire_shard(st, sh, now);
        }
        return removed;
}

/* ---- transactions ---- */

uint64_t kv_shard_mask(struct kv_store *st, const void *key, size_t klen)
{
        return 1ULL << kv_shard_index(kv_hash(st, key, klen));
}

void kv_hold(struct kv_store *st, uint64_t mask)
{
        kv_lock_set(st, mask);
        kv_held = mask;
}

void kv_release(struct kv_store *st)
{
        uint64_t mask = kv_held;
        kv_held = 0;
        kv_unlock_set(st, mask);
}

uint64_t kv_version(struct kv_store *st, const void *key, size_t klen)
{
        struct kv_at a;
        kv_open(st, key, klen, &a);
        uint64_t v = a.e ? a.e->ver : 0;
        kv_close(&a);
        return v;
}

/* ---- replies ---- */

int kv_put_null(const struct kv_reply *r)
{
        return r->proto == 3 ? tern_buf_append(r->buf, "_\r\n", 3) : tern_resp_put_null(r->buf);
}

int kv_put_null_array(const struct kv_reply *r)
{
        return tern_buf_append(r->buf, r->proto == 3 ? "_\r\n" : "*-1\r\n", r->proto == 3 ? 3 : 5);
}

int kv_put_map(const struct kv_reply *r, size_t pairs)
{
        if (r->proto != 3)
                return tern_resp_put_array(r->buf, 2 * pairs);
        char line[32];
        int n = snprintf(line, sizeof(line), "%%%zu\r\n", pairs);
        return tern_buf_append(r->buf, line, (size_t)n);
}

/* A score as Redis writes it: %.17g, shortest exact form. */
static int kv_fmt_double(char *buf, size_t cap, double d)
{
        if (isinf(d))
                return snprintf(buf, cap, "%s", d > 0 ? "inf" : "-inf");
        for (int prec = 1; prec <= 17; prec++) {
                int n = snprintf(buf, cap, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        return n;
        }
        return snprintf(buf, cap, "%.17g", d);
}

int kv_put_double(const struct kv_reply *r, double d)
{
        char num[64];
        int n = kv_fmt_double(num, sizeof(num), d);
        if (r->proto != 3)
                return tern_resp_put_bulk(r->buf, num, (size_t)n);
        char line[72];
        n = snprintf(line, sizeof(line), ",%s\r\n", num);
        return tern_buf_append(r->buf, line, (size_t)n);
}

static int kv_put_value(const struct kv_reply *r, const struct kv_entry *e)
{
        return e ? tern_resp_put_bulk(r->buf, kv_value(e), e->vlen) : kv_put_null(r);
}

/* ---- strings ---- */

int kv_get(struct kv_store *st, const void *key, size_t klen, const struct kv_reply *r)
{
        struct kv_at a;
        int err;

        kv_open(st, key, klen, &a);
        if (a.e && a.e->type != KV_STRING)
                err = -EPROTOTYPE;
        else
                err = kv_put_value(r, a.e);
        kv_close(&a);
        return err;
}

int kv_set_full(struct kv_store *st, const void *key, size_t klen, const void *val, size_t vlen,
                const struct kv_set_opts *o, const struct kv_reply *r)
{
        if (klen > UINT32_MAX || vlen > UINT32_MAX)
                return -E2BIG;
        int err = kv_make_room(st);
        if (err)
                return err;
        uint64_t h = kv_hash(st, key, klen);
        struct kv_entry *e = kv_entry_new(st, h, key, klen, val, vlen, vlen);
        if (!e)
                return -ENOMEM;
        struct kv_at a;
        int ret = 1;

        kv_open_hashed(st, h, key, klen, &a);
        struct kv_entry *old = a.e;
        if (o->get && old && old->type != KV_STRING) {
                ret = -EPROTOTYPE;
                goto out_unlock;
        }
        if (o->get && kv_put_value(r, old)) {
                ret = -ENOMEM;
                goto out_unlock;
        }
        if ((o->cond == KV_SET_NX && old) || (o->cond == KV_SET_XX && !old)) {
                ret = 0;
                goto out_unlock;
        }
        e->expire = o->keepttl && old ? old->expire : o->expire;
        if (old)
                kv_replace(a.sh, a.pp, old, e);
        else
                kv_link(a.sh, a.pp, e);
        /* A deadline already past (EXAT in the past): set, then gone. */
        if (e->expire && kv_expired(e, kv_now_ms())) {
                struct kv_entry **pp = kv_find(a.sh, a.h, key, klen);
                kv_entry_free(st, kv_unlink(a.sh, pp));
        }
        e = old;
out_unlock:
        kv_close(&a);
        kv_entry_free(st, e);
        return ret;
}

int kv_set(struct kv_store *st, const void *key, size_t klen, const void *val, size_t vlen,
           enum kv_set_cond cond)
{
        struct kv_set_opts o = {.cond = cond};
        return kv_set_full(st, key, klen, val, vlen, &o, NULL);
}

/* Writes @v in base 10 to @buf (KV_INT_ROOM bytes); returns the length.
 * INCR's hot path: snprintf's format parsing costs more than the rest. */
static size_t kv_fmt_i64(char *buf, int64_t v)
{
        char tmp[KV_INT_ROOM];
        uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
        size_t n = 0, len = 0;
        do {
                tmp[n++] = (char)('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                buf[len++] = '-';
        while (n)
                buf[len++] = tmp[--n];
        return len;
}

/* Redis's rules for a number stored as a string: optional '-', base-10
 * digits, no leading zero, no "-0", no spaces, within int64_t. */
bool kv_parse_i64(const uint8_t *p, size_t len, int64_t *out)
{
        size_t i = len > 0 && p[0] == '-' ? 1 : 0;
        bool neg = i == 1;
        uint64_t v = 0;

        if (len == i || len > 20 || (p[i] == '0' && (len > i + 1 || neg)))
                return false;
        for (; i < len; i++) {
                if (p[i] < '0' || p[i] > '9')
                        return false;
                uint64_t d = (uint64_t)(p[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        if (neg) {
                if (v > (uint64_t)INT64_MAX + 1)
                        return false;
                *out = (int64_t)(0 - v); /* two's complement: INT64_MIN included */
                return true;
        }
        if (v > INT64_MAX)
                return false;
        *out = (int64_t)v;
        return true;
}

/* A float as Redis takes one: strtod of the whole string, no spaces, not
 * NaN. "inf" and "-inf" are allowed (sorted-set scores). */
bool kv_parse_double(const uint8_t *p, size_t len, double *out)
{
        char buf[64];
        if (len == 0 || len >= sizeof(buf) || p[0] == ' ' || p[len - 1] == ' ')
                return false;
        memcpy(buf, p, len);
        buf[len] = '\0';
        char *end;
        errno = 0;
        double d = strtod(buf, &end);
        if (end != buf + len || isnan(d) || (errno == ERANGE && !isinf(d)))
                return false;
        *out = d;
        return true;
}

static bool kv_parse_ld(const uint8_t *p, size_t len, long double *out)
{
        char buf[64];
        if (len == 0 || len >= sizeof(buf) || p[0] == ' ' || p[len - 1] == ' ')
                return false;
        memcpy(buf, p, len);
        buf[len] = '\0';
        char *end;
        errno = 0;
        long double d = strtold(buf, &end);
        if (end != buf + len || isnan(d) || isinf(d) || errno == ERANGE)
                return false;
        *out = d;
        return true;
}

/* Under the lock: store @num (a new value of @a's key, keeping its TTL)
 * in place when it fits, else in a new entry with @room bytes for it. */
static int kv_at_put_string(struct kv_at *a, const void *num, size_t n, size_t room,
                            struct kv_entry **old)
{
        struct kv_entry *e = a->e;
        if (e && e->vcap >= n) {
                memcpy(e->data + e->klen, num, n);
                e->vlen = (uint32_t)n;
                kv_touch(a->sh, e);
                return 0;
        }
        struct kv_entry *ne =
            kv_entry_new(a->st, a->h, a->key, a->klen, num, n, room > n ? room : n);
        if (!ne)
                return -ENOMEM;
        if (e) {
                ne->expire = e->expire;
                kv_replace(a->sh, a->pp, e, ne);
                *old = e;
        } else {
                kv_link(a->sh, a->pp, ne);
        }
        a->e = ne;
        return 0;
}

int kv_incr(struct kv_store *st, const void *key, size_t klen, int64_t by, int64_t *result)
{
        if (klen > UINT32_MAX)
                return -E2BIG;
        int err = kv_make_room(st);
        if (err)
                return err;
        struct kv_entry *old = NULL;
        int64_t cur = 0, next;
        char num[KV_INT_ROOM + 1];
        struct kv_at a;

        kv_open(st, key, klen, &a);
        if (a.e && a.e->type != KV_STRING) {
                err = -EPROTOTYPE;
                goto out_unlock;
        }
        if (a.e && !kv_parse_i64(kv_value(a.e), a.e->vlen, &cur)) {
                err = -EINVAL;
                goto out_unlock;
        }
        if (__builtin_add_overflow(cur, by, &next)) {
                err = -ERANGE;
                goto out_unlock;
        }
        size_t n = kv_fmt_i64(num, next);
        /* Room for any int64_t, so later increments stay in place. */
        err = kv_at_put_string(&a, num, n, KV_INT_ROOM, &old);
        if (!err)
                *result = next;
out_unlock:
        kv_close(&a);
        kv_entry_free(st, old);
        return err;
}

int kv_incrbyfloat(struct kv_store *st, const void *key, size_t klen, long double by,
                   const struct kv_reply *r)
{
        int err = kv_make_room(st);
        if (err)
                return err;
        struct kv_entry *old = NULL;
        long double cur = 0;
        char num[128];
        struct kv_at a;

        kv_open(st, key, klen, &a);
        if (a.e && a.e->type != KV_STRING) {
                err = -EPROTOTYPE;
                goto out_unlock;
        }
        if (a.e && !kv_parse_ld(kv_value(a.e), a.e->vlen, &cur)) {
                err = -EINVAL;
                goto out_unlock;
        }
        cur += by;
        if (isnan(cur) || isinf(cur)) {
                err = -EDOM;
                goto out_unlock;
        }
        /* Redis's human form: 17 decimals, trailing zeros dropped. */
        int n = snprintf(num, sizeof(num), "%.17Lf", cur);
        if (n <= 0 || (size_t)n >= sizeof(num)) {
                err = -ERANGE;
                goto out_unlock;
        }
        if (strchr(num, '.')) {
                while (num[n - 1] == '0')
                        n--;
                if (num[n - 1] == '.')
                        n--;
        }
        if (n == 2 && num[0] == '-' && num[1] == '0')
                num[0] = '0', n = 1;
        err = kv_at_put_string(&a, num, (size_t)n, 0, &old);
        if (!err)
                err = tern_resp_put_bulk(r->buf, num, (size_t)n);
out_unlock:
        kv_close(&a);
        kv_entry_free(st, old);
        return err;
}

int kv_append(struct kv_store *st, const void *key, size_t klen, const void *val, size_t vlen,
              size_t max_len, int64_t *len)
{
        int err = kv_make_room(st);
        if (err)
                return err;
        struct kv_entry *old = NULL;
        struct kv_at a;

        kv_open(st, key, klen, &a);
        if (a.e && a.e->type != KV_STRING) {
                err = -EPROTOTYPE;
                goto out_unlock;
        }
        size_t cur = a.e ? a.e->vlen : 0;
        if (vlen > max_len || cur > max_len - vlen) {
                err = -E2BIG;
                goto out_unlock;
        }
        if (a.e && a.e->vcap >= cur + vlen) {
                memcpy(a.e->data + a.e->klen + cur, val, vlen);
                a.e->vlen = (uint32_t)(cur + vlen);
                kv_touch(a.sh, a.e);
        } else {
                /* Grow by half again, so a run of APPENDs copies O(n). */
                size_t room = cur + vlen + (cur + vlen) / 2;
                if (room > max_len)
                        room = max_len;
                struct kv_entry *ne = kv_entry_new(st, a.h, key, klen, NULL, 0, room);
                if (!ne) {
                        err = -ENOMEM;
                        goto out_unlock;
                }
                if (cur)
                        memcpy(ne->data + klen, kv_value(a.e), cur);
                memcpy(ne->data + klen + cur, val, vlen);
                ne->vlen = (uint32_t)(cur + vlen);
                if (a.e) {
                        ne->expire = a.e->expire;
                        kv_replace(a.sh, a.pp, a.e, ne);
                        old = a.e;
                } else {
                        kv_link(a.sh, a.pp, ne);
                }
        }
        *len = (int64_t)(cur + vlen);
out_unlock:
        kv_close(&a);
        kv_entry_free(st, old);
        return err;
}

int kv_getdel(struct kv_store *st, const void *key, size_t klen, const struct kv_reply *r)
{
        struct kv_entry *dead = NULL;
        struct kv_at a;
        int err;

        kv_open(st, key, klen, &a);
        if (a.e && a.e->type != KV_STRING) {
                err = -EPROTOTYPE;
        } else {
                err = kv_put_value(r, a.e);
                if (!err && a.e)
                        dead = kv_unlink(a.sh, a.pp);
        }
        kv_close(&a);
        kv_entry_free(st, dead);
        return err;
}

int kv_getex(struct kv_store *st, const void *key, size_t klen, enum kv_getex_mode mode,
             int64_t expire, const struct kv_reply *r)
{
        struct kv_entry *dead = NULL;
        struct kv_at a;
        int err;

        kv_open(st, key, klen, &a);
        if (a.e && a.e->type != KV_STRING) {
                err = -EPROTOTYPE;
                goto out_unlock;
        }
        err = kv_put_value(r, a.e);
        if (err || !a.e || mode == KV_GETEX_KEEP)
                goto out_unlock;
        if (mode == KV_GETEX_SET && expire <= kv_now_ms()) {
                dead = kv_unlink(a.sh, a.pp);
        } else {
                kv_entry_expire(a.sh, a.e, mode == KV_GETEX_SET ? expire : 0);
                kv_touch(a.sh, a.e);
        }
out_unlock:
        kv_close(&a);
        kv_entry_free(st, dead);
        return err;
}

/* ---- keys ---- */

int kv_expire(struct kv_store *st, const void *key, size_t klen, int64_t when, int flags)
{
        struct kv_entry *dead = NULL;
        struct kv_at a;
        int ret = 0;

        kv_open(st, key, klen, &a);
        if (!a.e)
                goto out_unlock;
        int64_t cur = a.e->expire; /* 0: no TTL, which GT and LT take as infinite */
        if ((flags & KV_EXP_NX) && cur)
                goto out_unlock;
        if ((flags & KV_EXP_XX) && !cur)
                goto out_unlock;
        if ((flags & KV_EXP_GT) && (!cur || when <= cur))
                goto out_unlock;
        if ((flags & KV_EXP_LT) && cur && when >= cur)
                goto out_unlock;
        ret = 1;
        if (when <= kv_now_ms()) {
                dead = kv_unlink(a.sh, a.pp);
        } else {
                kv_entry_expire(a.sh, a.e, when);
                kv_touch(a.sh, a.e);
        }
out_unlock:
        kv_close(&a);
        kv_entry_free(st, dead);
        return ret;
}

int64_t kv_pttl(struct kv_store *st, const void *key, size_t klen)
{
        struct kv_at a;
        int64_t ttl;

        kv_open(st, key, klen, &a);
        if (!a.e) {
                ttl = -2;
        } else if (!a.e->expire) {
                ttl = -1;
        } else {
                ttl = a.e->expire - kv_now_ms();
                if (ttl < 0)
                        ttl = 0;
        }
        kv_close(&a);
        return ttl;
}

int kv_persist(struct kv_store *st, const void *key, size_t klen)
{
        struct kv_at a;
        int ret = 0;

        kv_open(st, key, klen, &a);
        if (a.e && a.e->expire) {
                kv_entry_expire(a.sh, a.e, 0);
                kv_touch(a.sh, a.e);
                ret = 1;
        }
        kv_close(&a);
        return ret;
}

enum kv_type kv_type_of(struct kv_store *st, const void *key, size_t klen)
{
        struct kv_at a;
        kv_open(st, key, klen, &a);
        enum kv_type t = a.e ? (enum kv_type)a.e->type : KV_NONE;
        kv_close(&a);
        return t;
}

const char *kv_type_name(enum kv_type t)
{
        static const char *const names[] = {"none", "string", "hash", "list", "set", "zset"};
        return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "none";
}

int kv_rename(struct kv_store *st, const void *src, size_t slen, const void *dst, size_t dlen,
              bool nx)
{
        if (dlen > UINT32_MAX)
                return -E2BIG;
        uint64_t hs = kv_hash(st, src, slen), hd = kv_hash(st, dst, dlen);
        struct kv_shard *ss = kv_shard_of(st, hs), *sd = kv_shard_of(st, hd);
        uint64_t mask = kv_shard_bit(ss) | kv_shard_bit(sd);
        struct kv_entry *dead = NULL, *spare = NULL;
        int ret;

        kv_lock_set(st, mask);
        struct kv_entry **ps = kv_find_live(st, ss, hs, src, slen);
        struct kv_entry *e = *ps;
        if (!e) {
                ret = -ENOENT;
                goto out_unlock;
        }
        if (slen == dlen && memcmp(src, dst, slen) == 0) {
                ret = nx ? 0 : 1;
                goto out_unlock;
        }
        struct kv_entry **pd = kv_find_live(st, sd, hd, dst, dlen);
        if (*pd && nx) {
                ret = 0;
                goto out_unlock;
        }
        spare = kv_entry_new(st, hd, dst, dlen, kv_value(e), e->vlen, e->vcap);
        if (!spare) {
                ret = -ENOMEM;
                goto out_unlock;
        }
        /* The value (and its container) moves to the new key. */
        spare->type = e->type;
        spare->obj = e->obj;
        spare->expire = e->expire;
        e->obj = NULL;
        e->type = KV_STRING;
        kv_shard_account(ss, 0, -(long)kv_obj_bytes(spare));
        dead = kv_unlink(ss, ps);
        pd = kv_find(sd, hd, dst, dlen); /* the unlink may have moved its link */
        if (*pd) {
                struct kv_entry *over = *pd;
                kv_replace(sd, pd, over, spare);
                over->next = dead;
                dead = over;
        } else {
                kv_link(sd, pd, spare);
        }
        spare = NULL;
        ret = 1;
out_unlock:
        kv_unlock_set(st, mask);
        kv_free_list(st, dead);
        kv_entry_free(st, spare);
        return ret;
}

int64_t kv_len(struct kv_store *st, const void *key, size_t klen, enum kv_type type)
{
        struct kv_at a;
        int64_t n = 0;

        kv_open(st, key, klen, &a);
        if (a.e && a.e->type != type)
                n = -EPROTOTYPE;
        else if (!a.e)
                n = 0;
        else if (type == KV_STRING)
                n = a.e->vlen;
        else if (type == KV_LIST)
                n = (int64_t)((struct kv_list *)a.e->obj)->count;
        else
                n = (int64_t)((struct kv_dict *)a.e->obj)->count;
        kv_close(&a);
        return n;
}

size_t kv_del(struct kv_store *st, const struct tern_resp_arg *keys, size_t n, uint64_t *hash)
{
        struct kv_entry *dead = NULL;
        size_t removed = 0;
        uint64_t mask = kv_hash_keys(st, keys, n, 1, hash);

        kv_lock_set(st, mask);
        for (size_t i = 0; i < n; i++) {
                struct kv_shard *sh = kv_shard_of(st, hash[i]);
                struct kv_entry **pp = kv_find_live(st, sh, hash[i], keys[i].data, keys[i].len);
                if (!*pp)
                        continue;
                struct kv_entry *e = kv_unlink(sh, pp);
                e->next = dead;
                dead = e;
                removed++;
        }
        kv_unlock_set(st, mask);
        kv_free_list(st, dead);
        return removed;
}

size_t kv_exists(struct kv_store *st, const struct tern_resp_arg *keys, size_t n, uint64_t *hash)
{
        size_t found = 0;
        uint64_t mask = kv_hash_keys(st, keys, n, 1, hash);

        kv_lock_set(st, mask);
        for (size_t i = 0; i < n; i++) {
                struct kv_shard *sh = kv_shard_of(st, hash[i]);
                if (*kv_find_live(st, sh, hash[i], keys[i].data, keys[i].len))
                        found++;
        }
        kv_unlock_set(st, mask);
        return found;
}

static size_t kv_digits(size_t v)
{
        size_t d = 1;
        while (v >= 10) {
                v /= 10;
                d++;
        }
        return d;
}

int kv_mget(struct kv_store *st, const struct tern_resp_arg *keys, size_t n, uint64_t *hash,
            struct tern_buf *out, size_t max_reply)
{
        uint64_t mask = kv_hash_keys(st, keys, n, 1, hash);
        /* "*n\r\n", then per key "$len\r\n...\r\n" or "$-1\r\n". */
        size_t need = 1 + kv_digits(n) + 2;
        int err;

        kv_lock_set(st, mask);
        for (size_t i = 0; i < n; i++) {
                struct kv_shard *sh = kv_shard_of(st, hash[i]);
                const struct kv_entry *e =
                    *kv_find_live(st, sh, hash[i], keys[i].data, keys[i].len);
                need += e && e->type == KV_STRING ? 1 + kv_digits(e->vlen) + 2 + e->vlen + 2 : 5;
        }
        if (need > max_reply) {
                err = -E2BIG;
                goto out_unlock;
        }
        /* One reservation, so the appends below cannot fail half-way. */
        err = tern_buf_reserve(out, need);
        if (err) {
                err = -ENOMEM;
                goto out_unlock;
        }
        tern_resp_put_array(out, n);
        for (size_t i = 0; i < n; i++) {
                struct kv_shard *sh = kv_shard_of(st, hash[i]);
                const struct kv_entry *e = *kv_find(sh, hash[i], keys[i].data, keys[i].len);
                if (e && e->type == KV_STRING)
                        tern_resp_put_bulk(out, kv_value(e), e->vlen);
                else
                        tern_resp_put_null(out);
        }
out_unlock:
        kv_unlock_set(st, mask);
        return err;
}

static int kv_mset_cond(struct kv_store *st, const struct tern_resp_arg *kv, size_t npairs,
                        uint64_t *hash, bool nx)
{
        struct kv_entry *fresh = NULL, **tail = &fresh, *dead = NULL;
        int ret = 1;

        for (size_t i = 0; i < npairs; i++)
                if (kv[2 * i].len > UINT32_MAX || kv[2 * i + 1].len > UINT32_MAX)
                        return -E2BIG;
        int err = kv_make_room(st);
        if (err)
                return err;
        uint64_t mask = kv_hash_keys(st, kv, npairs, 2, hash);
        /* Every allocation first: past this point nothing can fail. */
        for (size_t i = 0; i < npairs; i++) {
                const struct tern_resp_arg *k = &kv[2 * i], *v = &kv[2 * i + 1];
                struct kv_entry *e =
                    kv_entry_new(st, hash[i], k->data, k->len, v->data, v->len, v->len);
                if (!e) {
                        kv_free_list(st, fresh);
                        return -ENOMEM;
                }
                *tail = e;
                tail = &e->next;
        }

        kv_lock_set(st, mask);
        for (size_t i = 0; nx && i < npairs; i++) {
                struct kv_shard *sh = kv_shard_of(st, hash[i]);
                if (*kv_find_live(st, sh, hash[i], kv[2 * i].data, kv[2 * i].len)) {
                        ret = 0;
                        dead = fresh;
                        goto out_unlock;
                }
        }
        for (size_t i = 0; i < npairs; i++) {
                struct kv_entry *e = fresh;
                fresh = e->next;
                struct kv_shard *sh = kv_shard_of(st, hash[i]);
                struct kv_entry **pp = kv_find_live(st, sh, hash[i], kv[2 * i].data, kv[2 * i].len);
                struct kv_entry *old = *pp;
                if (old) {
                        kv_replace(sh, pp, old, e);
                        old->next = dead;
                        dead = old;
                } else {
                        e->next = NULL;
                        kv_link(sh, pp, e);
                }
        }
out_unlock:
        kv_unlock_set(st, mask);
        kv_free_list(st, dead);
        return ret;
}

int kv_mset(struct kv_store *st, const struct tern_resp_arg *kv, size_t npairs, uint64_t *hash)
{
        int r = kv_mset_cond(st, kv, npairs, hash, false);
        return r < 0 ? r : 0;
}

int kv_msetnx(struct kv_store *st, const struct tern_resp_arg *kv, size_t npairs, uint64_t *hash)
{
        return kv_mset_cond(st, kv, npairs, hash, true);
}

/* Appends every key of the chain @e that matches to @tmp; counts them. */
static int kv_collect(const struct kv_entry *e, int64_t now, const void *pat, size_t plen,
                      enum kv_type type, struct tern_buf *tmp, size_t *n)
{
        for (; e; e = e->next) {
                if (kv_expired(e, now) || (type != KV_NONE && e->type != type))
                        continue;
                if (pat && !kv_glob_match(pat, plen, e->data, e->klen))
                        continue;
                if (tern_resp_put_bulk(tmp, e->data, e->klen))
                        return -ENOMEM;
                (*n)++;
        }
        return 0;
}

static int kv_put_collected(const struct kv_reply *r, struct tern_buf *tmp, size_t n)
{
        int err = tern_resp_put_array(r->buf, n);
        if (!err)
                err = tern_buf_append(r->buf, tern_buf_data(tmp), tern_buf_len(tmp));
        return err;
}

int kv_keys(struct kv_store *st, const void *pat, size_t plen, const struct kv_reply *r)
{
        struct tern_buf tmp = TERN_BUF_INIT;
        int64_t now = kv_now_ms();
        size_t n = 0;
        int err = 0;

        /* Whole-store commands lock every shard at once: one snapshot. */
        kv_lock_set(st, ~0ULL >> (64 - KV_SHARDS));
        for (int i = 0; i < KV_SHARDS && !err; i++) {
                struct kv_shard *sh = &st->shard[i];
                for (size_t b = 0; b <= sh->mask && !err; b++) {
                        err = kv_collect(sh->buckets[b], now, pat, plen, KV_NONE, &tmp, &n);
                        if (!err && tern_buf_len(&tmp) > r->max)
                                err = -E2BIG;
                }
        }
        kv_unlock_set(st, ~0ULL >> (64 - KV_SHARDS));
        if (!err)
                err = kv_put_collected(r, &tmp, n);
        tern_buf_free(&tmp);
        return err;
}

static uint64_t kv_rev64(uint64_t v)
{
        v = ((v >> 1) & 0x5555555555555555ULL) | ((v & 0x5555555555555555ULL) << 1);
        v = ((v >> 2) & 0x3333333333333333ULL) | ((v & 0x3333333333333333ULL) << 2);
        v = ((v >> 4) & 0x0f0f0f0f0f0f0f0fULL) | ((v & 0x0f0f0f0f0f0f0f0fULL) << 4);
        return __builtin_bswap64(v);
}

int kv_scan(struct kv_store *st, uint64_t cursor, const void *pat, size_t plen, size_t count,
            enum kv_type type, const struct kv_reply *r)
{
        struct tern_buf tmp = TERN_BUF_INIT;
        int64_t now = kv_now_ms();
        /* The cursor: shard in the low bits, that shard's reverse-binary
         * bucket cursor above them. */
        unsigned s = (unsigned)(cursor % KV_SHARDS);
        uint64_t c = cursor >> KV_SHARD_BITS;
        size_t n = 0, visited = 0, budget = count > SIZE_MAX / 10 ? SIZE_MAX : count * 10;
        int err = 0;

        while (s < KV_SHARDS && n < count && visited < budget && !err &&
               tern_buf_len(&tmp) <= r->max / 2) {
                struct kv_shard *sh = &st->shard[s];
                kv_lock(sh);
                do {
                        size_t m = sh->mask;
                        err = kv_collect(sh->buckets[c & m], now, pat, plen, type, &tmp, &n);
                        visited++;
                        c |= ~(uint64_t)m;
                        c = kv_rev64(kv_rev64(c) + 1);
                } while (c && n < count && visited < budget && !err &&
                         tern_buf_len(&tmp) <= r->max / 2);
                kv_unlock(sh);
                if (!c)
                        s++;
        }
        uint64_t next = s >= KV_SHARDS ? 0 : (c << KV_SHARD_BITS) | s;
        char num[24];
        int len = snprintf(num, sizeof(num), "%llu", (unsigned long long)next);
        if (!err)
                err = tern_resp_put_array(r->buf, 2);
        if (!err)
                err = tern_resp_put_bulk(r->buf, num, (size_t)len);
        if (!err)
                err = kv_put_collected(r, &tmp, n);
        tern_buf_free(&tmp);
        return err;
}

size_t kv_dbsize(struct kv_store *st)
{
        size_t n = 0;
        for (int i = 0; i < KV_SHARDS; i++)
                n += __atomic_load_n(&st->shard[i].count, __ATOMIC_RELAXED);
        return n;
}

int kv_flushall(struct kv_store *st)
{
        struct kv_entry **fresh[KV_SHARDS], **old[KV_SHARDS];
        size_t old_n[KV_SHARDS];
        int i;

        for (i = 0; i < KV_SHARDS; i++) {
                fresh[i] = calloc(KV_BUCKETS_MIN, sizeof(*fresh[i]));
                if (!fresh[i]) {
                        while (i-- > 0)
                                free(fresh[i]);
                        return -ENOMEM;
                }
        }
        kv_lock_set(st, ~0ULL >> (64 - KV_SHARDS));
        for (i = 0; i < KV_SHARDS; i++) {
                struct kv_shard *sh = &st->shard[i];
                old[i] = sh->buckets;
                old_n[i] = sh->mask + 1;
                sh->buckets = fresh[i];
                sh->mask = KV_BUCKETS_MIN - 1;
                __atomic_store_n(&sh->nx, 0, __ATOMIC_RELAXED);
                sh->ver++;
                __atomic_store_n(&sh->count, 0, __ATOMIC_RELAXED);
                __atomic_store_n(&sh->bytes,
                                 kv_buckets_bytes(KV_BUCKETS_MIN) + sh->xcap * sizeof(*sh->xs),
                                 __ATOMIC_RELAXED);
        }
        kv_unlock_set(st, ~0ULL >> (64 - KV_SHARDS));
        /* The old tables are private now: free them without holding anyone up. */
        for (i = 0; i < KV_SHARDS; i++) {
                for (size_t b = 0; b < old_n[i]; b++)
                        kv_free_list(st, old[i][b]);
                free(old[i]);
        }
        return 0;
}

void kv_store_stats(struct kv_store *st, struct kv_store_stats *out)
{
        memset(out, 0, sizeof(*out));
        for (int i = 0; i < KV_SHARDS; i++) {
                struct kv_shard *sh = &st->shard[i];
                out->keys += __atomic_load_n(&sh->count, __ATOMIC_RELAXED);
                out->bytes += __atomic_load_n(&sh->bytes, __ATOMIC_RELAXED);
                out->entries += __atomic_load_n(&sh->live, __ATOMIC_RELAXED);
                out->expires += __atomic_load_n(&sh->nx, __ATOMIC_RELAXED);
                out->expired += __atomic_load_n(&sh->expired, __ATOMIC_RELAXED);
                out->evicted += __atomic_load_n(&sh->evicted, __ATOMIC_RELAXED);
                out->hits += __atomic_load_n(&sh->hits, __ATOMIC_RELAXED);
                out->misses += __atomic_load_n(&sh->misses, __ATOMIC_RELAXED);
        }
}

/* A bulk of a reply the client sizes: -E2BIG once the reply begun at
 * @len0 passes r->max. */
static int kv_put_bulk_capped(const struct kv_reply *r, size_t len0, const void *p, size_t n)
{
        int err = tern_resp_put_bulk(r->buf, p, n);
        if (!err && tern_buf_len(r->buf) - len0 > r->max)
                err = -E2BIG;
        return err;
}

/* ---- containers: hashes, lists, sets, sorted sets ---- */

/*
 * Opens @key for a container command of @type: -EPROTOTYPE for another
 * type; with @create, an absent key gets an empty container (it is removed
 * again by kv_at_done() if the command leaves it empty). On success the
 * shard stays locked and *@before holds the entry's accounted bytes.
 */
static int kv_open_obj(struct kv_store *st, const void *key, size_t klen, enum kv_type type,
                       bool create, struct kv_at *a, size_t *before)
{
        kv_open(st, key, klen, a);
        if (a->e && a->e->type != type) {
                kv_close(a);
                return -EPROTOTYPE;
        }
        if (!a->e && create) {
                if (klen > UINT32_MAX) {
                        kv_close(a);
                        return -E2BIG;
                }
                struct kv_entry *e = kv_entry_new(st, a->h, key, klen, NULL, 0, 0);
                void *obj = !e ? NULL : type == KV_LIST ? (void *)kv_list_new() : kv_dict_new();
                if (!obj) {
                        kv_entry_free(st, e);
                        kv_close(a);
                        return -ENOMEM;
                }
                e->type = (uint8_t)type;
                e->obj = obj;
                kv_link(a->sh, a->pp, e);
                a->e = e;
        }
        *before = a->e ? kv_entry_bytes(a->e) : 0;
        return 0;
}

/* For a command that may add to the @type container at @key: first the
 * memory cap (evicting as the policy says), then kv_open_obj() creating it. */
static int kv_open_write(struct kv_store *st, const void *key, size_t klen, enum kv_type type,
                         struct kv_at *a, size_t *before)
{
        int err = kv_make_room(st);
        return err ? err : kv_open_obj(st, key, klen, type, true, a, before);
}

/* Accounts what the command changed, removes a container it emptied, and
 * unlocks. */
static void kv_at_done(struct kv_at *a, size_t before, bool changed)
{
        struct kv_entry *e = a->e;
        if (e) {
                kv_shard_account(a->sh, 0, (long)kv_entry_bytes(e) - (long)before);
                if (changed)
                        kv_touch(a->sh, e);
                size_t n = e->type == KV_LIST ? ((struct kv_list *)e->obj)->count
                                              : ((struct kv_dict *)e->obj)->count;
                if (!n)
                        kv_at_delete(a);
        }
        kv_close(a);
}

static uint64_t kv_fhash(struct kv_store *st, const struct tern_resp_arg *f)
{
        return kv_hash(st, f->data, f->len);
}

int kv_hset(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *fv,
            size_t npairs, int64_t *added)
{
        struct kv_at a;
        size_t before;
        int err = kv_open_write(st, key, klen, KV_HASH, &a, &before);
        if (err)
                return err;
        int64_t n = 0;
        for (size_t i = 0; i < npairs && !err; i++) {
                const struct tern_resp_arg *f = &fv[2 * i], *v = &fv[2 * i + 1];
                int r = kv_dict_set(a.e->obj, kv_fhash(st, f), f->data, f->len, v->data, v->len);
                if (r < 0)
                        err = r;
                else
                        n += r;
        }
        *added = n;
        kv_at_done(&a, before, true);
        return err;
}

/* Opens the @type container at @key and finds @field in it (*@f NULL when
 * either is absent). On success the shard stays locked: kv_close(@a). */
static int kv_open_field(struct kv_store *st, const void *key, size_t klen, enum kv_type type,
                         const struct tern_resp_arg *field, struct kv_at *a,
                         const struct kv_field **f)
{
        size_t before;
        int err = kv_open_obj(st, key, klen, type, false, a, &before);
        if (err)
                return err;
        *f = a->e ? kv_dict_find(a->e->obj, kv_fhash(st, field), field->data, field->len) : NULL;
        return 0;
}

int kv_hget(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *field,
            const struct kv_reply *r)
{
        struct kv_at a;
        const struct kv_field *f;
        int err = kv_open_field(st, key, klen, KV_HASH, field, &a, &f);
        if (err)
                return err;
        err = f ? tern_resp_put_bulk(r->buf, kv_field_value(f), f->vlen) : kv_put_null(r);
        kv_close(&a);
        return err;
}

int kv_hmget(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *fields,
             size_t n, const struct kv_reply *r)
{
        struct kv_at a;
        size_t before, len0 = tern_buf_len(r->buf);
        int err = kv_open_obj(st, key, klen, KV_HASH, false, &a, &before);
        if (err)
                return err;
        err = tern_resp_put_array(r->buf, n);
        for (size_t i = 0; i < n && !err; i++) {
                const struct tern_resp_arg *fa = &fields[i];
                const struct kv_field *f =
                    a.e ? kv_dict_find(a.e->obj, kv_fhash(st, fa), fa->data, fa->len) : NULL;
                err = f ? kv_put_bulk_capped(r, len0, kv_field_value(f), f->vlen) : kv_put_null(r);
        }
        kv_close(&a);
        if (err)
                tern_buf_truncate(r->buf, len0);
        return err;
}

int kv_hdel(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *fields,
            size_t n, int64_t *removed)
{
        return kv_srem(st, key, klen, KV_HASH, fields, n, removed);
}

struct kv_walk {
        const struct kv_reply *r;
        size_t len0;
        int what; /* 0 name and value, 1 name, 2 value, 3 name and score */
};

static int kv_walk_field(const struct kv_field *f, void *arg)
{
        struct kv_walk *w = arg;
        int err = 0;
        if (w->what != 2)
                err = tern_resp_put_bulk(w->r->buf, f->data, f->flen);
        if (!err && (w->what == 0 || w->what == 2))
                err = tern_resp_put_bulk(w->r->buf, kv_field_value(f), f->vlen);
        if (!err && tern_buf_len(w->r->buf) - w->len0 > w->r->max)
                err = -E2BIG;
        return err;
}

/* The fields of the @type container at @key as a map or array (@what:
 * see struct kv_walk); a null-free empty array when absent. */
static int kv_walk_reply(struct kv_store *st, const void *key, size_t klen, enum kv_type type,
                         int what, const struct kv_reply *r)
{
        struct kv_at a;
        size_t before;
        int err = kv_open_obj(st, key, klen, type, false, &a, &before);
        if (err)
                return err;
        size_t n = a.e ? ((struct kv_dict *)a.e->obj)->count : 0;
        struct kv_walk w = {.r = r, .len0 = tern_buf_len(r->buf), .what = what};
        err = what == 0 ? kv_put_map(r, n) : tern_resp_put_array(r->buf, n);
        if (!err && a.e)
                err = kv_dict_each(a.e->obj, kv_walk_field, &w);
        kv_close(&a);
        if (err)
                tern_buf_truncate(r->buf, w.len0);
        return err;
}

int kv_hgetall(struct kv_store *st, const void *key, size_t klen, int what,
               const struct kv_reply *r)
{
        return kv_walk_reply(st, key, klen, KV_HASH, what, r);
}

int kv_hincrby(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *field,
               int64_t by, int64_t *result)
{
        struct kv_at a;
        size_t before;
        int err = kv_open_write(st, key, klen, KV_HASH, &a, &before);
        if (err)
                return err;
        uint64_t fh = kv_fhash(st, field);
        const struct kv_field *f = kv_dict_find(a.e->obj, fh, field->data, field->len);
        int64_t cur = 0, next = 0;
        if (f && !kv_parse_i64(kv_field_value(f), f->vlen, &cur))
                err = -EINVAL;
        else if (__builtin_add_overflow(cur, by, &next))
                err = -ERANGE;
        if (!err) {
                char num[KV_INT_ROOM + 1];
                size_t n = kv_fmt_i64(num, next);
                int r = kv_dict_set(a.e->obj, fh, field->data, field->len, num, n);
                err = r < 0 ? r : 0;
        }
        if (!err)
                *result = next;
        kv_at_done(&a, before, !err);
        return err;
}

int kv_hexists(struct kv_store *st, const void *key, size_t klen, enum kv_type type,
               const struct tern_resp_arg *field)
{
        struct kv_at a;
        const struct kv_field *f;
        int err = kv_open_field(st, key, klen, type, field, &a, &f);
        if (err)
                return err;
        kv_close(&a);
        return f != NULL;
}

int kv_push(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *items,
            size_t n, bool front, int64_t *len)
{
        struct kv_at a;
        size_t before;
        int err = kv_open_write(st, key, klen, KV_LIST, &a, &before);
        if (err)
                return err;
        struct kv_list *l = a.e->obj;
        for (size_t i = 0; i < n && !err; i++)
                err = kv_list_push(l, front, items[i].data, items[i].len);
        *len = (int64_t)l->count;
        kv_at_done(&a, before, true);
        return err;
}

int kv_pop(struct kv_store *st, const void *key, size_t klen, bool front, int64_t count,
           const struct kv_reply *r)
{
        struct kv_at a;
        size_t before, len0 = tern_buf_len(r->buf);
        int err = kv_open_obj(st, key, klen, KV_LIST, false, &a, &before);
        if (err)
                return err;
        if (!a.e) {
                err = count < 0 ? kv_put_null(r) : kv_put_null_array(r);
                kv_close(&a);
                return err;
        }
        struct kv_list *l = a.e->obj;
        size_t n = count < 0 ? 1 : (size_t)count < l->count ? (size_t)count : l->count;
        /* Built before anything is popped, so a failure changes nothing. */
        if (count >= 0)
                err = tern_resp_put_array(r->buf, n);
        for (size_t i = 0; i < n && !err; i++) {
                const struct kv_item *it = kv_list_at(l, front ? i : l->count - 1 - i);
                err = kv_put_bulk_capped(r, len0, it->data, it->len);
        }
        if (err)
                tern_buf_truncate(r->buf, len0);
        for (size_t i = 0; i < n && !err; i++)
                kv_list_item_free(l, kv_list_pop(l, front));
        kv_at_done(&a, before, !err && n > 0);
        return err;
}

int kv_lrange(struct kv_store *st, const void *key, size_t klen, int64_t start, int64_t stop,
              const struct kv_reply *r)
{
        struct kv_at a;
        size_t before, len0 = tern_buf_len(r->buf);
        int err = kv_open_obj(st, key, klen, KV_LIST, false, &a, &before);
        if (err)
                return err;
        int64_t len = a.e ? (int64_t)((struct kv_list *)a.e->obj)->count : 0;
        if (start < 0)
                start = len + start < 0 ? 0 : len + start;
        if (stop < 0)
                stop = len + stop;
        if (stop >= len)
                stop = len - 1;
        /* A missing key has len 0 and so n 0; the a.e test says so to the
         * analyser too. */
        int64_t n = !a.e || start > stop ? 0 : stop - start + 1;
        err = tern_resp_put_array(r->buf, (size_t)n);
        for (int64_t i = 0; i < n && !err; i++) {
                const struct kv_item *it = kv_list_at(a.e->obj, (size_t)(start + i));
                err = kv_put_bulk_capped(r, len0, it->data, it->len);
        }
        kv_close(&a);
        if (err)
                tern_buf_truncate(r->buf, len0);
        return err;
}

int kv_sadd(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *m,
            size_t n, int64_t *added)
{
        struct kv_at a;
        size_t before;
        int err = kv_open_write(st, key, klen, KV_SET, &a, &before);
        if (err)
                return err;
        int64_t k = 0;
        for (size_t i = 0; i < n && !err; i++) {
                int r = kv_dict_set(a.e->obj, kv_fhash(st, &m[i]), m[i].data, m[i].len, NULL, 0);
                if (r < 0)
                        err = r;
                else
                        k += r;
        }
        *added = k;
        kv_at_done(&a, before, k > 0);
        return err;
}

int kv_srem(struct kv_store *st, const void *key, size_t klen, enum kv_type type,
            const struct tern_resp_arg *m, size_t n, int64_t *removed)
{
        struct kv_at a;
        size_t before;
        int err = kv_open_obj(st, key, klen, type, false, &a, &before);
        if (err)
                return err;
        int64_t k = 0;
        for (size_t i = 0; i < n && a.e; i++)
                k += kv_dict_del(a.e->obj, kv_fhash(st, &m[i]), m[i].data, m[i].len);
        *removed = k;
        kv_at_done(&a, before, k > 0);
        return 0;
}

int kv_spop(struct kv_store *st, const void *key, size_t klen, int64_t count,
            const struct kv_reply *r)
{
        struct kv_at a;
        size_t before;
        int err = kv_open_obj(st, key, klen, KV_SET, false, &a, &before);
        if (err)
                return err;
        if (!a.e) {
                err = count < 0 ? kv_put_null(r) : tern_resp_put_array(r->buf, 0);
                kv_close(&a);
                return err;
        }
        struct kv_dict *d = a.e->obj;
        size_t n = count < 0 ? 1 : (size_t)count < d->count ? (size_t)count : d->count;
        if (count >= 0)
                err = tern_resp_put_array(r->buf, n);
        /* Each member leaves the set only once its reply is written. */
        for (size_t i = 0; i < n && !err; i++) {
                struct kv_field *f = kv_dict_pop_random(d, kv_random());
                err = tern_resp_put_bulk(r->buf, f->data, f->flen);
                kv_dict_field_free(d, f);
        }
        kv_at_done(&a, before, n > 0);
        return err;
}

int kv_smembers(struct kv_store *st, const void *key, size_t klen, const struct kv_reply *r)
{
        return kv_walk_reply(st, key, klen, KV_SET, 1, r);
}

int kv_zadd(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *sm,
            size_t npairs, int64_t *added)
{
        struct kv_at a;
        size_t before;
        int err = kv_open_write(st, key, klen, KV_ZSET, &a, &before);
        if (err)
                return err;
        int64_t k = 0;
        for (size_t i = 0; i < npairs && !err; i++) {
                const struct tern_resp_arg *m = &sm[2 * i + 1];
                double score = 0;
                kv_parse_double(sm[2 * i].data, sm[2 * i].len, &score);
                int r =
                    kv_dict_set(a.e->obj, kv_fhash(st, m), m->data, m->len, &score, sizeof(score));
                if (r < 0)
                        err = r;
                else
                        k += r;
        }
        *added = k;
        kv_at_done(&a, before, true);
        return err;
}

static double kv_field_score(const struct kv_field *f)
{
        double d;
        memcpy(&d, kv_field_value(f), sizeof(d));
        return d;
}

int kv_zscore(struct kv_store *st, const void *key, size_t klen, const struct tern_resp_arg *member,
              const struct kv_reply *r)
{
        struct kv_at a;
        const struct kv_field *f;
        int err = kv_open_field(st, key, klen, KV_ZSET, member, &a, &f);
        if (err)
                return err;
        err = f ? kv_put_double(r, kv_field_score(f)) : kv_put_null(r);
        kv_close(&a);
        return err;
}

/* Sorted-set order: score, then member bytes. */
static int kv_zcmp(const struct kv_field *x, const struct kv_field *y)
{
        double a = kv_field_score(x), b = kv_field_score(y);
        if (a != b)
                return a < b ? -1 : 1;
        size_t n = x->flen < y->flen ? x->flen : y->flen;
        int c = memcmp(x->data, y->data, n);
        return c ? c : x->flen < y->flen ? -1 : x->flen > y->flen;
}

static int kv_zcmp_ptr(const void *a, const void *b)
{
        return kv_zcmp(*(const struct kv_field *const *)a, *(const struct kv_field *const *)b);
}

struct kv_zmin {
        const struct kv_field *best;
        const struct kv_field **all; /* or every field, to sort */
        size_t n;
};

static int kv_zmin_visit(const struct kv_field *f, void *arg)
{
        struct kv_zmin *z = arg;
        if (z->all)
                z->all[z->n++] = f;
        else if (!z->best || kv_zcmp(f, z->best) < 0)
                z->best = f;
        return 0;
}

int kv_zpopmin(struct kv_store *st, const void *key, size_t klen, int64_t count,
               const struct kv_reply *r)
{
        struct kv_at a;
        size_t before;
        int err = kv_open_obj(st, key, klen, KV_ZSET, false, &a, &before);
        if (err)
                return err;
        struct kv_dict *d = a.e ? a.e->obj : NULL;
        size_t n = !d ? 0 : (size_t)count < d->count ? (size_t)count : d->count;
        /* No ordered index: one member is found by a scan, O(n); several
         * by sorting them all once, O(n log n), so a large count cannot
         * make the work quadratic. */
        struct kv_zmin z = {NULL, NULL, 0};
        size_t len0 = tern_buf_len(r->buf);
        if (n > 1) {
                z.all = malloc(d->count * sizeof(*z.all));
                if (!z.all)
                        err = -ENOMEM;
        }
        if (!err && n) {
                kv_dict_each(d, kv_zmin_visit, &z);
                if (z.all)
                        qsort(z.all, z.n, sizeof(*z.all), kv_zcmp_ptr);
        }
        if (!err)
                err = tern_resp_put_array(r->buf, 2 * n);
        struct kv_reply r2 = {r->buf, 2, r->max}; /* scores as bulks, as in RESP2 */
        for (size_t i = 0; i < n && !err; i++) {
                const struct kv_field *f = z.all ? z.all[i] : z.best;
                err = tern_resp_put_bulk(r->buf, f->data, f->flen);
                if (!err)
                        err = kv_put_double(&r2, kv_field_score(f));
                if (!err && tern_buf_len(r->buf) - len0 > r->max)
                        err = -E2BIG;
        }
        if (err) /* nothing popped */
                tern_buf_truncate(r->buf, len0);
        for (size_t i = 0; i < n && !err; i++) {
                const struct kv_field *f = z.all ? z.all[i] : z.best;
                kv_dict_del(d, f->hash, f->data, f->flen);
        }
        free(z.all);
        kv_at_done(&a, before, n > 0);
        return err;
}
