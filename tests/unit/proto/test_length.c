#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "guard.h"
#include "length.h"

static void *len_new(const struct tern_length_config *cfg)
{
        void *s = tern_length_codec.state_new(cfg);
        cr_assert_not_null(s, "state_new refused a valid config");
        return s;
}

/* A config with @fl-byte field at offset 0, body length, header stripped. */
static struct tern_length_config len_cfg(unsigned fl, bool le, uint64_t max)
{
        struct tern_length_config c;
        tern_length_config_init(&c);
        c.length_field_length = fl;
        c.little_endian = le;
        c.initial_bytes_to_strip = fl;
        c.max_frame_length = max;
        return c;
}

static ssize_t dec(struct guard *g, void *st, const void *in, size_t len, struct tern_frame *f)
{
        return guard_decode(g, &tern_length_codec, st, in, len, f);
}

static void assert_data(const struct tern_frame *f, const void *want, size_t len)
{
        cr_assert_eq(f->kind, TERN_FRAME_DATA, "kind %d, want DATA", f->kind);
        cr_assert_eq(f->len, len, "frame of %zu bytes, want %zu", f->len, len);
        cr_assert(len == 0 || memcmp(f->data, want, len) == 0, "frame bytes differ");
}

/*
 * Every strict prefix of @in must need more, read from guarded memory: the
 * decoder may look at the header only once it is all there.
 */
static void assert_prefixes_need_more(struct guard *g, void *st, const uint8_t *in, size_t len)
{
        struct tern_frame f;
        for (size_t i = 0; i < len; i++)
                cr_assert_eq(dec(g, st, in, i, &f), TERN_CODEC_NEED_MORE, "prefix %zu of %zu", i,
                             len);
}

Test(length, config_defaults)
{
        struct tern_length_config c;
        memset(&c, 0xa5, sizeof(c));
        tern_length_config_init(&c);
        cr_assert_eq(c.length_field_offset, 0);
        cr_assert_eq(c.length_field_length, 4);
        cr_assert_not(c.little_endian);
        cr_assert_eq(c.length_adjustment, 0);
        cr_assert_eq(c.initial_bytes_to_strip, 4);
        cr_assert_not(c.length_includes_header);
        cr_assert_eq(c.max_frame_length, 1024 * 1024);
        cr_assert_eq(tern_length_config_check(&c), 0);
}

Test(length, config_rejects_bad_values)
{
        struct tern_length_config c;
        static const unsigned bad_fl[] = {0, 5, 6, 7, 9, 16};
        static const unsigned good_fl[] = {1, 2, 3, 4, 8};

        for (size_t i = 0; i < sizeof(bad_fl) / sizeof(bad_fl[0]); i++) {
                tern_length_config_init(&c);
                c.length_field_length = bad_fl[i];
                cr_assert_eq(tern_length_config_check(&c), -EINVAL, "field length %u", bad_fl[i]);
        }
        for (size_t i = 0; i < sizeof(good_fl) / sizeof(good_fl[0]); i++) {
                tern_length_config_init(&c);
                c.length_field_length = good_fl[i];
                cr_assert_eq(tern_length_config_check(&c), 0, "field length %u", good_fl[i]);
        }

        tern_length_config_init(&c);
        c.max_frame_length = 0;
        cr_assert_eq(tern_length_config_check(&c), -EINVAL);
        c.max_frame_length = (uint64_t)TERN_LENGTH_MAX_LIMIT + 1;
        cr_assert_eq(tern_length_config_check(&c), -EINVAL);
        c.max_frame_length = UINT64_MAX;
        cr_assert_eq(tern_length_config_check(&c), -EINVAL);

        /* The header must fit in a frame of max_frame_length. */
        tern_length_config_init(&c);
        c.max_frame_length = 10;
        c.length_field_offset = 6;
        cr_assert_eq(tern_length_config_check(&c), 0);
        c.length_field_offset = 7;
        cr_assert_eq(tern_length_config_check(&c), -EINVAL);
        c.length_field_offset = SIZE_MAX - 1;
        cr_assert_eq(tern_length_config_check(&c), -EINVAL);

        tern_length_config_init(&c);
        c.max_frame_length = 10;
        c.initial_bytes_to_strip = 11;
        cr_assert_eq(tern_length_config_check(&c), -EINVAL);

        errno = 0;
        cr_assert_null(tern_length_codec.state_new(&c));
        cr_assert_eq(errno, EINVAL);
}

