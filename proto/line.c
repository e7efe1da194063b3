#include "line.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fault_internal.h"

struct line_state {
        struct tern_line_config cfg;
        /*
         * No delimiter starts before this offset of the unconsumed input.
         * The input may move between calls but always starts with the bytes
         * not yet consumed, so an offset stays true where a pointer would
         * dangle. Reset whenever bytes are consumed.
         */
        size_t scanned;
        bool discarding;  /* inside an overlong line, throwing bytes away */
        uint64_t dropped; /* discarding: bytes of the line thrown away so far */
};

void tern_line_config_init(struct tern_line_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->lines = true;
        cfg->delim[0] = '\n';
        cfg->delim_len = 1;
        cfg->max_len = TERN_LINE_DEFAULT_MAX;
        cfg->overlong = TERN_LINE_OVERLONG_CLOSE;
        cfg->crlf_out = false;
}

int tern_line_config_set_delim(struct tern_line_config *cfg, const void *delim, size_t len)
{
        if (len == 0 || len > TERN_LINE_DELIM_MAX)
                return -EINVAL;
        memset(cfg->delim, 0, sizeof(cfg->delim));
        memcpy(cfg->delim, delim, len);
        cfg->delim_len = len;
        cfg->lines = false;
        return 0;
}

int tern_line_config_check(const struct tern_line_config *cfg)
{
        if (!cfg->lines && (cfg->delim_len == 0 || cfg->delim_len > TERN_LINE_DELIM_MAX))
                return -EINVAL;
        if (cfg->max_len == 0 || cfg->max_len > TERN_LINE_MAX_LEN_LIMIT)
                return -EINVAL;
        if (cfg->overlong != TERN_LINE_OVERLONG_CLOSE &&
            cfg->overlong != TERN_LINE_OVERLONG_DISCARD)
                return -EINVAL;
        return 0;
}

/*
 * Bytes of one line the input may hold before the line is certainly too
 * long: a delimiter starting after max_len makes the frame longer than
 * max_len, and in line mode a '\n' at max_len + 1 is still fine when a '\r'
 * precedes it.
 */
static size_t line_window(const struct line_state *s)
{
        return s->cfg.max_len + (s->cfg.lines ? 2 : s->cfg.delim_len);
}

/*
 * Finds the first delimiter wholly inside in[0, end), starting the search
 * at s->scanned. Returns its offset, or SIZE_MAX after recording in
 * s->scanned how far a later call may skip. Each byte is looked at a bounded
 * number of times over a line's life (memchr, then at most delim_len - 1
 * compares), so a line trickling in byte by byte costs linear time.
 */
static size_t line_find(struct line_state *s, const uint8_t *in, size_t end)
{
        size_t from = s->scanned < end ? s->scanned : end;

        if (s->cfg.lines) {
                /* memchr must not see the NULL an empty buffer may give. */
                const uint8_t *nl = from < end ? memchr(in + from, '\n', end - from) : NULL;
                if (nl)
                        return (size_t)(nl - in);
                s->scanned = end;
                return SIZE_MAX;
        }

        const uint8_t *d = s->cfg.delim;
        size_t dl = s->cfg.delim_len;
        if (end >= dl) {
                size_t last = end - dl; /* last offset a whole delimiter fits at */
                size_t i = from;
                while (i <= last) {
                        const uint8_t *p = memchr(in + i, d[0], last - i + 1);
                        if (!p)
                                break;
                        i = (size_t)(p - in);
                        if (memcmp(p + 1, d + 1, dl - 1) == 0)
                                return i;
                        i++;
                }
                /* Starts up to last are ruled out; later ones still lack bytes. */
                if (last + 1 > from)
                        s->scanned = last + 1;
        }
        return SIZE_MAX;
}

/*
 * While discarding, the bytes that must stay unconsumed at the end of
 * in[0, end): the start of a delimiter that may continue in the next read,
 * and in line mode a '\r' whose fate (stripped or counted) depends on
 * whether '\n' follows.
 */
static size_t line_keep(const struct line_state *s, const uint8_t *in, size_t end)
{
        if (s->cfg.lines)
                return end > 0 && in[end - 1] == '\r' ? 1 : 0;
        return end < s->cfg.delim_len - 1 ? end : s->cfg.delim_len - 1;
}

/*
 * Consumed counts never exceed @len, and no object is larger than
 * PTRDIFF_MAX, so the size_t to ssize_t conversions below cannot wrap.
 */
