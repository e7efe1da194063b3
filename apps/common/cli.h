/*
 * Command-line helpers shared by the programs in apps/. Not part of libtern.
 */
#ifndef TERN_APP_CLI_H
#define TERN_APP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "server.h"

/* Parses a whole decimal string into [min, max]; false on anything else. */
bool app_parse_long(const char *s, long min, long max, long *out);

/* Parses a byte count, decimal with an optional k, m or g suffix (powers of
 * 1024), into [min, max]; false on a sign, spaces, an unknown suffix or
 * overflow. */
bool app_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parses "auto", "thread" or "worker" (tern_accept_mode); false otherwise. */
bool app_parse_accept(const char *s, enum tern_accept_mode *out);

/* The getopt_long value of --log-format (long only) and the variable that
 * gives it when the flag is absent. */
#define APP_OPT_LOG_FORMAT 0x4c46
#define APP_LOG_FORMAT_ENV "TERN_LOG_FORMAT"
/* The getopt_long entry every program puts in its table. */
#define APP_LOG_FORMAT_OPTION                                                                      \
        {                                                                                          \
                "log-format", required_argument, NULL, APP_OPT_LOG_FORMAT                          \
        }

/* Parses "text" or "json" (any case); false otherwise. */
bool app_parse_log_format(const char *s, enum tern_log_format *out);

/* Applies TERN_LOG_FORMAT if it is set (and not empty); before parsing the
 * flags, so --log-format wins. Returns 0, or -1 after printing "ARGV0:
 * invalid TERN_LOG_FORMAT ..." (the caller exits 2). [main thread] */
int app_log_format_from_env(const char *argv0);

/*
 * Handles an option every tern server program takes: 'p' (--port, 0-65535,
 * sets *have_port), 'b' (--bind), 'w' (--workers, 1-255), 'a' (--accept,
 * auto|thread|worker), 'l' (--log-level, applied at once) and
 * APP_OPT_LOG_FORMAT (--log-format text|json, applied at once). @arg is borrowed: o->bind keeps
 * pointing at it. Returns 1 when @ch was one of these and valid, 0 when it is not one of them, -1
 * after printing "ARGV0: invalid ..." for a bad value (the caller exits 2).
 */
int app_server_opt(int ch, const char *arg, const char *argv0, struct tern_server_opts *o,
                   bool *have_port);

/*
 * Splits "[HOST:]PORT" (HOST may be a bracketed IPv6 address, "[::1]:80")
 * into @host (@hcap bytes, NUL-terminated; @default_host or "" when there is
 * no HOST part) and *@port (0-65535). Returns 0 or -EINVAL. [any]
 */
int app_split_hostport(const char *s, const char *default_host, char *host, size_t hcap,
                       uint16_t *port);

/*
 * When @workers is 0 (neither --workers nor TERN_WORKERS given), logs at info
 * level the count tern will pick and why (affinity mask, cgroup CPU quota),
 * so an operator sees what a container's CPU limit did. @prog is borrowed.
 * [any]
 */
void app_log_default_workers(const char *prog, int workers);

/*
 * As a container's PID 1 a program inherits every orphan in the container (a
 * probe's stray child, say) and must reap it; when the caller is PID 1 this
 * sets SIGCHLD to ignored so the kernel does, and no zombie lingers. For
 * programs that start no children of their own. [main thread, at start-up]
 */
void app_reap_orphans_as_init(void);

/* Makes SIGINT and SIGTERM call @stop(@arg), which must be async-signal-safe
 * (tern_server_stop is), and ignores SIGPIPE. SIGHUP switches the log level
 * to debug, and the next SIGHUP back to the level it had, logging
 * "SIGHUP: log level L (was M)" (a thread of its own does that: the
 * handler only writes to a pipe). @arg must stay valid until the
 * process exits or the handlers are replaced. [main thread, before the
 * server starts] */
void app_stop_on_signals(void (*stop)(void *), void *arg);

/* app_stop_on_signals() for a plain tern server: a signal stops @s
 * gracefully. */
void app_stop_server_on_signals(tern_server *s);

#endif
