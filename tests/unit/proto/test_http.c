/*
 * The HTTP/1.1 codec: requests parsed, every smuggling and limit rejection
 * with its status, segment invariance at every split point, pipelining,
 * 100-continue, chunked bodies with extensions and trailers, and the
 * response encoders.
 *
 * Requests are turned into one line of text each (see show()), so a test
 * states what a whole stream must decode to in one string, and runs over
 * different segmentations compare as strings.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "guard.h"
#include "http.h"

/* ---- decoding a stream the way a connection does ---- */

struct run {
        char *text; /* one show() line per frame, then "ERR <status>\n" or nothing */
        size_t len, cap;
        ssize_t err;
        int status;
        size_t frames;
        size_t left; /* bytes never consumed */
};

static void put(struct run *r, const char *p, size_t n)
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
        char tmp[256];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        put(r, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* "W GET /p 1 ka ec ch h[Host=a,X=b] t[T=c] b[hello]" */
static void show(struct run *r, const struct tern_http_request *q)
{
        putf(r, "%c ", q->part == TERN_HTTP_PART_HEAD ? 'H' : 'W');
        put(r, q->method, q->method_len);
        put(r, " ", 1);
        put(r, q->path, q->path_len);
        putf(r, " %d%s%s%s h[", q->version_minor, q->keep_alive ? " ka" : "",
             q->expect_continue ? " ec" : "", q->chunked ? " ch" : "");
        for (size_t i = 0; i < q->nheaders; i++) {
                if (i)
                        put(r, ",", 1);
                put(r, q->headers[i].name, q->headers[i].name_len);
                put(r, "=", 1);
                put(r, q->headers[i].value, q->headers[i].value_len);
        }
        put(r, "]", 1);
        if (q->ntrailers) {
                put(r, " t[", 3);
                for (size_t i = 0; i < q->ntrailers; i++) {
                        if (i)
                                put(r, ",", 1);
                        put(r, q->trailers[i].name, q->trailers[i].name_len);
                        put(r, "=", 1);
                        put(r, q->trailers[i].value, q->trailers[i].value_len);
                }
                put(r, "]", 1);
        }
        if (q->body_len) {
                put(r, " b[", 3);
                put(r, (const char *)q->body, q->body_len);
                put(r, "]", 1);
        } else {
                cr_assert_null(q->body, "an empty body has a pointer");
        }
        put(r, "\n", 1);
}

/*
 * Decodes @len bytes of @in cut into pieces of @step bytes (0: whole, then
 * @cut2 splits once at that offset instead when step is 0 and cut2 > 0).
 * The unconsumed bytes are copied to a fresh, exactly sized allocation on
 * every read, so stale pointers and over-reads trip ASan.
 */
static struct run decode_cuts(const struct tern_http_config *cfg, const void *in, size_t len,
                              size_t step, size_t cut2)
{
        struct run r = {0};
        struct tern_http_state *s = tern_http_state_new(cfg);
        cr_assert_not_null(s);
        uint8_t *buf = NULL;
        size_t have = 0, pos = 0;

        put(&r, "", 0);
        while (pos < len && !r.err) {
                size_t n = step ? step : (cut2 && pos < cut2 ? cut2 : len - pos);
                if (n > len - pos)
                        n = len - pos;
                uint8_t *nb = malloc(have + n);
                cr_assert_not_null(nb);
                if (have)
                        memcpy(nb, buf, have);
                memcpy(nb + have, (const uint8_t *)in + pos, n);
                free(buf);
                buf = nb;
                have += n;
                pos += n;
                size_t off = 0;
                for (;;) {
                        struct tern_frame f = {.kind = TERN_FRAME_NONE};
                        ssize_t got = tern_http_decode(s, buf + off, have - off, &f);
                        if (got < 0) {
                                cr_assert_eq(f.kind, TERN_FRAME_NONE);
                                r.err = got;
                                r.status = tern_http_state_status(s);
                                cr_assert_eq(tern_http_error_status((int)got), r.status,
                                             "thread's status differs from the state's");
                                putf(&r, "ERR %d\n", r.status);
                                break;
                        }
                        if (got == 0)
                                break;
                        cr_assert_leq((size_t)got, have - off);
                        if (f.kind == TERN_FRAME_DATA) {
                                const struct tern_http_request *q = tern_http_request_of(&f);
                                cr_assert_not_null(q);
                                show(&r, q);
                                r.frames++;
                        }
                        off += (size_t)got;
                }
                /* Keep the rest at a new address, as a connection may. */
                have -= off;
                uint8_t *rest = malloc(have ? have : 1);
                cr_assert_not_null(rest);
                memcpy(rest, buf + off, have);
                free(buf);
                buf = rest;
        }
        r.left = have;
        free(buf);
        tern_http_state_free(s);
        return r;
}

static struct run decode(const struct tern_http_config *cfg, const char *in)
{
        return decode_cuts(cfg, in, strlen(in), 0, 0);
}

static void run_free(struct run *r)
{
        free(r->text);
}

/* The stream decodes to @want whole, byte by byte, and split in two at
 * every offset. */
static void expect_all_splits(const struct tern_http_config *cfg, const char *in, const char *want)
{
        size_t len = strlen(in);
        struct run whole = decode_cuts(cfg, in, len, 0, 0);
        cr_assert_str_eq(whole.text, want, "whole:\n%s\nwant:\n%s", whole.text, want);
        struct run bytes = decode_cuts(cfg, in, len, 1, 0);
        cr_assert_str_eq(bytes.text, want, "byte by byte:\n%s", bytes.text);
        /* After an error nothing is read any more, so what is left over
         * depends on the pieces; only a clean run must leave the same. */
        cr_assert(whole.err || bytes.left == whole.left);
        for (size_t cut = 1; cut < len; cut++) {
                struct run two = decode_cuts(cfg, in, len, 0, cut);
                cr_assert_str_eq(two.text, want, "split at %zu:\n%s", cut, two.text);
                cr_assert(whole.err || two.left == whole.left);
                run_free(&two);
        }
        run_free(&whole);
        run_free(&bytes);
}

/* @in is rejected with @status, whatever the segmentation. */
static void expect_status(const struct tern_http_config *cfg, const char *in, int status)
{
        char want[32];
        snprintf(want, sizeof(want), "ERR %d\n", status);
        struct run r = decode(cfg, in);
        cr_assert_str_eq(r.text, want, "%s\ngot:\n%s", in, r.text);
        cr_assert_eq(r.err,
                     status == 413 || status == 414 || status == 431 ? TERN_ETOOBIG : TERN_EFRAME);
        run_free(&r);
        expect_all_splits(cfg, in, want);
}

static struct tern_http_config small(size_t line, size_t hdr_bytes, uint32_t nhdr, size_t body,
                                     size_t framing)
{
        struct tern_http_config c;
        tern_http_config_init(&c);
        c.max_request_line = line;
        c.max_header_bytes = hdr_bytes;
        c.max_headers = nhdr;
        c.max_body = body;
        c.max_chunk_framing = framing;
        return c;
}

#define H "Host: a\r\n"

/* ---- configuration ---- */

Test(http, config_defaults_and_ranges)
{
        struct tern_http_config c;
        memset(&c, 0xa5, sizeof(c));
        tern_http_config_init(&c);
        cr_assert_eq(c.max_request_line, 8192);
        cr_assert_eq(c.max_header_bytes, 16384);
        cr_assert_eq(c.max_headers, 64);
        cr_assert_eq(c.max_body, 1u << 20);
        cr_assert_eq(c.max_chunk_framing, 16384);
        cr_assert_eq(tern_http_config_check(&c), 0);

        struct tern_http_config bad[] = {
            small(15, 64, 8, 64, 64),
            small(TERN_HTTP_MAX_SIZE_LIMIT + 1, 64, 8, 64, 64),
            small(64, 1, 8, 64, 64),
            small(64, 64, 0, 64, 64),
            small(64, 64, TERN_HTTP_MAX_HEADERS_LIMIT + 1, 64, 64),
            small(64, 64, 8, TERN_HTTP_MAX_SIZE_LIMIT + 1, 64),
            small(64, 64, 8, 64, 4),
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                cr_assert_eq(tern_http_config_check(&bad[i]), -EINVAL, "config %zu", i);
                errno = 0;
                cr_assert_null(tern_http_state_new(&bad[i]));
                cr_assert_eq(errno, EINVAL);
        }
        void *st = tern_http_codec.state_new(NULL);
        cr_assert_not_null(st, "NULL config means the defaults");
        tern_http_codec.state_free(st);
}

/* ---- what a request decodes to ---- */

Test(http, simple_get)
{
        expect_all_splits(NULL,
                          "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nX-A:  b c \r\n\r\n",
                          "W GET /index.html?q=1 1 ka h[Host=example.com,X-A=b c]\n");
}

Test(http, request_fields_and_lookup)
{
        const char *in = "PATCH /x HTTP/1.1\r\nhOsT: a\r\nEmpty:\r\n\r\n";
        struct tern_http_state *s = tern_http_state_new(NULL);
        struct guard g = GUARD_INIT;
        const uint8_t *p = guard_place(&g, in, strlen(in));
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        cr_assert_eq(tern_http_decode(s, p, strlen(in), &f), (ssize_t)strlen(in));
        const struct tern_http_request *q = tern_http_request_of(&f);
        cr_assert_not_null(q);
        cr_assert_eq(q->method_id, TERN_HTTP_PATCH);
        cr_assert_eq(q->part, TERN_HTTP_PART_WHOLE);
        cr_assert_eq(q->nheaders, 2);
        cr_assert(q->method >= (const char *)p && q->path < (const char *)p + strlen(in),
                  "views point into the input");
        const struct tern_http_header *h = tern_http_find_header(q, "HOST");
        cr_assert_not_null(h);
        cr_assert_eq(h->value_len, 1);
        h = tern_http_find_header(q, "empty");
        cr_assert_not_null(h);
        cr_assert_eq(h->value_len, 0);
        cr_assert_null(tern_http_find_header(q, "Hos"));
        cr_assert_null(q->body);

        struct tern_frame other = {.kind = TERN_FRAME_DATA, .data = p, .len = 3};
        cr_assert_null(tern_http_request_of(&other));
        guard_free(&g);
        tern_http_state_free(s);
}

Test(http, methods_named_and_extension)
{
        expect_all_splits(NULL, "DELETE /a HTTP/1.1\r\n" H "\r\nPURGE /b HTTP/1.1\r\n" H "\r\n",
                          "W DELETE /a 1 ka h[Host=a]\nW PURGE /b 1 ka h[Host=a]\n");
        struct tern_http_state *s = tern_http_state_new(NULL);
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        const char *in = "get / HTTP/1.1\r\n" H "\r\n"; /* methods are case-sensitive */
        cr_assert_gt(tern_http_decode(s, (const uint8_t *)in, strlen(in), &f), 0);
        cr_assert_eq(tern_http_request_of(&f)->method_id, TERN_HTTP_OTHER);
        tern_http_state_free(s);
}

Test(http, keep_alive_rules)
{
        expect_all_splits(NULL,
                          "GET / HTTP/1.1\r\nConnection: close\r\n" H "\r\n"
                          "GET / HTTP/1.0\r\n\r\n"
                          "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
                          "GET / HTTP/1.1\r\n" H "Connection: foo, CLOSE\r\n\r\n",
                          "W GET / 1 h[Connection=close,Host=a]\n"
                          "W GET / 0 h[]\n"
                          "W GET / 0 ka h[Connection=Keep-Alive]\n"
                          "W GET / 1 h[Host=a,Connection=foo, CLOSE]\n");
}

Test(http, pipelining)
{
        const char *in = "GET /1 HTTP/1.1\r\n" H "\r\n"
                         "POST /2 HTTP/1.1\r\n" H "Content-Length: 3\r\n\r\nabc"
                         "GET /3 HTTP/1.1\r\n" H "\r\n"
                         "GET /4 HTT"; /* the next one, incomplete */
        const char *want = "W GET /1 1 ka h[Host=a]\n"
                           "W POST /2 1 ka h[Host=a,Content-Length=3] b[abc]\n"
                           "W GET /3 1 ka h[Host=a]\n";
        expect_all_splits(NULL, in, want);
        struct run r = decode(NULL, in);
        cr_assert_eq(r.frames, 3);
        cr_assert_eq(r.left, strlen("GET /4 HTT"), "the partial request stays unconsumed");
        run_free(&r);
}

Test(http, leading_empty_lines_ignored)
{
        expect_all_splits(NULL, "\r\n\r\nGET / HTTP/1.1\r\n" H "\r\n\r\n",
                          "W GET / 1 ka h[Host=a]\n");
}

Test(http, content_length_body_is_lent)
{
        const char *in = "PUT /k HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\nhello";
        expect_all_splits(NULL, in, "W PUT /k 1 ka h[Host=a,Content-Length=5] b[hello]\n");
        struct tern_http_state *s = tern_http_state_new(NULL);
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        cr_assert_eq(tern_http_decode(s, (const uint8_t *)in, strlen(in), &f), (ssize_t)strlen(in));
        const struct tern_http_request *q = tern_http_request_of(&f);
        cr_assert_eq((const char *)q->body, in + strlen(in) - 5, "not copied");
        cr_assert(q->has_content_length && q->content_length == 5);
        tern_http_state_free(s);
}

Test(http, chunked_single_chunk_is_lent)
{
        const char *in = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"
                         "5\r\nhello\r\n0\r\n\r\n";
        expect_all_splits(NULL, in,
                          "W POST / 1 ka ch h[Host=a,Transfer-Encoding=chunked] b[hello]\n");
        struct tern_http_state *s = tern_http_state_new(NULL);
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        cr_assert_eq(tern_http_decode(s, (const uint8_t *)in, strlen(in), &f), (ssize_t)strlen(in));
        const struct tern_http_request *q = tern_http_request_of(&f);
        cr_assert_eq((const char *)q->body, strstr(in, "hello"), "one chunk is not copied");
        tern_http_state_free(s);
}

Test(http, chunked_with_extensions_and_trailers)
{
        const char *in = "POST /up HTTP/1.1\r\n" H "transfer-encoding:  Chunked \r\n\r\n"
                         "3;name=value\r\nabc\r\n"
                         "A ; quoted=\"a b\";x\r\n0123456789\r\n"
                         "000\r\n"
                         "Checksum: 42\r\nX-T: y\r\n\r\n"
                         "GET /next HTTP/1.1\r\n" H "\r\n";
        expect_all_splits(NULL, in,
                          "W POST /up 1 ka ch h[Host=a,transfer-encoding=Chunked] "
                          "t[Checksum=42,X-T=y] b[abc0123456789]\n"
                          "W GET /next 1 ka h[Host=a]\n");
}

Test(http, chunked_empty_body)
{
        expect_all_splits(NULL,
                          "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                          "W POST / 1 ka ch h[Host=a,Transfer-Encoding=chunked]\n");
}

Test(http, expect_continue_delivers_head_first)
{
        const char *in =
            "PUT /big HTTP/1.1\r\n" H "Expect: 100-Continue\r\nContent-Length: 4\r\n\r\n"
            "data"
            "POST /c HTTP/1.1\r\n" H "Expect: 100-continue\r\n"
            "Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\nT: 1\r\n\r\n"
            "GET /none HTTP/1.1\r\n" H "Expect: 100-continue\r\n\r\n";
        const char *want =
            "H PUT /big 1 ka ec h[Host=a,Expect=100-Continue,Content-Length=4]\n"
            "W PUT /big 1 ka ec h[Host=a,Expect=100-Continue,Content-Length=4] b[data]\n"
            "H POST /c 1 ka ec ch h[Host=a,Expect=100-continue,Transfer-Encoding=chunked]\n"
            "W POST /c 1 ka ec ch h[Host=a,Expect=100-continue,Transfer-Encoding=chunked] "
            "t[T=1] b[abc]\n"
            "W GET /none 1 ka ec h[Host=a,Expect=100-continue]\n";
        expect_all_splits(NULL, in, want);
}

/* ---- rejections: smuggling and malformed input ---- */

Test(http, rejects_bare_lf_and_cr)
{
        expect_status(NULL, "GET / HTTP/1.1\n" H "\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\n" H "\n", 400);
        expect_status(NULL, "\nGET / HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "\rGET / HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400);
        expect_status(NULL, "GET /\r HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\r\n" H "\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\n" H "\r\r\n", 400);
}

Test(http, rejects_obsolete_line_folding)
{
        expect_status(NULL, "GET / HTTP/1.1\r\n" H "X: a\r\n b\r\n\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\n" H "X: a\r\n\tb\r\n\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);
}

Test(http, rejects_malformed_field_lines)
{
        expect_status(NULL, "GET / HTTP/1.1\r\n" H "Content-Length : 0\r\n\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\n" H "X\r\n\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\n" H ": v\r\n\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\n" H "X(y): v\r\n\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\n" H "X: a\x01z\r\n\r\n", 400);
        static const char nul[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
        struct run r = decode_cuts(NULL, nul, sizeof(nul) - 1, 0, 0);
        cr_assert_str_eq(r.text, "ERR 400\n");
        run_free(&r);
}

Test(http, rejects_malformed_request_lines)
{
        expect_status(NULL, "GET  / HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1 \r\n" H "\r\n", 400);
        expect_status(NULL, "GET /a b HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "G@T / HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "GET / http/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.10\r\n" H "\r\n", 400);
        expect_status(NULL, "GET / HTTP/1\r\n" H "\r\n", 400);
        expect_status(NULL, "GET /\x80 HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "GET\r\n" H "\r\n", 400);
}

Test(http, request_target_forms)
{
        expect_all_splits(NULL,
                          "GET http://a/b?c HTTP/1.1\r\n" H "\r\n"
                          "OPTIONS * HTTP/1.1\r\n" H "\r\n"
                          "CONNECT a.example:443 HTTP/1.1\r\n" H "\r\n",
                          "W GET http://a/b?c 1 ka h[Host=a]\n"
                          "W OPTIONS * 1 ka h[Host=a]\n"
                          "W CONNECT a.example:443 1 ka h[Host=a]\n");
        expect_status(NULL, "GET plain HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "GET * HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "GET :x HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "GET 1http://a HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "CONNECT /x HTTP/1.1\r\n" H "\r\n", 400);
        expect_status(NULL, "CONNECT a.example HTTP/1.1\r\n" H "\r\n", 400);
}

Test(http, rejects_unsupported_versions_with_505)
{
        expect_status(NULL, "GET / HTTP/2.0\r\n" H "\r\n", 505);
        expect_status(NULL, "GET / HTTP/1.2\r\n" H "\r\n", 505);
        expect_status(NULL, "GET / HTTP/0.9\r\n\r\n", 505);
}

Test(http, rejects_content_length_with_transfer_encoding)
{
        expect_status(NULL,
                      "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                      "\r\n0\r\n\r\n",
                      400);
        expect_status(NULL,
                      "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"
                      "\r\n0\r\n\r\n",
                      400);
}

Test(http, rejects_duplicate_and_malformed_content_length)
{
        expect_status(
            NULL, "POST / HTTP/1.1\r\n" H "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400);
        expect_status(NULL,
                      "POST / HTTP/1.1\r\n" H "Content-Length: 3\r\ncontent-length: 4\r\n\r\nabcd",
                      400);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Content-Length: 3, 3\r\n\r\nabc", 400);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Content-Length: +3\r\n\r\nabc", 400);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Content-Length: -1\r\n\r\n", 400);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Content-Length: 0x3\r\n\r\nabc", 400);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", 400);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Content-Length: 1 2\r\n\r\nabc", 400);
}

Test(http, rejects_bad_transfer_encoding)
{
        expect_status(NULL,
                      "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                      400);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n",
                      400);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n",
                      400);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n",
                      501);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", 501);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Transfer-Encoding: xchunked\r\n\r\n", 501);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n", 400);
        expect_status(NULL, "POST / HTTP/1.1\r\n" H "Transfer-Encoding: ,chunked\r\n\r\n", 400);
        expect_status(NULL, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
}

Test(http, rejects_missing_or_duplicate_host)
{
        expect_status(NULL, "GET / HTTP/1.1\r\n\r\n", 400);
        expect_status(NULL, "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
        expect_all_splits(NULL, "GET / HTTP/1.0\r\n\r\n", "W GET / 0 h[]\n");
}

Test(http, rejects_malformed_chunks)
{
        const char *head = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n";
        const char *bodies[] = {
            "zz\r\n",                /* not hex */
            "\r\n",                  /* no size */
            "-1\r\n",                /* signed */
            "5\r\nhelloXX0\r\n\r\n", /* no CRLF after the data */
            "5\nhello\r\n0\r\n\r\n", /* bare LF after the size */
            "5 \r\nhello\r\n",       /* whitespace without an extension */
            "5;a\x01\r\nhello\r\n",  /* CTL in an extension */
            "5;a\rb\r\nhello\r\n",   /* bare CR in an extension */
            "0\r\nT: a\n\r\n",       /* bare LF in a trailer */
            "0\r\n T: a\r\n\r\n",    /* folding in a trailer */
            "0\r\n\n",               /* bare LF ending the trailers */
        };
        for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
                char in[256];
                snprintf(in, sizeof(in), "%s%s", head, bodies[i]);
                expect_status(NULL, in, 400);
        }
}

/* ---- limits ---- */

Test(http, limit_request_line_414)
{
        struct tern_http_config c = small(32, 64, 8, 64, 64);
        /* 32 bytes exactly: accepted. */
        expect_all_splits(&c, "GET /aaaaaaaaaaaaaaaaaa HTTP/1.1\r\n" H "\r\n",
                          "W GET /aaaaaaaaaaaaaaaaaa 1 ka h[Host=a]\n");
        expect_status(&c, "GET /aaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n" H "\r\n", 414);
        /* Known before the line ends: no CRLF within the window. */
        struct run r = decode(&c, "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        cr_assert_str_eq(r.text, "ERR 414\n");
        run_free(&r);
}

Test(http, limit_header_bytes_431)
{
        struct tern_http_config c = small(64, 20, 8, 64, 64);
        /* "Host: a\r\nX: 12345\r\n\r\n" is 9 + 10 + 2 = 21 bytes: one too many. */
        expect_all_splits(&c, "GET / HTTP/1.1\r\nHost: a\r\nX: 1234\r\n\r\n",
                          "W GET / 1 ka h[Host=a,X=1234]\n");
        expect_status(&c, "GET / HTTP/1.1\r\nHost: a\r\nX: 12345\r\n\r\n", 431);
        struct run r = decode(&c, "GET / HTTP/1.1\r\nHost: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        cr_assert_str_eq(r.text, "ERR 431\n", "refused before the line ends");
        run_free(&r);
}

Test(http, limit_header_count_431)
{
        struct tern_http_config c = small(64, 1024, 3, 64, 64);
        expect_all_splits(&c, "GET / HTTP/1.1\r\n" H "A: 1\r\nB: 2\r\n\r\n",
                          "W GET / 1 ka h[Host=a,A=1,B=2]\n");
        expect_status(&c, "GET / HTTP/1.1\r\n" H "A: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431);
        /* Trailers share the count. */
        expect_status(&c,
                      "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"
                      "0\r\nT: 1\r\nU: 2\r\n\r\n",
                      431);
}

Test(http, limit_body_413)
{
        struct tern_http_config c = small(64, 1024, 8, 4, 64);
        expect_all_splits(&c, "POST / HTTP/1.1\r\n" H "Content-Length: 4\r\n\r\nabcd",
                          "W POST / 1 ka h[Host=a,Content-Length=4] b[abcd]\n");
        /* Refused at the header, before any of the body is buffered. */
        expect_status(&c, "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\n", 413);
        expect_status(&c, "POST / HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999\r\n\r\n",
                      413);
        const char *te = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n";
        char in[256];
        snprintf(in, sizeof(in), "%s2\r\nab\r\n3\r\n", te); /* 5 > 4, known at the size */
        expect_status(&c, in, 413);
        snprintf(in, sizeof(in), "%sFFFFFFFFFFFFFFFFFFFFFFFFF\r\n", te);
        expect_status(&c, in, 413);
        snprintf(in, sizeof(in), "%s2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n", te);
        expect_all_splits(&c, in, "W POST / 1 ka ch h[Host=a,Transfer-Encoding=chunked] b[abcd]\n");
}

Test(http, limit_chunk_framing_413)
{
        struct tern_http_config c = small(64, 1024, 8, 64, 16);
        const char *te = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n";
        char in[256];
        /* 3 + 2 per one-byte chunk: three fit with the last chunk (3 * 5 + 3 > 16,
         * two do: 2 * 5 + 3 = 13). */
        snprintf(in, sizeof(in), "%s1\r\na\r\n1\r\nb\r\n0\r\n\r\n", te);
        expect_all_splits(&c, in, "W POST / 1 ka ch h[Host=a,Transfer-Encoding=chunked] b[ab]\n");
        snprintf(in, sizeof(in), "%s1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n", te);
        expect_status(&c, in, 413);
        snprintf(in, sizeof(in), "%s1;aaaaaaaaaaaaaaaaaaaaaaaaaa\r\na\r\n0\r\n\r\n", te);
        expect_status(&c, in, 413);
}

Test(http, limit_trailer_bytes_431)
{
        struct tern_http_config c = small(64, 12, 8, 64, 64);
        expect_status(&c,
                      "POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
                      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                      431); /* the second head is over 12 bytes */
        struct tern_http_config d = small(64, 64, 8, 64, 64);
        d.max_header_bytes = 40;
        const char *in = "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"
                         "0\r\nAAAAAAAAAAAAAAAAAAAAA: 1234567890123456\r\n\r\n";
        expect_status(&d, in, 431);
}

/*
 * The contract's bound (codecs.md rule 4): decode never answers need-more
 * while holding the largest request the limits allow. Each prefix of an
 * endless request is fed at once; past the bound it must be an error.
 */
Test(http, never_needs_more_past_the_limits)
{
        struct tern_http_config c = small(32, 64, 8, 100, 32);
        size_t bound = c.max_request_line + 2 + c.max_header_bytes + c.max_body +
                       c.max_chunk_framing + c.max_header_bytes;
        const char *starts[] = {
            "GET /",                            /* endless request line */
            "GET / HTTP/1.1\r\nHost: a\r\nX: ", /* endless header */
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;", /* ext */
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: ",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n",
        };
        uint8_t *buf = malloc(bound + 1);
        for (size_t k = 0; k < sizeof(starts) / sizeof(starts[0]); k++) {
                size_t n = strlen(starts[k]);
                memcpy(buf, starts[k], n);
                memset(buf + n, 'a', bound + 1 - n);
                struct tern_http_state *s = tern_http_state_new(&c);
                struct tern_frame f = {.kind = TERN_FRAME_NONE};
                ssize_t r = tern_http_decode(s, buf, bound, &f);
                cr_assert_neq(r, TERN_CODEC_NEED_MORE, "stream %zu needs more past the bound", k);
                tern_http_state_free(s);
        }
        free(buf);
}

Test(http, truncated_input_never_read_past)
{
        const char *in = "POST /x HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"
                         "3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n";
        struct guard g = GUARD_INIT;
        for (size_t n = 0; n <= strlen(in); n++) {
                struct tern_http_state *s = tern_http_state_new(NULL);
                const uint8_t *p = guard_place(&g, in, n);
                struct tern_frame f = {.kind = TERN_FRAME_NONE};
                ssize_t r = tern_http_decode(s, p, n, &f);
                cr_assert_eq(r, n == strlen(in) ? (ssize_t)n : 0, "prefix of %zu: %zd", n, r);
                tern_http_state_free(s);
        }
        guard_free(&g);
}

/* ---- error statuses ---- */

Test(http, error_status_mapping)
{
        struct tern_http_state *s = tern_http_state_new(NULL);
        struct tern_frame f = {.kind = TERN_FRAME_NONE};
        const char *in = "GET / HTTP/3.0\r\n";
        ssize_t r = tern_http_decode(s, (const uint8_t *)in, strlen(in), &f);
        cr_assert_eq(r, TERN_EFRAME);
        cr_assert_eq(tern_http_state_status(s), 505);
        cr_assert_str_eq(tern_http_state_reason(s), "HTTP version not supported");
        cr_assert_eq(tern_http_error_status((int)r), 505);
        tern_http_state_free(s);
        /* Without a decode error to refer to, the fallbacks. */
        cr_assert_eq(tern_http_error_status(TERN_ETOOBIG), 413);
        cr_assert_eq(tern_http_error_status(-ENOMEM), 500);
        cr_assert_str_eq(tern_http_reason(431), "Request Header Fields Too Large");
        cr_assert_str_eq(tern_http_reason(299), "Unknown");
}

/* ---- random streams: segment invariance beyond the cases above ---- */

static uint64_t rng = 0x1234567;

static uint64_t rnd(void)
{
        uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

Test(http, random_streams_any_split)
{
        static const char *parts[] = {
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz",
            "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;x\r\nA\r\n"
            "2\r\nBC\r\n0\r\nT: v\r\n\r\n",
            "PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
            "\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            "GET / HTTP/1.1\nHost: a\r\n\r\n",
        };
        struct tern_http_config c = small(40, 96, 6, 16, 24);
        char in[1024];
        for (int stream = 0; stream < 400; stream++) {
                size_t len = 0;
                int n = 1 + (int)(rnd() % 5);
                for (int i = 0; i < n; i++) {
                        const char *p = parts[rnd() % (sizeof(parts) / sizeof(parts[0]))];
                        size_t l = strlen(p);
                        memcpy(in + len, p, l);
                        len += l;
                }
                if (rnd() % 4 == 0) /* one byte flipped */
                        in[rnd() % len] = (char)(rnd() & 0xff);
                struct run whole = decode_cuts(&c, in, len, 0, 0);
                for (size_t step = 1; step <= 7; step += 3) {
                        struct run cut = decode_cuts(&c, in, len, step, 0);
                        cr_assert_str_eq(cut.text, whole.text, "stream %d, step %zu", stream, step);
                        cr_assert(whole.err || cut.left == whole.left);
                        run_free(&cut);
                }
                run_free(&whole);
        }
}

/* ---- response encoders ---- */

static void expect_buf(struct tern_buf *b, const char *want)
{
        cr_assert_eq(tern_buf_len(b), strlen(want), "%.*s", (int)tern_buf_len(b),
                     (const char *)tern_buf_data(b));
        cr_assert(memcmp(tern_buf_data(b), want, strlen(want)) == 0, "%.*s", (int)tern_buf_len(b),
                  (const char *)tern_buf_data(b));
}

Test(http, encode_response_with_length)
{
        struct tern_buf b = TERN_BUF_INIT;
        cr_assert_eq(tern_http_put_status(&b, 200, NULL), 0);
        cr_assert_eq(tern_http_put_header(&b, "Content-Type", 12, "text/plain", 10), 0);
        cr_assert_eq(tern_http_put_body(&b, "Hello", 5), 0);
        cr_assert_eq(tern_http_put_status(&b, 299, "Fine"), 0);
        cr_assert_eq(tern_http_put_body(&b, NULL, 0), 0);
        expect_buf(&b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
                       "Hello"
                       "HTTP/1.1 299 Fine\r\nContent-Length: 0\r\n\r\n");
        tern_buf_free(&b);
}

Test(http, encode_chunked_response)
{
        struct tern_buf b = TERN_BUF_INIT;
        cr_assert_eq(tern_http_put_status(&b, 200, NULL), 0);
        cr_assert_eq(tern_http_put_chunked(&b), 0);
        cr_assert_eq(tern_http_put_chunk(&b, "0123456789abcdefXY", 18), 0);
        cr_assert_eq(tern_http_put_chunk(&b, "", 0), 0, "an empty chunk would end the body");
        cr_assert_eq(tern_http_put_chunk_end(&b), 0);
        expect_buf(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "12\r\n0123456789abcdefXY\r\n0\r\n\r\n");
        tern_buf_free(&b);
}

Test(http, encode_refuses_response_splitting)
{
        struct tern_buf b = TERN_BUF_INIT;
        cr_assert_eq(tern_http_put_header(&b, "X", 1, "a\r\nSet-Cookie: x", 16), -EINVAL);
        cr_assert_eq(tern_http_put_header(&b, "X\r\n", 3, "a", 1), -EINVAL);
        cr_assert_eq(tern_http_put_header(&b, "X Y", 3, "a", 1), -EINVAL);
        cr_assert_eq(tern_http_put_header(&b, "", 0, "a", 1), -EINVAL);
        cr_assert_eq(tern_http_put_header(&b, "X", 1, "a\0b", 3), -EINVAL);
        cr_assert_eq(tern_http_put_status(&b, 200, "OK\r\nX: y"), -EINVAL);
        cr_assert_eq(tern_http_put_status(&b, 99, NULL), -EINVAL);
        cr_assert_eq(tern_http_put_status(&b, 1000, NULL), -EINVAL);
        cr_assert_eq(tern_buf_len(&b), 0, "nothing appended");
        tern_buf_free(&b);
}

Test(http, encode_continue_and_errors)
{
        struct tern_buf b = TERN_BUF_INIT;
        cr_assert_eq(tern_http_put_continue(&b), 0);
        cr_assert_eq(tern_http_put_error(&b, 431), 0);
        expect_buf(&b, "HTTP/1.1 100 Continue\r\n\r\n"
                       "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                       "Content-Type: text/plain\r\nContent-Length: 32\r\n\r\n"
                       "Request Header Fields Too Large\n");
        tern_buf_free(&b);
}

Test(http, codec_encode_round_trip)
{
        struct tern_buf b = TERN_BUF_INIT;
        cr_assert_eq(tern_http_codec.encode(NULL, &b, "Hello, World!", 13), 0);
        expect_buf(&b, "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!");
        tern_buf_free(&b);
}
