/*
 * Model 3: I/O multiplexing with select().
 *
 * The process now sleeps in one call until some descriptor is ready: phase 1
 * (waiting) moves from read() into select(), for all connections at once,
 * and read() on a ready socket only does phase 2 (the copy), which still
 * blocks the thread while it runs. This is the Reactor: the kernel says
 * "ready", the program does the I/O.
 *
 * What it costs, per call: the interest set is not kept anywhere. Every
 * call rebuilds the fd_set bitmaps, copies them into the kernel, which walks
 * every descriptor up to the highest one, polls each, and copies the bitmaps
 * back; then the program walks them all again to find the ready ones. O(N)
 * twice per wake-up, however few descriptors are active.
 *
 * And the wall: fd_set is a fixed bitmap of FD_SETSIZE (1,024) bits. A
 * descriptor numbered 1,024 or above cannot be put in it at all (FD_SET on it
 * writes past the end of the array), so this server refuses such
 * connections: select caps a process at ~1,020 clients, whatever its limit
 * on open files says.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

static struct iom_conn *conns[FD_SETSIZE]; /* indexed by fd: all select can name */

static void accept_all(int lfd)
{
        static bool warned;

        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0)
                        return;
                if (fd >= FD_SETSIZE) {
                        if (!warned)
                                fprintf(stderr,
                                        "iomodel-select: fd %d >= FD_SETSIZE (%d): "
                                        "refusing connections from here on\n",
                                        fd, FD_SETSIZE);
                        warned = true;
                        close(fd);
                        continue;
                }
                conns[fd] = iom_conn_new(fd);
                if (!conns[fd])
                        close(fd);
        }
}

int main(int argc, char **argv)
{
        struct iom_opts o;
        sigset_t wait_mask;
        int lfd, rc, maxfd;

        lfd = iom_start(argc, argv, "iomodel-select", "", true, &o, &wait_mask, &rc);
        if (lfd < 0)
                return rc;
        while (!iom_stop) {
                fd_set rd, wr;

                /* Rebuild the whole interest set: select keeps nothing between calls. */
                FD_ZERO(&rd);
                FD_ZERO(&wr);
                FD_SET(lfd, &rd);
                maxfd = lfd;
                for (int fd = 0; fd < FD_SETSIZE; fd++) {
                        if (!conns[fd])
                                continue;
                        /* Backpressure: a connection with stuck output waits to write, not read. */
                        FD_SET(fd, conns[fd]->want_write ? &wr : &rd);
                        maxfd = fd;
                }
                /* Phase 1 for everyone at once. pselect: stop signals only arrive here. */
                rc = pselect(maxfd + 1, &rd, &wr, NULL, NULL, &wait_mask);
                if (rc < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("iomodel-select: select");
                        return 1;
                }
                if (FD_ISSET(lfd, &rd))
                        accept_all(lfd);
                /* Scan every descriptor again to find the few that are ready. */
                for (int fd = 0; fd <= maxfd; fd++) {
                        if (fd == lfd || !conns[fd] || !(FD_ISSET(fd, &rd) || FD_ISSET(fd, &wr)))
                                continue;
                        /* One read per readiness report: select asks again next time. */
                        if (iom_serve(conns[fd], 1) == IOM_CLOSED) {
                                iom_conn_free(conns[fd]);
                                conns[fd] = NULL;
                        }
                }
        }
        for (int fd = 0; fd < FD_SETSIZE; fd++)
                if (conns[fd])
                        iom_conn_free(conns[fd]);
        close(lfd);
        return 0;
}
