/* The loop on its own: no server. Its mailbox, slot table, timers, stop,
 * and the timer ownership rule between loops. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop_internal.h"
#include "srvutil.h"
#include "testutil.h"

enum { PRODUCERS = 4, PER_PRODUCER = 25000 };

static void *run_thread(void *arg)
{
        tern_loop *l = arg;
        cr_assert_eq(tern_loop_run(l), 0);
        return NULL;
}

/* A loop running on a thread of its own, for tests that talk to it. */
static tern_loop *start_loop(pthread_t *th)
{
        tern_loop *l = tern_loop_new(NULL);
        cr_assert_not_null(l);
        cr_assert_eq(pthread_create(th, NULL, run_thread, l), 0);
        return l;
}

static void stop_loop(tern_loop *l, pthread_t th)
{
        tern_loop_stop(l);
        cr_assert_eq(pthread_join(th, NULL), 0);
        tern_loop_free(l);
        su_assert_nothing_live();
}

struct order_state {
        int next[PRODUCERS]; /* touched only on the loop thread */
        int out_of_order;
        int ran;
};

struct order_task {
        struct order_state *st;
        int producer, seq;
};

static void order_cb(tern_loop *l, void *arg)
{
        struct order_task *t = arg;
        if (t->st->next[t->producer] != t->seq)
                t->st->out_of_order++;
        t->st->next[t->producer] = t->seq + 1;
        __atomic_fetch_add(&t->st->ran, 1, __ATOMIC_RELEASE);
        free(t);
}

struct producer {
        tern_loop *loop;
        struct order_state *st;
        int id, failed;
};

static void *produce(void *p)
{
        struct producer *pr = p;
        for (int i = 0; i < PER_PRODUCER; i++) {
                struct order_task *t = malloc(sizeof(*t));
                *t = (struct order_task){pr->st, pr->id, i};
                if (tern_loop_post(pr->loop, order_cb, t)) {
                        free(t);
                        pr->failed++;
                }
        }
        return NULL;
}

Test(loop, mailbox_runs_every_task_once_in_per_producer_order)
{
        pthread_t lt;
        tern_loop *l = start_loop(&lt);
        struct order_state st = {0};
        pthread_t th[PRODUCERS];
        struct producer pr[PRODUCERS];
        for (int i = 0; i < PRODUCERS; i++) {
                pr[i] = (struct producer){l, &st, i, 0};
                pthread_create(&th[i], NULL, produce, &pr[i]);
        }
        for (int i = 0; i < PRODUCERS; i++) {
                pthread_join(th[i], NULL);
                cr_assert_eq(pr[i].failed, 0);
        }
        for (int t = 0;
             t < 10000 && __atomic_load_n(&st.ran, __ATOMIC_ACQUIRE) < PRODUCERS * PER_PRODUCER;
             t++)
                usleep(1000);
        cr_assert_eq(st.ran, PRODUCERS * PER_PRODUCER);
        cr_assert_eq(st.out_of_order, 0);
        struct tern_stats stats;
        tern_loop_stats(l, &stats);
        /* Wake-ups are batched: far fewer eventfd wake-ups than tasks. */
        cr_assert_lt(stats.wakeups, (uint64_t)PRODUCERS * PER_PRODUCER);
        stop_loop(l, lt);
}

struct race {
        tern_loop *loop;
        long accepted, refused;
        long ran;
        bool stop;
};

static void race_cb(tern_loop *l, void *arg)
{
        struct race *r = arg;
        __atomic_fetch_add(&r->ran, 1, __ATOMIC_RELAXED);
}

static void *race_producer(void *p)
{
        struct race *r = p;
        while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
                int e = tern_loop_post(r->loop, race_cb, r);
                if (e == 0)
                        __atomic_fetch_add(&r->accepted, 1, __ATOMIC_RELAXED);
                else if (e == -ESHUTDOWN)
                        __atomic_fetch_add(&r->refused, 1, __ATOMIC_RELAXED);
                else
                        cr_assert_fail("unexpected %d", e);
        }
        return NULL;
}

