/* Log lines: JSON escaping (every line one object that parses, whatever the
 * message holds) and the per-call-site rate limit. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs @fn with stderr captured; returns what it wrote (static buffer). */
static const char *capture(void (*fn)(void))
{
        static char out[16384];
        int p[2];
        cr_assert_eq(pipe(p), 0);
        int saved = dup(STDERR_FILENO);
        dup2(p[1], STDERR_FILENO);
        fn();
        dup2(saved, STDERR_FILENO);
        close(saved);
        close(p[1]);
        size_t n = 0;
        ssize_t r;
        while (n < sizeof(out) - 1 && (r = read(p[0], out + n, sizeof(out) - 1 - n)) > 0)
                n += (size_t)r;
        close(p[0]);
        out[n] = '\0';
        return out;
}

/* The value of "msg" in a JSON line, as written (still escaped). */
static const char *json_msg(const char *line, char *buf, size_t cap)
{
        const char *m = strstr(line, "\"msg\":\"");
        cr_assert_not_null(m, "no msg in %s", line);
        m += 7;
        const char *end = strstr(m, "\"}\n");
        cr_assert_not_null(end, "line does not end as an object: %s", line);
        cr_assert_eq(end[3], '\0', "more than one line: %s", line);
        size_t n = (size_t)(end - m);
        cr_assert_lt(n, cap);
        memcpy(buf, m, n);
        buf[n] = '\0';
        return buf;
}

static void log_awkward(void)
{
        tern_log_set_format(TERN_LOG_JSON);
        /* quote, backslash, newline, CR, tab, a control byte, valid UTF-8
         * (e-acute), a stray byte, an overlong '/' and a lone surrogate */
        tern_warn("q\"b\\n\nr\rt\tc\x01 \xc3\xa9 \xff \xc0\xaf \xed\xa0\x80 end");
}

Test(log, json_line_is_one_escaped_object)
{
        const char *line = capture(log_awkward);
        cr_assert(strncmp(line, "{\"ts\":\"", 7) == 0, "%s", line);
        cr_assert_not_null(strstr(line, "\"level\":\"warn\""), "%s", line);
        cr_assert_not_null(strstr(line, "\"thread\":\"main\""), "%s", line);
        char buf[1024];
        cr_assert_str_eq(json_msg(line, buf, sizeof(buf)),
                         "q\\\"b\\\\n\\nr\\rt\\tc\\u0001 \xc3\xa9 \\ufffd \\ufffd\\ufffd "
                         "\\ufffd\\ufffd\\ufffd end");
}

static void log_controls(void)
{
        tern_log_set_format(TERN_LOG_JSON);
        char msg[701];
        memset(msg, '\x02', 700);
        msg[700] = '\0';
        tern_error("%s", msg);
}

Test(log, json_long_escapes_stay_whole)
{
        /* 700 control bytes escape to 4200: the line must still close. */
        const char *line = capture(log_controls);
        char buf[8192];
        const char *m = json_msg(line, buf, sizeof(buf));
        cr_assert_eq(strlen(m), 700 * 6, "escaped to %zu bytes", strlen(m));
        cr_assert_not_null(strstr(line, "\"level\":\"error\""), "%s", line);
}

static void log_thread_name(void)
{
        tern_log_set_format(TERN_LOG_JSON);
        tern_log_set_thread_name("w\"1");
        tern_info("x");
}

Test(log, json_thread_name_escaped)
{
        const char *line = capture(log_thread_name);
        cr_assert_not_null(strstr(line, "\"thread\":\"w\\\"1\""), "%s", line);
}

static void log_text(void)
{
        tern_log_set_format(TERN_LOG_TEXT);
        tern_warn("plain \"%d\"", 7);
}

Test(log, text_line_unchanged)
{
        const char *line = capture(log_text);
        cr_assert_not_null(strstr(line, " WARN  [main] plain \"7\"\n"), "%s", line);
        cr_assert_null(strchr(line, '{'), "%s", line);
}

Test(log, limit_is_a_token_bucket)
{
        struct tern_log_limit rl = {.interval_ms = 1000, .burst = 3};
        uint64_t sup = 99;
        for (int i = 0; i < 3; i++)
                cr_assert(tern_log_limit_take(&rl, 10000, &sup), "line %d of the burst", i);
        cr_assert_eq(sup, 0);
        cr_assert_not(tern_log_limit_take(&rl, 10000, &sup));
        cr_assert_not(tern_log_limit_take(&rl, 10000, &sup));
        cr_assert_not(tern_log_limit_take(&rl, 10999, &sup), "a token takes the full interval");
        cr_assert(tern_log_limit_take(&rl, 11000, &sup));
        cr_assert_eq(sup, 3, "suppressed %llu, want 3", (unsigned long long)sup);
        cr_assert_not(tern_log_limit_take(&rl, 11000, &sup));
        /* Quiet for long: the bucket is full again, burst and no more. */
        for (int i = 0; i < 3; i++)
                cr_assert(tern_log_limit_take(&rl, 60000, &sup), "refilled line %d", i);
        cr_assert_not(tern_log_limit_take(&rl, 60000, &sup));
}

