/**
 * @file
 * Logging: one event per line on stderr (or a sink the application installs).
 *
 * Lines look like
 *   2026-11-22T04:50:01.123Z INFO  [worker-1] closed conn fd=12: output limit
 * or, with TERN_LOG_JSON, one JSON object per line:
 *   {"ts":"2026-11-22T04:50:01.123Z","level":"info","thread":"worker-1","msg":"..."}
 * (the message escaped as JSON requires; bytes that are not UTF-8 become
 * U+FFFD, so every line parses).
 *
 * All functions may be called from any thread. A line is written with a
 * single write(2), so lines from different threads never interleave.
 */
#ifndef TERN_LOG_H
#define TERN_LOG_H

#include "export.h"

#include <stdbool.h>
#include <stdint.h>

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

/**
 * A rate limit for the lines of one call site (tern_log_limited()): a token
 * bucket of @p burst lines, refilled at one line per @p interval_ms. Zero
 * fields take the defaults, 10 lines and one per second, so a static
 * zero-initialised one is ready. Shared by every thread that logs there.
 */
struct tern_log_limit {
        uint32_t interval_ms; /**< one line per this many ms, sustained; 0 = 1000 */
        uint32_t burst;       /**< lines allowed at once; 0 = 10 */
        uint64_t tat_ms;      /**< internal (atomic): when the bucket is full again */
        uint64_t suppressed;  /**< internal (atomic): lines dropped since the last one written */
};

/**
 * Takes a token from @p rl at time @p now_ms (any monotonic clock in ms).
 * Returns true when a line may be written, with *@p suppressed set to how
 * many were dropped since the last one that was (then reset); false when
 * the line must be dropped (it is counted). Lock-free. [any]
 */
TERN_EXPORT bool tern_log_limit_take(struct tern_log_limit *rl, uint64_t now_ms,
                                     uint64_t *suppressed);

/**
 * tern_log() through the rate limit @p rl: a line over the limit is dropped
 * and counted, and the next line written says how many were, as
 * " [N similar suppressed]". A level that is off takes no token. [any]
 */
TERN_EXPORT void tern_log_limited(struct tern_log_limit *rl, enum tern_log_level level,
                                  const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/** tern_log_limited() at WARN with a rate limit of its own per call site
 * (defaults: 10 lines at once, one per second): for warnings a peer can
 * cause as often as it likes. */
#define tern_warn_limited(...)                                                                     \
        do {                                                                                       \
                static struct tern_log_limit tern_log_limit_site_;                                 \
                tern_log_limited(&tern_log_limit_site_, TERN_LOG_WARN, __VA_ARGS__);               \
        } while (0)

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
