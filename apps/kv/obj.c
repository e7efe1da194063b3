/*
 * Containers for tern-kv's non-string values; obj.h says what each is for.
 */
#include "obj.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define KV_DICT_MIN 4

static size_t kv_field_bytes(const struct kv_field *f)
{
        return sizeof(*f) + f->flen + f->vlen + KV_MALLOC_OVERHEAD;
}

struct kv_dict *kv_dict_new(void)
{
        struct kv_dict *d = calloc(1, sizeof(*d));
        if (!d)
                return NULL;
        d->b = calloc(KV_DICT_MIN, sizeof(*d->b));
        if (!d->b) {
                free(d);
                return NULL;
        }
        d->mask = KV_DICT_MIN - 1;
        d->bytes = sizeof(*d) + KV_DICT_MIN * sizeof(*d->b) + 2 * KV_MALLOC_OVERHEAD;
        return d;
}

void kv_dict_free(struct kv_dict *d)
{
        if (!d)
                return;
        for (size_t i = 0; i <= d->mask; i++) {
                struct kv_field *f = d->b[i];
                while (f) {
                        struct kv_field *next = f->next;
                        free(f);
                        f = next;
                }
        }
        free(d->b);
        free(d);
}

static struct kv_field **kv_dict_link(const struct kv_dict *d, uint64_t h, const void *name,
                                      size_t len)
{
        struct kv_field **pp = &d->b[h & d->mask];
        for (; *pp; pp = &(*pp)->next)
                if ((*pp)->hash == h && (*pp)->flen == len && memcmp((*pp)->data, name, len) == 0)
                        break;
        return pp;
}

struct kv_field *kv_dict_find(const struct kv_dict *d, uint64_t h, const void *name, size_t len)
{
        return *kv_dict_link(d, h, name, len);
}

/* Doubles the buckets; on failure the table keeps longer chains. */
static void kv_dict_grow(struct kv_dict *d)
{
        size_t n = d->mask + 1;
        if (d->count <= n || n > SIZE_MAX / 2 / sizeof(*d->b))
                return;
        struct kv_field **nb = calloc(n * 2, sizeof(*nb));
        if (!nb)
                return;
        for (size_t i = 0; i < n; i++) {
                struct kv_field *f = d->b[i];
                while (f) {
                        struct kv_field *next = f->next;
                        f->next = nb[f->hash & (n * 2 - 1)];
                        nb[f->hash & (n * 2 - 1)] = f;
                        f = next;
                }
        }
        free(d->b);
        d->b = nb;
        d->mask = n * 2 - 1;
        d->bytes += n * sizeof(*nb);
}

int kv_dict_set(struct kv_dict *d, uint64_t h, const void *name, size_t len, const void *val,
                size_t vlen)
{
        if (len > UINT32_MAX || vlen > UINT32_MAX)
                return -E2BIG;
        struct kv_field **pp = kv_dict_link(d, h, name, len);
        struct kv_field *old = *pp;
        if (old && old->vlen == vlen) {
                /* Same size: rewrite in place (HINCRBY, ZADD of a new score). */
                if (vlen)
                        memcpy(old->data + len, val, vlen);
                return 0;
        }
        struct kv_field *f = malloc(sizeof(*f) + len + vlen);
        if (!f)
                return -ENOMEM;
        f->hash = h;
        f->flen = (uint32_t)len;
        f->vlen = (uint32_t)vlen;
        if (len)
                memcpy(f->data, name, len);
        if (vlen)
                memcpy(f->data + len, val, vlen);
        d->bytes += kv_field_bytes(f);
        if (old) {
                f->next = old->next;
                *pp = f;
                d->bytes -= kv_field_bytes(old);
                free(old);
                return 0;
        }
        f->next = NULL;
        *pp = f;
        d->count++;
        kv_dict_grow(d);
        return 1;
}

void kv_dict_field_free(struct kv_dict *d, struct kv_field *f)
{
        d->bytes -= kv_field_bytes(f);
        free(f);
}

int kv_dict_del(struct kv_dict *d, uint64_t h, const void *name, size_t len)
{
        struct kv_field **pp = kv_dict_link(d, h, name, len);
        struct kv_field *f = *pp;
        if (!f)
                return 0;
        *pp = f->next;
        d->count--;
        kv_dict_field_free(d, f);
        return 1;
}

struct kv_field *kv_dict_pop_random(struct kv_dict *d, uint64_t rnd)
{
        if (!d->count)
                return NULL;
        /* A random bucket, then the next non-empty one: not uniform over
         * fields (a long chain's head is favoured), as in Redis's SPOP. */
        for (size_t i = 0; i <= d->mask; i++) {
                struct kv_field **pp = &d->b[(rnd + i) & d->mask];
                if (*pp) {
                        struct kv_field *f = *pp;
                        *pp = f->next;
                        d->count--;
                        return f;
                }
        }
        return NULL;
}

int kv_dict_each(const struct kv_dict *d, int (*fn)(const struct kv_field *f, void *arg), void *arg)
{
        for (size_t i = 0; i <= d->mask; i++)
                for (const struct kv_field *f = d->b[i]; f; f = f->next) {
                        int r = fn(f, arg);
                        if (r)
                                return r;
                }
        return 0;
}

