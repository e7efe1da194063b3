/*
 * Starting and tearing down an in-process tern server for tests. Teardown
 * asserts that nothing is left alive: connections, buffers, timers.
 */
#ifndef TERN_SRVUTIL_H
#define TERN_SRVUTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "tern.h"

static inline tern_server *su_start(struct tern_server_opts *o)
{
        if (!o->bind)
                o->bind = "127.0.0.1";
        tern_server *s = tern_server_new(o);
        cr_assert_not_null(s, "tern_server_new: %s", strerror(errno));
        cr_assert_eq(tern_server_start(s), 0);
        return s;
}

static inline void su_echo_message(tern_conn *c, struct tern_buf *in)
{
        tern_conn_send(c, tern_buf_data(in), tern_buf_len(in));
        tern_buf_consume(in, tern_buf_len(in));
}

/* An echo server on 127.0.0.1 with @workers workers: a peer for clients. */
static inline tern_server *su_start_echo(int workers)
{
        static const struct tern_conn_ops echo_ops = {.on_message = su_echo_message};
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = workers;
        o.ops = &echo_ops;
        return su_start(&o);
}

static inline void su_assert_nothing_live(void)
{
        struct tern_live_counts lc;
        tern_live_counts(&lc);
        cr_assert_eq(lc.conns, 0, "%ld connections still live", lc.conns);
        cr_assert_eq(lc.bufs, 0, "%ld buffers still live", lc.bufs);
        cr_assert_eq(lc.timers, 0, "%ld timers still armed", lc.timers);
        cr_assert_eq(lc.loops, 0, "%ld loops still live", lc.loops);
        cr_assert_eq(lc.watches, 0, "%ld watches still live", lc.watches);
        cr_assert_eq(lc.connectors, 0, "%ld connectors still live", lc.connectors);
}

static inline void su_stop(tern_server *s)
{
        tern_server_stop(s);
        cr_assert_eq(tern_server_wait(s), 0);
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.conns, 0, "%lu connections open after stop", (unsigned long)st.conns);
        tern_server_free(s);
        su_assert_nothing_live();
}

#endif
