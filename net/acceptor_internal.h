/* Private: the acceptor, on its own thread or on worker 0's loop (acceptor.c). */
#ifndef TERN_ACCEPTOR_INTERNAL_H
#define TERN_ACCEPTOR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "loop_internal.h"
#include "timer.h"

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
        struct tern__hook drain_hook;   /* home only: listeners first */
};

/* tern_server_new, once the workers exist: picks the mode; makes the
 * acceptor thread's epoll or joins the home loop. Returns 0 or -errno. */
int tern__acceptor_init(struct tern_server *s);
/* Listening socket @k of the server is new: watch it (the acceptor's epoll
 * or the home loop). Returns 0 or -errno. */
int tern__acceptor_watch(struct tern_server *s, int k);
/* Starts the acceptor thread (none at home). Returns 0 or -errno. */
int tern__acceptor_start(struct tern_server *s);
/* Async-signal-safe: tells whoever accepts to close the listeners and start
 * the workers' drain. */
void tern__acceptor_request_stop(struct tern_server *s);
/* Joins the acceptor thread, which joins the workers; at home, the workers.
 * Returns 0 or -errno. */
int tern__acceptor_join(struct tern_server *s);

#endif
