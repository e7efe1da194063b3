#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "guard.h"
#include "resp.h"

static struct tern_resp_config small_cfg(size_t bulk, uint32_t args, size_t line, size_t frame)
{
        struct tern_resp_config c;
        tern_resp_config_init(&c);
        c.max_bulk = bulk;
        c.max_args = args;
        c.max_inline = line;
        c.max_frame = frame;
        return c;
}

static void state_with(struct tern_resp_state *s, const struct tern_resp_config *c)
{
        cr_assert_eq(tern_resp_state_init(s, c), 0, "a valid config was refused");
}

/* One guarded decode of @len bytes of @src. */
static ssize_t dec(struct guard *g, struct tern_resp_state *s, const void *src, size_t len,
                   struct tern_frame *f)
{
        return guard_decode(g, &tern_resp_codec, s, src, len, f);
}

static ssize_t decs(struct guard *g, struct tern_resp_state *s, const char *src,
                    struct tern_frame *f)
{
        return dec(g, s, src, strlen(src), f);
}

/* Asserts that @f splits into exactly the NULL-terminated @want. */
static void assert_args(const struct tern_frame *f, const char *const *want)
{
        struct tern_resp_arg argv[16];
        int n = 0;
        while (want[n])
                n++;
        int argc = tern_resp_args(f, argv, 16);
        cr_assert_eq(argc, n, "%d arguments, want %d", argc, n);
        for (int i = 0; i < n; i++) {
                cr_assert_eq(argv[i].len, strlen(want[i]), "argument %d has %zu bytes, want %zu", i,
                             argv[i].len, strlen(want[i]));
                cr_assert(memcmp(argv[i].data, want[i], argv[i].len) == 0,
                          "argument %d is '%.*s', want '%s'", i, (int)argv[i].len,
                          (const char *)argv[i].data, want[i]);
        }
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

Test(resp, config_defaults_and_ranges)
{
        struct tern_resp_config c;
        memset(&c, 0xa5, sizeof(c));
        tern_resp_config_init(&c);
        cr_assert_eq(c.max_bulk, 1u << 20);
        cr_assert_eq(c.max_args, 1024);
        cr_assert_eq(c.max_inline, 64u << 10);
        cr_assert_eq(c.max_frame, 8u << 20);
        cr_assert_eq(tern_resp_config_check(&c), 0);

        struct tern_resp_config bad[] = {
            small_cfg(0, 8, 64, 64), small_cfg(TERN_RESP_MAX_BULK_LIMIT + 1, 8, 64, 64),
            small_cfg(8, 0, 64, 64), small_cfg(8, TERN_RESP_MAX_ARGS_LIMIT + 1, 64, 64),
            small_cfg(8, 8, 0, 64),  small_cfg(8, 8, TERN_RESP_MAX_SIZE_LIMIT + 1, 64),
            small_cfg(8, 8, 64, 15), small_cfg(8, 8, 64, TERN_RESP_MAX_SIZE_LIMIT + 1),
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct tern_resp_state s;
                cr_assert_eq(tern_resp_config_check(&bad[i]), -EINVAL, "config %zu accepted", i);
                cr_assert_eq(tern_resp_state_init(&s, &bad[i]), -EINVAL);
                errno = 0;
                cr_assert_null(tern_resp_codec.state_new(&bad[i]));
                cr_assert_eq(errno, EINVAL);
        }
        struct tern_resp_config edge = small_cfg(1, 1, 1, 16);
        cr_assert_eq(tern_resp_config_check(&edge), 0);

        void *st = tern_resp_codec.state_new(NULL);
        cr_assert_not_null(st, "NULL must mean the defaults");
        cr_assert_eq(((struct tern_resp_state *)st)->cfg.max_args, 1024);
        tern_resp_codec.state_free(st);
}

Test(resp, array_command)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;
        const char *cmd = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";

        state_with(&s, NULL);
        cr_assert_eq(decs(&g, &s, cmd, &f), (ssize_t)strlen(cmd));
        cr_assert_eq(f.kind, TERN_FRAME_DATA);
        cr_assert_eq(f.len, strlen(cmd), "an array frame is the whole command");
        assert_args(&f, ARGS("SET", "key", "value"));
        cr_assert_null(tern_resp_error_reason(&s));
        guard_free(&g);
}

