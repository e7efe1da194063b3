#include "websocket.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fault_internal.h"

/* ---- UTF-8 ---- */

/* An incremental validator: how many continuation bytes are still owed and
 * the range the next one must fall in (RFC 3629 section 4), so a character
 * split across fragments is checked as it arrives. */
struct ws_utf8 {
        uint8_t need, lo, hi;
};

/* false as soon as the bytes cannot start valid UTF-8. */
static bool ws_utf8_feed(struct ws_utf8 *u, const uint8_t *p, size_t len)
{
        size_t i = 0;

        while (i < len) {
                if (u->need == 0) {
                        /* ASCII runs, eight bytes at a time. */
                        while (len - i >= 8) {
                                uint64_t w;
                                memcpy(&w, p + i, 8);
                                if (w & 0x8080808080808080ull)
                                        break;
                                i += 8;
                        }
                        if (i == len)
                                break;
                        uint8_t c = p[i++];
                        if (c < 0x80)
                                continue;
                        u->lo = 0x80;
                        u->hi = 0xbf;
                        if (c >= 0xc2 && c <= 0xdf) {
                                u->need = 1;
                        } else if (c >= 0xe0 && c <= 0xef) {
                                u->need = 2;
                                if (c == 0xe0)
                                        u->lo = 0xa0; /* no overlongs */
                                else if (c == 0xed)
                                        u->hi = 0x9f; /* no surrogates */
                        } else if (c >= 0xf0 && c <= 0xf4) {
                                u->need = 3;
                                if (c == 0xf0)
                                        u->lo = 0x90;
                                else if (c == 0xf4)
                                        u->hi = 0x8f; /* nothing past U+10FFFF */
                        } else {
                                return false;
                        }
                } else {
                        uint8_t c = p[i++];
                        if (c < u->lo || c > u->hi)
                                return false;
                        u->need--;
                        u->lo = 0x80;
                        u->hi = 0xbf;
                }
        }
        return true;
}

bool tern_ws_utf8_valid(const uint8_t *p, size_t len)
{
        struct ws_utf8 u = {0, 0x80, 0xbf};
        return ws_utf8_feed(&u, p, len) && u.need == 0;
}

/* ---- decoder ---- */

struct tern_ws_state {
        struct tern_ws_config cfg;
        bool in_message;                        /* a fragmented message is open */
        bool closed;                            /* a close frame was decoded */
        enum tern_ws_opcode mop;                /* its opcode, TEXT or BINARY */
        uint32_t fragments;                     /* its frames so far */
        struct ws_utf8 utf8;                    /* TEXT: the validator over its bytes */
        uint8_t *msg;                           /* joined, unmasked message bytes */
        size_t msg_len, msg_cap;                /* msg_cap <= cfg.max_message */
        uint8_t ctl[TERN_WS_MAX_CONTROL];       /* an unmasked control payload */
        uint8_t reply[2 + TERN_WS_MAX_CONTROL]; /* the pong or close to send back */
        struct tern_ws_message lent;            /* what a frame lends */
        uint16_t code;                          /* of the last error, or 0 */
        const char *why;
};

/* The code of the last decode error on this thread, for tern_ws_error_code()
 * in on_codec_error, which gets no state. */
static _Thread_local uint16_t ws_last_code;
static _Thread_local int ws_last_err;

void tern_ws_config_init(struct tern_ws_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->max_message = TERN_WS_DEFAULT_MAX_MESSAGE;
        cfg->max_fragments = TERN_WS_DEFAULT_MAX_FRAGMENTS;
}

int tern_ws_config_check(const struct tern_ws_config *cfg)
{
        if (cfg->max_message > TERN_WS_MAX_MESSAGE_LIMIT)
                return -EINVAL;
        if (cfg->max_fragments < 1 || cfg->max_fragments > TERN_WS_MAX_FRAGMENTS_LIMIT)
                return -EINVAL;
        return 0;
}

struct tern_ws_state *tern_ws_state_new(const struct tern_ws_config *cfg)
{
        struct tern_ws_config defaults;

