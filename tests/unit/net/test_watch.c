/* Watches: any fd on a loop, level-triggered, freed safely from inside. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <sys/socket.h>

#include "srvutil.h"
#include "testutil.h"

struct pipe_watch {
        int fds[2];
        tern_watch *w;
        int calls;
        unsigned last;
        int stop_after;
        bool free_inside;
        int drained;
};

static void on_ready(tern_watch *w, unsigned events, void *arg)
{
        struct pipe_watch *p = arg;
        cr_assert_eq(p->w, w);
        if (events & TERN_WATCH_DRAIN) { /* the loop stops: let it go */
                p->drained++;
                tern_watch_free(w);
                p->w = NULL;
                return;
        }
        p->calls++;
        p->last = events;
        /* Level-triggered: nothing read, so it is ready again next time. */
        if (p->calls == p->stop_after) {
                if (p->free_inside) {
                        tern_watch_free(w);
                        p->w = NULL;
                }
                tern_loop_stop(tern_loop_current());
        }
}

static tern_loop *new_pipe_watch(struct pipe_watch *p, unsigned events)
{
        tern_loop *l = tern_loop_new(NULL);
        cr_assert_not_null(l);
        cr_assert_eq(pipe2(p->fds, O_NONBLOCK | O_CLOEXEC), 0);
        p->w = tern_loop_watch(l, p->fds[0], events, on_ready, p);
        cr_assert_not_null(p->w);
        cr_assert_eq(tern_watch_events(p->w), events);
        return l;
}

static void close_pipe(struct pipe_watch *p)
{
        close(p->fds[0]);
        close(p->fds[1]);
}

Test(watch, readable_fd_is_reported_every_iteration_until_read)
{
        struct pipe_watch p = {.stop_after = 3};
        tern_loop *l = new_pipe_watch(&p, TERN_WATCH_READ);
        cr_assert_eq(write(p.fds[1], "x", 1), 1);
        cr_assert_eq(tern_loop_run(l), 0);
        cr_assert_eq(p.calls, 3, "level-triggered: called while readable");
        cr_assert_eq(p.last, TERN_WATCH_READ);
        cr_assert_eq(p.drained, 1, "told once that the loop drains");
        cr_assert_null(p.w, "freed on the drain notice");
        tern_loop_free(l);
        close_pipe(&p);
        su_assert_nothing_live();
}

Test(watch, free_inside_its_own_callback_is_safe)
{
        struct pipe_watch p = {.stop_after = 1, .free_inside = true};
        tern_loop *l = new_pipe_watch(&p, TERN_WATCH_READ);
        cr_assert_eq(write(p.fds[1], "x", 1), 1);
        cr_assert_eq(tern_loop_run(l), 0);
        cr_assert_eq(p.calls, 1);
        cr_assert_null(p.w);
        tern_loop_free(l);
        close_pipe(&p);
        su_assert_nothing_live();
}

static void stop_cb(struct tern_timer *t, void *arg)
{
        tern_loop_stop(arg);
}

Test(watch, no_interest_no_calls_and_interest_can_change)
{
        struct pipe_watch p = {.stop_after = 1};
        tern_loop *l = new_pipe_watch(&p, 0);
        cr_assert_eq(write(p.fds[1], "x", 1), 1);
        struct tern_timer t;
        tern_timer_init(&t, stop_cb, l);
        cr_assert_eq(tern_loop_timer_start(l, &t, 30, 0), 0);
        cr_assert_eq(tern_loop_run(l), 0);
        cr_assert_eq(p.calls, 0, "a watch with no interest is quiet");
        cr_assert_eq(p.drained, 1);
        tern_loop_free(l);

        /* The write end asks for writes: ready at once. */
        struct pipe_watch q = {.stop_after = 1};
        l = new_pipe_watch(&q, 0);
        tern_watch_free(q.w);
        q.w = tern_loop_watch(l, q.fds[1], 0, on_ready, &q);
        cr_assert_not_null(q.w);
        cr_assert_eq(tern_watch_set(q.w, TERN_WATCH_WRITE), 0);
        cr_assert_eq(tern_watch_events(q.w), TERN_WATCH_WRITE);
        cr_assert_eq(tern_loop_run(l), 0);
        cr_assert_eq(q.calls, 1);
        cr_assert_eq(q.last, TERN_WATCH_WRITE);
        cr_assert_eq(q.drained, 1);
        tern_loop_free(l);
        close_pipe(&p);
        close_pipe(&q);
        su_assert_nothing_live();
}

