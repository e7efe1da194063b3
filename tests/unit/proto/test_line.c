#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "guard.h"
#include "line.h"

static void *line_new(const struct tern_line_config *cfg)
{
        void *s = tern_line_codec.state_new(cfg);
        cr_assert_not_null(s, "state_new refused a valid config");
        return s;
}

static struct tern_line_config line_cfg(size_t max, enum tern_line_overlong policy)
{
        struct tern_line_config c;
        tern_line_config_init(&c);
        c.max_len = max;
        c.overlong = policy;
        return c;
}

static struct tern_line_config delim_cfg(const char *delim, size_t max,
                                         enum tern_line_overlong policy)
{
        struct tern_line_config c = line_cfg(max, policy);
        cr_assert_eq(tern_line_config_set_delim(&c, delim, strlen(delim)), 0);
        return c;
}

/* One guarded decode of the C string @s. */
static ssize_t dec(struct guard *g, void *st, const char *s, struct tern_frame *f)
{
        return guard_decode(g, &tern_line_codec, st, s, strlen(s), f);
}

static void assert_data(const struct tern_frame *f, const char *want)
{
        cr_assert_eq(f->kind, TERN_FRAME_DATA, "kind %d, want DATA", f->kind);
        cr_assert_eq(f->len, strlen(want), "frame of %zu bytes, want %zu", f->len, strlen(want));
        cr_assert(memcmp(f->data, want, f->len) == 0, "frame %.*s, want %s", (int)f->len,
                  (const char *)f->data, want);
}

Test(line, config_defaults)
{
        struct tern_line_config c;
        memset(&c, 0xa5, sizeof(c));
        tern_line_config_init(&c);
        cr_assert(c.lines);
        cr_assert_eq(c.max_len, 64 * 1024);
        cr_assert_eq(c.overlong, TERN_LINE_OVERLONG_CLOSE);
        cr_assert_not(c.crlf_out);
        cr_assert_eq(tern_line_config_check(&c), 0);
}

Test(line, config_rejects_bad_values)
{
        struct tern_line_config c;

        tern_line_config_init(&c);
        cr_assert_eq(tern_line_config_set_delim(&c, "", 0), -EINVAL);
        cr_assert_eq(tern_line_config_set_delim(&c, "123456789", 9), -EINVAL);
        cr_assert(c.lines, "a refused delimiter must leave the config alone");
        cr_assert_eq(tern_line_config_set_delim(&c, "12345678", 8), 0);
        cr_assert_not(c.lines);
        cr_assert_eq(tern_line_config_check(&c), 0);

        c.delim_len = 0;
        cr_assert_eq(tern_line_config_check(&c), -EINVAL);
        c.delim_len = 9;
        cr_assert_eq(tern_line_config_check(&c), -EINVAL);

        tern_line_config_init(&c);
        c.max_len = 0;
        cr_assert_eq(tern_line_config_check(&c), -EINVAL);
        c.max_len = (size_t)TERN_LINE_MAX_LEN_LIMIT + 1;
        cr_assert_eq(tern_line_config_check(&c), -EINVAL);
        c.max_len = TERN_LINE_MAX_LEN_LIMIT;
        cr_assert_eq(tern_line_config_check(&c), 0);
        c.overlong = (enum tern_line_overlong)7;
        cr_assert_eq(tern_line_config_check(&c), -EINVAL);

        errno = 0;
        cr_assert_null(tern_line_codec.state_new(&c));
        cr_assert_eq(errno, EINVAL);
}

