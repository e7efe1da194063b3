/*
 * Connections under injected faults (core/fault_internal.h): short reads
 * and writes, EINTR, EAGAIN, ECONNRESET on one victim connection's reads,
 * sends and sendmsgs, and ENOMEM from the allocator. Each test streams
 * checksummed data on the victim and on healthy connections at once and
 * asserts that the healthy ones get every byte, that the victim gets every
 * byte (kinds that must be retried) or a correct prefix and a clean close
 * (kinds that end a connection), that the fault really fired, that the
 * server still serves a new client, and that teardown finds nothing alive.
 *
 * EAGAIN and short transfers are made honest by the library: the kernel
 * follows a real one with an epoll edge when data or space arrives, and a
 * fake one comes with the data or space already there, so the test build
 * re-arms the fd (see fault_edge() in net/conn.c). Without that, an
 * edge-triggered loop would wait forever for an edge that a real EAGAIN is
 * guaranteed to get; with it, these tests check that the loop resumes
 * correctly from the point where the transfer stopped.
 */
#include "fault_client.h"

static void teardown(void)
{
        tern__fault_disarm_all();
}

TestSuite(fault_conn, .fini = teardown);

enum { HEALTHY = 3, STREAM = 256 * 1024 };

/*
 * Runs one victim and HEALTHY other clients through a server whose victim
 * connection has @plan armed at @site. Returns the victim's result and its
 * server-side record.
 */
static struct fc_client run_victim(enum tern__fault_site site, struct tern__fault_plan plan,
                                   bool lines, struct fc_conn_rec *rec)
{
        tern_server *s = fc_start(2, lines);
        uint16_t port = tern_server_port(s);
        struct fc_client cs[HEALTHY + 1];
        for (int i = 0; i <= HEALTHY; i++) {
                cs[i] = fc_client(port, 100 + (uint32_t)i, STREAM);
                cs[i].lines = lines;
                cs[i].line_max = 3000;
        }
        struct fc_conn_rec victim = fc_record_of(cs[0].fd);
        plan.fd = victim.fd;
        for (int i = 1; i <= HEALTHY; i++)
                fc_record_of(cs[i].fd);
        tern__fault_arm(site, &plan);
        fc_run_all(cs, HEALTHY + 1);
        tern__fault_disarm_all();

        for (int i = 1; i <= HEALTHY; i++)
                cr_assert_eq(cs[i].outcome, FC_COMPLETE, "healthy client %d: %s, %zu of %zu", i,
                             fc_outcome_str(cs[i].outcome), cs[i].echoed, cs[i].total);
        cr_assert_gt(tern__fault_injected(site), 0, "the fault never fired");
        fc_assert_serving(port, lines);
        /* The record of how the victim's connection ended, if it did. */
        usleep(20000);
        *rec = fc_record_now(victim);
        su_stop(s);
        return cs[0];
}

/* The victim must get every byte back, and never be closed for an error. */
static void victim_completes(enum tern__fault_site site, struct tern__fault_plan plan, bool lines)
{
        struct fc_conn_rec r = {0};
        struct fc_client v = run_victim(site, plan, lines, &r);
        cr_assert_eq(v.outcome, FC_COMPLETE, "victim: %s, %zu of %zu bytes echoed",
                     fc_outcome_str(v.outcome), v.echoed, v.total);
        cr_assert(!r.closed || r.reason == TERN_CLOSE_PEER, "victim closed: %s %s",
                  tern_close_reason_str(r.reason), tern_strerror(r.err));
}

/* The victim must get a correct prefix, then a close for @err. */
static void victim_closed_with(enum tern__fault_site site, struct tern__fault_plan plan, int err)
{
        struct fc_conn_rec r = {0};
        struct fc_client v = run_victim(site, plan, false, &r);
        cr_assert_eq(v.outcome, FC_CLOSED, "victim: %s, %zu of %zu bytes echoed",
                     fc_outcome_str(v.outcome), v.echoed, v.total);
        cr_assert(r.closed, "the server never closed the victim");
        cr_assert_eq(r.reason, TERN_CLOSE_ERROR);
        cr_assert_eq(r.err, err, "closed with %s", tern_strerror(r.err));
}

#define PLAN(...) ((struct tern__fault_plan){__VA_ARGS__})

/* ---- faults the connection must ride out ---- */

Test(fault_conn, eintr_on_read_is_retried)
{
        victim_completes(TERN__FAULT_READ, PLAN(.err = EINTR, .every = 2), false);
}

