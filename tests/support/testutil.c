#include "testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tu_connect(uint16_t port, bool v6)
{
        int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int r;
        if (v6) {
                struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
                a.sin6_addr = in6addr_loopback;
                r = connect(fd, (struct sockaddr *)&a, sizeof(a));
        } else {
                struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                r = connect(fd, (struct sockaddr *)&a, sizeof(a));
        }
        if (r < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
}

int tu_write_all(int fd, const void *buf, size_t len)
{
        const uint8_t *p = buf;
        while (len) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int tu_read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
        uint8_t *p = buf;
        int64_t deadline = now_ms() + timeout_ms;
        while (len) {
                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                int r = poll(&pfd, 1, (int)left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return r == 0 ? -ETIMEDOUT : -errno;
                ssize_t n = recv(fd, p, len, 0);
                if (n == 0)
                        return -ENODATA;
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int tu_wait_eof(int fd, int timeout_ms)
{
        int64_t deadline = now_ms() + timeout_ms;
        for (;;) {
                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                int r = poll(&pfd, 1, (int)left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r == 0)
                        return -ETIMEDOUT;
                char c;
                ssize_t n = recv(fd, &c, 1, 0);
                if (n == 0 || (n < 0 && errno == ECONNRESET))
                        return 0;
                if (n > 0)
                        return -EPROTO;
                if (errno != EINTR && errno != EAGAIN)
                        return -errno;
        }
}

bool tu_wait_until(bool (*pred)(void *), void *arg, int timeout_ms)
{
        int64_t deadline = now_ms() + timeout_ms;
        do {
                if (pred(arg))
                        return true;
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
        } while (now_ms() < deadline);
        return pred(arg);
}

void tu_set_rst_on_close(int fd)
{
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

void tu_pattern(uint8_t *buf, size_t len, uint32_t seed, size_t offset)
{
        for (size_t i = 0; i < len; i++) {
                uint32_t x = seed ^ (uint32_t)(offset + i) * 2654435761u;
                buf[i] = (uint8_t)(x ^ (x >> 13));
        }
}

int tu_open_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        if (!d)
                return -errno;
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1; /* the DIR's own fd */
}

int tu_listen(uint16_t port, int backlog)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, backlog) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        return fd;
}

uint16_t tu_local_port(int fd)
{
        struct sockaddr_in a;
        socklen_t len = sizeof(a);
        if (getsockname(fd, (struct sockaddr *)&a, &len) < 0 || a.sin_family != AF_INET)
                return 0;
        return ntohs(a.sin_port);
}

uint16_t tu_unused_port(void)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        uint16_t port = 0;
        if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
                port = tu_local_port(fd);
        if (fd >= 0)
                close(fd);
        return port;
}

int64_t tu_now_ms(void)
{
        return now_ms();
}

bool tu_app_path(const char *name, char *path, size_t cap)
{
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
                return false;
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (!slash)
                return false;
        *slash = '\0';
        if ((size_t)snprintf(path, cap, "%s/../bin/%s", self, name) >= cap)
                return false;
        return access(path, X_OK) == 0;
}
