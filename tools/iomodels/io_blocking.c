/*
 * Model 1: blocking I/O, one thread per connection.
 *
 * Every read has two phases: (1) waiting until data is there, (2) copying it
 * from the kernel's socket buffer into ours. A blocking read() blocks through
 * both; so does accept() until a client arrives, and write() until the send
 * buffer has room. The code is as plain as network code gets: each thread
 * serves one client from top to bottom.
 *
 * What it costs: a thread per connection, all of them asleep in read() for an
 * idle client. Each has a kernel stack and task struct (~20 KiB of kernel
 * memory, not counted in the process's RSS), a user stack whose touched
 * pages are its RSS (here: the 16 KiB read buffer on it), and a slot in the
 * scheduler: every message costs a wake-up and a context switch. At 10,000
 * connections that is 10,000 threads; it still works on a 24 GiB machine,
 * but the scheduler, not the program, decides who runs next.
 *
 * The acceptor runs on its own thread; the main thread only waits for
 * SIGTERM/SIGINT with sigwait() and exits, which ends every thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

static void *serve_client(void *arg)
{
        int fd = (int)(intptr_t)arg;
        char buf[IOM_READ_BUF]; /* on this thread's stack: part of the per-thread cost */

        for (;;) {
                /* Blocks in phase 1 (no data yet) and phase 2 (the copy). */
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n <= 0) {
                        if (n < 0 && errno == EINTR)
                                continue;
                        break; /* EOF or error */
                }
                for (ssize_t off = 0; off < n;) {
                        /* Blocks while the peer's window and our send buffer are full. */
                        ssize_t w = write(fd, buf + off, (size_t)(n - off));

                        if (w < 0) {
                                if (errno == EINTR)
                                        continue;
                                goto out;
                        }
                        off += w;
                }
        }
out:
        close(fd);
        return NULL;
}

static void *acceptor(void *arg)
{
        int lfd = (int)(intptr_t)arg;
        pthread_attr_t attr;

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        for (;;) {
                pthread_t t;
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC); /* blocks */

                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE)
                                usleep(10000); /* out of fds: let clients leave first */
                        continue;
                }
                iom_nodelay(fd);
                /* Default attributes: an 8 MiB stack reservation, touched only as used. */
                if (pthread_create(&t, &attr, serve_client, (void *)(intptr_t)fd)) {
                        fprintf(stderr, "iomodel-blocking: pthread_create: out of threads\n");
                        close(fd);
                }
        }
        return NULL;
}

int main(int argc, char **argv)
{
        struct iom_opts o;
        sigset_t wait_mask, stop;
        pthread_t t;
        int lfd, rc, sig;

        /* Blocks the stop signals in every thread to come (they inherit the mask)... */
        lfd = iom_start(argc, argv, "iomodel-blocking", "", false, &o, &wait_mask, &rc);
        if (lfd < 0)
                return rc;
        if (pthread_create(&t, NULL, acceptor, (void *)(intptr_t)lfd)) {
                fprintf(stderr, "iomodel-blocking: cannot start the acceptor\n");
                return 1;
        }
        /* ...and take them here, synchronously. */
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigwait(&stop, &sig);
        return 0; /* exit() ends the acceptor and every client thread */
}
