/**
 * @file
 * Connections.
 *
 * THE RULE: a connection is owned by exactly one worker loop for its whole
 * life. Only that loop's thread may use a tern_conn pointer. Every other
 * thread holds a tern_handle (worker, slot, generation) and acts through the
 * tern_handle_* functions, which post to the owner's mailbox; a handle whose
 * connection has closed is stale, and acting on it is a safe no-op.
 * A connection's memory is freed only at the end of a loop iteration, never
 * during dispatch, so a pointer stays valid for the rest of the callback that
 * saw it close (tern_conn_closing() tells).
 *
 * CALLBACKS NEVER RE-ENTER: no function of this file runs one of the
 * connection's callbacks before it returns. A send that fails returns its
 * error and closes the connection; on_close, on_write_complete,
 * on_high_water and on_low_water that a call sets off run from the loop
 * once the callback that made the call has returned (libuv's closing
 * phase, muduo's queueInLoop). So an application needs no depth counters,
 * dead lists or hold/release around its own calls.
 *
 * Calling contexts: [loop] = the owning loop's thread only; [any] = any thread.
 */
#ifndef TERN_CONN_H
#define TERN_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "buf.h"
#include "codec.h"
#include "export.h"
#include "loop.h"

/** A connection (opaque); only its owning loop's thread may use the pointer. */
typedef struct tern_conn tern_conn;

/** Why a connection closed, as on_close reports it. */
enum tern_close_reason {
        TERN_CLOSE_LOCAL,    /**< the application closed it */
        TERN_CLOSE_PEER,     /**< orderly end of stream from the peer */
        TERN_CLOSE_ERROR,    /**< socket error (err says which) */
        TERN_CLOSE_IDLE,     /**< idle timeout */
        TERN_CLOSE_OUTLIMIT, /**< output buffer passed max_outbuf */
        TERN_CLOSE_PROTOCOL, /**< the codec rejected the input */
        TERN_CLOSE_SHUTDOWN, /**< server stop: drain deadline passed */
        TERN_CLOSE_INLIMIT,  /**< on_message left more than max_inbuf unconsumed */
};

/** Short name of a close reason ("idle", "peer", ...). [any] */
TERN_EXPORT const char *tern_close_reason_str(enum tern_close_reason r);

/** Per-connection limits, set per listener (server.h) or per connector
 * (connector.h); start from tern_conn_limits_init(). */
struct tern_conn_limits {
        size_t max_outbuf;  /**< hard cap on queued output; default 64 MiB */
        size_t max_inbuf;   /**< hard cap on input on_message leaves unconsumed
                                 (a codec bounds its own frames); default 16 MiB */
        size_t high_water;  /**< 0 = no high/low water callbacks */
        size_t low_water;   /**< 0 = high_water / 2 */
        size_t read_budget; /**< bytes read per iteration before other
                                 connections get their turn; default 256 KiB */
        uint32_t linger_ms; /**< a graceful close flushes for at most this
                                 long, then aborts; default 5000 */
};

/** Fills @p l with the defaults documented above. [any] */
TERN_EXPORT void tern_conn_limits_init(struct tern_conn_limits *l);

/**
 * Connection callbacks. All run on the owning loop's thread; every one is
 * optional. The table is borrowed and must outlive every connection using it.
 */
struct tern_conn_ops {
        /** A new connection is registered and ready. */
        void (*on_open)(tern_conn *c);
        /**
         * Bytes arrived and no codec is set. @p in holds every unconsumed byte;
         * consume what you used with tern_buf_consume() and leave the rest
         * for next time. Only read and consume @p in: never append to it.
         */
        void (*on_message)(tern_conn *c, struct tern_buf *in);
        /** A codec produced a frame (kind DATA or OVERSIZED). f->data is
         * borrowed and valid only during the call. */
        void (*on_frame)(tern_conn *c, const struct tern_frame *f);
        /** The codec rejected the input with @p err. The connection is closed
         * after this returns; anything sent here is flushed first. */
        void (*on_codec_error)(tern_conn *c, int err);
        /** The peer finished sending (half-close). When NULL the connection
         * closes as soon as its output has been flushed. */
        void (*on_eof)(tern_conn *c);
        /** The output buffer emptied after having held data (reported from
         * the loop after the call that emptied it). */
        void (*on_write_complete)(tern_conn *c);
        /** Queued output rose to high_water or above / fell to low_water or
         * below after that: pause and resume producers here. */
        /** @{ */
        void (*on_high_water)(tern_conn *c, size_t queued);
        void (*on_low_water)(tern_conn *c, size_t queued);
        /** @} */
        /** The server is stopping gracefully: last chance to send a goodbye.
         * The connection is closed (after flushing) when this returns. */
        void (*on_drain)(tern_conn *c);
        /** The connection closed; @p err is 0 or a negative errno / TERN_E*.
         * Release what you attached to it. Runs from the loop, never inside
         * a call of yours (a failed tern_conn_send() returns its error and
         * on_close follows once your callback has returned). The handle is
         * valid until this returns; the pointer until the iteration ends. */
        void (*on_close)(tern_conn *c, enum tern_close_reason reason, int err);
};

/**
 * tern_conn_send - queue @p len bytes of @p data (borrowed, copied if needed).
 * [loop] Writes directly to the socket when nothing is queued and only
 * buffers what the kernel did not take; EPOLLOUT finishes the rest.
 * Returns 0; -EPIPE if the connection is closed or closing; -ENOMEM;
 * TERN_EOUTLIMIT if queued output would pass max_outbuf (the connection is
 * then closed with TERN_CLOSE_OUTLIMIT and a logged reason); or the socket
 * error that closed it (-ECONNRESET, ...).
 */
