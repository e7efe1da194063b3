/*
 * Callbacks never re-enter: no call the application makes on a connection
 * runs one of its callbacks before returning. A failed send returns its
 * error; on_close, the water marks and write-complete run from the loop
 * after the callback that made the call has returned.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srvutil.h"
#include "testutil.h"

/* Written on the worker, read by the test after the server has stopped
 * (joined), or through the atomic step counter while it runs. */
static struct {
        int in_callback; /* depth of our own callbacks on the stack */
        int step;        /* atomic: advances with every recorded event */
        int send_result;
        bool closing_after_send;
        bool handle_valid_after_send;
        int close_step, message_step, high_step, low_step, written_step;
        int close_depth, high_depth, low_depth, written_depth;
        enum tern_close_reason reason;
        int close_err;
} seen;

static int next_step(void)
{
        return __atomic_add_fetch(&seen.step, 1, __ATOMIC_ACQ_REL);
}

static void rec_close(tern_conn *c, enum tern_close_reason reason, int err)
{
        seen.close_depth = seen.in_callback;
        seen.reason = reason;
        seen.close_err = err;
        cr_assert_neq(tern_conn_handle(c), TERN_HANDLE_NONE, "the handle is valid in on_close");
        seen.close_step = next_step();
}

static void rec_high(tern_conn *c, size_t queued)
{
        seen.high_depth = seen.in_callback;
        seen.high_step = next_step();
}

static void rec_low(tern_conn *c, size_t queued)
{
        seen.low_depth = seen.in_callback;
        seen.low_step = next_step();
}

static void rec_written(tern_conn *c)
{
        seen.written_depth = seen.in_callback;
        seen.written_step = next_step();
}

static void reset(void)
{
        memset(&seen, 0, sizeof(seen));
}

static bool closed_pred(void *p)
{
        (void)p;
        return __atomic_load_n(&seen.step, __ATOMIC_ACQUIRE) > 0 &&
               __atomic_load_n(&seen.close_step, __ATOMIC_ACQUIRE) > 0;
}

static tern_server *start(const struct tern_conn_ops *ops, size_t max_outbuf, size_t high_water)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 1;
        o.ops = ops;
        if (max_outbuf)
                o.max_outbuf = max_outbuf;
        o.high_water = high_water;
        return su_start(&o);
}

/* ---- a send that fails ---- */

#define BIG (8u << 20)

static void send_too_much(tern_conn *c, struct tern_buf *in)
{
        tern_buf_consume(in, tern_buf_len(in));
        seen.in_callback++;
        void *big = calloc(1, BIG);
        /* The kernel takes what fits; the rest is over max_outbuf. */
        seen.send_result = tern_conn_send(c, big, BIG);
        free(big);
        seen.closing_after_send = tern_conn_closing(c);
        seen.handle_valid_after_send = tern_conn_handle(c) != TERN_HANDLE_NONE;
        seen.message_step = next_step();
        seen.in_callback--;
}

Test(conn, failing_send_returns_its_error_and_on_close_runs_after_on_message)
{
        reset();
        static const struct tern_conn_ops ops = {.on_message = send_too_much,
                                                 .on_close = rec_close};
        tern_server *s = start(&ops, 4096, 0);
        int fd = tu_connect(tern_server_port(s), false);
        cr_assert_geq(fd, 0);
        cr_assert_eq(tu_write_all(fd, "x", 1), 0); /* and never read */
        cr_assert(tu_wait_until(closed_pred, NULL, 5000), "on_close never ran");
        su_stop(s);
        close(fd);
        cr_assert_eq(seen.send_result, TERN_EOUTLIMIT, "send returned %d", seen.send_result);
        cr_assert(seen.closing_after_send, "the failed send closed the connection");
        cr_assert(seen.handle_valid_after_send, "on_close has not run yet: handle still valid");
        cr_assert_eq(seen.close_depth, 0, "on_close ran inside on_message");
        cr_assert_gt(seen.close_step, seen.message_step, "on_close before on_message returned");
        cr_assert_eq(seen.reason, TERN_CLOSE_OUTLIMIT);
        cr_assert_eq(seen.close_err, TERN_EOUTLIMIT);
}

