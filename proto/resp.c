#include "resp.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fault_internal.h"

/* The shortest element: "$0\r\n\r\n". */
#define RESP_MIN_ELEMENT 6

void tern_resp_config_init(struct tern_resp_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->max_bulk = TERN_RESP_DEFAULT_MAX_BULK;
        cfg->max_args = TERN_RESP_DEFAULT_MAX_ARGS;
        cfg->max_inline = TERN_RESP_DEFAULT_MAX_INLINE;
        cfg->max_frame = TERN_RESP_DEFAULT_MAX_FRAME;
}

int tern_resp_config_check(const struct tern_resp_config *cfg)
{
        if (cfg->max_bulk < 1 || cfg->max_bulk > TERN_RESP_MAX_BULK_LIMIT)
                return -EINVAL;
        if (cfg->max_args < 1 || cfg->max_args > TERN_RESP_MAX_ARGS_LIMIT)
                return -EINVAL;
        if (cfg->max_inline < 1 || cfg->max_inline > TERN_RESP_MAX_SIZE_LIMIT)
                return -EINVAL;
        /* 16 holds any array header the max_args range allows. */
        if (cfg->max_frame < 16 || cfg->max_frame > TERN_RESP_MAX_SIZE_LIMIT)
                return -EINVAL;
        return 0;
}

static void resp_restart(struct tern_resp_state *s)
{
        s->pos = 0;
        s->bulk_end = 0;
        s->scanned = 0;
        s->nargs = 0;
        s->argi = 0;
        s->in_bulk = false;
}

int tern_resp_state_init(struct tern_resp_state *s, const struct tern_resp_config *cfg)
{
        struct tern_resp_config defaults;

        if (!cfg) {
                tern_resp_config_init(&defaults);
                cfg = &defaults;
        }
        if (tern_resp_config_check(cfg))
                return -EINVAL;
        memset(s, 0, sizeof(*s));
        s->cfg = *cfg;
        return 0;
}

const char *tern_resp_error_reason(const struct tern_resp_state *s)
{
        return s->why;
}

/*
 * Parses a header line at p[0, avail): one type byte, a decimal in
 * 0..@limit, then "\r\n". Returns the line's length with the number in
 * *@val, 0 when the line is not complete yet, TERN_ETOOBIG as soon as the
 * digits pass @limit (so a runaway number is refused after a few digits and
 * the value never overflows: limit <= 2^30), or TERN_EFRAME for a missing
 * number, a sign, a leading zero or anything but "\r\n" after the digits.
 * Looks at no byte past the first one that decides.
 */
static ssize_t resp_header(const uint8_t *p, size_t avail, uint64_t limit, uint64_t *val)
{
        uint64_t v = 0;
        size_t i = 1;

        for (; i < avail && p[i] >= '0' && p[i] <= '9'; i++) {
                if (i == 2 && p[1] == '0')
                        return TERN_EFRAME;
                v = v * 10 + (uint64_t)(p[i] - '0');
                if (v > limit)
                        return TERN_ETOOBIG;
        }
        if (i == avail)
                return TERN_CODEC_NEED_MORE;
        if (i == 1 || p[i] != '\r')
                return TERN_EFRAME;
        if (i + 1 == avail)
                return TERN_CODEC_NEED_MORE;
        if (p[i + 1] != '\n')
                return TERN_EFRAME;
        *val = v;
        return (ssize_t)(i + 2);
}

static ssize_t resp_fail(struct tern_resp_state *s, ssize_t err, const char *why)
{
        resp_restart(s);
        s->why = why;
        return err;
}

/*
 * An incomplete array command: its bytes run past everything held, so once
 * max_frame bytes are held it cannot fit any more. (The length checks below
 * usually refuse it earlier; this bounds the buffering whatever happens.)
 */
static ssize_t resp_need_more(struct tern_resp_state *s, size_t len)
{
        if (len >= s->cfg.max_frame)
                return resp_fail(s, TERN_ETOOBIG, "command over the size limit");
        return TERN_CODEC_NEED_MORE;
}

static ssize_t resp_decode_array(struct tern_resp_state *s, const uint8_t *in, size_t len,
                                 struct tern_frame *out)
{
        const struct tern_resp_config *cfg = &s->cfg;
        uint64_t n;
        ssize_t r;

