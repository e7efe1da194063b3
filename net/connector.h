/**
 * @file connector.h
 * @brief Outgoing TCP connections (connectors) on the workers' loops.
 *
 * A connector belongs to one worker loop and makes one outgoing connection
 * at a time: an asynchronous connect() with a timeout, retried with
 * exponential backoff and jitter, and optionally re-established after the
 * connection closes. Once connected it is an ordinary tern_conn: the same
 * buffers, codecs, callbacks (struct tern_conn_ops), handles, limits and
 * backpressure as an accepted connection, so a proxy or a fan-out client is
 * a server's callbacks plus a connector.
 *
 * A connector runs on any loop: a server's worker, or a loop of your own
 * (tern_loop_new()), which is all a process that only connects needs. The
 * connection's limits are the connector's (tern_connector_opts.limits).
 *
 * Threads: like a connection, a connector is used only on its loop's thread
 * ([loop]), or by any one thread while that loop is not running (before
 * tern_loop_run() or tern_server_start(), or after they returned). Another
 * thread reaches a running loop with tern_loop_post() and calls these from
 * the task. Callbacks never run inside a call of this file.
 *
 * Backoff: before attempt n+1 after n consecutive failures the connector
 * waits a random delay in [cap/2, cap] ("equal jitter"), where
 * cap = min(backoff_max_ms, backoff_min_ms * 2^(n-1)), and never less than
 * backoff_min_ms. The floor doubles with every failure, so a peer that is
 * down is not hammered; the random half spreads many clients out so they do
 * not reconnect in lock-step after a shared peer restarts.
 */
#ifndef TERN_CONNECTOR_H
#define TERN_CONNECTOR_H

#include "export.h"

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"
#include "conn.h"
#include "loop.h"

struct tern_tls; /* tls.h */

/** Opaque connector; see the file comment. */
typedef struct tern_connector tern_connector;

/**
 * A failed connect attempt (refused, unreachable, timed out...).
 * @param cn      the connector
 * @param err     negative errno (-ECONNREFUSED, -ETIMEDOUT, ...)
 * @param attempt consecutive failed attempts so far, from 1
 * May call tern_connector_stop() or tern_connector_free().
 */
typedef void (*tern_connect_error_cb)(tern_connector *cn, int err, uint32_t attempt);

/**
 * The connector gave up after max_attempts consecutive failures (runs once,
 * after the last tern_connect_error_cb); @p err is the last attempt's
 * error. The connector is idle now: tern_connector_start() tries again,
 * tern_connector_free() may be called here.
 */
typedef void (*tern_give_up_cb)(tern_connector *cn, int err);

/** Options for tern_connector_new(); tern_connector_opts_init() fills defaults. */
struct tern_connector_opts {
        /** Peer name or numeric address. A name is resolved once, blocking,
         *  in tern_connector_new(); a numeric address never blocks. */
        const char *host;
        uint16_t port;                   /**< peer port */
        uint32_t connect_timeout_ms;     /**< per attempt; 0 = the kernel's; default 10000 */
        bool reconnect;                  /**< connect again after an established
                                              connection closes (not after a stop) */
        uint32_t backoff_min_ms;         /**< first retry delay; default 100 */
        uint32_t backoff_max_ms;         /**< delay cap; default 30000 */
        uint32_t max_attempts;           /**< consecutive failures before giving up;
                                              0 = never give up; default 1 */
        uint32_t idle_timeout_ms;        /**< for the established connection; 0 = off */
        bool nodelay;                    /**< TCP_NODELAY; default true */
        struct tern_conn_limits limits;  /**< the connection's; default
                                              tern_conn_limits_init() */
        const struct tern_conn_ops *ops; /**< the connection's callbacks (on_open =
                                              connected); borrowed, must outlive it */
        const struct tern_codec *codec;  /**< optional; borrowed */
        const void *codec_config;        /**< borrowed until the connector is freed */
        /** TLS (tls.h, a client configuration); borrowed, must outlive the
         *  connector; NULL = plain. A failed handshake is a failed attempt. */
        const struct tern_tls *tls;
        /** The name to ask for (SNI) and to verify the certificate against;
         *  NULL = host. */
        const char *tls_server_name;
        tern_connect_error_cb on_connect_error; /**< optional */
        tern_give_up_cb on_give_up;             /**< optional */
        void *user;                             /**< tern_connector_user() */
};

/** Fills @p o with the defaults documented in the struct. [any] */
TERN_EXPORT void tern_connector_opts_init(struct tern_connector_opts *o);

/**
 * tern_connector_new - create an idle connector on @p loop.
 * Copies @p o (pointers inside are borrowed as documented there) and
 * resolves host (blocking for a name; every address found is tried in turn,
 * one per attempt). [loop], or any thread while @p loop's thread is not
 * running (see the file comment).
 * @return the connector, or NULL with errno set: EINVAL (bad options, host
 * does not resolve), ESHUTDOWN (the loop is stopping), ENOMEM.
 */
TERN_EXPORT tern_connector *tern_connector_new(tern_loop *loop,
                                               const struct tern_connector_opts *o);

/**
 * tern_connector_start - begin connecting. Outcomes arrive as callbacks on
 * the loop: ops->on_open when connected, on_connect_error per failed
 * attempt, on_give_up. Callbacks never run inside this call. [loop], or
 * before the server starts.
 * @return 0; -EBUSY if already connecting, connected or waiting to retry
 * (or its old connection is still closing); -ESHUTDOWN if the loop is
 * stopping; or -errno from socket().
 */
TERN_EXPORT int tern_connector_start(tern_connector *cn);

/**
 * tern_connector_stop - no more attempts: cancels a pending retry, aborts a
 * connect in progress silently, and closes an established connection
 * gracefully (its on_close runs as usual). Idempotent; start() may follow
 * once the connection has closed. [loop]
 */
TERN_EXPORT void tern_connector_stop(tern_connector *cn);

/**
 * tern_connector_free - stop, then free @p cn (NULL is a no-op). An
 * established connection that is still flushing lives on without its
 * connector. Callable from the connector's own callbacks and from its
 * connection's callbacks. [loop]; connectors still alive when their loop is
 * freed (tern_loop_free(), tern_server_free()) are freed there.
 */
TERN_EXPORT void tern_connector_free(tern_connector *cn);

/** The established connection, or NULL while not connected. [loop] */
TERN_EXPORT tern_conn *tern_connector_conn(const tern_connector *cn);

/** The loop @p cn belongs to. [any] */
TERN_EXPORT tern_loop *tern_connector_loop(const tern_connector *cn);

/** The opts' user pointer (borrowed; tern never frees it). [any] */
TERN_EXPORT void *tern_connector_user(const tern_connector *cn);

/** Consecutive failed attempts since the last successful connect. [loop] */
TERN_EXPORT uint32_t tern_connector_failures(const tern_connector *cn);

/** The connector that made @p c, or NULL for an accepted connection (or once
 * the connector was freed). [loop] */
TERN_EXPORT tern_connector *tern_conn_connector(const tern_conn *c);

#endif