/* ---- close and abort from inside a callback ---- */

static bool use_abort;

static void close_self(tern_conn *c, struct tern_buf *in)
{
        tern_buf_consume(in, tern_buf_len(in));
        seen.in_callback++;
        if (use_abort)
                tern_conn_abort(c);
        else
                tern_conn_close(c); /* nothing queued: closes at once */
        /* Still a valid pointer and handle; sends are refused. */
        cr_assert(tern_conn_closing(c));
        cr_assert_eq(tern_conn_send(c, "y", 1), -EPIPE);
        seen.message_step = next_step();
        seen.in_callback--;
}

Test(conn, close_and_abort_report_on_close_after_the_callback_returns)
{
        static const struct tern_conn_ops ops = {.on_message = close_self, .on_close = rec_close};
        for (int k = 0; k < 2; k++) {
                reset();
                use_abort = k == 1;
                tern_server *s = start(&ops, 0, 0);
                int fd = tu_connect(tern_server_port(s), false);
                cr_assert_eq(tu_write_all(fd, "x", 1), 0);
                cr_assert_eq(tu_wait_eof(fd, 5000), 0);
                cr_assert(tu_wait_until(closed_pred, NULL, 5000));
                su_stop(s);
                close(fd);
                cr_assert_eq(seen.close_depth, 0, "on_close ran inside tern_conn_%s",
                             use_abort ? "abort" : "close");
                cr_assert_gt(seen.close_step, seen.message_step);
                cr_assert_eq(seen.reason, TERN_CLOSE_LOCAL);
        }
}

/* ---- water marks and write-complete ---- */

static void send_past_high_water(tern_conn *c, struct tern_buf *in)
{
        tern_buf_consume(in, tern_buf_len(in));
        seen.in_callback++;
        void *big = calloc(1, BIG);
        cr_assert_eq(tern_conn_send(c, big, BIG), 0);
        free(big);
        cr_assert_eq(seen.high_step, 0, "on_high_water ran inside tern_conn_send");
        seen.message_step = next_step();
        seen.in_callback--;
}

static bool low_pred(void *p)
{
        (void)p;
        return __atomic_load_n(&seen.low_step, __ATOMIC_ACQUIRE) > 0 &&
               __atomic_load_n(&seen.written_step, __ATOMIC_ACQUIRE) > 0;
}

Test(conn, water_marks_run_from_the_loop_not_inside_the_send)
{
        reset();
        static const struct tern_conn_ops ops = {.on_message = send_past_high_water,
                                                 .on_high_water = rec_high,
                                                 .on_low_water = rec_low,
                                                 .on_write_complete = rec_written,
                                                 .on_close = rec_close};
        tern_server *s = start(&ops, 0, 256u << 10);
        int fd = tu_connect(tern_server_port(s), false);
        cr_assert_eq(tu_write_all(fd, "x", 1), 0);
        /* Read it all: the queue drains, low water and write-complete follow. */
        uint8_t *buf = malloc(BIG);
        cr_assert_eq(tu_read_exact(fd, buf, BIG, 10000), 0);
        free(buf);
        cr_assert(tu_wait_until(low_pred, NULL, 5000), "low water / write complete never ran");
        close(fd);
        cr_assert(tu_wait_until(closed_pred, NULL, 5000));
        su_stop(s);
        cr_assert_gt(seen.high_step, seen.message_step, "high water before the send returned");
        cr_assert_eq(seen.high_depth, 0);
        cr_assert_eq(seen.low_depth, 0);
        cr_assert_eq(seen.written_depth, 0);
        cr_assert_gt(seen.low_step, seen.high_step);
        cr_assert_gt(seen.written_step, seen.high_step);
}

