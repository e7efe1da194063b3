/*
 * tern-bench chat mode's delivery verifier: crafted per-sender streams must be
 * classified as a faulty server would produce them (a drop, a duplicate, a
 * reordered pair, a lost tail) and a clean stream must show no error.
 *
 * Like test_hist.c, the verifier's source is compiled straight into this test:
 * tools/bench is not part of libtern and may not even be configured.
 */
#include "../../../tools/bench/bench_chat.c"
#include "../../../tools/bench/bench_hist.c"
#include "../../../tools/bench/bench_sys.c"

#include <criterion/criterion.h>

/* Feeds @n sequence numbers, then ends the stream with @sent sent. */
static struct bench_chat_verdict feed(const uint64_t *seqs, size_t n, uint64_t sent)
{
        struct bench_chat_stream s = {0};
        struct bench_chat_verdict v = {0};

        for (size_t i = 0; i < n; i++)
                bench_chat_stream_observe(&s, seqs[i], &v);
        bench_chat_stream_finish(&s, sent, &v);
        cr_assert_null(s.gaps, "finish must free the gap list");
        return v;
}

Test(chat_verify, clean_stream_has_no_errors)
{
        uint64_t seqs[100];

        for (size_t i = 0; i < 100; i++)
                seqs[i] = i;
        struct bench_chat_verdict v = feed(seqs, 100, 100);

        cr_assert_eq(v.in_order, 100);
        cr_assert_eq(bench_chat_verdict_errors(&v), 0);
}

Test(chat_verify, dropped_message_is_counted_once)
{
        static const uint64_t seqs[] = {0, 1, 3, 4};
        struct bench_chat_verdict v = feed(seqs, 4, 5);

        cr_assert_eq(v.dropped, 1);
        cr_assert_eq(v.missing, 0);
        cr_assert_eq(v.reordered, 0);
        cr_assert_eq(v.duplicate, 0);
        cr_assert_eq(bench_chat_verdict_errors(&v), 1);
}

Test(chat_verify, reordered_pair_is_late_not_dropped)
{
        static const uint64_t seqs[] = {0, 2, 1, 3};
        struct bench_chat_stream s = {0};
        struct bench_chat_verdict v = {0};

        cr_assert_eq(bench_chat_stream_observe(&s, 0, &v), BENCH_CHAT_IN_ORDER);
        cr_assert_eq(bench_chat_stream_observe(&s, 2, &v), BENCH_CHAT_SKIP);
        cr_assert_eq(bench_chat_stream_observe(&s, 1, &v), BENCH_CHAT_LATE);
        cr_assert_eq(bench_chat_stream_observe(&s, 3, &v), BENCH_CHAT_IN_ORDER);
        bench_chat_stream_finish(&s, 4, &v);
        cr_assert_eq(v.reordered, 1);
        cr_assert_eq(v.dropped, 0);
        cr_assert_eq(v.duplicate, 0);
        cr_assert_eq(v.missing, 0);

        struct bench_chat_verdict w = feed(seqs, 4, 4);
        cr_assert_eq(w.reordered, v.reordered);
        cr_assert_eq(bench_chat_verdict_errors(&w), 1);
}

Test(chat_verify, duplicate_is_not_reordered)
{
        static const uint64_t seqs[] = {0, 1, 1, 2, 0};
        struct bench_chat_verdict v = feed(seqs, 5, 3);

        cr_assert_eq(v.duplicate, 2);
        cr_assert_eq(v.reordered, 0);
        cr_assert_eq(v.dropped, 0);
        cr_assert_eq(v.in_order, 3);
}

Test(chat_verify, late_then_repeated_is_late_then_duplicate)
{
        static const uint64_t seqs[] = {0, 2, 1, 1};
        struct bench_chat_verdict v = feed(seqs, 4, 3);

        cr_assert_eq(v.reordered, 1);
        cr_assert_eq(v.duplicate, 1);
        cr_assert_eq(v.dropped, 0);
}

Test(chat_verify, undelivered_tail_is_missing)
{
        static const uint64_t seqs[] = {0, 1, 2};
        struct bench_chat_verdict v = feed(seqs, 3, 6);

        cr_assert_eq(v.missing, 3);
        cr_assert_eq(v.dropped, 0);
        cr_assert_eq(bench_chat_verdict_errors(&v), 3);

        struct bench_chat_verdict none = feed(NULL, 0, 2);
        cr_assert_eq(none.missing, 2);
}

Test(chat_verify, gaps_beyond_the_tracked_limit_still_count)
{
        uint64_t far = BENCH_CHAT_MAX_GAPS + 10;
        uint64_t seqs[] = {far};
        struct bench_chat_verdict v = feed(seqs, 1, far + 1);

        cr_assert_eq(v.dropped + v.untracked, far);
        cr_assert_eq(v.untracked, 10);
}
