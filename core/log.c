#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* Escapes @in as a JSON string body into @out (always NUL-terminated). */
static size_t json_escape(char *out, size_t cap, const char *in)
{
        size_t o = 0;
        for (; *in && o + 7 < cap; in++) {
                unsigned char c = (unsigned char)*in;
                if (c == '"' || c == '\\') {
                        out[o++] = '\\';
                        out[o++] = (char)c;
                } else if (c < 0x20) {
                        o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
                } else {
                        out[o++] = (char)c;
                }
        }
        out[o] = '\0';
        return o;
}

void tern_log(enum tern_log_level level, const char *fmt, ...)
{
        if (level < tern_log_level() || level >= TERN_LOG_OFF)
                return;

        char msg[768];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

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

        char line[1024 + 256];
        int n;
        if (__atomic_load_n(&log_format, __ATOMIC_RELAXED) == TERN_LOG_JSON) {
                char esc[1024];
                json_escape(esc, sizeof(esc), msg);
                n = snprintf(line, sizeof(line),
                             "{\"ts\":\"%s\",\"level\":\"%s\",\"thread\":\"%s\",\"msg\":\"%s\"}\n",
                             stamp, level_names[level], thread_name, esc);
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
