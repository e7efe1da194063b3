/*
 * Fault injection for tests: the socket calls and allocations of the data
 * path go through the TERN__* macros below. In the library proper they
 * expand to the real call and nothing else. Built with TERN_FAULT defined
 * (only the test-only library variant tern_fault is), they go through
 * core/fault.c, which fails a call on demand according to a per-site plan:
 * an errno (EINTR, EAGAIN, ECONNRESET, EMFILE, ENOMEM, ...) or a short
 * transfer, on every Nth call, after K calls, or at random with a seed.
 *
 * Threads: tests arm and disarm plans from any thread while the server
 * runs; worker and acceptor threads consult them. See docs/architecture.md,
 * "Fault injection".
 */
#ifndef TERN_FAULT_INTERNAL_H
#define TERN_FAULT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#ifdef TERN_FAULT

enum tern__fault_site {
        TERN__FAULT_READ,    /* read() and readv() of connection input */
        TERN__FAULT_SEND,    /* send() of one buffer */
        TERN__FAULT_SENDMSG, /* sendmsg() of several buffers */
        TERN__FAULT_ACCEPT,  /* accept4() on a listener */
        TERN__FAULT_ALLOC,   /* malloc/calloc/realloc of tern's own objects */
        TERN__FAULT_NSITES,
};

/*
 * Which calls fail and how. A call is eligible when it is on @fd, or on any
 * fd when @fd is 0 or -1 (so a zeroed plan aims at everything; ALLOC has no
 * fd). Of the eligible calls since arming, the first
 * @after pass, then every @every-th fails (1 = each one); or, with
 * @prob_ppm set, each fails with that probability per million, drawn from
 * a PRNG seeded with @seed so a run can be repeated. @limit caps the
 * injections (0 = no cap). ALLOC plans fail only requests of at least
 * @min_size bytes (0 = any), so a test can aim at one connection's growing
 * buffer while small allocations elsewhere go on.
 *
 * EAGAIN makes sense at READ, SEND and SENDMSG only (see
 * tern__fault_edge_owed); at ACCEPT nothing re-arms the listener, so a fake
 * EAGAIN would leave the backlog waiting for the next client's edge.
 */
struct tern__fault_plan {
        int err;          /* errno to fail with; 0 = a short transfer */
        size_t short_len; /* err == 0: move at most this many bytes (>= 1) */
        int fd;           /* 0 or -1: any fd */
        uint32_t after;
        uint32_t every;
        uint32_t prob_ppm;
        uint64_t seed;
        uint32_t limit;
        size_t min_size;
};

/* Installs @plan (copied) for @site and zeroes its counters. [any] */
void tern__fault_arm(enum tern__fault_site site, const struct tern__fault_plan *plan);
/* No more faults at @site; its counters stay readable. [any] */
void tern__fault_disarm(enum tern__fault_site site);
void tern__fault_disarm_all(void);
/* Faults injected at @site since it was last armed. [any] */
uint64_t tern__fault_injected(enum tern__fault_site site);
/* Eligible calls seen at @site since it was last armed. [any] */
uint64_t tern__fault_calls(enum tern__fault_site site);

/*
 * An injected EAGAIN or short transfer leaves a socket ready that a real
 * one would not be: the kernel follows a real one with an edge when data
 * or space arrives, but the fake one already had them. True once after
 * such an injection on @fd by this thread; the caller then re-arms @fd in
 * epoll so the edge comes, as it would have. [the calling thread]
 */
bool tern__fault_edge_owed(int fd);

ssize_t tern__fault_read(int fd, void *buf, size_t len);
ssize_t tern__fault_readv(int fd, const struct iovec *iov, int cnt);
ssize_t tern__fault_send(int fd, const void *buf, size_t len, int flags);
ssize_t tern__fault_sendmsg(int fd, const struct msghdr *m, int flags);
int tern__fault_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
void *tern__fault_malloc(size_t n);
void *tern__fault_calloc(size_t n, size_t size);
void *tern__fault_realloc(void *p, size_t n);

#define TERN__READ(fd, buf, len)            tern__fault_read(fd, buf, len)
#define TERN__READV(fd, iov, cnt)           tern__fault_readv(fd, iov, cnt)
#define TERN__SEND(fd, buf, len, flags)     tern__fault_send(fd, buf, len, flags)
#define TERN__SENDMSG(fd, m, flags)         tern__fault_sendmsg(fd, m, flags)
#define TERN__ACCEPT4(fd, addr, len, flags) tern__fault_accept4(fd, addr, len, flags)
#define TERN__MALLOC(n)                     tern__fault_malloc(n)
#define TERN__CALLOC(n, size)               tern__fault_calloc(n, size)
#define TERN__REALLOC(p, n)                 tern__fault_realloc(p, n)
#define TERN__FAULT_EDGE_OWED(fd)           tern__fault_edge_owed(fd)

#else /* the library proper: the real calls, nothing else */

/* read() and send() are cancellation points in glibc; see net/conn.c. */
#define TERN__READ(fd, buf, len)            syscall(SYS_read, fd, buf, len)
#define TERN__READV(fd, iov, cnt)           readv(fd, iov, cnt)
#define TERN__SEND(fd, buf, len, flags)     syscall(SYS_sendto, fd, buf, len, flags, NULL, 0)
#define TERN__SENDMSG(fd, m, flags)         sendmsg(fd, m, flags)
#define TERN__ACCEPT4(fd, addr, len, flags) accept4(fd, addr, len, flags)
#define TERN__MALLOC(n)                     malloc(n)
#define TERN__CALLOC(n, size)               calloc(n, size)
#define TERN__REALLOC(p, n)                 realloc(p, n)
#define TERN__FAULT_EDGE_OWED(fd)           ((void)(fd), false)

#endif

#endif