Test(resp, bulk_strings_are_binary_safe)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;
        /* CR, LF, NUL and '$' inside data, and an empty argument. */
        static const char cmd[] = "*3\r\n$4\r\n\r\n\0$\r\n$0\r\n\r\n$2\r\n*1\r\n";
        size_t len = sizeof(cmd) - 1;

        state_with(&s, NULL);
        cr_assert_eq(dec(&g, &s, cmd, len, &f), (ssize_t)len);
        struct tern_resp_arg argv[3];
        cr_assert_eq(tern_resp_args(&f, argv, 3), 3);
        cr_assert_eq(argv[0].len, 4);
        cr_assert(memcmp(argv[0].data, "\r\n\0$", 4) == 0);
        cr_assert_eq(argv[1].len, 0);
        cr_assert_eq(argv[2].len, 2);
        cr_assert(memcmp(argv[2].data, "*1", 2) == 0);
        /* Arguments point into the frame: nothing was copied. */
        cr_assert(argv[0].data > f.data && argv[2].data + 2 < f.data + f.len);
        guard_free(&g);
}

Test(resp, inline_commands)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;

        state_with(&s, NULL);
        cr_assert_eq(decs(&g, &s, "PING\r\n", &f), 6);
        cr_assert_eq(f.kind, TERN_FRAME_DATA);
        cr_assert_eq(f.len, 4, "an inline frame excludes its terminator");
        assert_args(&f, ARGS("PING"));

        cr_assert_eq(decs(&g, &s, "set  a\tb \n", &f), 10, "LF alone ends a line too");
        assert_args(&f, ARGS("set", "a", "b"));

        /* Only one CR before the LF is the terminator's. */
        cr_assert_eq(decs(&g, &s, "ECHO x\r\r\n", &f), 9);
        assert_args(&f, ARGS("ECHO", "x\r"));

        /* A '$' line at top level is not a bulk: it is an inline command. */
        cr_assert_eq(decs(&g, &s, "$3\r\nabc\r\n", &f), 4);
        assert_args(&f, ARGS("$3"));
        guard_free(&g);
}

Test(resp, empty_commands_consume_without_frames)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;
        const char *empty[] = {"\r\n", "\n", " \t \r\n", "*0\r\n"};

        state_with(&s, NULL);
        for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
                cr_assert_eq(decs(&g, &s, empty[i], &f), (ssize_t)strlen(empty[i]),
                             "empty command %zu not consumed", i);
                cr_assert_eq(f.kind, TERN_FRAME_NONE, "empty command %zu made a frame", i);
        }
        guard_free(&g);
}

Test(resp, need_more_until_complete)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;
        const char *cmd = "*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n";
        size_t len = strlen(cmd);

        state_with(&s, NULL);
        for (size_t i = 1; i < len; i++)
                cr_assert_eq(dec(&g, &s, cmd, i, &f), TERN_CODEC_NEED_MORE,
                             "prefix of %zu bytes was not 'need more'", i);
        cr_assert_eq(dec(&g, &s, cmd, len, &f), (ssize_t)len);
        assert_args(&f, ARGS("ECHO", "hello world"));
        cr_assert_eq(dec(&g, &s, cmd, 0, &f), TERN_CODEC_NEED_MORE);
        guard_free(&g);
}

struct malformed {
        const char *in;
        size_t len; /* 0: strlen(in) */
        ssize_t err;
        const char *why;
};

