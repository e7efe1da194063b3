/* Private: the connection object, its configuration, and what the layers
 * above (acceptor, connector, server) call on it. */
#ifndef TERN_CONN_INTERNAL_H
#define TERN_CONN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "conn.h"
#include "loop_internal.h"
#include "timer.h"

/* struct tern_conn.flags */
enum {
        TERN__CONN_CLOSED = 1u << 0,      /* closed: on_close owed or run */
        TERN__CONN_CLOSING = 1u << 1,     /* flushing output, then close */
        TERN__CONN_PAUSED = 1u << 2,      /* reads paused by the application */
        TERN__CONN_EOF = 1u << 4,         /* peer half-closed */
        TERN__CONN_HIGH = 1u << 5,        /* above high water, low-water cb owed */
        TERN__CONN_WAS_QUEUED = 1u << 6,  /* write-complete owed when drained */
        TERN__CONN_RDHUP = 1u << 7,       /* EPOLLRDHUP seen: read to EOF */
        TERN__CONN_STALE = 1u << 8,       /* slot released: the handle is stale */
        TERN__CONN_CORKED = 1u << 9,      /* sends queue; flushed on uncork */
        TERN__CONN_CONNECTING = 1u << 10, /* outgoing connect() not finished */
        TERN__CONN_CLIENT = 1u << 11,     /* made by a connector, not accepted */
        TERN__CONN_SHUTWR = 1u << 12,     /* FIN once output has flushed */
        TERN__CONN_UNIX = 1u << 13,       /* a Unix-domain socket: no TCP options */
        TERN__CONN_HANDSHAKE = 1u << 14,  /* transport handshake not finished: not open */
};

/* Callbacks owed from the loop's top level (on_pending). */
enum {
        TERN__OWE_HIGH = 1u << 0,
        TERN__OWE_LOW = 1u << 1,
        TERN__OWE_WRITTEN = 1u << 2,
};

/* Who made an outgoing connection (connector.c), told from the loop. */
struct tern__conn_owner_ops {
        /* @c's connect() succeeded; on_open follows. */
        void (*connected)(void *owner, struct tern_conn *c);
        /* @c closed after on_close ran; @opened: it had connected (else the
         * attempt failed with @err). */
        void (*closed)(void *owner, struct tern_conn *c, bool opened, int err);
};

/*
 * A transport under the connection (TLS, tls.c): what the connection calls
 * instead of read(2) and send(2). The connection offers this kind; the
 * transport's configuration (struct tern_tls) starts with a struct
 * tern__xport, which listeners and connectors hand down as they get it.
 * Per-connection state lives behind the connection (TERN__CONN_XSTATE).
 * All calls are non-blocking, on the connection's loop.
 */
struct tern__xport;
struct tern__xport_ops {
        /* New state for @fd; @client: we connect (then @server_name, or
         * NULL, is the name to ask for and verify). NULL with errno set. */
        void *(*open)(struct tern__xport *x, int fd, bool client, const char *server_name);
        /* Drives the handshake: 0 done, -EAGAIN (wait for any edge), or an
         * error (why() says more). */
        int (*handshake)(void *st);
        /* Plaintext in: bytes (> 0), 0 at the peer's end of stream, -EAGAIN
         * when both the transport and the socket are empty, or an error. */
        ssize_t (*read)(void *st, void *buf, size_t len);
        /* Plaintext out: bytes taken (0: would block; offer the same bytes
         * again, possibly with more behind them), or an error. */
        ssize_t (*write)(void *st, const void *buf, size_t len);
        /* Graceful end (close_notify), once, best effort. */
        void (*shutdown)(void *st);
        /* Frees @st; the fd stays the caller's. */
        void (*close)(void *st);
        /* Why the last call failed, for a log line: into @buf, returned. */
        const char *(*why)(void *st, int err, char *buf, size_t size);
        /* The handshake finished: was it resumed? */
        bool (*resumed)(void *st);
        /* The peer's address as text, remembered while it could still be
         * asked for (a reset socket has none), or NULL. */
        const char *(*peer)(void *st, char *buf, size_t size);
        /* After a read: nothing more can be read before the next edge. */
        bool (*drained)(void *st);
};
struct tern__xport {
        const struct tern__xport_ops *ops;
        uint32_t handshake_timeout_ms;
};

