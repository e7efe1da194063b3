/**
 * @file
 * Codec hooks: a protocol is a codec plus a frame callback.
 *
 * A codec is a const vtable. Its decode function is pure over bytes, in the
 * manner of picohttpparser: it looks at the unconsumed input and says
 * "a frame of these bytes", "need more", or "error". The connection calls it
 * in a loop until it needs more, so several frames in one read are all
 * delivered and a frame split across reads is delivered once complete.
 *
 * Decoding never copies a frame: frame.data points into the bytes passed in
 * and is valid only during the frame callback.
 *
 * Threads: a codec state belongs to its connection's worker thread; the
 * vtable itself is immutable and shared.
 */
#ifndef TERN_CODEC_H
#define TERN_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

/** What a decode() call produced. */
enum tern_frame_kind {
        TERN_FRAME_NONE,      /**< bytes consumed, no frame (e.g. discarding) */
        TERN_FRAME_DATA,      /**< a complete frame */
        TERN_FRAME_OVERSIZED, /**< a frame passed the limit and was discarded */
};

/** A decoded frame, as on_frame receives it. */
struct tern_frame {
        enum tern_frame_kind kind; /**< DATA or OVERSIZED when delivered */
        const uint8_t *data;       /**< payload, borrowed from the input; DATA only */
        size_t len;                /**< payload length */
        uint64_t dropped;          /**< OVERSIZED: bytes discarded */
};

/** decode() result: nothing consumed, more input is needed. */
#define TERN_CODEC_NEED_MORE 0

/** A codec: an immutable vtable shared by every connection using it. */
struct tern_codec {
        const char *name; /**< for log lines */
        /**
         * Looks at the @p len unconsumed input bytes at @p in (borrowed).
         * Returns the number of bytes consumed (> 0), filling @p out with a
         * frame when one is complete (out->kind is TERN_FRAME_NONE on entry);
         * TERN_CODEC_NEED_MORE; or a negative error (TERN_EFRAME,
         * TERN_ETOOBIG) that closes the connection. State such as "scanned
         * so far" must be kept as offsets relative to @p in, because the
         * bytes may move between calls. Must not read outside [in, in+len).
         */
        ssize_t (*decode)(void *state, const uint8_t *in, size_t len, struct tern_frame *out);
        /** Optional: appends one encoded frame carrying @p len bytes of @p payload
         * to @p out (may use its prepend space). Returns 0 or -errno. On an
         * error the caller drops whatever was appended, so an encoder need
         * not undo a half-written frame itself. */
        int (*encode)(void *state, struct tern_buf *out, const void *payload, size_t len);
        /** Optional: per-connection state built from the codec's config
         * (borrowed; copy what you keep). Returns NULL on failure. When absent
         * the config pointer itself is passed as the state. */
        void *(*state_new)(const void *config);
        /** Optional: frees what state_new made. */
        void (*state_free)(void *state);
};

#endif
