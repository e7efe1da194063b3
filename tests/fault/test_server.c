/*
 * The server under injected faults: accept4() failing with EMFILE, EINTR,
 * ECONNABORTED and the network errors Linux passes on from the new socket,
 * and allocations failing while the server is built and started.
 */
#include "fault_client.h"

static void teardown(void)
{
        tern__fault_disarm_all();
}

TestSuite(fault_server, .fini = teardown);

static struct tern_server_opts echo_opts(int workers)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = workers;
        o.ops = &fc_echo_ops;
        o.bind = "127.0.0.1";
        return o;
}

/* @n clients at once, each must get its full echo. */
static void assert_all_served(uint16_t port, int n)
{
        struct fc_client cs[16];
        for (int i = 0; i < n; i++)
                cs[i] = fc_client(port, 500 + (uint32_t)i, 50000);
        fc_run_all(cs, n);
        for (int i = 0; i < n; i++)
                cr_assert_eq(cs[i].outcome, FC_COMPLETE, "client %d: %s, %zu of %zu", i,
                             fc_outcome_str(cs[i].outcome), cs[i].echoed, cs[i].total);
}

static struct tern_stats stats_of(tern_server *s)
{
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        return st;
}

/* Two workers, accepting on an acceptor thread or on worker 0's loop (which
 * keeps half and hands the other half to worker 1). */
static const enum tern_accept_mode modes[] = {TERN_ACCEPT_THREAD, TERN_ACCEPT_WORKER};
#define NMODES (sizeof(modes) / sizeof(modes[0]))

static tern_server *start_accepting(enum tern_accept_mode mode)
{
        struct tern_server_opts o = echo_opts(2);
        o.accept = mode;
        return su_start(&o);
}

/* Out of descriptors on every other accept: pause, retry, serve everyone. */
static void emfile_pauses_then_serves(enum tern_accept_mode mode)
{
        tern_server *s = start_accepting(mode);
        struct tern__fault_plan p = {.err = EMFILE, .every = 2};
        tern__fault_arm(TERN__FAULT_ACCEPT, &p);
        assert_all_served(tern_server_port(s), 8);
        cr_assert_gt(tern__fault_injected(TERN__FAULT_ACCEPT), 0);
        cr_assert_gt(stats_of(s).accept_errors, 0, "the pause path was not taken");
        tern__fault_disarm_all();
        fc_assert_serving(tern_server_port(s), false);
        su_stop(s);
}

Test(fault_server, emfile_on_accept_pauses_then_serves_everyone)
{
        for (size_t m = 0; m < NMODES; m++)
                emfile_pauses_then_serves(modes[m]);
}

static void retried_without_pause_in(enum tern_accept_mode mode, int err)
{
        tern_server *s = start_accepting(mode);
        struct tern__fault_plan p = {.err = err, .every = 2};
        tern__fault_arm(TERN__FAULT_ACCEPT, &p);
        assert_all_served(tern_server_port(s), 8);
        cr_assert_gt(tern__fault_injected(TERN__FAULT_ACCEPT), 0);
        cr_assert_eq(stats_of(s).accept_errors, 0, "%s paused accepting", strerror(err));
        su_stop(s);
}

static void retried_without_pause(int err)
{
        for (size_t m = 0; m < NMODES; m++)
                retried_without_pause_in(modes[m], err);
}

Test(fault_server, eintr_and_econnaborted_on_accept_are_retried)
{
        retried_without_pause(EINTR);
        retried_without_pause(ECONNABORTED);
}

/*
 * accept(2): Linux passes pending network errors of the new socket on as
 * accept's error; "treat them like EAGAIN by retrying". They concern one
 * connection that is gone, not the listener: no pause, no error log.
 */
Test(fault_server, network_errors_on_accept_are_retried)
{
        const int errs[] = {ENETDOWN, EPROTO,       ENOPROTOOPT, EHOSTDOWN,
                            ENONET,   EHOSTUNREACH, EOPNOTSUPP,  ENETUNREACH};
        for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
                retried_without_pause(errs[i]);
}

