/*
 * The WebSocket codec (proto/websocket): the opening handshake on top of
 * proto/http, every frame rule with the close code it earns, UTF-8
 * validation across fragments, the limits, segment invariance, and the
 * server-side encoders.
 *
 * Messages are turned into text (see show()), so a test states what a whole
 * stream must decode to in one string, and runs over different
 * segmentations compare as strings. Every decode call sees its input copied
 * right before a PROT_NONE page (guard.h), so an over-read crashes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "guard.h"
#include "http.h"
#include "websocket.h"

/* ---- decoding a stream the way a connection does ---- */

struct run {
        char *text; /* show() per message, then "ERR <code>" or nothing */
        size_t len, cap;
        ssize_t err;
        uint16_t code;
        size_t left; /* bytes never consumed */
};

static void put(struct run *r, const void *p, size_t n)
{
        if (r->len + n + 1 > r->cap) {
                r->cap = (r->len + n + 1) * 2;
                r->text = realloc(r->text, r->cap);
                cr_assert_not_null(r->text);
        }
        memcpy(r->text + r->len, p, n);
        r->len += n;
        r->text[r->len] = '\0';
}

static void putf(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct run *r, const char *fmt, ...)
{
        char tmp[1024];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        cr_assert(n >= 0 && (size_t)n < sizeof(tmp));
        put(r, tmp, (size_t)n);
}

/* "T1[hello]" text of one frame, "B2[..]" binary of two, "P[x]" ping,
 * "O[x]" pong, "C1000[bye]" close; bytes outside printable ASCII as \xNN.
 * Checks the reply a ping or close carries on the way. */
static void show(struct run *r, const struct tern_ws_message *m)
{
        switch (m->opcode) {
        case TERN_WS_TEXT:
                putf(r, "T%u[", m->fragments);
                break;
        case TERN_WS_BINARY:
                putf(r, "B%u[", m->fragments);
                break;
        case TERN_WS_PING:
                put(r, "P[", 2);
                cr_assert_eq(m->reply_len, 2 + m->len);
                cr_assert_eq(m->reply[0], 0x8a);
                cr_assert_eq(m->reply[1], m->len);
                cr_assert(m->len == 0 || memcmp(m->reply + 2, m->data, m->len) == 0);
                break;
        case TERN_WS_PONG:
                put(r, "O[", 2);
                cr_assert_null(m->reply);
                break;
        case TERN_WS_CLOSE:
                putf(r, "C%u[", m->close_code);
                cr_assert_eq(m->reply[0], 0x88);
                if (m->close_code == TERN_WS_CLOSE_NO_STATUS) {
                        cr_assert_eq(m->reply_len, 2);
                        cr_assert_eq(m->reply[1], 0);
                } else {
                        cr_assert_eq(m->reply_len, 4);
                        cr_assert_eq(m->reply[1], 2);
                        cr_assert_eq(m->reply[2] << 8 | m->reply[3], m->close_code);
                }
                break;
        default:
                cr_assert_fail("opcode %d delivered", (int)m->opcode);
        }
        for (size_t i = 0; i < m->len; i++) {
                uint8_t c = m->data[i];
                if (c >= 0x20 && c < 0x7f && c != '\\')
                        put(r, &c, 1);
                else
                        putf(r, "\\x%02x", c);
        }
        put(r, "]", 1);
}

static size_t cfg_max(const struct tern_ws_config *c)
{
        return c ? c->max_message : TERN_WS_DEFAULT_MAX_MESSAGE;
}

/*
 * Decodes @len bytes of @p with a fresh state from @cfg, fed @step bytes per
 * read (0: all at once; SIZE_MAX: random steps from @seed). The unconsumed
 * bytes are copied to a guarded address before every call.
 */
static struct run decode_split(const struct tern_ws_config *cfg, const void *p, size_t len,
                               size_t step, unsigned seed)
{
        struct run r = {0};
        struct guard g = GUARD_INIT;
        struct tern_ws_state *s = tern_ws_state_new(cfg);
        uint8_t *held = malloc(len + 1);
        size_t have = 0, pos = 0;

        cr_assert_not_null(s);
        cr_assert_not_null(held);
        put(&r, "", 0);
        while (pos < len && !r.err) {
                size_t n = step == 0          ? len
                           : step == SIZE_MAX ? 1 + (size_t)rand_r(&seed) % 300
                                              : step;
                if (n > len - pos)
                        n = len - pos;
                memcpy(held + have, (const uint8_t *)p + pos, n);
                have += n;
                pos += n;
                for (;;) {
                        const uint8_t *in = guard_place(&g, held, have);
                        struct tern_frame f = {.kind = TERN_FRAME_NONE};
                        ssize_t k = tern_ws_decode(s, in, have, &f);
                        if (k < 0) {
                                cr_assert_eq(f.kind, TERN_FRAME_NONE);
                                r.err = k;
                                r.code = tern_ws_state_close_code(s);
                                cr_assert_not_null(tern_ws_state_reason(s));
                                cr_assert_eq(tern_ws_error_code((int)k), r.code);
                                putf(&r, "ERR %u", r.code);
                                break;
                        }
                        if (k == 0) {
                                cr_assert_eq(f.kind, TERN_FRAME_NONE);
                                cr_assert_lt(have, 14 + (cfg_max(cfg) > 125 ? cfg_max(cfg) : 125),
                                             "need-more holding %zu", have);
                                break;
                        }
                        cr_assert_leq((size_t)k, have);
                        if (f.kind == TERN_FRAME_DATA) {
                                const struct tern_ws_message *m = tern_ws_message_of(&f);
                                cr_assert_not_null(m);
                                show(&r, m);
                        }
                        memmove(held, held + k, have - (size_t)k);
                        have -= (size_t)k;
                }
        }
        r.left = have;
        tern_ws_state_free(s);
        guard_free(&g);
        free(held);
        return r;
}

