/**
 * @file
 * HTTP/1.1 codec, server side: requests in, responses out (RFC 9112).
 *
 * decode() keeps the contract of every tern codec (codec.h): it looks at the
 * unconsumed bytes and answers "a request of these bytes", "need more" or
 * "error", never copies a request it can lend, never allocates per request,
 * and does no I/O. It handles the request line, header fields,
 * Content-Length and chunked bodies (extensions and trailers included),
 * keep-alive, pipelining (each call delivers one request; the connection
 * calls again for the next) and `Expect: 100-continue`.
 *
 * **What on_frame receives.** struct tern_frame carries only bytes, so a DATA
 * frame from this codec does not hold the request's bytes: frame->data
 * points at a struct tern_http_request inside the codec state and frame->len
 * is its size. tern_http_request_of() checks that and returns it. Every view
 * in the request (method, path, header names and values, body) points into
 * the connection's input, or, in the two cases below, into storage owned by
 * the codec state; either way it is valid only during on_frame, like any
 * frame's data. Copy what you keep.
 *
 * **Bodies.** A Content-Length body is a view of the input. A chunked body
 * made of one data chunk (what most clients send) is also a view of the
 * input. A body of two or more chunks must be joined: the codec copies its
 * data into a buffer of the state, grown on first use and never past
 * max_body bytes, kept for the connection's life.
 *
 * **Expect: 100-continue.** A request announcing a body and carrying
 * `Expect: 100-continue` is delivered twice: first with part ==
 * TERN_HTTP_PART_HEAD as soon as its head is complete (no body yet), so
 * the application can answer tern_http_put_continue() to let the client
 * send the body, or a final status and close; then with part ==
 * TERN_HTTP_PART_WHOLE once the body is in, as any other request. To keep
 * the second delivery whole, the codec copies the head into its state
 * buffer (bounded by the head limits). The two deliveries happen however
 * the bytes arrive, so the frames never depend on TCP's segmentation.
 *
 * **Errors.** decode() returns TERN_ETOOBIG for a request over a limit and
 * TERN_EFRAME for anything malformed, as the other codecs do, and the
 * connection then closes. The HTTP status to answer first (400, 413, 414,
 * 431, 501 or 505) is told by tern_http_error_status(err) inside
 * on_codec_error, and by tern_http_state_status() for a state used directly.
 * Rejected, because each is a request-smuggling or desync vector
 * (RFC 9112 sections 2.2, 5.1, 5.2, 6.1, 6.3):
 *   - a bare LF or a bare CR where CRLF is required       400
 *   - obsolete line folding (a field line starting with SP or HTAB)  400
 *   - whitespace between a field name and its colon         400
 *   - Content-Length together with Transfer-Encoding        400
 *   - Content-Length twice (even with equal values), or a list, sign or
 *     anything but digits                                   400
 *   - Transfer-Encoding twice, or "chunked" not last        400
 *   - Transfer-Encoding in an HTTP/1.0 request              400
 *   - a transfer coding other than chunked ("gzip, chunked")  501
 *   - no Host, or two Host fields, in an HTTP/1.1 request   400
 *   - a malformed chunk size or missing CRLF after chunk data  400
 *   - an HTTP version other than 1.0 and 1.1                 505
 *   - request line over max_request_line                    414
 *   - header section (or trailer section) over max_header_bytes, or more
 *     than max_headers fields                               431
 *   - a Content-Length or a decoded chunked body over max_body, or chunk
 *     framing over max_chunk_framing                        413
 * After an error the state must not be used again without a new state.
 *
 * Threads: a state belongs to its connection's worker thread; configs are
 * plain values any thread may build; the encoders touch only their buffer.
 */
#ifndef TERN_HTTP_H
#define TERN_HTTP_H

#include "export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "codec.h"

#define TERN_HTTP_DEFAULT_MAX_REQUEST_LINE  (8u << 10)  /**< request line, CRLF excluded */
#define TERN_HTTP_DEFAULT_MAX_HEADER_BYTES  (16u << 10) /**< header section, final CRLF included */
#define TERN_HTTP_DEFAULT_MAX_HEADERS       64u         /**< fields (and trailer fields) */
#define TERN_HTTP_DEFAULT_MAX_BODY          (1u << 20)  /**< body bytes, after de-chunking */
#define TERN_HTTP_DEFAULT_MAX_CHUNK_FRAMING (16u << 10) /**< chunk-size lines and CRLFs */

#define TERN_HTTP_MAX_SIZE_LIMIT    (1u << 30) /**< largest size limit accepted */
#define TERN_HTTP_MAX_HEADERS_LIMIT 4096u      /**< largest max_headers accepted */

