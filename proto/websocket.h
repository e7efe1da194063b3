/**
 * @file
 * WebSocket (RFC 6455), server side: the opening handshake on top of
 * proto/http, a frame codec for what clients send, and encoders for what a
 * server sends.
 *
 * **Handshake.** A connection starts with tern_http_codec. For a request
 * that asks for an upgrade, tern_ws_accept() checks it (GET, HTTP/1.1,
 * `Upgrade: websocket`, `Connection: upgrade`, a `Sec-WebSocket-Key` of 16
 * bytes in base64, `Sec-WebSocket-Version: 13`, and `Origin` against an
 * allow-list when one is given) and appends either the `101 Switching
 * Protocols` answer with its `Sec-WebSocket-Accept`, or an error response
 * (400, 403, or 426 naming version 13). On 101 the application sends it and
 * switches the connection to tern_ws_codec with tern_conn_set_codec(), as
 * the last thing it does with the request (switching frees the HTTP state
 * the request lives in). Bytes the client sent behind the request are then
 * decoded as frames. No extension (permessage-deflate included) and no
 * subprotocol is ever negotiated: `Sec-WebSocket-Extensions` and
 * `Sec-WebSocket-Protocol` are ignored.
 *
 * **Frames in.** decode() keeps the contract of every tern codec (codec.h):
 * pure over bytes, consumed / need-more / error, no I/O. It delivers one
 * DATA frame per message, not per wire frame: frame->data points at a
 * struct tern_ws_message inside the codec state (tern_ws_message_of()
 * returns it), whose payload is valid only during on_frame. Client frames
 * are masked, so the payload cannot be lent from the const input: the codec
 * unmasks it once into a buffer of its state (control frames into a fixed
 * 125-byte one), and fragments of a message are joined there. That buffer
 * grows as a message needs, never past max_message. A buffer grown past
 * TERN_WS_KEEP_BUFFER is freed by the first decode() call after its message
 * was delivered (the message is lent until then), that is when the next
 * bytes arrive; a connection that goes quiet right after a big message
 * keeps it until then.
 *
 * Checked, and how the connection must be closed (the code on_codec_error
 * learns from tern_ws_error_code()):
 *   - an unmasked frame, RSV1..3 set, an unknown opcode, a fragmented or
 *     over-125-byte control frame, a continuation outside a message, a new
 *     message inside a fragmented one, a length not in its shortest form or
 *     with its top bit set, a close payload of one byte or a close code
 *     that may not be sent, any frame after a close: 1002 (TERN_EFRAME)
 *   - a text message (or a close reason) that is not UTF-8: 1007
 *     (TERN_EFRAME), found fragment by fragment, not at the end only
 *   - a message over max_message bytes (known from the frame header,
 *     before its payload is buffered) or of more than max_fragments frames:
 *     1009 (TERN_ETOOBIG)
 * After an error the state must not be used again.
 *
 * Pings and closes are answered by sending, as they are, the bytes the
 * message carries in reply / reply_len: the pong for a ping, and for a close
 * the close frame that completes the closing handshake (echoing its code).
 * A codec does no I/O, so the application sends them; see docs/websocket.md.
 *
 * **Frames out.** tern_ws_frame_header() writes a server frame's header
 * (2, 4 or 10 bytes) into a small array, so one message can be sent to many
 * connections with tern_conn_sendv() of header + payload without encoding
 * it per recipient. tern_ws_put_frame() and tern_ws_put_close() append whole
 * frames to a buffer. tern_conn_send_frame() on a tern_ws_codec connection
 * sends one binary message.
 *
 * Threads: a state belongs to its connection's worker thread; configs are
 * plain values; the encoders touch only their buffer.
 */
#ifndef TERN_WEBSOCKET_H
#define TERN_WEBSOCKET_H

#include "export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "codec.h"
#include "http.h"

