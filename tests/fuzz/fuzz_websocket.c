/*
 * libFuzzer harness for proto/websocket.
 *
 * Input: one config byte (0: the default limits; else max_message and
 * max_fragments drawn from its bits, small enough that 4 KiB inputs reach
 * them), then fuzz_common.h's layout: n, n cut lengths, the stream.
 *
 * A WebSocket frame lends a struct tern_ws_message instead of a slice of the
 * input, so this file has fuzz_run()'s loop with the same invariants,
 * adapted:
 *   - consumed <= held; a frame only with a consume; errors are TERN_EFRAME
 *     or TERN_ETOOBIG and come with the close code the codec names (1002,
 *     1007, 1009), which tern_ws_error_code() repeats
 *   - need-more only below 14 + max(max_message, 125) held bytes
 *   - a message within its limits: data messages <= max_message and of at
 *     most max_fragments frames, control payloads <= 125, text is UTF-8,
 *     a ping's reply is its pong, a close's reply echoes its code
 *   - the same messages and the same error whole and in pieces
 *   - round trip: each message written again as masked client frames (in
 *     as many fragments as it came) decodes to the same messages
 * The same stream is also read as HTTP requests, each handed to
 * tern_ws_accept(), which must answer 101, 400, 403 or 426 with a
 * well-formed response.
 */
#include <errno.h>

#include "fuzz_common.h"
#include "http.h"
#include "websocket.h"

struct ws_fuzz {
        struct tern_ws_config cfg;
        size_t bound;          /* need-more only while holding fewer bytes */
        struct tern_buf again; /* the messages as client frames */
        struct fuzz_log want;  /* their serialisations, for the round trip */
        unsigned mask;         /* varies the masks of the re-encoding */
};

static void log_message(struct fuzz_log *l, const struct tern_ws_message *m)
{
        uint8_t op = (uint8_t)m->opcode;
        uint64_t len = m->len;
        fuzz_log_put(l, &op, 1);
        fuzz_log_put(l, &m->close_code, sizeof(m->close_code));
        fuzz_log_put(l, &m->fragments, sizeof(m->fragments));
        fuzz_log_put(l, &len, sizeof(len));
        fuzz_log_put(l, m->data, m->len);
}

static void check_message(const struct ws_fuzz *z, const struct tern_ws_message *m)
{
        switch (m->opcode) {
        case TERN_WS_TEXT:
                FUZZ_CHECK(tern_ws_utf8_valid(m->data, m->len), "text that is not UTF-8");
                /* fall through */
        case TERN_WS_BINARY:
                FUZZ_CHECK(m->len <= z->cfg.max_message, "message of %zu > %zu", m->len,
                           z->cfg.max_message);
                FUZZ_CHECK(m->fragments >= 1 && m->fragments <= z->cfg.max_fragments,
                           "%u fragments", m->fragments);
                FUZZ_CHECK(!m->reply, "a reply to a data message");
                break;
        case TERN_WS_PING:
                FUZZ_CHECK(m->len <= 125, "ping of %zu", m->len);
                FUZZ_CHECK(m->reply_len == 2 + m->len && m->reply[0] == 0x8a &&
                               m->reply[1] == m->len &&
                               (m->len == 0 || memcmp(m->reply + 2, m->data, m->len) == 0),
                           "the reply to a ping is not its pong");
                break;
        case TERN_WS_PONG:
                FUZZ_CHECK(m->len <= 125 && !m->reply, "pong of %zu", m->len);
                break;
        case TERN_WS_CLOSE:
                FUZZ_CHECK(m->len <= 123, "close reason of %zu", m->len);
                FUZZ_CHECK(tern_ws_utf8_valid(m->data, m->len), "close reason not UTF-8");
                if (m->close_code == TERN_WS_CLOSE_NO_STATUS)
                        FUZZ_CHECK(m->len == 0 && m->reply_len == 2 && m->reply[1] == 0,
                                   "bad reply to a close without a code");
                else
                        FUZZ_CHECK(m->reply_len == 4 &&
                                       (m->reply[2] << 8 | m->reply[3]) == m->close_code,
                                   "the reply to close %u does not echo it", m->close_code);
                FUZZ_CHECK(m->reply[0] == 0x88, "close reply opcode");
                break;
        default:
                FUZZ_CHECK(0, "opcode %d delivered", (int)m->opcode);
        }
}

