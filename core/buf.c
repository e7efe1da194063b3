/*
 * Byte buffers. See buf.h for the layout and the contract.
 *
 * Invariants: an unallocated buffer has base == NULL and cap == rd == wr == 0;
 * an allocated one has cap >= TERN_BUF_MIN_ALLOC and rd <= wr <= cap. Every
 * allocation is counted once in the live-bufs counter, so a realloc or a
 * move to a new region leaves the count alone.
 */
#include "buf.h"

#include <assert.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "fault_internal.h"
#include "live_internal.h"

void tern_buf_init(struct tern_buf *b)
{
        b->base = NULL;
        b->cap = 0;
        b->rd = 0;
        b->wr = 0;
}

void tern_buf_free(struct tern_buf *b)
{
        if (b->base) {
                free(b->base);
                tern__live_add(TERN__LIVE_BUFS, -1);
                tern__live_bytes_add(-(long)b->cap);
        }
        tern_buf_init(b);
}

/* Smallest MIN_ALLOC * 2^k that holds @need; when doubling would wrap, @need
 * itself (the allocator will refuse such a size anyway). */
static size_t buf_grown_cap(size_t cap, size_t need)
{
        size_t c = cap < TERN_BUF_MIN_ALLOC ? TERN_BUF_MIN_ALLOC : cap;

        while (c < need) {
                if (c > SIZE_MAX / 2)
                        return need;
                c *= 2;
        }
        return c;
}

/*
 * Slow path shared by reserve and prepend: lays the readable bytes out at
 * offset TERN_BUF_PREPEND + @gap with at least @n writable bytes after them.
 * Moves them within the current allocation when it is big enough (the
 * compaction case), otherwise moves them to a geometrically larger one.
 * On failure the buffer is untouched.
 */
static int buf_reshape(struct tern_buf *b, size_t gap, size_t n)
{
        size_t len = b->wr - b->rd;
        size_t off, need, cap;
        uint8_t *p;

        /* The invariant the copies below rely on: no memory, no bytes. */
        assert(b->base || (b->cap == 0 && len == 0));
        if (__builtin_add_overflow(TERN_BUF_PREPEND, gap, &off) ||
            __builtin_add_overflow(off, len, &need) || __builtin_add_overflow(need, n, &need))
                return -EOVERFLOW;

        if (b->base && need <= b->cap) {
                memmove(b->base + off, b->base + b->rd, len);
                b->rd = off;
                b->wr = off + len;
                return 0;
        }

        cap = buf_grown_cap(b->cap, need);
        /* No object may be larger; spares the allocator a hopeless request. */
        if (cap > PTRDIFF_MAX)
                return -ENOMEM;
        if (b->base && b->rd == off) {
                /* Already in place: realloc may extend without copying. */
                p = TERN__REALLOC(b->base, cap);
                if (!p)
                        return -ENOMEM;
        } else {
                /* Copy only the readable bytes, not consumed or free space. */
                p = TERN__MALLOC(cap);
                if (!p)
                        return -ENOMEM;
                if (len)
                        memcpy(p + off, b->base + b->rd, len);
                if (b->base)
                        free(b->base);
                else
                        tern__live_add(TERN__LIVE_BUFS, +1);
        }
        tern__live_bytes_add((long)(cap - b->cap));
        b->base = p;
        b->cap = cap;
        b->rd = off;
        b->wr = off + len;
        return 0;
}

int tern_buf_reserve(struct tern_buf *b, size_t n)
{
        if (__builtin_expect(b->cap - b->wr >= n, 1))
                return 0;
        return buf_reshape(b, 0, n);
}

void tern_buf_commit(struct tern_buf *b, size_t n)
{
        assert(n <= b->cap - b->wr);
        b->wr += n;
}

int tern_buf_append(struct tern_buf *b, const void *data, size_t len)
{
        if (__builtin_expect(b->cap - b->wr < len, 0)) {
                /* The contract has no -EOVERFLOW here: a length that would
                 * wrap cannot describe real memory, so it is out of memory. */
                if (buf_reshape(b, 0, len) < 0)
                        return -ENOMEM;
        }
        if (len) {
                memcpy(b->base + b->wr, data, len);
                b->wr += len;
        }
        return 0;
}

int tern_buf_prepend(struct tern_buf *b, const void *data, size_t len)
{
        if (len == 0)
                return 0;
        if (!b->base || b->rd < len) {
                if (buf_reshape(b, len, 0) < 0)
                        return -ENOMEM;
        }
        b->rd -= len;
        memcpy(b->base + b->rd, data, len);
        return 0;
}

void tern_buf_consume(struct tern_buf *b, size_t n)
{
        assert(n <= b->wr - b->rd);
        b->rd += n;
        /* base check: an unallocated buffer must keep wr <= cap == 0. */
        if (b->rd == b->wr && b->base) {
                b->rd = TERN_BUF_PREPEND;
                b->wr = TERN_BUF_PREPEND;
        }
}

void tern_buf_truncate(struct tern_buf *b, size_t len)
{
        assert(len <= b->wr - b->rd);
        b->wr = b->rd + len;
        if (!len && b->base) {
                b->rd = TERN_BUF_PREPEND;
                b->wr = TERN_BUF_PREPEND;
        }
}

void tern_buf_release_if_empty(struct tern_buf *b)
{
        if (b->base && b->rd == b->wr)
                tern_buf_free(b);
}

ssize_t tern_buf_read_fd(struct tern_buf *b, int fd, uint8_t *spill, size_t spill_len)
{
        size_t room = b->cap - b->wr;
        struct iovec iov[2];
        int cnt = 0;
        ssize_t n;

        if (room) {
                iov[cnt].iov_base = b->base + b->wr;
                iov[cnt].iov_len = room;
                cnt++;
        }
        if (spill_len) {
                iov[cnt].iov_base = spill;
                iov[cnt].iov_len = spill_len;
                cnt++;
        }
        /* readv() with nothing to fill returns 0, which would read as EOF. */
        if (cnt == 0)
                return -ENOBUFS;

        do {
                n = TERN__READV(fd, iov, cnt);
        } while (n < 0 && errno == EINTR);
        if (n <= 0)
                return n < 0 ? -errno : 0;

        if ((size_t)n <= room) {
                b->wr += (size_t)n;
                return n;
        }
        b->wr += room;
        if (tern_buf_append(b, spill, (size_t)n - room) < 0)
                return -ENOMEM;
        return n;
}
