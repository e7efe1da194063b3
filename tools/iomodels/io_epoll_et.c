/*
 * Model 6: epoll, edge-triggered (EPOLLET), draining until EAGAIN.
 *
 * The same Reactor as model 5, with one flag more. Edge-triggered means a
 * socket is reported when its state changes (data arrived, room to write
 * appeared), not for as long as it stays readable. That buys two things:
 * a socket is registered once for EPOLLIN | EPOLLOUT and never modified
 * (an EPOLLOUT edge only comes after a write ran out of room, so leaving it
 * armed costs no wake-ups and saves the epoll_ctl(MOD) per stall of model 5),
 * and a busy socket is not reported again and again while it is served.
 *
 * The price is a rule: after an edge, read until read() says EAGAIN. Data
 * left in the socket raises no new edge; only new data does. A server that
 * reads once per notification (run this one with --naive) echoes the first
 * 16 KiB of a 64 KiB request and then waits forever for an edge that never
 * comes, while its client waits for the rest of the echo: both stall, and no
 * error is ever reported. tests/integration/test_iomodels.c shows it.
 *
 * tern's worker loops are this model (with per-connection buffers, timers
 * and N loops behind one acceptor).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define MAX_EVENTS 256

static void accept_all(int epfd, int lfd)
{
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};

                if (fd < 0)
                        return;
                ev.data.ptr = iom_conn_new(fd);
                if (!ev.data.ptr || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)) {
                        if (ev.data.ptr)
                                iom_conn_free(ev.data.ptr);
                        else
                                close(fd);
                }
        }
}

int main(int argc, char **argv)
{
        struct epoll_event evs[MAX_EVENTS], lev = {.events = EPOLLIN, .data.ptr = NULL};
        struct iom_opts o;
        sigset_t wait_mask;
        unsigned reads_per_edge;
        int lfd, epfd, rc;

        lfd = iom_start(argc, argv, "iomodel-epoll-et", "naive", true, &o, &wait_mask, &rc);
        if (lfd < 0)
                return rc;
        /* 0: until EAGAIN, the rule. 1: the classic bug, for the demonstration. */
        reads_per_edge = o.naive ? 1 : 0;
        epfd = epoll_create1(EPOLL_CLOEXEC);
        /* The listener stays level-triggered: accept_all drains it anyway. */
        if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev)) {
                perror("iomodel-epoll-et: epoll");
                return 1;
        }
        while (!iom_stop) {
                int nev = epoll_pwait(epfd, evs, MAX_EVENTS, -1, &wait_mask);

                if (nev < 0 && errno != EINTR) {
                        perror("iomodel-epoll-et: epoll_wait");
                        return 1;
                }
                for (int i = 0; i < nev; i++) {
                        struct iom_conn *c = evs[i].data.ptr;

                        if (!c) {
                                accept_all(epfd, lfd);
                                continue;
                        }
                        /*
                         * Drain: read (and echo) until EAGAIN, or until output
                         * is stuck, in which case the EPOLLOUT edge resumes us.
                         */
                        if (iom_serve(c, reads_per_edge) == IOM_CLOSED)
                                iom_conn_free(c);
                }
        }
        iom_conn_free_all();
        close(epfd);
        close(lfd);
        return 0;
}