static const struct malformed malformed_cases[] = {
    {"*-1\r\n", 0, TERN_EFRAME, "invalid multibulk length"},
    {"*-0\r\n", 0, TERN_EFRAME, "invalid multibulk length"},
    {"*+1\r\n", 0, TERN_EFRAME, "invalid multibulk length"},
    {"*\r\n", 0, TERN_EFRAME, "invalid multibulk length"},
    {"* 1\r\n", 0, TERN_EFRAME, "invalid multibulk length"},
    {"*1 \r\n", 0, TERN_EFRAME, "invalid multibulk length"},
    {"*01\r\n", 0, TERN_EFRAME, "invalid multibulk length"},
    {"*00\r\n", 0, TERN_EFRAME, "invalid multibulk length"},
    {"*1\n$1\r\na\r\n", 0, TERN_EFRAME, "invalid multibulk length"},
    {"*1\r\r", 0, TERN_EFRAME, "invalid multibulk length"},
    {"*x\r\n", 0, TERN_EFRAME, "invalid multibulk length"},
    {"*99999999999999999999\r\n", 0, TERN_ETOOBIG, "too many arguments"},
    {"*18446744073709551617\r\n", 0, TERN_ETOOBIG, "too many arguments"},
    {"*1025\r\n", 0, TERN_ETOOBIG, "too many arguments"},
    {"*1\r\n$-5\r\n", 0, TERN_EFRAME, "invalid bulk length"},
    {"*1\r\n$-1\r\n", 0, TERN_EFRAME, "invalid bulk length"},
    {"*1\r\n$\r\n", 0, TERN_EFRAME, "invalid bulk length"},
    {"*1\r\n$+3\r\nabc\r\n", 0, TERN_EFRAME, "invalid bulk length"},
    {"*1\r\n$03\r\nabc\r\n", 0, TERN_EFRAME, "invalid bulk length"},
    {"*1\r\n$3x\r\nabc\r\n", 0, TERN_EFRAME, "invalid bulk length"},
    {"*1\r\n$3\nabc\r\n", 0, TERN_EFRAME, "invalid bulk length"},
    {"*1\r\n$1048577\r\n", 0, TERN_ETOOBIG, "bulk length over the limit"},
    {"*1\r\n$99999999999999999999999\r\n", 0, TERN_ETOOBIG, "bulk length over the limit"},
    {"*1\r\n$3\r\nabcX\n", 0, TERN_EFRAME, "missing CRLF after bulk data"},
    {"*1\r\n$3\r\nabc\r\r", 0, TERN_EFRAME, "missing CRLF after bulk data"},
    {"*1\r\n$3\r\nab\r\n\r\n", 0, TERN_EFRAME, "missing CRLF after bulk data"},
    {"*1\r\n$0\r\nx\r\n", 0, TERN_EFRAME, "missing CRLF after bulk data"},
    {"*1\r\n:1\r\n", 0, TERN_EFRAME, "expected '$'"},
    {"*1\r\n+OK\r\n", 0, TERN_EFRAME, "expected '$'"},
    {"*1\r\n*1\r\n$1\r\na\r\n", 0, TERN_EFRAME, "expected '$'"},
    {"*2\r\n$1\r\na\r\nb\r\n", 0, TERN_EFRAME, "expected '$'"},
};

/* Each malformed input gives its error whole and when it trickles in. */
Test(resp, malformed_inputs)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;

        for (size_t i = 0; i < sizeof(malformed_cases) / sizeof(malformed_cases[0]); i++) {
                const struct malformed *m = &malformed_cases[i];
                size_t len = m->len ? m->len : strlen(m->in);

                state_with(&s, NULL);
                ssize_t r = dec(&g, &s, m->in, len, &f);
                cr_assert_eq(r, m->err, "case %zu (%s): got %zd", i, m->in, r);
                cr_assert_str_eq(tern_resp_error_reason(&s), m->why, "case %zu reason", i);

                state_with(&s, NULL);
                r = TERN_CODEC_NEED_MORE;
                size_t k = 1;
                for (; k <= len && r == TERN_CODEC_NEED_MORE; k++)
                        r = dec(&g, &s, m->in, k, &f);
                cr_assert_eq(r, m->err, "case %zu byte by byte: got %zd at %zu bytes", i, r, k - 1);
        }
        guard_free(&g);
}

/* A bad number is refused as soon as its digits say so, not when its CRLF
 * (or the bytes it announces) arrive. */
Test(resp, limits_refused_before_the_bytes_arrive)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;

        state_with(&s, NULL);
        cr_assert_eq(decs(&g, &s, "*99999", &f), TERN_ETOOBIG);
        state_with(&s, NULL);
        cr_assert_eq(decs(&g, &s, "*1\r\n$2000000", &f), TERN_ETOOBIG);
        state_with(&s, NULL);
        cr_assert_eq(decs(&g, &s, "*-", &f), TERN_EFRAME);
        state_with(&s, NULL);
        cr_assert_eq(decs(&g, &s, "*1\r\n$0", &f), TERN_CODEC_NEED_MORE);
        cr_assert_eq(decs(&g, &s, "*1\r\n$01", &f), TERN_EFRAME);

        /* A bulk of the maximum size is announced in 13 bytes: the decoder
         * waits for it without having reserved anything for it. */
        state_with(&s, NULL);
        cr_assert_eq(decs(&g, &s, "*1\r\n$1048576\r\n", &f), TERN_CODEC_NEED_MORE);
        cr_assert(s.in_bulk);
        guard_free(&g);
}

