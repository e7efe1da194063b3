/*
 * --check: the health probe a container runs. It proves more than an open
 * port: the acceptor handed the connection to a worker and the worker
 * answered with the protocol's first line.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/cli.h"
#include "chat.h"

static int64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
        for (;;) {
                int64_t left = deadline - mono_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd pfd = {.fd = fd, .events = events};
                int r = poll(&pfd, 1, (int)left);
                if (r > 0)
                        return 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

static int connect_by(const struct addrinfo *ai, int64_t deadline)
{
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
                return -errno;
        int r = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                r = errno == EINPROGRESS ? wait_fd(fd, POLLOUT, deadline) : -errno;
                if (r == 0) {
                        int soerr = 0;
                        socklen_t len = sizeof(soerr);
                        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
                        r = -soerr;
                }
        }
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
}

/*
 * Connects to @target, sends @req (NULL: nothing), reads the first line and
 * checks that it starts with @want. @what names the check in messages.
 */
static int probe(const char *target, const char *req, const char *want, const char *what,
                 int timeout_ms, char *err, size_t errlen)
{
        char host[256], port[8];
        uint16_t portnum;
        if (app_split_hostport(target, "127.0.0.1", host, sizeof(host), &portnum) < 0 || !host[0]) {
                snprintf(err, errlen, "invalid --check '%s': expected [HOST:]PORT", target);
                return -EINVAL;
        }
        snprintf(port, sizeof(port), "%u", portnum);
        int64_t deadline = mono_ms() + timeout_ms;
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
        struct addrinfo *res;
        int g = getaddrinfo(host, port, &hints, &res);
        if (g) {
                snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(g));
                return -EHOSTUNREACH;
        }
        int fd = -ECONNREFUSED;
        for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
                fd = connect_by(ai, deadline);
        freeaddrinfo(res);
        if (fd < 0) {
                snprintf(err, errlen, "cannot connect to %s port %s: %s", host, port,
                         strerror(-fd));
                return fd;
        }

        int r = 0;
        if (req && send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
                r = -EPIPE;  /* a fresh socket takes a short request whole */
        char line[512] = ""; /* memchr(line, c, 0) reads none, but cppcheck cannot tell */
        size_t len = 0;
        while (r == 0 && !memchr(line, '\n', len)) {
                if (len == sizeof(line)) {
                        r = -EPROTO;
                        break;
                }
                r = wait_fd(fd, POLLIN, deadline);
                if (r)
                        break;
                ssize_t n = recv(fd, line + len, sizeof(line) - len, 0);
                if (n == 0) {
                        r = -ECONNRESET;
                        break;
                }
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        r = -errno;
                        break;
                }
                len += (size_t)n;
        }
        size_t wlen = strlen(want);
        if (r == 0 && (len < wlen || memcmp(line, want, wlen)))
                r = -EPROTO;
        if (r == 0 && !req) {
                /* Leave politely; a failure here says nothing about health. */
                ssize_t n = send(fd, "/quit\r\n", 7, MSG_NOSIGNAL);
                (void)n;
        } else if (r == -ETIMEDOUT) {
                snprintf(err, errlen, "%s port %s: no answer within %d ms", host, port, timeout_ms);
        } else if (r == -EPROTO && len >= 2 && line[0] == '!' && line[1] == ' ') {
                /* The server said why ("! server full"): pass it on. */
                size_t end = 2;
                while (end < len && line[end] != '\r' && line[end] != '\n' && end < 80)
                        end++;
                snprintf(err, errlen, "%s port %s: the server answered '%.*s'", host, port,
                         (int)end, line);
        } else if (r == -EPROTO) {
                size_t l = len;
                while (l && (line[l - 1] == '\n' || line[l - 1] == '\r'))
                        l--;
                char *nl = memchr(line, '\n', l);
                if (nl)
                        l = (size_t)(nl - line);
                while (l && line[l - 1] == '\r')
                        l--;
                snprintf(err, errlen, "%s port %s: %s, not '%s...': '%.*s'", host, port, what, want,
                         (int)(l < 80 ? l : 80), line);
        } else if (r) {
                snprintf(err, errlen, "%s port %s: %s", host, port, strerror(-r));
        }
        close(fd);
        return r;
}

int chat_check(const char *target, int timeout_ms, char *err, size_t errlen)
{
        return probe(target, NULL, "* welcome ", "the first line is not a chat welcome", timeout_ms,
                     err, errlen);
}

int chat_check_healthz(const char *target, int timeout_ms, char *err, size_t errlen)
{
        return probe(target,
                     "GET /healthz HTTP/1.1\r\nHost: tern-chat\r\nConnection: close\r\n\r\n",
                     "HTTP/1.1 200 ", "/healthz did not answer 200", timeout_ms, err, errlen);
}
