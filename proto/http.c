#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fault_internal.h"

/* Where decode() is in a request. Every position below is an offset from
 * the first unconsumed byte, because the input may move between calls. */
enum http_phase {
        HTTP_HEAD,       /* request line and header section */
        HTTP_LENGTH,     /* waiting for a Content-Length body */
        HTTP_CHUNK_SIZE, /* at a chunk-size line */
        HTTP_CHUNK_DATA, /* waiting for a chunk's data and its CRLF */
        HTTP_TRAILER,    /* trailer section after the last chunk */
};

/* A field line as offsets from its base (the input, or the stored head). */
struct http_field {
        uint32_t name, name_len, value, value_len;
};

struct tern_http_state {
        struct tern_http_config cfg;
        enum http_phase phase;
        size_t line_start;  /* first byte of the line being looked for */
        size_t scanned;     /* no '\n' in [line_start, scanned) */
        size_t reqline_end; /* past the request line's CRLF; 0 before */
        size_t head_end;    /* past the header section's empty line */
        uint32_t method, method_len, path, path_len;
        uint32_t nfields; /* header fields, then trailer fields */
        uint32_t nheaders;
        enum tern_http_method method_id;
        int minor;
        uint64_t content_length;
        bool has_cl, has_te, chunked, conn_close, conn_keep, expect_continue;
        unsigned hosts;
        /* bodies */
        size_t pos;       /* next byte to parse in a body phase */
        size_t chunk_len; /* HTTP_CHUNK_DATA: the chunk's size */
        size_t decoded;   /* chunked: data bytes so far */
        size_t framing;   /* chunked: framing bytes so far */
        size_t trailer_start;
        uint32_t nchunks;
        size_t first, first_len; /* the first data chunk, while it is alone */
        /* the state buffer: a stored head (100-continue), then a joined body */
        bool head_stored; /* the head lives at store[0, head_end) */
        size_t body_at;   /* where a joined body starts in store */
        uint8_t *store;
        size_t store_cap;
        struct http_field *fields;     /* cfg.max_headers */
        struct tern_http_header *lent; /* cfg.max_headers, filled per request */
        struct tern_http_request req;  /* what a frame lends */
        int status;                    /* of the last error, or 0 */
        const char *why;
};

/* tchar of RFC 9110 section 5.6.2: the bytes of a token. */
static const uint8_t http_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1,         ['&'] = 1,         ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,         ['^'] = 1,         ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

/* Bytes of a field value: HTAB, SP, VCHAR and obs-text (RFC 9110 5.5). */
static const uint8_t http_vbyte[256] = {
    ['\t'] = 1,
    [' ' ... '~'] = 1,
    [0x80 ... 0xff] = 1,
};

/* The status of the last decode error on this thread, for
 * tern_http_error_status() in on_codec_error, which gets no state. */
static _Thread_local int http_last_status;
static _Thread_local int http_last_err;

void tern_http_config_init(struct tern_http_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->max_request_line = TERN_HTTP_DEFAULT_MAX_REQUEST_LINE;
        cfg->max_header_bytes = TERN_HTTP_DEFAULT_MAX_HEADER_BYTES;
        cfg->max_headers = TERN_HTTP_DEFAULT_MAX_HEADERS;
        cfg->max_body = TERN_HTTP_DEFAULT_MAX_BODY;
        cfg->max_chunk_framing = TERN_HTTP_DEFAULT_MAX_CHUNK_FRAMING;
}

int tern_http_config_check(const struct tern_http_config *cfg)
{
        /* 16 holds the shortest request line, "GET / HTTP/1.1". */
        if (cfg->max_request_line < 16 || cfg->max_request_line > TERN_HTTP_MAX_SIZE_LIMIT)
                return -EINVAL;
        if (cfg->max_header_bytes < 2 || cfg->max_header_bytes > TERN_HTTP_MAX_SIZE_LIMIT)
                return -EINVAL;
        if (cfg->max_headers < 1 || cfg->max_headers > TERN_HTTP_MAX_HEADERS_LIMIT)
                return -EINVAL;
        if (cfg->max_body > TERN_HTTP_MAX_SIZE_LIMIT)
                return -EINVAL;
        /* 5 holds the last chunk alone, "0\r\n" plus a data CRLF's room. */
        if (cfg->max_chunk_framing < 5 || cfg->max_chunk_framing > TERN_HTTP_MAX_SIZE_LIMIT)
                return -EINVAL;
        return 0;
}