Test(resp, limits_exact_boundaries)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;
        struct tern_resp_config c = small_cfg(5, 3, 10, 64);

        /* max_bulk = 5 */
        state_with(&s, &c);
        cr_assert_eq(decs(&g, &s, "*1\r\n$5\r\nabcde\r\n", &f), 15);
        cr_assert_eq(decs(&g, &s, "*1\r\n$6\r\n", &f), TERN_ETOOBIG);
        /* max_args = 3 */
        state_with(&s, &c);
        cr_assert_eq(decs(&g, &s, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", &f), 25);
        cr_assert_eq(decs(&g, &s, "*4\r\n", &f), TERN_ETOOBIG);
        state_with(&s, &c);
        cr_assert_eq(decs(&g, &s, "a b c\r\n", &f), 7);
        cr_assert_eq(decs(&g, &s, "a b c d\r\n", &f), TERN_ETOOBIG);
        cr_assert_str_eq(tern_resp_error_reason(&s), "too many arguments");
        /* max_inline = 10, terminator excluded, with CRLF or LF */
        state_with(&s, &c);
        cr_assert_eq(decs(&g, &s, "0123456789\r\n", &f), 12);
        cr_assert_eq(f.len, 10);
        cr_assert_eq(decs(&g, &s, "0123456789\n", &f), 11);
        cr_assert_eq(decs(&g, &s, "0123456789A\n", &f), TERN_ETOOBIG);
        guard_free(&g);
}

/* An inline line is refused once max_inline + 2 bytes hold no '\n': no
 * terminator can make them a line of max_inline. */
Test(resp, inline_overlong_verdict)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;
        struct tern_resp_config c = small_cfg(5, 3, 10, 64);

        state_with(&s, &c);
        cr_assert_eq(decs(&g, &s, "0123456789AB", &f), TERN_ETOOBIG,
                     "12 bytes without LF cannot be a line of 10");
        cr_assert_str_eq(tern_resp_error_reason(&s), "too big inline request");
        state_with(&s, &c);
        cr_assert_eq(decs(&g, &s, "0123456789A\r\n", &f), TERN_ETOOBIG);
        guard_free(&g);
}

Test(resp, max_frame_bounds_a_command)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;
        /* "*2\r\n$5\r\nabcde\r\n$5\r\nfghij\r\n" is 26 bytes. */
        const char *cmd = "*2\r\n$5\r\nabcde\r\n$5\r\nfghij\r\n";
        struct tern_resp_config fits = small_cfg(64, 8, 64, 26);
        struct tern_resp_config tight = small_cfg(64, 8, 64, 25);

        state_with(&s, &fits);
        cr_assert_eq(decs(&g, &s, cmd, &f), 26);
        state_with(&s, &tight);
        cr_assert_eq(decs(&g, &s, "*2\r\n$5\r\nabcde\r\n$5\r\n", &f), TERN_ETOOBIG);
        cr_assert_str_eq(tern_resp_error_reason(&s), "command over the size limit");
        /* Known too big from the count alone: 3 elements need 18 bytes more. */
        struct tern_resp_config tiny = small_cfg(64, 8, 64, 16);
        state_with(&s, &tiny);
        cr_assert_eq(decs(&g, &s, "*3\r\n", &f), TERN_ETOOBIG);
        state_with(&s, &tiny);
        cr_assert_eq(decs(&g, &s, "*2\r\n", &f), TERN_CODEC_NEED_MORE);
        /* Holding max_frame bytes of an unfinished command is enough to
         * know, even in the middle of a header. */
        struct tern_resp_config tiny_big = small_cfg(1u << 20, 8, 64, 16);
        state_with(&s, &tiny_big);
        cr_assert_eq(decs(&g, &s, "*2\r\n$0\r\n\r\n$1234", &f), TERN_CODEC_NEED_MORE);
        cr_assert_eq(decs(&g, &s, "*2\r\n$0\r\n\r\n$12345", &f), TERN_ETOOBIG);
        guard_free(&g);
}

/* ---- streams: pipelines and splits ---- */

/* Frames of one run, serialised (length, bytes) for comparison. */
struct run_log {
        uint8_t *p;
        size_t len, cap;
        int frames;
        ssize_t err;
};

static void log_put(struct run_log *l, const void *d, size_t n)
{
        if (l->len + n > l->cap) {
                l->cap = (l->len + n) * 2 + 64;
                l->p = realloc(l->p, l->cap);
                cr_assert_not_null(l->p);
        }
        memcpy(l->p + l->len, d, n);
        l->len += n;
}

