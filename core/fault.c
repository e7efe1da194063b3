/*
 * Fault injection (test-only library variant; see fault_internal.h).
 *
 * One mutex guards every plan: arming is rare, and in a test build a lock
 * per wrapped call costs nothing that matters, while it keeps a plan's
 * fields consistent and ThreadSanitizer-clean. Unarmed sites skip the lock
 * through one atomic load of a bit mask.
 */
#ifndef TERN_FAULT
#error "core/fault.c belongs to the tern_fault test library only (TERN_FAULT)"
#endif

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "fault_internal.h"

struct fault_site {
        struct tern__fault_plan plan;
        uint64_t rng;
        uint64_t calls;    /* atomic loads outside the lock */
        uint64_t injected; /* atomic loads outside the lock */
};

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fault_site sites[TERN__FAULT_NSITES];
static unsigned armed_mask;
static __thread int edge_owed_fd = -1;

void tern__fault_arm(enum tern__fault_site site, const struct tern__fault_plan *plan)
{
        pthread_mutex_lock(&fault_mu);
        struct fault_site *s = &sites[site];
        s->plan = *plan;
        if (!s->plan.every)
                s->plan.every = 1;
        if (site != TERN__FAULT_ALLOC && !s->plan.err && !s->plan.short_len)
                s->plan.short_len = 1;
        s->rng = plan->seed ? plan->seed : 0x9e3779b97f4a7c15ull;
        __atomic_store_n(&s->calls, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->injected, 0, __ATOMIC_RELAXED);
        __atomic_fetch_or(&armed_mask, 1u << site, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&fault_mu);
}

void tern__fault_disarm(enum tern__fault_site site)
{
        pthread_mutex_lock(&fault_mu);
        __atomic_fetch_and(&armed_mask, ~(1u << site), __ATOMIC_RELEASE);
        pthread_mutex_unlock(&fault_mu);
}

void tern__fault_disarm_all(void)
{
        for (int i = 0; i < TERN__FAULT_NSITES; i++)
                tern__fault_disarm((enum tern__fault_site)i);
}

uint64_t tern__fault_injected(enum tern__fault_site site)
{
        return __atomic_load_n(&sites[site].injected, __ATOMIC_RELAXED);
}

uint64_t tern__fault_calls(enum tern__fault_site site)
{
        return __atomic_load_n(&sites[site].calls, __ATOMIC_RELAXED);
}

bool tern__fault_edge_owed(int fd)
{
        if (fd < 0 || edge_owed_fd != fd)
                return false;
        edge_owed_fd = -1;
        return true;
}