/*
 * What a connection runs with: a listener's stack, or a connector's. Shared
 * by every connection it makes; a listener's lives as long as its server
 * (refs 0), a connector's is counted (refs > 0), since a connection may
 * outlive its connector while it flushes.
 */
struct tern__conn_cfg {
        const struct tern_conn_ops *ops;
        const struct tern_codec *codec;
        const void *codec_config;
        struct tern_conn_limits limits;
        uint32_t idle_timeout_ms;
        bool nodelay;
        bool unix_domain;
        long *live; /* accepted: the server's count for max_conns, or NULL */
        const struct tern__conn_owner_ops *owner_ops;
        void *owner;               /* the connector; NULL once it is freed */
        uint32_t refs;             /* 0: not counted (outlives its connections) */
        void *user;                /* tern_conn_listener_user() */
        struct tern__xport *xport; /* NULL: plain TCP or Unix socket */
        char *server_name;         /* a connector's TLS name (owned), or NULL */
};

/*
 * Kept small on purpose: an idle connection costs this struct, its slot and
 * nothing else (buffers are released when empty).
 */
struct tern_conn {
        struct tern__io io; /* first: the loop hands us &io */
        uint16_t flags;
        uint8_t close_reason; /* reported when a graceful close completes */
        uint8_t owed;         /* TERN__OWE_* */
        uint32_t idle_ms;
        uint32_t last_active; /* low 32 bits of loop ms at the last consumed input
                                 or write progress; compared wrap-safe, like jiffies */
        int close_err;
        struct tern__conn_cfg *cfg;
        const struct tern_conn_ops *ops;
        void *data;
        struct tern_buf in;
        struct tern_buf out;
        const struct tern_codec *codec;
        void *codec_state;
        struct tern_timer idle_timer;
};

/* An idle connection costs this struct (plus malloc's 8 bytes, rounded to
 * 16) and its 16-byte slot: the idle-memory budget of docs/benchmarks.md
 * (256 bytes per connection) leaves no room for another field. */
_Static_assert(sizeof(struct tern_conn) <= 216, "struct tern_conn grew past its idle budget");

/* The transport of a tern_tls (tls.h), which starts with its struct
 * tern__xport; NULL for NULL. */
struct tern_tls;
static inline struct tern__xport *tern__xport_of(const struct tern_tls *t)
{
        return (struct tern__xport *)(void *)t;
}

/* A connection with a transport is allocated with its state pointer just
 * behind it, so plain connections pay nothing for the possibility. */
#define TERN__CONN_XSTATE(c) (((void **)((struct tern_conn *)(c) + 1))[0])

/* The loop of @c; the connection's own fields through io. */
#define TERN__CONN_LOOP(c) ((c)->io.loop)

/*
 * Creates and registers a connection for @fd, accepted (@connecting false:
 * counted and opened at once, on_open runs here) or outgoing (@connecting:
 * no on_open, no idle timer and no counters until tern__conn_connected()).
 * One registration (IN|OUT|RDHUP|ET) for both. On failure closes @fd, gives
 * back its place in @cfg->live, and returns NULL.
 */
struct tern_conn *tern__conn_setup(struct tern_loop *l, int fd, struct tern__conn_cfg *cfg,
                                   bool connecting);
/* Closes @c now (the fd stays open until on_close has run, from the loop). */
void tern__conn_close(struct tern_conn *c, enum tern_close_reason reason, int err);

/* Cross-thread operations on handle @h of loop @l (server.c resolves the
 * loop): the same returns as tern_handle_send() & co. */
int tern__conn_post_send(struct tern_loop *l, tern_handle h, const void *data, size_t len);
int tern__conn_post_close(struct tern_loop *l, tern_handle h);
int tern__conn_post_task(struct tern_loop *l, tern_handle h, tern_conn_task_cb cb, void *arg);

/* Drops a reference to a counted @cfg (refs > 0), freeing it at the last. */
void tern__conn_cfg_put(struct tern__conn_cfg *cfg);

/* The owner (connector) of @c if its ops are @ops, else NULL. */
void *tern__conn_owner(const struct tern_conn *c, const struct tern__conn_owner_ops *ops);

#endif