/* Back to "before a request"; the allocations stay. */
static void http_restart(struct tern_http_state *s)
{
        s->phase = HTTP_HEAD;
        s->line_start = 0;
        s->scanned = 0;
        s->reqline_end = 0;
        s->head_end = 0;
        s->nfields = 0;
        s->nheaders = 0;
        s->content_length = 0;
        s->has_cl = false;
        s->has_te = false;
        s->chunked = false;
        s->conn_close = false;
        s->conn_keep = false;
        s->expect_continue = false;
        s->hosts = 0;
        s->pos = 0;
        s->decoded = 0;
        s->framing = 0;
        s->nchunks = 0;
        s->head_stored = false;
        s->body_at = 0;
}

struct tern_http_state *tern_http_state_new(const struct tern_http_config *cfg)
{
        struct tern_http_config defaults;

        if (!cfg) {
                tern_http_config_init(&defaults);
                cfg = &defaults;
        }
        if (tern_http_config_check(cfg)) {
                errno = EINVAL;
                return NULL;
        }
        struct tern_http_state *s = TERN__MALLOC(sizeof(*s));
        if (!s)
                return NULL;
        memset(s, 0, sizeof(*s));
        s->cfg = *cfg;
        s->fields = TERN__MALLOC(cfg->max_headers * sizeof(*s->fields));
        s->lent = TERN__MALLOC(cfg->max_headers * sizeof(*s->lent));
        if (!s->fields || !s->lent) {
                tern_http_state_free(s);
                errno = ENOMEM;
                return NULL;
        }
        http_restart(s);
        return s;
}

void tern_http_state_free(struct tern_http_state *s)
{
        if (!s)
                return;
        free(s->fields);
        free(s->lent);
        free(s->store);
        free(s);
}

int tern_http_state_status(const struct tern_http_state *s)
{
        return s->status;
}

const char *tern_http_state_reason(const struct tern_http_state *s)
{
        return s->why;
}

int tern_http_error_status(int err)
{
        if (err == http_last_err && http_last_status)
                return http_last_status;
        if (err == TERN_ETOOBIG)
                return 413;
        return err == -ENOMEM ? 500 : 400;
}

static ssize_t http_fail(struct tern_http_state *s, int status, const char *why)
{
        int err = TERN_EFRAME;

        if (status == 413 || status == 414 || status == 431)
                err = TERN_ETOOBIG;
        else if (status == 500)
                err = -ENOMEM;
        http_restart(s);
        s->status = status;
        s->why = why;
        http_last_status = status;
        http_last_err = err;
        return err;
}

/* ASCII case-insensitive comparison of @len bytes with lower-case @lower. */
static bool http_ieq(const uint8_t *p, size_t len, const char *lower)
{
        for (size_t i = 0; i < len; i++) {
                uint8_t c = p[i];
                if (c >= 'A' && c <= 'Z')
                        c = (uint8_t)(c + 32);
                if (c != (uint8_t)lower[i] || !lower[i])
                        return false;
        }
        return lower[len] == '\0';
}

static bool http_ows(uint8_t c)
{
        return c == ' ' || c == '\t';
}

static enum tern_http_method http_method_id(const uint8_t *m, size_t len)
{
        static const struct {
                const char *name;
                enum tern_http_method id;
        } known[] = {
            {"GET", TERN_HTTP_GET},         {"HEAD", TERN_HTTP_HEAD},
            {"POST", TERN_HTTP_POST},       {"PUT", TERN_HTTP_PUT},
            {"DELETE", TERN_HTTP_DELETE},   {"CONNECT", TERN_HTTP_CONNECT},
            {"OPTIONS", TERN_HTTP_OPTIONS}, {"TRACE", TERN_HTTP_TRACE},
            {"PATCH", TERN_HTTP_PATCH},
        };
        /* Methods are case-sensitive (RFC 9110 section 9.1). */
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
                if (strlen(known[i].name) == len && memcmp(known[i].name, m, len) == 0)
                        return known[i].id;
        return TERN_HTTP_OTHER;
}

/*
 * One of the four forms of RFC 9112 section 3.2: origin ("/path?q"),
 * absolute ("scheme:..."), authority (CONNECT only, "host:port") or
 * asterisk (OPTIONS only, "*"). Anything else has no meaning a server could
 * agree on with the proxies in front of it.
 */
