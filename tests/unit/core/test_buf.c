#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "live.h"
#include "testutil.h"

/* The -ENOMEM test asks for an impossible allocation; ASan would abort on it
 * instead of returning NULL the way malloc does. */
#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define TEST_BUF_ASAN 1
#elif defined(__has_feature) /* clang */
#if __has_feature(address_sanitizer)
#define TEST_BUF_ASAN 1
#endif
#endif
#ifdef TEST_BUF_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
        return "allocator_may_return_null=1";
}
#endif

static long live_bufs(void)
{
        struct tern_live_counts c;

        tern_live_counts(&c);
        return c.bufs;
}

/* Asserts the readable bytes are exactly the pattern (seed, offset 0..len). */
static void expect_pattern(const struct tern_buf *b, size_t len, uint32_t seed, size_t offset)
{
        uint8_t *want = malloc(len ? len : 1);

        cr_assert_not_null(want);
        tu_pattern(want, len, seed, offset);
        cr_assert_eq(tern_buf_len(b), len, "len %zu, want %zu", tern_buf_len(b), len);
        if (len)
                cr_assert_eq(memcmp(tern_buf_data(b), want, len), 0, "content differs");
        free(want);
}

static void append_pattern(struct tern_buf *b, size_t len, uint32_t seed, size_t offset)
{
        uint8_t *p = malloc(len ? len : 1);

        cr_assert_not_null(p);
        tu_pattern(p, len, seed, offset);
        cr_assert_eq(tern_buf_append(b, p, len), 0);
        free(p);
}

static void write_pattern(int fd, size_t len, uint32_t seed, size_t offset)
{
        uint8_t *p = malloc(len);

        cr_assert_not_null(p);
        tu_pattern(p, len, seed, offset);
        /* write(), not tu_write_all(): that one uses send(), sockets only. */
        for (size_t done = 0; done < len;) {
                ssize_t n = write(fd, p + done, len - done);

                if (n < 0 && errno == EINTR)
                        continue;
                cr_assert_gt(n, 0, "write: %s", strerror(errno));
                done += (size_t)n;
        }
        free(p);
}

