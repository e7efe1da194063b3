/* Private: the connection object and what the loop calls on it. */
#ifndef TERN_CONN_INTERNAL_H
#define TERN_CONN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "conn.h"
#include "timer.h"

enum {
        TERN__CONN_CLOSED = 1u << 0,      /* fd closed, waiting to be freed */
        TERN__CONN_CLOSING = 1u << 1,     /* flushing output, then close */
        TERN__CONN_PAUSED = 1u << 2,      /* reads paused by the application */
        TERN__CONN_READY = 1u << 3,       /* on the loop's ready list */
        TERN__CONN_EOF = 1u << 4,         /* peer half-closed */
        TERN__CONN_HIGH = 1u << 5,        /* above high water, low-water cb owed */
        TERN__CONN_WAS_QUEUED = 1u << 6,  /* write-complete owed when drained */
        TERN__CONN_RDHUP = 1u << 7,       /* EPOLLRDHUP seen: read to EOF */
        TERN__CONN_STALE = 1u << 8,       /* slot released: the handle is stale */
        TERN__CONN_CORKED = 1u << 9,      /* sends queue; flushed on uncork */
        TERN__CONN_CONNECTING = 1u << 10, /* outgoing connect() not finished */
        TERN__CONN_CLIENT = 1u << 11,     /* made by a connector, not accepted */
        TERN__CONN_SHUTWR = 1u << 12,     /* FIN once output has flushed */
};

/*
 * Kept small on purpose: an idle connection costs this struct, its slot and
 * nothing else (buffers are released when empty).
 */
struct tern_conn {
        int fd;
        uint16_t flags;
        uint8_t close_reason; /* reported when a graceful close completes */
        uint32_t slot;        /* index in the loop's slot table */
        uint32_t idle_ms;
        uint32_t last_active; /* low 32 bits of loop ms at the last consumed input
                                 or write progress; compared wrap-safe, like jiffies */
        int close_err;
        struct tern_loop *loop;
        const struct tern_conn_ops *ops;
        void *data;
        struct tern_buf in;
        struct tern_buf out;
        const struct tern_codec *codec;
        void *codec_state;
        struct tern_conn *next_ready;
        struct tern_connector *connector; /* NULL for accepted connections */
        union {
                struct tern_timer idle_timer;
                /* Once closed the idle timer is dead: its storage links the
                 * loop's list of connections to free. */
                struct tern_conn *next_closed;
        };
};

/* Creates and registers a connection for accepted @fd; closes @fd on failure. */
struct tern_conn *tern__conn_new(struct tern_loop *l, int fd);

/* What differs between an accepted and an outgoing connection. */
struct tern__conn_params {
        const struct tern_conn_ops *ops;
        const struct tern_codec *codec;
        const void *codec_config;
        uint32_t idle_timeout_ms;
        bool no_delay_off;
        struct tern_connector *connector; /* NULL: accepted */
};

/*
 * Creates and registers a connection for @fd, accepted or outgoing: one
 * registration (IN|OUT|RDHUP|ET) for both. An outgoing one (@p->connector
 * set) starts out CONNECTING: no on_open, no idle timer and no counters
 * until tern__conn_connected(). Closes @fd and returns NULL on failure.
 */
struct tern_conn *tern__conn_setup(struct tern_loop *l, int fd, const struct tern__conn_params *p);
/* An outgoing connection's connect() succeeded: count it, on_open. */
void tern__conn_connected(struct tern_conn *c);
/* epoll readiness for @c. */
void tern__conn_on_events(struct tern_conn *c, uint32_t events);
/* Serves a connection taken off the ready list. */
void tern__conn_on_ready(struct tern_conn *c);
/* Frees a closed connection (end of iteration). */
void tern__conn_free(struct tern_conn *c);
/* Server stop: on_drain then graceful close. */
void tern__conn_drain(struct tern_conn *c);
void tern__conn_close(struct tern_conn *c, enum tern_close_reason reason, int err);

#endif
