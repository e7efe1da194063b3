/*
 * Model 7: signal-driven I/O (O_ASYNC, F_SETSIG with a realtime signal).
 *
 * Instead of asking which sockets are ready, the process asks the kernel to
 * tell it: fcntl(F_SETOWN) names the process, O_ASYNC turns notification on,
 * and when a socket's state changes the kernel sends a signal. Phase 1
 * (waiting) becomes waiting for a signal; read() still does phase 2.
 *
 * Plain SIGIO says only "something somewhere is ready": it is not queued
 * (many events merge into one) and carries no descriptor, so the program
 * must scan everything, which is model 2 with naps. F_SETSIG replaces it
 * with a realtime signal, and realtime signals are queued one per event,
 * each with a siginfo naming the descriptor (si_fd) and what happened
 * (si_band: POLL_IN, POLL_OUT...). Here the stop signals and the I/O signals
 * are all blocked and taken synchronously with sigwaitinfo(), so no handler
 * runs at an awkward moment.
 *
 * Where it breaks down:
 *   - One system call per event: sigwaitinfo returns one siginfo at a time,
 *     where epoll_wait returns a batch.
 *   - Notifications are edges (like EPOLLET): each must be drained until
 *     EAGAIN; and a queued signal may name a descriptor that was closed since,
 *     or closed and reused by a new connection: harmless here only because
 *     every action is a non-blocking attempt.
 *   - The queue is bounded (RLIMIT_SIGPENDING, counted per user over all of
 *     that user's processes). When it is full the kernel falls back to plain
 *     SIGIO, which names nothing: the program has lost track of which sockets
 *     are ready and must scan all of them. This server does exactly that
 *     (--sigpending N lowers the limit to show it).
 *   - O_ASYNC is per open file and the owner is per file too: one process
 *     (or, with F_SETOWN_EX, one thread) per socket. Few programs use it
 *     for sockets; epoll replaced it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

static struct iom_conn **by_fd; /* conns by descriptor: a signal names an fd */
static size_t nfds;
static int sig_io;              /* the realtime signal chosen for I/O events */
static unsigned long overflows; /* times the queue overflowed to plain SIGIO */

/* Ask for a queued realtime signal naming @fd on every change of its state. */
static int arm(int fd)
{
        if (fcntl(fd, F_SETOWN, getpid()) || fcntl(fd, F_SETSIG, sig_io) ||
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK | O_ASYNC))
                return -1;
        return 0;
}

/* Serves @fd if it is still one of ours: drain until EAGAIN (signals are edges). */
static void serve_fd(int fd)
{
        struct iom_conn *c = (fd >= 0 && (size_t)fd < nfds) ? by_fd[fd] : NULL;

        if (c && iom_serve(c, 0) == IOM_CLOSED) {
                by_fd[fd] = NULL;
                iom_conn_free(c);
        }
}

static void accept_all(int lfd)
{
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                struct iom_conn *c;

                if (fd < 0)
                        return;
                c = (size_t)fd < nfds ? iom_conn_new(fd) : NULL;
                if (!c || arm(fd)) {
                        if (c)
                                iom_conn_free(c);
                        else
                                close(fd);
                        continue;
                }
                by_fd[fd] = c;
                /* Data may have arrived before O_ASYNC was set: that edge is gone. */
                serve_fd(fd);
        }
}

int main(int argc, char **argv)
{
        struct iom_opts o;
        sigset_t wait_mask, waitset;
        struct rlimit rl;
        int lfd, rc;

        lfd = iom_start(argc, argv, "iomodel-sigio", "sigpending", true, &o, &wait_mask, &rc);
        if (lfd < 0)
                return rc;
        sig_io = SIGRTMIN + 1;
        /* Everything this loop waits for is blocked and fetched by sigwaitinfo. */
        sigemptyset(&waitset);
        sigaddset(&waitset, sig_io);
        sigaddset(&waitset, SIGIO);
        sigaddset(&waitset, SIGTERM);
        sigaddset(&waitset, SIGINT);
        sigprocmask(SIG_BLOCK, &waitset, NULL);
        if (o.sigpending) {
                rl.rlim_cur = rl.rlim_max = (rlim_t)o.sigpending;
                setrlimit(RLIMIT_SIGPENDING, &rl);
        }
        getrlimit(RLIMIT_NOFILE, &rl);
        nfds = rl.rlim_cur;
        by_fd = calloc(nfds, sizeof(*by_fd));
        if (!by_fd || arm(lfd)) {
                perror("iomodel-sigio: set-up");
                return 1;
        }
        accept_all(lfd);
        while (!iom_stop) {
                siginfo_t si;
                int sig = sigwaitinfo(&waitset, &si); /* phase 1: one event per call */

                if (sig < 0)
                        continue; /* EINTR */
                if (sig == SIGTERM || sig == SIGINT) {
                        iom_stop = 1;
                } else if (sig == sig_io) {
                        if (si.si_fd == lfd)
                                accept_all(lfd);
                        else
                                serve_fd(si.si_fd);
                } else if (sig == SIGIO) {
                        /* The queue overflowed: events were lost. Scan everything. */
                        if (!overflows++)
                                fprintf(stderr, "iomodel-sigio: realtime signal queue "
                                                "overflowed; falling back to full scans\n");
                        accept_all(lfd);
                        for (size_t fd = 0; fd < nfds; fd++)
                                serve_fd((int)fd);
                }
        }
        iom_conn_free_all();
        free(by_fd);
        close(lfd);
        return 0;
}