Test(fault_conn, eintr_on_send_and_sendmsg_is_retried)
{
        victim_completes(TERN__FAULT_SEND, PLAN(.err = EINTR, .every = 2), false);
        fc_echo_halves = true;
        victim_completes(TERN__FAULT_SENDMSG, PLAN(.err = EINTR, .every = 2), false);
}

Test(fault_conn, eagain_on_read_resumes_at_the_next_edge)
{
        victim_completes(TERN__FAULT_READ, PLAN(.err = EAGAIN, .every = 2), false);
}

Test(fault_conn, eagain_on_send_queues_and_flushes_on_epollout)
{
        victim_completes(TERN__FAULT_SEND, PLAN(.err = EAGAIN, .every = 2), false);
        fc_echo_halves = true;
        victim_completes(TERN__FAULT_SENDMSG, PLAN(.err = EAGAIN, .every = 2), false);
}

/* Every read returns at most 7 bytes: the rest waits for the next edge. */
Test(fault_conn, short_reads_lose_nothing)
{
        victim_completes(TERN__FAULT_READ, PLAN(.short_len = 7, .every = 1), false);
}

/* The kernel takes 100 bytes of every other write: the rest is queued. */
Test(fault_conn, short_writes_queue_the_rest)
{
        victim_completes(TERN__FAULT_SEND, PLAN(.short_len = 100, .every = 2), false);
        fc_echo_halves = true; /* a cut inside the first or the second iovec */
        victim_completes(TERN__FAULT_SENDMSG, PLAN(.short_len = 1000, .every = 2), false);
}

/* Line frames split at every 5th byte, the rest through the input buffer. */
Test(fault_conn, short_reads_under_a_line_codec)
{
        victim_completes(TERN__FAULT_READ, PLAN(.short_len = 5, .every = 1), true);
}

/* ---- faults that end the connection ---- */

Test(fault_conn, econnreset_on_read_closes_only_the_victim)
{
        victim_closed_with(TERN__FAULT_READ, PLAN(.err = ECONNRESET, .after = 1, .limit = 1),
                           -ECONNRESET);
}

Test(fault_conn, econnreset_on_send_closes_only_the_victim)
{
        victim_closed_with(TERN__FAULT_SEND, PLAN(.err = ECONNRESET, .after = 1, .limit = 1),
                           -ECONNRESET);
}

/* ---- out of memory ---- */

/*
 * Allocations of 256 KiB and more fail; only the victim needs one, because
 * it sends one 600 KB line that its input buffer must hold whole. The
 * healthy clients' lines are short; their input buffers, which also take
 * whatever one read brought (up to the 64 KiB spill), stay at 128 KiB.
 */
Test(fault_conn, enomem_growing_input_closes_only_that_connection)
{
        tern_server *s = fc_start(2, true);
        uint16_t port = tern_server_port(s);
        struct fc_client cs[HEALTHY + 1];
        for (int i = 0; i <= HEALTHY; i++) {
                cs[i] = fc_client(port, 200 + (uint32_t)i, STREAM);
                cs[i].lines = true;
                cs[i].line_max = 1000;
                fc_record_of(cs[i].fd);
        }
        cs[0].total = 600000;
        cs[0].line_max = 1 << 20; /* first line ends at a random point past 600000 */
        cs[0].seed = 1;
        struct fc_conn_rec victim = fc_record_of(cs[0].fd);
        struct tern__fault_plan p = {.err = ENOMEM, .every = 1, .min_size = 256 * 1024};
        tern__fault_arm(TERN__FAULT_ALLOC, &p);
        fc_run_all(cs, HEALTHY + 1);
        for (int i = 1; i <= HEALTHY; i++)
                cr_assert_eq(cs[i].outcome, FC_COMPLETE, "healthy client %d: %s, %zu of %zu", i,
                             fc_outcome_str(cs[i].outcome), cs[i].echoed, cs[i].total);
        cr_assert_eq(cs[0].outcome, FC_CLOSED, "victim: %s", fc_outcome_str(cs[0].outcome));
        cr_assert_gt(tern__fault_injected(TERN__FAULT_ALLOC), 0);
        usleep(20000);
        victim = fc_record_now(victim);
        cr_assert(victim.closed);
        cr_assert_eq(victim.reason, TERN_CLOSE_ERROR);
        cr_assert_eq(victim.err, -ENOMEM);
        tern__fault_disarm_all();
        /* With memory back, the same long line goes through. */
        struct fc_client again = fc_client(port, 1, 600000);
        again.lines = true;
        again.line_max = 1 << 20;
        fc_run(&again);
        cr_assert_eq(again.outcome, FC_COMPLETE, "%s", fc_outcome_str(again.outcome));
        su_stop(s);
}

