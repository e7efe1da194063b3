/* Private: the server object shared by the acceptor and the workers. */
#ifndef TERN_SERVER_INTERNAL_H
#define TERN_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "acceptor_internal.h"
#include "loop_internal.h"
#include "server.h"

#define TERN__MAX_LISTENERS 8

struct tern_server {
        struct tern_server_opts opts;
        int nworkers;
        struct tern_loop *loops; /* nworkers of them */
        int listen_fds[TERN__MAX_LISTENERS];
        int nlisteners;
        uint16_t port;

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

/* Closes every listener (the thread that accepts, or after it has gone). */
void tern__server_close_listeners(struct tern_server *s);

#endif
