/*
 * Shared driver of the codec fuzz harnesses: the connection's decode loop,
 * fed in pieces the fuzzer chooses, with every contract invariant checked
 * and the frames compared against a run over the whole input.
 *
 * Input layout (after the harness has taken its config bytes):
 *   n, then n bytes of chunk lengths (each 1..256, cycled), then the stream.
 * So the fuzzer controls both the bytes and how they are split.
 *
 * A violated invariant prints what and aborts, which libFuzzer reports as a
 * crash with the input saved.
 */
#ifndef TERN_FUZZ_COMMON_H
#define TERN_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                      \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "invariant failed: %s: ", #cond);                          \
                        fprintf(stderr, __VA_ARGS__);                                              \
                        fputc('\n', stderr);                                                       \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

/* Takes @n config bytes from the front (zeros once the input runs out). */
struct fuzz_input {
        const uint8_t *p;
        size_t left;
};

static inline uint8_t fuzz_byte(struct fuzz_input *in)
{
        if (!in->left)
                return 0;
        in->left--;
        return *in->p++;
}

struct fuzz_limits {
        size_t max_data;   /* no DATA frame may be longer */
        size_t held_below; /* need-more only with fewer unconsumed bytes */
};

/* Delivered frames, serialised so two runs compare with memcmp. */
struct fuzz_log {
        uint8_t *p;
        size_t len, cap;
        ssize_t err;
};

static inline void fuzz_log_put(struct fuzz_log *l, const void *d, size_t n)
{
        if (l->len + n > l->cap) {
                l->cap = (l->len + n) * 2 + 64;
                l->p = realloc(l->p, l->cap);
                FUZZ_CHECK(l->p, "out of memory");
        }
        if (n)
                memcpy(l->p + l->len, d, n);
        l->len += n;
}

/* Called with every DATA frame (borrowed bytes), e.g. to re-encode it. */
typedef void (*fuzz_frame_cb)(void *state, const uint8_t *data, size_t len, void *arg);

/*
 * Runs the loop over @stream cut at the lengths in @cuts (cycled; whole when
 * @ncuts is 0). Bytes are copied to a fresh exactly sized allocation per
 * read and seen at a new address after each consume, as in a connection.
 */
static inline void fuzz_run(const struct tern_codec *codec, void *state, const uint8_t *stream,
                            size_t len, const uint8_t *cuts, size_t ncuts,
                            const struct fuzz_limits *lim, struct fuzz_log *log,
                            fuzz_frame_cb on_frame, void *arg)
{
        uint8_t *buf = NULL;
        size_t off = 0, have = 0, pos = 0, k = 0, calls = 0;

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
                        ssize_t r = codec->decode(state, at, have, &f);

                        /* Every call either stops or consumes: at most one
                         * stopping call per read plus one per byte read. */
                        FUZZ_CHECK(++calls <= 2 * pos, "%zu decode calls for %zu bytes", calls,
                                   pos);
                        if (r < 0) {
                                FUZZ_CHECK(r == TERN_EFRAME || r == TERN_ETOOBIG, "error %zd", r);
                                FUZZ_CHECK(f.kind == TERN_FRAME_NONE, "frame with an error");
                                log->err = r;
                                break;
                        }
                        if (r == 0) {
                                FUZZ_CHECK(f.kind == TERN_FRAME_NONE, "frame without consuming");
                                FUZZ_CHECK(have < lim->held_below,
                                           "needs more while holding %zu bytes (limit %zu)", have,
                                           lim->held_below);
                                break;
                        }
                        FUZZ_CHECK((size_t)r <= have, "consumed %zd of %zu", r, have);
                        FUZZ_CHECK(f.kind == TERN_FRAME_NONE || f.kind == TERN_FRAME_DATA ||
                                       f.kind == TERN_FRAME_OVERSIZED,
                                   "kind %d", (int)f.kind);
                        if (f.kind == TERN_FRAME_DATA) {
                                FUZZ_CHECK(f.len <= lim->max_data, "frame of %zu > %zu", f.len,
                                           lim->max_data);
                                FUZZ_CHECK(f.data >= at && f.len <= (size_t)r &&
                                               (size_t)(f.data - at) <= (size_t)r - f.len,
                                           "frame outside the %zd consumed bytes", r);
                                if (on_frame)
                                        on_frame(state, f.data, f.len, arg);
                        }
                        if (f.kind != TERN_FRAME_NONE) {
                                uint8_t kind = (uint8_t)f.kind;
                                uint64_t flen = f.kind == TERN_FRAME_DATA ? f.len : 0;
                                uint64_t dropped = f.kind == TERN_FRAME_OVERSIZED ? f.dropped : 0;
                                fuzz_log_put(log, &kind, 1);
                                fuzz_log_put(log, &flen, sizeof(flen));
                                fuzz_log_put(log, &dropped, sizeof(dropped));
                                fuzz_log_put(log, f.data, flen);
                        }
                        off += (size_t)r;
                        have -= (size_t)r;
                }
        }
        free(buf);
}