TERN_EXPORT int tern_conn_send(tern_conn *c, const void *data, size_t len);

/** tern_conn_sendv - like tern_conn_send for a gather list (one syscall). [loop] */
TERN_EXPORT int tern_conn_sendv(tern_conn *c, const struct iovec *iov, int iovcnt);

/**
 * tern_conn_send_frame - encode @p len bytes of @p payload with the connection's
 * codec and queue the result. [loop]
 * Returns the errors of tern_conn_send(), -EINVAL if the codec has no
 * encoder or no codec is set, or the encoder's error.
 */
TERN_EXPORT int tern_conn_send_frame(tern_conn *c, const void *payload, size_t len);

/** Graceful close: stop reading, flush queued output (bounded by the drain
 * timeout), then close. Idempotent. [loop] */
TERN_EXPORT void tern_conn_close(tern_conn *c);

/**
 * tern_conn_shutdown - half-close: send nothing more, and end the stream
 * (FIN, shutdown(SHUT_WR)) once queued output has flushed. Reading goes on,
 * so the peer's answer still arrives (a proxy passes a half-close through
 * this way). Later sends return -EPIPE. Idempotent. [loop]
 */
TERN_EXPORT void tern_conn_shutdown(tern_conn *c);

/** Immediate close; queued output is dropped. Idempotent. [loop] */
TERN_EXPORT void tern_conn_abort(tern_conn *c);

/** True once closing has begun: a graceful close is flushing, or the
 * connection is closed (on_close owed or run). Sends return -EPIPE. [loop] */
TERN_EXPORT bool tern_conn_closing(const tern_conn *c);

/**
 * tern_conn_set_codec - attach @p codec (borrowed, must outlive the connection)
 * built from @p config (borrowed for the call). Replaces any codec. [loop]
 * Returns 0, -ENOMEM, or the codec's error for a bad @p config (-EINVAL).
 */
TERN_EXPORT int tern_conn_set_codec(tern_conn *c, const struct tern_codec *codec,
                                    const void *config);

/** Per-connection idle timeout in ms (0 = off); re-armed by input the
 * application consumed (a complete frame; bytes on_message took) and by
 * write progress. Bytes of a frame that never completes do not count, so a
 * peer trickling one (slowloris) times out like a silent one. [loop] */
TERN_EXPORT void tern_conn_set_idle_timeout(tern_conn *c, uint32_t ms);

/** @{ */
/**
 * Cork: while corked, sends only queue; uncork writes everything queued in
 * one go. For an application that sends many small pieces at once. The codec
 * dispatch corks by itself while it delivers several frames from one read
 * (pipelined requests), so their replies leave in one write. [loop]
 */
TERN_EXPORT void tern_conn_cork(tern_conn *c);
TERN_EXPORT void tern_conn_uncork(tern_conn *c);
/** @} */

/** @{ */
/** Stop / resume reading (backpressure). Pausing also holds back frames
 * (or on_message calls) for input already buffered; resuming delivers those,
 * then reads what arrived meanwhile without waiting for a new edge. [loop] */
TERN_EXPORT void tern_conn_pause_read(tern_conn *c);
TERN_EXPORT void tern_conn_resume_read(tern_conn *c);
/** @} */

/** Replace the callbacks (borrowed; must outlive the connection). [loop] */
TERN_EXPORT void tern_conn_set_ops(tern_conn *c, const struct tern_conn_ops *ops);

/** @{ */
/** Application pointer (borrowed; tern never frees it). [loop] */
TERN_EXPORT void *tern_conn_data(const tern_conn *c);
TERN_EXPORT void tern_conn_set_data(tern_conn *c, void *data);
/** @} */

/** worker+1 (8 bits) | slot (24 bits) | generation (32 bits); 0 is never valid. */
typedef uint64_t tern_handle;
#define TERN_HANDLE_NONE ((tern_handle)0) /**< no connection */

/** The connection's handle, valid until on_close returns; TERN_HANDLE_NONE
 * after that. Other threads act on it with the tern_handle_* functions of
 * server.h. [loop] */
TERN_EXPORT tern_handle tern_conn_handle(const tern_conn *c);
TERN_EXPORT tern_loop *tern_conn_loop(const tern_conn *c); /**< [loop] */
TERN_EXPORT int tern_conn_fd(const tern_conn *c);          /**< -1 once closed [loop] */
TERN_EXPORT size_t tern_conn_queued(const tern_conn *c);   /**< queued output bytes [loop] */

/** Peer address into @p addr (at most *@p len bytes). Returns 0 or -errno
 * (-EBADF once closed; on_close still sees it). [loop] */
TERN_EXPORT int tern_conn_peer(const tern_conn *c, struct sockaddr *addr, socklen_t *len);

/**
 * tern_conn_peer_str - the peer as text ("192.0.2.1:5000", "[::1]:80",
 * "unix:/run/x.sock" or "unix" for an unnamed peer) into @p buf of @p size
 * bytes, always NUL-terminated, for log lines. Returns @p buf. [loop]
 */
TERN_EXPORT const char *tern_conn_peer_str(const tern_conn *c, char *buf, size_t size);

/** The user pointer of the listener that accepted @p c (tern_listener_opts.user
 * in server.h), or NULL for an outgoing connection. [loop] */
TERN_EXPORT void *tern_conn_listener_user(const tern_conn *c);

/** A task for tern_handle_post() (server.h):
 * @p c is the live connection, or NULL if the handle turned stale. */
typedef void (*tern_conn_task_cb)(tern_conn *c, void *arg);

#endif
