/**
 * @file
 * Delimiter codec: frames end with a delimiter of 1..8 bytes.
 *
 * Line mode (the default) is the usual text protocol: `\n` ends a line and
 * one `\r` right before it is stripped, so `"\n"` and `"\r\n"` both work. In
 * delimiter mode any byte sequence ends a frame and nothing is stripped.
 * Frame data never includes the delimiter.
 *
 * A maximum line length is mandatory: the connection never buffers more
 * than max_len + delimiter bytes (max_len + 2 in line mode) of one line.
 * What happens to a longer line is the overlong policy: close the
 * connection, or discard the line and report it once as a
 * TERN_FRAME_OVERSIZED frame whose @p dropped says how long it was.
 *
 * Threads: a codec state belongs to its connection's worker thread; configs
 * are plain values that any thread may build.
 */
#ifndef TERN_LINE_H
#define TERN_LINE_H

#include "export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define TERN_LINE_DELIM_MAX     8                     /**< longest delimiter */
#define TERN_LINE_DEFAULT_MAX   (64u * 1024)          /**< default max_len */
#define TERN_LINE_MAX_LEN_LIMIT (1024u * 1024 * 1024) /**< largest max_len accepted */

/** What happens to a line longer than max_len. */
enum tern_line_overlong {
        /** decode() returns TERN_ETOOBIG, so the connection closes. */
        TERN_LINE_OVERLONG_CLOSE,
        /**
         * The line's bytes are consumed and thrown away up to and including
         * the next delimiter, then one TERN_FRAME_OVERSIZED frame reports
         * them (dropped = the length the frame would have had). No byte of
         * the line is ever delivered as data; the connection stays open.
         */
        TERN_LINE_OVERLONG_DISCARD,
};

/** Configuration of tern_line_codec; start from tern_line_config_init(). */
struct tern_line_config {
        /** true: `\n` ends a frame and one `\r` before it is stripped; the
         * delim fields are ignored. false: delim ends a frame. */
        bool lines;
        uint8_t delim[TERN_LINE_DELIM_MAX]; /**< delimiter mode: its bytes */
        size_t delim_len;                   /**< delimiter mode: 1..TERN_LINE_DELIM_MAX */
        /** Longest frame accepted, delimiter (and in line mode the `\r`)
         * excluded: 1..TERN_LINE_MAX_LEN_LIMIT. */
        size_t max_len;
        enum tern_line_overlong overlong; /**< what a longer line gets */
        /** Line mode: encode() ends frames with `"\r\n"` rather than `"\n"`. */
        bool crlf_out;
};

/**
 * tern_line_config_init - fill @p cfg with the defaults: line mode, max_len
 * TERN_LINE_DEFAULT_MAX, overlong lines close the connection, `"\n"` out.
 * Any thread.
 */
TERN_EXPORT void tern_line_config_init(struct tern_line_config *cfg);

/**
 * tern_line_config_set_delim - switch @p cfg to delimiter mode with the
 * @p len bytes at @p delim (borrowed; copied). Any thread.
 * Returns 0, or -EINVAL when @p len is 0 or above TERN_LINE_DELIM_MAX.
 */
TERN_EXPORT int tern_line_config_set_delim(struct tern_line_config *cfg, const void *delim,
                                           size_t len);

/**
 * tern_line_config_check - whether tern_line_codec.state_new() will accept
 * @p cfg (borrowed). Any thread.
 * Returns 0, or -EINVAL naming no field: a bad delimiter length, max_len
 * of 0 or above TERN_LINE_MAX_LEN_LIMIT, or an unknown overlong policy.
 */
TERN_EXPORT int tern_line_config_check(const struct tern_line_config *cfg);

/**
 * The codec. state_new() takes a const struct tern_line_config * (borrowed,
 * copied; NULL means the defaults) and returns NULL with errno EINVAL or
 * ENOMEM. decode() returns TERN_ETOOBIG for an overlong line under
 * TERN_LINE_OVERLONG_CLOSE and never TERN_EFRAME: any bytes form lines.
 * encode() appends @p payload then the delimiter (`"\r\n"` in line mode with
 * crlf_out); it does not look inside @p payload, so a payload holding the
 * delimiter is several frames to the peer, and it does not apply max_len
 * (the peer's limit is the peer's business). @p payload may be exactly the
 * readable bytes of @p out, in which case only the delimiter is added; it may
 * otherwise point anywhere outside @p out's writable space.
 * Returns 0, or -ENOMEM or -EOVERFLOW from growing @p out (nothing appended).
 */
TERN_EXPORT extern const struct tern_codec tern_line_codec;

#endif