/* Logs a frame as its argument vector, so array and inline compare alike. */
static void log_frame(struct run_log *l, const struct tern_frame *f)
{
        struct tern_resp_arg argv[64];
        int argc = tern_resp_args(f, argv, 64);
        cr_assert(argc > 0 && argc <= 64, "frame %d: %d arguments", l->frames, argc);
        log_put(l, &argc, sizeof(argc));
        for (int i = 0; i < argc; i++) {
                log_put(l, &argv[i].len, sizeof(argv[i].len));
                log_put(l, argv[i].data, argv[i].len);
        }
        l->frames++;
}

/*
 * Feeds @stream to a fresh decoder in chunks ending at @cuts (ascending,
 * the last one == len), the way a connection does: after each read every
 * unconsumed byte is presented again, from a new address.
 */
static void run_stream(const struct tern_resp_config *c, const uint8_t *stream, size_t len,
                       const size_t *cuts, size_t ncuts, struct run_log *log)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        size_t off = 0;

        state_with(&s, c);
        memset(log, 0, sizeof(*log));
        for (size_t k = 0; k < ncuts && !log->err; k++) {
                for (;;) {
                        struct tern_frame f;
                        size_t have = cuts[k] - off;
                        if (have == 0)
                                break;
                        ssize_t r = dec(&g, &s, stream + off, have, &f);
                        if (r < 0) {
                                log->err = r;
                                break;
                        }
                        if (r == 0)
                                break;
                        if (f.kind == TERN_FRAME_DATA)
                                log_frame(log, &f);
                        off += (size_t)r;
                }
        }
        guard_free(&g);
}

static void assert_same_run(const struct run_log *a, const struct run_log *b, const char *what)
{
        cr_assert_eq(a->err, b->err, "%s: error %zd vs %zd", what, a->err, b->err);
        cr_assert_eq(a->frames, b->frames, "%s: %d frames vs %d", what, a->frames, b->frames);
        cr_assert_eq(a->len, b->len, "%s: frames differ in size", what);
        cr_assert(a->len == 0 || memcmp(a->p, b->p, a->len) == 0, "%s: frames differ", what);
}

static const char mixed_stream[] = "*1\r\n$4\r\nPING\r\n"
                                   "PING\r\n"
                                   "\r\n"
                                   "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123\r\n6789\r\n"
                                   "*0\r\n"
                                   "get key\n"
                                   "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"
                                   "  mget\ta  b\t\r\n"
                                   "*2\r\n$3\r\nDEL\r\n$3\r\nkey\r\n";

Test(resp, pipeline_of_mixed_commands)
{
        struct run_log whole;
        size_t len = sizeof(mixed_stream) - 1;
        size_t cut = len;

        run_stream(NULL, (const uint8_t *)mixed_stream, len, &cut, 1, &whole);
        cr_assert_eq(whole.err, 0);
        cr_assert_eq(whole.frames, 7);
        free(whole.p);
}

Test(resp, split_at_every_byte_position)
{
        struct run_log whole, split;
        size_t len = sizeof(mixed_stream) - 1;
        const uint8_t *st = (const uint8_t *)mixed_stream;
        size_t cut = len;

        run_stream(NULL, st, len, &cut, 1, &whole);
        for (size_t i = 1; i < len; i++) {
                size_t cuts[2] = {i, len};
                run_stream(NULL, st, len, cuts, 2, &split);
                char what[32];
                snprintf(what, sizeof(what), "split at %zu", i);
                assert_same_run(&whole, &split, what);
                free(split.p);
        }

        size_t *bytes = malloc(len * sizeof(*bytes));
        for (size_t i = 0; i < len; i++)
                bytes[i] = i + 1;
        run_stream(NULL, st, len, bytes, len, &split);
        assert_same_run(&whole, &split, "byte by byte");
        free(split.p);
        free(bytes);
        free(whole.p);
}

/* xorshift64*: reproducible pseudo-random numbers for the property tests. */
static uint64_t rnd(uint64_t *s)
{
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        return *s * 0x2545F4914F6CDD1DULL;
}

/* Appends a random command (array or inline) to @b. */
static void random_command(struct tern_buf *b, uint64_t *seed)
{
        int argc = 1 + (int)(rnd(seed) % 5);
        bool inl = rnd(seed) % 3 == 0;
        char tmp[32];

        if (!inl) {
                int n = snprintf(tmp, sizeof(tmp), "*%d\r\n", argc);
                tern_buf_append(b, tmp, (size_t)n);
        }
        for (int i = 0; i < argc; i++) {
                size_t alen = 1 + rnd(seed) % 40;
                uint8_t arg[64];
                for (size_t j = 0; j < alen; j++) {
                        /* Inline arguments cannot hold blanks or line ends. */
                        arg[j] = inl ? (uint8_t)('a' + rnd(seed) % 26) : (uint8_t)rnd(seed);
                }
                if (inl) {
                        if (i)
                                tern_buf_append(b, " ", 1);
                        tern_buf_append(b, arg, alen);
                } else {
                        cr_assert_eq(tern_resp_put_bulk(b, arg, alen), 0);
                }
        }
        if (inl) {
                bool crlf = rnd(seed) % 2;
                tern_buf_append(b, crlf ? "\r\n" : "\n", crlf ? 2 : 1);
        }
}