        if (!cfg) {
                tern_ws_config_init(&defaults);
                cfg = &defaults;
        }
        if (tern_ws_config_check(cfg)) {
                errno = EINVAL;
                return NULL;
        }
        struct tern_ws_state *s = TERN__MALLOC(sizeof(*s));
        if (!s) {
                errno = ENOMEM;
                return NULL;
        }
        memset(s, 0, sizeof(*s));
        s->cfg = *cfg;
        return s;
}

void tern_ws_state_free(struct tern_ws_state *s)
{
        if (!s)
                return;
        free(s->msg);
        free(s);
}

uint16_t tern_ws_state_close_code(const struct tern_ws_state *s)
{
        return s->code;
}

const char *tern_ws_state_reason(const struct tern_ws_state *s)
{
        return s->why;
}

uint16_t tern_ws_error_code(int err)
{
        if (err == ws_last_err && ws_last_code)
                return ws_last_code;
        if (err == TERN_ETOOBIG)
                return TERN_WS_CLOSE_TOO_BIG;
        return err == -ENOMEM ? TERN_WS_CLOSE_INTERNAL : TERN_WS_CLOSE_PROTOCOL;
}

static ssize_t ws_fail(struct tern_ws_state *s, uint16_t code, const char *why)
{
        int err = TERN_EFRAME;

        if (code == TERN_WS_CLOSE_TOO_BIG)
                err = TERN_ETOOBIG;
        else if (code == TERN_WS_CLOSE_INTERNAL)
                err = -ENOMEM;
        s->code = code;
        s->why = why;
        ws_last_code = code;
        ws_last_err = err;
        return err;
}

/* Codes a close frame may carry (RFC 6455 section 7.4). */
static bool ws_code_ok(uint16_t code)
{
        if (code >= 1000 && code <= 1014)
                return code != 1004 && code != 1005 && code != 1006;
        return code >= 3000 && code <= 4999;
}

/* dst[i] = src[i] ^ key[(i + 0) % 4], eight bytes at a time where possible. */
static void ws_unmask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4])
{
        size_t i = 0;
        uint8_t k8[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
        uint64_t k;

        memcpy(&k, k8, 8);
        for (; len - i >= 8; i += 8) {
                uint64_t w;
                memcpy(&w, src + i, 8);
                w ^= k;
                memcpy(dst + i, &w, 8);
        }
        for (; i < len; i++)
                dst[i] = src[i] ^ key[i & 3];
}

/* Room for @more message bytes: grows msg, never past max_message (the
 * caller checked msg_len + more against it). */
static int ws_reserve(struct tern_ws_state *s, size_t more)
{
        size_t need = s->msg_len + more;
        if (need <= s->msg_cap)
                return 0;
        size_t cap = s->msg_cap ? s->msg_cap : 256;
        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        if (cap > s->cfg.max_message)
                cap = s->cfg.max_message;
        if (cap < need)
                cap = need;
        uint8_t *p = TERN__REALLOC(s->msg, cap);
        if (!p)
                return -ENOMEM;
        s->msg = p;
        s->msg_cap = cap;
        return 0;
}

static void ws_lend(struct tern_ws_state *s, enum tern_ws_opcode op, const uint8_t *data,
                    size_t len, struct tern_frame *out)
{
        static const uint8_t empty[1];
        struct tern_ws_message *m = &s->lent;

        memset(m, 0, sizeof(*m));
        m->opcode = op;
        m->data = data ? data : empty;
        m->len = len;
        out->kind = TERN_FRAME_DATA;
        out->data = (const uint8_t *)m;
        out->len = sizeof(*m);
}

/* A control frame whose @plen payload bytes are unmasked in s->ctl. */
static ssize_t ws_control(struct tern_ws_state *s, enum tern_ws_opcode op, size_t plen,
                          struct tern_frame *out)
{
        if (op == TERN_WS_PING) {
                s->reply[0] = 0x80 | TERN_WS_PONG;
                s->reply[1] = (uint8_t)plen;
                memcpy(s->reply + 2, s->ctl, plen);
                ws_lend(s, op, s->ctl, plen, out);
                s->lent.reply = s->reply;
                s->lent.reply_len = 2 + plen;
                return 0;
        }
        if (op == TERN_WS_PONG) {
                ws_lend(s, op, s->ctl, plen, out);
                return 0;
        }
        /* CLOSE: nothing, or a code and a UTF-8 reason. */
        uint16_t code = TERN_WS_CLOSE_NO_STATUS;
        if (plen == 1)
                return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "close payload of one byte");
        if (plen >= 2) {
                code = (uint16_t)(s->ctl[0] << 8 | s->ctl[1]);
                if (!ws_code_ok(code))
                        return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "close code not allowed");
                if (!tern_ws_utf8_valid(s->ctl + 2, plen - 2))
                        return ws_fail(s, TERN_WS_CLOSE_INVALID_DATA, "close reason not UTF-8");
        }
        s->closed = true;
        s->reply[0] = 0x80 | TERN_WS_CLOSE;
        if (plen >= 2) {
                s->reply[1] = 2;
                s->reply[2] = s->ctl[0];
                s->reply[3] = s->ctl[1];
        } else {
                s->reply[1] = 0;
        }
        ws_lend(s, op, plen >= 2 ? s->ctl + 2 : s->ctl, plen >= 2 ? plen - 2 : 0, out);
        s->lent.close_code = code;
        s->lent.reply = s->reply;
        s->lent.reply_len = plen >= 2 ? 4 : 2;
        return 0;
}

