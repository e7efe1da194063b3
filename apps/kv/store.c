/*
 * The sharded store; store.h says why it is built this way.
 *
 * Locking rules: a single-key operation holds one shard lock; a multi-key
 * operation or FLUSHALL holds a set of them, always taken in ascending shard
 * order, so no two operations can wait on each other in a cycle. Memory is
 * allocated before a lock is taken and freed after it is dropped wherever
 * that is possible, to keep critical sections to lookups and copies.
 */
#include "store.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

_Static_assert(KV_SHARDS >= 2 && KV_SHARDS <= 64 && (KV_SHARDS & (KV_SHARDS - 1)) == 0,
               "KV_SHARDS must be a power of two in 2..64");

#define KV_SHARD_BITS  __builtin_ctz(KV_SHARDS)
#define KV_BUCKETS_MIN 16
#define KV_INT_ROOM    20 /* "-9223372036854775808" */
/* What malloc spends per block beyond the bytes asked for, roughly; counted
 * so that max_memory tracks the process's real growth more closely. */
#define KV_MALLOC_OVERHEAD 16

struct kv_entry {
        struct kv_entry *next;
        uint64_t hash;
        uint32_t klen;
        uint32_t vlen;
        uint32_t vcap;  /* room for the value: INCR rewrites in place */
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
} __attribute__((aligned(64)));

struct kv_store {
        struct kv_shard shard[KV_SHARDS];
        uint64_t key[2]; /* SipHash key: random, so clients cannot aim at one chain */
        size_t max_memory;
};

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

