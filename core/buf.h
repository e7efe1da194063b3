/**
 * @file
 * Byte buffers: a contiguous, growable region with cheap prepend space.
 *
 *     base                rd                wr                cap
 *      | prepend space     | readable bytes  | writable space  |
 *
 * A buffer starts with no memory (TERN_BUF_INIT) and allocates on the first
 * append, so an idle connection holds none. tern_buf_release_if_empty()
 * gives the memory back; connections call it whenever a buffer drains.
 * TERN_BUF_PREPEND bytes are kept free in front after every (re)allocation
 * and whenever the buffer empties, so a codec can put a length header in
 * front of a payload without moving it.
 *
 * Ownership: the buffer owns its allocation. Pointers returned by
 * tern_buf_data() and tern_buf_tail() are borrowed and valid until the next
 * call that may grow, compact or free the buffer (anything not const).
 *
 * Threads: a buffer belongs to one thread at a time; no internal locking.
 */
#ifndef TERN_BUF_H
#define TERN_BUF_H

#include "export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TERN_BUF_PREPEND   16  /**< free bytes kept in front for headers */
#define TERN_BUF_MIN_ALLOC 512 /**< smallest allocation */

/** A byte buffer; zero-initialised (or TERN_BUF_INIT) it is empty and owns nothing. */
struct tern_buf {
        uint8_t *base; /**< allocation, or NULL */
        size_t cap;    /**< bytes at base */
        size_t rd;     /**< offset of the first readable byte */
        size_t wr;     /**< offset one past the last readable byte */
};

/** Initialiser for an empty buffer that owns no memory yet. */
#define TERN_BUF_INIT                                                                              \
        {                                                                                          \
                NULL, 0, 0, 0                                                                      \
        }

/** Readable bytes. */
static inline size_t tern_buf_len(const struct tern_buf *b)
{
        return b->wr - b->rd;
}

/** True when there are no readable bytes. */
static inline bool tern_buf_empty(const struct tern_buf *b)
{
        return b->wr == b->rd;
}

/** First readable byte (borrowed). Undefined content when empty; may be NULL. */
static inline const uint8_t *tern_buf_data(const struct tern_buf *b)
{
        return b->base ? b->base + b->rd : NULL;
}

/** Writable bytes after the readable ones, without growing. */
static inline size_t tern_buf_writable(const struct tern_buf *b)
{
        return b->cap - b->wr;
}

/** First writable byte (borrowed); see tern_buf_reserve(). */
static inline uint8_t *tern_buf_tail(struct tern_buf *b)
{
        return b->base + b->wr;
}

/** Makes an empty, unallocated buffer. */
TERN_EXPORT void tern_buf_init(struct tern_buf *b);

/** Frees the allocation (if any) and leaves the buffer empty and reusable. */
TERN_EXPORT void tern_buf_free(struct tern_buf *b);

/**
 * Ensures at least @p n writable bytes after the readable ones, compacting
 * (moving readable bytes down to TERN_BUF_PREPEND) when that suffices and
 * growing geometrically otherwise. Invalidates borrowed pointers.
 * Returns 0, -ENOMEM, or -EOVERFLOW if the size would wrap.
 */
TERN_EXPORT int tern_buf_reserve(struct tern_buf *b, size_t n);

/** Marks @p n bytes written at tern_buf_tail() as readable. @p n must not exceed
 * tern_buf_writable(). */
TERN_EXPORT void tern_buf_commit(struct tern_buf *b, size_t n);

/** Appends a copy of @p len bytes from @p data (borrowed). Returns 0 or -ENOMEM. */
TERN_EXPORT int tern_buf_append(struct tern_buf *b, const void *data, size_t len);

/**
 * Puts a copy of @p len bytes in front of the readable bytes. O(len) when the
 * prepend space has room (always true for len <= TERN_BUF_PREPEND after the
 * buffer was allocated or emptied), otherwise moves the data.
 * Returns 0 or -ENOMEM.
 */
TERN_EXPORT int tern_buf_prepend(struct tern_buf *b, const void *data, size_t len);

/** Drops @p n bytes from the front (n <= tern_buf_len()). When the buffer
 * empties, offsets reset so the whole allocation is free again. */
TERN_EXPORT void tern_buf_consume(struct tern_buf *b, size_t n);

/** Keeps only the first @p len readable bytes, dropping the rest from the
 * tail (len <= tern_buf_len()). Undoes a partial append: an encoder that
 * failed half-way, or a reply abandoned mid-build. [owner] */
TERN_EXPORT void tern_buf_truncate(struct tern_buf *b, size_t len);

/** Frees the allocation if the buffer holds no readable bytes. */
TERN_EXPORT void tern_buf_release_if_empty(struct tern_buf *b);

/**
 * Reads once from @p fd with readv(2) into the buffer's writable space plus
 * @p spill (a scratch area of @p spill_len bytes, typically 64 KiB per thread),
 * then appends whatever landed in @p spill. So one call reads up to
 * writable + spill_len bytes whatever the buffer's size, and the buffer grows
 * only by what actually arrived.
 * Returns bytes read (> 0), 0 at end of file, or -errno (-EAGAIN, -EINTR,
 * -ECONNRESET, -ENOMEM when the spill could not be appended: those bytes are
 * lost and the caller must treat the stream as broken).
 */
TERN_EXPORT ssize_t tern_buf_read_fd(struct tern_buf *b, int fd, uint8_t *spill, size_t spill_len);

#endif