static void corked_burst(tern_conn *c, struct tern_buf *in)
{
        tern_buf_consume(in, tern_buf_len(in));
        seen.in_callback++;
        tern_conn_cork(c);
        for (int i = 0; i < 10; i++)
                cr_assert_eq(tern_conn_send(c, "abc\n", 4), 0);
        tern_conn_uncork(c); /* flushes all 40 bytes at once */
        cr_assert_eq(seen.written_step, 0, "on_write_complete ran inside tern_conn_uncork");
        seen.message_step = next_step();
        seen.in_callback--;
}

static bool written_pred(void *p)
{
        (void)p;
        return __atomic_load_n(&seen.written_step, __ATOMIC_ACQUIRE) > 0;
}

Test(conn, write_complete_after_uncork_runs_after_the_callback)
{
        reset();
        static const struct tern_conn_ops ops = {
            .on_message = corked_burst, .on_write_complete = rec_written, .on_close = rec_close};
        tern_server *s = start(&ops, 0, 0);
        int fd = tu_connect(tern_server_port(s), false);
        cr_assert_eq(tu_write_all(fd, "x", 1), 0);
        char got[40];
        cr_assert_eq(tu_read_exact(fd, got, sizeof(got), 5000), 0);
        cr_assert(tu_wait_until(written_pred, NULL, 5000));
        close(fd);
        cr_assert(tu_wait_until(closed_pred, NULL, 5000));
        su_stop(s);
        cr_assert_eq(seen.written_depth, 0);
        cr_assert_gt(seen.written_step, seen.message_step);
}

/* ---- batching what others send to a connection ---- */

static tern_handle fan_target; /* written on the worker, before the burst */

static void remember_target(tern_conn *c)
{
        if (!fan_target)
                fan_target = tern_conn_handle(c);
}

static void fan_out(tern_conn *c, struct tern_buf *in)
{
        tern_buf_consume(in, tern_buf_len(in));
        if (tern_conn_handle(c) == fan_target)
                return;
        /* Ten lines to another connection of this loop: batched, one write. */
        tern_handle h = fan_target;
        for (int i = 0; i < 10; i++)
                cr_assert_eq(tern_handle_send(tern_conn_server(c), h, "line\n", 5), 0);
        /* And a reply to the sender itself: written at once. */
        cr_assert_eq(tern_conn_send(c, "ok\n", 3), 0);
}

static tern_conn *by_handle;

static void find_target(tern_conn *c, void *arg)
{
        by_handle = c;
        (void)arg;
}

static void fan_out_direct(tern_conn *c, struct tern_buf *in)
{
        tern_buf_consume(in, tern_buf_len(in));
        if (tern_conn_handle(c) == fan_target)
                return;
        tern_conn *t = by_handle;
        for (int i = 0; i < 10; i++)
                cr_assert_eq(tern_conn_send(t, "line\n", 5), 0);
        cr_assert_eq(tern_conn_send(c, "ok\n", 3), 0);
}

