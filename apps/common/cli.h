/*
 * Command-line helpers shared by the programs in apps/. Not part of libtern.
 */
#ifndef TERN_APP_CLI_H
#define TERN_APP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stdio.h>

#include "conn.h"
#include "server.h"

/*
 * Exit statuses every tern program uses (docs/programs.md has the table):
 * 0 after a graceful stop, --help or --version; 1 when the server could not
 * start or failed while running (or a --check found it down); 2 for a bad
 * command line or variable.
 */
enum { APP_EXIT_OK = 0, APP_EXIT_FAIL = 1, APP_EXIT_USAGE = 2 };

/*
 * One flag of a program: its long name (no "--"), whether it takes a value
 * (getopt's required_argument or no_argument), the code its handler gets
 * (the short letter, or a value >= 256) and the TERN_* variable that sets it
 * too (NULL for modes such as --check and for aliases). A flag named "help"
 * or "version" is handled by app_cli_parse itself.
 */
struct app_flag {
        const char *name;
        int has_arg;
        int val;
        const char *env;
};

typedef const char *(*app_getenv_fn)(const char *name);
/* Applies one setting; @what is "--port" or "TERN_PORT", for the message.
 * Returns 0, or -EINVAL with one line in @err (no program name, no
 * newline). */
typedef int (*app_apply_fn)(void *ctx, int val, const char *arg, const char *what, char *err,
                            size_t errlen);

struct app_cli {
        const char *prog;             /* "tern-kv", for --version */
        const char *shortopts;        /* getopt's, e.g. "p:b:w:hV" */
        const struct app_flag *flags; /* ended by an entry whose name is NULL */
        app_apply_fn apply;
        void *ctx;
        void (*usage)(FILE *f, const char *argv0);
};

/*
 * app_cli_parse - the one command-line convention of the tern programs:
 * first every flag's variable (set but empty counts as unset), then the
 * flags, so a flag wins over its variable; a bad value of either is
 * reported naming it. Returns 0 to go on, 1 after --help or --version was
 * printed to @out (exit 0), or -EINVAL with one line in @err (exit 2):
 * a bad value, an unknown flag, a flag without its value, a stray
 * argument. Uses getopt_long (and resets it): one thread at a time.
 */
int app_cli_parse(const struct app_cli *cli, int argc, char **argv, app_getenv_fn getenv_fn,
                  FILE *out, char *err, size_t errlen);

/* app_cli_parse() with the process's environment and stdout, printing an
 * error as "PROG: ... (see --help)" on stderr. Returns -1 to go on, or the
 * status to exit with. */
int app_cli_main(const struct app_cli *cli, int argc, char **argv);

/* Formats "invalid WHAT 'ARG': expected ..." into @err; returns -EINVAL. */
int app_cli_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The settings every tern server program shares, for an app_apply_fn:
 * 'p' port (sets *have_port), 'b' bind, 'w' workers (1-255), 'a' accept
 * mode, 'l' log level (applied at once), APP_OPT_MAX_CONNS. Returns 1 when
 * @val was one of these and valid, 0 when it is not one of them, -EINVAL
 * (@err filled) for a bad value. @arg is borrowed (o->bind points at it).
 */
#define APP_OPT_MAX_CONNS  0x4d43 /* a code no program uses otherwise */
#define APP_OPT_LOG_FORMAT 0x4c46 /* --log-format text|json, applied at once */
int app_server_flag(int val, const char *arg, const char *what, struct tern_server_opts *o,
                    bool *have_port, uint32_t *max_conns, char *err, size_t errlen);

/*
 * A limit on clients served at once that the program enforces itself,
 * after tern accepted the connection, so that the client can be told why
 * before it is closed (tern's own max_conns closes without a word). The
 * caller keeps tern's max_conns at 0.
 */
struct app_conn_limit {
        const char *prog; /* for the log line */
        uint32_t max;     /* 0: unlimited */
        long live;        /* atomic: admitted and not yet closed */
        uint64_t refused; /* atomic: turned away so far */
};

/*
 * Counts @c in, or, when @l->max clients are already served, counts it as
 * refused, sends it @why (a whole protocol line), closes it after flushing
 * and logs it: the 1st, 2nd, 4th, 8th... refusal, with the count, so a
 * storm of them does not flood the log. Returns true if admitted (call
 * app_conn_limit_leave from its on_close). [loop of @c]
 */
bool app_conn_limit_enter(struct app_conn_limit *l, tern_conn *c, const char *why);
void app_conn_limit_leave(struct app_conn_limit *l); /* [any] */
static inline uint64_t app_conn_limit_refused(const struct app_conn_limit *l)
{
        return __atomic_load_n(&l->refused, __ATOMIC_RELAXED);
}

/* Parses a whole decimal string into [min, max]; false on anything else. */
bool app_parse_long(const char *s, long min, long max, long *out);

/* Parses a byte count, decimal with an optional k, m or g suffix (powers of
 * 1024), into [min, max]; false on a sign, spaces, an unknown suffix or
 * overflow. */
bool app_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parses "auto", "thread" or "worker" (tern_accept_mode); false otherwise. */
bool app_parse_accept(const char *s, enum tern_accept_mode *out);

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
 * glibc gives the top of the heap back to the kernel whenever 128 KiB is
 * free there, and serves blocks over 128 KiB with mmap. A connection's
 * output buffer is freed when it drains and allocated again at the next
 * burst, so a relay at full speed returned memory and faulted it in again
 * thousands of times a second (tern-proxy: 12,928 brk calls in 4 s where
 * nginx made 66; 14% of its samples page faults in memmove). The programs
 * keep up to 64 MiB of freed heap and take buffers up to 4 MiB from it:
 * bounded, and given back beyond that. [main thread, before any thread]
 */
void app_tune_malloc(void);

/*
 * As a container's PID 1 a program inherits every orphan in the container (a
 * probe's stray child, say) and must reap it; when the caller is PID 1 this
 * sets SIGCHLD to ignored so the kernel does, and no zombie lingers. For
 * programs that start no children of their own. [main thread, at start-up]
 */
void app_reap_orphans_as_init(void);

/* Catches SIGINT and SIGTERM before there is a server to stop (and ignores
 * SIGPIPE): a signal that arrives while the listener is being set up is
 * remembered, not fatal, so a stop right after the port accepts is still
 * graceful. Call first thing in main. [main thread] */
void app_catch_stop_signals(void);

/* Makes SIGINT and SIGTERM call @stop(@arg), which must be async-signal-safe
 * and idempotent (tern_server_stop is), and calls it at once if one of them
 * came since app_catch_stop_signals(). Ignores SIGPIPE. @arg must stay valid
 * until the process exits or the handlers are replaced. [main thread,
 * before the server starts] */
void app_stop_on_signals(void (*stop)(void *), void *arg);

/*
 * The other signals an operator sends, handled on a thread of its own (the
 * handlers only write to a pipe), and never fatal: SIGHUP reloads what can
 * be reloaded: it runs every function given here (the TLS files,
 * app_reload_tls) and logs what it did; SIGUSR1 switches debug logging on,
 * the next one back to the level before ("SIGUSR1: log level debug (was
 * info)"). app_stop_on_signals() installs both; this adds a function to
 * SIGHUP's list (at most 4). [main thread, at start-up]
 */
void app_reload_on_sighup(void (*fn)(void *), void *arg);

/* app_stop_on_signals() for a plain tern server: a signal stops @s
 * gracefully. */
void app_stop_server_on_signals(tern_server *s);

#endif