/* The stream whole, one byte at a time, and at random splits: all must
 * read @want (and leave @left bytes unconsumed). */
static void expect_cfg(const struct tern_ws_config *cfg, const struct tern_buf *b, const char *want)
{
        static const size_t steps[] = {0, 1, 2, 3, 7, SIZE_MAX, SIZE_MAX, SIZE_MAX};
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                struct run r =
                    decode_split(cfg, tern_buf_data(b), tern_buf_len(b), steps[i], (unsigned)i);
                size_t d = 0;
                while (r.text[d] && r.text[d] == want[d])
                        d++;
                cr_assert(r.text[d] == want[d],
                          "step %zu: differs at %zu: got \"%.60s\", want \"%.60s\"", steps[i], d,
                          r.text + d, want + d);
                free(r.text);
        }
}

static void expect(const struct tern_buf *b, const char *want)
{
        expect_cfg(NULL, b, want);
}

static unsigned mask_seed = 1;

/* A client frame with a mask that changes from frame to frame. */
static void cf(struct tern_buf *b, unsigned op, bool fin, const void *p, size_t len)
{
        uint8_t mask[4];
        for (int i = 0; i < 4; i++)
                mask[i] = (uint8_t)rand_r(&mask_seed);
        cr_assert_eq(tern_ws_put_client_frame(b, op, fin, mask, p, len), 0);
}

static void cfs(struct tern_buf *b, unsigned op, bool fin, const char *s)
{
        cf(b, op, fin, s, strlen(s));
}

/* Raw bytes, for headers the encoder would not write. */
static void raw(struct tern_buf *b, const void *p, size_t len)
{
        cr_assert_eq(tern_buf_append(b, p, len), 0);
}

/* ---- messages ---- */

Test(websocket, text_and_binary_messages)
{
        struct tern_buf b = TERN_BUF_INIT;
        cfs(&b, TERN_WS_TEXT, true, "hello");
        cf(&b, TERN_WS_BINARY, true, "\x00\xff", 2);
        cfs(&b, TERN_WS_TEXT, true, "");
        cf(&b, TERN_WS_BINARY, true, NULL, 0);
        expect(&b, "T1[hello]B1[\\x00\\xff]T1[]B1[]");
        tern_buf_free(&b);
}

Test(websocket, unmasks_every_length_form)
{
        /* 125 (7-bit), 126 and 65535 (16-bit), 65536 (64-bit). */
        static const size_t lens[] = {1, 125, 126, 65535, 65536, 200001};
        for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
                size_t n = lens[k];
                uint8_t *p = malloc(n);
                cr_assert_not_null(p);
                for (size_t i = 0; i < n; i++)
                        p[i] = (uint8_t)(i * 7 + k);
                struct tern_buf b = TERN_BUF_INIT;
                cf(&b, TERN_WS_BINARY, true, p, n);
                struct tern_ws_state *s = tern_ws_state_new(NULL);
                struct tern_frame f = {.kind = TERN_FRAME_NONE};
                ssize_t r = tern_ws_decode(s, tern_buf_data(&b), tern_buf_len(&b), &f);
                cr_assert_eq(r, (ssize_t)tern_buf_len(&b));
                const struct tern_ws_message *m = tern_ws_message_of(&f);
                cr_assert_not_null(m);
                cr_assert_eq(m->len, n);
                cr_assert(memcmp(m->data, p, n) == 0, "payload of %zu bytes unmasked wrong", n);
                /* The input is const: left masked. */
                cr_assert(memcmp(tern_buf_data(&b) + tern_buf_len(&b) - n, p, n) != 0);
                tern_ws_state_free(s);
                tern_buf_free(&b);
                free(p);
        }
}

Test(websocket, fragments_are_joined)
{
        struct tern_buf b = TERN_BUF_INIT;
        cfs(&b, TERN_WS_TEXT, false, "frag");
        cfs(&b, TERN_WS_CONTINUATION, false, "");
        cfs(&b, TERN_WS_CONTINUATION, false, "men");
        cfs(&b, TERN_WS_CONTINUATION, true, "ted");
        cf(&b, TERN_WS_BINARY, false, "\x01", 1);
        cf(&b, TERN_WS_CONTINUATION, true, "\x02", 1);
        cfs(&b, TERN_WS_TEXT, true, "after");
        expect(&b, "T4[fragmented]B2[\\x01\\x02]T1[after]");
        tern_buf_free(&b);
}

