/* The loop's mailbox and its handle slot table. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "conn_internal.h"
#include "loop_internal.h"
#include "server_internal.h"
#include "srvutil.h"

enum { PRODUCERS = 4, PER_PRODUCER = 25000 };

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

static tern_server *bare_server(int workers)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = workers;
        return su_start(&o);
}

Test(loop, mailbox_runs_every_task_once_in_per_producer_order)
{
        tern_server *s = bare_server(1);
        struct order_state st = {0};
        pthread_t th[PRODUCERS];
        struct producer pr[PRODUCERS];
        for (int i = 0; i < PRODUCERS; i++) {
                pr[i] = (struct producer){tern_server_loop(s, 0), &st, i, 0};
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
        tern_server_stats(s, &stats, NULL);
        /* Wake-ups are batched: far fewer eventfd wake-ups than tasks. */
        cr_assert_lt(stats.wakeups, (uint64_t)PRODUCERS * PER_PRODUCER);
        su_stop(s);
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
                tern_server *s = bare_server(1);
                struct race r = {.loop = tern_server_loop(s, 0)};
                pthread_t th[2];
                for (int i = 0; i < 2; i++)
                        pthread_create(&th[i], NULL, race_producer, &r);
                usleep(2000);
                tern_server_stop(s);
                cr_assert_eq(tern_server_wait(s), 0);
                /* The loop has finished: posts are refused from now on. */
                usleep(1000);
                __atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
                for (int i = 0; i < 2; i++)
                        pthread_join(th[i], NULL);
                cr_assert_eq(tern_loop_post(r.loop, race_cb, &r), -ESHUTDOWN);
                /* Exactly the accepted ones ran: none lost, none twice. */
                cr_assert_eq(r.ran, r.accepted, "accepted %ld ran %ld", r.accepted, r.ran);
                tern_server_free(s);
                su_assert_nothing_live();
        }
}

Test(loop, slot_reuse_makes_old_handles_stale)
{
        tern_server *s = bare_server(1);
        tern_server_stop(s);
        tern_server_wait(s);
        /* The loop thread is gone: drive its slot table directly. */
        struct tern_loop *l = tern_server_loop(s, 0);
        struct tern_conn a, b;
        uint32_t sa, sb;
        cr_assert_eq(tern__slot_alloc(l, &a, &sa), 0);
        tern_handle ha = tern__slot_handle(l, sa);
        cr_assert_eq(tern__slot_lookup(l, ha), &a);
        cr_assert_eq(tern__handle_worker(ha), 0);
        tern__slot_free(l, sa);
        cr_assert_null(tern__slot_lookup(l, ha));
        cr_assert_eq(tern__slot_alloc(l, &b, &sb), 0);
        tern_handle hb = tern__slot_handle(l, sb);
        /* Same slot, new generation: the old handle must not reach b. */
        cr_assert_eq(sb, sa);
        cr_assert_neq(hb, ha);
        cr_assert_null(tern__slot_lookup(l, ha));
        cr_assert_eq(tern__slot_lookup(l, hb), &b);
        tern__slot_free(l, sb);

        /* Many at once: the table grows and every handle stays distinct. */
        enum { N = 5000 };
        static struct tern_conn cs[N];
        static uint32_t ss[N];
        static tern_handle hs[N];
        for (int i = 0; i < N; i++) {
                cr_assert_eq(tern__slot_alloc(l, &cs[i], &ss[i]), 0);
                hs[i] = tern__slot_handle(l, ss[i]);
        }
        for (int i = 0; i < N; i++)
                cr_assert_eq(tern__slot_lookup(l, hs[i]), &cs[i]);
        for (int i = 0; i < N; i++)
                tern__slot_free(l, ss[i]);
        for (int i = 0; i < N; i++)
                cr_assert_null(tern__slot_lookup(l, hs[i]));
        tern_server_free(s);
}
