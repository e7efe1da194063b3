/**
 * @file
 * RESP codec, request side: what a Redis server reads, plus reply encoders.
 *
 * Two request forms, told apart by the first byte, as Redis does:
 *
 *   '*'       an array of bulk strings, as redis-cli, redis-benchmark and
 *             every client library send:  `*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`
 *   otherwise an inline command, what telnet / nc users type: arguments
 *             separated by spaces or tabs, ended by `"\n"` or `"\r\n"`. There is
 *             no quoting: an argument holding a space must use the array form.
 *
 * A DATA frame is one whole command and points at its bytes in the input:
 * an array frame holds everything from the '*' to the last `"\r\n"`; an inline
 * frame holds the line without its terminator. tern_resp_args() turns a
 * frame into an argument vector of pointers into those same bytes, so no
 * argument is ever copied. An empty command (`"*0\r\n"`, a blank line) is
 * consumed without a frame.
 *
 * Limits are mandatory. Every length is checked against them as soon as its
 * digits arrive, before the bytes it announces, and the codec allocates
 * nothing per command, so a hostile length costs nothing. Numbers in headers
 * must be plain decimal: no sign, no '+', no leading zero, no spaces, and
 * followed by `"\r\n"`. decode() returns:
 *   TERN_ETOOBIG  a count, bulk length, inline line or whole command over its
 *                 limit (including *99999999999999999999)
 *   TERN_EFRAME   anything else malformed: a negative or missing number
 *                 (*-1, $-5, `"$\r\n"`), a '+' or a leading zero, a missing
 *                 `"\r\n"`, an element that is not a bulk string
 * and tern_resp_error_reason() then names the problem in words a Redis user
 * knows ("invalid bulk length", ...), for a "-ERR Protocol error: ..." reply.
 *
 * Threads: a state belongs to its connection's worker thread; configs are
 * plain values any thread may build; the encoders touch only their buffer.
 */
#ifndef TERN_RESP_H
#define TERN_RESP_H

#include "export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "codec.h"

#define TERN_RESP_DEFAULT_MAX_BULK   (1u << 20)  /**< 1 MiB per argument */
#define TERN_RESP_DEFAULT_MAX_ARGS   1024u       /**< arguments per command */
#define TERN_RESP_DEFAULT_MAX_INLINE (64u << 10) /**< inline line, terminator excluded */
#define TERN_RESP_DEFAULT_MAX_FRAME  (8u << 20)  /**< bytes of one array command */

#define TERN_RESP_MAX_BULK_LIMIT (512u << 20) /**< Redis's own ceiling for a bulk */
#define TERN_RESP_MAX_ARGS_LIMIT (1u << 20)   /**< largest max_args accepted */
#define TERN_RESP_MAX_SIZE_LIMIT (1u << 30)   /**< max_inline and max_frame */

/** Limits of the RESP decoder; start from tern_resp_config_init(). */
struct tern_resp_config {
        size_t max_bulk;   /**< longest bulk string: 1..TERN_RESP_MAX_BULK_LIMIT */
        uint32_t max_args; /**< most arguments in a command: 1..TERN_RESP_MAX_ARGS_LIMIT */
        size_t max_inline; /**< longest inline line: 1..TERN_RESP_MAX_SIZE_LIMIT */
        size_t max_frame;  /**< longest array command, framing included:
                              16..TERN_RESP_MAX_SIZE_LIMIT */
};

/**
 * Decoder state. Public so that an application may embed it (see
 * apps/kv); the fields are the decoder's own. Progress through a partial
 * command is kept as offsets from the first unconsumed byte, because the
 * input may move between calls but always starts there.
 */
struct tern_resp_state {
        struct tern_resp_config cfg; /**< limits in force */
        size_t pos;                  /**< array: bytes of the command already validated */
        size_t bulk_end;             /**< array, inside a bulk: offset where its data ends */
        size_t scanned;              /**< inline: no `\n` before this offset */
        uint32_t nargs;              /**< array: elements announced (valid when pos > 0) */
        uint32_t argi;               /**< array: elements complete */
        bool in_bulk;                /**< array: the header of element argi was parsed */
        const char *why;             /**< static text for the last error, or NULL */
};