Test(loop, posts_racing_a_shutdown_run_once_or_are_refused)
{
        for (int round = 0; round < 10; round++) {
                pthread_t lt;
                tern_loop *l = start_loop(&lt);
                struct race r = {.loop = l};
                pthread_t th[2];
                for (int i = 0; i < 2; i++)
                        pthread_create(&th[i], NULL, race_producer, &r);
                usleep(2000);
                tern_loop_stop(l);
                cr_assert_eq(pthread_join(lt, NULL), 0);
                /* The loop has finished: posts are refused from now on. */
                usleep(1000);
                __atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
                for (int i = 0; i < 2; i++)
                        pthread_join(th[i], NULL);
                cr_assert_eq(tern_loop_post(l, race_cb, &r), -ESHUTDOWN);
                /* Exactly the accepted ones ran: none lost, none twice. */
                cr_assert_eq(r.ran, r.accepted, "accepted %ld ran %ld", r.accepted, r.ran);
                tern_loop_free(l);
                su_assert_nothing_live();
        }
}

static void nop_events(struct tern__io *io, uint32_t ev)
{
}

static void nop_free(struct tern__io *io)
{
}

static const struct tern__io_kind nop_kind = {
    .name = "test", .on_events = nop_events, .on_free = nop_free};

Test(loop, slot_reuse_makes_old_handles_stale)
{
        tern_loop *l = tern_loop_new(NULL);
        int p[2];
        cr_assert_eq(pipe(p), 0);
        struct tern__io a = {.kind = &nop_kind, .loop = l, .fd = p[0]};
        struct tern__io b = {.kind = &nop_kind, .loop = l, .fd = p[0]};
        cr_assert_eq(tern__io_register(&a, EPOLLIN), 0);
        tern__handle_t ha = tern__io_handle(&a);
        cr_assert_eq(tern__slot_lookup(l, ha), &a);
        cr_assert_eq(tern__handle_index(ha), 0);
        tern__io_release(&a, true);
        cr_assert_null(tern__slot_lookup(l, ha));
        cr_assert_eq(tern__io_register(&b, EPOLLIN), 0);
        tern__handle_t hb = tern__io_handle(&b);
        /* Same slot, new generation: the old handle must not reach b. */
        cr_assert_eq(b.slot, a.slot);
        cr_assert_neq(hb, ha);
        cr_assert_null(tern__slot_lookup(l, ha));
        cr_assert_eq(tern__slot_lookup(l, hb), &b);
        tern__io_release(&b, true);

        /* Many at once: the table grows and every handle stays distinct. */
        enum { N = 3000 };
        static struct tern__io ios[N];
        static tern__handle_t hs[N];
        static int fds[N];
        for (int i = 0; i < N; i++) {
                fds[i] = dup(p[0]);
                cr_assert_geq(fds[i], 0);
                ios[i] = (struct tern__io){.kind = &nop_kind, .loop = l, .fd = fds[i]};
                cr_assert_eq(tern__io_register(&ios[i], EPOLLIN), 0);
                hs[i] = tern__io_handle(&ios[i]);
        }
        for (int i = 0; i < N; i++)
                cr_assert_eq(tern__slot_lookup(l, hs[i]), &ios[i]);
        for (int i = 0; i < N; i++)
                tern__io_release(&ios[i], true);
        for (int i = 0; i < N; i++) {
                cr_assert_null(tern__slot_lookup(l, hs[i]));
                close(fds[i]);
        }
        tern_loop_free(l);
        close(p[0]);
        close(p[1]);
        su_assert_nothing_live();
}

struct ticks {
        struct tern_timer t;
        tern_loop *loop;
        int fired;
};

static void tick_cb(struct tern_timer *t, void *arg)
{
        struct ticks *k = arg;
        if (++k->fired == 3) {
                cr_assert_eq(tern_loop_timer_stop(k->loop, t), 0);
                tern_loop_stop(k->loop);
        }
}

Test(loop, runs_timers_and_stops_on_the_calling_thread_without_a_server)
{
        tern_loop *l = tern_loop_new(NULL);
        cr_assert_not_null(l);
        struct ticks k = {.loop = l};
        tern_timer_init(&k.t, tick_cb, &k);
        cr_assert_eq(tern_loop_timer_start(l, &k.t, 1, 2), 0);
        cr_assert_null(tern_loop_current());
        cr_assert_eq(tern_loop_run(l), 0); /* returns after tick 3 stops it */
        cr_assert_eq(k.fired, 3);
        cr_assert_null(tern_loop_current());
        cr_assert_eq(tern_loop_run(l), -EALREADY, "a loop runs once");
        tern_loop_free(l);
        su_assert_nothing_live();
}

