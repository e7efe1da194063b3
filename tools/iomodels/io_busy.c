/*
 * Model 2: non-blocking I/O with a busy polling loop.
 *
 * With O_NONBLOCK, read() no longer waits in phase 1: if no data is there it
 * returns EAGAIN at once. One thread can then serve every connection by
 * asking each of them in turn, over and over. Phase 2 (the copy) still
 * happens inside read() when data is there.
 *
 * What it costs: the asking. Each pass makes one read() system call per
 * connection whether or not anything arrived, so with N connections and one
 * active, N - 1 of every N calls are wasted, and the loop never sleeps: an
 * idle server burns a whole core. Latency grows with N too, since a client
 * waits for the pass to come round to it. Nothing here tells the process
 * which sockets are ready; the next models ask the kernel that.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
        struct iom_conn **conns = NULL;
        size_t n = 0, cap = 0;
        struct iom_opts o;
        sigset_t wait_mask;
        int lfd, rc;

        lfd = iom_start(argc, argv, "iomodel-busy", "", true, &o, &wait_mask, &rc);
        if (lfd < 0)
                return rc;
        /* Nothing here waits, so a stop signal may simply arrive at any time. */
        sigprocmask(SIG_SETMASK, &wait_mask, NULL);
        while (!iom_stop) {
                /* Ask the listener: anyone new? (EAGAIN: no.) */
                for (;;) {
                        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                        struct iom_conn *c;

                        if (fd < 0)
                                break;
                        if (n == cap) {
                                size_t ncap = cap ? 2 * cap : 64;
                                struct iom_conn **nc = realloc(conns, ncap * sizeof(*nc));

                                if (!nc) {
                                        close(fd);
                                        break;
                                }
                                conns = nc;
                                cap = ncap;
                        }
                        c = iom_conn_new(fd);
                        if (!c) {
                                close(fd);
                                break;
                        }
                        conns[n++] = c;
                }
                /* Ask every connection: any data? Mostly the answer is EAGAIN. */
                for (size_t i = 0; i < n;) {
                        if (iom_serve(conns[i], 1) == IOM_CLOSED) {
                                iom_conn_free(conns[i]);
                                conns[i] = conns[--n];
                                continue;
                        }
                        i++;
                }
        }
        for (size_t i = 0; i < n; i++)
                iom_conn_free(conns[i]);
        free(conns);
        close(lfd);
        return 0;
}