#define TERN_WS_DEFAULT_MAX_MESSAGE   (1u << 20)  /**< bytes of one message, joined */
#define TERN_WS_DEFAULT_MAX_FRAGMENTS 1024u       /**< frames of one message */
#define TERN_WS_MAX_MESSAGE_LIMIT     (1u << 30)  /**< largest max_message accepted */
#define TERN_WS_MAX_FRAGMENTS_LIMIT   (1u << 20)  /**< largest max_fragments accepted */
#define TERN_WS_MAX_CONTROL           125u        /**< payload of a control frame */
#define TERN_WS_MAX_HEADER            10u         /**< longest server frame header */
#define TERN_WS_KEEP_BUFFER           (64u << 10) /**< message buffer kept between messages */
#define TERN_WS_MAX_ORIGINS           64u         /**< entries in an Origin allow-list */

/** Limits of the frame decoder; start from tern_ws_config_init(). */
struct tern_ws_config {
        size_t max_message; /**< largest message, fragments joined: 0..TERN_WS_MAX_MESSAGE_LIMIT */
        uint32_t max_fragments; /**< most frames in one message: 1..TERN_WS_MAX_FRAGMENTS_LIMIT */
};

/** Frame opcodes (RFC 6455 section 5.2). */
enum tern_ws_opcode {
        TERN_WS_CONTINUATION = 0x0, /**< a later fragment (never in a message) */
        TERN_WS_TEXT = 0x1,         /**< UTF-8 text */
        TERN_WS_BINARY = 0x2,       /**< bytes */
        TERN_WS_CLOSE = 0x8,        /**< closing handshake */
        TERN_WS_PING = 0x9,         /**< asks for a pong */
        TERN_WS_PONG = 0xA,         /**< answers a ping, or a heartbeat */
};

/** Close codes (RFC 6455 section 7.4.1) used by this codec and its users. */
enum tern_ws_close_code {
        TERN_WS_CLOSE_NORMAL = 1000,       /**< done */
        TERN_WS_CLOSE_GOING_AWAY = 1001,   /**< server stopping */
        TERN_WS_CLOSE_PROTOCOL = 1002,     /**< protocol error */
        TERN_WS_CLOSE_UNSUPPORTED = 1003,  /**< a kind of data not accepted */
        TERN_WS_CLOSE_NO_STATUS = 1005,    /**< a close had no code (never sent) */
        TERN_WS_CLOSE_INVALID_DATA = 1007, /**< text that is not UTF-8 */
        TERN_WS_CLOSE_POLICY = 1008,       /**< policy violation */
        TERN_WS_CLOSE_TOO_BIG = 1009,      /**< message over the limit */
        TERN_WS_CLOSE_INTERNAL = 1011,     /**< server error */
};

/**
 * A decoded message, as a DATA frame of tern_ws_codec lends it
 * (tern_ws_message_of()). Every pointer is borrowed and valid only during
 * on_frame.
 */
struct tern_ws_message {
        enum tern_ws_opcode opcode; /**< TEXT, BINARY, PING, PONG or CLOSE */
        const uint8_t *data;        /**< the unmasked payload, fragments joined;
                                         for CLOSE the reason after the code */
        size_t len;                 /**< bytes at data */
        uint16_t close_code;        /**< CLOSE: the code, or 1005 when none was sent */
        uint32_t fragments;         /**< wire frames the message came in */
        const uint8_t *reply;       /**< PING: the pong; CLOSE: the close frame that
                                         completes the handshake; else NULL */
        size_t reply_len;           /**< bytes at reply */
};

/** Decoder state (opaque): one per connection, from tern_ws_state_new(). */
struct tern_ws_state;

/** Fills @p cfg with the TERN_WS_DEFAULT_* limits. [any] */
TERN_EXPORT void tern_ws_config_init(struct tern_ws_config *cfg);

