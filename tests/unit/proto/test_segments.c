/*
 * Segment invariance: a codec must produce the same frames (and the same
 * error, if any) whether a byte stream arrives whole, one byte at a time, or
 * split at arbitrary points, and those frames must be the ones an obviously
 * correct (slow, naive) reference decoder finds in the whole stream.
 *
 * The connection's loop is simulated as it really behaves: the unconsumed
 * bytes are copied to a fresh, exactly sized allocation on every read and
 * decode sees them at a new address after every consume, so a codec that
 * keeps pointers between calls or reads past its input trips ASan.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fixed.h"
#include "length.h"
#include "line.h"

#define STREAMS 3000 /* random streams per codec */
#define SPLITS  3    /* random segmentations per stream, besides whole and bytewise */

static uint64_t rng_state;

/* splitmix64: tiny, seedable, good enough to pick lengths and bytes. */
static uint64_t rnd(void)
{
        uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static size_t rnd_below(size_t n)
{
        return n ? (size_t)(rnd() % n) : 0;
}

/* ---- frame logs: what a run delivered, in a comparable form ---- */

struct log {
        uint8_t *p;
        size_t len, cap;
        size_t frames;
        ssize_t err; /* 0, or the error that ended the run */
};

static void log_put(struct log *l, const void *d, size_t n)
{
        if (l->len + n > l->cap) {
                l->cap = (l->len + n) * 2 + 64;
                l->p = realloc(l->p, l->cap);
                cr_assert_not_null(l->p);
        }
        if (n)
                memcpy(l->p + l->len, d, n);
        l->len += n;
}

static void log_frame(struct log *l, enum tern_frame_kind kind, const uint8_t *data, size_t len,
                      uint64_t dropped)
{
        uint8_t k = (uint8_t)kind;
        uint64_t n = len;
        log_put(l, &k, 1);
        log_put(l, &n, sizeof(n));
        log_put(l, &dropped, sizeof(dropped));
        if (kind == TERN_FRAME_DATA)
                log_put(l, data, len);
        l->frames++;
}

static void log_reset(struct log *l)
{
        l->len = 0;
        l->frames = 0;
        l->err = 0;
}

static void assert_same(const struct log *a, const struct log *b, const char *what, int stream)
{
        cr_assert_eq(a->err, b->err, "stream %d, %s: error %zd vs %zd", stream, what, a->err,
                     b->err);
        cr_assert_eq(a->frames, b->frames, "stream %d, %s: %zu frames vs %zu", stream, what,
                     a->frames, b->frames);
        cr_assert(a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0),
                  "stream %d, %s: frames differ", stream, what);
}

/* ---- the connection's loop ---- */

struct limits {
        size_t max_data;   /* no DATA frame is longer */
        size_t held_below; /* need-more is only said with fewer bytes held */
};

/*
 * Feeds @in in chunks ending at @cuts (ascending, last == @len) and logs the
 * frames. Every invariant of the decode contract is asserted on the way.
 */
static void run_chunks(const struct tern_codec *codec, const void *cfg, const uint8_t *in,
                       size_t len, const size_t *cuts, size_t ncuts, const struct limits *lim,
                       struct log *out)
{
        void *st = codec->state_new(cfg);
        uint8_t *buf = NULL;
        size_t off = 0, have = 0, pos = 0;

        cr_assert_not_null(st);
        log_reset(out);
        for (size_t k = 0; k < ncuts && !out->err; k++) {
                size_t n = cuts[k] - pos;
                uint8_t *nb = malloc(have + n);
                cr_assert_not_null(nb);
                if (have)
                        memcpy(nb, buf + off, have);
                memcpy(nb + have, in + pos, n);
                free(buf);
                buf = nb;
                off = 0;
                have += n;
                pos = cuts[k];

                /* Ends: each pass consumes 1..have bytes (asserted) or leaves. */
                for (;;) {
                        struct tern_frame f = {.kind = TERN_FRAME_NONE};
                        const uint8_t *at = buf + off;
                        ssize_t r = codec->decode(st, at, have, &f);
                        if (r < 0) {
                                cr_assert(r == TERN_EFRAME || r == TERN_ETOOBIG, "error %zd", r);
                                out->err = r;
                                break;
                        }
                        if (r == 0) {
                                cr_assert_eq(f.kind, TERN_FRAME_NONE);
                                cr_assert_lt(have, lim->held_below,
                                             "needs more while holding %zu bytes", have);
                                break;
                        }
                        cr_assert_leq((size_t)r, have, "consumed %zd of %zu", r, have);
                        cr_assert(f.kind == TERN_FRAME_NONE || f.kind == TERN_FRAME_DATA ||
                                      f.kind == TERN_FRAME_OVERSIZED,
                                  "frame kind %d", f.kind);
                        if (f.kind == TERN_FRAME_DATA) {
                                cr_assert_leq(f.len, lim->max_data);
                                cr_assert(f.data >= at && f.len <= (size_t)r &&
                                              (size_t)(f.data - at) <= (size_t)r - f.len,
                                          "frame outside the consumed bytes");
                        }
                        if (f.kind != TERN_FRAME_NONE)
                                log_frame(out, f.kind, f.data, f.len,
                                          f.kind == TERN_FRAME_OVERSIZED ? f.dropped : 0);
                        off += (size_t)r;
                        have -= (size_t)r;
                }
        }
        free(buf);
        codec->state_free(st);
}