static bool http_target_form(const uint8_t *t, size_t len, enum tern_http_method m)
{
        if (m == TERN_HTTP_CONNECT)
                return t[0] != '/' && memchr(t, ':', len) != NULL;
        if (t[0] == '/')
                return true;
        if (len == 1 && t[0] == '*')
                return m == TERN_HTTP_OPTIONS;
        /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
        size_t i = 0;
        while (i < len && (((t[i] | 0x20) >= 'a' && (t[i] | 0x20) <= 'z') ||
                           (i > 0 && ((t[i] >= '0' && t[i] <= '9') || t[i] == '+' || t[i] == '-' ||
                                      t[i] == '.'))))
                i++;
        return i > 0 && i < len && t[i] == ':';
}

/* The request line at in[a, b), CRLF excluded: method SP target SP version. */
static ssize_t http_request_line(struct tern_http_state *s, const uint8_t *in, size_t a, size_t b)
{
        size_t i = a;

        while (i < b && http_tchar[in[i]])
                i++;
        if (i == a || i == b || in[i] != ' ')
                return http_fail(s, 400, "malformed method");
        s->method = (uint32_t)a;
        s->method_len = (uint32_t)(i - a);
        s->method_id = http_method_id(in + a, i - a);
        size_t p = ++i;
        /* Visible ASCII only: no CTL, no space, no obs-text. */
        while (i < b && in[i] > 0x20 && in[i] < 0x7f)
                i++;
        if (i == p || i == b || in[i] != ' ')
                return http_fail(s, 400, "malformed request-target");
        if (!http_target_form(in + p, i - p, s->method_id))
                return http_fail(s, 400, "malformed request-target");
        s->path = (uint32_t)p;
        s->path_len = (uint32_t)(i - p);
        i++;
        if (b - i != 8 || memcmp(in + i, "HTTP/", 5) != 0 || in[i + 5] < '0' || in[i + 5] > '9' ||
            in[i + 6] != '.' || in[i + 7] < '0' || in[i + 7] > '9')
                return http_fail(s, 400, "malformed HTTP version");
        if (in[i + 5] != '1' || in[i + 7] > '1')
                return http_fail(s, 505, "HTTP version not supported");
        s->minor = in[i + 7] - '0';
        return 0;
}

/* Content-Length: digits only, one field. Saturates; the limit check is at
 * the end of the head. */
static ssize_t http_content_length(struct tern_http_state *s, const uint8_t *v, size_t len)
{
        uint64_t n = 0;

        if (s->has_cl)
                return http_fail(s, 400, "duplicate Content-Length");
        if (len == 0)
                return http_fail(s, 400, "malformed Content-Length");
        for (size_t i = 0; i < len; i++) {
                if (v[i] < '0' || v[i] > '9')
                        return http_fail(s, 400, "malformed Content-Length");
                if (n <= TERN_HTTP_MAX_SIZE_LIMIT)
                        n = n * 10 + (uint64_t)(v[i] - '0');
        }
        s->has_cl = true;
        s->content_length = n;
        return 0;
}

/*
 * Transfer-Encoding: one field whose list ends in "chunked". Any other
 * coding is one we do not implement (501); "chunked" anywhere but last
 * leaves the body's end unknown (400, RFC 9112 section 6.3).
 */
static ssize_t http_transfer_encoding(struct tern_http_state *s, const uint8_t *v, size_t len)
{
        size_t i = 0, codings = 0;
        bool chunked_last = false, other = false;

        if (s->has_te)
                return http_fail(s, 400, "duplicate Transfer-Encoding");
        s->has_te = true;
        for (;;) {
                while (i < len && http_ows(v[i]))
                        i++;
                size_t t = i;
                while (i < len && http_tchar[v[i]])
                        i++;
                if (i == t)
                        return http_fail(s, 400, "malformed Transfer-Encoding");
                if (chunked_last)
                        return http_fail(s, 400, "chunked is not the last transfer coding");
                codings++;
                if (http_ieq(v + t, i - t, "chunked"))
                        chunked_last = true;
                else
                        other = true;
                /* Parameters of a coding we will refuse anyway. */
                while (i < len && v[i] != ',')
                        i++;
                if (i == len)
                        break;
                i++;
        }
        if (other)
                return http_fail(s, 501, "unsupported transfer coding");
        s->chunked = true;
        return 0;
}

/* Connection: a list of tokens; only close and keep-alive matter here. */
static void http_connection(struct tern_http_state *s, const uint8_t *v, size_t len)
{
        size_t i = 0;

        while (i < len) {
                while (i < len && (http_ows(v[i]) || v[i] == ','))
                        i++;
                size_t t = i;
                while (i < len && v[i] != ',' && !http_ows(v[i]))
                        i++;
                if (http_ieq(v + t, i - t, "close"))
                        s->conn_close = true;
                else if (http_ieq(v + t, i - t, "keep-alive"))
                        s->conn_keep = true;
        }
}

