/* Private: the connector object and what the loop and connections call on it. */
#ifndef TERN_CLIENT_INTERNAL_H
#define TERN_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "client.h"
#include "timer.h"

#define TERN__CONNECTOR_MAX_ADDRS 8

enum tern__connector_state {
        TERN__CN_IDLE,       /* not started, stopped, or gave up */
        TERN__CN_CONNECTING, /* conn is CONNECTING; timer = connect timeout */
        TERN__CN_CONNECTED,  /* conn is open */
        TERN__CN_WAITING,    /* timer = next attempt (or a deferred failure) */
};

struct tern_connector {
        struct tern_connector_opts opts;
        struct tern_loop *loop;
        struct tern_connector *next, **pprev; /* the loop's list of connectors */
        enum tern__connector_state state;
        struct tern_conn *conn;  /* connecting or connected; NULL otherwise */
        struct tern_timer timer; /* connect timeout or retry delay */
        int deferred_err;        /* the timer reports this failure when set */
        uint32_t failures;       /* consecutive failed attempts */
        uint32_t rng;            /* xorshift32 state for the jitter */
        bool *freed;             /* set while calling out: free() marks it */
        int naddrs, next_addr;
        struct sockaddr_storage addrs[TERN__CONNECTOR_MAX_ADDRS];
        socklen_t addr_lens[TERN__CONNECTOR_MAX_ADDRS];
};

/*
 * Delay before the next attempt after @failures (>= 1) consecutive failures:
 * uniform in [cap/2, cap] with cap = min(@max_ms, @min_ms << (failures-1)),
 * then at least @min_ms (and at most @max_ms). Advances *@rng (xorshift32,
 * never 0). Pure, for the unit test.
 */
uint32_t tern__backoff_delay(uint32_t min_ms, uint32_t max_ms, uint32_t failures, uint32_t *rng);

/* From the connection (conn.c), on the loop thread. */
void tern__connector_connected(struct tern_connector *cn, struct tern_conn *c);
/* @c closed; @opened: it had connected (else the attempt failed with @err). */
void tern__connector_conn_closed(struct tern_connector *cn, struct tern_conn *c, bool opened,
                                 int err);
/* The loop begins its graceful stop: no more attempts anywhere. */
void tern__connectors_drain(struct tern_loop *l);
/* The loop is destroyed: free what the application left behind. */
void tern__connectors_free_all(struct tern_loop *l);

#endif
