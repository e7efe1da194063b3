/*
 * Model 8: asynchronous I/O, the Proactor, with io_uring.
 *
 * Every model so far is a Reactor: the kernel reports readiness and the
 * program then performs the I/O itself (read() does phase 2, the copy).
 * A Proactor hands the whole operation to the kernel: "receive into this
 * buffer", and later collects the completion: "n bytes are in your buffer".
 * Neither phase runs in a call the program makes and waits on.
 *
 * io_uring does this with two rings shared with the kernel: the program
 * writes submission entries (accept, recv, send...) into one and reads
 * completion entries from the other; one io_uring_enter() both submits a
 * batch and waits for completions, and while completions are already
 * there, collecting them costs no system call at all. (For a socket with no
 * data yet, the kernel arms an internal poll and performs the copy when data
 * arrives, on the submitting thread's way back to user space: the copy is
 * still paid on this core, only no longer orchestrated by the program.)
 *
 * What it costs: a receive must name its buffer when it is submitted, long
 * before data arrives, so every idle connection pins a buffer (16 KiB here);
 * a Reactor reads only when data is there and can share one buffer among all
 * connections. io_uring's provided-buffer rings (the kernel picks a buffer
 * from a pool at completion time) remove that cost; they are left out here
 * to keep the model plain. Also, io_uring may be switched off
 * (sysctl kernel.io_uring_disabled, seccomp in containers): then this
 * server says so on stdout ("unsupported: ...") and exits with status 77.
 *
 * One operation is in flight per connection at a time: a recv, or the send
 * of what that recv brought, so a buffer is never read and written at once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define RING_ENTRIES 4096

enum op { OP_ACCEPT, OP_RECV, OP_SEND }; /* in the low bits of user_data */

struct uconn {
        int fd;
        uint32_t off, len;         /* buf[off, len): received, not yet sent back */
        struct uconn *prev, *next; /* every live connection, freed at exit */
        char buf[IOM_READ_BUF];    /* the receive buffer, pinned while a recv waits */
} __attribute__((aligned(8)));

static struct io_uring ring;
static struct uconn *live;

static struct io_uring_sqe *get_sqe(void)
{
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

        while (!sqe) { /* submission ring full: hand the batch to the kernel first */
                io_uring_submit(&ring);
                sqe = io_uring_get_sqe(&ring);
        }
        return sqe;
}

static void submit_accept(int lfd)
{
        struct io_uring_sqe *sqe = get_sqe();

        io_uring_prep_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, OP_ACCEPT);
}

/* "Receive into this buffer, and tell me when done": both phases to the kernel. */
static void submit_recv(struct uconn *c)
{
        struct io_uring_sqe *sqe = get_sqe();

        io_uring_prep_recv(sqe, c->fd, c->buf, sizeof(c->buf), 0);
        io_uring_sqe_set_data64(sqe, (uintptr_t)c | OP_RECV);
}

static void submit_send(struct uconn *c)
{
        struct io_uring_sqe *sqe = get_sqe();

        io_uring_prep_send(sqe, c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, (uintptr_t)c | OP_SEND);
}

static void conn_free(struct uconn *c)
{
        if (c->prev)
                c->prev->next = c->next;
        else
                live = c->next;
        if (c->next)
                c->next->prev = c->prev;
        close(c->fd); /* nothing of ours is in flight on it: one op at a time */
        free(c);
}

static void on_completion(int lfd, uint64_t data, int res)
{
        struct uconn *c = (struct uconn *)(uintptr_t)(data & ~(uint64_t)3);

        switch ((enum op)(data & 3)) {
        case OP_ACCEPT:
                submit_accept(lfd); /* keep one accept in flight */
                if (res < 0)
                        return;
                c = calloc(1, sizeof(*c));
                if (!c) {
                        close(res);
                        return;
                }
                c->fd = res;
                iom_nodelay(res);
                c->next = live;
                if (live)
                        live->prev = c;
                live = c;
                submit_recv(c);
                return;
        case OP_RECV:
                if (res <= 0) { /* EOF or error */
                        conn_free(c);
                        return;
                }
                /* The data is already in c->buf: the kernel did both phases. */
                c->off = 0;
                c->len = (uint32_t)res;
                submit_send(c);
                return;
        case OP_SEND:
                if (res < 0) {
                        conn_free(c);
                        return;
                }
                c->off += (uint32_t)res;
                if (c->off < c->len)
                        submit_send(c); /* short send: the rest */
                else
                        submit_recv(c);
                return;
        }
}

int main(int argc, char **argv)
{
        struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE, .cq_entries = 4 * RING_ENTRIES};
        struct iom_opts o;
        sigset_t wait_mask;
        int lfd, rc;

        rc = iom_parse(argc, argv, "iomodel-uring", "", &o);
        if (rc)
                return rc < 0 ? 0 : rc;
        iom_stop_signals(&wait_mask);
        rc = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
        if (rc < 0) {
                printf("unsupported: io_uring_queue_init: %s%s\n", strerror(-rc),
                       rc == -EPERM || rc == -ENOSYS
                           ? " (io_uring disabled: see sysctl kernel.io_uring_disabled)"
                           : "");
                fflush(stdout);
                return 77;
        }
        lfd = iom_listen(&o, false);
        if (lfd < 0)
                return 1;
        submit_accept(lfd);
        while (!iom_stop) {
                struct io_uring_cqe *cqe;
                unsigned head, seen = 0;

                /* Submit the batch and wait for at least one completion: one system call. */
                rc = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, NULL, &wait_mask);
                if (rc < 0 && rc != -EINTR && rc != -ETIME) {
                        fprintf(stderr, "iomodel-uring: io_uring_enter: %s\n", strerror(-rc));
                        return 1;
                }
                /* Collect every completion already posted: no system call per event. */
                io_uring_for_each_cqe(&ring, head, cqe)
                {
                        on_completion(lfd, io_uring_cqe_get_data64(cqe), cqe->res);
                        seen++;
                }
                io_uring_cq_advance(&ring, seen);
        }
        /* Tear the ring down first: that cancels the recvs still aimed at our buffers. */
        io_uring_queue_exit(&ring);
        while (live) {
                live->prev = NULL; /* true of the head; tells the analyser so */
                conn_free(live);
        }
        close(lfd);
        return 0;
}