Test(websocket, control_frames_between_fragments)
{
        struct tern_buf b = TERN_BUF_INIT;
        cfs(&b, TERN_WS_TEXT, false, "one ");
        cfs(&b, TERN_WS_PING, true, "p1");
        cfs(&b, TERN_WS_CONTINUATION, false, "two ");
        cfs(&b, TERN_WS_PONG, true, "o1");
        cfs(&b, TERN_WS_CONTINUATION, true, "three");
        expect(&b, "P[p1]O[o1]T3[one two three]");
        tern_buf_free(&b);
}

Test(websocket, ping_reply_is_the_pong)
{
        struct tern_buf b = TERN_BUF_INIT;
        char big[125];
        memset(big, 'z', sizeof(big));
        cfs(&b, TERN_WS_PING, true, "");
        cfs(&b, TERN_WS_PING, true, "are you there");
        cf(&b, TERN_WS_PING, true, big, sizeof(big));
        /* show() checks each reply is 0x8A, the length, the payload. */
        struct run r = decode_split(NULL, tern_buf_data(&b), tern_buf_len(&b), 0, 0);
        cr_assert(strncmp(r.text, "P[]P[are you there]P[zzz", 24) == 0, "%s", r.text);
        free(r.text);
        tern_buf_free(&b);
}

Test(websocket, close_with_code_and_reason)
{
        struct tern_buf b = TERN_BUF_INIT;
        cfs(&b, TERN_WS_CLOSE, true,
            "\x03\xe8"
            "bye");
        expect(&b, "C1000[bye]");
        tern_buf_truncate(&b, 0);
        cfs(&b, TERN_WS_CLOSE, true, "\x0f\xa1"); /* 4001, no reason */
        expect(&b, "C4001[]");
        tern_buf_truncate(&b, 0);
        cf(&b, TERN_WS_CLOSE, true, NULL, 0);
        expect(&b, "C1005[]");
        tern_buf_free(&b);
}

Test(websocket, close_codes_that_may_not_be_sent)
{
        static const uint16_t bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
        static const uint16_t good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                        1010, 1011, 1012, 1013, 1014, 3000, 4999};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct tern_buf b = TERN_BUF_INIT;
                uint8_t p[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
                cf(&b, TERN_WS_CLOSE, true, p, 2);
                expect(&b, "ERR 1002");
                tern_buf_free(&b);
                struct tern_buf o = TERN_BUF_INIT;
                cr_assert_eq(tern_ws_put_close(&o, bad[i], NULL, 0), bad[i] ? -EINVAL : 0);
                tern_buf_free(&o);
        }
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                struct tern_buf b = TERN_BUF_INIT;
                uint8_t p[2] = {(uint8_t)(good[i] >> 8), (uint8_t)good[i]};
                cf(&b, TERN_WS_CLOSE, true, p, 2);
                char want[32];
                snprintf(want, sizeof(want), "C%u[]", good[i]);
                expect(&b, want);
                tern_buf_free(&b);
        }
}

Test(websocket, close_of_one_byte_and_bad_reason)
{
        struct tern_buf b = TERN_BUF_INIT;
        cf(&b, TERN_WS_CLOSE, true, "\x03", 1);
        expect(&b, "ERR 1002");
        tern_buf_truncate(&b, 0);
        cf(&b, TERN_WS_CLOSE, true, "\x03\xe8\xff", 3);
        expect(&b, "ERR 1007");
        tern_buf_free(&b);
}

Test(websocket, nothing_after_a_close)
{
        struct tern_buf b = TERN_BUF_INIT;
        cfs(&b, TERN_WS_CLOSE, true, "\x03\xe8");
        cfs(&b, TERN_WS_TEXT, true, "late");
        expect(&b, "C1000[]ERR 1002");
        tern_buf_free(&b);
}

/* ---- protocol errors: 1002 ---- */

Test(websocket, unmasked_frame_is_1002)
{
        struct tern_buf b = TERN_BUF_INIT;
        cfs(&b, TERN_WS_TEXT, true, "fine");
        raw(&b, "\x81\x02hi", 4);
        expect(&b, "T1[fine]ERR 1002");
        /* Known from the first two bytes. */
        tern_buf_truncate(&b, 0);
        raw(&b, "\x82\x7e", 2);
        expect(&b, "ERR 1002");
        tern_buf_free(&b);
}

Test(websocket, reserved_bits_are_1002)
{
        for (unsigned bit = 0x10; bit <= 0x40; bit <<= 1) {
                struct tern_buf b = TERN_BUF_INIT;
                cfs(&b, TERN_WS_TEXT, true, "x");
                /* Set the bit in the header just written. */
                uint8_t *h = (uint8_t *)tern_buf_data(&b);
                h[0] |= (uint8_t)bit;
                expect(&b, "ERR 1002");
                tern_buf_free(&b);
        }
}

Test(websocket, reserved_opcodes_are_1002)
{
        static const unsigned ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
                struct tern_buf b = TERN_BUF_INIT;
                cfs(&b, ops[i], true, "x");
                expect(&b, "ERR 1002");
                tern_buf_free(&b);
        }
}