Test(resp, random_splits_give_the_same_frames)
{
        uint64_t seed = 0x9e3779b97f4a7c15ULL;

        for (int iter = 0; iter < 200; iter++) {
                struct tern_buf b = TERN_BUF_INIT;
                int ncmd = 1 + (int)(rnd(&seed) % 30);
                for (int i = 0; i < ncmd; i++)
                        random_command(&b, &seed);
                const uint8_t *st = tern_buf_data(&b);
                size_t len = tern_buf_len(&b);

                struct run_log whole, split;
                size_t cut = len;
                run_stream(NULL, st, len, &cut, 1, &whole);
                cr_assert_eq(whole.err, 0, "iteration %d: error %zd", iter, whole.err);

                size_t cuts[512], n = 0, at = 0;
                while (at < len && n < 511) {
                        at += 1 + rnd(&seed) % 48;
                        cuts[n++] = at < len ? at : len;
                }
                if (cuts[n - 1] != len)
                        cuts[n++] = len;
                run_stream(NULL, st, len, cuts, n, &split);
                char what[32];
                snprintf(what, sizeof(what), "iteration %d", iter);
                assert_same_run(&whole, &split, what);
                free(whole.p);
                free(split.p);
                tern_buf_free(&b);
        }
}

/* A malformed command after good ones: the good ones are still delivered,
 * and the error is the same however the bytes arrive. */
Test(resp, error_after_good_commands_whatever_the_split)
{
        static const char st[] = "*1\r\n$4\r\nPING\r\nPING\r\n*1\r\n$-3\r\n";
        size_t len = sizeof(st) - 1;
        struct run_log whole, split;
        size_t cut = len;

        run_stream(NULL, (const uint8_t *)st, len, &cut, 1, &whole);
        cr_assert_eq(whole.frames, 2);
        cr_assert_eq(whole.err, TERN_EFRAME);
        for (size_t i = 1; i < len; i++) {
                size_t cuts[2] = {i, len};
                run_stream(NULL, (const uint8_t *)st, len, cuts, 2, &split);
                assert_same_run(&whole, &split, "split");
                free(split.p);
        }
        free(whole.p);
}

/* White box: progress through a trickling command is remembered, so each
 * byte is examined a bounded number of times (no quadratic rescans). */
Test(resp, trickling_input_is_not_rescanned)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;
        size_t n = 5000;
        char *line = malloc(n + 2);
        memset(line, 'x', n);
        line[n] = '\r';
        line[n + 1] = '\n';

        state_with(&s, NULL);
        for (size_t i = 1; i <= n; i++) {
                cr_assert_eq(dec(&g, &s, line, i, &f), TERN_CODEC_NEED_MORE);
                cr_assert_eq(s.scanned, i, "inline scan restarted at %zu bytes", i);
        }
        cr_assert_eq(dec(&g, &s, line, n + 2, &f), (ssize_t)(n + 2));
        cr_assert_eq(f.len, n);
        free(line);

        const char *head = "*2\r\n$3\r\nSET\r\n$5000\r\n";
        size_t hl = strlen(head), total = hl + n + 2;
        char *cmd = malloc(total);
        memcpy(cmd, head, hl);
        memset(cmd + hl, 'v', n);
        memcpy(cmd + hl + n, "\r\n", 2);
        state_with(&s, NULL);
        for (size_t i = hl; i < total; i++) {
                cr_assert_eq(dec(&g, &s, cmd, i, &f), TERN_CODEC_NEED_MORE);
                cr_assert(s.in_bulk && s.argi == 1 && s.bulk_end == hl + n,
                          "bulk progress lost at %zu bytes", i);
        }
        cr_assert_eq(dec(&g, &s, cmd, total, &f), (ssize_t)total);
        struct tern_resp_arg argv[2];
        cr_assert_eq(tern_resp_args(&f, argv, 2), 2);
        cr_assert_eq(argv[1].len, n);
        free(cmd);
        guard_free(&g);
}