/** One argument: @p len bytes at @p data, borrowed from the frame. */
struct tern_resp_arg {
        const uint8_t *data; /**< first byte, borrowed from the frame */
        size_t len;          /**< bytes */
};

/** Fills @p cfg with the TERN_RESP_DEFAULT_* limits. Any thread. */
TERN_EXPORT void tern_resp_config_init(struct tern_resp_config *cfg);

/**
 * tern_resp_config_check - whether @p cfg (borrowed) is within the ranges
 * documented on struct tern_resp_config. Any thread.
 * Returns 0 or -EINVAL.
 */
TERN_EXPORT int tern_resp_config_check(const struct tern_resp_config *cfg);

/**
 * tern_resp_state_init - make @p s a fresh decoder with the limits of @p cfg
 * (borrowed, copied; NULL means the defaults). [the state's thread]
 * Returns 0, or -EINVAL for a config tern_resp_config_check() refuses.
 */
TERN_EXPORT int tern_resp_state_init(struct tern_resp_state *s, const struct tern_resp_config *cfg);

/**
 * tern_resp_decode - the decoder, with the contract of tern_codec.decode
 * (codec.h): looks at the @p len unconsumed bytes at @p in (borrowed) and
 * returns the bytes consumed (> 0, with a DATA frame in @p out unless the
 * command was empty), TERN_CODEC_NEED_MORE, or TERN_ETOOBIG / TERN_EFRAME as
 * described at the top of this file. Never reads outside [in, in + len).
 * After an error the state must not be used again without
 * tern_resp_state_init(). [the state's thread]
 */
TERN_EXPORT ssize_t tern_resp_decode(struct tern_resp_state *s, const uint8_t *in, size_t len,
                                     struct tern_frame *out);

/** Static text describing the error the last decode returned, e.g. "invalid
 * bulk length"; NULL when it returned none. [the state's thread] */
TERN_EXPORT const char *tern_resp_error_reason(const struct tern_resp_state *s);

/**
 * tern_resp_args - split a command frame into arguments. [any]
 * @p f is a DATA frame from tern_resp_decode() (borrowed); fills
 * @p argv[0..min(argc, @p max)-1] with pointers into f->data, so the arguments
 * live exactly as long as the frame does.
 * Returns argc, which may exceed @p max (then only @p max are filled, in the
 * manner of snprintf), or -EINVAL if @p f does not hold one well-formed
 * command. Never reads outside the frame.
 */
TERN_EXPORT int tern_resp_args(const struct tern_frame *f, struct tern_resp_arg *argv, size_t max);

/**
 * Reply encoders. Each appends one complete RESP2 value to @p b (borrowed),
 * so the replies to a pipeline can be collected and written at once.
 * Each returns 0, or -ENOMEM with nothing appended. [the buffer's owner]
 *
 * Simple strings and errors are single lines by definition: a CR or LF in
 * @p s becomes a space, so text that came from a client cannot forge a reply.
 */
TERN_EXPORT int tern_resp_put_simple(struct tern_buf *b, const char *s);  /**< `+s\r\n` */
TERN_EXPORT int tern_resp_put_error(struct tern_buf *b, const char *msg); /**< `-msg\r\n` */
/** `-<formatted>\r\n`, the message truncated to 511 bytes. */
TERN_EXPORT int tern_resp_put_errorf(struct tern_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
TERN_EXPORT int tern_resp_put_int(struct tern_buf *b, int64_t v); /**< `:v\r\n` */
TERN_EXPORT int tern_resp_put_bulk(struct tern_buf *b, const void *data,
                                   size_t len);         /**< `$len\r\n..\r\n` */
TERN_EXPORT int tern_resp_put_null(struct tern_buf *b); /**< `$-1\r\n` */
TERN_EXPORT int tern_resp_put_array(struct tern_buf *b,
                                    size_t n); /**< `*n\r\n`; the n values follow */

/**
 * The codec. state_new() takes a const struct tern_resp_config * (borrowed,
 * copied; NULL means the defaults) and returns NULL with errno EINVAL or
 * ENOMEM. decode() is tern_resp_decode(). encode() appends @p payload as one
 * bulk string reply, so tern_conn_send_frame() sends a bulk; @p payload must
 * not point into @p out. It returns 0 or -ENOMEM (nothing appended).
 */
TERN_EXPORT extern const struct tern_codec tern_resp_codec;

#endif