        if (s->pos == 0) {
                r = resp_header(in, len, cfg->max_args, &n);
                if (r == TERN_ETOOBIG)
                        return resp_fail(s, r, "too many arguments");
                if (r < 0)
                        return resp_fail(s, r, "invalid multibulk length");
                if (r == 0)
                        return resp_need_more(s, len);
                if (n == 0)
                        return r; /* "*0\r\n": nothing to run, as in Redis */
                /* Sizes are far below 2^64 here: no sum below can wrap. */
                if ((uint64_t)r + n * RESP_MIN_ELEMENT > cfg->max_frame)
                        return resp_fail(s, TERN_ETOOBIG, "command over the size limit");
                s->nargs = (uint32_t)n;
                s->argi = 0;
                s->in_bulk = false;
                s->pos = (size_t)r;
        }
        while (s->argi < s->nargs) {
                if (!s->in_bulk) {
                        if (s->pos == len)
                                return resp_need_more(s, len);
                        if (in[s->pos] != '$')
                                return resp_fail(s, TERN_EFRAME, "expected '$'");
                        r = resp_header(in + s->pos, len - s->pos, cfg->max_bulk, &n);
                        if (r == TERN_ETOOBIG)
                                return resp_fail(s, r, "bulk length over the limit");
                        if (r < 0)
                                return resp_fail(s, r, "invalid bulk length");
                        if (r == 0)
                                return resp_need_more(s, len);
                        /* This element whole, and the shortest possible rest. */
                        uint64_t least = (uint64_t)s->pos + (uint64_t)r + n + 2 +
                                         (uint64_t)(s->nargs - s->argi - 1) * RESP_MIN_ELEMENT;
                        if (least > cfg->max_frame)
                                return resp_fail(s, TERN_ETOOBIG, "command over the size limit");
                        s->bulk_end = s->pos + (size_t)r + (size_t)n;
                        s->in_bulk = true;
                }
                if (len < s->bulk_end + 2)
                        return resp_need_more(s, len);
                if (in[s->bulk_end] != '\r' || in[s->bulk_end + 1] != '\n')
                        return resp_fail(s, TERN_EFRAME, "missing CRLF after bulk data");
                s->pos = s->bulk_end + 2;
                s->in_bulk = false;
                s->argi++;
        }
        size_t used = s->pos;
        resp_restart(s);
        out->kind = TERN_FRAME_DATA;
        out->data = in;
        out->len = used;
        return (ssize_t)used;
}

static bool resp_blank(uint8_t c)
{
        return c == ' ' || c == '\t';
}

/* Arguments of an inline line; fills at most @max of @argv (may be NULL). */
static size_t resp_split_inline(const uint8_t *p, size_t len, struct tern_resp_arg *argv,
                                size_t max)
{
        size_t argc = 0, i = 0;

        for (;;) {
                while (i < len && resp_blank(p[i]))
                        i++;
                if (i == len)
                        return argc;
                size_t start = i;
                while (i < len && !resp_blank(p[i]))
                        i++;
                if (argc < max) {
                        argv[argc].data = p + start;
                        argv[argc].len = i - start;
                }
                argc++;
        }
}

static ssize_t resp_decode_inline(struct tern_resp_state *s, const uint8_t *in, size_t len,
                                  struct tern_frame *out)
{
        const struct tern_resp_config *cfg = &s->cfg;
        /* A '\n' past the line and an optional '\r' cannot make it fit. */
        size_t window = cfg->max_inline + 2;
        size_t end = len < window ? len : window;
        size_t from = s->scanned < end ? s->scanned : end;
        const uint8_t *nl = memchr(in + from, '\n', end - from);

        if (!nl) {
                if (end == window)
                        return resp_fail(s, TERN_ETOOBIG, "too big inline request");
                s->scanned = end; /* each byte is searched once per line */
                return TERN_CODEC_NEED_MORE;
        }
        size_t at = (size_t)(nl - in);
        size_t line = at > 0 && in[at - 1] == '\r' ? at - 1 : at;
        resp_restart(s);
        if (line > cfg->max_inline)
                return resp_fail(s, TERN_ETOOBIG, "too big inline request");
        size_t argc = resp_split_inline(in, line, NULL, 0);
        if (argc > cfg->max_args)
                return resp_fail(s, TERN_ETOOBIG, "too many arguments");
        if (argc > 0) {
                out->kind = TERN_FRAME_DATA;
                out->data = in;
                out->len = line;
        }
        return (ssize_t)(at + 1);
}

ssize_t tern_resp_decode(struct tern_resp_state *s, const uint8_t *in, size_t len,
                         struct tern_frame *out)
{
        s->why = NULL;
        if (len == 0)
                return TERN_CODEC_NEED_MORE;
        /* A caller that did not re-present the unconsumed bytes broke the
         * contract; starting over is safer than trusting stale offsets. */
        if (s->pos > len || s->scanned > len)
                resp_restart(s);
        if (in[0] == '*')
                return resp_decode_array(s, in, len, out);
        return resp_decode_inline(s, in, len, out);
}

int tern_resp_args(const struct tern_frame *f, struct tern_resp_arg *argv, size_t max)
{
        if (!f || f->kind != TERN_FRAME_DATA || !f->data || f->len == 0)
                return -EINVAL;
        const uint8_t *p = f->data;
        size_t len = f->len;

        if (p[0] != '*') {
                size_t argc = resp_split_inline(p, len, argv, max);
                return argc > 0 && argc <= INT_MAX ? (int)argc : -EINVAL;
        }

        uint64_t n, blen;
        ssize_t r = resp_header(p, len, TERN_RESP_MAX_ARGS_LIMIT, &n);
        if (r <= 0)
                return -EINVAL;
        size_t pos = (size_t)r;
        for (uint64_t i = 0; i < n; i++) {
                if (pos == len || p[pos] != '$')
                        return -EINVAL;
                r = resp_header(p + pos, len - pos, len, &blen);
                if (r <= 0)
                        return -EINVAL;
                size_t data = pos + (size_t)r;
                if (blen > len - data || len - data - blen < 2 || p[data + blen] != '\r' ||
                    p[data + blen + 1] != '\n')
                        return -EINVAL;
                if (i < max) {
                        argv[i].data = p + data;
                        argv[i].len = (size_t)blen;
                }
                pos = data + (size_t)blen + 2;
        }
        return pos == len ? (int)n : -EINVAL;
}

