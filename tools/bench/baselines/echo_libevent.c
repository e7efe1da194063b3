/*
 * bench-echo-libevent: a single event_base echo server on libevent 2.1.
 *
 * Default: raw persistent read events and one shared 64 KiB buffer, which is
 * the fast idiomatic libevent shape (read, write back, and only on EAGAIN
 * queue the rest, swap the read event for a write event until it drains).
 * --bufferevent: the textbook bufferevent echo (evbuffer_add_buffer from input
 * to output), kept for comparison; it pays an ioctl(FIONREAD) per read and an
 * epoll_ctl pair per write-event toggle, so it is the slower of the two.
 *
 * Usage: bench-echo-libevent [--port P] [--bind ADDR] [--bufferevent]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF 65536

struct conn {
        evutil_socket_t fd;
        struct event *rev;
        struct event *wev; /* created on the first stall, then kept */
        size_t pend_off, pend_len;
        char *pend;
};

static char rbuf[READ_BUF];

static void conn_free(struct conn *c)
{
        event_free(c->rev);
        if (c->wev)
                event_free(c->wev);
        evutil_closesocket(c->fd);
        free(c->pend);
        free(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
        struct conn *c = arg;

        while (c->pend_off < c->pend_len) {
                ssize_t n = write(fd, c->pend + c->pend_off, c->pend_len - c->pend_off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return; /* the write event stays armed */
                        conn_free(c);
                        return;
                }
                c->pend_off += (size_t)n;
        }
        free(c->pend);
        c->pend = NULL;
        c->pend_off = c->pend_len = 0;
        event_del(c->wev);
        event_add(c->rev, NULL);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
        struct conn *c = arg;
        ssize_t n, w;

        n = read(fd, rbuf, sizeof(rbuf));
        if (n <= 0) {
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                conn_free(c);
                return;
        }
        w = write(fd, rbuf, (size_t)n);
        if (w < 0) {
                if (errno != EAGAIN && errno != EINTR) {
                        conn_free(c);
                        return;
                }
                w = 0;
        }
        if (w == n)
                return;
        c->pend = malloc((size_t)(n - w));
        if (!c->wev)
                c->wev =
                    event_new(event_get_base(c->rev), fd, EV_WRITE | EV_PERSIST, on_writable, c);
        if (!c->pend || !c->wev) {
                conn_free(c);
                return;
        }
        memcpy(c->pend, rbuf + w, (size_t)(n - w));
        c->pend_len = (size_t)(n - w);
        event_del(c->rev);
        event_add(c->wev, NULL);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
        struct event_base *base = evconnlistener_get_base(l);
        struct conn *c;
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(*c));
        if (!c) {
                evutil_closesocket(fd);
                return;
        }
        c->fd = fd;
        c->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, c);
        if (!c->rev || event_add(c->rev, NULL)) {
                if (c->rev)
                        event_free(c->rev);
                evutil_closesocket(fd);
                free(c);
        }
}

static void bev_on_read(struct bufferevent *bev, void *arg)
{
        evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void bev_on_event(struct bufferevent *bev, short what, void *arg)
{
        if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
                bufferevent_free(bev);
}

static void bev_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int socklen, void *arg)
{
        struct bufferevent *bev;
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
        if (!bev) {
                evutil_closesocket(fd);
                return;
        }
        bufferevent_set_max_single_read(bev, READ_BUF);
        bufferevent_setcb(bev, bev_on_read, NULL, bev_on_event, NULL);
        bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int main(int argc, char **argv)
{
        const char *port = "7000", *addr = "127.0.0.1";
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
        struct evconnlistener *l;
        struct event_base *base;
        struct addrinfo *res;
        int use_bev = 0, rc;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--port") && i + 1 < argc) {
                        port = argv[++i];
                } else if (!strcmp(argv[i], "--bind") && i + 1 < argc) {
                        addr = argv[++i];
                } else if (!strcmp(argv[i], "--bufferevent")) {
                        use_bev = 1;
                } else {
                        fprintf(stderr, "usage: %s [--port P] [--bind ADDR] [--bufferevent]\n",
                                argv[0]);
                        return 2;
                }
        }
        signal(SIGPIPE, SIG_IGN);
        rc = getaddrinfo(addr, port, &hints, &res);
        if (rc) {
                fprintf(stderr, "bench-echo-libevent: bad address %s:%s: %s\n", addr, port,
                        gai_strerror(rc));
                return 1;
        }
        base = event_base_new();
        if (!base) {
                fprintf(stderr, "bench-echo-libevent: event_base_new failed\n");
                return 1;
        }
        l = evconnlistener_new_bind(base, use_bev ? bev_on_accept : on_accept, NULL,
                                    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, SOMAXCONN,
                                    res->ai_addr, (int)res->ai_addrlen);
        freeaddrinfo(res);
        if (!l) {
                fprintf(stderr, "bench-echo-libevent: listen on %s:%s: %s\n", addr, port,
                        strerror(errno));
                return 1;
        }
        fprintf(stderr, "bench-echo-libevent: listening on %s:%s (%s, libevent %s, %s)\n", addr,
                port, use_bev ? "bufferevent" : "raw events", event_get_version(),
                event_base_get_method(base));
        event_base_dispatch(base);
        evconnlistener_free(l);
        event_base_free(base);
        return 0;
}
