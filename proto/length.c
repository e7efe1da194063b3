#include "length.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fault_internal.h"

/*
 * The state is a validated copy of the config: decoding keeps nothing
 * between calls because a frame's header is re-read until the whole frame
 * is there, which costs a few loads per read and needs no offsets at all.
 */
struct length_state {
        struct tern_length_config cfg;
        size_t header; /* length_field_offset + length_field_length */
};

void tern_length_config_init(struct tern_length_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->length_field_offset = 0;
        cfg->length_field_length = 4;
        cfg->little_endian = false;
        cfg->length_adjustment = 0;
        cfg->initial_bytes_to_strip = 4;
        cfg->length_includes_header = false;
        cfg->max_frame_length = TERN_LENGTH_DEFAULT_MAX;
}

int tern_length_config_check(const struct tern_length_config *cfg)
{
        switch (cfg->length_field_length) {
        case 1:
        case 2:
        case 3:
        case 4:
        case 8:
                break;
        default:
                return -EINVAL;
        }
        if (cfg->max_frame_length == 0 || cfg->max_frame_length > TERN_LENGTH_MAX_LIMIT)
                return -EINVAL;
        /* Compared one by one so that a huge offset cannot wrap the sum. */
        if (cfg->length_field_offset > cfg->max_frame_length ||
            cfg->max_frame_length - cfg->length_field_offset < cfg->length_field_length)
                return -EINVAL;
        if (cfg->initial_bytes_to_strip > cfg->max_frame_length)
                return -EINVAL;
        return 0;
}

static uint64_t length_read_field(const uint8_t *p, unsigned n, bool little_endian)
{
        uint64_t v = 0;

        for (unsigned i = 0; i < n; i++) {
                unsigned k = little_endian ? n - 1 - i : i;
                v = v << 8 | p[k];
        }
        return v;
}

static void length_write_field(uint8_t *p, unsigned n, bool little_endian, uint64_t v)
{
        for (unsigned i = 0; i < n; i++) {
                unsigned k = little_endian ? i : n - 1 - i;
                p[k] = (uint8_t)v;
                v >>= 8;
        }
}

/* Magnitude of a negative int64 without negating INT64_MIN. */
static uint64_t length_neg_magnitude(int64_t v)
{
        return (uint64_t)(-(v + 1)) + 1;
}

/*
 * Frame length for field value @raw, or a negative error. Every step is
 * checked, so a result is the true mathematical value or an error, never a
 * wrapped number.
 */
static int64_t length_frame_length(const struct length_state *s, uint64_t raw)
{
        const struct tern_length_config *c = &s->cfg;
        uint64_t total = raw;

        /*
         * A wrap in either addition means a true value of at least 2^64,
         * which even the most negative adjustment (-2^63) leaves far above
         * any max_frame_length: too big, whatever follows.
         */
        if (!c->length_includes_header && __builtin_add_overflow(total, s->header, &total))
                return TERN_ETOOBIG;
        if (c->length_adjustment >= 0) {
                if (__builtin_add_overflow(total, (uint64_t)c->length_adjustment, &total))
                        return TERN_ETOOBIG;
        } else {
                uint64_t m = length_neg_magnitude(c->length_adjustment);
                if (total < m)
                        return TERN_EFRAME; /* negative length */
                total -= m;
        }
        if (total < s->header)
                return TERN_EFRAME; /* frame ends inside its own header */
        if (total > c->max_frame_length)
                return TERN_ETOOBIG;
        if (c->initial_bytes_to_strip > total)
                return TERN_EFRAME;
        /* max_frame_length <= TERN_LENGTH_MAX_LIMIT, so this fits. */
        return (int64_t)total;
}