static void burst_case(const struct tern_conn_ops *ops, bool resolve)
{
        fan_target = TERN_HANDLE_NONE;
        by_handle = NULL;
        tern_server *s = start(ops, 0, 0);
        int target = tu_connect(tern_server_port(s), false);
        cr_assert_geq(target, 0);
        for (int t = 0; t < 5000 && !__atomic_load_n(&fan_target, __ATOMIC_ACQUIRE); t++)
                usleep(1000);
        cr_assert_neq(fan_target, TERN_HANDLE_NONE);
        if (resolve) {
                cr_assert_eq(tern_handle_post(s, fan_target, find_target, NULL), 0);
                for (int t = 0; t < 5000 && !__atomic_load_n(&by_handle, __ATOMIC_ACQUIRE); t++)
                        usleep(1000);
        }
        int sender = tu_connect(tern_server_port(s), false);
        char ok[3];
        struct tern_stats before, after;
        cr_assert_eq(tu_write_all(sender, "go\n", 3), 0);
        cr_assert_eq(tu_read_exact(sender, ok, 3, 5000), 0);
        char got[50];
        cr_assert_eq(tu_read_exact(target, got, sizeof(got), 5000), 0, "all ten lines arrive");
        tern_server_stats(s, &before, NULL);
        /* Measure a second burst once everything settled. */
        cr_assert_eq(tu_write_all(sender, "go\n", 3), 0);
        cr_assert_eq(tu_read_exact(sender, ok, 3, 5000), 0);
        cr_assert_eq(tu_read_exact(target, got, sizeof(got), 5000), 0);
        usleep(20000);
        tern_server_stats(s, &after, NULL);
        cr_assert_eq(memcmp(got, "line\nline\n", 10), 0);
        /* One write for the reply, one for the ten lines. */
        cr_assert_eq(after.writes - before.writes, 2, "%lu writes for one reply and ten lines",
                     (unsigned long)(after.writes - before.writes));
        close(sender);
        close(target);
        su_stop(s);
}

Test(conn, lines_sent_to_another_connection_in_one_iteration_leave_in_one_write)
{
        /* From inside the sender's callback, on the same loop. */
        static const struct tern_conn_ops direct = {.on_open = remember_target,
                                                    .on_message = fan_out_direct};
        burst_case(&direct, true);
        /* Through the mailbox (tern_handle_send): ten tasks, one write. */
        static const struct tern_conn_ops posted = {.on_open = remember_target,
                                                    .on_message = fan_out};
        burst_case(&posted, false);
}

/* ---- the queued-output gauge ---- */

static void queue_big(tern_conn *c, struct tern_buf *in)
{
        tern_buf_consume(in, tern_buf_len(in));
        void *big = calloc(1, BIG);
        cr_assert_eq(tern_conn_send(c, big, BIG), 0);
        free(big);
}

static uint64_t queued_now(tern_server *s)
{
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        return st.queued_bytes;
}

static bool queued_zero(void *s)
{
        return queued_now(s) == 0;
}

/* struct tern_stats.queued_bytes follows what the kernel has not taken:
 * most of 8 MiB while the peer does not read, nothing once it has read
 * everything, and nothing after a connection that still had output queued
 * is gone. */
Test(conn, queued_bytes_gauge_follows_the_output_queue)
{
        reset();
        static const struct tern_conn_ops ops = {.on_message = queue_big, .on_close = rec_close};
        tern_server *s = start(&ops, 0, 0);
        int fd = tu_connect(tern_server_port(s), false);
        cr_assert_eq(tu_write_all(fd, "x", 1), 0);
        for (int i = 0; i < 500 && queued_now(s) == 0; i++)
                usleep(10 * 1000);
        uint64_t q = queued_now(s);
        cr_assert_gt(q, BIG / 2, "only %lu bytes counted queued", (unsigned long)q);
        cr_assert_leq(q, BIG);
        uint8_t *buf = malloc(BIG);
        cr_assert_eq(tu_read_exact(fd, buf, BIG, 10000), 0);
        cr_assert(tu_wait_until(queued_zero, s, 5000), "%lu bytes still counted after all was read",
                  (unsigned long)queued_now(s));

        /* Again, and this time the peer resets with the output queued. */
        cr_assert_eq(tu_write_all(fd, "x", 1), 0);
        for (int i = 0; i < 500 && queued_now(s) == 0; i++)
                usleep(10 * 1000);
        /* Less than before: the socket's buffers grew while it was read. */
        cr_assert_gt(queued_now(s), 0);
        tu_set_rst_on_close(fd);
        close(fd);
        cr_assert(tu_wait_until(queued_zero, s, 5000), "%lu bytes counted after the close",
                  (unsigned long)queued_now(s));
        free(buf);
        su_stop(s);
}