Test(length, null_config_means_defaults)
{
        static const uint8_t in[] = {0, 0, 0, 2, 'h', 'i'};
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = len_new(NULL);

        cr_assert_eq(dec(&g, st, in, sizeof(in), &f), 6);
        assert_data(&f, "hi", 2);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

Test(length, field_widths_and_byte_orders)
{
        static const struct {
                unsigned fl;
                bool le;
                uint8_t hdr[8];
        } cases[] = {
            {1, false, {3}},
            {2, false, {0, 3}},
            {2, true, {3, 0}},
            {3, false, {0, 0, 3}},
            {3, true, {3, 0, 0}},
            {4, false, {0, 0, 0, 3}},
            {4, true, {3, 0, 0, 0}},
            {8, false, {0, 0, 0, 0, 0, 0, 0, 3}},
            {8, true, {3, 0, 0, 0, 0, 0, 0, 0}},
        };
        struct guard g = GUARD_INIT;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct tern_length_config c = len_cfg(cases[i].fl, cases[i].le, 64);
                void *st = len_new(&c);
                uint8_t in[16];
                struct tern_frame f;
                size_t fl = cases[i].fl;

                memcpy(in, cases[i].hdr, fl);
                memcpy(in + fl, "abcX", 4);
                assert_prefixes_need_more(&g, st, in, fl + 3);
                cr_assert_eq(dec(&g, st, in, fl + 3, &f), (ssize_t)(fl + 3), "case %zu", i);
                assert_data(&f, "abc", 3);
                cr_assert_eq(dec(&g, st, in, fl + 4, &f), (ssize_t)(fl + 3), "case %zu", i);
                tern_length_codec.state_free(st);
        }
        guard_free(&g);
}

