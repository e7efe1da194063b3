/* Private: the server object shared by the acceptor and the workers. */
#ifndef TERN_SERVER_INTERNAL_H
#define TERN_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include <ck_ring.h>

#include "acceptor_internal.h"
#include "conn_internal.h"
#include "loop_internal.h"
#include "server.h"

#define TERN__MAX_LISTENERS 8    /* listeners per server (tern_server_listen) */
#define TERN__MAX_LFDS      16   /* listening sockets, all listeners together */
#define TERN__RING_SIZE     4096 /* power of two; hand-off ring entries */

/* A listener: an address (one socket per address family for TCP) and the
 * stack its connections run with. */
struct tern__listener {
        struct tern__conn_cfg cfg; /* refs 0: lives as long as the server */
        enum tern_listen_kind kind;
        uint16_t port;
        char *path; /* UNIX: the socket file, removed at free */
        dev_t dev;  /* ... if it is still ours */
        ino_t ino;
};

/* A listening socket of a listener; on the home loop, an I/O object. */
struct tern__lfd {
        struct tern__io io; /* io.fd: the socket; registered at home only */
        struct tern_server *s;
        int listener; /* index in listeners[] */
};

/* A worker: its loop, its thread and the acceptor's ring into it. */
struct tern__worker {
        struct tern_loop *loop;
        pthread_t thread;
        struct tern_server *s;
        struct ck_ring ring; /* acceptor -> worker, single producer */
        struct ck_ring_buffer *ring_buf;
        struct tern__hook inbox; /* end of iteration: take what the ring holds */
};

struct tern_server {
        struct tern_server_opts opts;
        struct tern_conn_limits limits; /* from opts: the listeners' default */
        int nworkers;
        struct tern__worker *workers; /* nworkers of them */
        struct tern__listener *listeners[TERN__MAX_LISTENERS];
        int nlisteners;
        struct tern__lfd lfds[TERN__MAX_LFDS];
        int nlfds;

        struct tern__acceptor acc;
        int acc_epfd; /* acceptor thread only, else -1 */
        int acc_evfd; /* acceptor thread only, else -1 */
        pthread_t acc_thread;
        bool started;
        bool run_here;   /* tern_server_run: worker 0 is the caller's thread */
        bool stop_req;   /* set by tern_server_stop (signal-safe) */
        long live_conns; /* across workers, for max_conns */
        struct tern__counters acc_stats;
};

/* Closes every listening socket (the thread that accepts, or after it has
 * gone); at home, unregisters them from the home loop first. */
void tern__server_close_listeners(struct tern_server *s);
/* Asks every worker loop but @except to drain. Async-signal-safe. */
void tern__server_stop_workers(struct tern_server *s, struct tern_loop *except);

/* Acceptor -> worker hand-off of a new fd of listener @li (single producer). */
bool tern__ring_push(struct tern__worker *w, int fd, int li);
/* The accepted @fd of listener @li becomes a connection on worker @w's loop
 * (its thread), or is closed when that loop drains. */
void tern__server_adopt(struct tern__worker *w, int fd, int li);

#endif
