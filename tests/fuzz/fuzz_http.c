/*
 * libFuzzer harness for proto/http.
 *
 * Input: one config byte (0: the default limits; else small limits drawn
 * from its bits, so that every limit is reached), then fuzz_common.h's
 * layout: n, n cut lengths, the stream.
 *
 * fuzz_codec() cannot drive this codec as it is, because an HTTP frame
 * lends a struct tern_http_request instead of a slice of the input; this
 * file has the same loop with the same invariants, adapted:
 *   - consumed <= held; a frame only with a consume; errors are TERN_EFRAME,
 *     TERN_ETOOBIG (or -ENOMEM) and come with a status the codec names
 *   - need-more only below the largest request the limits allow
 *   - every view of a request lies inside the consumed bytes or the
 *     codec's own buffer, and within its limit
 *   - the same requests and the same error whole and in pieces
 *   - round trip: each request written again in canonical form (fields
 *     kept, Content-Length for the body) decodes to the same request
 */
#include <errno.h>

#include "fuzz_common.h"
#include "http.h"

struct http_fuzz {
        struct tern_http_config cfg;
        size_t bound;          /* need-more only while holding fewer bytes */
        struct tern_buf again; /* canonical re-encodings of the requests */
        struct fuzz_log want;  /* their serialisations, for the round trip */
};

static void log_view(struct fuzz_log *l, const void *p, size_t n)
{
        uint64_t len = n;
        fuzz_log_put(l, &len, sizeof(len));
        fuzz_log_put(l, p, n);
}

static bool is_framing(const struct tern_http_header *h)
{
        static const char *const names[] = {"content-length", "transfer-encoding"};
        for (size_t k = 0; k < 2; k++) {
                size_t n = strlen(names[k]);
                if (h->name_len != n)
                        continue;
                size_t i = 0;
                while (i < n && (h->name[i] | 0x20) == names[k][i])
                        i++;
                if (i == n)
                        return true;
        }
        return false;
}

/* Serialises what the round trip must keep: method, path, version, the
 * fields other than the framing ones, the body. */
static void log_request(struct fuzz_log *l, const struct tern_http_request *r)
{
        uint8_t minor = (uint8_t)r->version_minor;
        log_view(l, r->method, r->method_len);
        log_view(l, r->path, r->path_len);
        fuzz_log_put(l, &minor, 1);
        for (size_t i = 0; i < r->nheaders; i++) {
                if (is_framing(&r->headers[i]))
                        continue;
                log_view(l, r->headers[i].name, r->headers[i].name_len);
                log_view(l, r->headers[i].value, r->headers[i].value_len);
        }
        log_view(l, r->body ? r->body : (const uint8_t *)"", r->body_len);
}

/* Everything about a frame, for comparing pieces with whole. */
static void log_frame(struct fuzz_log *l, const struct tern_http_request *r)
{
        uint8_t flags[6] = {
            (uint8_t)r->part,    (uint8_t)r->method_id,       (uint8_t)r->keep_alive,
            (uint8_t)r->chunked, (uint8_t)r->expect_continue, (uint8_t)r->has_content_length};
        fuzz_log_put(l, flags, sizeof(flags));
        log_request(l, r);
        for (size_t i = 0; i < r->ntrailers; i++) {
                log_view(l, r->trailers[i].name, r->trailers[i].name_len);
                log_view(l, r->trailers[i].value, r->trailers[i].value_len);
        }
}

static bool inside(const void *p, size_t n, const uint8_t *lo, size_t len)
{
        const uint8_t *q = p;
        return n == 0 || (q >= lo && n <= len && (size_t)(q - lo) <= len - n);
}

