/*
 * Model 4: I/O multiplexing with poll().
 *
 * The same Reactor as select (model 3): poll() waits for phase 1 on every
 * connection at once, read() on a ready socket does phase 2. What poll fixes
 * is the interface: an array of struct pollfd instead of fixed bitmaps, so
 * there is no FD_SETSIZE wall, and the array survives between calls, so the
 * program changes only the entries that change.
 *
 * What it keeps: the cost. The kernel still has no memory of the interest
 * set: each call copies the whole array in, polls every descriptor (and
 * hooks the process onto every socket's wait queue, then unhooks it), and
 * copies it back; the program then walks the whole array for the few
 * non-zero revents. Work per wake-up grows with the number of connections,
 * not with the number of active ones.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

static struct pollfd *pfds;     /* pfds[0] is the listener */
static struct iom_conn **conns; /* conns[i] serves pfds[i], i >= 1 */
static size_t n, cap;

static void accept_all(int lfd)
{
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0)
                        return;
                if (n == cap) {
                        size_t ncap = cap * 2;
                        struct pollfd *np = realloc(pfds, ncap * sizeof(*np));
                        struct iom_conn **nc;

                        if (np)
                                pfds = np;
                        nc = np ? realloc(conns, ncap * sizeof(*nc)) : NULL;
                        if (!nc) {
                                close(fd);
                                return;
                        }
                        conns = nc;
                        cap = ncap;
                }
                conns[n] = iom_conn_new(fd);
                if (!conns[n]) {
                        close(fd);
                        return;
                }
                pfds[n] = (struct pollfd){.fd = fd, .events = POLLIN};
                n++;
        }
}

int main(int argc, char **argv)
{
        struct iom_opts o;
        sigset_t wait_mask;
        int lfd, rc;

        lfd = iom_start(argc, argv, "iomodel-poll", "", true, &o, &wait_mask, &rc);
        if (lfd < 0)
                return rc;
        cap = 64;
        pfds = malloc(cap * sizeof(*pfds));
        conns = malloc(cap * sizeof(*conns));
        if (!pfds || !conns)
                return 1;
        pfds[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        n = 1;
        while (!iom_stop) {
                /* Phase 1 for everyone; the whole array goes in and comes back. */
                rc = ppoll(pfds, n, NULL, &wait_mask);
                if (rc < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("iomodel-poll: poll");
                        return 1;
                }
                /* Walk the whole array for the few entries with revents set. */
                for (size_t i = 1; i < n;) {
                        struct iom_conn *c = conns[i];

                        if (pfds[i].revents) {
                                /* One read per report: poll asks again next time (level). */
                                if (iom_serve(c, 1) == IOM_CLOSED) {
                                        iom_conn_free(c);
                                        pfds[i] = pfds[n - 1];
                                        conns[i] = conns[n - 1];
                                        n--;
                                        continue; /* the moved entry has not been looked at */
                                }
                                /* Backpressure: stuck output waits to write, not read. */
                                pfds[i].events = c->want_write ? POLLOUT : POLLIN;
                        }
                        i++;
                }
                if (pfds[0].revents)
                        accept_all(lfd);
        }
        for (size_t i = 1; i < n; i++)
                iom_conn_free(conns[i]);
        free(pfds);
        free(conns);
        close(lfd);
        return 0;
}
