/*
 * Operating-system helpers for tern-bench: file-descriptor limits, source
 * addresses, and reading another process's CPU time and resident memory from
 * /proc. Nothing here keeps state; every function may be called from any
 * thread unless it says otherwise.
 */
#ifndef TERN_BENCH_SYS_H
#define TERN_BENCH_SYS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Where the client connects to: a resolved address. */
struct bench_target {
        struct sockaddr_storage addr;
        socklen_t addrlen;
        bool loopback_v4; /* 127.0.0.0/8: source addresses can be spread */
};

/*
 * bench_resolve - parse @host (a numeric IPv4/IPv6 address or a name) and
 * @port into @t. Returns 0 or a negative getaddrinfo EAI_* code (glibc's are
 * negative; describe it with gai_strerror(rc)).
 */
int bench_resolve(struct bench_target *t, const char *host, unsigned port);

/*
 * bench_raise_nofile - raise the soft RLIMIT_NOFILE to the hard limit.
 * Stores the resulting soft and hard limits. Returns 0 or -errno.
 * Main thread, before other threads open files.
 */
int bench_raise_nofile(uint64_t *soft, uint64_t *hard);

/* Size of the kernel's ephemeral port range (ip_local_port_range), or 28232. */
unsigned bench_ephemeral_ports(void);

/*
 * bench_source_addr - the @idx-th loopback source address (127.0.0.(1+idx)),
 * port 0, for spreading connections beyond one address's ephemeral ports.
 * @idx must be below 254.
 */
struct sockaddr_in bench_source_addr(unsigned idx);

/*
 * bench_connect_start - create a non-blocking TCP socket and start
 * connecting it to @t, first binding it to @src when not NULL (with
 * IP_BIND_ADDRESS_NO_PORT, so the port is picked per destination at connect
 * time and the range is not exhausted early). The caller owns the returned
 * fd; the connect may still be in progress.
 * Returns the fd, or -errno (-EMFILE, -ENFILE, -EADDRNOTAVAIL, -ECONNREFUSED...).
 */
int bench_connect_start(const struct bench_target *t, const struct sockaddr_in *src);

/*
 * bench_explain_errno - a sentence for the user about why connecting failed
 * and what to do, for the errors that have a known remedy; NULL otherwise.
 * @host and @port name the target. Returns a static or thread-local string.
 */
const char *bench_explain_errno(int err, const char *host, unsigned port);

/*
 * bench_proc_cpu_ns - user + system CPU time of process @pid in nanoseconds
 * (all its threads). Returns 0 or -errno (-ENOENT when it has exited).
 */
int bench_proc_cpu_ns(pid_t pid, uint64_t *ns);

/* This process's user + system CPU time in nanoseconds (all threads). */
uint64_t bench_self_cpu_ns(void);

/*
 * bench_proc_rss - resident set size of @pid in bytes, from
 * /proc/PID/smaps_rollup (exact page-table walk) or, failing that, VmRSS in
 * /proc/PID/status. Returns 0 or -errno.
 */
int bench_proc_rss(pid_t pid, uint64_t *bytes);

#endif