/* Appends @r in canonical form: what the codec must decode back to it. */
static void reencode(struct tern_buf *b, const struct tern_http_request *r)
{
        char tail[32];
        FUZZ_CHECK(tern_buf_append(b, r->method, r->method_len) == 0, "out of memory");
        FUZZ_CHECK(tern_buf_append(b, " ", 1) == 0, "out of memory");
        FUZZ_CHECK(tern_buf_append(b, r->path, r->path_len) == 0, "out of memory");
        int n = snprintf(tail, sizeof(tail), " HTTP/1.%d\r\n", r->version_minor);
        FUZZ_CHECK(tern_buf_append(b, tail, (size_t)n) == 0, "out of memory");
        for (size_t i = 0; i < r->nheaders; i++)
                if (!is_framing(&r->headers[i]))
                        FUZZ_CHECK(tern_http_put_header(b, r->headers[i].name,
                                                        r->headers[i].name_len, r->headers[i].value,
                                                        r->headers[i].value_len) == 0,
                                   "a decoded field does not encode");
        FUZZ_CHECK(tern_http_put_body(b, r->body, r->body_len) == 0, "out of memory");
}

/*
 * The connection's loop over @stream cut at @cuts (cycled; whole when
 * @ncuts is 0), bytes moved to a fresh allocation per read. Logs every frame;
 * with @rt, re-encodes each whole request for the round trip.
 */