static ssize_t length_decode(void *state, const uint8_t *in, size_t len, struct tern_frame *out)
{
        const struct length_state *s = state;
        const struct tern_length_config *c = &s->cfg;

        if (len < s->header)
                return TERN_CODEC_NEED_MORE;
        uint64_t raw = length_read_field(in + c->length_field_offset, c->length_field_length,
                                         c->little_endian);
        int64_t total = length_frame_length(s, raw);
        if (total < 0)
                return (ssize_t)total;
        if ((uint64_t)len < (uint64_t)total)
                return TERN_CODEC_NEED_MORE;

        out->kind = TERN_FRAME_DATA;
        out->data = in + c->initial_bytes_to_strip;
        out->len = (size_t)total - c->initial_bytes_to_strip;
        return (ssize_t)total;
}

/*
 * Field value that makes a decoder of the same config read a frame of
 * @len + field length bytes. Returns 0 with *@value set, -EINVAL when the
 * adjustment would need a negative value, -EMSGSIZE when it is too large
 * for the field.
 */
static int length_field_value(const struct length_state *s, size_t len, uint64_t *value)
{
        const struct tern_length_config *c = &s->cfg;
        uint64_t v;

        if (c->length_includes_header) {
                if (__builtin_add_overflow((uint64_t)len, (uint64_t)c->length_field_length, &v))
                        return -EMSGSIZE;
        } else {
                v = (uint64_t)(len - c->length_field_offset); /* the body */
        }
        if (c->length_adjustment >= 0) {
                if (v < (uint64_t)c->length_adjustment)
                        return -EINVAL;
                v -= (uint64_t)c->length_adjustment;
        } else if (__builtin_add_overflow(v, length_neg_magnitude(c->length_adjustment), &v)) {
                return -EMSGSIZE;
        }
        if (c->length_field_length < 8 && v >> (8 * c->length_field_length))
                return -EMSGSIZE;
        *value = v;
        return 0;
}

static int length_encode(void *state, struct tern_buf *out, const void *payload, size_t len)
{
        const struct length_state *s = state;
        const struct tern_length_config *c = &s->cfg;
        unsigned fl = c->length_field_length;
        uint8_t field[8];
        uint64_t v;

        if (len < c->length_field_offset)
                return -EINVAL;
        int err = length_field_value(s, len, &v);
        if (err)
                return err;
        length_write_field(field, fl, c->little_endian, v);

        /* The payload may already sit in @out, and reserving can move it. */
        uintptr_t p = (uintptr_t)payload;
        uintptr_t data = (uintptr_t)tern_buf_data(out);
        size_t have = tern_buf_len(out);
        bool inside = len > 0 && data && p >= data && p - data <= have && len <= have - (p - data);
        size_t rel = inside ? p - data : 0;

        /* Built in place: put the field in front without moving the payload. */
        if (inside && rel == 0 && len == have && c->length_field_offset == 0)
                return tern_buf_prepend(out, field, fl);
        if (len > SIZE_MAX - fl)
                return -EOVERFLOW;

        err = tern_buf_reserve(out, len + fl);
        if (err)
                return err;
        const uint8_t *src = inside ? tern_buf_data(out) + rel : payload;
        uint8_t *tail = tern_buf_tail(out);
        size_t off = c->length_field_offset;
        if (off)
                memcpy(tail, src, off);
        memcpy(tail + off, field, fl);
        if (len > off)
                memcpy(tail + off + fl, src + off, len - off);
        tern_buf_commit(out, len + fl);
        return 0;
}

static void *length_state_new(const void *config)
{
        struct tern_length_config defaults;
        const struct tern_length_config *cfg = config;

        if (!cfg) {
                tern_length_config_init(&defaults);
                cfg = &defaults;
        }
        if (tern_length_config_check(cfg)) {
                errno = EINVAL;
                return NULL;
        }
        struct length_state *s = TERN__CALLOC(1, sizeof(*s));
        if (!s)
                return NULL;
        s->cfg = *cfg;
        s->header = cfg->length_field_offset + cfg->length_field_length;
        return s;
}

static void length_state_free(void *state)
{
        free(state);
}

const struct tern_codec tern_length_codec = {
    .name = "length",
    .decode = length_decode,
    .encode = length_encode,
    .state_new = length_state_new,
    .state_free = length_state_free,
};