/* Need-more is only ever said while fewer bytes than a limit are held. */
Test(resp, buffering_is_bounded_by_the_limits)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;
        struct tern_resp_config c = small_cfg(100, 4, 50, 64);
        /* A valid-looking command that grows forever: 4 bulks of 100 bytes
         * would pass max_frame, which the header of the first says early. */
        char big[400];
        int hl = snprintf(big, sizeof(big), "*4\r\n$30\r\n");
        memset(big + hl, 'a', sizeof(big) - (size_t)hl);

        state_with(&s, &c);
        ssize_t r = TERN_CODEC_NEED_MORE;
        size_t i = 1;
        for (; i <= sizeof(big) && r == TERN_CODEC_NEED_MORE; i++)
                r = dec(&g, &s, big, i, &f);
        cr_assert_eq(r, TERN_EFRAME, "the 31st data byte is not CR");
        cr_assert_lt(i - 1, (size_t)64);

        memset(big, 'a', sizeof(big));
        state_with(&s, &c);
        r = TERN_CODEC_NEED_MORE;
        for (i = 1; i <= sizeof(big) && r == TERN_CODEC_NEED_MORE; i++)
                r = dec(&g, &s, big, i, &f);
        cr_assert_eq(r, TERN_ETOOBIG);
        cr_assert_eq(i - 1, (size_t)52, "inline verdict at max_inline + 2 bytes");
        guard_free(&g);
}

/* ---- tern_resp_args ---- */

