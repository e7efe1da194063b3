/*
 * OS helpers for tern-bench; see bench_sys.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench_sys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int bench_resolve(struct bench_target *t, const char *host, unsigned port)
{
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res;
        char portstr[16];
        int rc;

        snprintf(portstr, sizeof(portstr), "%u", port);
        rc = getaddrinfo(host, portstr, &hints, &res);
        if (rc)
                return rc; /* glibc's EAI_* codes are negative */
        memset(t, 0, sizeof(*t));
        memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
        t->addrlen = res->ai_addrlen;
        if (res->ai_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)res->ai_addr;
                t->loopback_v4 = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
        }
        freeaddrinfo(res);
        return 0;
}

int bench_raise_nofile(uint64_t *soft, uint64_t *hard)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl))
                return -errno;
        if (rl.rlim_cur < rl.rlim_max) {
                struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
                /* An unlimited hard limit is refused above fs.nr_open; keep what we have. */
                if (!setrlimit(RLIMIT_NOFILE, &want))
                        rl = want;
        }
        *soft = rl.rlim_cur;
        *hard = rl.rlim_max;
        return 0;
}

unsigned bench_ephemeral_ports(void)
{
        FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
        unsigned lo, hi;
        int n;

        if (!f)
                return 28232;
        /* The kernel's fixed format; the count check catches a failed conversion. */
        n = fscanf(f, "%u %u", &lo, &hi); /* NOLINT(cert-err34-c) */
        fclose(f);
        return n == 2 && hi > lo ? hi - lo + 1 : 28232;
}

struct sockaddr_in bench_source_addr(unsigned idx)
{
        struct sockaddr_in sin = {.sin_family = AF_INET};

        sin.sin_addr.s_addr = htonl((127u << 24) | (1u + idx));
        return sin;
}

int bench_connect_start(const struct bench_target *t, const struct sockaddr_in *src)
{
        int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1, err;

        if (fd < 0)
                return -errno;
        if (src) {
                setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
                if (bind(fd, (const struct sockaddr *)src, sizeof(*src)))
                        goto out_close;
        }
        if (connect(fd, (const struct sockaddr *)&t->addr, t->addrlen) && errno != EINPROGRESS)
                goto out_close;
        return fd;

out_close:
        err = errno;
        close(fd);
        return -err;
}

const char *bench_explain_errno(int err, const char *host, unsigned port)
{
        static __thread char msg[512];

        switch (err) {
        case -ECONNREFUSED:
                snprintf(msg, sizeof(msg),
                         "connection refused by %s:%u: is a server listening there?", host, port);
                return msg;
        case -EMFILE:
        case -ENFILE: {
                struct rlimit rl = {0};
                getrlimit(RLIMIT_NOFILE, &rl);
                snprintf(msg, sizeof(msg),
                         "out of file descriptors (%s; this process may open %llu, hard limit "
                         "%llu): lower -c, or raise the limit, e.g. `ulimit -n %llu` in the "
                         "shell (as root `ulimit -Hn` can go higher; systemd: LimitNOFILE=; "
                         "system-wide: sysctl fs.file-max)",
                         err == -EMFILE ? "per-process limit" : "system-wide limit",
                         (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                         (unsigned long long)rl.rlim_max);
                return msg;
        }
        case -EADDRNOTAVAIL:
        case -EADDRINUSE:
                snprintf(msg, sizeof(msg),
                         "out of local ports toward %s:%u (%u in "
                         "net.ipv4.ip_local_port_range, TIME_WAIT holds closed ones for 60 s): "
                         "spread over more source addresses with --src-addrs N (loopback "
                         "targets only), lower -c, or wait for TIME_WAIT to drain",
                         host, port, bench_ephemeral_ports());
                return msg;
        case -ETIMEDOUT:
                snprintf(msg, sizeof(msg),
                         "connecting to %s:%u timed out: the server's accept queue may be "
                         "full, or a firewall drops the SYNs",
                         host, port);
                return msg;
        case -ENETUNREACH:
        case -EHOSTUNREACH:
                snprintf(msg, sizeof(msg), "%s is unreachable", host);
                return msg;
        default:
                return NULL;
        }
}

/* Reads a small /proc file into @buf (NUL-terminated). Returns length or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n, len = 0;

        if (fd < 0)
                return -errno;
        while (len < (ssize_t)size - 1) {
                n = read(fd, buf + len, size - 1 - (size_t)len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        n = -errno;
                        close(fd);
                        return n;
                }
                if (n == 0)
                        break;
                len += n;
        }
        close(fd);
        buf[len] = '\0';
        return len;
}

int bench_proc_cpu_ns(pid_t pid, uint64_t *ns)
{
        char path[64], buf[1024], *p;
        unsigned long long ut, st;
        ssize_t n;
        long hz = sysconf(_SC_CLK_TCK);

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        n = read_small(path, buf, sizeof(buf));
        if (n < 0)
                return (int)n;
        /* comm may hold spaces and parentheses: fields resume after the last ')'. */
        p = strrchr(buf, ')');
        if (!p || hz <= 0)
                return -EINVAL;
        /* After ')': state(3) ... utime is field 14, stime 15. */
        /* NOLINTNEXTLINE(cert-err34-c): kernel format, count checked */
        if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return -EINVAL;
        *ns = (ut + st) * (1000000000ull / (unsigned long long)hz);
        return 0;
}

uint64_t bench_self_cpu_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Finds "@key <n> kB" in @buf. */
static int find_kb(const char *buf, const char *key, uint64_t *bytes)
{
        const char *p = strstr(buf, key);
        unsigned long long kb;

        /* NOLINTNEXTLINE(cert-err34-c): kernel format, count checked */
        if (!p || sscanf(p + strlen(key), " %llu kB", &kb) != 1)
                return -ENOENT;
        *bytes = kb * 1024;
        return 0;
}

int bench_proc_rss(pid_t pid, uint64_t *bytes)
{
        char path[64], buf[4096];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
        n = read_small(path, buf, sizeof(buf));
        if (n > 0 && !find_kb(buf, "\nRss:", bytes))
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        n = read_small(path, buf, sizeof(buf));
        if (n < 0)
                return (int)n;
        return find_kb(buf, "\nVmRSS:", bytes);
}