Test(buf, starts_unallocated_until_first_append)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        struct tern_buf c;

        tern_buf_init(&c);
        cr_assert_null(c.base);
        cr_assert_eq(c.cap, 0);
        cr_assert(tern_buf_empty(&c));
        cr_assert_null(tern_buf_data(&b));

        /* Nothing that needs no memory may allocate. */
        cr_assert_eq(tern_buf_append(&b, "", 0), 0);
        cr_assert_eq(tern_buf_reserve(&b, 0), 0);
        cr_assert_eq(tern_buf_prepend(&b, "", 0), 0);
        tern_buf_consume(&b, 0);
        tern_buf_release_if_empty(&b);
        cr_assert_null(b.base);
        cr_assert_eq(tern_buf_writable(&b), 0);
        cr_assert_eq(live_bufs(), start);

        cr_assert_eq(tern_buf_append(&b, "abc", 3), 0);
        cr_assert_not_null(b.base);
        cr_assert_geq(b.cap, TERN_BUF_MIN_ALLOC);
        cr_assert_eq(b.rd, TERN_BUF_PREPEND);
        cr_assert_eq(live_bufs(), start + 1);
        cr_assert_eq(memcmp(tern_buf_data(&b), "abc", 3), 0);

        tern_buf_free(&b);
        cr_assert_null(b.base);
        cr_assert(tern_buf_empty(&b));
        cr_assert_eq(live_bufs(), start);
        /* Freed buffers are reusable. */
        cr_assert_eq(tern_buf_append(&b, "x", 1), 0);
        cr_assert_eq(live_bufs(), start + 1);
        tern_buf_free(&b);
        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, reserve_then_commit)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        uint8_t want[1000];

        tu_pattern(want, sizeof(want), 3, 0);
        cr_assert_eq(tern_buf_reserve(&b, sizeof(want)), 0);
        cr_assert_geq(tern_buf_writable(&b), sizeof(want));
        cr_assert_eq(b.rd, TERN_BUF_PREPEND);
        cr_assert_eq(live_bufs(), start + 1);
        memcpy(tern_buf_tail(&b), want, 600);
        tern_buf_commit(&b, 600);
        memcpy(tern_buf_tail(&b), want + 600, 400);
        tern_buf_commit(&b, 400);
        expect_pattern(&b, sizeof(want), 3, 0);

        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, grows_across_sizes_preserving_content)
{
        static const size_t sizes[] = {1,    7,    15,   16,   17,    495,   496,   497,
                                       511,  512,  513,  1000, 1023,  1024,  1025,  4095,
                                       4096, 4097, 9999, 1,    65535, 65536, 65537, 300000};
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        size_t total = 0;

        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                append_pattern(&b, sizes[i], 42, total);
                total += sizes[i];
                expect_pattern(&b, total, 42, 0);
                /* Geometric growth: never more than twice what is needed. */
                cr_assert_geq(b.cap, total + TERN_BUF_PREPEND);
                cr_assert(b.cap == TERN_BUF_MIN_ALLOC || b.cap < 2 * (total + TERN_BUF_PREPEND),
                          "cap %zu for %zu bytes", b.cap, total);
                cr_assert_eq(b.rd, TERN_BUF_PREPEND);
                /* Growth reallocates but never counts a second buffer. */
                cr_assert_eq(live_bufs(), start + 1);
        }

        /* Growth after a partial consume keeps the remaining bytes only. */
        struct tern_buf c = TERN_BUF_INIT;

        append_pattern(&c, 400, 9, 0);
        tern_buf_consume(&c, 123);
        append_pattern(&c, 5000, 9, 400);
        expect_pattern(&c, 400 - 123 + 5000, 9, 123);
        cr_assert_eq(c.rd, TERN_BUF_PREPEND);
        cr_assert_eq(live_bufs(), start + 2);

        tern_buf_free(&c);
        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, compaction_reuses_space)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        uint8_t *base;
        size_t cap;
        size_t off = 0; /* stream offset of the first readable byte */
        size_t end = 0; /* stream offset one past the last */

        append_pattern(&b, 400, 5, 0);
        end = 400;
        base = b.base;
        cap = b.cap;
        cr_assert_eq(cap, TERN_BUF_MIN_ALLOC);

        /* A consumer that keeps up: the front frees what the back needs. */
        for (int i = 0; i < 200; i++) {
                tern_buf_consume(&b, 300);
                off += 300;
                append_pattern(&b, 300, 5, end);
                end += 300;
                expect_pattern(&b, end - off, 5, off);
                cr_assert_eq(b.cap, cap, "grew to %zu at round %d", b.cap, i);
                cr_assert_eq(b.base, base);
        }
        /* After compaction the prepend space is back. */
        cr_assert_geq(b.rd, TERN_BUF_PREPEND);

        /* reserve compacts too when that suffices. */
        tern_buf_consume(&b, 350);
        off += 350;
        cr_assert_lt(tern_buf_writable(&b), 400);
        cr_assert_eq(tern_buf_reserve(&b, cap - TERN_BUF_PREPEND - (end - off)), 0);
        cr_assert_eq(b.cap, cap);
        cr_assert_eq(b.rd, TERN_BUF_PREPEND);
        expect_pattern(&b, end - off, 5, off);

        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, prepend_into_prepend_space_keeps_payload_in_place)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        const uint8_t *payload;
        uint8_t want[4 + 100];
        uint32_t hdr = 0x01020304;

        append_pattern(&b, 100, 8, 0);
        payload = tern_buf_data(&b);
        cr_assert_eq(tern_buf_prepend(&b, &hdr, sizeof(hdr)), 0);
        cr_assert_eq(tern_buf_data(&b) + sizeof(hdr), payload);
        cr_assert_eq(tern_buf_len(&b), sizeof(want));
        memcpy(want, &hdr, 4);
        tu_pattern(want + 4, 100, 8, 0);
        cr_assert_eq(memcmp(tern_buf_data(&b), want, sizeof(want)), 0);

        /* The whole prepend space is usable without moving anything. */
        cr_assert_eq(tern_buf_prepend(&b, "0123456789ab", TERN_BUF_PREPEND - 4), 0);
        cr_assert_eq(tern_buf_data(&b) + TERN_BUF_PREPEND, payload);
        cr_assert_eq(b.rd, 0);
        cr_assert_eq(memcmp(tern_buf_data(&b), "0123456789ab", 12), 0);
        cr_assert_eq(memcmp(tern_buf_data(&b) + 12, want, sizeof(want)), 0);

        /* Consuming to empty restores the prepend space. */
        tern_buf_consume(&b, tern_buf_len(&b));
        append_pattern(&b, 10, 1, 0);
        payload = tern_buf_data(&b);
        cr_assert_eq(tern_buf_prepend(&b, "abcdefghijklmnop", TERN_BUF_PREPEND), 0);
        cr_assert_eq(tern_buf_data(&b) + TERN_BUF_PREPEND, payload);

        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, prepend_larger_than_prepend_space)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        uint8_t hdr[3000];
        uint8_t *want = malloc(sizeof(hdr) + 200);

        cr_assert_not_null(want);
        tu_pattern(hdr, sizeof(hdr), 77, 0);
        memcpy(want, hdr, sizeof(hdr));

        /* Fits in the allocation once the payload moves up. */
        struct tern_buf s = TERN_BUF_INIT;

        append_pattern(&s, 200, 6, 0);
        size_t cap = s.cap;
        cr_assert_eq(tern_buf_prepend(&s, hdr, 100), 0);
        cr_assert_eq(s.cap, cap);
        cr_assert_eq(tern_buf_len(&s), 300);
        cr_assert_eq(memcmp(tern_buf_data(&s), hdr, 100), 0);
        tu_pattern(want + sizeof(hdr), 200, 6, 0);
        cr_assert_eq(memcmp(tern_buf_data(&s) + 100, want + sizeof(hdr), 200), 0);
        /* The move keeps the prepend space for the next header. */
        cr_assert_eq(s.rd, TERN_BUF_PREPEND);

        /* Needs a bigger allocation. */
        append_pattern(&b, 200, 6, 0);
        cr_assert_eq(tern_buf_prepend(&b, hdr, sizeof(hdr)), 0);
        cr_assert_geq(b.cap, sizeof(hdr) + 200 + TERN_BUF_PREPEND);
        cr_assert_eq(tern_buf_len(&b), sizeof(hdr) + 200);
        cr_assert_eq(memcmp(tern_buf_data(&b), want, sizeof(hdr) + 200), 0);
        cr_assert_eq(live_bufs(), start + 2);

        /* Into an unallocated buffer: allocates, still keeps prepend space. */
        struct tern_buf u = TERN_BUF_INIT;

        cr_assert_eq(tern_buf_prepend(&u, hdr, 20), 0);
        cr_assert_eq(live_bufs(), start + 3);
        cr_assert_eq(tern_buf_len(&u), 20);
        cr_assert_eq(u.rd, TERN_BUF_PREPEND);
        cr_assert_eq(memcmp(tern_buf_data(&u), hdr, 20), 0);

        tern_buf_free(&u);
        tern_buf_free(&s);
        tern_buf_free(&b);
        free(want);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, consume_to_empty_resets_offsets)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;

        append_pattern(&b, 450, 2, 0);
        tern_buf_consume(&b, 200);
        cr_assert_eq(b.rd, TERN_BUF_PREPEND + 200);
        expect_pattern(&b, 250, 2, 200);
        tern_buf_consume(&b, 250);
        cr_assert(tern_buf_empty(&b));
        cr_assert_eq(b.rd, TERN_BUF_PREPEND);
        cr_assert_eq(b.wr, TERN_BUF_PREPEND);
        cr_assert_eq(tern_buf_writable(&b), b.cap - TERN_BUF_PREPEND);
        /* Emptying keeps the memory; only release_if_empty gives it back. */
        cr_assert_not_null(b.base);
        cr_assert_eq(live_bufs(), start + 1);

        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, release_if_empty_frees_only_when_empty)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;

        append_pattern(&b, 100, 4, 0);
        cr_assert_eq(live_bufs(), start + 1);
        tern_buf_release_if_empty(&b);
        cr_assert_not_null(b.base);
        expect_pattern(&b, 100, 4, 0);
        cr_assert_eq(live_bufs(), start + 1);

        tern_buf_consume(&b, 100);
        tern_buf_release_if_empty(&b);
        cr_assert_null(b.base);
        cr_assert_eq(b.cap, 0);
        cr_assert_eq(tern_buf_writable(&b), 0);
        cr_assert(tern_buf_empty(&b));
        cr_assert_eq(live_bufs(), start);

        /* And the buffer works again afterwards. */
        append_pattern(&b, 700, 4, 0);
        expect_pattern(&b, 700, 4, 0);
        cr_assert_eq(live_bufs(), start + 1);
        tern_buf_consume(&b, 700);
        tern_buf_release_if_empty(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, reserve_huge_fails_without_damage)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        struct tern_buf before;
        int err;

        append_pattern(&b, 300, 11, 0);
        tern_buf_consume(&b, 50);
        before = b;

        err = tern_buf_reserve(&b, SIZE_MAX - 10);
        cr_assert(err == -EOVERFLOW || err == -ENOMEM, "got %d", err);
        cr_assert_eq(b.base, before.base);
        cr_assert_eq(b.cap, before.cap);
        cr_assert_eq(b.rd, before.rd);
        cr_assert_eq(b.wr, before.wr);
        expect_pattern(&b, 250, 11, 50);

        /* Does not wrap but no allocator can satisfy it: beyond PTRDIFF_MAX,
         * then a size malloc itself refuses (data at an offset: new region). */
        err = tern_buf_reserve(&b, SIZE_MAX / 4);
        cr_assert_eq(err, -ENOMEM, "got %d", err);
        err = tern_buf_reserve(&b, SIZE_MAX / 8);
        cr_assert_eq(err, -ENOMEM, "got %d", err);
        cr_assert_eq(b.base, before.base);
        cr_assert_eq(b.cap, before.cap);
        cr_assert_eq(b.rd, before.rd);
        expect_pattern(&b, 250, 11, 50);

        /* Same when the data is already in place (the realloc path). */
        struct tern_buf r = TERN_BUF_INIT;

        append_pattern(&r, 100, 12, 0);
        before = r;
        cr_assert_eq(tern_buf_reserve(&r, SIZE_MAX / 8), -ENOMEM);
        cr_assert_eq(r.base, before.base);
        cr_assert_eq(r.cap, before.cap);
        expect_pattern(&r, 100, 12, 0);
        tern_buf_free(&r);

        /* An unallocated buffer stays unallocated and uncounted. */
        struct tern_buf u = TERN_BUF_INIT;

        cr_assert_lt(tern_buf_reserve(&u, SIZE_MAX - 10), 0);
        cr_assert_null(u.base);
        cr_assert_eq(u.cap, 0);
        cr_assert_eq(live_bufs(), start + 1);

        /* Still usable. */
        append_pattern(&b, 1000, 11, 300);
        expect_pattern(&b, 1250, 11, 50);

        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