/** Limits of the HTTP decoder; start from tern_http_config_init(). */
struct tern_http_config {
        size_t max_request_line;  /**< longest request line: 16..TERN_HTTP_MAX_SIZE_LIMIT */
        size_t max_header_bytes;  /**< largest header (and trailer) section:
                                     2..TERN_HTTP_MAX_SIZE_LIMIT */
        uint32_t max_headers;     /**< most fields, trailers included:
                                     1..TERN_HTTP_MAX_HEADERS_LIMIT */
        size_t max_body;          /**< largest body: 0..TERN_HTTP_MAX_SIZE_LIMIT */
        size_t max_chunk_framing; /**< bytes of chunk-size lines (extensions
                                     included) and data CRLFs in one chunked
                                     body: 5..TERN_HTTP_MAX_SIZE_LIMIT */
};

/** Request methods the codec names; any other token is TERN_HTTP_OTHER. */
enum tern_http_method {
        TERN_HTTP_OTHER,
        TERN_HTTP_GET,
        TERN_HTTP_HEAD,
        TERN_HTTP_POST,
        TERN_HTTP_PUT,
        TERN_HTTP_DELETE,
        TERN_HTTP_CONNECT,
        TERN_HTTP_OPTIONS,
        TERN_HTTP_TRACE,
        TERN_HTTP_PATCH,
};

/** Which delivery of a request a frame is (see Expect: 100-continue above). */
enum tern_http_part {
        TERN_HTTP_PART_WHOLE, /**< the complete request, body included */
        TERN_HTTP_PART_HEAD,  /**< head of an Expect: 100-continue request; body to come */
};

/** One field line: views, borrowed like the request that holds them. */
struct tern_http_header {
        const char *name;  /**< as received (compare case-insensitively) */
        size_t name_len;   /**< bytes */
        const char *value; /**< leading and trailing SP / HTAB removed */
        size_t value_len;  /**< bytes; may be 0 */
};

/**
 * A parsed request, as a DATA frame lends it (tern_http_request_of()).
 * Every pointer is borrowed and valid only during on_frame.
 */
struct tern_http_request {
        enum tern_http_part part;                /**< WHOLE, or HEAD for 100-continue */
        enum tern_http_method method_id;         /**< the method, if one of the named ones */
        const char *method;                      /**< the method token, case kept */
        size_t method_len;                       /**< bytes */
        const char *path;                        /**< the request-target, as received */
        size_t path_len;                         /**< bytes */
        int version_minor;                       /**< 0 for HTTP/1.0, 1 for HTTP/1.1 */
        const struct tern_http_header *headers;  /**< nheaders fields, in order */
        size_t nheaders;                         /**< fields in the header section */
        const struct tern_http_header *trailers; /**< ntrailers chunked trailer fields */
        size_t ntrailers;                        /**< 0 unless chunked with trailers */
        const uint8_t *body;     /**< body_len bytes (de-chunked); NULL when empty */
        size_t body_len;         /**< bytes; 0 in a HEAD part */
        uint64_t content_length; /**< the Content-Length value; 0 when absent */
        bool has_content_length; /**< Content-Length was sent */
        bool chunked;            /**< Transfer-Encoding: chunked */
        bool keep_alive;         /**< the connection may carry another request */
        bool expect_continue;    /**< Expect: 100-continue was sent */
};

/** Decoder state (opaque): one per connection, from tern_http_state_new(). */
struct tern_http_state;

/** Fills @p cfg with the TERN_HTTP_DEFAULT_* limits. [any] */
TERN_EXPORT void tern_http_config_init(struct tern_http_config *cfg);

/**
 * tern_http_config_check - whether @p cfg (borrowed) is within the ranges
 * documented on struct tern_http_config. [any]
 * Returns 0 or -EINVAL.
 */
TERN_EXPORT int tern_http_config_check(const struct tern_http_config *cfg);

/**
 * tern_http_state_new - a fresh decoder with the limits of @p cfg (borrowed,
 * copied; NULL means the defaults). The caller owns the result and frees it
 * with tern_http_state_free(). [any; then the state's thread]
 * Returns NULL with errno EINVAL (a config tern_http_config_check()
 * refuses) or ENOMEM.
 */
TERN_EXPORT struct tern_http_state *tern_http_state_new(const struct tern_http_config *cfg);

/** Frees @p s and its buffer; NULL is a no-op. [the state's thread] */
TERN_EXPORT void tern_http_state_free(struct tern_http_state *s);

/**
 * tern_http_decode - the decoder, with the contract of tern_codec.decode
 * (codec.h): looks at the @p len unconsumed bytes at @p in (borrowed).
 * Returns the bytes consumed (> 0), with a DATA frame in @p out for a
 * request (or a TERN_HTTP_PART_HEAD) and no frame for the empty lines a
 * client may send before a request; TERN_CODEC_NEED_MORE; TERN_ETOOBIG or
 * TERN_EFRAME as described at the top of this file; or -ENOMEM when the
 * buffer for a multi-chunk body or a 100-continue head cannot grow. Never
 * reads outside [in, in + len). Never returns need-more while holding the
 * largest request its limits allow. [the state's thread]
 */