/** Whether @p cfg (borrowed) is within the documented ranges: 0 or -EINVAL. [any] */
TERN_EXPORT int tern_ws_config_check(const struct tern_ws_config *cfg);

/**
 * tern_ws_state_new - a fresh frame decoder with the limits of @p cfg
 * (borrowed, copied; NULL means the defaults); free it with
 * tern_ws_state_free(). [any; then the state's thread]
 * Returns NULL with errno EINVAL or ENOMEM.
 */
TERN_EXPORT struct tern_ws_state *tern_ws_state_new(const struct tern_ws_config *cfg);

/** Frees @p s and its buffer; NULL is a no-op. [the state's thread] */
TERN_EXPORT void tern_ws_state_free(struct tern_ws_state *s);

/**
 * tern_ws_decode - the decoder, with the contract of tern_codec.decode: looks
 * at the @p len unconsumed bytes at @p in (borrowed, never written). Returns
 * the bytes of one wire frame consumed (> 0), with a DATA frame in @p out
 * when that frame completed a message or was a control frame;
 * TERN_CODEC_NEED_MORE; TERN_EFRAME or TERN_ETOOBIG as listed at the top of
 * this file; or -ENOMEM when the message buffer cannot grow. Never reads
 * outside [in, in + len); never returns need-more while holding 14 +
 * max(max_message, 125) bytes. [the state's thread]
 */
TERN_EXPORT ssize_t tern_ws_decode(struct tern_ws_state *s, const uint8_t *in, size_t len,
                                   struct tern_frame *out);

/** The message a DATA frame of this codec lends, or NULL when @p f is not
 * one. [the frame's thread] */
TERN_EXPORT const struct tern_ws_message *tern_ws_message_of(const struct tern_frame *f);

/** The close code for the last error tern_ws_decode() on @p s returned
 * (1002, 1007, 1009, or 1011 for -ENOMEM), or 0 when it returned none.
 * [the state's thread] */
TERN_EXPORT uint16_t tern_ws_state_close_code(const struct tern_ws_state *s);

/** Static text naming that error, e.g. "unmasked frame"; NULL when none.
 * [the state's thread] */
TERN_EXPORT const char *tern_ws_state_reason(const struct tern_ws_state *s);

/**
 * tern_ws_error_code - the close code for @p err as on_codec_error received
 * it from this codec: the precise code of the last decode error on the
 * calling thread when it returned @p err, else 1009 for TERN_ETOOBIG, 1011
 * for -ENOMEM and 1002 for anything else. [the thread that decoded]
 */
TERN_EXPORT uint16_t tern_ws_error_code(int err);

/** Options of the opening handshake. */
struct tern_ws_accept_opts {
        /** Allowed `Origin` values, compared whole and ASCII
         * case-insensitively (e.g. "https://example.com"); NULL or
         * norigins 0: no check. With a list, a request without Origin is
         * refused unless allow_no_origin. */
        const char *const *origins;
        size_t norigins;      /**< entries in origins: 0..TERN_WS_MAX_ORIGINS */
        bool allow_no_origin; /**< accept a request without Origin (a non-browser client) */
};

/**
 * tern_ws_accept - the server's side of the opening handshake for @p r
 * (borrowed; a TERN_HTTP_PART_WHOLE request), with @p opts (borrowed; NULL
 * means no Origin check). Appends to @p out (borrowed) the response and
 * returns its status: 101 (switch to tern_ws_codec after sending it); 400
 * for a request that is not a valid WebSocket handshake (wrong method,
 * HTTP/1.0, missing or wrong Upgrade, Connection or key, a body); 403 for
 * an Origin not in the list; 426 with `Sec-WebSocket-Version: 13` for
 * another version. Error responses carry `Connection: close`: close the
 * connection after sending them. Returns -EINVAL (nothing appended) for
 * opts over TERN_WS_MAX_ORIGINS, -ENOMEM (nothing appended) or another
 * negative errno when the key cannot be hashed. [any]
 */
