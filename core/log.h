/*
 * Logging: one event per line on stderr (or a sink the application installs).
 *
 * Lines look like
 *   2026-11-22T04:50:01.123Z INFO  [worker-1] closed conn fd=12: output limit
 * or, with TERN_LOG_JSON, one JSON object per line.
 *
 * All functions may be called from any thread. A line is written with a
 * single write(2), so lines from different threads never interleave.
 */
#ifndef TERN_LOG_H
#define TERN_LOG_H

#include <stdbool.h>

enum tern_log_level {
        TERN_LOG_DEBUG,
        TERN_LOG_INFO,
        TERN_LOG_WARN,
        TERN_LOG_ERROR,
        TERN_LOG_OFF,
};

enum tern_log_format {
        TERN_LOG_TEXT,
        TERN_LOG_JSON,
};

/*
 * A log sink receives the formatted message (no timestamp, no newline).
 * Called on the logging thread; must be thread-safe.
 */
typedef void (*tern_log_sink_cb)(enum tern_log_level level, const char *thread, const char *msg,
                                 void *arg);

/* Sets the minimum level written. Any thread; takes effect at once. */
void tern_log_set_level(enum tern_log_level level);
enum tern_log_level tern_log_level(void);
/* Sets the stderr line format. Any thread. */
void tern_log_set_format(enum tern_log_format fmt);
/*
 * Replaces stderr with @sink (NULL restores stderr). @arg is borrowed and
 * must stay valid until the sink is replaced. Call before starting threads
 * that log.
 */
void tern_log_set_sink(tern_log_sink_cb sink, void *arg);
/* Names the calling thread in log lines (copied; at most 15 bytes kept). */
void tern_log_set_thread_name(const char *name);

/* Parses "debug|info|warn|error|off"; returns false on anything else. */
bool tern_log_level_parse(const char *s, enum tern_log_level *out);

void tern_log(enum tern_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define TERN_LOG_ENABLED(lvl) ((lvl) >= tern_log_level())
#define tern_debug(...)                                                                            \
        do {                                                                                       \
                if (TERN_LOG_ENABLED(TERN_LOG_DEBUG))                                              \
                        tern_log(TERN_LOG_DEBUG, __VA_ARGS__);                                     \
        } while (0)
#define tern_info(...)  tern_log(TERN_LOG_INFO, __VA_ARGS__)
#define tern_warn(...)  tern_log(TERN_LOG_WARN, __VA_ARGS__)
#define tern_error(...) tern_log(TERN_LOG_ERROR, __VA_ARGS__)

#endif
