#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static enum tern_log_level log_level = TERN_LOG_INFO;
static enum tern_log_format log_format = TERN_LOG_TEXT;
static tern_log_sink_cb log_sink;
static void *log_sink_arg;
static __thread char thread_name[16] = "main";

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

void tern_log_set_level(enum tern_log_level level)
{
        __atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

enum tern_log_level tern_log_level(void)
{
        return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

void tern_log_set_format(enum tern_log_format fmt)
{
        __atomic_store_n(&log_format, fmt, __ATOMIC_RELAXED);
}

void tern_log_set_sink(tern_log_sink_cb sink, void *arg)
{
        log_sink_arg = arg;
        __atomic_store_n(&log_sink, sink, __ATOMIC_RELEASE);
}

void tern_log_set_thread_name(const char *name)
{
        snprintf(thread_name, sizeof(thread_name), "%s", name);
}

bool tern_log_level_parse(const char *s, enum tern_log_level *out)
{
        static const char *const names[] = {"debug", "info", "warn", "error", "off"};
        for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                if (strcasecmp(s, names[i]) == 0) {
                        *out = (enum tern_log_level)i;
                        return true;
                }
        }
        return false;
}

/* Length of the valid UTF-8 sequence at @p (1-4), or 0 when it is not one
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_len(const unsigned char *p)
{
        unsigned char c = p[0];
        if (c >= 0xc2 && c <= 0xdf)
                return (p[1] & 0xc0) == 0x80 ? 2 : 0;
        if (c >= 0xe0 && c <= 0xef) {
                unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
                return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
        }
        if (c >= 0xf0 && c <= 0xf4) {
                unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
                return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80
                           ? 4
                           : 0;
        }
        return 0;
}

/* Escapes @in as a JSON string body into @out (always NUL-terminated; at
 * most 6 bytes per input byte, so 6 * strlen(in) + 1 never truncates).
 * Bytes that are not UTF-8 (a peer's, say) become U+FFFD: a line must parse. */
static size_t json_escape(char *out, size_t cap, const char *in)
{
        static const char hex[] = "0123456789abcdef";
        size_t o = 0;
        for (const unsigned char *p = (const unsigned char *)in; *p && o + 7 < cap;) {
                unsigned char c = *p;
                const char *esc = NULL;
                switch (c) {
                case '"':
                        esc = "\\\"";
                        break;
                case '\\':
                        esc = "\\\\";
                        break;
                case '\n':
                        esc = "\\n";
                        break;
                case '\r':
                        esc = "\\r";
                        break;
                case '\t':
                        esc = "\\t";
                        break;
                default:
                        break;
                }
                if (esc) {
                        out[o++] = esc[0];
                        out[o++] = esc[1];
                        p++;
                } else if (c < 0x20) {
                        memcpy(out + o, "\\u00", 4);
                        out[o + 4] = hex[c >> 4];
                        out[o + 5] = hex[c & 15];
                        o += 6;
                        p++;
                } else if (c < 0x80) {
                        out[o++] = (char)c;
                        p++;
                } else {
                        size_t n = utf8_len(p);
                        if (n) {
                                memcpy(out + o, p, n);
                                o += n;
                                p += n;
                        } else {
                                memcpy(out + o, "\\ufffd", 6);
                                o += 6;
                                p++;
                        }
                }
        }
        out[o] = '\0';
        return o;
}

#define MSG_MAX 768

static void emit(enum tern_log_level level, const char *msg)
{
        tern_log_sink_cb sink = __atomic_load_n(&log_sink, __ATOMIC_ACQUIRE);
        if (sink) {
                sink(level, thread_name, msg, log_sink_arg);
                return;
        }

        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        char stamp[64];
        snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

        /* Room for the worst case of escaping: a JSON line is never cut. */
        char line[6 * MSG_MAX + 6 * 16 + 128];
        int n;
        if (__atomic_load_n(&log_format, __ATOMIC_RELAXED) == TERN_LOG_JSON) {
                static const char *const json_levels[] = {"debug", "info", "warn", "error"};
                char esc[6 * MSG_MAX + 1], thr[6 * 16 + 1];
                json_escape(esc, sizeof(esc), msg);
                json_escape(thr, sizeof(thr), thread_name);
                n = snprintf(line, sizeof(line),
                             "{\"ts\":\"%s\",\"level\":\"%s\",\"thread\":\"%s\",\"msg\":\"%s\"}\n",
                             stamp, json_levels[level], thr, esc);
        } else {
                n = snprintf(line, sizeof(line), "%s %-5s [%s] %s\n", stamp, level_names[level],
                             thread_name, msg);
        }
        if (n < 0)
                return;
        if ((size_t)n >= sizeof(line)) {
                n = sizeof(line) - 1;
                line[n - 1] = '\n';
        }
        /* One write per line keeps lines whole across threads. */
        ssize_t w = write(STDERR_FILENO, line, (size_t)n);
        (void)w;
}

void tern_log(enum tern_log_level level, const char *fmt, ...)
{
        if (level < tern_log_level() || level >= TERN_LOG_OFF)
                return;
        char msg[MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        emit(level, msg);
}

bool tern_log_limit_take(struct tern_log_limit *rl, uint64_t now_ms, uint64_t *suppressed)
{
        /* GCRA, the token bucket as one timestamp: tat is when the bucket
         * would be full again; a line is allowed while tat is at most
         * (burst - 1) intervals ahead of now. One CAS, no lock. */
        uint64_t t = rl->interval_ms ? rl->interval_ms : 1000;
        uint64_t burst = rl->burst ? rl->burst : 10;
        uint64_t tau = (burst - 1) * t;
        uint64_t tat = __atomic_load_n(&rl->tat_ms, __ATOMIC_RELAXED);
        for (;;) {
                uint64_t base = tat > now_ms ? tat : now_ms;
                if (base - now_ms > tau) {
                        __atomic_fetch_add(&rl->suppressed, 1, __ATOMIC_RELAXED);
                        return false;
                }
                if (__atomic_compare_exchange_n(&rl->tat_ms, &tat, base + t, true, __ATOMIC_RELAXED,
                                                __ATOMIC_RELAXED))
                        break;
        }
        *suppressed = __atomic_exchange_n(&rl->suppressed, 0, __ATOMIC_RELAXED);
        return true;
}

void tern_log_limited(struct tern_log_limit *rl, enum tern_log_level level, const char *fmt, ...)
{
        if (level < tern_log_level() || level >= TERN_LOG_OFF)
                return;
        uint64_t dropped;
        if (!tern_log_limit_take(rl, tern_now_ms(), &dropped))
                return;
        char note[48] = "";
        if (dropped)
                snprintf(note, sizeof(note), " [%llu similar suppressed]",
                         (unsigned long long)dropped);
        /* The note always fits: a long message is cut before it. */
        char msg[MSG_MAX];
        size_t cap = sizeof(msg) - strlen(note);
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        size_t len = (size_t)n < cap ? (size_t)n : cap - 1;
        memcpy(msg + len, note, strlen(note) + 1);
        emit(level, msg);
}