Test(length, multibyte_values_read_in_order)
{
        struct tern_length_config c = len_cfg(2, false, 1024);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        uint8_t in[2 + 0x0102];
        void *st = len_new(&c);

        memset(in, 'z', sizeof(in));
        in[0] = 0x01;
        in[1] = 0x02;
        cr_assert_eq(dec(&g, st, in, sizeof(in), &f), (ssize_t)sizeof(in));
        cr_assert_eq(f.len, 0x0102);
        tern_length_codec.state_free(st);

        c.little_endian = true;
        st = len_new(&c);
        in[0] = 0x02;
        in[1] = 0x01;
        cr_assert_eq(dec(&g, st, in, sizeof(in), &f), (ssize_t)sizeof(in));
        cr_assert_eq(f.len, 0x0102);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

Test(length, zero_length_body)
{
        static const uint8_t in[] = {0, 0, 0, 0};
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = len_new(NULL);

        cr_assert_eq(dec(&g, st, in, 4, &f), 4);
        assert_data(&f, "", 0);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

Test(length, no_strip_keeps_header)
{
        static const uint8_t in[] = {0, 2, 'h', 'i'};
        struct tern_length_config c = len_cfg(2, false, 64);
        struct guard g = GUARD_INIT;
        struct tern_frame f;

        c.initial_bytes_to_strip = 0;
        void *st = len_new(&c);
        cr_assert_eq(dec(&g, st, in, 4, &f), 4);
        assert_data(&f, in, 4);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

Test(length, length_includes_header)
{
        static const uint8_t in[] = {0, 4, 'h', 'i'};
        struct tern_length_config c = len_cfg(2, false, 64);
        struct guard g = GUARD_INIT;
        struct tern_frame f;

        c.length_includes_header = true;
        void *st = len_new(&c);
        assert_prefixes_need_more(&g, st, in, 4);
        cr_assert_eq(dec(&g, st, in, 4, &f), 4);
        assert_data(&f, "hi", 2);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

/* Netty's example: two header bytes before the length, strip all four. */
Test(length, field_after_leading_header)
{
        static const uint8_t in[] = {0xca, 0xfe, 0, 3, 'a', 'b', 'c'};
        struct tern_length_config c = len_cfg(2, false, 64);
        struct guard g = GUARD_INIT;
        struct tern_frame f;

        c.length_field_offset = 2;
        c.initial_bytes_to_strip = 4;
        void *st = len_new(&c);
        assert_prefixes_need_more(&g, st, in, sizeof(in));
        cr_assert_eq(dec(&g, st, in, sizeof(in), &f), 7);
        assert_data(&f, "abc", 3);
        tern_length_codec.state_free(st);

        /* Strip only the leading header byte: the rest of the header stays. */
        c.initial_bytes_to_strip = 1;
        st = len_new(&c);
        cr_assert_eq(dec(&g, st, in, sizeof(in), &f), 7);
        assert_data(&f, in + 1, 6);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

/* Netty's example: the length is followed by two more header bytes. */
Test(length, positive_adjustment)
{
        static const uint8_t in[] = {0, 0, 3, 0xca, 0xfe, 'a', 'b', 'c'};
        struct tern_length_config c = len_cfg(3, false, 64);
        struct guard g = GUARD_INIT;
        struct tern_frame f;

        c.length_adjustment = 2;
        c.initial_bytes_to_strip = 0;
        void *st = len_new(&c);
        assert_prefixes_need_more(&g, st, in, sizeof(in));
        cr_assert_eq(dec(&g, st, in, sizeof(in), &f), 8);
        assert_data(&f, in, 8);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

/* Netty's example: a whole-frame length expressed as an adjustment. */
Test(length, negative_adjustment)
{
        static const uint8_t in[] = {0, 5, 'a', 'b', 'c'};
        struct tern_length_config c = len_cfg(2, false, 64);
        struct guard g = GUARD_INIT;
        struct tern_frame f;

        c.length_adjustment = -2;
        void *st = len_new(&c);
        cr_assert_eq(dec(&g, st, in, sizeof(in), &f), 5);
        assert_data(&f, "abc", 3);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

Test(length, several_frames_in_one_input)
{
        static const uint8_t in[] = {0, 1, 'a', 0, 0, 0, 2, 'b', 'c', 0, 5, 'd'};
        struct tern_length_config c = len_cfg(2, false, 64);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = len_new(&c);
        size_t off = 0;

        cr_assert_eq(dec(&g, st, in + off, sizeof(in) - off, &f), 3);
        assert_data(&f, "a", 1);
        off += 3;
        cr_assert_eq(dec(&g, st, in + off, sizeof(in) - off, &f), 2);
        assert_data(&f, "", 0);
        off += 2;
        cr_assert_eq(dec(&g, st, in + off, sizeof(in) - off, &f), 4);
        assert_data(&f, "bc", 2);
        off += 4;
        cr_assert_eq(dec(&g, st, in + off, sizeof(in) - off, &f), TERN_CODEC_NEED_MORE);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

Test(length, max_boundary_counts_the_header)
{
        uint8_t in[4 + 13];
        struct tern_length_config c = len_cfg(4, false, 16);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = len_new(&c);

        memset(in, 'q', sizeof(in));
        memcpy(in, (uint8_t[]){0, 0, 0, 12}, 4);
        cr_assert_eq(dec(&g, st, in, 16, &f), 16);
        cr_assert_eq(f.len, 12);
        /* max + 1 is refused from the header alone, body not yet there. */
        memcpy(in, (uint8_t[]){0, 0, 0, 13}, 4);
        cr_assert_eq(dec(&g, st, in, 4, &f), TERN_ETOOBIG);
        cr_assert_eq(dec(&g, st, in, 17, &f), TERN_ETOOBIG);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

/*
 * Malformed lengths, each given with only its header present and read from
 * guarded memory: the verdict must come from the header, immediately.
 */
struct bad_case {
        const char *what;
        unsigned fl;
        bool includes_header;
        int64_t adjustment;
        size_t strip;
        uint8_t hdr[8];
        ssize_t want;
};

static void run_bad_cases(const struct bad_case *cases, size_t n)
{
        struct guard g = GUARD_INIT;

        for (size_t i = 0; i < n; i++) {
                struct tern_length_config c = len_cfg(cases[i].fl, false, TERN_LENGTH_DEFAULT_MAX);
                struct tern_frame f;

                c.length_includes_header = cases[i].includes_header;
                c.length_adjustment = cases[i].adjustment;
                c.initial_bytes_to_strip = cases[i].strip;
                void *st = len_new(&c);
                ssize_t r = dec(&g, st, cases[i].hdr, cases[i].fl, &f);
                cr_assert_eq(r, cases[i].want, "%s: got %zd (%s), want %zd", cases[i].what, r,
                             tern_strerror((int)r), cases[i].want);
                cr_assert_eq(f.kind, TERN_FRAME_NONE, "%s", cases[i].what);
                tern_length_codec.state_free(st);
        }
        guard_free(&g);
}

#define FF8                                                                                        \
        {                                                                                          \
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff                                     \
        }

Test(length, huge_and_wrapping_lengths_are_rejected)
{
        static const struct bad_case cases[] = {
            {"u32 max", 4, false, 0, 4, {0xff, 0xff, 0xff, 0xff}, TERN_ETOOBIG},
            {"u32 2^31", 4, false, 0, 4, {0x80, 0, 0, 0}, TERN_ETOOBIG},
            {"u32 max, includes header", 4, true, 0, 4, {0xff, 0xff, 0xff, 0xff}, TERN_ETOOBIG},
            {"u32 max, adjustment -2^32",
             4,
             false,
             -4294967296LL,
             0,
             {0xff, 0xff, 0xff, 0xff},
             TERN_EFRAME},
            {"u64 max", 8, false, 0, 8, FF8, TERN_ETOOBIG},
            {"u64 max - 3: + header wraps",
             8,
             false,
             0,
             8,
             {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc},
             TERN_ETOOBIG},
            {"u64 max, includes header", 8, true, 0, 8, FF8, TERN_ETOOBIG},
            {"u64 max, includes header, - 2^63", 8, true, INT64_MIN, 8, FF8, TERN_ETOOBIG},
            {"u64 max + header - 2^63", 8, false, INT64_MIN, 8, FF8, TERN_ETOOBIG},
            {"2^63", 8, false, 0, 8, {0x80, 0, 0, 0, 0, 0, 0, 0}, TERN_ETOOBIG},
            {"u64 max + INT64_MAX wraps", 8, false, INT64_MAX, 8, FF8, TERN_ETOOBIG},
            {"small + INT64_MAX", 2, false, INT64_MAX, 2, {0, 1}, TERN_ETOOBIG},
        };
        run_bad_cases(cases, sizeof(cases) / sizeof(cases[0]));

        /* 2^63 + header - 2^63 is exactly the header: a valid empty frame. */
        static const uint8_t half[8] = {0x80, 0, 0, 0, 0, 0, 0, 0};
        struct tern_length_config c = len_cfg(8, false, TERN_LENGTH_DEFAULT_MAX);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        c.length_adjustment = INT64_MIN;
        void *st = len_new(&c);
        cr_assert_eq(dec(&g, st, half, 8, &f), 8);
        assert_data(&f, "", 0);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

Test(length, negative_and_short_lengths_are_malformed)
{
        static const struct bad_case cases[] = {
            {"adjusted below zero", 2, false, -10, 0, {0, 3}, TERN_EFRAME},
            {"adjusted far below zero", 2, false, INT64_MIN, 0, {0, 0}, TERN_EFRAME},
            {"includes header, 0", 4, true, 0, 0, {0, 0, 0, 0}, TERN_EFRAME},
            {"includes header, header - 1", 4, true, 0, 0, {0, 0, 0, 3}, TERN_EFRAME},
            {"adjusted inside header", 2, false, -1, 0, {0, 0}, TERN_EFRAME},
            {"strip beyond frame", 2, false, 0, 5, {0, 2}, TERN_EFRAME},
        };
        run_bad_cases(cases, sizeof(cases) / sizeof(cases[0]));

        /* Exactly the header length is a valid empty frame. */
        struct tern_length_config c = len_cfg(4, false, 64);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        c.length_includes_header = true;
        void *st = len_new(&c);
        cr_assert_eq(dec(&g, st, (uint8_t[]){0, 0, 0, 4}, 4, &f), 4);
        assert_data(&f, "", 0);
        tern_length_codec.state_free(st);

        /* Strip equal to the frame is fine too. */
        c = len_cfg(2, false, 64);
        c.initial_bytes_to_strip = 4;
        st = len_new(&c);
        cr_assert_eq(dec(&g, st, (uint8_t[]){0, 2, 'a', 'b'}, 4, &f), 4);
        assert_data(&f, "", 0);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

/* A field at an offset is only read once the bytes before it are there. */
Test(length, truncated_header_with_offset_needs_more)
{
        static const uint8_t in[] = {1, 2, 3, 0xff, 0xff, 0xff, 0xff};
        struct tern_length_config c = len_cfg(4, false, 64);
        struct guard g = GUARD_INIT;
        struct tern_frame f;

        c.length_field_offset = 3;
        void *st = len_new(&c);
        assert_prefixes_need_more(&g, st, in, sizeof(in));
        cr_assert_eq(dec(&g, st, in, sizeof(in), &f), TERN_ETOOBIG);
        tern_length_codec.state_free(st);
        guard_free(&g);
}

static void assert_buf(const struct tern_buf *b, const void *want, size_t len)
{
        cr_assert_eq(tern_buf_len(b), len, "buffer holds %zu bytes, want %zu", tern_buf_len(b),
                     len);
        cr_assert(memcmp(tern_buf_data(b), want, len) == 0, "buffer bytes differ");
}

Test(length, encode_writes_header)
{
        struct tern_buf b = TERN_BUF_INIT;
        void *st = len_new(NULL);

        cr_assert_eq(tern_length_codec.encode(st, &b, "hi", 2), 0);
        cr_assert_eq(tern_length_codec.encode(st, &b, "", 0), 0);
        assert_buf(&b, (uint8_t[]){0, 0, 0, 2, 'h', 'i', 0, 0, 0, 0}, 10);
        tern_length_codec.state_free(st);
        tern_buf_free(&b);

        struct tern_length_config c = len_cfg(3, true, 64);
        st = len_new(&c);
        cr_assert_eq(tern_length_codec.encode(st, &b, "hi", 2), 0);
        assert_buf(&b, (uint8_t[]){2, 0, 0, 'h', 'i'}, 5);
        tern_length_codec.state_free(st);
        tern_buf_free(&b);

        /* Leading header bytes come from the payload. */
        c = len_cfg(2, false, 64);
        c.length_field_offset = 1;
        c.length_includes_header = true;
        st = len_new(&c);
        cr_assert_eq(tern_length_codec.encode(st, &b, "Thi", 3), 0);
        assert_buf(&b, (uint8_t[]){'T', 0, 5, 'h', 'i'}, 5);
        cr_assert_eq(tern_length_codec.encode(st, &b, "", 0), -EINVAL);
        assert_buf(&b, (uint8_t[]){'T', 0, 5, 'h', 'i'}, 5);
        tern_length_codec.state_free(st);
        tern_buf_free(&b);

        c = len_cfg(1, false, 64);
        c.length_adjustment = 2;
        st = len_new(&c);
        cr_assert_eq(tern_length_codec.encode(st, &b, "abc", 3), 0);
        assert_buf(&b, (uint8_t[]){1, 'a', 'b', 'c'}, 4);
        cr_assert_eq(tern_length_codec.encode(st, &b, "a", 1), -EINVAL);
        tern_length_codec.state_free(st);
        tern_buf_free(&b);
}

Test(length, encode_rejects_what_the_field_cannot_hold)
{
        static uint8_t big[65536 + 1];
        struct tern_buf b = TERN_BUF_INIT;
        struct tern_length_config c = len_cfg(1, false, 64);
        void *st = len_new(&c);

        cr_assert_eq(tern_length_codec.encode(st, &b, big, 256), -EMSGSIZE);
        cr_assert(tern_buf_empty(&b), "a refused frame must write nothing");
        cr_assert_eq(tern_length_codec.encode(st, &b, big, 255), 0);
        cr_assert_eq(tern_buf_len(&b), 256);
        cr_assert_eq(tern_buf_data(&b)[0], 255);
        tern_length_codec.state_free(st);
        tern_buf_free(&b);

        c = len_cfg(2, true, 64);
        c.length_includes_header = true;
        st = len_new(&c);
        cr_assert_eq(tern_length_codec.encode(st, &b, big, 65534), -EMSGSIZE);
        cr_assert_eq(tern_length_codec.encode(st, &b, big, 65533), 0);
        cr_assert_eq(tern_buf_data(&b)[0], 0xff);
        cr_assert_eq(tern_buf_data(&b)[1], 0xff);
        tern_length_codec.state_free(st);
        tern_buf_free(&b);

        /* A negative adjustment makes the field larger than the body. */
        c = len_cfg(1, false, 64);
        c.length_adjustment = -1;
        st = len_new(&c);
        cr_assert_eq(tern_length_codec.encode(st, &b, big, 255), -EMSGSIZE);
        cr_assert_eq(tern_length_codec.encode(st, &b, big, 254), 0);
        tern_length_codec.state_free(st);
        tern_buf_free(&b);

        c = len_cfg(8, false, 64);
        c.length_adjustment = INT64_MIN;
        st = len_new(&c);
        cr_assert_eq(tern_length_codec.encode(st, &b, big, 3), 0);
        assert_buf(&b, (uint8_t[]){0x80, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0}, 11);
        tern_length_codec.state_free(st);
        tern_buf_free(&b);
}

Test(length, encode_in_place_uses_prepend_space)
{
        struct tern_buf b = TERN_BUF_INIT;
        void *st = len_new(NULL);

        cr_assert_eq(tern_buf_append(&b, "payload", 7), 0);
        const uint8_t *before = tern_buf_data(&b);
        cr_assert_eq(tern_length_codec.encode(st, &b, tern_buf_data(&b), 7), 0);
        assert_buf(&b, (uint8_t[]){0, 0, 0, 7, 'p', 'a', 'y', 'l', 'o', 'a', 'd'}, 11);
        cr_assert_eq(tern_buf_data(&b) + 4, before, "the payload moved");

        /* A slice of the buffer is copied, even when the buffer must grow. */
        for (int i = 0; i < 10; i++) {
                size_t n = tern_buf_len(&b);
                cr_assert_eq(tern_length_codec.encode(st, &b, tern_buf_data(&b) + 4, 7), 0);
                cr_assert_eq(tern_buf_len(&b), n + 11);
                cr_assert(memcmp(tern_buf_data(&b) + n, tern_buf_data(&b), 11) == 0);
        }
        tern_length_codec.state_free(st);
        tern_buf_free(&b);
}

Test(length, encode_then_decode_round_trip)
{
        struct tern_length_config c = len_cfg(3, true, 4096);
        struct tern_buf b = TERN_BUF_INIT;
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        uint8_t payload[300];
        void *st = len_new(&c);

        for (size_t i = 0; i < sizeof(payload); i++)
                payload[i] = (uint8_t)(i * 7);
        for (size_t n = 0; n < sizeof(payload); n += 37)
                cr_assert_eq(tern_length_codec.encode(st, &b, payload, n), 0);
        for (size_t n = 0; n < sizeof(payload); n += 37) {
                ssize_t r = dec(&g, st, tern_buf_data(&b), tern_buf_len(&b), &f);
                cr_assert_eq(r, (ssize_t)(n + 3));
                assert_data(&f, payload, n);
                tern_buf_consume(&b, (size_t)r);
        }
        cr_assert(tern_buf_empty(&b));
        tern_length_codec.state_free(st);
        tern_buf_free(&b);
        guard_free(&g);
}

/* An empty, never-allocated input buffer hands decode a NULL pointer. */
Test(length, empty_null_input_needs_more)
{
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        void *st = len_new(NULL);

        cr_assert_eq(tern_length_codec.decode(st, NULL, 0, &f), TERN_CODEC_NEED_MORE);
        cr_assert_eq(f.kind, TERN_FRAME_NONE);
        tern_length_codec.state_free(st);
}
