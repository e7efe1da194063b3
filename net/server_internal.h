/* Private: the server object. */
#ifndef TERN_SERVER_INTERNAL_H
#define TERN_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "acceptor_internal.h"
#include "conn_internal.h"
#include "loop_internal.h"
#include "server.h"

#define TERN__MAX_LISTENERS 8 /* listeners per server (tern_server_listen) */

/* A listener: an address (one socket per address family for TCP) and the
 * stack its connections run with. */
struct tern__listener {
        struct tern__conn_cfg cfg; /* refs 0: lives as long as the server */
        enum tern_listen_kind kind;
        bool drain_last; /* tern_listener_opts.drain_last */
        uint16_t port;
        char *path; /* UNIX: the socket file, removed at free */
        dev_t dev;  /* ... if it is still ours */
        ino_t ino;
};

/* A worker: a loop and the thread that runs it. */
struct tern__worker {
        struct tern_loop *loop;
        pthread_t thread;
};

struct tern_server {
        struct tern_server_opts opts;
        struct tern_conn_limits limits; /* from opts: the listeners' default */
        int nworkers;
        struct tern__worker *workers; /* nworkers of them */
        struct tern__listener *listeners[TERN__MAX_LISTENERS];
        int nlisteners;
        struct tern__acceptor acc;
        bool started;
        bool run_here; /* tern_server_run: worker 0 is the caller's thread */
        bool stop_req; /* set by tern_server_stop (signal-safe) */
};

#endif
