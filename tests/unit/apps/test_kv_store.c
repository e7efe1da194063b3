/*
 * tern-kv's store and containers on their own, without a server: glob
 * matching, the field table and the list, expiry (lazy and active), SCAN's
 * cursor across a resize, eviction by both policies, WATCH's versions,
 * memory accounting of containers, and kv_hold() transactions against
 * concurrent readers.
 *
 * The sources are compiled in, so static helpers are reachable.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../../apps/kv/obj.c"
#include "../../../apps/kv/store.c"

#define A(s) ((struct tern_resp_arg){(const uint8_t *)(s), strlen(s)})

static bool glob(const char *p, const char *s)
{
        return kv_glob_match((const uint8_t *)p, strlen(p), (const uint8_t *)s, strlen(s));
}

Test(kv_store, glob_matches_as_redis_does)
{
        cr_assert(glob("*", ""));
        cr_assert(glob("*", "anything"));
        cr_assert(glob("h?llo", "hello"));
        cr_assert_not(glob("h?llo", "hllo"));
        cr_assert(glob("h*llo", "heeeello"));
        cr_assert(glob("h[ae]llo", "hallo"));
        cr_assert_not(glob("h[ae]llo", "hillo"));
        cr_assert(glob("h[^e]llo", "hallo"));
        cr_assert_not(glob("h[^e]llo", "hello"));
        cr_assert(glob("h[a-b]llo", "hbllo"));
        cr_assert(glob("h[b-a]llo", "hallo"), "a reversed range still matches");
        cr_assert(glob("h\\*llo", "h*llo"));
        cr_assert_not(glob("h\\*llo", "hello"));
        cr_assert(glob("key:*:end", "key:1:2:end"));
        cr_assert_not(glob("key:*:end", "key:1:2:en"));
        cr_assert(glob("a*", "a"));
        cr_assert_not(glob("", "a"));
        cr_assert(glob("[abc", "a"), "an unterminated class ends the pattern");
}

Test(kv_store, glob_cost_is_bounded_whatever_the_pattern)
{
        /* The pattern that made recursive matchers exponential. */
        char s[4096], p[256];
        memset(s, 'a', sizeof(s) - 1);
        s[sizeof(s) - 1] = '\0';
        strcpy(p, "");
        for (int i = 0; i < 60; i++)
                strcat(p, "a*");
        strcat(p, "b");
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 10; i++)
                cr_assert_not(glob(p, s));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        cr_assert_lt(ms, 2000, "10 hostile matches took %.0f ms", ms);
}

Test(kv_store, dict_grows_pops_and_gives_back_every_byte)
{
        struct kv_dict *d = kv_dict_new();
        cr_assert_not_null(d);
        size_t empty = d->bytes;
        char name[32];
        for (int i = 0; i < 1000; i++) {
                int n = snprintf(name, sizeof(name), "f%d", i);
                cr_assert_eq(
                    kv_dict_set(d, (uint64_t)i * 0x9e3779b97f4a7c15ULL, name, (size_t)n, "v", 1),
                    1);
        }
        cr_assert_eq(d->count, 1000);
        cr_assert_geq(d->mask + 1, 1000, "the table grew");
        cr_assert_eq(kv_dict_set(d, 7 * 0x9e3779b97f4a7c15ULL, "f7", 2, "longer", 6), 0);
        cr_assert_eq(kv_dict_set(d, 7 * 0x9e3779b97f4a7c15ULL, "f7", 2, "sixsix", 6), 0,
                     "same size: in place");
        const struct kv_field *f = kv_dict_find(d, 7 * 0x9e3779b97f4a7c15ULL, "f7", 2);
        cr_assert(f && f->vlen == 6 && memcmp(kv_field_value(f), "sixsix", 6) == 0);
        cr_assert_eq(kv_dict_del(d, 7 * 0x9e3779b97f4a7c15ULL, "f7", 2), 1);
        cr_assert_eq(kv_dict_del(d, 7 * 0x9e3779b97f4a7c15ULL, "f7", 2), 0);
        size_t n = 0;
        struct kv_field *p;
        while ((p = kv_dict_pop_random(d, n * 31)) != NULL) {
                kv_dict_field_free(d, p);
                n++;
        }
        cr_assert_eq(n, 999);
        cr_assert_eq(d->count, 0);
        /* Only the grown bucket array stays. */
        cr_assert_eq(d->bytes - (d->mask + 1 - KV_DICT_MIN) * sizeof(*d->b), empty);
        kv_dict_free(d);
}