Test(loop, stop_before_run_returns_at_once)
{
        tern_loop *l = tern_loop_new(NULL);
        tern_loop_stop(l);
        int64_t t0 = tu_now_ms();
        cr_assert_eq(tern_loop_run(l), 0);
        cr_assert_lt(tu_now_ms() - t0, 1000);
        tern_loop_free(l);
        su_assert_nothing_live();
}

static void never_cb(struct tern_timer *t, void *arg)
{
        cr_assert_fail("a timer shared between loops fired on the wrong one");
}

Test(loop, a_timer_armed_on_one_loop_is_refused_by_another)
{
        tern_loop *a = tern_loop_new(NULL), *b = tern_loop_new(NULL);
        struct tern_timer t;
        tern_timer_init(&t, never_cb, NULL);
        cr_assert_eq(tern_loop_timer_start(a, &t, 60000, 0), 0);
        cr_assert_eq(tern_loop_timer_start(b, &t, 1, 0), -EBUSY);
        cr_assert_eq(tern_loop_timer_stop(b, &t), -EBUSY);
        cr_assert(tern_timer_armed(&t), "still armed on a, untouched");
        cr_assert_eq(tern_loop_timer_stop(a, &t), 0);
        /* Disarmed, it may go anywhere. */
        cr_assert_eq(tern_loop_timer_start(b, &t, 60000, 0), 0);
        cr_assert_eq(tern_loop_timer_stop(b, &t), 0);
        tern_loop_free(a);
        tern_loop_free(b);
        su_assert_nothing_live();
}

Test(loop, timer_calls_from_another_thread_while_it_runs_are_refused)
{
        pthread_t lt;
        tern_loop *l = start_loop(&lt);
        struct tern_timer t;
        tern_timer_init(&t, never_cb, NULL);
        while (!__atomic_load_n(&l->running, __ATOMIC_ACQUIRE))
                usleep(100);
        cr_assert_eq(tern_loop_timer_start(l, &t, 1, 0), -EPERM);
        cr_assert_eq(tern_loop_timer_stop(l, &t), -EPERM);
        cr_assert_not(tern_timer_armed(&t));
        stop_loop(l, lt);
}

/* The documented mistake: one static timer armed from every worker's
 * on_worker_start. The second loop is refused instead of corrupting the
 * first one's wheel (a segfault at stop, before). */
static struct tern_timer shared_timer;
static int shared_results[2];

static void shared_cb(struct tern_timer *t, void *arg)
{
}

static void shared_start(tern_loop *l, void *user)
{
        shared_results[tern_loop_index(l)] = tern_loop_timer_start(l, &shared_timer, 5, 5);
}

static void shared_stop(tern_loop *l, void *user)
{
        tern_loop_timer_stop(l, &shared_timer);
}

Test(loop, one_timer_shared_by_two_workers_is_refused_not_corrupted)
{
        tern_timer_init(&shared_timer, shared_cb, NULL);
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 2;
        o.on_worker_start = shared_start;
        o.on_worker_stop = shared_stop;
        tern_server *s = su_start(&o);
        usleep(50000);
        su_stop(s);
        int ok = (shared_results[0] == 0) + (shared_results[1] == 0);
        int busy = (shared_results[0] == -EBUSY) + (shared_results[1] == -EBUSY);
        cr_assert_eq(ok, 1, "one loop owns it (%d, %d)", shared_results[0], shared_results[1]);
        cr_assert_eq(busy, 1, "the other is refused (%d, %d)", shared_results[0],
                     shared_results[1]);
}

struct post_stop {
        tern_loop *loop;
        int ran;
};

static void late_task(tern_loop *l, void *arg)
{
        struct post_stop *p = arg;
        p->ran++;
}

static void on_stop_posts(tern_loop *l, void *user)
{
        /* The mailbox is still open in on_stop: this runs in the final drain. */
        cr_assert_eq(tern_loop_post(l, late_task, user), 0);
}