static uint64_t xorshift64(uint64_t *x)
{
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

enum verdict {
        PASS,  /* make the real call unchanged */
        FAIL,  /* fail with *err, no real call */
        SHORT, /* make the real call for at most *cap bytes */
};

/* Decides the fate of one call of @len bytes on @fd at @site. */
static enum verdict decide(enum tern__fault_site site, int fd, size_t len, int *err, size_t *cap)
{
        if (!(__atomic_load_n(&armed_mask, __ATOMIC_ACQUIRE) & (1u << site)))
                return PASS;
        enum verdict v = PASS;
        pthread_mutex_lock(&fault_mu);
        struct fault_site *s = &sites[site];
        const struct tern__fault_plan *p = &s->plan;
        /* Re-check under the lock: a disarm may have raced the fast check. */
        if (!(__atomic_load_n(&armed_mask, __ATOMIC_RELAXED) & (1u << site)))
                goto out_unlock;
        if (site != TERN__FAULT_ALLOC && p->fd > 0 && p->fd != fd)
                goto out_unlock;
        if (site == TERN__FAULT_ALLOC && len < p->min_size)
                goto out_unlock;
        uint64_t calls = s->calls + 1;
        __atomic_store_n(&s->calls, calls, __ATOMIC_RELAXED);
        if (p->limit && s->injected >= p->limit)
                goto out_unlock;
        bool fire;
        if (p->prob_ppm)
                fire = xorshift64(&s->rng) % 1000000 < p->prob_ppm;
        else
                fire = calls > p->after && (calls - p->after) % p->every == 0;
        if (!fire)
                goto out_unlock;
        if (site == TERN__FAULT_ALLOC) {
                *err = p->err ? p->err : ENOMEM;
                v = FAIL;
        } else if (p->err) {
                *err = p->err;
                v = FAIL;
        } else if (site != TERN__FAULT_ACCEPT && len > p->short_len) {
                *cap = p->short_len;
                v = SHORT;
        }
        if (v != PASS)
                __atomic_store_n(&s->injected, s->injected + 1, __ATOMIC_RELAXED);
out_unlock:
        pthread_mutex_unlock(&fault_mu);
        if (site != TERN__FAULT_ACCEPT && site != TERN__FAULT_ALLOC &&
            (v == SHORT || (v == FAIL && *err == EAGAIN)))
                edge_owed_fd = fd;
        return v;
}

/*
 * One call of *@len bytes on @fd at @site: true if it must fail (errno is
 * set); otherwise *@len may have shrunk (a short transfer).
 */
static bool faulted(enum tern__fault_site site, int fd, size_t *len)
{
        int err;
        size_t cap;
        switch (decide(site, fd, *len, &err, &cap)) {
        case FAIL:
                errno = err;
                return true;
        case SHORT:
                *len = cap;
                break;
        case PASS:
                break;
        }
        return false;
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
        size_t n = 0;
        for (int i = 0; i < cnt; i++)
                n += iov[i].iov_len;
        return n;
}

#define TRIM_MAX 64

/* Copies the first @cap bytes' worth of @iov into @out; returns the count. */
static int trim_iov(const struct iovec *iov, int cnt, size_t cap, struct iovec *out)
{
        int k = 0;
        for (int i = 0; i < cnt && cap && k < TRIM_MAX; i++) {
                out[k] = iov[i];
                if (out[k].iov_len > cap)
                        out[k].iov_len = cap;
                cap -= out[k].iov_len;
                k++;
        }
        return k;
}

ssize_t tern__fault_read(int fd, void *buf, size_t len)
{
        if (faulted(TERN__FAULT_READ, fd, &len))
                return -1;
        return syscall(SYS_read, fd, buf, len);
}

ssize_t tern__fault_readv(int fd, const struct iovec *iov, int cnt)
{
        struct iovec t[TRIM_MAX];
        size_t total = iov_total(iov, cnt), len = total;
        if (faulted(TERN__FAULT_READ, fd, &len))
                return -1;
        if (len < total) {
                cnt = trim_iov(iov, cnt, len, t);
                iov = t;
        }
        return readv(fd, iov, cnt);
}

ssize_t tern__fault_send(int fd, const void *buf, size_t len, int flags)
{
        if (faulted(TERN__FAULT_SEND, fd, &len))
                return -1;
        return syscall(SYS_sendto, fd, buf, len, flags, NULL, 0);
}

ssize_t tern__fault_sendmsg(int fd, const struct msghdr *m, int flags)
{
        struct iovec t[TRIM_MAX];
        struct msghdr copy = *m;
        size_t total = iov_total(m->msg_iov, (int)m->msg_iovlen), len = total;
        if (faulted(TERN__FAULT_SENDMSG, fd, &len))
                return -1;
        if (len < total) {
                copy.msg_iovlen = (size_t)trim_iov(m->msg_iov, (int)m->msg_iovlen, len, t);
                copy.msg_iov = t;
        }
        return sendmsg(fd, &copy, flags);
}

int tern__fault_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
        size_t n = 0;
        if (faulted(TERN__FAULT_ACCEPT, fd, &n))
                return -1;
        return accept4(fd, addr, len, flags);
}

void *tern__fault_malloc(size_t n)
{
        return faulted(TERN__FAULT_ALLOC, -1, &n) ? NULL : malloc(n);
}

void *tern__fault_calloc(size_t n, size_t size)
{
        size_t bytes = n * size;
        return faulted(TERN__FAULT_ALLOC, -1, &bytes) ? NULL : calloc(n, size);
}

/* Like realloc's own failure: @p is untouched and still the caller's. */
void *tern__fault_realloc(void *p, size_t n)
{
        return faulted(TERN__FAULT_ALLOC, -1, &n) ? NULL : realloc(p, n);
}
