/*
 * Private: the acceptor (acceptor.c). It owns the listening sockets, the
 * round-robin over a set of loops, and the hand-off ring into each; it
 * runs on its own thread or on the first loop ("home"). It knows loops and
 * connection stacks (the layers below it), never the server: the server
 * gives it sockets and loops, and asks it to start and stop.
 */
#ifndef TERN_ACCEPTOR_INTERNAL_H
#define TERN_ACCEPTOR_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ck_ring.h>

#include "conn_internal.h"
#include "loop_internal.h"
#include "timer.h"

#define TERN__MAX_LFDS  16   /* listening sockets, all listeners together */
#define TERN__RING_SIZE 4096 /* power of two; hand-off ring entries */

struct tern__acceptor;

/* A listening socket; at home, an I/O object of the home loop. */
struct tern__acc_lfd {
        struct tern__io io; /* io.fd: the socket; io.loop set while registered */
        struct tern__acceptor *acc;
        struct tern__conn_cfg *cfg; /* the stack its connections run with */
        bool late;                  /* serves through the drain (tern__acceptor_add) */
};

/* A loop the acceptor hands connections to, and the ring into it. */
struct tern__acc_target {
        struct tern_loop *loop;
        struct tern__acceptor *acc;
        struct ck_ring ring; /* acceptor -> loop, single producer */
        struct ck_ring_buffer *ring_buf;
        struct tern__hook inbox; /* its end of iteration: take what the ring holds */
        struct tern__hook late;  /* it drained all but late connections */
};

struct tern__acceptor {
        struct tern__acc_target *targets;
        int ntargets;
        uint32_t max_conns;          /* 0 = unlimited */
        long live_conns;             /* accepted and not yet freed (conn cfg->live) */
        struct tern__counters stats; /* rejected, accept_errors */
        struct tern__acc_lfd lfds[TERN__MAX_LFDS];
        int nlfds;

        struct tern_loop *home; /* the loop it runs on; NULL = its own thread */
        int epfd, evfd;         /* its own thread only, else -1 */
        pthread_t thread;
        bool thread_started;
        bool stop_req; /* its own thread: set from any thread (signal-safe) */

        /* Written only by the thread that accepts, so no atomics. */
        int next;                         /* round-robin cursor */
        unsigned pause_ms;                /* current back-off after EMFILE & co */
        bool paused;                      /* home: waiting for resume_timer */
        bool warned;                      /* the pause was logged; log the resume */
        bool took;                        /* this round handed out a connection */
        uint8_t woken[256];               /* targets to wake at the end of the round */
        struct tern_timer resume_timer;   /* home only */
        struct tern__hook drain_hook;     /* home only: listeners first */
        struct tern__hook home_late_hook; /* home only: then the late listeners */
        int late_left; /* atomic: targets yet to drain all but late connections */
};

/* Sets @a up to hand connections to @n loops (@loops[0] is home when
 * @on_first_loop). Returns 0 or -errno (then tern__acceptor_destroy). */
int tern__acceptor_init(struct tern__acceptor *a, struct tern_loop *const *loops, int n,
                        bool on_first_loop, uint32_t max_conns);
/* Adopts listening socket @fd, whose connections run with @cfg (which
 * must outlive @a). @late: it keeps accepting through the drain, until
 * every loop has drained all but its late connections (then they begin
 * the last phase together), and its connections are drained last
 * (tern__io_set_late). Returns 0, or
 * -errno and @fd stays the caller's. */
int tern__acceptor_add(struct tern__acceptor *a, int fd, struct tern__conn_cfg *cfg, bool late);
/* Closes the sockets added after the first @keep (a failed listener). */
void tern__acceptor_truncate(struct tern__acceptor *a, int keep);
/* Starts the acceptor thread (none at home). Returns 0 or -errno. */
int tern__acceptor_start(struct tern__acceptor *a);
/* Async-signal-safe: close the listeners (late ones later), then have
 * every loop drain. */
void tern__acceptor_request_stop(struct tern__acceptor *a);
/* Joins the acceptor thread, if any. Returns 0 or -errno. */
int tern__acceptor_join(struct tern__acceptor *a);
/* The loops have finished (or never ran): closes what is left in the
 * rings and the listeners, frees everything but @a itself. */
void tern__acceptor_destroy(struct tern__acceptor *a);

#endif
