/*
 * Guard-page inputs for decoder tests: the bytes are copied so that they end
 * exactly where an unreadable page begins, so a decoder that reads even one
 * byte past its input dies with SIGSEGV instead of passing by luck (ASan
 * cannot see such reads when the input is a slice of a larger buffer, which
 * is how a connection calls decode()).
 *
 * One struct guard is reused across calls: each guard_place() may remap, so
 * pointers from an earlier call (frame.data included) are valid only until
 * the next guard_place() or guard_free().
 */
#ifndef TERN_TEST_GUARD_H
#define TERN_TEST_GUARD_H

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "codec.h"

struct guard {
        uint8_t *map;   /* readable pages followed by one PROT_NONE page */
        size_t map_len; /* whole mapping, guard page included */
        size_t page;
};

#define GUARD_INIT                                                                                 \
        {                                                                                          \
                NULL, 0, 0                                                                         \
        }

static inline void guard_free(struct guard *g)
{
        if (g->map)
                munmap(g->map, g->map_len);
        g->map = NULL;
        g->map_len = 0;
}

/*
 * Copies @len bytes of @src (borrowed) so that they end at the guard page
 * and returns the copy. A zero-length input points at the guard page itself,
 * so even dereferencing it crashes.
 */
static inline const uint8_t *guard_place(struct guard *g, const void *src, size_t len)
{
        if (!g->page)
                g->page = (size_t)sysconf(_SC_PAGESIZE);
        size_t data_pages = (len + g->page - 1) / g->page;
        if (data_pages == 0)
                data_pages = 1;
        size_t need = (data_pages + 1) * g->page;

        if (g->map_len != need) {
                guard_free(g);
                void *m =
                    mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                cr_assert(m != MAP_FAILED, "mmap of %zu bytes failed", need);
                g->map = m;
                g->map_len = need;
                cr_assert(mprotect(g->map + data_pages * g->page, g->page, PROT_NONE) == 0,
                          "mprotect failed");
        }
        uint8_t *dst = g->map + data_pages * g->page - len;
        if (len)
                memcpy(dst, src, len);
        return dst;
}

/*
 * One decode() call over a guarded copy of @src. The frame (if any) points
 * into the copy and stays valid until the next use of @g.
 */
static inline ssize_t guard_decode(struct guard *g, const struct tern_codec *codec, void *state,
                                   const void *src, size_t len, struct tern_frame *frame)
{
        const uint8_t *in = guard_place(g, src, len);

        memset(frame, 0, sizeof(*frame));
        frame->kind = TERN_FRAME_NONE;
        ssize_t r = codec->decode(state, in, len, frame);
        /* Whatever the codec, a frame may only point into what it consumed. */
        if (r > 0 && frame->kind == TERN_FRAME_DATA) {
                cr_assert((size_t)r <= len, "consumed %zd of %zu bytes", r, len);
                cr_assert(frame->data >= in && frame->len <= (size_t)r &&
                              (size_t)(frame->data - in) <= (size_t)r - frame->len,
                          "frame outside the consumed bytes");
        }
        if (r <= 0)
                cr_assert(frame->kind == TERN_FRAME_NONE, "a frame without consuming");
        return r;
}

#endif