/* A field line at in[a, b), CRLF excluded: name ":" OWS value OWS. */
static ssize_t http_field_line(struct tern_http_state *s, const uint8_t *in, size_t a, size_t b,
                               bool trailer)
{
        size_t i = a;

        if (http_ows(in[a]))
                return http_fail(s, 400, "obsolete line folding");
        while (i < b && http_tchar[in[i]])
                i++;
        if (i == a || i == b || in[i] != ':')
                return http_fail(s, 400, "malformed field name");
        size_t name_end = i++;
        while (i < b && http_ows(in[i]))
                i++;
        size_t vs = i;
        /* field-vchar, obs-text, SP, HTAB; CR, LF, NUL, other CTLs and DEL
         * are refused (a bare CR ends up here). One table lookup per byte,
         * then the trailing OWS is trimmed from the end. */
        while (i < b && http_vbyte[in[i]])
                i++;
        if (i < b)
                return http_fail(s, 400, in[i] == '\r' ? "bare CR" : "malformed field value");
        size_t ve = b;
        while (ve > vs && http_ows(in[ve - 1]))
                ve--;
        if (s->nfields >= s->cfg.max_headers)
                return http_fail(s, 431, "too many header fields");
        struct http_field *f = &s->fields[s->nfields++];
        f->name = (uint32_t)a;
        f->name_len = (uint32_t)(name_end - a);
        f->value = (uint32_t)vs;
        f->value_len = (uint32_t)(ve - vs);
        if (trailer)
                return 0;
        s->nheaders++;

        const uint8_t *name = in + a, *v = in + vs;
        size_t nlen = name_end - a, vlen = ve - vs;
        switch (nlen) {
        case 4:
                if (http_ieq(name, nlen, "host") && ++s->hosts > 1)
                        return http_fail(s, 400, "duplicate Host");
                break;
        case 6:
                if (http_ieq(name, nlen, "expect") && http_ieq(v, vlen, "100-continue"))
                        s->expect_continue = true;
                break;
        case 10:
                if (http_ieq(name, nlen, "connection"))
                        http_connection(s, v, vlen);
                break;
        case 14:
                if (http_ieq(name, nlen, "content-length"))
                        return http_content_length(s, v, vlen);
                break;
        case 17:
                if (http_ieq(name, nlen, "transfer-encoding"))
                        return http_transfer_encoding(s, v, vlen);
                break;
        default:
                break;
        }
        return 0;
}