Test(resp, args_reports_argc_beyond_max)
{
        struct guard g = GUARD_INIT;
        struct tern_resp_state s;
        struct tern_frame f;
        struct tern_resp_arg argv[2];

        state_with(&s, NULL);
        cr_assert_gt(decs(&g, &s, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", &f), 0);
        cr_assert_eq(tern_resp_args(&f, argv, 2), 3);
        cr_assert_eq(argv[1].len, 1);
        cr_assert_eq(argv[1].data[0], 'b');
        cr_assert_eq(tern_resp_args(&f, NULL, 0), 3, "counting needs no vector");
        cr_assert_gt(decs(&g, &s, "a b c d\r\n", &f), 0);
        cr_assert_eq(tern_resp_args(&f, argv, 2), 4);
        cr_assert_eq(argv[1].data[0], 'b');
        guard_free(&g);
}

Test(resp, args_refuses_what_the_decoder_never_makes)
{
        struct guard g = GUARD_INIT;
        const char *bad[] = {
            "*2\r\n$1\r\na\r\n",      /* short */
            "*1\r\n$1\r\na\r\nextra", /* trailing bytes */
            "*1\r\n$5\r\na\r\n",      /* bulk past the end */
            "*1\r\n$1\r\nab\r\n",     /* no CRLF after the data */
            "*1\r\n$-1\r\n",          /* negative */
            "*x\r\n",                 /* no count */
            "*1\r\n:1\r\n",           /* not a bulk */
            "*1\r\n$1\r\na\r",        /* cut in the final CRLF */
            "   \t ",                 /* an inline line of blanks */
        };
        struct tern_resp_arg argv[4];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                const uint8_t *p = guard_place(&g, bad[i], strlen(bad[i]));
                struct tern_frame f = {.kind = TERN_FRAME_DATA, .data = p, .len = strlen(bad[i])};
                cr_assert_eq(tern_resp_args(&f, argv, 4), -EINVAL, "case %zu accepted", i);
        }
        struct tern_frame none = {.kind = TERN_FRAME_NONE};
        cr_assert_eq(tern_resp_args(&none, argv, 4), -EINVAL);
        struct tern_frame empty = {.kind = TERN_FRAME_DATA, .data = (const uint8_t *)"", .len = 0};
        cr_assert_eq(tern_resp_args(&empty, argv, 4), -EINVAL);
        cr_assert_eq(tern_resp_args(NULL, argv, 4), -EINVAL);
        guard_free(&g);
}

/* ---- encoders ---- */

static void assert_buf(struct tern_buf *b, const char *want, size_t len)
{
        cr_assert_eq(tern_buf_len(b), len, "%zu bytes, want %zu: '%.*s'", tern_buf_len(b), len,
                     (int)tern_buf_len(b), (const char *)tern_buf_data(b));
        cr_assert(memcmp(tern_buf_data(b), want, len) == 0, "got '%.*s'", (int)len,
                  (const char *)tern_buf_data(b));
        tern_buf_consume(b, tern_buf_len(b));
}

#define ASSERT_BUF(b, lit) assert_buf((b), (lit), sizeof(lit) - 1)

Test(resp, reply_encoders)
{
        struct tern_buf b = TERN_BUF_INIT;

        cr_assert_eq(tern_resp_put_simple(&b, "OK"), 0);
        ASSERT_BUF(&b, "+OK\r\n");
        cr_assert_eq(tern_resp_put_simple(&b, ""), 0);
        ASSERT_BUF(&b, "+\r\n");
        cr_assert_eq(tern_resp_put_error(&b, "ERR bad"), 0);
        ASSERT_BUF(&b, "-ERR bad\r\n");
        cr_assert_eq(tern_resp_put_int(&b, 0), 0);
        ASSERT_BUF(&b, ":0\r\n");
        cr_assert_eq(tern_resp_put_int(&b, -42), 0);
        ASSERT_BUF(&b, ":-42\r\n");
        cr_assert_eq(tern_resp_put_int(&b, INT64_MAX), 0);
        ASSERT_BUF(&b, ":9223372036854775807\r\n");
        cr_assert_eq(tern_resp_put_int(&b, INT64_MIN), 0);
        ASSERT_BUF(&b, ":-9223372036854775808\r\n");
        cr_assert_eq(tern_resp_put_bulk(&b, "hi", 2), 0);
        ASSERT_BUF(&b, "$2\r\nhi\r\n");
        cr_assert_eq(tern_resp_put_bulk(&b, NULL, 0), 0);
        ASSERT_BUF(&b, "$0\r\n\r\n");
        cr_assert_eq(tern_resp_put_bulk(&b, "a\r\n\0", 4), 0);
        ASSERT_BUF(&b, "$4\r\na\r\n\0\r\n");
        cr_assert_eq(tern_resp_put_null(&b), 0);
        ASSERT_BUF(&b, "$-1\r\n");
        cr_assert_eq(tern_resp_put_array(&b, 3), 0);
        ASSERT_BUF(&b, "*3\r\n");
        cr_assert_eq(tern_resp_put_array(&b, 0), 0);
        ASSERT_BUF(&b, "*0\r\n");
        cr_assert_eq(tern_resp_put_errorf(&b, "ERR unknown command '%s'", "foo"), 0);
        ASSERT_BUF(&b, "-ERR unknown command 'foo'\r\n");

        /* A pipeline's replies accumulate in one buffer. */
        tern_resp_put_simple(&b, "OK");
        tern_resp_put_int(&b, 7);
        tern_resp_put_null(&b);
        ASSERT_BUF(&b, "+OK\r\n:7\r\n$-1\r\n");
        tern_buf_free(&b);
}

Test(resp, single_line_replies_cannot_be_forged)
{
        struct tern_buf b = TERN_BUF_INIT;

        cr_assert_eq(tern_resp_put_simple(&b, "a\r\n+OK"), 0);
        ASSERT_BUF(&b, "+a  +OK\r\n");
        cr_assert_eq(tern_resp_put_errorf(&b, "ERR unknown command '%s'", "x\r\n:1"), 0);
        ASSERT_BUF(&b, "-ERR unknown command 'x  :1'\r\n");

        char big[2000];
        memset(big, 'z', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        cr_assert_eq(tern_resp_put_errorf(&b, "ERR %s", big), 0);
        cr_assert_eq(tern_buf_len(&b), 1 + 511 + 2, "errorf truncates to 511 bytes");
        cr_assert(memcmp(tern_buf_data(&b) + 512, "\r\n", 2) == 0);
        tern_buf_free(&b);
}

/* Everything the encoders make, a RESP parser reads back: bulks wrapped in
 * an array decode as a command with the same arguments. */
Test(resp, encoded_bulks_decode_back)
{
        struct guard g = GUARD_INIT;
        struct tern_buf b = TERN_BUF_INIT;
        struct tern_resp_state s;
        struct tern_frame f;

        tern_resp_put_array(&b, 2);
        tern_resp_put_bulk(&b, "\r\n", 2);
        void *st = tern_resp_codec.state_new(NULL);
        cr_assert_eq(tern_resp_codec.encode(st, &b, "x y", 3), 0);
        tern_resp_codec.state_free(st);

        state_with(&s, NULL);
        cr_assert_eq(dec(&g, &s, tern_buf_data(&b), tern_buf_len(&b), &f),
                     (ssize_t)tern_buf_len(&b));
        assert_args(&f, ARGS("\r\n", "x y"));
        tern_buf_free(&b);
        guard_free(&g);
}