Test(websocket, control_frame_rules_are_1002)
{
        struct tern_buf b = TERN_BUF_INIT;
        cfs(&b, TERN_WS_PING, false, "x"); /* fragmented */
        expect(&b, "ERR 1002");
        tern_buf_truncate(&b, 0);
        char big[126];
        memset(big, 'a', sizeof(big));
        cf(&b, TERN_WS_PONG, true, big, sizeof(big)); /* over 125 */
        expect(&b, "ERR 1002");
        tern_buf_free(&b);
}

Test(websocket, continuation_rules_are_1002)
{
        struct tern_buf b = TERN_BUF_INIT;
        cfs(&b, TERN_WS_CONTINUATION, true, "x");
        expect(&b, "ERR 1002");
        tern_buf_truncate(&b, 0);
        cfs(&b, TERN_WS_TEXT, false, "a");
        cfs(&b, TERN_WS_BINARY, true, "b"); /* a new message inside one */
        expect(&b, "ERR 1002");
        tern_buf_free(&b);
}

Test(websocket, lengths_not_in_shortest_form_are_1002)
{
        struct tern_buf b = TERN_BUF_INIT;
        raw(&b,
            "\x82\xfe\x00\x7d"
            "abcd",
            8); /* 125 in 16 bits */
        expect(&b, "ERR 1002");
        tern_buf_truncate(&b, 0);
        raw(&b, "\x82\xff\x00\x00\x00\x00\x00\x00\xff\xff", 10); /* 65535 in 64 bits */
        expect(&b, "ERR 1002");
        tern_buf_free(&b);
}