/* The message again as client frames, in m->fragments pieces. */
static void reencode(struct ws_fuzz *z, const struct tern_ws_message *m)
{
        uint8_t mask[4];
        for (int i = 0; i < 4; i++)
                mask[i] = (uint8_t)(z->mask++ * 37);
        if (m->opcode == TERN_WS_CLOSE) {
                uint8_t p[125];
                size_t n = 0;
                if (m->close_code != TERN_WS_CLOSE_NO_STATUS) {
                        p[0] = (uint8_t)(m->close_code >> 8);
                        p[1] = (uint8_t)m->close_code;
                        memcpy(p + 2, m->data, m->len);
                        n = 2 + m->len;
                }
                FUZZ_CHECK(tern_ws_put_client_frame(&z->again, TERN_WS_CLOSE, true, mask, p, n) ==
                               0,
                           "re-encoding a close");
        } else if (m->opcode != TERN_WS_TEXT && m->opcode != TERN_WS_BINARY) {
                FUZZ_CHECK(tern_ws_put_client_frame(&z->again, m->opcode, true, mask, m->data,
                                                    m->len) == 0,
                           "re-encoding a control frame");
        } else {
                size_t k = m->fragments, at = 0;
                for (size_t i = 0; i < k; i++) {
                        size_t n = i + 1 == k ? m->len - at : m->len / k;
                        FUZZ_CHECK(tern_ws_put_client_frame(
                                       &z->again, i == 0 ? m->opcode : TERN_WS_CONTINUATION,
                                       i + 1 == k, mask, m->data + at, n) == 0,
                                   "re-encoding a fragment");
                        at += n;
                }
        }
        log_message(&z->want, m);
}

/* fuzz_run() for this codec; @z is NULL for runs that do not re-encode. */
static void ws_run(const struct tern_ws_config *cfg, size_t bound, const uint8_t *stream,
                   size_t len, const uint8_t *cuts, size_t ncuts, struct fuzz_log *log,
                   struct ws_fuzz *z, const struct ws_fuzz *limits)
{
        struct tern_ws_state *s = tern_ws_state_new(cfg);
        uint8_t *buf = NULL;
        size_t off = 0, have = 0, pos = 0, k = 0, calls = 0;

        FUZZ_CHECK(s, "state_new refused a config the harness built");
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
                        ssize_t r = tern_ws_decode(s, buf + off, have, &f);
                        FUZZ_CHECK(++calls <= 2 * pos, "%zu decode calls for %zu bytes", calls,
                                   pos);
                        if (r < 0) {
                                uint16_t code = tern_ws_state_close_code(s);
                                FUZZ_CHECK(f.kind == TERN_FRAME_NONE, "frame with an error");
                                FUZZ_CHECK((r == TERN_EFRAME && (code == 1002 || code == 1007)) ||
                                               (r == TERN_ETOOBIG && code == 1009),
                                           "error %zd with close code %u", r, code);
                                FUZZ_CHECK(tern_ws_error_code((int)r) == code,
                                           "tern_ws_error_code disagrees");
                                log->err = r * 10000 - code;
                                break;
                        }
                        if (r == 0) {
                                FUZZ_CHECK(f.kind == TERN_FRAME_NONE, "frame without consuming");
                                FUZZ_CHECK(have < bound, "needs more while holding %zu (bound %zu)",
                                           have, bound);
                                break;
                        }
                        FUZZ_CHECK((size_t)r <= have, "consumed %zd of %zu", r, have);
                        if (f.kind != TERN_FRAME_NONE) {
                                const struct tern_ws_message *m = tern_ws_message_of(&f);
                                FUZZ_CHECK(m, "a frame that is not a message");
                                check_message(limits, m);
                                log_message(log, m);
                                if (z)
                                        reencode(z, m);
                        }
                        off += (size_t)r;
                        have -= (size_t)r;
                }
        }
        free(buf);
        tern_ws_state_free(s);
}

