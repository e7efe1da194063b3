/*
 * tern-proxy: a TCP proxy built from a tern server and connectors.
 *
 * Each accepted (source) connection gets a connector to the destination on
 * the same worker loop, so both halves of a pair live on one thread and
 * talk without locks. Bytes are piped both ways with backpressure: when one
 * side's queued output reaches the server's high_water, reading from the
 * other side pauses, and resumes at low_water; so a slow destination holds
 * back its source instead of buffering without limit. A half-close passes
 * through (tern_conn_shutdown); the pair closes when both directions ended
 * or either side closed.
 *
 * The program (main.c) is a thin wrapper; tests link this file in-process.
 */
#ifndef TERN_APP_PROXY_H
#define TERN_APP_PROXY_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "tern.h"

#define PROXY_DEFAULT_HIGH_WATER (256u * 1024)

struct proxy {
        char to_host[INET6_ADDRSTRLEN]; /* numeric: resolved once at init */
        uint16_t to_port;
        uint32_t connect_timeout_ms;
        struct tern_conn_limits dst_limits; /* the server's, for the destinations */
        const tern_tls *to_tls;             /* TLS to the destination, or NULL */
        char to_name[256];                  /* the name --to gave: SNI and verification */
        /* Counters, any thread (atomics). */
        long pairs;          /* pairs alive now */
        long connect_failed; /* sources closed because the destination failed */
        size_t peak_queued;  /* most output ever queued on one connection */
};

/*
 * proxy_init - resolve @to_host (blocking, once, here: a name is never
 * resolved again per connection) and prepare @px. Returns 0, or -EINVAL
 * after logging why.
 */
int proxy_init(struct proxy *px, const char *to_host, uint16_t to_port,
               uint32_t connect_timeout_ms);

/*
 * proxy_apply - make @o a proxy server: its callbacks, @px as its user
 * pointer (borrowed; must outlive the server), and high_water
 * PROXY_DEFAULT_HIGH_WATER unless @o sets one (backpressure needs it).
 */
void proxy_apply(struct tern_server_opts *o, struct proxy *px);

#endif