/*
 * Runs @in whole, byte by byte and split at random, checking each against
 * @ref (the reference decoder's log).
 */
static void check_stream(const struct tern_codec *codec, const void *cfg, const uint8_t *in,
                         size_t len, const struct limits *lim, const struct log *ref, int stream)
{
        static size_t cuts[8192];
        struct log got = {0};

        cr_assert_leq(len, sizeof(cuts) / sizeof(cuts[0]));
        if (len == 0)
                return;

        cuts[0] = len;
        run_chunks(codec, cfg, in, len, cuts, 1, lim, &got);
        assert_same(ref, &got, "whole vs reference", stream);

        for (size_t i = 0; i < len; i++)
                cuts[i] = i + 1;
        run_chunks(codec, cfg, in, len, cuts, len, lim, &got);
        assert_same(ref, &got, "bytewise vs reference", stream);

        for (int s = 0; s < SPLITS; s++) {
                size_t n = 0, at = 0;
                /* Mostly short chunks, sometimes long ones. */
                size_t span = 1 + rnd_below(s == 0 ? 8 : 64);
                while (at < len) {
                        at += 1 + rnd_below(span);
                        if (at > len)
                                at = len;
                        cuts[n++] = at;
                }
                run_chunks(codec, cfg, in, len, cuts, n, lim, &got);
                assert_same(ref, &got, "random split vs reference", stream);
        }
        free(got.p);
}

/* ---- line ---- */

/* The naive reference: search the whole stream, decide line by line. */
static void ref_line(const struct tern_line_config *c, const uint8_t *in, size_t len,
                     struct log *out)
{
        const uint8_t *d = c->lines ? (const uint8_t *)"\n" : c->delim;
        size_t dl = c->lines ? 1 : c->delim_len;
        size_t window = c->max_len + (c->lines ? 2 : dl);
        size_t pos = 0;

        log_reset(out);
        for (;;) {
                size_t i = pos;
                while (i + dl <= len && memcmp(in + i, d, dl) != 0)
                        i++;
                if (i + dl > len) {
                        /* Unfinished line: only "certainly too long" matters. */
                        if (len - pos >= window && c->overlong == TERN_LINE_OVERLONG_CLOSE)
                                out->err = TERN_ETOOBIG;
                        return;
                }
                size_t flen = i - pos;
                if (c->lines && flen > 0 && in[i - 1] == '\r')
                        flen--;
                if (flen <= c->max_len) {
                        log_frame(out, TERN_FRAME_DATA, in + pos, flen, 0);
                } else if (c->overlong == TERN_LINE_OVERLONG_CLOSE) {
                        out->err = TERN_ETOOBIG;
                        return;
                } else {
                        log_frame(out, TERN_FRAME_OVERSIZED, NULL, 0, flen);
                }
                pos = i + dl;
        }
}

/* A small alphabet, so delimiters occur by accident and partially. */
static uint8_t line_byte(void)
{
        static const char alpha[] = "ab|\r\n";
        return rnd_below(8) == 0 ? (uint8_t)rnd() : (uint8_t)alpha[rnd_below(5)];
}