/* The stream as HTTP requests, each one offered as a handshake. */
static void fuzz_handshake(const uint8_t *stream, size_t len)
{
        static const char *const origins[] = {"https://a.example", "http://b"};
        struct tern_ws_accept_opts o = {.origins = origins, .norigins = len & 1 ? 2 : 0};
        struct tern_http_state *h = tern_http_state_new(NULL);
        size_t off = 0;

        FUZZ_CHECK(h, "http state");
        while (off < len) {
                struct tern_frame f = {.kind = TERN_FRAME_NONE};
                ssize_t r = tern_http_decode(h, stream + off, len - off, &f);
                if (r <= 0)
                        break;
                off += (size_t)r;
                const struct tern_http_request *q = tern_http_request_of(&f);
                if (!q || q->part != TERN_HTTP_PART_WHOLE)
                        continue;
                struct tern_buf out = TERN_BUF_INIT;
                int st = tern_ws_accept(q, &o, &out);
                FUZZ_CHECK(st == 101 || st == 400 || st == 403 || st == 426, "status %d", st);
                char want[16];
                snprintf(want, sizeof(want), "HTTP/1.1 %d ", st);
                FUZZ_CHECK(tern_buf_len(&out) > 13 &&
                               memcmp(tern_buf_data(&out), want, strlen(want)) == 0,
                           "response does not start with its status");
                if (st == 101) {
                        const uint8_t *end = tern_buf_data(&out) + tern_buf_len(&out) - 4;
                        FUZZ_CHECK(memcmp(end, "\r\n\r\n", 4) == 0, "101 head not ended");
                }
                tern_buf_free(&out);
        }
        tern_http_state_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fuzz_input in = {data, size};
        struct ws_fuzz z;
        uint8_t c = fuzz_byte(&in);

        memset(&z, 0, sizeof(z));
        tern_ws_config_init(&z.cfg);
        if (c) {
                /* 0..1953 bytes, and 1..4 fragments or the default. */
                z.cfg.max_message = (size_t)(c & 0x3f) * 31;
                z.cfg.max_fragments = (c >> 6) ? (uint32_t)(c >> 6) + 1 : 1024;
        }
        size_t m = z.cfg.max_message > 125 ? z.cfg.max_message : 125;
        z.bound = 14 + m;

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

        struct fuzz_log pieces = {0}, whole = {0}, again = {0};
        ws_run(&z.cfg, z.bound, stream, len, cuts, ncuts, &pieces, &z, &z);
        ws_run(&z.cfg, z.bound, stream, len, NULL, 0, &whole, NULL, &z);
        FUZZ_CHECK(pieces.err == whole.err, "error %zd in pieces, %zd whole", pieces.err,
                   whole.err);
        FUZZ_CHECK(pieces.len == whole.len &&
                       (whole.len == 0 || memcmp(pieces.p, whole.p, whole.len) == 0),
                   "messages differ between pieces and whole");

        ws_run(&z.cfg, z.bound, tern_buf_data(&z.again), tern_buf_len(&z.again), NULL, 0, &again,
               NULL, &z);
        FUZZ_CHECK(again.err == 0, "re-encoded messages decode to error %zd", again.err);
        FUZZ_CHECK(again.len == z.want.len &&
                       (again.len == 0 || memcmp(again.p, z.want.p, again.len) == 0),
                   "re-encoded messages decode differently");

        fuzz_handshake(stream, len);

        free(pieces.p);
        free(whole.p);
        free(again.p);
        free(z.want.p);
        tern_buf_free(&z.again);
        return 0;
}