static void make_pipe(int fds[2], bool nonblock)
{
        cr_assert_eq(pipe2(fds, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0)), 0);
}

Test(buf, read_fd_fits_in_writable_space)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        uint8_t spill[4096];
        int fds[2];

        make_pipe(fds, false);
        append_pattern(&b, 10, 21, 0);
        uint8_t *base = b.base;
        size_t cap = b.cap;

        write_pattern(fds[1], 100, 21, 10);
        memset(spill, 0xee, sizeof(spill));
        cr_assert_eq(tern_buf_read_fd(&b, fds[0], spill, sizeof(spill)), 100);
        expect_pattern(&b, 110, 21, 0);
        cr_assert_eq(b.cap, cap);
        cr_assert_eq(b.base, base);
        /* Nothing went through the spill. */
        for (size_t i = 0; i < sizeof(spill); i++)
                cr_assert_eq(spill[i], 0xee, "spill[%zu] written", i);

        close(fds[0]);
        close(fds[1]);
        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, read_fd_spills_past_writable_space)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        uint8_t spill[8192];
        int fds[2];

        make_pipe(fds, false);
        append_pattern(&b, 10, 22, 0);
        size_t room = tern_buf_writable(&b);
        size_t want = room + 3000;

        write_pattern(fds[1], want, 22, 10);
        cr_assert_eq(tern_buf_read_fd(&b, fds[0], spill, sizeof(spill)), (ssize_t)want);
        expect_pattern(&b, 10 + want, 22, 0);
        cr_assert_geq(b.cap, TERN_BUF_PREPEND + 10 + want);
        /* The buffer grew for what arrived, not for the whole spill. */
        cr_assert_lt(b.cap, TERN_BUF_PREPEND + 10 + room + sizeof(spill));
        cr_assert_eq(live_bufs(), start + 1);

        close(fds[0]);
        close(fds[1]);
        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, read_fd_more_than_writable_plus_spill)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        uint8_t spill[1024];
        int fds[2];
        size_t got = 10;
        int calls = 0;

        make_pipe(fds, true);
        append_pattern(&b, 10, 23, 0);
        size_t room = tern_buf_writable(&b);
        size_t total = room + sizeof(spill) + 1000;

        write_pattern(fds[1], total, 23, 10);
        ssize_t n = tern_buf_read_fd(&b, fds[0], spill, sizeof(spill));
        /* One call reads at most writable + spill_len. */
        cr_assert_eq(n, (ssize_t)(room + sizeof(spill)));
        got += (size_t)n;
        expect_pattern(&b, got, 23, 0);

        while (got < 10 + total && calls++ < 100) {
                n = tern_buf_read_fd(&b, fds[0], spill, sizeof(spill));
                cr_assert_gt(n, 0, "read_fd returned %zd", n);
                got += (size_t)n;
        }
        expect_pattern(&b, 10 + total, 23, 0);
        cr_assert_eq(tern_buf_read_fd(&b, fds[0], spill, sizeof(spill)), -EAGAIN);

        close(fds[0]);
        close(fds[1]);
        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, read_fd_into_unallocated_buffer_uses_spill)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        uint8_t spill[2048];
        int fds[2];

        make_pipe(fds, false);
        write_pattern(fds[1], 1500, 24, 0);
        cr_assert_eq(tern_buf_read_fd(&b, fds[0], spill, sizeof(spill)), 1500);
        expect_pattern(&b, 1500, 24, 0);
        cr_assert_eq(b.rd, TERN_BUF_PREPEND);
        cr_assert_eq(live_bufs(), start + 1);

        close(fds[0]);
        close(fds[1]);
        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, read_fd_eof_returns_zero)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        uint8_t spill[256];
        int fds[2];

        make_pipe(fds, false);
        close(fds[1]);
        /* Unallocated: EOF must not allocate. */
        cr_assert_eq(tern_buf_read_fd(&b, fds[0], spill, sizeof(spill)), 0);
        cr_assert_null(b.base);
        cr_assert_eq(live_bufs(), start);

        append_pattern(&b, 30, 25, 0);
        cr_assert_eq(tern_buf_read_fd(&b, fds[0], spill, sizeof(spill)), 0);
        expect_pattern(&b, 30, 25, 0);

        close(fds[0]);
        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, read_fd_empty_nonblocking_returns_eagain)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        uint8_t spill[256];
        int fds[2];

        make_pipe(fds, true);
        cr_assert_eq(tern_buf_read_fd(&b, fds[0], spill, sizeof(spill)), -EAGAIN);
        cr_assert_null(b.base);
        append_pattern(&b, 30, 26, 0);
        cr_assert_eq(tern_buf_read_fd(&b, fds[0], spill, sizeof(spill)), -EAGAIN);
        expect_pattern(&b, 30, 26, 0);
        cr_assert_eq(tern_buf_read_fd(&b, -1, spill, sizeof(spill)), -EBADF);

        close(fds[0]);
        close(fds[1]);
        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, read_fd_with_nothing_to_fill_is_not_eof)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        int fds[2];

        make_pipe(fds, false);
        write_pattern(fds[1], 10, 27, 0);
        cr_assert_eq(tern_buf_read_fd(&b, fds[0], NULL, 0), -ENOBUFS);
        cr_assert_null(b.base);

        /* Without spill, reads only what fits. */
        append_pattern(&b, 1, 27, 0);
        tern_buf_consume(&b, 1);
        cr_assert_eq(tern_buf_read_fd(&b, fds[0], NULL, 0), 10);
        expect_pattern(&b, 10, 27, 0);

        close(fds[0]);
        close(fds[1]);
        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, read_fd_socketpair_stream)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;
        uint8_t spill[4096];
        int sv[2];
        size_t total = 40000;
        int calls = 0;

        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        /* Fits the default AF_UNIX send buffer, so the write cannot block. */
        write_pattern(sv[1], total, 28, 0);
        shutdown(sv[1], SHUT_WR);

        ssize_t n;
        size_t off = 0; /* stream offset of the first readable byte */

        while ((n = tern_buf_read_fd(&b, sv[0], spill, sizeof(spill))) > 0 && calls++ < 1000) {
                /* Consume part of what arrived, as a codec would, so reads
                 * land in a buffer with data at an offset. */
                size_t eat = tern_buf_len(&b) / 2;

                expect_pattern(&b, tern_buf_len(&b), 28, off);
                tern_buf_consume(&b, eat);
                off += eat;
        }
        cr_assert_eq(n, 0, "stream ended with %zd", n);
        cr_assert_eq(off + tern_buf_len(&b), total);
        expect_pattern(&b, total - off, 28, off);

        close(sv[0]);
        close(sv[1]);
        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}