/* The checks that need the whole header section. */
static ssize_t http_head_done(struct tern_http_state *s)
{
        if (s->has_te && s->minor == 0)
                return http_fail(s, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (s->has_te && s->has_cl)
                return http_fail(s, 400, "both Content-Length and Transfer-Encoding");
        if (s->minor == 1 && s->hosts == 0)
                return http_fail(s, 400, "missing Host");
        if (s->has_cl && s->content_length > s->cfg.max_body)
                return http_fail(s, 413, "Content-Length over the limit");
        return 0;
}

/*
 * Finds the next line starting at s->line_start that must end before
 * @limit. Returns 1 with the line in [s->line_start, *cr) and its '\n' at
 * *cr + 1, 0 for need-more, or the error: @too_long (status) when @limit
 * bytes are held with no end, 400 for a bare LF.
 */
static ssize_t http_next_line(struct tern_http_state *s, const uint8_t *in, size_t len,
                              size_t limit, int too_long, const char *why, size_t *cr)
{
        size_t end = len < limit ? len : limit;
        size_t from = s->scanned > s->line_start ? s->scanned : s->line_start;
        if (from > end)
                from = end;
        const uint8_t *nl = memchr(in + from, '\n', end - from);

        if (!nl) {
                if (end == limit)
                        return http_fail(s, too_long, why);
                s->scanned = end; /* each byte is searched once per line */
                return 0;
        }
        size_t at = (size_t)(nl - in);
        if (at == s->line_start || in[at - 1] != '\r')
                return http_fail(s, 400, "bare LF");
        *cr = at - 1;
        return 1;
}

/* Request line and header section. Returns 1 once the head is complete. */
static ssize_t http_scan_head(struct tern_http_state *s, const uint8_t *in, size_t len)
{
        const struct tern_http_config *cfg = &s->cfg;
        size_t cr;
        ssize_t r;

        for (;;) {
                if (s->reqline_end == 0) {
                        r = http_next_line(s, in, len, s->line_start + cfg->max_request_line + 2,
                                           414, "request line over the limit", &cr);
                        if (r <= 0)
                                return r;
                        r = http_request_line(s, in, s->line_start, cr);
                        if (r < 0)
                                return r;
                        s->reqline_end = cr + 2;
                } else {
                        r = http_next_line(s, in, len, s->reqline_end + cfg->max_header_bytes, 431,
                                           "header section over the limit", &cr);
                        if (r <= 0)
                                return r;
                        if (cr == s->line_start) {
                                s->head_end = cr + 2;
                                r = http_head_done(s);
                                return r < 0 ? r : 1;
                        }
                        r = http_field_line(s, in, s->line_start, cr, false);
                        if (r < 0)
                                return r;
                }
                s->line_start = cr + 2;
                s->scanned = s->line_start;
        }
}

/* Makes room for @need bytes in the state buffer, which is never larger
 * than a head plus max_body. */
static int http_store_reserve(struct tern_http_state *s, size_t need)
{
        if (need <= s->store_cap)
                return 0;
        size_t cap = s->store_cap ? s->store_cap : 4096;
        while (cap < need)
                cap *= 2;
        size_t bound = s->cfg.max_request_line + 2 + s->cfg.max_header_bytes + s->cfg.max_body;
        if (cap > bound)
                cap = bound;
        uint8_t *p = realloc(s->store, cap);
        if (!p)
                return -ENOMEM;
        s->store = p;
        s->store_cap = cap;
        return 0;
}

/* Copies chunk data to offset @off of the joined body. */
static int http_store_body(struct tern_http_state *s, size_t off, const uint8_t *data, size_t len)
{
        size_t at = s->body_at + off;
        if (http_store_reserve(s, at + len))
                return -ENOMEM;
        memcpy(s->store + at, data, len);
        return 0;
}

/* The chunked body from s->pos. Returns 1 once the trailer section ended. */
static ssize_t http_scan_chunks(struct tern_http_state *s, const uint8_t *in, size_t len)
{
        const struct tern_http_config *cfg = &s->cfg;
        size_t cr;
        ssize_t r;

        for (;;) {
                switch (s->phase) {
                case HTTP_CHUNK_SIZE: {
                        size_t left = cfg->max_chunk_framing - s->framing;
                        s->line_start = s->pos;
                        r = http_next_line(s, in, len, s->pos + left, 413,
                                           "chunk framing over the limit", &cr);
                        if (r <= 0)
                                return r;
                        size_t i = s->pos, digits = 0;
                        uint64_t size = 0;
                        for (; i < cr; i++, digits++) {
                                uint8_t c = in[i];
                                unsigned d;
                                if (c >= '0' && c <= '9')
                                        d = c - '0';
                                else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
                                        d = (c | 0x20) - 'a' + 10;
                                else
                                        break;
                                size = size * 16 + d;
                                if (size > cfg->max_body - s->decoded)
                                        return http_fail(s, 413, "chunked body over the limit");
                        }
                        if (digits == 0)
                                return http_fail(s, 400, "malformed chunk size");
                        if (i < cr) {
                                /* chunk-ext: BWS ";" ..., no CTL but HTAB */
                                while (i < cr && http_ows(in[i]))
                                        i++;
                                if (i == cr || in[i] != ';')
                                        return http_fail(s, 400, "malformed chunk extension");
                                for (; i < cr; i++)
                                        if (in[i] != '\t' && (in[i] < 0x20 || in[i] == 0x7f))
                                                return http_fail(s, 400,
                                                                 "malformed chunk extension");
                        }
                        size_t line = cr + 2 - s->pos;
                        /* A data chunk's CRLF must fit too: reserve it now, so
                         * that waiting for the data holds a bounded amount. */
                        if (size > 0 && line + 2 > left)
                                return http_fail(s, 413, "chunk framing over the limit");
                        s->framing += line;
                        s->pos = cr + 2;
                        s->scanned = s->pos;
                        if (size == 0) {
                                s->phase = HTTP_TRAILER;
                                s->trailer_start = s->pos;
                                s->line_start = s->pos;
                                break;
                        }
                        s->chunk_len = (size_t)size;
                        s->phase = HTTP_CHUNK_DATA;
                        break;
                }
                case HTTP_CHUNK_DATA: {
                        size_t n = s->chunk_len;
                        if (len - s->pos < n + 2)
                                return 0;
                        if (in[s->pos + n] != '\r' || in[s->pos + n + 1] != '\n')
                                return http_fail(s, 400, "missing CRLF after chunk data");
                        /* One chunk is lent from the input; from the second
                         * on, the data is joined in the state buffer. */
                        if (++s->nchunks == 1) {
                                s->first = s->pos;
                                s->first_len = n;
                        } else {
                                if (s->nchunks == 2 &&
                                    http_store_body(s, 0, in + s->first, s->first_len))
                                        return http_fail(s, 500, "out of memory");
                                if (http_store_body(s, s->decoded, in + s->pos, n))
                                        return http_fail(s, 500, "out of memory");
                        }
                        s->decoded += n;
                        s->framing += 2;
                        s->pos += n + 2;
                        s->scanned = s->pos;
                        s->phase = HTTP_CHUNK_SIZE;
                        break;
                }
                case HTTP_TRAILER:
                        r = http_next_line(s, in, len, s->trailer_start + cfg->max_header_bytes,
                                           431, "trailer section over the limit", &cr);
                        if (r <= 0)
                                return r;
                        if (cr == s->line_start) {
                                s->pos = cr + 2;
                                return 1;
                        }
                        r = http_field_line(s, in, s->line_start, cr, true);
                        if (r < 0)
                                return r;
                        s->line_start = cr + 2;
                        s->scanned = s->line_start;
                        break;
                default:
                        return http_fail(s, 400, "internal state");
                }
        }
}

/* Fills s->req and @out for the request whose head is at @head (the input
 * or the stored head) and trailers in @in. */
static void http_lend(struct tern_http_state *s, const uint8_t *head, const uint8_t *in,
                      enum tern_http_part part, struct tern_frame *out)
{
        struct tern_http_request *r = &s->req;

        memset(r, 0, sizeof(*r));
        r->part = part;
        r->method_id = s->method_id;
        r->method = (const char *)head + s->method;
        r->method_len = s->method_len;
        r->path = (const char *)head + s->path;
        r->path_len = s->path_len;
        r->version_minor = s->minor;
        for (uint32_t i = 0; i < s->nfields; i++) {
                const uint8_t *base = i < s->nheaders ? head : in;
                s->lent[i].name = (const char *)base + s->fields[i].name;
                s->lent[i].name_len = s->fields[i].name_len;
                s->lent[i].value = (const char *)base + s->fields[i].value;
                s->lent[i].value_len = s->fields[i].value_len;
        }
        r->headers = s->lent;
        r->nheaders = s->nheaders;
        r->trailers = s->lent + s->nheaders;
        r->ntrailers = s->nfields - s->nheaders;
        r->content_length = s->has_cl ? s->content_length : 0;
        r->has_content_length = s->has_cl;
        r->chunked = s->chunked;
        r->keep_alive = s->minor == 1 ? !s->conn_close : s->conn_keep && !s->conn_close;
        r->expect_continue = s->expect_continue;
        out->kind = TERN_FRAME_DATA;
        out->data = (const uint8_t *)r;
        out->len = sizeof(*r);
}

/* Whether the request just parsed gets a TERN_HTTP_PART_HEAD first. */
static bool http_wants_continue(const struct tern_http_state *s)
{
        return s->expect_continue && (s->chunked || s->content_length > 0);
}

ssize_t tern_http_decode(struct tern_http_state *s, const uint8_t *in, size_t len,
                         struct tern_frame *out)
{
        ssize_t r;

        s->status = 0;
        s->why = NULL;
        if (len == 0)
                return TERN_CODEC_NEED_MORE;
        /* A caller that did not re-present the unconsumed bytes broke the
         * contract; failing is safer than trusting stale offsets. */
        if (s->scanned > len || s->pos > len || s->line_start > len)
                return http_fail(s, 400, "input went backwards");

        if (s->phase == HTTP_HEAD) {
                if (s->reqline_end == 0 && s->line_start == 0) {
                        /* Empty lines before a request are ignored
                         * (RFC 9112 section 2.2); each is consumed at once. */
                        if (in[0] == '\n')
                                return http_fail(s, 400, "bare LF");
                        if (in[0] == '\r') {
                                if (len < 2)
                                        return TERN_CODEC_NEED_MORE;
                                if (in[1] != '\n')
                                        return http_fail(s, 400, "bare CR");
                                return 2;
                        }
                }
                r = http_scan_head(s, in, len);
                if (r <= 0)
                        return r;
                s->pos = s->head_end;
                if (http_wants_continue(s)) {
                        /* Lend the head now, and keep a copy of it for the
                         * whole request, since these bytes are consumed. */
                        if (http_store_reserve(s, s->head_end))
                                return http_fail(s, 500, "out of memory");
                        memcpy(s->store, in, s->head_end);
                        s->head_stored = true;
                        s->body_at = s->head_end;
                        http_lend(s, in, in, TERN_HTTP_PART_HEAD, out);
                        size_t used = s->head_end;
                        s->pos = 0;
                        s->phase = s->chunked ? HTTP_CHUNK_SIZE : HTTP_LENGTH;
                        s->scanned = 0;
                        s->line_start = 0;
                        return (ssize_t)used;
                }
                s->phase = s->chunked ? HTTP_CHUNK_SIZE : HTTP_LENGTH;
                s->scanned = s->pos;
                s->line_start = s->pos;
        }

        const uint8_t *body = NULL;
        size_t body_len = 0;
        if (s->phase == HTTP_LENGTH) {
                /* content_length <= max_body <= 1 GiB: no wrap. */
                if (len - s->pos < s->content_length)
                        return TERN_CODEC_NEED_MORE;
                body_len = (size_t)s->content_length;
                body = body_len ? in + s->pos : NULL;
                s->pos += body_len;
        } else {
                r = http_scan_chunks(s, in, len);
                if (r <= 0)
                        return r;
                body_len = s->decoded;
                if (s->nchunks == 1)
                        body = in + s->first;
                else if (s->nchunks > 1)
                        body = s->store + s->body_at;
        }
        http_lend(s, s->head_stored ? s->store : in, in, TERN_HTTP_PART_WHOLE, out);
        s->req.body = body;
        s->req.body_len = body_len;
        size_t used = s->pos;
        http_restart(s);
        return (ssize_t)used;
}

const struct tern_http_request *tern_http_request_of(const struct tern_frame *f)
{
        if (!f || f->kind != TERN_FRAME_DATA || f->len != sizeof(struct tern_http_request))
                return NULL;
        return (const struct tern_http_request *)(const void *)f->data;
}

const struct tern_http_header *tern_http_find_header(const struct tern_http_request *r,
                                                     const char *name)
{
        size_t n = strlen(name);

        for (size_t i = 0; i < r->nheaders; i++) {
                const struct tern_http_header *h = &r->headers[i];
                if (h->name_len != n)
                        continue;
                size_t k = 0;
                for (; k < n; k++) {
                        char a = h->name[k], b = name[k];
                        if (a >= 'A' && a <= 'Z')
                                a = (char)(a + 32);
                        if (b >= 'A' && b <= 'Z')
                                b = (char)(b + 32);
                        if (a != b)
                                break;
                }
                if (k == n)
                        return h;
        }
        return NULL;
}

const char *tern_http_reason(int status)
{
        static const struct {
                int status;
                const char *text;
        } reasons[] = {
            {100, "Continue"},
            {101, "Switching Protocols"},
            {200, "OK"},
            {201, "Created"},
            {202, "Accepted"},
            {204, "No Content"},
            {206, "Partial Content"},
            {301, "Moved Permanently"},
            {302, "Found"},
            {303, "See Other"},
            {304, "Not Modified"},
            {307, "Temporary Redirect"},
            {308, "Permanent Redirect"},
            {400, "Bad Request"},
            {401, "Unauthorized"},
            {403, "Forbidden"},
            {404, "Not Found"},
            {405, "Method Not Allowed"},
            {408, "Request Timeout"},
            {409, "Conflict"},
            {411, "Length Required"},
            {413, "Content Too Large"},
            {414, "URI Too Long"},
            {415, "Unsupported Media Type"},
            {417, "Expectation Failed"},
            {429, "Too Many Requests"},
            {431, "Request Header Fields Too Large"},
            {500, "Internal Server Error"},
            {501, "Not Implemented"},
            {502, "Bad Gateway"},
            {503, "Service Unavailable"},
            {504, "Gateway Timeout"},
            {505, "HTTP Version Not Supported"},
        };

        for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
                if (reasons[i].status == status)
                        return reasons[i].text;
        return "Unknown";
}

/* ---- response encoders ---- */

/* Appends @len bytes; -ENOMEM (nothing appended) on failure. */
static int http_append(struct tern_buf *b, const void *p, size_t len)
{
        int err = tern_buf_append(b, p, len);
        return err ? -ENOMEM : 0;
}

/* Text that may sit inside a head line: no CTL but HTAB. */
static bool http_line_safe(const char *p, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                uint8_t c = (uint8_t)p[i];
                if (c != '\t' && (c < 0x20 || c == 0x7f))
                        return false;
        }
        return true;
}