static ssize_t line_decode(void *state, const uint8_t *in, size_t len, struct tern_frame *out)
{
        struct line_state *s = state;
        size_t dl = s->cfg.lines ? 1 : s->cfg.delim_len;
        size_t window = line_window(s);

        /* A caller that did not re-present the unconsumed bytes breaks the
         * contract; rescanning is cheaper than trusting a stale offset. */
        if (s->scanned > len)
                s->scanned = 0;

        /* Outside a discard, bytes past the window cannot change the verdict
         * (frame or overlong), so they are not even looked at. */
        size_t end = s->discarding || len < window ? len : window;
        size_t pos = line_find(s, in, end);

        if (pos == SIZE_MAX && !s->discarding) {
                if (end < window)
                        return TERN_CODEC_NEED_MORE;
                if (s->cfg.overlong == TERN_LINE_OVERLONG_CLOSE)
                        return TERN_ETOOBIG;
                s->discarding = true;
                s->dropped = 0;
                /* The whole line may be here already: finish it in this call
                 * rather than after another round trip. */
                end = len;
                pos = line_find(s, in, end);
        }
        if (pos == SIZE_MAX) {
                size_t n = end - line_keep(s, in, end);
                if (n == 0)
                        return TERN_CODEC_NEED_MORE;
                s->dropped += n;
                s->scanned = 0;
                return (ssize_t)n;
        }

        size_t flen = pos;
        if (s->cfg.lines && pos > 0 && in[pos - 1] == '\r')
                flen--;
        s->scanned = 0;

        if (s->discarding) {
                s->discarding = false;
                out->kind = TERN_FRAME_OVERSIZED;
                out->dropped = s->dropped + flen;
                s->dropped = 0;
                return (ssize_t)(pos + dl);
        }
        if (flen > s->cfg.max_len) {
                if (s->cfg.overlong == TERN_LINE_OVERLONG_CLOSE)
                        return TERN_ETOOBIG;
                out->kind = TERN_FRAME_OVERSIZED;
                out->dropped = flen;
                return (ssize_t)(pos + dl);
        }
        out->kind = TERN_FRAME_DATA;
        out->data = in;
        out->len = flen;
        return (ssize_t)(pos + dl);
}

static int line_encode(void *state, struct tern_buf *out, const void *payload, size_t len)
{
        const struct line_state *s = state;
        const uint8_t *delim = s->cfg.delim;
        size_t dl = s->cfg.delim_len;

        if (s->cfg.lines) {
                delim = (const uint8_t *)(s->cfg.crlf_out ? "\r\n" : "\n");
                dl = s->cfg.crlf_out ? 2 : 1;
        }

        /*
         * The payload may already sit in @out: reserving can move it, so
         * remember where it is relative to the readable bytes.
         */
        uintptr_t p = (uintptr_t)payload;
        uintptr_t data = (uintptr_t)tern_buf_data(out);
        size_t have = tern_buf_len(out);
        bool inside = len > 0 && data && p >= data && p - data <= have && len <= have - (p - data);
        size_t rel = inside ? p - data : 0;

        if (inside && rel == 0 && len == have)
                return tern_buf_append(out, delim, dl);
        if (len > SIZE_MAX - dl)
                return -EOVERFLOW;

        int err = tern_buf_reserve(out, len + dl);
        if (err)
                return err;
        const uint8_t *src = inside ? tern_buf_data(out) + rel : payload;
        uint8_t *tail = tern_buf_tail(out);
        if (len)
                memcpy(tail, src, len);
        memcpy(tail + len, delim, dl);
        tern_buf_commit(out, len + dl);
        return 0;
}

static void *line_state_new(const void *config)
{
        struct tern_line_config defaults;
        const struct tern_line_config *cfg = config;

        if (!cfg) {
                tern_line_config_init(&defaults);
                cfg = &defaults;
        }
        if (tern_line_config_check(cfg)) {
                errno = EINVAL;
                return NULL;
        }
        struct line_state *s = TERN__CALLOC(1, sizeof(*s));
        if (!s)
                return NULL;
        s->cfg = *cfg;
        return s;
}

static void line_state_free(void *state)
{
        free(state);
}

const struct tern_codec tern_line_codec = {
    .name = "line",
    .decode = line_decode,
    .encode = line_encode,
    .state_new = line_state_new,
    .state_free = line_state_free,
};