Test(kv_store, list_pushes_and_pops_at_both_ends_across_the_wrap)
{
        struct kv_list *l = kv_list_new();
        size_t empty = l->bytes;
        char v[16];
        /* Fronts and backs interleaved so the ring wraps while it grows. */
        for (int i = 0; i < 100; i++) {
                int n = snprintf(v, sizeof(v), "%d", i);
                cr_assert_eq(kv_list_push(l, i % 2 == 0, v, (size_t)n), 0);
        }
        cr_assert_eq(l->count, 100);
        /* Front: 98 96 ... 2 0, then back: 1 3 ... 99. */
        const struct kv_item *it = kv_list_at(l, 0);
        cr_assert(it->len == 2 && memcmp(it->data, "98", 2) == 0);
        it = kv_list_at(l, 49);
        cr_assert(it->len == 1 && it->data[0] == '0');
        it = kv_list_at(l, 50);
        cr_assert(it->len == 1 && it->data[0] == '1');
        for (int i = 0; i < 50; i++) {
                struct kv_item *a = kv_list_pop(l, true), *b = kv_list_pop(l, false);
                cr_assert_not_null(a);
                cr_assert_not_null(b);
                kv_list_item_free(l, a);
                kv_list_item_free(l, b);
        }
        cr_assert_null(kv_list_pop(l, true));
        cr_assert_eq(l->bytes - l->cap * sizeof(*l->ring) - KV_MALLOC_OVERHEAD, empty);
        kv_list_free(l);
}

static struct kv_reply reply(struct tern_buf *b)
{
        return (struct kv_reply){.buf = b, .proto = 2, .max = SIZE_MAX};
}

static void expect_reply(struct tern_buf *b, const char *want)
{
        cr_assert_eq(tern_buf_len(b), strlen(want), "reply '%.*s', want '%s'", (int)tern_buf_len(b),
                     (const char *)tern_buf_data(b), want);
        cr_assert(memcmp(tern_buf_data(b), want, strlen(want)) == 0, "reply '%.*s', want '%s'",
                  (int)tern_buf_len(b), (const char *)tern_buf_data(b), want);
        tern_buf_consume(b, tern_buf_len(b));
}

static void check_no_leak(struct kv_store *st)
{
        struct kv_store_stats ss;
        kv_store_stats(st, &ss);
        cr_assert_eq(ss.entries, ss.keys, "%zu entries for %zu keys", ss.entries, ss.keys);
}