Test(line, null_config_means_defaults)
{
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(NULL);

        cr_assert_eq(dec(&g, st, "hi\r\n", &f), 4);
        assert_data(&f, "hi");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, lf_and_crlf_both_end_a_line)
{
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(NULL);

        cr_assert_eq(dec(&g, st, "hello\n", &f), 6);
        assert_data(&f, "hello");
        cr_assert_eq(dec(&g, st, "hello\r\n", &f), 7);
        assert_data(&f, "hello");
        cr_assert_eq(dec(&g, st, "\n", &f), 1);
        assert_data(&f, "");
        cr_assert_eq(dec(&g, st, "\r\n", &f), 2);
        assert_data(&f, "");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, strips_only_one_cr_right_before_lf)
{
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(NULL);

        cr_assert_eq(dec(&g, st, "a\r\r\n", &f), 4);
        assert_data(&f, "a\r");
        cr_assert_eq(dec(&g, st, "a\rb\n", &f), 4);
        assert_data(&f, "a\rb");
        cr_assert_eq(dec(&g, st, "\r\r\n", &f), 3);
        assert_data(&f, "\r");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, truncated_input_needs_more)
{
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(NULL);

        cr_assert_eq(dec(&g, st, "", &f), TERN_CODEC_NEED_MORE);
        cr_assert_eq(dec(&g, st, "h", &f), TERN_CODEC_NEED_MORE);
        cr_assert_eq(dec(&g, st, "hello", &f), TERN_CODEC_NEED_MORE);
        cr_assert_eq(dec(&g, st, "hello\r", &f), TERN_CODEC_NEED_MORE);
        cr_assert_eq(f.kind, TERN_FRAME_NONE);
        cr_assert_eq(dec(&g, st, "hello\r\n", &f), 7);
        assert_data(&f, "hello");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, several_frames_in_one_input)
{
        static const char in[] = "a\nbb\r\n\nccc\nrest";
        static const char *want[] = {"a", "bb", "", "ccc"};
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(NULL);
        size_t off = 0, n = 0;

        for (;;) {
                ssize_t r = dec(&g, st, in + off, &f);
                cr_assert_geq(r, 0);
                if (r == 0)
                        break;
                cr_assert_lt(n, 4, "too many frames");
                assert_data(&f, want[n++]);
                off += (size_t)r;
        }
        cr_assert_eq(n, 4);
        cr_assert_str_eq(in + off, "rest");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, split_frame_completes_on_later_call)
{
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(NULL);

        cr_assert_eq(dec(&g, st, "hel", &f), 0);
        cr_assert_eq(dec(&g, st, "hello wor", &f), 0);
        cr_assert_eq(dec(&g, st, "hello world\nnext", &f), 12);
        assert_data(&f, "hello world");
        cr_assert_eq(dec(&g, st, "next", &f), 0);
        cr_assert_eq(dec(&g, st, "next\n", &f), 5);
        assert_data(&f, "next");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

/*
 * The decoder must not rescan bytes it already looked at (that makes a line
 * trickling in one byte per read quadratic). Proven by breaking the contract
 * on purpose: a '\n' planted inside the already-scanned prefix is not seen.
 */
Test(line, resumes_scan_where_it_stopped)
{
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(NULL);

        cr_assert_eq(dec(&g, st, "aaaa", &f), 0);
        cr_assert_eq(dec(&g, st, "a\naab\n", &f), 6);
        assert_data(&f, "a\naab");
        /* Consuming resets the offset: the next line is scanned from 0. */
        cr_assert_eq(dec(&g, st, "x\n", &f), 2);
        assert_data(&f, "x");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, resumes_scan_across_delimiter_prefix)
{
        struct tern_line_config c = delim_cfg("abc", 100, TERN_LINE_OVERLONG_CLOSE);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(&c);

        /* "ab" at the end may begin a delimiter: it must be looked at again. */
        cr_assert_eq(dec(&g, st, "xxab", &f), 0);
        cr_assert_eq(dec(&g, st, "xxabc", &f), 5);
        assert_data(&f, "xx");
        cr_assert_eq(dec(&g, st, "xa", &f), 0);
        cr_assert_eq(dec(&g, st, "xab", &f), 0);
        cr_assert_eq(dec(&g, st, "xabab", &f), 0);
        cr_assert_eq(dec(&g, st, "xababc", &f), 6);
        assert_data(&f, "xab");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, shorter_input_than_scanned_is_rescanned)
{
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(NULL);

        cr_assert_eq(dec(&g, st, "abcdefgh", &f), 0);
        /* Contract broken by the caller: still no over-read, still correct. */
        cr_assert_eq(dec(&g, st, "a\n", &f), 2);
        assert_data(&f, "a");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, multibyte_delimiter)
{
        struct tern_line_config c = delim_cfg("||", 100, TERN_LINE_OVERLONG_CLOSE);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(&c);

        cr_assert_eq(dec(&g, st, "ab|", &f), 0);
        cr_assert_eq(dec(&g, st, "ab||cd||", &f), 4);
        assert_data(&f, "ab");
        cr_assert_eq(dec(&g, st, "cd||", &f), 4);
        assert_data(&f, "cd");
        cr_assert_eq(dec(&g, st, "a|b||", &f), 5);
        assert_data(&f, "a|b");
        cr_assert_eq(dec(&g, st, "|||", &f), 2);
        assert_data(&f, "");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, delimiter_with_repeated_prefix)
{
        struct tern_line_config c = delim_cfg("aab", 100, TERN_LINE_OVERLONG_CLOSE);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(&c);

        cr_assert_eq(dec(&g, st, "aaab", &f), 4);
        assert_data(&f, "a");
        cr_assert_eq(dec(&g, st, "aaaaab", &f), 6);
        assert_data(&f, "aaa");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, eight_byte_delimiter)
{
        struct tern_line_config c = delim_cfg("--END--\n", 16, TERN_LINE_OVERLONG_CLOSE);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(&c);

        cr_assert_eq(dec(&g, st, "body--END--", &f), 0);
        cr_assert_eq(dec(&g, st, "body--END--\n", &f), 12);
        assert_data(&f, "body");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, delimiter_mode_strips_nothing)
{
        struct tern_line_config c = delim_cfg("\n", 100, TERN_LINE_OVERLONG_CLOSE);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(&c);

        cr_assert_eq(dec(&g, st, "a\r\n", &f), 3);
        assert_data(&f, "a\r");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, max_boundary_line_mode)
{
        struct tern_line_config c = line_cfg(4, TERN_LINE_OVERLONG_CLOSE);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(&c);

        cr_assert_eq(dec(&g, st, "abcd\n", &f), 5);
        assert_data(&f, "abcd");
        cr_assert_eq(dec(&g, st, "abcd\r\n", &f), 6);
        assert_data(&f, "abcd");
        /* max + 1 bytes without '\n' might still be "abcd\r": wait. */
        cr_assert_eq(dec(&g, st, "abcd\r", &f), 0);
        cr_assert_eq(dec(&g, st, "abcde", &f), 0);
        cr_assert_eq(dec(&g, st, "abcde\n", &f), TERN_ETOOBIG);
        tern_line_codec.state_free(st);

        st = line_new(&c);
        cr_assert_eq(dec(&g, st, "abcd\r\r\n", &f), TERN_ETOOBIG);
        tern_line_codec.state_free(st);

        /* max + 2 bytes and no '\n': too long whatever comes next. */
        st = line_new(&c);
        cr_assert_eq(dec(&g, st, "abcdef", &f), TERN_ETOOBIG);
        tern_line_codec.state_free(st);
        st = line_new(&c);
        cr_assert_eq(dec(&g, st, "abcd\r\r", &f), TERN_ETOOBIG);
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, max_boundary_delimiter_mode)
{
        struct tern_line_config c = delim_cfg("||", 4, TERN_LINE_OVERLONG_CLOSE);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(&c);

        cr_assert_eq(dec(&g, st, "abcd||", &f), 6);
        assert_data(&f, "abcd");
        cr_assert_eq(dec(&g, st, "abcd|", &f), 0);
        cr_assert_eq(dec(&g, st, "abcde||", &f), TERN_ETOOBIG);
        tern_line_codec.state_free(st);

        st = line_new(&c);
        cr_assert_eq(dec(&g, st, "abcde|", &f), TERN_ETOOBIG);
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, overlong_close_after_good_frames)
{
        struct tern_line_config c = line_cfg(3, TERN_LINE_OVERLONG_CLOSE);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(&c);
        const char *in = "ok\nlonger\n";

        cr_assert_eq(dec(&g, st, in, &f), 3);
        assert_data(&f, "ok");
        cr_assert_eq(dec(&g, st, in + 3, &f), TERN_ETOOBIG);
        cr_assert_eq(f.kind, TERN_FRAME_NONE);
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, discard_whole_line_in_one_input)
{
        struct tern_line_config c = line_cfg(4, TERN_LINE_OVERLONG_DISCARD);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(&c);
        const char *in = "abcde\r\nok\n";

        cr_assert_eq(dec(&g, st, in, &f), 7);
        cr_assert_eq(f.kind, TERN_FRAME_OVERSIZED);
        cr_assert_eq(f.dropped, 5);
        cr_assert_eq(dec(&g, st, in + 7, &f), 3);
        assert_data(&f, "ok");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

/*
 * The connection's loop in miniature: the unconsumed bytes stay in @buf,
 * @chunk is appended, decode runs until it needs more. Returns the number of
 * OVERSIZED frames and fills @data with the last DATA frame (NUL-ended).
 */
struct mini_conn {
        char buf[256];
        size_t len;
        size_t max_held; /* largest unconsumed length after need-more */
        uint64_t dropped;
        int oversized;
        int data_frames;
        char last[64];
};

static void mini_feed(struct mini_conn *mc, struct guard *g, void *st, const char *chunk, size_t n)
{
        cr_assert_leq(mc->len + n, sizeof(mc->buf));
        memcpy(mc->buf + mc->len, chunk, n);
        mc->len += n;
        for (;;) {
                struct tern_frame f;
                ssize_t r = guard_decode(g, &tern_line_codec, st, mc->buf, mc->len, &f);
                cr_assert_geq(r, 0, "decode failed: %zd", r);
                if (r == 0)
                        break;
                if (f.kind == TERN_FRAME_OVERSIZED) {
                        mc->oversized++;
                        mc->dropped = f.dropped;
                } else if (f.kind == TERN_FRAME_DATA) {
                        mc->data_frames++;
                        cr_assert_lt(f.len, sizeof(mc->last));
                        memcpy(mc->last, f.data, f.len);
                        mc->last[f.len] = '\0';
                }
                memmove(mc->buf, mc->buf + r, mc->len - (size_t)r);
                mc->len -= (size_t)r;
        }
        if (mc->len > mc->max_held)
                mc->max_held = mc->len;
}

Test(line, discard_across_many_calls)
{
        struct tern_line_config c = line_cfg(8, TERN_LINE_OVERLONG_DISCARD);
        struct guard g = GUARD_INIT;
        struct mini_conn mc = {0};
        void *st = line_new(&c);

        mini_feed(&mc, &g, st, "ok\n", 3);
        cr_assert_eq(mc.data_frames, 1);
        /* 1000 bytes of one line, one byte per read, some of them '\r'. */
        for (int i = 0; i < 1000; i++)
                mini_feed(&mc, &g, st, i % 7 == 3 ? "\r" : "x", 1);
        cr_assert_eq(mc.oversized, 0, "reported before the line ended");
        cr_assert_eq(mc.data_frames, 1, "bytes of an overlong line delivered");
        cr_assert_leq(mc.max_held, 8 + 2, "held %zu bytes of an overlong line", mc.max_held);
        mini_feed(&mc, &g, st, "\r", 1);
        mini_feed(&mc, &g, st, "\n", 1);
        cr_assert_eq(mc.oversized, 1);
        cr_assert_eq(mc.dropped, 1000, "dropped %llu", (unsigned long long)mc.dropped);
        cr_assert_eq(mc.len, 0);
        mini_feed(&mc, &g, st, "after\n", 6);
        cr_assert_eq(mc.data_frames, 2);
        cr_assert_str_eq(mc.last, "after");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, discard_counts_line_without_delimiter)
{
        struct tern_line_config c = delim_cfg("<>", 3, TERN_LINE_OVERLONG_DISCARD);
        struct guard g = GUARD_INIT;
        struct mini_conn mc = {0};
        void *st = line_new(&c);

        mini_feed(&mc, &g, st, "abcdefg<", 8);
        cr_assert_eq(mc.oversized, 0);
        cr_assert_leq(mc.max_held, 3 + 2);
        mini_feed(&mc, &g, st, "<", 1);
        mini_feed(&mc, &g, st, ">", 1);
        cr_assert_eq(mc.oversized, 1);
        cr_assert_eq(mc.dropped, 8, "dropped %llu", (unsigned long long)mc.dropped);
        mini_feed(&mc, &g, st, "abc<>", 5);
        cr_assert_eq(mc.data_frames, 1);
        cr_assert_str_eq(mc.last, "abc");
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, discard_boundary_exactly_max_is_data)
{
        struct tern_line_config c = line_cfg(4, TERN_LINE_OVERLONG_DISCARD);
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(&c);

        cr_assert_eq(dec(&g, st, "abcd\r\n", &f), 6);
        assert_data(&f, "abcd");
        cr_assert_eq(dec(&g, st, "abcde\n", &f), 6);
        cr_assert_eq(f.kind, TERN_FRAME_OVERSIZED);
        cr_assert_eq(f.dropped, 5);
        /* max + 2 without '\n': discarding starts, consuming with no frame. */
        ssize_t r = dec(&g, st, "abcdef", &f);
        cr_assert_gt(r, 0);
        cr_assert_eq(f.kind, TERN_FRAME_NONE);
        tern_line_codec.state_free(st);
        guard_free(&g);
}

Test(line, encode_appends_delimiter)
{
        struct tern_line_config c;
        struct tern_buf b = TERN_BUF_INIT;
        void *st;

        tern_line_config_init(&c);
        st = line_new(&c);
        cr_assert_eq(tern_line_codec.encode(st, &b, "hi", 2), 0);
        cr_assert_eq(tern_line_codec.encode(st, &b, "", 0), 0);
        cr_assert_eq(tern_buf_len(&b), 4);
        cr_assert(memcmp(tern_buf_data(&b), "hi\n\n", 4) == 0);
        tern_line_codec.state_free(st);
        tern_buf_free(&b);

        c.crlf_out = true;
        st = line_new(&c);
        cr_assert_eq(tern_line_codec.encode(st, &b, "hi", 2), 0);
        cr_assert_eq(tern_buf_len(&b), 4);
        cr_assert(memcmp(tern_buf_data(&b), "hi\r\n", 4) == 0);
        tern_line_codec.state_free(st);
        tern_buf_free(&b);

        c = delim_cfg("<>", 10, TERN_LINE_OVERLONG_CLOSE);
        c.crlf_out = true; /* ignored outside line mode */
        st = line_new(&c);
        cr_assert_eq(tern_line_codec.encode(st, &b, "hi", 2), 0);
        cr_assert_eq(tern_buf_len(&b), 4);
        cr_assert(memcmp(tern_buf_data(&b), "hi<>", 4) == 0);
        tern_line_codec.state_free(st);
        tern_buf_free(&b);
}

Test(line, encode_payload_already_in_buffer)
{
        struct tern_buf b = TERN_BUF_INIT;
        void *st = line_new(NULL);

        /* In place: the payload is the buffer's readable bytes. */
        cr_assert_eq(tern_buf_append(&b, "hello", 5), 0);
        cr_assert_eq(tern_line_codec.encode(st, &b, tern_buf_data(&b), 5), 0);
        cr_assert_eq(tern_buf_len(&b), 6);
        cr_assert(memcmp(tern_buf_data(&b), "hello\n", 6) == 0);

        /* A slice of the buffer, with enough appended to force a move. */
        cr_assert_eq(tern_line_codec.encode(st, &b, tern_buf_data(&b) + 1, 3), 0);
        cr_assert(memcmp(tern_buf_data(&b), "hello\nell\n", 10) == 0);
        for (int i = 0; i < 12; i++) {
                size_t n = tern_buf_len(&b);
                cr_assert_eq(tern_line_codec.encode(st, &b, tern_buf_data(&b), n), 0);
                cr_assert_eq(tern_buf_len(&b), n + 1);
        }
        cr_assert(memcmp(tern_buf_data(&b), "hello\nell\n\n", 11) == 0);
        tern_line_codec.state_free(st);
        tern_buf_free(&b);
}

Test(line, encode_then_decode_round_trip)
{
        struct tern_line_config c = delim_cfg("\r\n.\r\n", 64, TERN_LINE_OVERLONG_CLOSE);
        struct tern_buf b = TERN_BUF_INIT;
        struct guard g = GUARD_INIT;
        struct tern_frame f;
        void *st = line_new(&c);
        static const char *msgs[] = {"one", "", "three\r\n", "x.\r", "\r\n.\r"};

        for (int i = 0; i < 5; i++)
                cr_assert_eq(tern_line_codec.encode(st, &b, msgs[i], strlen(msgs[i])), 0);
        for (int i = 0; i < 5; i++) {
                ssize_t r =
                    guard_decode(&g, &tern_line_codec, st, tern_buf_data(&b), tern_buf_len(&b), &f);
                cr_assert_gt(r, 0);
                assert_data(&f, msgs[i]);
                tern_buf_consume(&b, (size_t)r);
        }
        cr_assert(tern_buf_empty(&b));
        tern_line_codec.state_free(st);
        tern_buf_free(&b);
        guard_free(&g);
}

/* An empty, never-allocated input buffer hands decode a NULL pointer. */
Test(line, empty_null_input_needs_more)
{
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        void *st = line_new(NULL);

        cr_assert_eq(tern_line_codec.decode(st, NULL, 0, &f), TERN_CODEC_NEED_MORE);
        cr_assert_eq(f.kind, TERN_FRAME_NONE);
        tern_line_codec.state_free(st);
}