Test(buf, live_bytes_follow_capacity_and_keep_the_peak)
{
        struct tern_live_counts lc0, lc;
        tern_live_counts(&lc0);
        struct tern_buf b = TERN_BUF_INIT;

        cr_assert_eq(tern_buf_append(&b, "abc", 3), 0);
        tern_live_counts(&lc);
        cr_assert_eq(lc.buf_bytes - lc0.buf_bytes, (long)b.cap);
        /* Growing by realloc and by a move both count the new capacity once. */
        cr_assert_eq(tern_buf_reserve(&b, 100000), 0);
        size_t big = b.cap;
        tern_live_counts(&lc);
        cr_assert_eq(lc.buf_bytes - lc0.buf_bytes, (long)big);
        cr_assert_geq(lc.buf_bytes_peak, lc.buf_bytes);
        tern_buf_consume(&b, 1);
        cr_assert_eq(tern_buf_prepend(&b, "0123456789", 10), 0);
        tern_live_counts(&lc);
        cr_assert_eq(lc.buf_bytes - lc0.buf_bytes, (long)b.cap);

        tern_buf_free(&b);
        tern_live_counts(&lc);
        cr_assert_eq(lc.buf_bytes, lc0.buf_bytes);
        cr_assert_geq(lc.buf_bytes_peak - lc0.buf_bytes, (long)big, "the peak forgot");
}

Test(buf, truncate_drops_the_tail_and_keeps_the_head)
{
        long start = live_bufs();
        struct tern_buf b = TERN_BUF_INIT;

        append_pattern(&b, 300, 3, 0);
        tern_buf_consume(&b, 100);
        tern_buf_truncate(&b, 150);
        cr_assert_eq(tern_buf_len(&b), 150);
        expect_pattern(&b, 150, 3, 100);
        /* What comes next lands right behind the kept bytes. */
        append_pattern(&b, 50, 3, 250);
        expect_pattern(&b, 200, 3, 100);
        tern_buf_truncate(&b, 200); /* no-op */
        cr_assert_eq(tern_buf_len(&b), 200);
        tern_buf_truncate(&b, 0);
        cr_assert(tern_buf_empty(&b));
        cr_assert_eq(b.rd, TERN_BUF_PREPEND, "emptying resets offsets, as consume does");
        tern_buf_free(&b);
        cr_assert_eq(live_bufs(), start);
}