ssize_t tern_ws_decode(struct tern_ws_state *s, const uint8_t *in, size_t len,
                       struct tern_frame *out)
{
        s->code = 0;
        s->why = NULL;
        if (len == 0)
                return TERN_CODEC_NEED_MORE;
        if (s->closed)
                return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "frame after a close");
        /* A big message's buffer is not kept for the connection's life. */
        if (!s->in_message && s->msg_cap > TERN_WS_KEEP_BUFFER) {
                free(s->msg);
                s->msg = NULL;
                s->msg_cap = 0;
        }
        /* Every check is made as soon as the bytes it needs are present, in
         * the order of those bytes, so the verdict is the same however the
         * stream was split. */
        uint8_t b0 = in[0];
        bool fin = b0 & 0x80;
        unsigned op = b0 & 0x0f;
        if (b0 & 0x70)
                return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "reserved bits set");
        bool control = op & 0x8;
        if (op != TERN_WS_CONTINUATION && op != TERN_WS_TEXT && op != TERN_WS_BINARY &&
            op != TERN_WS_CLOSE && op != TERN_WS_PING && op != TERN_WS_PONG)
                return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "reserved opcode");
        if (control && !fin)
                return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "fragmented control frame");
        if (op == TERN_WS_CONTINUATION && !s->in_message)
                return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "continuation outside a message");
        if (!control && op != TERN_WS_CONTINUATION && s->in_message)
                return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
        if (len < 2)
                return TERN_CODEC_NEED_MORE;
        uint8_t b1 = in[1];
        if (!(b1 & 0x80))
                return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "unmasked frame");
        unsigned l7 = b1 & 0x7f;
        if (control && l7 > TERN_WS_MAX_CONTROL)
                return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "control frame over 125 bytes");
        size_t ext = l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
        if (len < 2 + ext)
                return TERN_CODEC_NEED_MORE;
        uint64_t plen = l7;
        if (ext == 2) {
                plen = (uint64_t)in[2] << 8 | in[3];
                if (plen < 126)
                        return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "length not in shortest form");
        } else if (ext == 8) {
                plen = 0;
                for (size_t i = 0; i < 8; i++)
                        plen = plen << 8 | in[2 + i];
                if (plen >> 63)
                        return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "length with its top bit set");
                if (plen <= 0xffff)
                        return ws_fail(s, TERN_WS_CLOSE_PROTOCOL, "length not in shortest form");
        }
        if (!control) {
                /* msg_len <= max_message always: no wrap. */
                if (plen > s->cfg.max_message - s->msg_len)
                        return ws_fail(s, TERN_WS_CLOSE_TOO_BIG, "message over max_message");
                if (s->fragments >= s->cfg.max_fragments)
                        return ws_fail(s, TERN_WS_CLOSE_TOO_BIG, "message over max_fragments");
        }
        size_t hlen = 2 + ext + 4;
        /* plen <= max_message <= 1 GiB here, or <= 125: no wrap. */
        if (len < hlen || len - hlen < plen)
                return TERN_CODEC_NEED_MORE;
        const uint8_t *key = in + hlen - 4;
        const uint8_t *payload = in + hlen;
        size_t used = hlen + (size_t)plen;

        if (control) {
                ws_unmask(s->ctl, payload, (size_t)plen, key);
                ssize_t r = ws_control(s, (enum tern_ws_opcode)op, (size_t)plen, out);
                return r < 0 ? r : (ssize_t)used;
        }
        if (op != TERN_WS_CONTINUATION) {
                s->mop = (enum tern_ws_opcode)op;
                s->in_message = true;
                s->fragments = 0;
                s->msg_len = 0;
                s->utf8 = (struct ws_utf8){0, 0x80, 0xbf};
        }
        if (plen) {
                if (ws_reserve(s, (size_t)plen))
                        return ws_fail(s, TERN_WS_CLOSE_INTERNAL, "out of memory");
                uint8_t *dst = s->msg + s->msg_len;
                ws_unmask(dst, payload, (size_t)plen, key);
                if (s->mop == TERN_WS_TEXT && !ws_utf8_feed(&s->utf8, dst, (size_t)plen))
                        return ws_fail(s, TERN_WS_CLOSE_INVALID_DATA, "text not UTF-8");
                s->msg_len += (size_t)plen;
        }
        s->fragments++;
        if (!fin)
                return (ssize_t)used;
        if (s->mop == TERN_WS_TEXT && s->utf8.need)
                return ws_fail(s, TERN_WS_CLOSE_INVALID_DATA, "text ends inside a character");
        ws_lend(s, s->mop, s->msg, s->msg_len, out);
        s->lent.fragments = s->fragments;
        s->in_message = false;
        s->fragments = 0;
        s->msg_len = 0;
        return (ssize_t)used;
}