/* ---- lists ---- */

struct kv_list *kv_list_new(void)
{
        struct kv_list *l = calloc(1, sizeof(*l));
        if (l)
                l->bytes = sizeof(*l) + KV_MALLOC_OVERHEAD;
        return l;
}

void kv_list_free(struct kv_list *l)
{
        if (!l)
                return;
        for (size_t i = 0; i < l->count; i++)
                free(l->ring[(l->head + i) & (l->cap - 1)]);
        free(l->ring);
        free(l);
}

/* Makes room for one more element: doubles the ring, unrolling it. */
static int kv_list_room(struct kv_list *l)
{
        if (l->count < l->cap)
                return 0;
        size_t ncap = l->cap ? l->cap * 2 : 8;
        if (ncap > SIZE_MAX / sizeof(*l->ring))
                return -ENOMEM;
        struct kv_item **nr = malloc(ncap * sizeof(*nr));
        if (!nr)
                return -ENOMEM;
        for (size_t i = 0; i < l->count; i++)
                nr[i] = l->ring[(l->head + i) & (l->cap - 1)];
        free(l->ring);
        l->bytes += (ncap - l->cap) * sizeof(*nr) + (l->cap ? 0 : KV_MALLOC_OVERHEAD);
        l->ring = nr;
        l->cap = ncap;
        l->head = 0;
        return 0;
}

int kv_list_push(struct kv_list *l, bool front, const void *data, size_t len)
{
        if (len > UINT32_MAX)
                return -E2BIG;
        if (kv_list_room(l))
                return -ENOMEM;
        struct kv_item *it = malloc(sizeof(*it) + len);
        if (!it)
                return -ENOMEM;
        it->len = (uint32_t)len;
        if (len)
                memcpy(it->data, data, len);
        if (front) {
                l->head = (l->head - 1) & (l->cap - 1);
                l->ring[l->head] = it;
        } else {
                l->ring[(l->head + l->count) & (l->cap - 1)] = it;
        }
        l->count++;
        l->bytes += sizeof(*it) + len + KV_MALLOC_OVERHEAD;
        return 0;
}

struct kv_item *kv_list_pop(struct kv_list *l, bool front)
{
        if (!l->count)
                return NULL;
        struct kv_item *it;
        if (front) {
                it = l->ring[l->head];
                l->head = (l->head + 1) & (l->cap - 1);
        } else {
                it = l->ring[(l->head + l->count - 1) & (l->cap - 1)];
        }
        l->count--;
        return it;
}

void kv_list_item_free(struct kv_list *l, struct kv_item *it)
{
        l->bytes -= sizeof(*it) + it->len + KV_MALLOC_OVERHEAD;
        free(it);
}

/* ---- glob ---- */

/* Matches one [...] class at @pat (just past '['); sets *@end past its ']'. */
static bool kv_glob_class(const uint8_t *pat, size_t plen, size_t *end, uint8_t c)
{
        size_t i = 0;
        bool neg = false, hit = false;

        if (i < plen && pat[i] == '^') {
                neg = true;
                i++;
        }
        for (; i < plen && pat[i] != ']'; i++) {
                if (pat[i] == '\\' && i + 1 < plen) {
                        i++;
                        hit |= pat[i] == c;
                } else if (i + 2 < plen && pat[i + 1] == '-' && pat[i + 2] != ']') {
                        uint8_t lo = pat[i], hi = pat[i + 2];
                        if (lo > hi) {
                                uint8_t t = lo;
                                lo = hi;
                                hi = t;
                        }
                        hit |= c >= lo && c <= hi;
                        i += 2;
                } else {
                        hit |= pat[i] == c;
                }
        }
        *end = i < plen ? i + 1 : i; /* an unterminated class ends the pattern */
        return hit != neg;
}

bool kv_glob_match(const uint8_t *pat, size_t plen, const uint8_t *s, size_t slen)
{
        size_t p = 0, i = 0;
        size_t star_p = SIZE_MAX, star_i = 0;

        while (i < slen) {
                if (p < plen && pat[p] == '*') {
                        while (p < plen && pat[p] == '*')
                                p++;
                        if (p == plen)
                                return true;
                        star_p = p;
                        star_i = i;
                        continue;
                }
                if (p < plen) {
                        bool ok;
                        size_t next = p + 1;
                        if (pat[p] == '?') {
                                ok = true;
                        } else if (pat[p] == '[') {
                                ok = kv_glob_class(pat + p + 1, plen - p - 1, &next, s[i]);
                                next += p + 1;
                        } else if (pat[p] == '\\' && p + 1 < plen) {
                                ok = pat[p + 1] == s[i];
                                next = p + 2;
                        } else {
                                ok = pat[p] == s[i];
                        }
                        if (ok) {
                                p = next;
                                i++;
                                continue;
                        }
                }
                /* A mismatch: let the latest '*' swallow one more byte. */
                if (star_p == SIZE_MAX)
                        return false;
                p = star_p;
                i = ++star_i;
        }
        while (p < plen && pat[p] == '*')
                p++;
        return p == plen;
}