Test(kv_store, keys_expire_on_access_and_in_the_background)
{
        struct kv_store *st = kv_store_new(0);
        struct tern_buf b = TERN_BUF_INIT;
        struct kv_reply r = reply(&b);
        char key[32];
        int64_t soon = kv_now_ms() + 50;

        struct kv_set_opts o = {.expire = soon};
        cr_assert_eq(kv_set_full(st, "lazy", 4, "v", 1, &o, NULL), 1);
        for (int i = 0; i < 500; i++) {
                snprintf(key, sizeof(key), "bg-%d", i);
                cr_assert_eq(kv_set_full(st, key, strlen(key), "v", 1, &o, NULL), 1);
        }
        cr_assert_eq(kv_set(st, "stays", 5, "v", 1, KV_SET_ALWAYS), 1);
        int64_t ttl = kv_pttl(st, "lazy", 4);
        cr_assert(ttl > 0 && ttl <= 50, "pttl %lld", (long long)ttl);
        struct kv_store_stats ss;
        kv_store_stats(st, &ss);
        cr_assert_eq(ss.expires, 501);
        usleep(80 * 1000);

        /* A lookup drops the key it finds expired. */
        cr_assert_eq(kv_get(st, "lazy", 4, &r), 0);
        expect_reply(&b, "$-1\r\n");
        kv_store_stats(st, &ss);
        cr_assert_eq(ss.expired, 1);
        cr_assert_eq(ss.keys, 501, "the others are still counted until sampled");

        /* The timer's work removes the rest without a single read. */
        for (int i = 0; i < 20 && kv_dbsize(st) > 1; i++)
                kv_store_tick(st);
        cr_assert_eq(kv_dbsize(st), 1);
        kv_store_stats(st, &ss);
        cr_assert_eq(ss.expires, 0);
        cr_assert_eq(ss.expired, 501);
        check_no_leak(st);
        tern_buf_free(&b);
        kv_store_free(st);
}

Test(kv_store, expire_flags_and_persist)
{
        struct kv_store *st = kv_store_new(0);
        int64_t now = kv_now_ms();
        cr_assert_eq(kv_expire(st, "k", 1, now + 1000, 0), 0, "absent");
        kv_set(st, "k", 1, "v", 1, KV_SET_ALWAYS);
        cr_assert_eq(kv_pttl(st, "k", 1), -1);
        cr_assert_eq(kv_expire(st, "k", 1, now + 1000, KV_EXP_XX), 0, "XX without a TTL");
        cr_assert_eq(kv_expire(st, "k", 1, now + 1000, KV_EXP_GT), 0, "GT: none is infinite");
        cr_assert_eq(kv_expire(st, "k", 1, now + 1000, KV_EXP_NX), 1);
        cr_assert_eq(kv_expire(st, "k", 1, now + 2000, KV_EXP_NX), 0);
        cr_assert_eq(kv_expire(st, "k", 1, now + 500, KV_EXP_GT), 0);
        cr_assert_eq(kv_expire(st, "k", 1, now + 500, KV_EXP_LT), 1);
        cr_assert_eq(kv_persist(st, "k", 1), 1);
        cr_assert_eq(kv_persist(st, "k", 1), 0);
        cr_assert_eq(kv_expire(st, "k", 1, now - 1, 0), 1, "a past time deletes");
        cr_assert_eq(kv_pttl(st, "k", 1), -2);
        check_no_leak(st);
        kv_store_free(st);
}

Test(kv_store, scan_returns_every_key_even_when_tables_grow_between_calls)
{
        struct kv_store *st = kv_store_new(0);
        struct tern_buf b = TERN_BUF_INIT;
        struct kv_reply r = reply(&b);
        char key[32];
        static bool seen[1000];
        for (int i = 0; i < 1000; i++) {
                snprintf(key, sizeof(key), "orig-%d", i);
                kv_set(st, key, strlen(key), "v", 1, KV_SET_ALWAYS);
        }
        uint64_t cursor = 0;
        int calls = 0;
        do {
                cr_assert_eq(kv_scan(st, cursor, NULL, 0, 10, KV_NONE, &r), 0);
                /* [cursor, [keys]]: parse by hand. */
                const char *p = (const char *)tern_buf_data(&b);
                cr_assert(strncmp(p, "*2\r\n$", 5) == 0);
                p = strchr(p + 5, '\n') + 1;
                cursor = strtoull(p, NULL, 10);
                p = strchr(p, '\n') + 1;
                cr_assert_eq(*p, '*');
                long n = strtol(p + 1, NULL, 10);
                p = strchr(p, '\n') + 1;
                for (long i = 0; i < n; i++) {
                        long len = strtol(p + 1, NULL, 10);
                        p = strchr(p, '\n') + 1;
                        if (len > 5 && strncmp(p, "orig-", 5) == 0)
                                seen[atoi(p + 5)] = true;
                        p += len + 2;
                }
                tern_buf_consume(&b, tern_buf_len(&b));
                /* After the first call, make every shard's table grow. */
                if (++calls == 1)
                        for (int i = 0; i < 20000; i++) {
                                snprintf(key, sizeof(key), "new-%d", i);
                                kv_set(st, key, strlen(key), "v", 1, KV_SET_ALWAYS);
                        }
        } while (cursor != 0);
        for (int i = 0; i < 1000; i++)
                cr_assert(seen[i], "orig-%d was never returned", i);
        tern_buf_free(&b);
        kv_store_free(st);
}