Test(loop, on_start_and_on_stop_run_on_the_loop_and_final_tasks_run)
{
        struct post_stop p = {0};
        struct tern_loop_opts o;
        tern_loop_opts_init(&o);
        o.on_stop = on_stop_posts;
        o.user = &p;
        tern_loop *l = tern_loop_new(&o);
        p.loop = l;
        cr_assert_eq(tern_loop_user(l), &p);
        tern_loop_stop(l);
        cr_assert_eq(tern_loop_run(l), 0);
        cr_assert_eq(p.ran, 1);
        cr_assert_eq(tern_loop_post(l, late_task, &p), -ESHUTDOWN);
        tern_loop_free(l);
        su_assert_nothing_live();
}

/* ---- histograms ---- */

struct slow_pair {
        tern_loop *loop;
        int fds[2][2]; /* two pipes, both readable before the loop runs */
        tern_watch *w[2];
        int done;
        struct tern_timer stop;
};

static void stop_cb(struct tern_timer *t, void *arg)
{
        (void)t;
        tern_loop_stop(arg);
}

/* Each callback takes 20 ms: whichever runs second waited that long. */
static void slow_cb(tern_watch *w, unsigned events, void *arg)
{
        struct slow_pair *sp = arg;
        if (!(events & TERN_WATCH_READ))
                return;
        char c;
        cr_assert_eq(read(tern_watch_fd(w), &c, 1), 1);
        usleep(20000);
        for (int i = 0; i < 2; i++)
                if (sp->w[i] == w)
                        sp->w[i] = NULL;
        tern_watch_free(w);
        /* Stop from a later iteration, so this busy one is measured. */
        if (++sp->done == 2)
                cr_assert_eq(tern_loop_timer_start(sp->loop, &sp->stop, 1, 0), 0);
}

static uint64_t above(const struct tern_hist *h, uint64_t ns)
{
        uint64_t n = 0;
        for (int i = 0; i <= TERN_HIST_BOUNDS; i++)
                if (i == TERN_HIST_BOUNDS || tern_hist_bound_ns(i) > ns)
                        n += h->buckets[i];
        return n;
}

Test(loop, histograms_see_a_slow_iteration_and_a_delayed_callback)
{
        struct slow_pair sp = {.loop = tern_loop_new(NULL)};
        cr_assert_not_null(sp.loop);
        tern_timer_init(&sp.stop, stop_cb, sp.loop);
        for (int i = 0; i < 2; i++) {
                cr_assert_eq(pipe(sp.fds[i]), 0);
                cr_assert_eq(write(sp.fds[i][1], "x", 1), 1);
                sp.w[i] = tern_loop_watch(sp.loop, sp.fds[i][0], TERN_WATCH_READ, slow_cb, &sp);
                cr_assert_not_null(sp.w[i]);
        }
        cr_assert_eq(tern_loop_run(sp.loop), 0);
        cr_assert_eq(sp.done, 2);

        struct tern_hist it, dl;
        tern_loop_histograms(sp.loop, &it, &dl);
        /* One batch of two events: the second callback started >= 20 ms
         * after epoll_wait returned, and that iteration was busy >= 40 ms. */
        cr_assert_geq(above(&dl, 10000000), 1, "no delay over 10 ms recorded");
        cr_assert_geq(dl.sum_ns, 20000000ull, "delay sum %llu ns", (unsigned long long)dl.sum_ns);
        cr_assert_geq(above(&it, 10000000), 1, "no iteration over 10 ms recorded");
        cr_assert_geq(it.sum_ns, 40000000ull, "iteration sum %llu ns",
                      (unsigned long long)it.sum_ns);
        cr_assert_eq(above(&it, 1000000000), 0, "an iteration over 1 s");
        uint64_t iters = 0;
        for (int i = 0; i <= TERN_HIST_BOUNDS; i++)
                iters += it.buckets[i];
        struct tern_stats st;
        tern_loop_stats(sp.loop, &st);
        /* Each iteration is measured when the next one begins to wait: all
         * but the last. */
        cr_assert_eq(iters + 1, st.loop_iters, "%llu measured of %llu iterations",
                     (unsigned long long)iters, (unsigned long long)st.loop_iters);
        cr_assert_eq(tern_hist_bound_ns(-1), UINT64_MAX);
        cr_assert_eq(tern_hist_bound_ns(0), 1000);
        cr_assert_eq(tern_hist_bound_ns(TERN_HIST_BOUNDS - 1), 1000000000);
        tern_loop_free(sp.loop);
        for (int i = 0; i < 2; i++) {
                close(sp.fds[i][0]);
                close(sp.fds[i][1]);
        }
        su_assert_nothing_live();
}