Test(segments, line)
{
        static uint8_t in[8192];
        struct log ref = {0};
        size_t oversized = 0, errors = 0, frames = 0;

        rng_state = 0x11e5eed;
        for (int n = 0; n < STREAMS; n++) {
                struct tern_line_config c;
                tern_line_config_init(&c);
                if (rnd_below(2)) {
                        uint8_t d[TERN_LINE_DELIM_MAX];
                        size_t dl = rnd_below(4) ? 1 + rnd_below(3) : 1 + rnd_below(8);
                        for (size_t i = 0; i < dl; i++)
                                d[i] = (uint8_t) "ab|\n"[rnd_below(4)];
                        cr_assert_eq(tern_line_config_set_delim(&c, d, dl), 0);
                }
                c.max_len = 1 + rnd_below(24);
                c.overlong = rnd_below(2) ? TERN_LINE_OVERLONG_DISCARD : TERN_LINE_OVERLONG_CLOSE;

                size_t len = 0, nlines = 1 + rnd_below(30);
                for (size_t k = 0; k < nlines; k++) {
                        size_t body;
                        switch (rnd_below(6)) {
                        case 0:
                                body = c.max_len;
                                break;
                        case 1:
                                body = c.max_len + 1;
                                break;
                        case 2:
                                body = rnd_below(3 * c.max_len + 8);
                                break;
                        default:
                                body = rnd_below(c.max_len + 1);
                                break;
                        }
                        /* Rarely a run long enough to cross many windows. */
                        if (rnd_below(40) == 0)
                                body = 50 + rnd_below(200);
                        for (size_t i = 0; i < body && len < 7000; i++)
                                in[len++] = line_byte();
                        if (k + 1 == nlines && rnd_below(4) == 0)
                                break; /* unfinished last line */
                        if (c.lines) {
                                if (rnd_below(2))
                                        in[len++] = '\r';
                                in[len++] = '\n';
                        } else {
                                memcpy(in + len, c.delim, c.delim_len);
                                len += c.delim_len;
                        }
                }

                struct limits lim = {
                    .max_data = c.max_len,
                    .held_below = c.max_len + (c.lines ? 2 : c.delim_len),
                };
                ref_line(&c, in, len, &ref);
                for (size_t i = 0; i < ref.len;) {
                        uint64_t flen;
                        memcpy(&flen, ref.p + i + 1, sizeof(flen));
                        oversized += ref.p[i] == TERN_FRAME_OVERSIZED;
                        i += 17 + (ref.p[i] == TERN_FRAME_DATA ? flen : 0);
                }
                frames += ref.frames;
                errors += ref.err != 0;
                check_stream(&tern_line_codec, &c, in, len, &lim, &ref, n);
        }
        /* The generator must reach every outcome, or the test proves less
         * than it claims. */
        cr_assert_gt(frames, STREAMS * 3);
        cr_assert_gt(oversized, STREAMS / 10, "only %zu oversized frames", oversized);
        cr_assert_gt(errors, STREAMS / 10, "only %zu streams ended in an error", errors);
        free(ref.p);
}

/* ---- length ---- */

/* The reference computes in 128 bits, so it needs no overflow reasoning. */
static void ref_length(const struct tern_length_config *c, const uint8_t *in, size_t len,
                       struct log *out)
{
        size_t hdr = c->length_field_offset + c->length_field_length;
        size_t pos = 0;

        log_reset(out);
        while (len - pos >= hdr) {
                const uint8_t *f = in + pos + c->length_field_offset;
                unsigned __int128 raw = 0;
                for (unsigned i = 0; i < c->length_field_length; i++) {
                        unsigned k = c->little_endian ? c->length_field_length - 1 - i : i;
                        raw = raw << 8 | f[k];
                }
                __int128 total = (__int128)raw + c->length_adjustment;
                if (!c->length_includes_header)
                        total += (__int128)hdr;
                if (total < 0 || total < (__int128)hdr) {
                        out->err = TERN_EFRAME;
                        return;
                }
                if (total > (__int128)c->max_frame_length) {
                        out->err = TERN_ETOOBIG;
                        return;
                }
                if ((__int128)c->initial_bytes_to_strip > total) {
                        out->err = TERN_EFRAME;
                        return;
                }
                if ((__int128)(len - pos) < total)
                        return;
                log_frame(out, TERN_FRAME_DATA, in + pos + c->initial_bytes_to_strip,
                          (size_t)total - c->initial_bytes_to_strip, 0);
                pos += (size_t)total;
        }
}