static size_t kv_entry_bytes(const struct kv_entry *e)
{
        return sizeof(*e) + e->klen + e->vcap + KV_MALLOC_OVERHEAD;
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
        e->klen = (uint32_t)klen;
        e->vlen = (uint32_t)vlen;
        e->vcap = (uint32_t)vcap;
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

static void kv_lock(struct kv_shard *sh)
{
        pthread_mutex_lock(&sh->lock);
}

static void kv_unlock(struct kv_shard *sh)
{
        pthread_mutex_unlock(&sh->lock);
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

static void kv_entry_free(struct kv_store *st, struct kv_entry *e)
{
        if (!e)
                return;
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

/* Whether writes that may add memory are refused now (Redis's noeviction:
 * the check is made before the command, so one command may overshoot). */
static bool kv_over_limit(struct kv_store *st)
{
        if (!st->max_memory)
                return false;
        size_t used = 0;
        for (int i = 0; i < KV_SHARDS; i++)
                used += __atomic_load_n(&st->shard[i].bytes, __ATOMIC_RELAXED);
        return used > st->max_memory;
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

void kv_store_free(struct kv_store *st)
{
        if (!st)
                return;
        for (int i = 0; i < KV_SHARDS; i++) {
                struct kv_shard *sh = &st->shard[i];
                for (size_t b = 0; b <= sh->mask; b++)
                        kv_free_list(st, sh->buckets[b]);
                free(sh->buckets);
                pthread_mutex_destroy(&sh->lock);
        }
        free(st);
}

int kv_get(struct kv_store *st, const void *key, size_t klen, struct tern_buf *out)
{
        uint64_t h = kv_hash(st, key, klen);
        struct kv_shard *sh = kv_shard_of(st, h);

        kv_lock(sh);
        const struct kv_entry *e = *kv_find(sh, h, key, klen);
        int err = e ? tern_resp_put_bulk(out, kv_value(e), e->vlen) : tern_resp_put_null(out);
        kv_unlock(sh);
        return err;
}

int kv_set(struct kv_store *st, const void *key, size_t klen, const void *val, size_t vlen,
           enum kv_set_cond cond)
{
        if (klen > UINT32_MAX || vlen > UINT32_MAX)
                return -E2BIG;
        if (kv_over_limit(st))
                return -ENOSPC;
        uint64_t h = kv_hash(st, key, klen);
        struct kv_entry *e = kv_entry_new(st, h, key, klen, val, vlen, vlen);
        if (!e)
                return -ENOMEM;
        struct kv_shard *sh = kv_shard_of(st, h);

        kv_lock(sh);
        struct kv_entry **pp = kv_find(sh, h, key, klen);
        struct kv_entry *old = *pp;
        if ((cond == KV_SET_NX && old) || (cond == KV_SET_XX && !old)) {
                kv_unlock(sh);
                kv_entry_free(st, e);
                return 0;
        }
        if (old) {
                e->next = old->next;
                *pp = e;
                kv_shard_account(sh, 0, (long)kv_entry_bytes(e) - (long)kv_entry_bytes(old));
        } else {
                *pp = e;
                kv_shard_account(sh, 1, (long)kv_entry_bytes(e));
                kv_shard_maybe_grow(sh);
        }
        kv_unlock(sh);
        kv_entry_free(st, old);
        return 1;
}

/* Redis's rules for a number stored as a string: optional '-', base-10
 * digits, no leading zero, no "-0", no spaces, within int64_t. */
static bool kv_parse_i64(const uint8_t *p, size_t len, int64_t *out)
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

int kv_incr(struct kv_store *st, const void *key, size_t klen, int64_t by, int64_t *result)
{
        if (klen > UINT32_MAX)
                return -E2BIG;
        if (kv_over_limit(st))
                return -ENOSPC;
        uint64_t h = kv_hash(st, key, klen);
        struct kv_shard *sh = kv_shard_of(st, h);
        struct kv_entry *old = NULL;
        int64_t cur = 0, next;
        char num[KV_INT_ROOM + 1];
        int err = 0;

        kv_lock(sh);
        struct kv_entry **pp = kv_find(sh, h, key, klen);
        struct kv_entry *e = *pp;
        if (e && !kv_parse_i64(kv_value(e), e->vlen, &cur)) {
                err = -EINVAL;
                goto out_unlock;
        }
        if (__builtin_add_overflow(cur, by, &next)) {
                err = -ERANGE;
                goto out_unlock;
        }
        size_t n = (size_t)snprintf(num, sizeof(num), "%lld", (long long)next);
        if (e && e->vcap >= n) {
                memcpy(e->data + e->klen, num, n);
                e->vlen = (uint32_t)n;
        } else {
                /* Room for any int64_t, so later increments stay in place. */
                struct kv_entry *ne = kv_entry_new(st, h, key, klen, num, n, KV_INT_ROOM);
                if (!ne) {
                        err = -ENOMEM;
                        goto out_unlock;
                }
                if (e) {
                        ne->next = e->next;
                        *pp = ne;
                        old = e;
                        kv_shard_account(sh, 0, (long)kv_entry_bytes(ne) - (long)kv_entry_bytes(e));
                } else {
                        *pp = ne;
                        kv_shard_account(sh, 1, (long)kv_entry_bytes(ne));
                        kv_shard_maybe_grow(sh);
                }
        }
        *result = next;
out_unlock:
        kv_unlock(sh);
        kv_entry_free(st, old);
        return err;
}

size_t kv_del(struct kv_store *st, const struct tern_resp_arg *keys, size_t n, uint64_t *hash)
{
        struct kv_entry *dead = NULL;
        size_t removed = 0;
        uint64_t mask = kv_hash_keys(st, keys, n, 1, hash);

        kv_lock_set(st, mask);
        for (size_t i = 0; i < n; i++) {
                struct kv_shard *sh = kv_shard_of(st, hash[i]);
                struct kv_entry **pp = kv_find(sh, hash[i], keys[i].data, keys[i].len);
                struct kv_entry *e = *pp;
                if (!e)
                        continue;
                *pp = e->next;
                kv_shard_account(sh, -1, -(long)kv_entry_bytes(e));
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
                if (*kv_find(sh, hash[i], keys[i].data, keys[i].len))
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
                const struct kv_entry *e = *kv_find(sh, hash[i], keys[i].data, keys[i].len);
                need += e ? 1 + kv_digits(e->vlen) + 2 + e->vlen + 2 : 5;
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
                if (e)
                        tern_resp_put_bulk(out, kv_value(e), e->vlen);
                else
                        tern_resp_put_null(out);
        }
out_unlock:
        kv_unlock_set(st, mask);
        return err;
}

int kv_mset(struct kv_store *st, const struct tern_resp_arg *kv, size_t npairs, uint64_t *hash)
{
        struct kv_entry *fresh = NULL, **tail = &fresh, *dead = NULL;

        for (size_t i = 0; i < npairs; i++)
                if (kv[2 * i].len > UINT32_MAX || kv[2 * i + 1].len > UINT32_MAX)
                        return -E2BIG;
        if (kv_over_limit(st))
                return -ENOSPC;
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
        for (size_t i = 0; i < npairs; i++) {
                struct kv_entry *e = fresh;
                fresh = e->next;
                struct kv_shard *sh = kv_shard_of(st, hash[i]);
                struct kv_entry **pp = kv_find(sh, hash[i], kv[2 * i].data, kv[2 * i].len);
                struct kv_entry *old = *pp;
                if (old) {
                        e->next = old->next;
                        *pp = e;
                        kv_shard_account(sh, 0,
                                         (long)kv_entry_bytes(e) - (long)kv_entry_bytes(old));
                        old->next = dead;
                        dead = old;
                } else {
                        e->next = NULL;
                        *pp = e;
                        kv_shard_account(sh, 1, (long)kv_entry_bytes(e));
                        kv_shard_maybe_grow(sh);
                }
        }
        kv_unlock_set(st, mask);
        kv_free_list(st, dead);
        return 0;
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
                __atomic_store_n(&sh->count, 0, __ATOMIC_RELAXED);
                __atomic_store_n(&sh->bytes, kv_buckets_bytes(KV_BUCKETS_MIN), __ATOMIC_RELAXED);
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
                out->keys += __atomic_load_n(&st->shard[i].count, __ATOMIC_RELAXED);
                out->bytes += __atomic_load_n(&st->shard[i].bytes, __ATOMIC_RELAXED);
                out->entries += __atomic_load_n(&st->shard[i].live, __ATOMIC_RELAXED);
        }
}
