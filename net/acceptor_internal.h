/* Private: the acceptor, on its own thread or on worker 0's loop (acceptor.c). */
#ifndef TERN_ACCEPTOR_INTERNAL_H
#define TERN_ACCEPTOR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "timer.h"

struct tern_loop;
struct tern_server;

/* Written only by the thread that accepts, so no atomics. */
struct tern__acceptor {
        struct tern_loop *home;         /* the loop it runs on; NULL = its own thread */
        int next;                       /* round-robin cursor */
        unsigned pause_ms;              /* current back-off after EMFILE & co */
        bool paused;                    /* home: waiting for resume_timer */
        bool warned;                    /* the pause was logged; log the resume */
        bool took;                      /* this round handed out a connection */
        uint8_t woken[256];             /* workers to wake at the end of the round */
        struct tern_timer resume_timer; /* home only */
};

/* tern_server_new, after the loops exist: picks the mode and registers the
 * listeners with the acceptor's epoll or the home loop's. Returns 0 or -errno. */
int tern__acceptor_init(struct tern_server *s);
/* Starts the acceptor thread (none at home). Returns 0 or -errno. */
int tern__acceptor_start(struct tern_server *s);
/* Async-signal-safe: tells whoever accepts to close the listeners and start
 * the workers' drain. */
void tern__acceptor_request_stop(struct tern_server *s);
/* Joins the acceptor thread, which joins the workers; at home, the workers.
 * Returns 0 or -errno. */
int tern__acceptor_join(struct tern_server *s);

/* Home loop only: a listener's event (index @i), and the start of its drain. */
void tern__acceptor_on_listener(struct tern_loop *l, uint32_t i);
void tern__acceptor_stop_home(struct tern_loop *l);

#endif