Test(watch, refuses_a_bad_fd_and_a_second_watch_of_one_fd)
{
        tern_loop *l = tern_loop_new(NULL);
        errno = 0;
        cr_assert_null(tern_loop_watch(l, -1, TERN_WATCH_READ, on_ready, NULL));
        cr_assert_eq(errno, EBADF);
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        tern_watch *w = tern_loop_watch(l, fds[0], TERN_WATCH_READ, on_ready, NULL);
        cr_assert_not_null(w);
        cr_assert_null(tern_loop_watch(l, fds[0], TERN_WATCH_READ, on_ready, NULL));
        cr_assert_eq(errno, EEXIST);
        tern_watch_free(w);
        tern_loop_free(l);
        close(fds[0]);
        close(fds[1]);
        su_assert_nothing_live();
}

/* A hung-up socket with no interest: out of the epoll set, so epoll's
 * always-on HUP/ERR reports cannot spin a level-triggered loop. */
Test(watch, a_hung_up_fd_without_interest_does_not_spin_the_loop)
{
        struct pipe_watch p = {.stop_after = 1000};
        tern_loop *l = tern_loop_new(NULL);
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        p.fds[0] = sv[0];
        p.fds[1] = sv[1];
        p.w = tern_loop_watch(l, sv[0], 0, on_ready, &p);
        cr_assert_not_null(p.w);
        close(sv[1]); /* hung up */
        p.fds[1] = -1;
        struct tern_timer t;
        tern_timer_init(&t, stop_cb, l);
        cr_assert_eq(tern_loop_timer_start(l, &t, 100, 0), 0);
        cr_assert_eq(tern_loop_run(l), 0);
        struct tern_stats st;
        tern_loop_stats(l, &st);
        cr_assert_lt(st.loop_iters, 20, "%lu iterations in 100 ms: spinning",
                     (unsigned long)st.loop_iters);
        cr_assert_eq(p.calls, 0);
        tern_loop_free(l);
        close(sv[0]);
        su_assert_nothing_live();
}

struct late {
        tern_watch *w;
        struct tern_timer t;
        bool told;
        int64_t told_at, freed_at;
};

static void late_free(struct tern_timer *t, void *arg)
{
        struct late *k = arg;
        k->freed_at = tu_now_ms();
        tern_watch_free(k->w);
        k->w = NULL;
}

static void late_cb(tern_watch *w, unsigned events, void *arg)
{
        struct late *k = arg;
        if (!(events & TERN_WATCH_DRAIN))
                return;
        /* Finish up first (a client flushing its last commands): free later. */
        k->told = true;
        k->told_at = tu_now_ms();
        cr_assert_eq(tern_loop_timer_start(tern_watch_loop(w), &k->t, 50, 0), 0);
}

Test(watch, the_drain_waits_for_a_watch_until_it_is_freed)
{
        tern_loop *l = tern_loop_new(NULL);
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        struct late k = {0};
        tern_timer_init(&k.t, late_free, &k);
        k.w = tern_loop_watch(l, fds[0], TERN_WATCH_READ, late_cb, &k);
        cr_assert_eq(tern_watch_fd(k.w), fds[0]);
        tern_loop_stop(l);
        cr_assert_eq(tern_loop_run(l), 0);
        cr_assert(k.told);
        cr_assert_null(k.w, "run returned before the watch was freed");
        cr_assert_geq(k.freed_at - k.told_at, 50);
        tern_loop_free(l);
        close(fds[0]);
        close(fds[1]);
        su_assert_nothing_live();
}

static void ignore_cb(tern_watch *w, unsigned events, void *arg)
{
}

Test(watch, the_drain_deadline_ends_the_wait_for_a_watch_never_freed)
{
        struct tern_loop_opts o;
        tern_loop_opts_init(&o);
        o.drain_timeout_ms = 100;
        tern_loop *l = tern_loop_new(&o);
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        tern_watch *w = tern_loop_watch(l, fds[0], TERN_WATCH_READ, ignore_cb, NULL);
        tern_loop_stop(l);
        int64_t t0 = tu_now_ms();
        cr_assert_eq(tern_loop_run(l), 0);
        int64_t took = tu_now_ms() - t0;
        cr_assert(took >= 100 && took < 3000, "run took %ld ms", (long)took);
        tern_watch_free(w); /* still the owner's, after run */
        tern_loop_free(l);
        close(fds[0]);
        close(fds[1]);
        su_assert_nothing_live();
}
