#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "fixed.h"
#include "guard.h"

static void *fixed_new(size_t n)
{
        struct tern_fixed_config c;
        tern_fixed_config_init(&c, n);
        void *s = tern_fixed_codec.state_new(&c);
        cr_assert_not_null(s, "state_new refused frame_len %zu", n);
        return s;
}

static ssize_t dec(struct guard *g, void *st, const void *in, size_t len, struct tern_frame *f)
{
        return guard_decode(g, &tern_fixed_codec, st, in, len, f);
}

Test(fixed, config_limits)
{
        struct tern_fixed_config c;

        tern_fixed_config_init(&c, 0);
        cr_assert_eq(tern_fixed_config_check(&c), -EINVAL);
        errno = 0;
        cr_assert_null(tern_fixed_codec.state_new(&c));
        cr_assert_eq(errno, EINVAL);

        tern_fixed_config_init(&c, (size_t)TERN_FIXED_MAX_LIMIT + 1);
        cr_assert_eq(tern_fixed_config_check(&c), -EINVAL);
        cr_assert_null(tern_fixed_codec.state_new(&c));

        tern_fixed_config_init(&c, TERN_FIXED_MAX_LIMIT);
        cr_assert_eq(tern_fixed_config_check(&c), 0);
        tern_fixed_config_init(&c, 1);
        cr_assert_eq(tern_fixed_config_check(&c), 0);

        errno = 0;
        cr_assert_null(tern_fixed_codec.state_new(NULL));
        cr_assert_eq(errno, EINVAL);
}

Test(fixed, exact_frame)
{
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = fixed_new(5);

        cr_assert_eq(dec(&g, st, "hello", 5, &f), 5);
        cr_assert_eq(f.kind, TERN_FRAME_DATA);
        cr_assert_eq(f.len, 5);
        cr_assert(memcmp(f.data, "hello", 5) == 0);
        tern_fixed_codec.state_free(st);
        guard_free(&g);
}

Test(fixed, truncated_input_needs_more)
{
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = fixed_new(5);

        for (size_t i = 0; i < 5; i++) {
                cr_assert_eq(dec(&g, st, "hello", i, &f), TERN_CODEC_NEED_MORE, "prefix %zu", i);
                cr_assert_eq(f.kind, TERN_FRAME_NONE);
        }
        tern_fixed_codec.state_free(st);
        guard_free(&g);
}

Test(fixed, several_frames_in_one_input)
{
        static const char in[] = "abcdefghijk";
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = fixed_new(3);
        size_t off = 0, n = 0;

        for (;;) {
                ssize_t r = dec(&g, st, in + off, strlen(in) - off, &f);
                cr_assert_geq(r, 0);
                if (r == 0)
                        break;
                cr_assert_eq(r, 3);
                cr_assert_eq(f.len, 3);
                cr_assert(memcmp(f.data, in + off, 3) == 0);
                off += 3;
                n++;
        }
        cr_assert_eq(n, 3);
        cr_assert_eq(off, 9);
        tern_fixed_codec.state_free(st);
        guard_free(&g);
}

Test(fixed, one_byte_frames)
{
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = fixed_new(1);

        cr_assert_eq(dec(&g, st, "", 0, &f), TERN_CODEC_NEED_MORE);
        cr_assert_eq(dec(&g, st, "xy", 2, &f), 1);
        cr_assert_eq(f.len, 1);
        cr_assert_eq(f.data[0], 'x');
        tern_fixed_codec.state_free(st);
        guard_free(&g);
}

Test(fixed, encode_requires_exact_length)
{
        struct tern_buf b = TERN_BUF_INIT;
        void *st = fixed_new(4);

        cr_assert_eq(tern_fixed_codec.encode(st, &b, "abc", 3), -EINVAL);
        cr_assert_eq(tern_fixed_codec.encode(st, &b, "abcde", 5), -EINVAL);
        cr_assert(tern_buf_empty(&b));
        cr_assert_eq(tern_fixed_codec.encode(st, &b, "abcd", 4), 0);
        cr_assert_eq(tern_buf_len(&b), 4);
        /* In place: already framed, nothing to add. */
        cr_assert_eq(tern_fixed_codec.encode(st, &b, tern_buf_data(&b), 4), 0);
        cr_assert_eq(tern_buf_len(&b), 4);
        cr_assert_eq(tern_fixed_codec.encode(st, &b, "abcd", 4), 0);
        cr_assert_eq(tern_buf_len(&b), 8);
        /* A slice of the buffer is copied, even when the buffer must grow. */
        for (int i = 0; i < 300; i++)
                cr_assert_eq(tern_fixed_codec.encode(st, &b, tern_buf_data(&b), 4), 0);
        cr_assert_eq(tern_buf_len(&b), 4 * 302);
        for (size_t i = 0; i < 302; i++)
                cr_assert(memcmp(tern_buf_data(&b) + 4 * i, "abcd", 4) == 0);
        tern_fixed_codec.state_free(st);
        tern_buf_free(&b);
}

/* An empty, never-allocated input buffer hands decode a NULL pointer. */
Test(fixed, empty_null_input_needs_more)
{
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        void *st = fixed_new(3);

        cr_assert_eq(tern_fixed_codec.decode(st, NULL, 0, &f), TERN_CODEC_NEED_MORE);
        cr_assert_eq(f.kind, TERN_FRAME_NONE);
        tern_fixed_codec.state_free(st);
}
