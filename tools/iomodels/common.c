/*
 * Shared plumbing of the I/O-model echo servers (see common.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

volatile sig_atomic_t iom_stop;

static char rbuf[IOM_READ_BUF];
static struct iom_conn *all_conns;

static void usage(FILE *f, const char *name, const char *extra)
{
        fprintf(f, "usage: %s [--port P] [--bind ADDR]%s%s\n", name,
                strstr(extra, "naive") ? " [--naive]" : "",
                strstr(extra, "sigpending") ? " [--sigpending N]" : "");
        fprintf(f, "  --port P   TCP port, 0 = any free one (default 7000); the port bound\n"
                   "             is printed on stdout as \"port N\"\n"
                   "  --bind A   numeric IPv4 address (default 127.0.0.1)\n");
        if (strstr(extra, "naive"))
                fprintf(f, "  --naive    read once per notification: the classic "
                           "edge-triggered bug\n");
        if (strstr(extra, "sigpending"))
                fprintf(f, "  --sigpending N  lower RLIMIT_SIGPENDING to N to force the "
                           "realtime\n             signal queue to overflow\n");
}

static bool parse_long(const char *s, long min, long max, long *out)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max)
                return false;
        *out = v;
        return true;
}

int iom_parse(int argc, char **argv, const char *name, const char *extra, struct iom_opts *o)
{
        long v;

        memset(o, 0, sizeof(*o));
        o->name = name;
        o->port = 7000;
        o->bind = "127.0.0.1";
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];

                if (!strcmp(a, "--port") && i + 1 < argc && parse_long(argv[i + 1], 0, 65535, &v)) {
                        o->port = (unsigned)v;
                        i++;
                } else if (!strcmp(a, "--bind") && i + 1 < argc) {
                        o->bind = argv[++i];
                } else if (!strcmp(a, "--naive") && strstr(extra, "naive")) {
                        o->naive = true;
                } else if (!strcmp(a, "--sigpending") && strstr(extra, "sigpending") &&
                           i + 1 < argc && parse_long(argv[i + 1], 1, 1L << 30, &v)) {
                        o->sigpending = v;
                        i++;
                } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        usage(stdout, name, extra);
                        return -1;
                } else {
                        fprintf(stderr, "%s: bad argument '%s'\n", name, a);
                        usage(stderr, name, extra);
                        return 2;
                }
        }
        return 0;
}

int iom_listen(const struct iom_opts *o, bool nonblock)
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
        socklen_t len = sizeof(sa);
        struct rlimit rl;
        int fd, one = 1;

        /* 10,000 connections need more than the usual soft limit of 1,024. */
        if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (inet_pton(AF_INET, o->bind, &sa.sin_addr) != 1) {
                fprintf(stderr, "%s: --bind wants a numeric IPv4 address, not '%s'\n", o->name,
                        o->bind);
                return -1;
        }
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, SOMAXCONN) ||
            getsockname(fd, (struct sockaddr *)&sa, &len)) {
                fprintf(stderr, "%s: listen on %s:%u: %s\n", o->name, o->bind, o->port,
                        strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        printf("port %u\n", ntohs(sa.sin_port));
        fflush(stdout);
        return fd;
}

static void on_stop(int sig)
{
        iom_stop = 1;
}

void iom_stop_signals(sigset_t *wait_mask)
{
        struct sigaction sa = {.sa_handler = on_stop};
        sigset_t stop;

        /* No SA_RESTART: the waiting call must return EINTR so the loop sees iom_stop. */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigprocmask(SIG_BLOCK, &stop, wait_mask);
        sigdelset(wait_mask, SIGTERM);
        sigdelset(wait_mask, SIGINT);
}

int iom_start(int argc, char **argv, const char *name, const char *extra, bool nonblock,
              struct iom_opts *o, sigset_t *wait_mask, int *status)
{
        int rc = iom_parse(argc, argv, name, extra, o), lfd;

        if (rc) {
                *status = rc < 0 ? 0 : rc;
                return -1;
        }
        iom_stop_signals(wait_mask);
        lfd = iom_listen(o, nonblock);
        *status = 1;
        return lfd;
}

void iom_nodelay(int fd)
{
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct iom_conn *iom_conn_new(int fd)
{
        struct iom_conn *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        iom_nodelay(fd);
        c->fd = fd;
        c->next = all_conns;
        if (all_conns)
                all_conns->prev = c;
        all_conns = c;
        return c;
}

void iom_conn_free(struct iom_conn *c)
{
        if (c->prev)
                c->prev->next = c->next;
        else
                all_conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        close(c->fd);
        free(c->pend);
        free(c);
}

void iom_conn_free_all(void)
{
        while (all_conns) {
                all_conns->prev = NULL; /* true of the head; tells the analyser so */
                iom_conn_free(all_conns);
        }
}

/* Writes out c->pend. Returns 1 when all went, 0 when the socket is full, -1 on error. */
static int flush_pending(struct iom_conn *c)
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

enum iom_serve iom_serve(struct iom_conn *c, unsigned max_reads)
{
        if (c->pend) {
                int rc = flush_pending(c);

                if (rc < 0)
                        return IOM_CLOSED;
                c->want_write = rc == 0;
                if (rc == 0)
                        return IOM_BLOCKED; /* backpressure: read nothing more for now */
        }
        for (unsigned i = 0; max_reads == 0 || i < max_reads; i++) {
                ssize_t n = read(c->fd, rbuf, sizeof(rbuf)), w;

                if (n == 0)
                        return IOM_CLOSED;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? IOM_DRAINED : IOM_CLOSED;
                }
                do
                        w = write(c->fd, rbuf, (size_t)n);
                while (w < 0 && errno == EINTR);
                if (w < 0 && errno != EAGAIN)
                        return IOM_CLOSED;
                if (w < 0)
                        w = 0;
                if (w < n) {
                        c->pend = malloc((size_t)(n - w));
                        if (!c->pend)
                                return IOM_CLOSED;
                        memcpy(c->pend, rbuf + w, (size_t)(n - w));
                        c->pend_off = 0;
                        c->pend_len = (uint32_t)(n - w);
                        c->want_write = true;
                        return IOM_BLOCKED;
                }
        }
        return IOM_BUDGET;
}