static int64_t pick_adjustment(size_t hdr)
{
        switch (rnd_below(12)) {
        case 0:
                return INT64_MIN;
        case 1:
                return INT64_MAX;
        case 2:
                return -4294967296LL;
        case 3:
                return -(int64_t)hdr;
        default:
                return (int64_t)rnd_below(hdr + 6) - (int64_t)hdr - 2;
        }
}

Test(segments, length)
{
        static const unsigned widths[] = {1, 2, 3, 4, 8};
        static uint8_t in[8192];
        struct log ref = {0};
        size_t errors = 0, frames = 0;

        rng_state = 0x1e17;
        for (int n = 0; n < STREAMS; n++) {
                struct tern_length_config c;
                tern_length_config_init(&c);
                c.length_field_length = widths[rnd_below(5)];
                c.little_endian = rnd_below(2);
                c.length_field_offset = rnd_below(4);
                c.length_includes_header = rnd_below(2);
                size_t hdr = c.length_field_offset + c.length_field_length;
                c.length_adjustment = pick_adjustment(hdr);
                c.initial_bytes_to_strip = rnd_below(hdr + 3);
                size_t floor = hdr > c.initial_bytes_to_strip ? hdr : c.initial_bytes_to_strip;
                c.max_frame_length = floor + rnd_below(64);
                cr_assert_eq(tern_length_config_check(&c), 0);

                size_t len = 0, nframes = 1 + rnd_below(25);
                for (size_t k = 0; k < nframes && len < 7000; k++) {
                        size_t total = hdr + rnd_below(c.max_frame_length - hdr + 4);
                        /* Sometimes a field claiming a frame shorter than its
                         * header; the bytes written are still a full header. */
                        size_t claim = rnd_below(15) == 0 ? rnd_below(hdr) : total;
                        __int128 v = (__int128)claim - c.length_adjustment -
                                     (c.length_includes_header ? 0 : (__int128)hdr);
                        unsigned bits = 8 * c.length_field_length;
                        bool fits = v >= 0 && (bits == 64 || v < ((__int128)1 << bits));
                        for (size_t i = 0; i < c.length_field_offset; i++)
                                in[len + i] = (uint8_t)rnd();
                        uint8_t *field = in + len + c.length_field_offset;
                        if (!fits || rnd_below(20) == 0) {
                                /* A field the generator did not choose: often huge. */
                                for (unsigned i = 0; i < c.length_field_length; i++)
                                        field[i] = rnd_below(2) ? 0xff : (uint8_t)rnd();
                        } else {
                                uint64_t u = (uint64_t)v;
                                for (unsigned i = 0; i < c.length_field_length; i++) {
                                        unsigned b =
                                            c.little_endian ? i : c.length_field_length - 1 - i;
                                        field[b] = (uint8_t)u;
                                        u >>= 8;
                                }
                        }
                        for (size_t i = hdr; i < total; i++)
                                in[len + i] = (uint8_t)rnd();
                        len += total;
                        if (k + 1 == nframes && rnd_below(4) == 0)
                                len -= rnd_below(total) + 1; /* truncated last frame */
                }

                struct limits lim = {
                    .max_data = c.max_frame_length,
                    .held_below = c.max_frame_length,
                };
                ref_length(&c, in, len, &ref);
                frames += ref.frames;
                errors += ref.err != 0;
                check_stream(&tern_length_codec, &c, in, len, &lim, &ref, n);
        }
        cr_assert_gt(frames, STREAMS * 2);
        cr_assert_gt(errors, STREAMS / 10, "only %zu streams ended in an error", errors);
        free(ref.p);
}

/* ---- fixed ---- */

Test(segments, fixed)
{
        static uint8_t in[8192];
        struct log ref = {0};

        rng_state = 0xf1ced;
        for (int n = 0; n < STREAMS; n++) {
                struct tern_fixed_config c;
                tern_fixed_config_init(&c, 1 + rnd_below(16));
                size_t len = 1 + rnd_below(400);
                for (size_t i = 0; i < len; i++)
                        in[i] = (uint8_t)rnd();

                log_reset(&ref);
                for (size_t pos = 0; len - pos >= c.frame_len; pos += c.frame_len)
                        log_frame(&ref, TERN_FRAME_DATA, in + pos, c.frame_len, 0);
                struct limits lim = {.max_data = c.frame_len, .held_below = c.frame_len};
                check_stream(&tern_fixed_codec, &c, in, len, &lim, &ref, n);
        }
        free(ref.p);
}
