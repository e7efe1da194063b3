/* Private: the connector object. */
#ifndef TERN_CONNECTOR_INTERNAL_H
#define TERN_CONNECTOR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "connector.h"
#include "loop_internal.h"
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
        struct tern__conn_cfg *cfg;     /* the connection's stack (counted) */
        struct tern__hook drain_hook;   /* the loop drains: stop attempts */
        struct tern__hook destroy_hook; /* the loop is freed: free us */
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

#endif
