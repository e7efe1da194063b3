/*
 * bench-echo-epoll: the hand-written reference echo server.
 *
 * One thread, one edge-triggered epoll set, one 64 KiB read buffer shared by
 * every connection. Each socket is registered once for EPOLLIN | EPOLLOUT |
 * EPOLLET and never modified again: for TCP an EPOLLOUT edge only fires after
 * a write ran out of send-buffer space, so keeping it armed costs no extra
 * wake-ups and saves an epoll_ctl per stall. A read shorter than the buffer
 * means the socket is drained (new data would raise a fresh edge), so the
 * loop skips the read that would only return EAGAIN, as libuv does.
 * Leftover output after EAGAIN goes to a per-connection heap block and reading
 * pauses until it is flushed, so memory per connection stays bounded by one
 * read. An idle connection costs one small struct.
 *
 * Usage: bench-echo-epoll [--port P] [--bind ADDR]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF   65536
#define MAX_EVENTS 256

struct conn {
        int fd;
        uint32_t pend_off; /* first unsent byte of pend */
        uint32_t pend_len;
        char *pend; /* NULL unless a write stalled */
};

static char rbuf[READ_BUF];

static int listen_on(const char *addr, const char *port)
{
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
        struct addrinfo *res;
        int fd, one = 1, rc;

        rc = getaddrinfo(addr, port, &hints, &res);
        if (rc) {
                fprintf(stderr, "bench-echo-epoll: bad address %s:%s: %s\n", addr, port,
                        gai_strerror(rc));
                return -1;
        }
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
            bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, SOMAXCONN)) {
                fprintf(stderr, "bench-echo-epoll: listen on %s:%s: %s\n", addr, port,
                        strerror(errno));
                freeaddrinfo(res);
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        freeaddrinfo(res);
        return fd;
}

static void conn_close(struct conn *c)
{
        close(c->fd); /* also leaves the epoll set: the fd is not shared */
        free(c->pend);
        free(c);
}

/* Sends queued output. Returns 1 when drained, 0 when still stalled, -1 on error. */
static int conn_flush(struct conn *c)
{
        while (c->pend_off < c->pend_len) {
                ssize_t n = write(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -1;
                }
                c->pend_off += (uint32_t)n;
        }
        free(c->pend);
        c->pend = NULL;
        c->pend_off = c->pend_len = 0;
        return 1;
}

/* Returns false when the connection must be closed. */
static bool conn_event(struct conn *c, uint32_t events)
{
        if (events & EPOLLERR)
                return false;
        if (c->pend) {
                int rc = conn_flush(c);
                if (rc <= 0)
                        return rc == 0;
        }
        for (;;) {
                ssize_t n = read(c->fd, rbuf, sizeof(rbuf)), w;

                if (n <= 0) {
                        if (n < 0 && errno == EINTR)
                                continue;
                        return n < 0 && errno == EAGAIN;
                }
                w = write(c->fd, rbuf, (size_t)n);
                if (w < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                return false;
                        w = 0;
                }
                if (w < n) {
                        /* Stalled: keep the rest and stop reading until EPOLLOUT. */
                        c->pend = malloc((size_t)(n - w));
                        if (!c->pend)
                                return false;
                        memcpy(c->pend, rbuf + w, (size_t)(n - w));
                        c->pend_len = (uint32_t)(n - w);
                        return true;
                }
                if (n < (ssize_t)sizeof(rbuf))
                        return true; /* drained; the next arrival raises a new edge */
        }
}

static void accept_all(int epfd, int lfd)
{
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
                struct epoll_event ev;
                struct conn *c;

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN)
                                perror("bench-echo-epoll: accept4");
                        return;
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                c = calloc(1, sizeof(*c));
                if (!c) {
                        close(fd);
                        continue;
                }
                c->fd = fd;
                ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
                ev.data.ptr = c;
                if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)) {
                        conn_close(c);
                        continue;
                }
        }
}

int main(int argc, char **argv)
{
        const char *port = "7000", *addr = "127.0.0.1";
        struct epoll_event evs[MAX_EVENTS], lev = {.events = EPOLLIN};
        int lfd, epfd;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--port") && i + 1 < argc) {
                        port = argv[++i];
                } else if (!strcmp(argv[i], "--bind") && i + 1 < argc) {
                        addr = argv[++i];
                } else {
                        fprintf(stderr, "usage: %s [--port P] [--bind ADDR]\n", argv[0]);
                        return 2;
                }
        }
        signal(SIGPIPE, SIG_IGN);
        lfd = listen_on(addr, port);
        if (lfd < 0)
                return 1;
        epfd = epoll_create1(EPOLL_CLOEXEC);
        /* data.ptr == NULL marks the listener. Level-triggered: no accept is lost. */
        lev.data.ptr = NULL;
        if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev)) {
                perror("bench-echo-epoll: epoll");
                return 1;
        }
        fprintf(stderr, "bench-echo-epoll: listening on %s:%s\n", addr, port);
        for (;;) {
                int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("bench-echo-epoll: epoll_wait");
                        return 1;
                }
                for (int i = 0; i < n; i++) {
                        struct conn *c = evs[i].data.ptr;

                        if (!c)
                                accept_all(epfd, lfd);
                        else if (!conn_event(c, evs[i].events))
                                conn_close(c);
                }
        }
}