/*
 * Every allocation fails while the threads start and the first client is
 * accepted: that client is closed (its connection could not be built), but
 * the acceptor must survive and serve the next one once memory is back.
 */
static void enomem_during_start(enum tern_accept_mode mode)
{
        struct tern_server_opts o = echo_opts(2);
        o.accept = mode;
        tern_server *s = tern_server_new(&o);
        cr_assert_not_null(s);
        struct tern__fault_plan p = {.err = ENOMEM, .every = 1};
        tern__fault_arm(TERN__FAULT_ALLOC, &p);
        cr_assert_eq(tern_server_start(s), 0);
        int fd = tu_connect(tern_server_port(s), false);
        cr_assert_geq(fd, 0);
        cr_assert_eq(tu_wait_eof(fd, 5000), 0, "a connection without memory was not closed");
        close(fd);
        cr_assert_gt(tern__fault_injected(TERN__FAULT_ALLOC), 0);
        tern__fault_disarm_all();
        assert_all_served(tern_server_port(s), 4);
        su_stop(s);
}

Test(fault_server, enomem_during_start_keeps_the_acceptor)
{
        for (size_t m = 0; m < NMODES; m++)
                enomem_during_start(modes[m]);
}

/*
 * tern_server_new with its k-th allocation failing, for every k: it either
 * fails with ENOMEM and leaves no descriptor open (and, under ASan, no
 * memory), or succeeds and serves.
 */
static void new_fails_cleanly(int workers)
{
        struct tern_server_opts o = echo_opts(workers);
        int fds = tu_open_fds();
        int failed = 0;
        for (uint32_t k = 0; k < 100; k++) {
                struct tern__fault_plan p = {.err = ENOMEM, .after = k, .limit = 1};
                tern__fault_arm(TERN__FAULT_ALLOC, &p);
                tern_server *s = tern_server_new(&o);
                bool fired = tern__fault_injected(TERN__FAULT_ALLOC) > 0;
                tern__fault_disarm_all();
                if (!s) {
                        cr_assert(fired, "failed without an injected fault: %s", strerror(errno));
                        cr_assert_eq(errno, ENOMEM, "allocation %u: %s", k + 1, strerror(errno));
                        cr_assert_eq(tu_open_fds(), fds, "allocation %u failed: fds leaked", k + 1);
                        failed++;
                        continue;
                }
                cr_assert_not(fired, "allocation %u failed, yet tern_server_new succeeded", k + 1);
                cr_assert_eq(tern_server_start(s), 0);
                assert_all_served(tern_server_port(s), 2);
                su_stop(s);
                cr_assert_eq(tu_open_fds(), fds);
                cr_assert_gt(failed, 0);
                return;
        }
        cr_assert_fail("tern_server_new made more than 100 allocations");
}

/* 3 workers: an acceptor thread; 1: it accepts on the worker's loop. */
Test(fault_server, server_new_fails_cleanly_at_each_allocation)
{
        new_fails_cleanly(3);
        new_fails_cleanly(1);
}

/* No memory for a new connection's own state: that one client is closed at
 * once and counted (setup_errors), the next one is served as usual. */
Test(fault_server, enomem_setting_up_a_connection_drops_only_that_one)
{
        tern_server *s = fc_start(1, false);
        fc_assert_serving(tern_server_port(s), false); /* slot table grown */
        struct tern__fault_plan p = {.err = ENOMEM, .every = 1, .limit = 1};
        tern__fault_arm(TERN__FAULT_ALLOC, &p);
        int fd = tu_connect(tern_server_port(s), false);
        cr_assert_geq(fd, 0);
        cr_assert_eq(tu_wait_eof(fd, 5000), 0, "the connection with no memory was kept");
        close(fd);
        cr_assert_eq(tern__fault_injected(TERN__FAULT_ALLOC), 1);
        cr_assert_eq(stats_of(s).setup_errors, 1);
        cr_assert_eq(stats_of(s).accepted, 1, "only the first client was accepted");
        fc_assert_serving(tern_server_port(s), false);
        su_stop(s);
}