int tern_http_put_status(struct tern_buf *b, int status, const char *reason)
{
        char line[256];

        if (status < 100 || status > 999)
                return -EINVAL;
        if (!reason)
                reason = tern_http_reason(status);
        size_t rlen = strlen(reason);
        if (rlen > sizeof(line) - 20 || !http_line_safe(reason, rlen))
                return -EINVAL;
        int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, reason);
        return http_append(b, line, (size_t)n);
}

int tern_http_put_header(struct tern_buf *b, const char *name, size_t name_len, const char *value,
                         size_t value_len)
{
        if (name_len == 0)
                return -EINVAL;
        for (size_t i = 0; i < name_len; i++)
                if (!http_tchar[(uint8_t)name[i]])
                        return -EINVAL;
        if (!http_line_safe(value, value_len))
                return -EINVAL;
        if (name_len > SIZE_MAX / 2 || value_len > SIZE_MAX / 2 - 4)
                return -ENOMEM;
        size_t n = name_len + 2 + value_len + 2;
        if (tern_buf_reserve(b, n))
                return -ENOMEM;
        uint8_t *t = tern_buf_tail(b);
        memcpy(t, name, name_len);
        t += name_len;
        *t++ = ':';
        *t++ = ' ';
        if (value_len)
                memcpy(t, value, value_len);
        t += value_len;
        *t++ = '\r';
        *t = '\n';
        tern_buf_commit(b, n);
        return 0;
}

