/* The fault layer itself: which calls a plan fails, and how. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault_internal.h"

static void teardown(void)
{
        tern__fault_disarm_all();
}

TestSuite(fault, .fini = teardown);

Test(fault, every_nth_call_after_k)
{
        struct tern__fault_plan p = {.err = ENOMEM, .fd = -1, .after = 2, .every = 3};
        tern__fault_arm(TERN__FAULT_ALLOC, &p);
        /* calls 1..2 pass, then 5, 8, 11 fail (every 3rd after the first 2) */
        int failed[12] = {0};
        for (int i = 1; i <= 11; i++) {
                errno = 0;
                void *q = tern__fault_malloc(16);
                failed[i] = q == NULL;
                if (q)
                        free(q);
                else
                        cr_assert_eq(errno, ENOMEM);
        }
        for (int i = 1; i <= 11; i++)
                cr_assert_eq(failed[i], i == 5 || i == 8 || i == 11, "call %d", i);
        cr_assert_eq(tern__fault_injected(TERN__FAULT_ALLOC), 3);
        cr_assert_eq(tern__fault_calls(TERN__FAULT_ALLOC), 11);
}

Test(fault, limit_caps_injections_and_disarm_stops_them)
{
        struct tern__fault_plan p = {.err = ENOMEM, .fd = -1, .every = 1, .limit = 2};
        tern__fault_arm(TERN__FAULT_ALLOC, &p);
        cr_assert_null(tern__fault_calloc(1, 8));
        cr_assert_null(tern__fault_realloc(NULL, 8));
        void *q = tern__fault_malloc(8);
        cr_assert_not_null(q);
        free(q);
        cr_assert_eq(tern__fault_injected(TERN__FAULT_ALLOC), 2);

        p.limit = 0;
        tern__fault_arm(TERN__FAULT_ALLOC, &p);
        tern__fault_disarm(TERN__FAULT_ALLOC);
        q = tern__fault_malloc(8);
        cr_assert_not_null(q);
        free(q);
        cr_assert_eq(tern__fault_injected(TERN__FAULT_ALLOC), 0);
}

/* Same seed, same faults: a failing random run can be replayed. */
Test(fault, probability_is_repeatable_by_seed)
{
        struct tern__fault_plan p = {.err = ENOMEM, .fd = -1, .prob_ppm = 300000, .seed = 42};
        bool first[200];
        for (int run = 0; run < 2; run++) {
                tern__fault_arm(TERN__FAULT_ALLOC, &p);
                for (int i = 0; i < 200; i++) {
                        void *q = tern__fault_malloc(8);
                        if (run == 0)
                                first[i] = q == NULL;
                        else
                                cr_assert_eq(q == NULL, first[i], "call %d differs", i);
                        free(q);
                }
        }
        uint64_t n = tern__fault_injected(TERN__FAULT_ALLOC);
        cr_assert(n > 30 && n < 100, "%lu of 200 at 30%%", (unsigned long)n);
}

Test(fault, fd_filter_short_reads_and_owed_edge)
{
        int a[2], b[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
        cr_assert_eq(write(a[1], "0123456789", 10), 10);
        cr_assert_eq(write(b[1], "0123456789", 10), 10);
        struct tern__fault_plan p = {.short_len = 3, .fd = a[0], .every = 1};
        tern__fault_arm(TERN__FAULT_READ, &p);
        char buf[16];
        cr_assert_eq(tern__fault_read(b[0], buf, sizeof(buf)), 10, "other fds untouched");
        cr_assert_not(tern__fault_edge_owed(b[0]));
        cr_assert_eq(tern__fault_read(a[0], buf, sizeof(buf)), 3);
        cr_assert(tern__fault_edge_owed(a[0]), "a short read owes an edge");
        cr_assert_not(tern__fault_edge_owed(a[0]), "once");
        struct iovec iov[2] = {{buf, 2}, {buf + 2, 8}};
        cr_assert_eq(tern__fault_readv(a[0], iov, 2), 3);
        cr_assert_eq(tern__fault_read(a[0], buf, 2), 2, "not shorter than asked: real call");
        cr_assert_eq(tern__fault_injected(TERN__FAULT_READ), 2);

        p = (struct tern__fault_plan){.err = EINTR, .fd = -1, .every = 2};
        tern__fault_arm(TERN__FAULT_SEND, &p);
        cr_assert_eq(tern__fault_send(a[1], "x", 1, 0), 1);
        cr_assert_eq(tern__fault_send(a[1], "x", 1, 0), -1);
        cr_assert_eq(errno, EINTR);
        cr_assert_not(tern__fault_edge_owed(a[1]), "EINTR is retried, no edge owed");
        p.err = EAGAIN;
        tern__fault_arm(TERN__FAULT_SENDMSG, &p);
        struct iovec one = {(void *)"y", 1};
        struct msghdr m = {.msg_iov = &one, .msg_iovlen = 1};
        cr_assert_eq(tern__fault_sendmsg(a[1], &m, 0), 1);
        cr_assert_eq(tern__fault_sendmsg(a[1], &m, 0), -1);
        cr_assert_eq(errno, EAGAIN);
        cr_assert(tern__fault_edge_owed(a[1]));
        for (int i = 0; i < 2; i++) {
                close(a[i]);
                close(b[i]);
        }
}