/* ---- reply encoders ---- */

/* Writes the decimal of @v ending just before @end; returns its first byte. */
static char *resp_utoa(uint64_t v, char *end)
{
        do {
                *--end = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        return end;
}

/* Appends @type, then @digits (may be negative), then "\r\n". */
static int resp_put_number(struct tern_buf *b, char type, int64_t v)
{
        char tmp[24];
        char *end = tmp + sizeof(tmp);
        /* Negating in unsigned arithmetic keeps INT64_MIN defined. */
        uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
        char *p = resp_utoa(mag, end);
        if (v < 0)
                *--p = '-';
        *--p = type;
        size_t n = (size_t)(end - p);

        int err = tern_buf_reserve(b, n + 2);
        if (err)
                return err == -EOVERFLOW ? -ENOMEM : err;
        uint8_t *t = tern_buf_tail(b);
        memcpy(t, p, n);
        t[n] = '\r';
        t[n + 1] = '\n';
        tern_buf_commit(b, n + 2);
        return 0;
}

/* Appends @type, @s with CR and LF turned into spaces, then "\r\n". */
static int resp_put_line(struct tern_buf *b, char type, const char *s, size_t len)
{
        if (len > SIZE_MAX - 3)
                return -ENOMEM;
        int err = tern_buf_reserve(b, len + 3);
        if (err)
                return err == -EOVERFLOW ? -ENOMEM : err;
        uint8_t *t = tern_buf_tail(b);
        t[0] = (uint8_t)type;
        for (size_t i = 0; i < len; i++)
                t[1 + i] = s[i] == '\r' || s[i] == '\n' ? ' ' : (uint8_t)s[i];
        t[len + 1] = '\r';
        t[len + 2] = '\n';
        tern_buf_commit(b, len + 3);
        return 0;
}

int tern_resp_put_simple(struct tern_buf *b, const char *s)
{
        return resp_put_line(b, '+', s, strlen(s));
}

int tern_resp_put_error(struct tern_buf *b, const char *msg)
{
        return resp_put_line(b, '-', msg, strlen(msg));
}

int tern_resp_put_errorf(struct tern_buf *b, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        size_t len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
        return resp_put_line(b, '-', msg, len);
}

int tern_resp_put_int(struct tern_buf *b, int64_t v)
{
        return resp_put_number(b, ':', v);
}

int tern_resp_put_null(struct tern_buf *b)
{
        return tern_buf_append(b, "$-1\r\n", 5);
}

int tern_resp_put_array(struct tern_buf *b, size_t n)
{
        if (n > INT64_MAX)
                return -ENOMEM; /* no real array is that long */
        return resp_put_number(b, '*', (int64_t)n);
}

int tern_resp_put_bulk(struct tern_buf *b, const void *data, size_t len)
{
        char tmp[24];
        char *end = tmp + sizeof(tmp);
        char *p = resp_utoa(len, end);
        *--p = '$';
        size_t hdr = (size_t)(end - p);

        if (len > SIZE_MAX - hdr - 4)
                return -ENOMEM;
        int err = tern_buf_reserve(b, hdr + len + 4);
        if (err)
                return err == -EOVERFLOW ? -ENOMEM : err;
        uint8_t *t = tern_buf_tail(b);
        memcpy(t, p, hdr);
        t[hdr] = '\r';
        t[hdr + 1] = '\n';
        if (len)
                memcpy(t + hdr + 2, data, len);
        t[hdr + 2 + len] = '\r';
        t[hdr + 3 + len] = '\n';
        tern_buf_commit(b, hdr + len + 4);
        return 0;
}

/* ---- the codec vtable ---- */

static ssize_t resp_codec_decode(void *state, const uint8_t *in, size_t len, struct tern_frame *out)
{
        return tern_resp_decode(state, in, len, out);
}

static int resp_codec_encode(void *state, struct tern_buf *out, const void *payload, size_t len)
{
        return tern_resp_put_bulk(out, payload, len);
}

static void *resp_state_new(const void *config)
{
        struct tern_resp_state *s = TERN__MALLOC(sizeof(*s));

        if (!s)
                return NULL;
        if (tern_resp_state_init(s, config)) {
                free(s);
                errno = EINVAL;
                return NULL;
        }
        return s;
}

static void resp_state_free(void *state)
{
        free(state);
}

const struct tern_codec tern_resp_codec = {
    .name = "resp",
    .decode = resp_codec_decode,
    .encode = resp_codec_encode,
    .state_new = resp_state_new,
    .state_free = resp_state_free,
};