Test(log, limit_defaults)
{
        struct tern_log_limit rl = {0};
        uint64_t sup;
        int allowed = 0;
        for (int i = 0; i < 50; i++)
                allowed += tern_log_limit_take(&rl, 5000, &sup);
        cr_assert_eq(allowed, 10, "default burst: %d", allowed);
        cr_assert(tern_log_limit_take(&rl, 6000, &sup), "one per second");
        cr_assert_eq(sup, 40);
}

struct racer {
        struct tern_log_limit *rl;
        int allowed;
        uint64_t reported;
};

static void *race(void *arg)
{
        struct racer *r = arg;
        for (int i = 0; i < 2000; i++) {
                uint64_t sup;
                if (tern_log_limit_take(r->rl, 777, &sup)) {
                        r->allowed++;
                        r->reported += sup;
                }
        }
        return NULL;
}

Test(log, limit_exact_across_threads)
{
        struct tern_log_limit rl = {.interval_ms = 1000, .burst = 25};
        struct racer r[4];
        pthread_t t[4];
        for (int i = 0; i < 4; i++) {
                r[i] = (struct racer){.rl = &rl};
                pthread_create(&t[i], NULL, race, &r[i]);
        }
        int allowed = 0;
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                allowed += r[i].allowed;
        }
        cr_assert_eq(allowed, 25, "allowed %d of a burst of 25", allowed);
        uint64_t sup;
        cr_assert(tern_log_limit_take(&rl, 777 + 1000000, &sup));
        cr_assert_eq(sup, 4 * 2000 - 25, "suppressed %llu", (unsigned long long)sup);
}

static char sunk[8][800];
static int nsunk;

static void sink(enum tern_log_level level, const char *thread, const char *msg, void *arg)
{
        (void)level;
        (void)thread;
        (void)arg;
        if (nsunk < 8)
                snprintf(sunk[nsunk++], sizeof(sunk[0]), "%s", msg);
}

Test(log, limited_lines_say_what_was_suppressed)
{
        tern_log_set_sink(sink, NULL);
        struct tern_log_limit rl = {.interval_ms = 60000, .burst = 2};
        for (int i = 0; i < 5; i++)
                tern_log_limited(&rl, TERN_LOG_WARN, "peer %d misbehaved", i);
        cr_assert_eq(nsunk, 2, "%d lines written of 5 with a burst of 2", nsunk);
        cr_assert_str_eq(sunk[0], "peer 0 misbehaved");
        cr_assert_str_eq(sunk[1], "peer 1 misbehaved");
        rl.tat_ms = 0; /* as if a long quiet spell had refilled it */
        tern_log_limited(&rl, TERN_LOG_WARN, "peer %d misbehaved", 5);
        cr_assert_eq(nsunk, 3);
        cr_assert_str_eq(sunk[2], "peer 5 misbehaved [3 similar suppressed]");

        /* A level that is off takes no token and counts nothing. */
        struct tern_log_limit quiet = {.interval_ms = 60000, .burst = 1};
        tern_log_set_level(TERN_LOG_ERROR);
        for (int i = 0; i < 3; i++)
                tern_log_limited(&quiet, TERN_LOG_WARN, "hidden");
        cr_assert_eq(quiet.tat_ms, 0);
        cr_assert_eq(quiet.suppressed, 0);
        cr_assert_eq(nsunk, 3);
        tern_log_set_sink(NULL, NULL);
}

Test(log, limited_note_survives_a_long_message)
{
        tern_log_set_sink(sink, NULL);
        struct tern_log_limit rl = {.interval_ms = 60000, .burst = 1};
        char big[1000];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        tern_log_limited(&rl, TERN_LOG_WARN, "%s", big);
        tern_log_limited(&rl, TERN_LOG_WARN, "%s", big);
        rl.tat_ms = 0;
        tern_log_limited(&rl, TERN_LOG_WARN, "%s", big);
        cr_assert_eq(nsunk, 2);
        const char *note = " [1 similar suppressed]";
        size_t n = strlen(sunk[1]);
        cr_assert_gt(n, strlen(note));
        cr_assert_str_eq(sunk[1] + n - strlen(note), note, "%s", sunk[1] + n - 40);
        tern_log_set_sink(NULL, NULL);
}