TERN_EXPORT ssize_t tern_http_decode(struct tern_http_state *s, const uint8_t *in, size_t len,
                                     struct tern_frame *out);

/** The request a DATA frame of this codec lends (borrowed, valid during
 * on_frame), or NULL when @p f is not one. [the frame's thread] */
TERN_EXPORT const struct tern_http_request *tern_http_request_of(const struct tern_frame *f);

/**
 * tern_http_state_status - the HTTP status to answer for the error the last
 * tern_http_decode() on @p s returned (400, 413, 414, 431, 501, 505, or 500
 * for -ENOMEM), or 0 when it returned none. [the state's thread]
 */
TERN_EXPORT int tern_http_state_status(const struct tern_http_state *s);

/** Static text naming that error, e.g. "bare LF"; NULL when none. [the state's thread] */
TERN_EXPORT const char *tern_http_state_reason(const struct tern_http_state *s);

/**
 * tern_http_error_status - the status for @p err as on_codec_error received
 * it from this codec: the precise status of the last decode error on the
 * calling thread when it returned @p err (the connection calls
 * on_codec_error right after the decode that failed, on the same thread),
 * else 413 for TERN_ETOOBIG, 500 for -ENOMEM and 400 for anything else.
 * [the thread that decoded]
 */
TERN_EXPORT int tern_http_error_status(int err);

/** Canonical reason phrase of @p status ("Not Found"), or "Unknown". [any] */
TERN_EXPORT const char *tern_http_reason(int status);

/** The first field named @p name (case-insensitive) in @p r
 * (borrowed), or NULL. Trailers are not searched. [any] */
TERN_EXPORT const struct tern_http_header *tern_http_find_header(const struct tern_http_request *r,
                                                                 const char *name);

/**
 * Response encoders. Each appends to @p b (borrowed), so the responses to a
 * pipeline gather into one write, and each is all or nothing: it returns 0,
 * -ENOMEM with nothing appended, or -EINVAL (nothing appended) for text
 * that would break the message: a status outside 100..999, a CR, LF or NUL
 * in a reason, name or value, or a name that is not a token, so data from a
 * client cannot split a response. [the buffer's owner]
 *
 * A response is tern_http_put_status(), any tern_http_put_header(), then
 * either tern_http_put_body() (adds Content-Length and the end of the head)
 * or tern_http_put_chunked() followed by tern_http_put_chunk() calls and
 * tern_http_put_chunk_end().
 */
/** `HTTP/1.1 <status> <reason>\r\n`; @p reason NULL means tern_http_reason(). */
TERN_EXPORT int tern_http_put_status(struct tern_buf *b, int status, const char *reason);
/** `<name>: <value>\r\n` */
TERN_EXPORT int tern_http_put_header(struct tern_buf *b, const char *name, size_t name_len,
                                     const char *value, size_t value_len);
/** `Content-Length: <len>\r\n\r\n<body>` (@p body may be NULL when @p len is 0). */
TERN_EXPORT int tern_http_put_body(struct tern_buf *b, const void *body, size_t len);
/** `Transfer-Encoding: chunked\r\n\r\n`: ends the head of a chunked response. */
TERN_EXPORT int tern_http_put_chunked(struct tern_buf *b);
/** One chunk, `<hex len>\r\n<data>\r\n`; a zero @p len appends nothing (it
 * would end the body). */
TERN_EXPORT int tern_http_put_chunk(struct tern_buf *b, const void *data, size_t len);
/** `0\r\n\r\n`: the last chunk, no trailers. */
TERN_EXPORT int tern_http_put_chunk_end(struct tern_buf *b);
/** `HTTP/1.1 100 Continue\r\n\r\n`, the interim answer to a TERN_HTTP_PART_HEAD. */
TERN_EXPORT int tern_http_put_continue(struct tern_buf *b);
/** A whole error response for @p status: status line, `Connection: close`,
 * `Content-Type: text/plain` and the reason phrase as body. For answering a
 * codec error before the connection closes. */
TERN_EXPORT int tern_http_put_error(struct tern_buf *b, int status);

/**
 * The codec. state_new() takes a const struct tern_http_config * (borrowed,
 * copied; NULL means the defaults) and returns NULL with errno EINVAL or
 * ENOMEM. decode() is tern_http_decode(). encode() appends a complete
 * `200 OK` response with @p payload as its body and a Content-Length, so
 * tern_conn_send_frame() answers 200; @p payload must not point into
 * @p out. It returns 0 or -ENOMEM (nothing appended).
 */
TERN_EXPORT extern const struct tern_codec tern_http_codec;

#endif
