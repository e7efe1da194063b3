/**
 * @file
 * Length-field codec: each frame carries its own length in a header field,
 * with the semantics of Netty's LengthFieldBasedFrameDecoder.
 *
 *     frame:  | length_field_offset bytes | length field | rest ...      |
 *             |<------------- header ------------------->|
 *             |<---------------------- frame length ------------------->|
 *
 * frame length = field value + length_adjustment
 *                (+ header length unless length_includes_header)
 * and the delivered payload is the frame without its first
 * initial_bytes_to_strip bytes. So "2-byte length, then that many bytes,
 * header dropped" is field length 2 and strip 2; a length counting the
 * whole frame is length_includes_header; a length covering only part of
 * the body, or followed by more header, is a length_adjustment.
 *
 * max_frame_length bounds the whole frame as it sits in the input (header
 * included, before stripping), since that is what the connection buffers.
 * A frame over it is rejected as soon as its header is readable, before
 * any of its body is buffered. All length arithmetic is 64-bit with
 * explicit overflow checks: no field value can make the codec spin, wrap
 * or deliver a short frame.
 *
 * Threads: a codec state belongs to its connection's worker thread; configs
 * are plain values that any thread may build.
 */
#ifndef TERN_LENGTH_H
#define TERN_LENGTH_H

#include "export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define TERN_LENGTH_DEFAULT_MAX (1024u * 1024)        /**< default max_frame_length */
#define TERN_LENGTH_MAX_LIMIT   (1024u * 1024 * 1024) /**< largest max_frame_length */

/** Configuration of tern_length_codec; start from tern_length_config_init(). */
struct tern_length_config {
        size_t length_field_offset;    /**< bytes before the length field */
        unsigned length_field_length;  /**< 1, 2, 3, 4 or 8 bytes */
        bool little_endian;            /**< byte order of the field; default big */
        int64_t length_adjustment;     /**< added to the field value */
        size_t initial_bytes_to_strip; /**< dropped from the front of each frame */
        /** The field counts the header too (offset bytes and the field). */
        bool length_includes_header;
        /** Largest frame, header included: 1..TERN_LENGTH_MAX_LIMIT, and at
         * least the header length. */
        uint64_t max_frame_length;
};

/**
 * tern_length_config_init - fill @p cfg with the defaults: a 4-byte
 * big-endian length of the body at offset 0, no adjustment, the header
 * stripped, max_frame_length TERN_LENGTH_DEFAULT_MAX. Any thread.
 */
TERN_EXPORT void tern_length_config_init(struct tern_length_config *cfg);

/**
 * tern_length_config_check - whether tern_length_codec.state_new() will
 * accept @p cfg (borrowed). Any thread.
 * Returns 0, or -EINVAL: a field length other than 1/2/3/4/8,
 * max_frame_length of 0, above TERN_LENGTH_MAX_LIMIT or below the header
 * length, or initial_bytes_to_strip above max_frame_length (every frame
 * would be rejected).
 */
TERN_EXPORT int tern_length_config_check(const struct tern_length_config *cfg);

/**
 * The codec. state_new() takes a const struct tern_length_config *
 * (borrowed, copied; NULL means the defaults) and returns NULL with errno
 * EINVAL or ENOMEM.
 *
 * decode() returns TERN_ETOOBIG when the frame length is above
 * max_frame_length or does not fit in 64 bits, and TERN_EFRAME when the
 * adjusted length is negative, shorter than the header, or shorter than
 * initial_bytes_to_strip.
 *
 * encode() writes @p payload[0, length_field_offset), the length field, then
 * the rest of @p payload, with the field value a decoder of the same config
 * reads back as this frame. With offset 0 and initial_bytes_to_strip equal
 * to the field length (the defaults) that decoder delivers exactly
 * @p payload. When @p payload is exactly the readable bytes of @p out and the
 * offset is 0, the field goes into @p out's prepend space and the payload is
 * not moved; @p payload may otherwise point anywhere outside @p out's writable
 * space. max_frame_length and initial_bytes_to_strip are input rules and
 * are not applied. Returns 0, or (with nothing written): -EINVAL when @p len
 * is below length_field_offset or so small that the adjustment would need
 * a negative field value; -EMSGSIZE when the value does not fit the field;
 * -ENOMEM or -EOVERFLOW from growing @p out.
 */
TERN_EXPORT extern const struct tern_codec tern_length_codec;

#endif