static void fill(struct kv_store *st, const char *prefix, int n, size_t vlen, int64_t ttl_ms)
{
        char key[32], val[1024];
        memset(val, 'x', sizeof(val));
        for (int i = 0; i < n; i++) {
                snprintf(key, sizeof(key), "%s%d", prefix, i);
                struct kv_set_opts o = {.expire = ttl_ms ? kv_now_ms() + ttl_ms + i : 0};
                int r = kv_set_full(st, key, strlen(key), val, vlen, &o, NULL);
                cr_assert(r == 1 || r == -ENOSPC, "set: %d", r);
        }
}

Test(kv_store, allkeys_lru_evicts_to_stay_under_the_cap)
{
        struct kv_store *st = kv_store_new(256 << 10);
        kv_store_set_policy(st, KV_ALLKEYS_LRU);
        fill(st, "k", 5000, 1000, 0);
        struct kv_store_stats ss;
        kv_store_stats(st, &ss);
        cr_assert_gt(ss.evicted, 4000);
        cr_assert_lt(ss.bytes, (256 << 10) + 2048, "bytes %zu", ss.bytes);
        check_no_leak(st);
        kv_store_free(st);
}

Test(kv_store, volatile_ttl_evicts_only_keys_with_a_ttl_soonest_first)
{
        struct kv_store *st = kv_store_new(256 << 10);
        kv_store_set_policy(st, KV_VOLATILE_TTL);
        fill(st, "keep", 50, 1000, 0);
        fill(st, "tmp", 1000, 1000, 1000000);
        struct kv_store_stats ss;
        kv_store_stats(st, &ss);
        cr_assert_gt(ss.evicted, 500);
        for (int i = 0; i < 50; i++) {
                char key[32];
                snprintf(key, sizeof(key), "keep%d", i);
                cr_assert_eq(kv_pttl(st, key, strlen(key)), -1, "%s was evicted", key);
        }
        /* The latest keys (furthest deadlines) survive more often than the first. */
        int early = 0, late = 0;
        for (int i = 0; i < 100; i++) {
                char key[32];
                snprintf(key, sizeof(key), "tmp%d", i);
                early += kv_pttl(st, key, strlen(key)) > 0;
                snprintf(key, sizeof(key), "tmp%d", 999 - i);
                late += kv_pttl(st, key, strlen(key)) > 0;
        }
        cr_assert_gt(late, early, "late %d, early %d", late, early);
        /* Once only keys without a TTL are left, writes are refused. */
        struct kv_store *full = kv_store_new(64 << 10);
        kv_store_set_policy(full, KV_VOLATILE_TTL);
        fill(full, "keep", 200, 1000, 0);
        cr_assert_eq(kv_set(full, "one", 3, "v", 1, KV_SET_ALWAYS), -ENOSPC);
        kv_store_free(full);
        check_no_leak(st);
        kv_store_free(st);
}

