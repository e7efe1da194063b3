/*
 * tern-kv's container values: the field table behind hashes, sets and sorted
 * sets, and the list. Plain data structures with no locking: the store
 * (store.c) calls them with the owning key's shard locked.
 *
 * Every container counts the bytes it has allocated (with the same per-block
 * overhead estimate as the store's entries), so the store's --max-memory
 * accounting follows values that grow in place.
 */
#ifndef TERN_KV_OBJ_H
#define TERN_KV_OBJ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What malloc spends per block beyond the bytes asked for, roughly. */
#define KV_MALLOC_OVERHEAD 16

/* One field: its name and value in one allocation. */
struct kv_field {
        struct kv_field *next;
        uint64_t hash;
        uint32_t flen;
        uint32_t vlen;
        uint8_t data[]; /* flen name bytes, then vlen value bytes */
};

/*
 * kv_dict - fields by name: a chained table whose bucket array doubles once
 * it holds more fields than buckets. Callers hash names themselves (the
 * store's keyed SipHash), so a client cannot aim fields at one chain.
 */
struct kv_dict {
        struct kv_field **b;
        size_t mask; /* buckets - 1 */
        size_t count;
        size_t bytes;
};

static inline const uint8_t *kv_field_value(const struct kv_field *f)
{
        return f->data + f->flen;
}

/* Returns NULL with nothing allocated, or an empty table. */
struct kv_dict *kv_dict_new(void);
void kv_dict_free(struct kv_dict *d);
struct kv_field *kv_dict_find(const struct kv_dict *d, uint64_t h, const void *name, size_t len);
/* Sets @name to @val (copies). Returns 1 added, 0 replaced, -ENOMEM or
 * -E2BIG (4 GiB or more; nothing changed). */
int kv_dict_set(struct kv_dict *d, uint64_t h, const void *name, size_t len, const void *val,
                size_t vlen);
/* Returns 1 removed, 0 absent. */
int kv_dict_del(struct kv_dict *d, uint64_t h, const void *name, size_t len);
/* Unlinks and returns a field picked at random (@rnd: a random number), or
 * NULL when empty; the caller frees it with kv_dict_field_free(). */
struct kv_field *kv_dict_pop_random(struct kv_dict *d, uint64_t rnd);
void kv_dict_field_free(struct kv_dict *d, struct kv_field *f);
/* Visits every field; stops early when @fn returns non-zero and returns that. */
int kv_dict_each(const struct kv_dict *d, int (*fn)(const struct kv_field *f, void *arg),
                 void *arg);

/* One list element. */
struct kv_item {
        uint32_t len;
        uint8_t data[];
};

/* kv_list - a ring of element pointers: pushes and pops at both ends are
 * O(1) amortised, an index is O(1). */
struct kv_list {
        struct kv_item **ring;
        size_t cap; /* a power of two, or 0 */
        size_t head;
        size_t count;
        size_t bytes;
};

struct kv_list *kv_list_new(void);
void kv_list_free(struct kv_list *l);
/* Returns 0, -ENOMEM or -E2BIG (nothing changed). */
int kv_list_push(struct kv_list *l, bool front, const void *data, size_t len);
/* Unlinks the first or last element, NULL when empty; free it with
 * kv_list_item_free(). */
struct kv_item *kv_list_pop(struct kv_list *l, bool front);
void kv_list_item_free(struct kv_list *l, struct kv_item *it);
static inline const struct kv_item *kv_list_at(const struct kv_list *l, size_t i)
{
        return l->ring[(l->head + i) & (l->cap - 1)];
}

/* Glob-style matching as Redis's KEYS and SCAN MATCH do: * ? [abc] [^a-z]
 * and \x. Iterative, backtracking only to the latest '*', so its cost is at
 * most pattern length times string length whatever the pattern. */
bool kv_glob_match(const uint8_t *pat, size_t plen, const uint8_t *s, size_t slen);

#endif
