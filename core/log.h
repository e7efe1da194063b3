/**
 * @file
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

#include "export.h"

#include <stdbool.h>

/** Severity of a log line, lowest first. */
enum tern_log_level {
        TERN_LOG_DEBUG, /**< detail for debugging; off by default */
        TERN_LOG_INFO,  /**< start-up, shutdown, notable events */
        TERN_LOG_WARN,  /**< something went wrong with one peer or request */
        TERN_LOG_ERROR, /**< something went wrong with the process */
        TERN_LOG_OFF,   /**< as a minimum level: log nothing */
};

/** Line format on stderr. */
enum tern_log_format {
        TERN_LOG_TEXT, /**< timestamp, level, [thread], message */
        TERN_LOG_JSON, /**< one JSON object per line */
};

/**
 * A log sink receives the formatted message (no timestamp, no newline).
 * Called on the logging thread; must be thread-safe.
 */
typedef void (*tern_log_sink_cb)(enum tern_log_level level, const char *thread, const char *msg,
                                 void *arg);

/** Sets the minimum level written. Any thread; takes effect at once. */
TERN_EXPORT void tern_log_set_level(enum tern_log_level level);
TERN_EXPORT enum tern_log_level tern_log_level(void);
/** Sets the stderr line format. Any thread. */
TERN_EXPORT void tern_log_set_format(enum tern_log_format fmt);
/**
 * Replaces stderr with @p sink (NULL restores stderr). @p arg is borrowed and
 * must stay valid until the sink is replaced. Call before starting threads
 * that log.
 */
TERN_EXPORT void tern_log_set_sink(tern_log_sink_cb sink, void *arg);
/** Names the calling thread in log lines (copied; at most 15 bytes kept). */
TERN_EXPORT void tern_log_set_thread_name(const char *name);

/** Parses "debug|info|warn|error|off"; returns false on anything else. */
TERN_EXPORT bool tern_log_level_parse(const char *s, enum tern_log_level *out);

/** Logs one printf-style line at @p level if @p level is enabled. Any thread. */
TERN_EXPORT void tern_log(enum tern_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Whether a line at @p lvl would be written; cheap, for guarding costly arguments. */
#define TERN_LOG_ENABLED(lvl) ((lvl) >= tern_log_level())
/** Logs at DEBUG; the arguments are not even evaluated when DEBUG is off. */
#define tern_debug(...)                                                                            \
        do {                                                                                       \
                if (TERN_LOG_ENABLED(TERN_LOG_DEBUG))                                              \
                        tern_log(TERN_LOG_DEBUG, __VA_ARGS__);                                     \
        } while (0)
/** @{ */
/** tern_log() at INFO, WARN, ERROR. */
#define tern_info(...)  tern_log(TERN_LOG_INFO, __VA_ARGS__)
#define tern_warn(...)  tern_log(TERN_LOG_WARN, __VA_ARGS__)
#define tern_error(...) tern_log(TERN_LOG_ERROR, __VA_ARGS__)
/** @} */

#endif