Test(kv_store, versions_change_with_every_write_for_watch)
{
        struct kv_store *st = kv_store_new(0);
        int64_t v;
        cr_assert_eq(kv_version(st, "k", 1), 0);
        kv_set(st, "k", 1, "1", 1, KV_SET_ALWAYS);
        uint64_t v1 = kv_version(st, "k", 1);
        cr_assert_neq(v1, 0);
        cr_assert_eq(kv_version(st, "k", 1), v1, "reads do not change it");
        kv_incr(st, "k", 1, 1, &v);
        uint64_t v2 = kv_version(st, "k", 1);
        cr_assert_neq(v2, v1, "an in-place INCR changes it");
        kv_expire(st, "k", 1, kv_now_ms() + 10000, 0);
        cr_assert_neq(kv_version(st, "k", 1), v2, "EXPIRE changes it");
        struct tern_resp_arg k = A("k");
        uint64_t h;
        kv_del(st, &k, 1, &h);
        cr_assert_eq(kv_version(st, "k", 1), 0);
        kv_set(st, "k", 1, "1", 1, KV_SET_ALWAYS);
        cr_assert_gt(kv_version(st, "k", 1), v2, "a new key never reuses a stamp");
        kv_store_free(st);
}

Test(kv_store, containers_account_their_memory_and_vanish_when_emptied)
{
        struct kv_store *st = kv_store_new(0);
        struct tern_buf b = TERN_BUF_INIT;
        struct kv_reply r = reply(&b);
        struct kv_store_stats empty, full, after;
        int64_t n;
        kv_store_stats(st, &empty);

        struct tern_resp_arg fv[4] = {A("f1"), A("v1"), A("f2"), A("v2")};
        cr_assert_eq(kv_hset(st, "h", 1, fv, 2, &n), 0);
        cr_assert_eq(n, 2);
        struct tern_resp_arg items[3] = {A("a"), A("b"), A("c")};
        cr_assert_eq(kv_push(st, "l", 1, items, 3, false, &n), 0);
        cr_assert_eq(kv_sadd(st, "s", 1, items, 3, &n), 0);
        struct tern_resp_arg sm[2] = {A("1.5"), A("m")};
        cr_assert_eq(kv_zadd(st, "z", 1, sm, 1, &n), 0);
        kv_store_stats(st, &full);
        cr_assert_eq(full.keys, 4);
        cr_assert_gt(full.bytes, empty.bytes + 4 * sizeof(struct kv_dict));

        cr_assert_eq(kv_get(st, "h", 1, &r), -EPROTOTYPE);
        cr_assert_eq(kv_push(st, "h", 1, items, 1, true, &n), -EPROTOTYPE);
        cr_assert_eq(kv_rename(st, "h", 1, "h2", 2, false), 1);
        cr_assert_eq(kv_hget(st, "h2", 2, &fv[0], &r), 0);
        expect_reply(&b, "$2\r\nv1\r\n");
        cr_assert_eq(kv_hdel(st, "h2", 2, fv, 1, &n), 0);
        struct tern_resp_arg f2 = A("f2");
        cr_assert_eq(kv_hdel(st, "h2", 2, &f2, 1, &n), 0);
        cr_assert_eq(kv_pop(st, "l", 1, true, 10, &r), 0);
        expect_reply(&b, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
        cr_assert_eq(kv_spop(st, "s", 1, 5, &r), 0);
        tern_buf_consume(&b, tern_buf_len(&b));
        cr_assert_eq(kv_zpopmin(st, "z", 1, 1, &r), 0);
        expect_reply(&b, "*2\r\n$1\r\nm\r\n$3\r\n1.5\r\n");
        kv_store_stats(st, &after);
        cr_assert_eq(after.keys, 0, "emptied containers are deleted");
        cr_assert_eq(after.bytes, empty.bytes, "%zd bytes left accounted",
                     (ssize_t)(after.bytes - empty.bytes));
        check_no_leak(st);
        tern_buf_free(&b);
        kv_store_free(st);
}

/* ---- transactions: kv_hold ---- */

struct tx_arg {
        struct kv_store *st;
        int iters;
        int torn;
};

static const char *const tx_keys[4] = {"acct-a", "acct-b", "acct-c", "acct-d"};

/* Moves 1 from one key to the next inside a hold, the way EXEC runs
 * DECRBY and INCRBY queued together. */
static void *tx_mover(void *p)
{
        struct tx_arg *a = p;
        uint64_t mask = 0;
        int64_t v;
        for (int k = 0; k < 4; k++)
                mask |= kv_shard_mask(a->st, tx_keys[k], strlen(tx_keys[k]));
        for (int i = 0; i < a->iters; i++) {
                const char *from = tx_keys[i % 4], *to = tx_keys[(i + 1) % 4];
                kv_hold(a->st, mask);
                kv_incr(a->st, from, strlen(from), -1, &v);
                kv_incr(a->st, to, strlen(to), 1, &v);
                kv_release(a->st);
        }
        return NULL;
}

/* Reads the four keys one at a time, also inside a hold: their sum never moves. */
static void *tx_reader(void *p)
{
        struct tx_arg *a = p;
        uint64_t mask = 0;
        for (int k = 0; k < 4; k++)
                mask |= kv_shard_mask(a->st, tx_keys[k], strlen(tx_keys[k]));
        for (int i = 0; i < a->iters; i++) {
                int64_t sum = 0, v;
                kv_hold(a->st, mask);
                for (int k = 0; k < 4; k++) {
                        kv_incr(a->st, tx_keys[k], strlen(tx_keys[k]), 0, &v);
                        sum += v;
                }
                kv_release(a->st);
                if (sum != 4000)
                        a->torn++;
        }
        return NULL;
}

Test(kv_store, holds_make_several_commands_atomic)
{
        struct kv_store *st = kv_store_new(0);
        uint64_t mask = 0;
        for (int k = 0; k < 4; k++) {
                kv_set(st, tx_keys[k], strlen(tx_keys[k]), "1000", 4, KV_SET_ALWAYS);
                mask |= kv_shard_mask(st, tx_keys[k], strlen(tx_keys[k]));
        }
        cr_assert_gt(__builtin_popcountll(mask), 1, "the keys must span several shards");
        pthread_t t[4];
        struct tx_arg a[4];
        for (int i = 0; i < 4; i++) {
                a[i] = (struct tx_arg){.st = st, .iters = 20000};
                cr_assert_eq(pthread_create(&t[i], NULL, i < 2 ? tx_mover : tx_reader, &a[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                cr_assert_eq(a[i].torn, 0, "reader %d saw %d torn sums", i, a[i].torn);
        }
        check_no_leak(st);
        kv_store_free(st);
}

Test(kv_store, integers_are_written_as_redis_reads_them)
{
        char buf[KV_INT_ROOM];
        const int64_t vals[] = {0, 1, -1, 10, -10, 9223372036854775807LL, INT64_MIN};
        const char *const want[] = {
            "0", "1", "-1", "10", "-10", "9223372036854775807", "-9223372036854775808"};
        for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
                size_t n = kv_fmt_i64(buf, vals[i]);
                cr_assert(n == strlen(want[i]) && memcmp(buf, want[i], n) == 0, "%s", want[i]);
                int64_t back;
                cr_assert(kv_parse_i64((const uint8_t *)buf, n, &back) && back == vals[i]);
        }
}

/* An expired key ahead of a live one in the same chain: the lookup that
 * drops it must not then hand back its neighbour. */
Test(kv_store, an_expired_key_is_absent_not_its_chain_neighbour)
{
        struct kv_store *st = kv_store_new(0);
        struct tern_buf b = TERN_BUF_INIT;
        struct kv_reply r = reply(&b);
        char first[32], second[32];
        uint64_t h0 = kv_hash(st, "n-0", 3);
        int i;
        for (i = 1; i < 100000; i++) {
                snprintf(second, sizeof(second), "n-%d", i);
                uint64_t h = kv_hash(st, second, strlen(second));
                if (kv_shard_index(h) == kv_shard_index(h0) &&
                    (h & (KV_BUCKETS_MIN - 1)) == (h0 & (KV_BUCKETS_MIN - 1)))
                        break;
        }
        cr_assert_lt(i, 100000, "no two keys share a chain");
        strcpy(first, "n-0");
        struct kv_set_opts o = {.expire = kv_now_ms() + 20};
        cr_assert_eq(kv_set_full(st, first, strlen(first), "old", 3, &o, NULL), 1);
        cr_assert_eq(kv_set(st, second, strlen(second), "live", 4, KV_SET_ALWAYS), 1);
        usleep(40 * 1000);
        cr_assert_eq(kv_get(st, first, strlen(first), &r), 0);
        expect_reply(&b, "$-1\r\n");
        cr_assert_eq(kv_get(st, second, strlen(second), &r), 0);
        expect_reply(&b, "$4\r\nlive\r\n");
        check_no_leak(st);
        tern_buf_free(&b);
        kv_store_free(st);
}

Test(kv_store, zpopmin_pops_in_score_then_member_order)
{
        struct kv_store *st = kv_store_new(0);
        struct tern_buf b = TERN_BUF_INIT;
        struct kv_reply r = reply(&b);
        struct tern_resp_arg sm[8] = {A("2"), A("b"), A("1"),    A("z"),
                                      A("2"), A("a"), A("-inf"), A("low")};
        int64_t n;
        cr_assert_eq(kv_zadd(st, "z", 1, sm, 4, &n), 0);
        cr_assert_eq(n, 4);
        cr_assert_eq(kv_zpopmin(st, "z", 1, 1, &r), 0);
        expect_reply(&b, "*2\r\n$3\r\nlow\r\n$4\r\n-inf\r\n");
        cr_assert_eq(kv_zpopmin(st, "z", 1, 10, &r), 0);
        expect_reply(&b,
                     "*6\r\n$1\r\nz\r\n$1\r\n1\r\n$1\r\na\r\n$1\r\n2\r\n$1\r\nb\r\n$1\r\n2\r\n");
        cr_assert_eq(kv_dbsize(st), 0);
        /* A big count on a big set is sorted once, not scanned per member. */
        char m[32];
        for (int i = 0; i < 50000; i++) {
                snprintf(m, sizeof(m), "m%d", i);
                struct tern_resp_arg p[2] = {A("1"), A(m)};
                kv_zadd(st, "big", 3, p, 1, &n);
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cr_assert_eq(kv_zpopmin(st, "big", 3, 50000, &r), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        cr_assert_lt(t1.tv_sec - t0.tv_sec, 3, "50,000 pops took %lld s",
                     (long long)(t1.tv_sec - t0.tv_sec));
        cr_assert_eq(kv_dbsize(st), 0);
        check_no_leak(st);
        tern_buf_free(&b);
        kv_store_free(st);
}

Test(kv_store, popping_an_absent_key_still_replies)
{
        struct kv_store *st = kv_store_new(0);
        struct tern_buf b = TERN_BUF_INIT;
        struct kv_reply r = reply(&b);
        cr_assert_eq(kv_zpopmin(st, "none", 4, 1, &r), 0);
        expect_reply(&b, "*0\r\n");
        cr_assert_eq(kv_pop(st, "none", 4, true, -1, &r), 0);
        expect_reply(&b, "$-1\r\n");
        cr_assert_eq(kv_pop(st, "none", 4, true, 2, &r), 0);
        expect_reply(&b, "*-1\r\n");
        cr_assert_eq(kv_spop(st, "none", 4, -1, &r), 0);
        expect_reply(&b, "$-1\r\n");
        cr_assert_eq(kv_spop(st, "none", 4, 3, &r), 0);
        expect_reply(&b, "*0\r\n");
        tern_buf_free(&b);
        kv_store_free(st);
}
