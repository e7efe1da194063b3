/*
 * Model 5: epoll, level-triggered (the default).
 *
 * Still a Reactor: epoll_wait() is phase 1 for every connection at once, and
 * read() on a ready socket does phase 2 (the copy). What changes is where
 * the interest set lives: epoll_ctl(ADD) registers a socket once, in the
 * kernel, which hooks the epoll instance onto the socket's wait queue for as
 * long as it stays registered. When data arrives the socket's callback puts
 * it on the instance's ready list, and epoll_wait() returns just that list.
 * A call costs O(ready), not O(connections): the case epoll was made for is
 * many connections of which few are active.
 *
 * Level-triggered means: a socket is reported on every epoll_wait() for as
 * long as it is readable. So reading once per report is correct; whatever is
 * left is reported again. Changing what we wait for (EPOLLIN while reading,
 * EPOLLOUT while output is stuck) costs an epoll_ctl(MOD) system call each.
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
                struct epoll_event ev = {.events = EPOLLIN};

                if (fd < 0)
                        return;
                ev.data.ptr = iom_conn_new(fd);
                /* Registered once: from now on the kernel watches this socket for us. */
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
        int lfd, epfd, rc;

        lfd = iom_start(argc, argv, "iomodel-epoll-lt", "", true, &o, &wait_mask, &rc);
        if (lfd < 0)
                return rc;
        epfd = epoll_create1(EPOLL_CLOEXEC);
        if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev)) {
                perror("iomodel-epoll-lt: epoll");
                return 1;
        }
        while (!iom_stop) {
                /* Phase 1 for everyone; only ready sockets come back. */
                int nev = epoll_pwait(epfd, evs, MAX_EVENTS, -1, &wait_mask);

                if (nev < 0 && errno != EINTR) {
                        perror("iomodel-epoll-lt: epoll_wait");
                        return 1;
                }
                for (int i = 0; i < nev; i++) {
                        struct iom_conn *c = evs[i].data.ptr;
                        struct epoll_event ev;
                        bool was_writing;

                        if (!c) {
                                accept_all(epfd, lfd);
                                continue;
                        }
                        was_writing = c->want_write;
                        /* One read per report is enough: level-triggered asks again. */
                        if (iom_serve(c, 1) == IOM_CLOSED) {
                                iom_conn_free(c); /* close() also leaves the epoll set */
                                continue;
                        }
                        if (c->want_write != was_writing) {
                                /* Backpressure: wait for room to write, or for data again. */
                                ev.events = c->want_write ? EPOLLOUT : EPOLLIN;
                                ev.data.ptr = c;
                                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                        }
                }
        }
        iom_conn_free_all();
        close(epfd);
        close(lfd);
        return 0;
}