/*
 * The victim sends 8 MB and reads nothing for a while, so its echo piles
 * up in the output buffer, whose growth past 64 KiB fails.
 */
Test(fault_conn, enomem_growing_output_closes_only_that_connection)
{
        tern_server *s = fc_start(1, false);
        uint16_t port = tern_server_port(s);
        struct fc_client cs[HEALTHY];
        for (int i = 0; i < HEALTHY; i++) {
                cs[i] = fc_client(port, 300 + (uint32_t)i, STREAM);
                fc_record_of(cs[i].fd);
        }
        int vfd = tu_connect(port, false);
        int small = 4096;
        setsockopt(vfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        struct fc_conn_rec victim = fc_record_of(vfd);
        struct tern__fault_plan p = {.err = ENOMEM, .every = 1, .min_size = 64 * 1024};
        tern__fault_arm(TERN__FAULT_ALLOC, &p);
        uint8_t *junk = calloc(1, 1 << 16);
        size_t sent = 0;
        for (int i = 0; i < 400 && sent < (8u << 20); i++) {
                ssize_t n = send(vfd, junk, 1 << 16, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n > 0)
                        sent += (size_t)n;
                else if (n < 0 && errno != EAGAIN)
                        break; /* reset: the server closed it */
                else
                        usleep(2000);
        }
        free(junk);
        fc_run_all(cs, HEALTHY);
        for (int i = 0; i < HEALTHY; i++)
                cr_assert_eq(cs[i].outcome, FC_COMPLETE, "healthy client %d: %s", i,
                             fc_outcome_str(cs[i].outcome));
        /* Read its echo until the server's close shows. */
        uint8_t sink[65536];
        ssize_t n;
        int64_t deadline = fc_now_ms() + 5000;
        fcntl(vfd, F_SETFL, fcntl(vfd, F_GETFL) | O_NONBLOCK);
        while ((n = recv(vfd, sink, sizeof(sink), 0)) != 0 && fc_now_ms() < deadline) {
                if (n < 0 && errno != EAGAIN)
                        break; /* reset */
                if (n < 0)
                        usleep(1000);
        }
        cr_assert(n <= 0 && (n == 0 || errno != EAGAIN), "the victim was not closed");
        close(vfd);
        cr_assert_gt(tern__fault_injected(TERN__FAULT_ALLOC), 0);
        usleep(20000);
        victim = fc_record_now(victim);
        cr_assert(victim.closed);
        cr_assert_eq(victim.reason, TERN_CLOSE_ERROR);
        cr_assert_eq(victim.err, -ENOMEM);
        tern__fault_disarm_all();
        fc_assert_serving(port, false);
        su_stop(s);
}

/*
 * Any allocation of tern's may fail (1 in 20, seeded): accepting, slots,
 * codec state, input and output buffers. Every client must end with a
 * correct stream, complete or cut short by a clean close; none may stall
 * or see a wrong byte, and nothing may leak.
 */
Test(fault_conn, enomem_anywhere_never_corrupts_stalls_or_leaks)
{
        tern_server *s = fc_start(2, true);
        uint16_t port = tern_server_port(s);
        struct tern__fault_plan p = {.err = ENOMEM, .prob_ppm = 50000, .seed = 6};
        tern__fault_arm(TERN__FAULT_ALLOC, &p);
        enum { N = 12 };
        struct fc_client cs[N];
        for (int i = 0; i < N; i++) {
                cs[i] = fc_client(port, 400 + (uint32_t)i, 300000);
                cs[i].lines = true;
                cs[i].line_max = i % 3 == 0 ? 100000 : 2000; /* long lines grow buffers */
                cs[i].chunk = 1000 + 3000 * (size_t)i;
        }
        fc_run_all(cs, N);
        int complete = 0;
        for (int i = 0; i < N; i++) {
                cr_assert(cs[i].outcome == FC_COMPLETE || cs[i].outcome == FC_CLOSED,
                          "client %d: %s, %zu of %zu", i, fc_outcome_str(cs[i].outcome),
                          cs[i].echoed, cs[i].total);
                complete += cs[i].outcome == FC_COMPLETE;
        }
        cr_assert_gt(tern__fault_injected(TERN__FAULT_ALLOC), 0);
        cr_log_info("%d of %d clients complete, %lu of %lu allocations failed", complete, N,
                    (unsigned long)tern__fault_injected(TERN__FAULT_ALLOC),
                    (unsigned long)tern__fault_calls(TERN__FAULT_ALLOC));
        tern__fault_disarm_all();
        fc_assert_serving(port, true);
        su_stop(s);
}