int tern_http_put_body(struct tern_buf *b, const void *body, size_t len)
{
        char hdr[48];
        int h = snprintf(hdr, sizeof(hdr), "Content-Length: %zu\r\n\r\n", len);

        if (len > SIZE_MAX - (size_t)h)
                return -ENOMEM;
        if (tern_buf_reserve(b, (size_t)h + len))
                return -ENOMEM;
        uint8_t *t = tern_buf_tail(b);
        memcpy(t, hdr, (size_t)h);
        if (len)
                memcpy(t + h, body, len);
        tern_buf_commit(b, (size_t)h + len);
        return 0;
}

int tern_http_put_chunked(struct tern_buf *b)
{
        static const char te[] = "Transfer-Encoding: chunked\r\n\r\n";
        return http_append(b, te, sizeof(te) - 1);
}

int tern_http_put_chunk(struct tern_buf *b, const void *data, size_t len)
{
        char hdr[24];

        if (len == 0)
                return 0;
        int h = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
        if (len > SIZE_MAX - (size_t)h - 2)
                return -ENOMEM;
        if (tern_buf_reserve(b, (size_t)h + len + 2))
                return -ENOMEM;
        uint8_t *t = tern_buf_tail(b);
        memcpy(t, hdr, (size_t)h);
        memcpy(t + h, data, len);
        t[h + len] = '\r';
        t[h + len + 1] = '\n';
        tern_buf_commit(b, (size_t)h + len + 2);
        return 0;
}