/*
 * Splits the remaining input into cut lengths and stream, runs the codec
 * over it in pieces and whole (each with a fresh state from @config), and
 * checks both runs delivered the same frames and the same error.
 */
static inline void fuzz_codec(const struct tern_codec *codec, const void *config,
                              struct fuzz_input *in, const struct fuzz_limits *lim,
                              fuzz_frame_cb on_frame, void *arg)
{
        size_t ncuts = fuzz_byte(in);
        if (ncuts > in->left)
                ncuts = in->left;
        const uint8_t *cuts = in->p;
        const uint8_t *stream = in->p + ncuts;
        size_t len = in->left - ncuts;
        /* With no cut bytes, feed one byte at a time: the hardest split. */
        static const uint8_t one = 0;
        if (ncuts == 0) {
                cuts = &one;
                ncuts = 1;
        }

        struct fuzz_log pieces = {0}, whole = {0};
        void *st = codec->state_new(config);
        FUZZ_CHECK(st, "state_new refused a config the harness built");
        fuzz_run(codec, st, stream, len, cuts, ncuts, lim, &pieces, on_frame, arg);
        codec->state_free(st);

        st = codec->state_new(config);
        FUZZ_CHECK(st, "state_new failed");
        fuzz_run(codec, st, stream, len, NULL, 0, lim, &whole, NULL, NULL);
        codec->state_free(st);

        FUZZ_CHECK(pieces.err == whole.err, "error %zd in pieces, %zd whole", pieces.err,
                   whole.err);
        FUZZ_CHECK(pieces.len == whole.len &&
                       (whole.len == 0 || memcmp(pieces.p, whole.p, whole.len) == 0),
                   "frames differ between pieces and whole");
        free(pieces.p);
        free(whole.p);
}

/*
 * Round trip: every DATA frame of the pieces run is encoded again with the
 * same codec; decoding that output must give back exactly those frames.
 */
struct fuzz_roundtrip {
        const struct tern_codec *codec;
        struct tern_buf out;  /* re-encoded frames */
        struct fuzz_log want; /* the DATA frames, in fuzz_run's log format */
};

static inline void fuzz_roundtrip_frame(void *state, const uint8_t *data, size_t len, void *arg)
{
        struct fuzz_roundtrip *rt = arg;
        uint8_t kind = TERN_FRAME_DATA;
        uint64_t flen = len, dropped = 0;

        int err = rt->codec->encode(state, &rt->out, data, len);
        FUZZ_CHECK(err == 0, "encoding a decoded frame of %zu bytes failed: %d", len, err);
        fuzz_log_put(&rt->want, &kind, 1);
        fuzz_log_put(&rt->want, &flen, sizeof(flen));
        fuzz_log_put(&rt->want, &dropped, sizeof(dropped));
        fuzz_log_put(&rt->want, data, len);
}

static inline void fuzz_roundtrip_check(struct fuzz_roundtrip *rt, const void *config,
                                        const struct fuzz_limits *lim)
{
        struct fuzz_log got = {0};
        void *st = rt->codec->state_new(config);

        FUZZ_CHECK(st, "state_new failed");
        fuzz_run(rt->codec, st, tern_buf_data(&rt->out), tern_buf_len(&rt->out), NULL, 0, lim, &got,
                 NULL, NULL);
        rt->codec->state_free(st);
        FUZZ_CHECK(got.err == 0, "re-encoded frames decode to error %zd", got.err);
        FUZZ_CHECK(got.len == rt->want.len &&
                       (got.len == 0 || memcmp(got.p, rt->want.p, got.len) == 0),
                   "re-encoded frames decode differently");
        free(got.p);
        free(rt->want.p);
        tern_buf_free(&rt->out);
}

#endif