TERN_EXPORT int tern_ws_accept(const struct tern_http_request *r,
                               const struct tern_ws_accept_opts *opts, struct tern_buf *out);

/**
 * tern_ws_accept_key - the `Sec-WebSocket-Accept` value for @p key (@p
 * key_len bytes, borrowed): base64(SHA-1(key + the RFC's GUID)), 28
 * characters and a NUL into @p out. Returns 0 or -EIO (OpenSSL failed). [any]
 */
TERN_EXPORT int tern_ws_accept_key(const char *key, size_t key_len, char out[29]);

/**
 * tern_ws_frame_header - writes the header of one unmasked (server) frame
 * into @p hdr: FIN when @p fin, opcode @p op, payload length @p len.
 * Returns the header's length (2, 4 or 10), or -EINVAL for an opcode not in
 * enum tern_ws_opcode, a control frame with @p len over 125 or without
 * @p fin, or @p len with its top bit set. Send the header and then the
 * payload, unchanged: for a fan-out, build the header once and give each
 * recipient tern_conn_sendv() of {hdr, payload}. [any]
 */
TERN_EXPORT int tern_ws_frame_header(uint8_t hdr[TERN_WS_MAX_HEADER], enum tern_ws_opcode op,
                                     bool fin, uint64_t len);

/**
 * tern_ws_put_frame - appends one whole (FIN) server frame: opcode @p op and
 * @p len bytes of @p payload (borrowed; may be NULL when @p len is 0; must
 * not point into @p b). Returns 0, -EINVAL as tern_ws_frame_header() or for
 * a NULL @p payload of nonzero @p len, or -ENOMEM with nothing appended. It does not check that a
 * TEXT payload is UTF-8. [the buffer's owner]
 */
TERN_EXPORT int tern_ws_put_frame(struct tern_buf *b, enum tern_ws_opcode op, const void *payload,
                                  size_t len);

/**
 * tern_ws_put_close - appends a close frame with @p code and @p reason_len
 * bytes of @p reason (borrowed; may be NULL when 0). @p code 0 sends a close
 * without a code (and then no reason). Returns 0; -EINVAL for a code a
 * close frame may not carry (below 1000, 1004..1006, 1015, 1016..2999 or
 * 5000 and up) or a reason over 123 bytes; or -ENOMEM, nothing appended.
 * [the buffer's owner]
 */
TERN_EXPORT int tern_ws_put_close(struct tern_buf *b, uint16_t code, const char *reason,
                                  size_t reason_len);

/**
 * tern_ws_put_client_frame - appends one frame as a client sends it: masked
 * with @p mask, FIN when @p fin, opcode @p op (any 4-bit value, so tests can
 * send reserved ones), @p len bytes of @p payload. For tests and clients;
 * tern_ws_codec decodes what this writes. Returns 0, -EINVAL for @p op over
 * 15, @p len with its top bit set or a NULL @p payload of nonzero @p len, or -ENOMEM, nothing
 * appended. [the buffer's owner]
 */
TERN_EXPORT int tern_ws_put_client_frame(struct tern_buf *b, unsigned op, bool fin,
                                         const uint8_t mask[4], const void *payload, size_t len);

/** Whether @p len bytes at @p p are valid UTF-8 (RFC 3629: no overlongs,
 * no surrogates, nothing past U+10FFFF). [any] */
TERN_EXPORT bool tern_ws_utf8_valid(const uint8_t *p, size_t len);

/**
 * The frame codec. state_new() takes a const struct tern_ws_config *
 * (borrowed, copied; NULL means the defaults). decode() is tern_ws_decode().
 * encode() appends one binary message carrying @p payload, so
 * tern_conn_send_frame() sends binary; @p payload may be the whole of
 * @p out (the header is then prepended) but no other part of it.
 */
TERN_EXPORT extern const struct tern_codec tern_ws_codec;

#endif