Test(websocket, sixty_four_bit_lengths_are_bounded)
{
        struct tern_buf b = TERN_BUF_INIT;
        raw(&b, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00", 10); /* top bit */
        expect(&b, "ERR 1002");
        tern_buf_truncate(&b, 0);
        raw(&b, "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff", 10); /* 2^63 - 1 */
        expect(&b, "ERR 1009");
        tern_buf_truncate(&b, 0);
        raw(&b, "\x82\xff\x00\x00\x00\x01\x00\x00\x00\x00", 10); /* 4 GiB */
        expect(&b, "ERR 1009");
        tern_buf_free(&b);
}

/* ---- limits: 1009 ---- */

Test(websocket, message_over_max_is_1009_from_the_header)
{
        struct tern_ws_config cfg;
        tern_ws_config_init(&cfg);
        cfg.max_message = 1000;
        char p[1001];
        memset(p, 'x', sizeof(p));
        struct tern_buf b = TERN_BUF_INIT;
        cf(&b, TERN_WS_BINARY, true, p, 1000);
        char want[1010];
        snprintf(want, sizeof(want), "B1[%.1000s]", p);
        expect_cfg(&cfg, &b, want);
        tern_buf_truncate(&b, 0);
        cf(&b, TERN_WS_BINARY, true, p, 1001);
        expect_cfg(&cfg, &b, "ERR 1009");
        /* Decided by the 4-byte header alone: no payload is buffered. */
        struct tern_ws_state *s = tern_ws_state_new(&cfg);
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        cr_assert_eq(tern_ws_decode(s, tern_buf_data(&b), 4, &f), TERN_ETOOBIG);
        cr_assert_eq(tern_ws_state_close_code(s), 1009);
        cr_assert_eq(tern_ws_error_code(TERN_ETOOBIG), 1009);
        tern_ws_state_free(s);
        tern_buf_free(&b);
}

Test(websocket, fragmented_message_over_max_is_1009)
{
        struct tern_ws_config cfg;
        tern_ws_config_init(&cfg);
        cfg.max_message = 10;
        struct tern_buf b = TERN_BUF_INIT;
        cfs(&b, TERN_WS_TEXT, false, "12345");
        cfs(&b, TERN_WS_CONTINUATION, false, "67890");
        cfs(&b, TERN_WS_CONTINUATION, true, "");
        cfs(&b, TERN_WS_TEXT, false, "12345");
        cfs(&b, TERN_WS_PING, true, "control frames do not count");
        cfs(&b, TERN_WS_CONTINUATION, true, "678901");
        expect_cfg(&cfg, &b, "T3[1234567890]P[control frames do not count]ERR 1009");
        tern_buf_free(&b);
}

Test(websocket, zero_max_message_allows_empty_messages)
{
        struct tern_ws_config cfg;
        tern_ws_config_init(&cfg);
        cfg.max_message = 0;
        struct tern_buf b = TERN_BUF_INIT;
        cfs(&b, TERN_WS_TEXT, true, "");
        cfs(&b, TERN_WS_PING, true, "x");
        cfs(&b, TERN_WS_BINARY, true, "y");
        expect_cfg(&cfg, &b, "T1[]P[x]ERR 1009");
        tern_buf_free(&b);
}

Test(websocket, too_many_fragments_is_1009)
{
        struct tern_ws_config cfg;
        tern_ws_config_init(&cfg);
        cfg.max_fragments = 3;
        struct tern_buf b = TERN_BUF_INIT;
        cfs(&b, TERN_WS_TEXT, false, "a");
        cfs(&b, TERN_WS_CONTINUATION, false, "b");
        cfs(&b, TERN_WS_CONTINUATION, true, "c");
        cfs(&b, TERN_WS_TEXT, false, "a");
        cfs(&b, TERN_WS_CONTINUATION, false, "b");
        cfs(&b, TERN_WS_CONTINUATION, false, "c");
        cfs(&b, TERN_WS_CONTINUATION, true, "d");
        expect_cfg(&cfg, &b, "T3[abc]ERR 1009");
        tern_buf_free(&b);
}

/* Bytes malloc has handed out, mmapped chunks included. */
static size_t heap_in_use(void)
{
        struct mallinfo2 mi = mallinfo2();
        return mi.uordblks + mi.hblkhd;
}

Test(websocket, big_message_buffer_is_not_kept)
{
        /* A sanitizer's allocator is invisible to mallinfo2(). */
        size_t base = heap_in_use();
        void *probe = malloc(1 << 20);
        bool visible = probe && heap_in_use() >= base + (1 << 20);
        free(probe);
        if (!visible)
                cr_skip_test("mallinfo2() does not see this allocator");
        size_t n = 4 * TERN_WS_KEEP_BUFFER;
        uint8_t *p = calloc(1, n);
        cr_assert_not_null(p);
        struct tern_buf b = TERN_BUF_INIT, small = TERN_BUF_INIT;
        cf(&b, TERN_WS_BINARY, true, p, n);
        cfs(&small, TERN_WS_TEXT, true, "next");
        struct tern_ws_state *s = tern_ws_state_new(NULL);
        size_t before = heap_in_use();
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        cr_assert_eq(tern_ws_decode(s, tern_buf_data(&b), tern_buf_len(&b), &f),
                     (ssize_t)tern_buf_len(&b));
        size_t big = heap_in_use();
        cr_assert_geq(big, before + n, "the message is in the state's buffer");
        f.kind = TERN_FRAME_NONE;
        cr_assert_eq(tern_ws_decode(s, tern_buf_data(&small), tern_buf_len(&small), &f),
                     (ssize_t)tern_buf_len(&small));
        cr_assert_eq(tern_ws_message_of(&f)->len, 4);
        cr_assert_lt(heap_in_use(), before + TERN_WS_KEEP_BUFFER,
                     "%zu bytes still held after a small message", heap_in_use() - before);
        tern_ws_state_free(s);
        tern_buf_free(&b);
        tern_buf_free(&small);
        free(p);
}

Test(websocket, config_ranges)
{
        struct tern_ws_config cfg;
        tern_ws_config_init(&cfg);
        cr_assert_eq(cfg.max_message, TERN_WS_DEFAULT_MAX_MESSAGE);
        cr_assert_eq(tern_ws_config_check(&cfg), 0);
        cfg.max_message = TERN_WS_MAX_MESSAGE_LIMIT + 1;
        cr_assert_eq(tern_ws_config_check(&cfg), -EINVAL);
        errno = 0;
        cr_assert_null(tern_ws_state_new(&cfg));
        cr_assert_eq(errno, EINVAL);
        tern_ws_config_init(&cfg);
        cfg.max_fragments = 0;
        cr_assert_eq(tern_ws_config_check(&cfg), -EINVAL);
        cfg.max_fragments = TERN_WS_MAX_FRAGMENTS_LIMIT + 1;
        cr_assert_eq(tern_ws_config_check(&cfg), -EINVAL);
        cfg.max_fragments = TERN_WS_MAX_FRAGMENTS_LIMIT;
        cr_assert_eq(tern_ws_config_check(&cfg), 0);
}

/* ---- UTF-8: 1007 ---- */

Test(websocket, utf8_validation)
{
        static const struct {
                const char *s;
                bool ok;
        } cases[] = {
            {"plain ascii", true},
            {"\xc3\xa9", true},             /* é */
            {"\xe2\x82\xac", true},         /* € */
            {"\xf0\x9f\x98\x80", true},     /* U+1F600 */
            {"\xf4\x8f\xbf\xbf", true},     /* U+10FFFF */
            {"\xed\x9f\xbf", true},         /* U+D7FF */
            {"\xc0\xaf", false},            /* overlong '/' */
            {"\xe0\x80\xaf", false},        /* overlong */
            {"\xf0\x80\x80\xaf", false},    /* overlong */
            {"\xed\xa0\x80", false},        /* surrogate U+D800 */
            {"\xf4\x90\x80\x80", false},    /* U+110000 */
            {"\xf5\x80\x80\x80", false},    /* no such lead */
            {"\xff", false},                /* never */
            {"\x80", false},                /* lone continuation */
            {"\xc3", false},                /* truncated */
            {"\xe2\x82", false},            /* truncated */
            {"abcdefgh\xc3\x28xyz", false}, /* after the ASCII fast path */
            {"abcdefghijklmnop\xe2\x82\xac", true},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                size_t n = strlen(cases[i].s);
                cr_assert_eq(tern_ws_utf8_valid((const uint8_t *)cases[i].s, n), cases[i].ok,
                             "case %zu", i);
                struct tern_buf b = TERN_BUF_INIT;
                cf(&b, TERN_WS_TEXT, true, cases[i].s, n);
                struct run r = decode_split(NULL, tern_buf_data(&b), tern_buf_len(&b), 1, 0);
                if (cases[i].ok)
                        cr_assert_eq(r.err, 0, "case %zu: %s", i, r.text);
                else
                        cr_assert_str_eq(r.text, "ERR 1007", "case %zu", i);
                free(r.text);
                /* Binary is not checked. */
                tern_buf_truncate(&b, 0);
                cf(&b, TERN_WS_BINARY, true, cases[i].s, n);
                r = decode_split(NULL, tern_buf_data(&b), tern_buf_len(&b), 0, 0);
                cr_assert_eq(r.err, 0);
                free(r.text);
                tern_buf_free(&b);
        }
}

Test(websocket, utf8_split_across_fragments)
{
        struct tern_buf b = TERN_BUF_INIT;
        /* € split 1 + 2 bytes, and an emoji 3 + 1. */
        cf(&b, TERN_WS_TEXT, false, "a\xe2", 2);
        cf(&b, TERN_WS_CONTINUATION, false, "\x82\xac\xf0\x9f\x98", 5);
        cf(&b, TERN_WS_CONTINUATION, true, "\x80", 1);
        expect(&b, "T3[a\\xe2\\x82\\xac\\xf0\\x9f\\x98\\x80]");
        tern_buf_free(&b);
}

Test(websocket, utf8_fails_fast_before_the_last_fragment)
{
        struct tern_buf b = TERN_BUF_INIT;
        cf(&b, TERN_WS_TEXT, false, "ok\xff", 3);
        /* No FIN yet, and the error is already known. */
        expect(&b, "ERR 1007");
        tern_buf_truncate(&b, 0);
        cf(&b, TERN_WS_TEXT, false, "ok\xe2\x82", 4);
        cf(&b, TERN_WS_CONTINUATION, true, "", 0); /* ends inside a character */
        expect(&b, "ERR 1007");
        tern_buf_free(&b);
}

/* ---- segment invariance over a long mixed stream ---- */

Test(websocket, same_messages_however_split)
{
        struct tern_buf b = TERN_BUF_INIT;
        unsigned seed = 7;
        struct run want = {0};
        put(&want, "", 0);
        for (int i = 0; i < 200; i++) {
                char p[300];
                size_t n = (size_t)rand_r(&seed) % sizeof(p);
                for (size_t k = 0; k < n; k++)
                        p[k] = (char)('a' + rand_r(&seed) % 26);
                switch (rand_r(&seed) % 4) {
                case 0:
                        cf(&b, TERN_WS_TEXT, true, p, n);
                        putf(&want, "T1[%.*s]", (int)n, p);
                        break;
                case 1:
                        cf(&b, TERN_WS_BINARY, false, p, n / 2);
                        cf(&b, TERN_WS_PING, true, p, n / 3 > 125 ? 125 : n / 3);
                        putf(&want, "P[%.*s]", (int)(n / 3 > 125 ? 125 : n / 3), p);
                        cf(&b, TERN_WS_CONTINUATION, true, p + n / 2, n - n / 2);
                        putf(&want, "B2[%.*s]", (int)n, p);
                        break;
                case 2:
                        cf(&b, TERN_WS_PONG, true, p, n > 125 ? 125 : n);
                        putf(&want, "O[%.*s]", (int)(n > 125 ? 125 : n), p);
                        break;
                default:
                        cf(&b, TERN_WS_TEXT, false, p, n / 3);
                        cf(&b, TERN_WS_CONTINUATION, false, p + n / 3, n / 3);
                        cf(&b, TERN_WS_CONTINUATION, true, p + 2 * (n / 3), n - 2 * (n / 3));
                        putf(&want, "T3[%.*s]", (int)n, p);
                        break;
                }
        }
        expect(&b, want.text);
        free(want.text);
        tern_buf_free(&b);
}

Test(websocket, error_codes_by_thread)
{
        cr_assert_eq(tern_ws_error_code(TERN_ETOOBIG), 1009);
        cr_assert_eq(tern_ws_error_code(-ENOMEM), 1011);
        struct tern_buf b = TERN_BUF_INIT;
        cf(&b, TERN_WS_TEXT, true, "\xff", 1);
        struct tern_ws_state *s = tern_ws_state_new(NULL);
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        ssize_t r = tern_ws_decode(s, tern_buf_data(&b), tern_buf_len(&b), &f);
        cr_assert_eq(r, TERN_EFRAME);
        /* The same error value, told apart by the last decode: 1007. */
        cr_assert_eq(tern_ws_error_code((int)r), 1007);
        cr_assert_str_eq(tern_ws_state_reason(s), "text not UTF-8");
        tern_ws_state_free(s);
        tern_buf_free(&b);
}

/* ---- encoders ---- */

Test(websocket, frame_header_forms)
{
        uint8_t h[TERN_WS_MAX_HEADER];
        cr_assert_eq(tern_ws_frame_header(h, TERN_WS_TEXT, true, 5), 2);
        cr_assert(h[0] == 0x81 && h[1] == 5);
        cr_assert_eq(tern_ws_frame_header(h, TERN_WS_BINARY, false, 126), 4);
        cr_assert(h[0] == 0x02 && h[1] == 126 && h[2] == 0 && h[3] == 126);
        cr_assert_eq(tern_ws_frame_header(h, TERN_WS_BINARY, true, 65535), 4);
        cr_assert_eq(tern_ws_frame_header(h, TERN_WS_BINARY, true, 65536), 10);
        cr_assert(h[1] == 127 && h[7] == 1 && h[8] == 0 && h[9] == 0);
        cr_assert_eq(tern_ws_frame_header(h, TERN_WS_PING, true, 125), 2);
        cr_assert_eq(tern_ws_frame_header(h, TERN_WS_PING, true, 126), -EINVAL);
        cr_assert_eq(tern_ws_frame_header(h, TERN_WS_CLOSE, false, 0), -EINVAL);
        cr_assert_eq(tern_ws_frame_header(h, (enum tern_ws_opcode)3, true, 0), -EINVAL);
        cr_assert_eq(tern_ws_frame_header(h, TERN_WS_BINARY, true, UINT64_C(1) << 63), -EINVAL);
}

Test(websocket, put_frame_and_close)
{
        struct tern_buf b = TERN_BUF_INIT;
        cr_assert_eq(tern_ws_put_frame(&b, TERN_WS_TEXT, "hi", 2), 0);
        cr_assert_eq(tern_ws_put_close(&b, 1000, "bye", 3), 0);
        cr_assert_eq(tern_ws_put_close(&b, 0, NULL, 0), 0);
        static const uint8_t want[] = {0x81, 2,   'h', 'i', 0x88, 5, 0x03,
                                       0xe8, 'b', 'y', 'e', 0x88, 0};
        cr_assert_eq(tern_buf_len(&b), sizeof(want));
        cr_assert(memcmp(tern_buf_data(&b), want, sizeof(want)) == 0);
        char reason[124];
        memset(reason, 'r', sizeof(reason));
        cr_assert_eq(tern_ws_put_close(&b, 1000, reason, 123), 0);
        cr_assert_eq(tern_ws_put_close(&b, 1000, reason, 124), -EINVAL);
        cr_assert_eq(tern_ws_put_frame(&b, TERN_WS_PONG, reason, 124), 0);
        tern_buf_free(&b);
}

Test(websocket, codec_encode_sends_binary_and_builds_in_place)
{
        struct tern_buf b = TERN_BUF_INIT;
        cr_assert_eq(tern_ws_codec.encode(NULL, &b, "abc", 3), 0);
        cr_assert_eq(tern_buf_len(&b), 5);
        cr_assert(memcmp(tern_buf_data(&b),
                         "\x82\x03"
                         "abc",
                         5) == 0);
        tern_buf_free(&b);
        /* A payload built in the buffer: only the header is added. */
        char big[70000];
        memset(big, 'q', sizeof(big));
        cr_assert_eq(tern_buf_append(&b, big, sizeof(big)), 0);
        cr_assert_eq(tern_ws_codec.encode(NULL, &b, tern_buf_data(&b), tern_buf_len(&b)), 0);
        cr_assert_eq(tern_buf_len(&b), 10 + sizeof(big));
        cr_assert_eq(tern_buf_data(&b)[1], 127);
        cr_assert(memcmp(tern_buf_data(&b) + 10, big, sizeof(big)) == 0);
        tern_buf_free(&b);
}

Test(websocket, fan_out_header_once)
{
        /* One header, many recipients: header + the same payload bytes. */
        static const char msg[] = "to everyone";
        uint8_t h[TERN_WS_MAX_HEADER];
        int n = tern_ws_frame_header(h, TERN_WS_TEXT, true, sizeof(msg) - 1);
        cr_assert_eq(n, 2);
        struct tern_buf one = TERN_BUF_INIT;
        cr_assert_eq(tern_ws_put_frame(&one, TERN_WS_TEXT, msg, sizeof(msg) - 1), 0);
        cr_assert(memcmp(tern_buf_data(&one), h, 2) == 0);
        cr_assert(memcmp(tern_buf_data(&one) + 2, msg, sizeof(msg) - 1) == 0);
        tern_buf_free(&one);
}

/* ---- the opening handshake ---- */

/* Decodes one HTTP request from @req and runs tern_ws_accept on it. */
static int accept_req(const char *req, const struct tern_ws_accept_opts *o, char *resp, size_t cap)
{
        struct tern_http_state *h = tern_http_state_new(NULL);
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        ssize_t n = tern_http_decode(h, (const uint8_t *)req, strlen(req), &f);
        cr_assert_eq(n, (ssize_t)strlen(req), "request not parsed: %zd", n);
        const struct tern_http_request *r = tern_http_request_of(&f);
        cr_assert_not_null(r);
        struct tern_buf b = TERN_BUF_INIT;
        int st = tern_ws_accept(r, o, &b);
        size_t len = tern_buf_len(&b);
        cr_assert_lt(len, cap);
        if (len)
                memcpy(resp, tern_buf_data(&b), len);
        resp[len] = '\0';
        tern_buf_free(&b);
        tern_http_state_free(h);
        return st;
}

#define KEY  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER  "Sec-WebSocket-Version: 13\r\n"
#define UPG  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
#define HOST "Host: server.example.com\r\n"

Test(websocket, accept_key_rfc_sample)
{
        char out[29];
        cr_assert_eq(tern_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0);
        cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(websocket, handshake_101)
{
        char resp[1024];
        int st =
            accept_req("GET /chat HTTP/1.1\r\n" HOST UPG KEY VER "\r\n", NULL, resp, sizeof(resp));
        cr_assert_eq(st, 101);
        cr_assert_str_eq(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
        /* Tokens in lists, any case. */
        st = accept_req("GET / HTTP/1.1\r\n" HOST "upgrade: WebSocket\r\n"
                        "connection: keep-alive, UPGRADE\r\n" KEY VER "\r\n",
                        NULL, resp, sizeof(resp));
        cr_assert_eq(st, 101);
}

Test(websocket, handshake_refusals)
{
        static const struct {
                const char *req;
                int status;
        } cases[] = {
            {"POST / HTTP/1.1\r\n" HOST UPG KEY VER "\r\n", 400},
            {"GET / HTTP/1.0\r\n" HOST UPG KEY VER "\r\n", 400},
            {"GET / HTTP/1.1\r\n" HOST "Connection: Upgrade\r\n" KEY VER "\r\n", 400},
            {"GET / HTTP/1.1\r\n" HOST "Upgrade: h2c\r\nConnection: Upgrade\r\n" KEY VER "\r\n",
             400},
            {"GET / HTTP/1.1\r\n" HOST "Upgrade: websocket\r\nConnection: close\r\n" KEY VER "\r\n",
             400},
            {"GET / HTTP/1.1\r\n" HOST UPG VER "\r\n", 400},
            {"GET / HTTP/1.1\r\n" HOST UPG "Sec-WebSocket-Key: c2hvcnQ=\r\n" VER "\r\n", 400},
            {"GET / HTTP/1.1\r\n" HOST UPG "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n" VER
             "\r\n",
             400}, /* 16 bytes' worth of characters, but not canonical */
            {"GET / HTTP/1.1\r\n" HOST UPG "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub2!jZQ==\r\n" VER
             "\r\n",
             400},
            {"GET / HTTP/1.1\r\n" HOST UPG KEY KEY VER "\r\n", 400},
            {"GET / HTTP/1.1\r\n" HOST UPG KEY "Content-Length: 2\r\n" VER "\r\nhi", 400},
            {"GET / HTTP/1.1\r\n" HOST UPG KEY "\r\n", 426},
            {"GET / HTTP/1.1\r\n" HOST UPG KEY "Sec-WebSocket-Version: 8\r\n\r\n", 426},
            {"GET / HTTP/1.1\r\n" HOST UPG KEY VER VER "\r\n", 426},
        };
        char resp[1024];
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int st = accept_req(cases[i].req, NULL, resp, sizeof(resp));
                cr_assert_eq(st, cases[i].status, "case %zu: %d", i, st);
                char want[32];
                snprintf(want, sizeof(want), "HTTP/1.1 %d ", cases[i].status);
                cr_assert(strncmp(resp, want, strlen(want)) == 0, "case %zu: %s", i, resp);
                cr_assert_not_null(strstr(resp, "Connection: close\r\n"));
                if (st == 426)
                        cr_assert_not_null(strstr(resp, "Sec-WebSocket-Version: 13\r\n"));
        }
}

Test(websocket, handshake_origin_allow_list)
{
        static const char *const origins[] = {"https://good.example", "http://localhost:8080"};
        struct tern_ws_accept_opts o = {.origins = origins, .norigins = 2};
        char resp[1024];
        const char *base = "GET / HTTP/1.1\r\n" HOST UPG KEY VER;
        char req[512];

        snprintf(req, sizeof(req), "%sOrigin: https://good.example\r\n\r\n", base);
        cr_assert_eq(accept_req(req, &o, resp, sizeof(resp)), 101);
        snprintf(req, sizeof(req), "%sOrigin: HTTP://LocalHost:8080\r\n\r\n", base);
        cr_assert_eq(accept_req(req, &o, resp, sizeof(resp)), 101);
        snprintf(req, sizeof(req), "%sOrigin: https://evil.example\r\n\r\n", base);
        cr_assert_eq(accept_req(req, &o, resp, sizeof(resp)), 403);
        cr_assert(strncmp(resp, "HTTP/1.1 403 Forbidden\r\n", 24) == 0);
        snprintf(req, sizeof(req), "%sOrigin: https://good.example.evil\r\n\r\n", base);
        cr_assert_eq(accept_req(req, &o, resp, sizeof(resp)), 403);
        snprintf(req, sizeof(req), "%sOrigin: https://good.example\r\nOrigin: x\r\n\r\n", base);
        cr_assert_eq(accept_req(req, &o, resp, sizeof(resp)), 403);
        snprintf(req, sizeof(req), "%s\r\n", base);
        cr_assert_eq(accept_req(req, &o, resp, sizeof(resp)), 403);
        o.allow_no_origin = true;
        cr_assert_eq(accept_req(req, &o, resp, sizeof(resp)), 101);
        /* No list: any Origin. */
        snprintf(req, sizeof(req), "%sOrigin: https://evil.example\r\n\r\n", base);
        cr_assert_eq(accept_req(req, NULL, resp, sizeof(resp)), 101);
        struct tern_ws_accept_opts many = {.origins = origins, .norigins = TERN_WS_MAX_ORIGINS + 1};
        cr_assert_eq(accept_req(req, &many, resp, sizeof(resp)), -EINVAL);
        cr_assert_str_eq(resp, "");
}