int tern_http_put_chunk_end(struct tern_buf *b)
{
        return http_append(b, "0\r\n\r\n", 5);
}

int tern_http_put_continue(struct tern_buf *b)
{
        static const char c[] = "HTTP/1.1 100 Continue\r\n\r\n";
        return http_append(b, c, sizeof(c) - 1);
}

int tern_http_put_error(struct tern_buf *b, int status)
{
        char msg[512];

        if (status < 100 || status > 999)
                return -EINVAL;
        const char *reason = tern_http_reason(status);
        size_t body = strlen(reason) + 1;
        int n = snprintf(msg, sizeof(msg),
                         "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                         "Content-Length: %zu\r\n\r\n%s\n",
                         status, reason, body, reason);
        return http_append(b, msg, (size_t)n);
}

/* ---- the codec vtable ---- */

static ssize_t http_codec_decode(void *state, const uint8_t *in, size_t len, struct tern_frame *out)
{
        return tern_http_decode(state, in, len, out);
}

static int http_codec_encode(void *state, struct tern_buf *out, const void *payload, size_t len)
{
        static const char ok[] = "HTTP/1.1 200 OK\r\n";
        size_t mark = tern_buf_len(out);

        /* Both parts or neither: the second may fail after the first. */
        if (http_append(out, ok, sizeof(ok) - 1) || tern_http_put_body(out, payload, len)) {
                tern_buf_truncate(out, mark);
                return -ENOMEM;
        }
        return 0;
}

static void *http_state_new(const void *config)
{
        return tern_http_state_new(config);
}

static void http_state_free(void *state)
{
        tern_http_state_free(state);
}

const struct tern_codec tern_http_codec = {
    .name = "http",
    .decode = http_codec_decode,
    .encode = http_codec_encode,
    .state_new = http_state_new,
    .state_free = http_state_free,
};