const struct tern_ws_message *tern_ws_message_of(const struct tern_frame *f)
{
        if (!f || f->kind != TERN_FRAME_DATA || f->len != sizeof(struct tern_ws_message))
                return NULL;
        return (const struct tern_ws_message *)(const void *)f->data;
}

/* ---- encoders ---- */

int tern_ws_frame_header(uint8_t hdr[TERN_WS_MAX_HEADER], enum tern_ws_opcode op, bool fin,
                         uint64_t len)
{
        unsigned o = (unsigned)op;
        if (o != TERN_WS_CONTINUATION && o != TERN_WS_TEXT && o != TERN_WS_BINARY &&
            o != TERN_WS_CLOSE && o != TERN_WS_PING && o != TERN_WS_PONG)
                return -EINVAL;
        if ((o & 0x8) && (len > TERN_WS_MAX_CONTROL || !fin))
                return -EINVAL;
        if (len >> 63)
                return -EINVAL;
        hdr[0] = (uint8_t)((fin ? 0x80 : 0) | o);
        if (len < 126) {
                hdr[1] = (uint8_t)len;
                return 2;
        }
        if (len <= 0xffff) {
                hdr[1] = 126;
                hdr[2] = (uint8_t)(len >> 8);
                hdr[3] = (uint8_t)len;
                return 4;
        }
        hdr[1] = 127;
        for (int i = 0; i < 8; i++)
                hdr[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        return 10;
}

int tern_ws_put_frame(struct tern_buf *b, enum tern_ws_opcode op, const void *payload, size_t len)
{
        uint8_t hdr[TERN_WS_MAX_HEADER];
        int h = tern_ws_frame_header(hdr, op, true, len);

        if (h < 0)
                return h;
        if (len && !payload)
                return -EINVAL;
        if (len > SIZE_MAX - (size_t)h)
                return -ENOMEM;
        if (tern_buf_reserve(b, (size_t)h + len))
                return -ENOMEM;
        uint8_t *t = tern_buf_tail(b);
        memcpy(t, hdr, (size_t)h);
        if (len)
                memcpy(t + h, payload, len);
        tern_buf_commit(b, (size_t)h + len);
        return 0;
}

int tern_ws_put_close(struct tern_buf *b, uint16_t code, const char *reason, size_t reason_len)
{
        uint8_t p[TERN_WS_MAX_CONTROL];

        if (code == 0)
                return tern_ws_put_frame(b, TERN_WS_CLOSE, NULL, 0);
        if (!ws_code_ok(code) || reason_len > TERN_WS_MAX_CONTROL - 2)
                return -EINVAL;
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        if (reason_len)
                memcpy(p + 2, reason, reason_len);
        return tern_ws_put_frame(b, TERN_WS_CLOSE, p, 2 + reason_len);
}

int tern_ws_put_client_frame(struct tern_buf *b, unsigned op, bool fin, const uint8_t mask[4],
                             const void *payload, size_t len)
{
        if (op > 15 || (uint64_t)len >> 63 || (len && !payload))
                return -EINVAL;
        size_t h = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
        if (len > SIZE_MAX - h - 4)
                return -ENOMEM;
        if (tern_buf_reserve(b, h + 4 + len))
                return -ENOMEM;
        uint8_t *t = tern_buf_tail(b);
        t[0] = (uint8_t)((fin ? 0x80 : 0) | op);
        if (h == 2) {
                t[1] = (uint8_t)(0x80 | len);
        } else if (h == 4) {
                t[1] = 0x80 | 126;
                t[2] = (uint8_t)(len >> 8);
                t[3] = (uint8_t)len;
        } else {
                t[1] = 0x80 | 127;
                for (size_t i = 0; i < 8; i++)
                        t[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        }
        memcpy(t + h, mask, 4);
        if (len)
                ws_unmask(t + h + 4, payload, len, mask);
        tern_buf_commit(b, h + 4 + len);
        return 0;
}

/* ---- the opening handshake ---- */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int tern_ws_accept_key(const char *key, size_t key_len, char out[29])
{
        uint8_t in[64 + sizeof(WS_GUID)];
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;

        if (key_len > 64)
                return -EINVAL;
        memcpy(in, key, key_len);
        memcpy(in + key_len, WS_GUID, sizeof(WS_GUID) - 1);
        if (!EVP_Digest(in, key_len + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(), NULL) ||
            mdlen != 20)
                return -EIO;
        /* 20 bytes -> 28 characters and a NUL. */
        if (EVP_EncodeBlock((unsigned char *)out, md, 20) != 28)
                return -EIO;
        return 0;
}

/* Whether @len bytes at @p equal @s, ASCII case-insensitively. */
static bool ws_ieq(const char *p, size_t len, const char *s)
{
        if (strlen(s) != len)
                return false;
        for (size_t i = 0; i < len; i++) {
                char a = p[i], c = s[i];
                if (a >= 'A' && a <= 'Z')
                        a = (char)(a + 32);
                if (c >= 'A' && c <= 'Z')
                        c = (char)(c + 32);
                if (a != c)
                        return false;
        }
        return true;
}

/* Fields named @name: the first in *@h (or NULL), how many there are. */
static size_t ws_fields(const struct tern_http_request *r, const char *name,
                        const struct tern_http_header **h)
{
        size_t n = 0;
        *h = NULL;
        for (size_t i = 0; i < r->nheaders; i++) {
                if (!ws_ieq(r->headers[i].name, r->headers[i].name_len, name))
                        continue;
                if (!n)
                        *h = &r->headers[i];
                n++;
        }
        return n;
}

/* Whether any field named @name holds @token in its comma-separated list. */
static bool ws_has_token(const struct tern_http_request *r, const char *name, const char *token)
{
        for (size_t i = 0; i < r->nheaders; i++) {
                const struct tern_http_header *h = &r->headers[i];
                if (!ws_ieq(h->name, h->name_len, name))
                        continue;
                size_t k = 0;
                while (k < h->value_len) {
                        while (k < h->value_len &&
                               (h->value[k] == ',' || h->value[k] == ' ' || h->value[k] == '\t'))
                                k++;
                        size_t t = k;
                        while (k < h->value_len && h->value[k] != ',' && h->value[k] != ' ' &&
                               h->value[k] != '\t')
                                k++;
                        if (k > t && ws_ieq(h->value + t, k - t, token))
                                return true;
                }
        }
        return false;
}

/* A Sec-WebSocket-Key: the base64 of 16 bytes, so 22 characters and "==". */
static bool ws_key_ok(const struct tern_http_header *h)
{
        static const char b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        if (h->value_len != 24 || h->value[22] != '=' || h->value[23] != '=')
                return false;
        for (size_t i = 0; i < 22; i++)
                if (!h->value[i] || !strchr(b64, h->value[i]))
                        return false;
        /* The last character carries 2 bits; the other 4 must be zero. */
        return strchr("AQgw", h->value[21]) != NULL;
}

/* An error response; all or nothing. */
static int ws_refuse(struct tern_buf *out, int status, bool version)
{
        size_t mark = tern_buf_len(out);
        const char *reason = tern_http_reason(status);
        char body[64];
        int n = snprintf(body, sizeof(body), "%s\n", reason);

        if (tern_http_put_status(out, status, NULL) ||
            (version && tern_http_put_header(out, "Sec-WebSocket-Version", 21, "13", 2)) ||
            tern_http_put_header(out, "Connection", 10, "close", 5) ||
            tern_http_put_header(out, "Content-Type", 12, "text/plain", 10) ||
            tern_http_put_body(out, body, (size_t)n)) {
                tern_buf_truncate(out, mark);
                return -ENOMEM;
        }
        return status;
}

int tern_ws_accept(const struct tern_http_request *r, const struct tern_ws_accept_opts *opts,
                   struct tern_buf *out)
{
        const struct tern_http_header *h;

        if (opts && opts->norigins > TERN_WS_MAX_ORIGINS)
                return -EINVAL;
        if (r->method_id != TERN_HTTP_GET || r->version_minor < 1 ||
            r->part != TERN_HTTP_PART_WHOLE || r->body_len || r->chunked || r->has_content_length)
                return ws_refuse(out, 400, false);
        if (!ws_has_token(r, "upgrade", "websocket") || !ws_has_token(r, "connection", "upgrade"))
                return ws_refuse(out, 400, false);
        if (ws_fields(r, "sec-websocket-version", &h) != 1 || !ws_ieq(h->value, h->value_len, "13"))
                return ws_refuse(out, 426, true);
        const struct tern_http_header *key;
        if (ws_fields(r, "sec-websocket-key", &key) != 1 || !ws_key_ok(key))
                return ws_refuse(out, 400, false);
        if (opts && opts->norigins && opts->origins) {
                size_t n = ws_fields(r, "origin", &h);
                bool ok = n == 0 && opts->allow_no_origin;
                for (size_t i = 0; n == 1 && !ok && i < opts->norigins; i++)
                        ok = opts->origins[i] && ws_ieq(h->value, h->value_len, opts->origins[i]);
                if (!ok)
                        return ws_refuse(out, 403, false);
        }
        char accept[29];
        int err = tern_ws_accept_key(key->value, key->value_len, accept);
        if (err)
                return err;
        size_t mark = tern_buf_len(out);
        if (tern_http_put_status(out, 101, NULL) ||
            tern_http_put_header(out, "Upgrade", 7, "websocket", 9) ||
            tern_http_put_header(out, "Connection", 10, "Upgrade", 7) ||
            tern_http_put_header(out, "Sec-WebSocket-Accept", 20, accept, 28) ||
            tern_buf_append(out, "\r\n", 2)) {
                tern_buf_truncate(out, mark);
                return -ENOMEM;
        }
        return 101;
}

/* ---- the codec vtable ---- */

static ssize_t ws_codec_decode(void *state, const uint8_t *in, size_t len, struct tern_frame *out)
{
        return tern_ws_decode(state, in, len, out);
}

static int ws_codec_encode(void *state, struct tern_buf *out, const void *payload, size_t len)
{
        (void)state;
        if (len && payload == tern_buf_data(out) && len == tern_buf_len(out)) {
                /* Built in place: only the header goes in front. */
                uint8_t hdr[TERN_WS_MAX_HEADER];
                int h = tern_ws_frame_header(hdr, TERN_WS_BINARY, true, len);
                if (h < 0)
                        return h;
                return tern_buf_prepend(out, hdr, (size_t)h) ? -ENOMEM : 0;
        }
        return tern_ws_put_frame(out, TERN_WS_BINARY, payload, len);
}

static void *ws_state_new(const void *config)
{
        return tern_ws_state_new(config);
}

static void ws_state_free(void *state)
{
        tern_ws_state_free(state);
}

const struct tern_codec tern_ws_codec = {
    .name = "websocket",
    .decode = ws_codec_decode,
    .encode = ws_codec_encode,
    .state_new = ws_state_new,
    .state_free = ws_state_free,
};