static void run(struct http_fuzz *hf, const uint8_t *stream, size_t len, const uint8_t *cuts,
                size_t ncuts, struct fuzz_log *log, bool rt)
{
        struct tern_http_state *s = tern_http_state_new(&hf->cfg);
        uint8_t *buf = NULL;
        size_t off = 0, have = 0, pos = 0, k = 0, calls = 0;

        FUZZ_CHECK(s, "the harness built a config the codec refuses");
        log->len = 0;
        log->err = 0;
        while (pos < len && !log->err) {
                size_t n = ncuts ? (size_t)cuts[k++ % ncuts] + 1 : len;
                if (n > len - pos)
                        n = len - pos;
                uint8_t *nb = malloc(have + n);
                FUZZ_CHECK(nb, "out of memory");
                if (have)
                        memcpy(nb, buf + off, have);
                memcpy(nb + have, stream + pos, n);
                free(buf);
                buf = nb;
                off = 0;
                have += n;
                pos += n;
                for (;;) {
                        struct tern_frame f = {.kind = TERN_FRAME_NONE};
                        const uint8_t *at = buf + off;
                        ssize_t r = tern_http_decode(s, at, have, &f);

                        FUZZ_CHECK(++calls <= 2 * pos, "%zu decode calls for %zu bytes", calls,
                                   pos);
                        if (r < 0) {
                                int st = tern_http_state_status(s);
                                FUZZ_CHECK(r == TERN_EFRAME || r == TERN_ETOOBIG || r == -ENOMEM,
                                           "error %zd", r);
                                FUZZ_CHECK(f.kind == TERN_FRAME_NONE, "frame with an error");
                                FUZZ_CHECK(st >= 400 && st <= 505 && tern_http_state_reason(s),
                                           "error %zd without a status", r);
                                FUZZ_CHECK(tern_http_error_status((int)r) == st,
                                           "thread's status %d, state's %d",
                                           tern_http_error_status((int)r), st);
                                log->err = r;
                                break;
                        }
                        if (r == 0) {
                                FUZZ_CHECK(f.kind == TERN_FRAME_NONE, "frame without consuming");
                                FUZZ_CHECK(have < hf->bound,
                                           "needs more while holding %zu bytes (bound %zu)", have,
                                           hf->bound);
                                break;
                        }
                        FUZZ_CHECK((size_t)r <= have, "consumed %zd of %zu", r, have);
                        if (f.kind != TERN_FRAME_NONE) {
                                const struct tern_http_request *q = tern_http_request_of(&f);
                                FUZZ_CHECK(q, "a frame that is not a request");
                                FUZZ_CHECK(q->method_len + q->path_len < hf->cfg.max_request_line,
                                           "request line over its limit");
                                FUZZ_CHECK(q->nheaders + q->ntrailers <= hf->cfg.max_headers,
                                           "%zu fields", q->nheaders + q->ntrailers);
                                FUZZ_CHECK(q->body_len <= hf->cfg.max_body, "body of %zu",
                                           q->body_len);
                                FUZZ_CHECK(q->part == TERN_HTTP_PART_WHOLE || q->body_len == 0,
                                           "a head part with a body");
                                /* Lent from the input unless joined (several
                                 * chunks) or from a stored 100-continue head. */
                                if (!q->expect_continue)
                                        FUZZ_CHECK(
                                            inside(q->method, q->method_len, at, (size_t)r) &&
                                                inside(q->path, q->path_len, at, (size_t)r),
                                            "request line outside the consumed bytes");
                                if (!q->chunked)
                                        FUZZ_CHECK(inside(q->body, q->body_len, at, (size_t)r),
                                                   "body outside the consumed bytes");
                                log_frame(log, q);
                                if (rt && q->part == TERN_HTTP_PART_WHOLE) {
                                        reencode(&hf->again, q);
                                        log_request(&hf->want, q);
                                }
                        }
                        off += (size_t)r;
                        have -= (size_t)r;
                }
        }
        free(buf);
        tern_http_state_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fuzz_input in = {data, size};
        struct http_fuzz hf = {.again = TERN_BUF_INIT};
        uint8_t c = fuzz_byte(&in);

        tern_http_config_init(&hf.cfg);
        if (c) {
                hf.cfg.max_request_line = 16 + (c & 7) * 8u;
                hf.cfg.max_header_bytes = 2 + ((c >> 3) & 7) * 24u;
                hf.cfg.max_headers = 1 + ((c >> 6) & 3) * 3u;
                hf.cfg.max_body = (c & 0x1f) * 3u;
                hf.cfg.max_chunk_framing = 5 + ((c >> 2) & 7) * 6u;
        }
        FUZZ_CHECK(tern_http_config_check(&hf.cfg) == 0, "the harness built a bad config");
        hf.bound = hf.cfg.max_request_line + 2 + hf.cfg.max_header_bytes + hf.cfg.max_body +
                   hf.cfg.max_chunk_framing + hf.cfg.max_header_bytes;

        size_t ncuts = fuzz_byte(&in);
        if (ncuts > in.left)
                ncuts = in.left;
        const uint8_t *cuts = in.p;
        const uint8_t *stream = in.p + ncuts;
        size_t len = in.left - ncuts;
        static const uint8_t one = 0;
        if (ncuts == 0) {
                cuts = &one;
                ncuts = 1;
        }

        struct fuzz_log pieces = {0}, whole = {0}, got = {0};
        run(&hf, stream, len, cuts, ncuts, &pieces, true);
        run(&hf, stream, len, NULL, 0, &whole, false);
        FUZZ_CHECK(pieces.err == whole.err, "error %zd in pieces, %zd whole", pieces.err,
                   whole.err);
        FUZZ_CHECK(pieces.len == whole.len &&
                       (whole.len == 0 || memcmp(pieces.p, whole.p, whole.len) == 0),
                   "requests differ between pieces and whole");

        /* The round trip, with room for any request the fuzzer's limits let
         * through plus the Content-Length field it may gain. */
        struct tern_http_config roomy = hf.cfg;
        roomy.max_header_bytes += 64;
        roomy.max_headers += 1;
        struct tern_http_state *s = tern_http_state_new(&roomy);
        size_t off = 0;
        const uint8_t *p = tern_buf_data(&hf.again);
        size_t plen = tern_buf_len(&hf.again);
        while (off < plen) {
                struct tern_frame f = {.kind = TERN_FRAME_NONE};
                ssize_t r = tern_http_decode(s, p + off, plen - off, &f);
                FUZZ_CHECK(r > 0, "a re-encoded request decodes to %zd (%s)", r,
                           tern_http_state_reason(s) ? tern_http_state_reason(s) : "need more");
                const struct tern_http_request *q = tern_http_request_of(&f);
                if (q && q->part == TERN_HTTP_PART_WHOLE)
                        log_request(&got, q);
                off += (size_t)r;
        }
        tern_http_state_free(s);
        FUZZ_CHECK(got.len == hf.want.len &&
                       (got.len == 0 || memcmp(got.p, hf.want.p, got.len) == 0),
                   "re-encoded requests decode differently");
        free(got.p);
        free(hf.want.p);
        tern_buf_free(&hf.again);
        free(pieces.p);
        free(whole.p);
        return 0;
}
