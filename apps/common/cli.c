#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <malloc.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "cpu.h"
#include "log.h"
#include "version.h"

bool app_parse_long(const char *s, long min, long max, long *out)
{
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max)
                return false;
        *out = v;
        return true;
}

bool app_parse_accept(const char *s, enum tern_accept_mode *out)
{
        static const char *const names[] = {
            [TERN_ACCEPT_AUTO] = "auto",
            [TERN_ACCEPT_THREAD] = "thread",
            [TERN_ACCEPT_WORKER] = "worker",
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                if (strcmp(s, names[i]) == 0) {
                        *out = (enum tern_accept_mode)i;
                        return true;
                }
        }
        return false;
}

int app_split_hostport(const char *s, const char *default_host, char *host, size_t hcap,
                       uint16_t *port)
{
        const char *h = s, *p;
        size_t hlen;
        if (s[0] == '[') { /* [v6]:port */
                const char *close = strchr(s, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                h = s + 1;
                hlen = (size_t)(close - h);
                p = close + 2;
        } else if ((p = strrchr(s, ':'))) {
                hlen = (size_t)(p - s);
                if (memchr(s, ':', hlen))
                        return -EINVAL; /* a bare IPv6 address needs brackets */
                p++;
        } else {
                h = default_host ? default_host : "";
                hlen = strlen(h);
                p = s;
        }
        long v; /* digits only: no sign, no space, no "0x" */
        if (hlen >= hcap || *p < '0' || *p > '9' || !app_parse_long(p, 0, 65535, &v))
                return -EINVAL;
        memcpy(host, h, hlen);
        host[hlen] = '\0';
        *port = (uint16_t)v;
        return 0;
}

int app_cli_fail(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

int app_server_flag(int val, const char *arg, const char *what, struct tern_server_opts *o,
                    bool *have_port, uint32_t *max_conns, char *err, size_t errlen)
{
        long v;
        switch (val) {
        case 'p':
                /* Digits only: strtol would take " 80" and "+80". */
                if (*arg < '0' || *arg > '9' || !app_parse_long(arg, 0, 65535, &v))
                        return app_cli_fail(err, errlen,
                                            "invalid %s '%s': expected a port, 0-65535", what, arg);
                o->port = (uint16_t)v;
                *have_port = true;
                return 1;
        case 'b':
                if (!*arg || strlen(arg) > 255)
                        return app_cli_fail(err, errlen, "invalid %s '%s': expected an address",
                                            what, arg);
                o->bind = arg;
                return 1;
        case 'w':
                if (*arg < '0' || *arg > '9' || !app_parse_long(arg, 1, 255, &v))
                        return app_cli_fail(err, errlen,
                                            "invalid %s '%s': expected a number of workers, 1-255",
                                            what, arg);
                o->workers = (int)v;
                return 1;
        case 'a':
                if (!app_parse_accept(arg, &o->accept))
                        return app_cli_fail(err, errlen,
                                            "invalid %s '%s': expected auto, thread or worker",
                                            what, arg);
                return 1;
        case APP_OPT_LOG_FORMAT:
                if (!strcmp(arg, "text"))
                        tern_log_set_format(TERN_LOG_TEXT);
                else if (!strcmp(arg, "json"))
                        tern_log_set_format(TERN_LOG_JSON);
                else
                        return app_cli_fail(err, errlen, "invalid %s '%s': expected text or json",
                                            what, arg);
                return 1;
        case 'l': {
                enum tern_log_level lvl;
                if (!tern_log_level_parse(arg, &lvl))
                        return app_cli_fail(
                            err, errlen,
                            "invalid %s '%s': expected debug, info, warn, error or off", what, arg);
                tern_log_set_level(lvl);
                return 1;
        }
        case APP_OPT_MAX_CONNS:
                if (*arg < '0' || *arg > '9' || !app_parse_long(arg, 0, UINT32_MAX, &v))
                        return app_cli_fail(err, errlen,
                                            "invalid %s '%s': expected a count, 0-%u (0 = "
                                            "unlimited)",
                                            what, arg, UINT32_MAX);
                *max_conns = (uint32_t)v;
                return 1;
        default:
                return 0;
        }
}

/* getopt's table from ours. */
static struct option *long_options(const struct app_flag *flags)
{
        size_t n = 0;
        while (flags[n].name)
                n++;
        struct option *lo = calloc(n + 1, sizeof(*lo));
        if (!lo)
                return NULL;
        for (size_t i = 0; i < n; i++)
                lo[i] = (struct option){flags[i].name, flags[i].has_arg, NULL, flags[i].val};
        return lo;
}

static const struct app_flag *flag_of(const struct app_flag *flags, int val)
{
        for (const struct app_flag *f = flags; f->name; f++)
                if (f->val == val)
                        return f;
        return NULL;
}

int app_cli_parse(const struct app_cli *cli, int argc, char **argv, app_getenv_fn getenv_fn,
                  FILE *out, char *err, size_t errlen)
{
        err[0] = '\0';
        for (const struct app_flag *f = cli->flags; f->name; f++) {
                const char *val = f->env && getenv_fn ? getenv_fn(f->env) : NULL;
                /* Set but empty counts as unset: `docker run -e TERN_PORT=`. */
                if (!val || !*val)
                        continue;
                int r = cli->apply(cli->ctx, f->val, val, f->env, err, errlen);
                if (r)
                        return r;
        }

        const char *argv0 = argc > 0 ? argv[0] : cli->prog;
        struct option *lo = long_options(cli->flags);
        if (!lo)
                return app_cli_fail(err, errlen, "out of memory");
        char shortopts[64];
        snprintf(shortopts, sizeof(shortopts), ":%s",
                 cli->shortopts); /* ':' reports a missing value */
        optind = 0;               /* GNU: a full restart, so the parser may run more than once */
        opterr = 0;               /* our messages, not getopt's */
        int ch, r = 0;
        while (!r && (ch = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
                const struct app_flag *f = flag_of(cli->flags, ch);
                if (ch == ':') {
                        r = app_cli_fail(err, errlen, "%s needs a value", argv[optind - 1]);
                } else if (ch == '?' || !f) {
                        r = app_cli_fail(err, errlen, "unknown option '%s'", argv[optind - 1]);
                } else if (strcmp(f->name, "help") == 0) {
                        cli->usage(out, argv0);
                        r = 1;
                } else if (strcmp(f->name, "version") == 0) {
                        fprintf(out, "%s %s\n", cli->prog, tern_version());
                        r = 1;
                } else {
                        char what[64];
                        snprintf(what, sizeof(what), "--%s", f->name);
                        r = cli->apply(cli->ctx, ch, optarg, what, err, errlen);
                }
        }
        free(lo);
        if (!r && optind < argc)
                r = app_cli_fail(err, errlen, "unexpected argument '%s'", argv[optind]);
        return r;
}

static const char *process_env(const char *name)
{
        return getenv(name);
}

int app_cli_main(const struct app_cli *cli, int argc, char **argv)
{
        char err[512];
        int r = app_cli_parse(cli, argc, argv, process_env, stdout, err, sizeof(err));
        if (r == 1)
                return APP_EXIT_OK;
        if (r < 0) {
                fprintf(stderr, "%s: %s (see --help)\n", cli->prog, err);
                return APP_EXIT_USAGE;
        }
        return -1;
}

/* ---- the program's own connection limit ---- */

bool app_conn_limit_enter(struct app_conn_limit *l, tern_conn *c, const char *why)
{
        long live = __atomic_add_fetch(&l->live, 1, __ATOMIC_RELAXED);
        if (!l->max || live <= (long)l->max)
                return true;
        __atomic_sub_fetch(&l->live, 1, __ATOMIC_RELAXED);
        uint64_t n = __atomic_add_fetch(&l->refused, 1, __ATOMIC_RELAXED);
        if ((n & (n - 1)) == 0) { /* 1, 2, 4, 8...: a storm costs log2 lines */
                char peer[64];
                tern_warn("%s: over --max-conns (%u): refused %s (%llu refused so far)", l->prog,
                          l->max, tern_conn_peer_str(c, peer, sizeof(peer)), (unsigned long long)n);
        }
        tern_conn_send(c, why, strlen(why));
        tern_conn_close(c); /* after the line is flushed */
        return false;
}

void app_conn_limit_leave(struct app_conn_limit *l)
{
        __atomic_sub_fetch(&l->live, 1, __ATOMIC_RELAXED);
}

void app_log_default_workers(const char *prog, int workers)
{
        if (workers)
                return;
        struct tern_cpu_limit lim;
        tern_cpu_limit(&lim);
        tern_info("%s: %d worker(s) by default: %s", prog, lim.count, lim.why);
}

void app_tune_malloc(void)
{
        /* Both set, since setting one stops glibc adjusting the other. */
        mallopt(M_MMAP_THRESHOLD, 4 << 20);
        mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

void app_reap_orphans_as_init(void)
{
        if (getpid() == 1)
                signal(SIGCHLD, SIG_IGN);
}

bool app_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
        if (!s || *s < '0' || *s > '9')
                return false;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno)
                return false;
        unsigned shift = 0;
        switch (*end) {
        case '\0':
                break;
        case 'k':
        case 'K':
                shift = 10;
                break;
        case 'm':
        case 'M':
                shift = 20;
                break;
        case 'g':
        case 'G':
                shift = 30;
                break;
        default:
                return false;
        }
        if (shift && end[1])
                return false;
        if (v > (UINT64_MAX >> shift))
                return false;
        v <<= shift;
        if (v < min || v > max)
                return false;
        *out = v;
        return true;
}

/* The stop target, set once the server exists; until then a signal is only
 * remembered, and app_stop_on_signals() acts on it. */
static void (*volatile stop_fn)(void *);
static void *volatile stop_arg;
static volatile sig_atomic_t stop_pending;

static void on_stop_signal(int sig)
{
        (void)sig;
        void (*fn)(void *) = __atomic_load_n(&stop_fn, __ATOMIC_ACQUIRE);
        if (fn)
                fn(stop_arg);
        else
                stop_pending = 1;
}

void app_catch_stop_signals(void)
{
        struct sigaction sa = {.sa_handler = on_stop_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

/* ---- SIGHUP and SIGUSR1: a pipe, and a thread that acts ---- */

static struct {
        int pipe[2];
        int n;
        void (*fn[4])(void *);
        void *arg[4];
        enum tern_log_level before; /* the level before SIGUSR1 switched to debug */
} sig = {{-1, -1}, 0, {NULL}, {NULL}, TERN_LOG_INFO};

static void on_operator_signal(int signo)
{
        int saved = errno;
        char b = signo == SIGHUP ? 'h' : 'u';
        ssize_t n = write(sig.pipe[1], &b, 1); /* async-signal-safe; full pipe: one is pending */
        (void)n;
        errno = saved;
}

static void toggle_debug(void)
{
        static const char *const names[] = {"debug", "info", "warn", "error", "off"};
        enum tern_log_level was = tern_log_level(), now = TERN_LOG_DEBUG;
        if (was == TERN_LOG_DEBUG)
                now = sig.before;
        else
                sig.before = was;
        tern_log_set_level(now);
        /* Said at warn so that it shows at any level but off. */
        tern_warn("SIGUSR1: log level %s (was %s)", names[now], names[was]);
}

static void *signal_thread(void *unused)
{
        (void)unused;
        char b[64];
        for (;;) {
                ssize_t n = read(sig.pipe[0], b, sizeof(b));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return NULL;
                for (ssize_t i = 0; i < n; i++) {
                        if (b[i] == 'u') {
                                toggle_debug();
                                continue;
                        }
                        tern_info("SIGHUP: reloading%s", sig.n ? "" : " (nothing to reload)");
                        for (int k = 0; k < sig.n; k++)
                                sig.fn[k](sig.arg[k]);
                }
        }
}

static void operator_signals_start(void)
{
        if (sig.pipe[0] >= 0)
                return;
        if (pipe2(sig.pipe, O_CLOEXEC) < 0) {
                tern_warn("cannot handle SIGHUP and SIGUSR1: %s", strerror(errno));
                return;
        }
        fcntl(sig.pipe[1], F_SETFL, O_NONBLOCK);
        /* The thread takes no signal: they reach the other threads as before. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pthread_t th;
        int r = pthread_create(&th, NULL, signal_thread, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0) {
                tern_warn("cannot handle SIGHUP and SIGUSR1: %s", strerror(r));
                return;
        }
        pthread_detach(th);
        struct sigaction sa = {.sa_handler = on_operator_signal, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGHUP, &sa, NULL);
        sigaction(SIGUSR1, &sa, NULL);
}

void app_reload_on_sighup(void (*fn)(void *), void *arg)
{
        operator_signals_start();
        if (sig.n == 4)
                return;
        sig.fn[sig.n] = fn;
        sig.arg[sig.n] = arg;
        sig.n++;
}

void app_stop_on_signals(void (*stop)(void *), void *arg)
{
        operator_signals_start();
        stop_arg = arg;
        __atomic_store_n(&stop_fn, stop, __ATOMIC_RELEASE);
        app_catch_stop_signals(); /* idempotent; for callers that did not catch early */
        /* A signal that came before the target was set: act on it now. One
         * that lands between the store and here is acted on twice, which
         * the stop functions allow (they are idempotent). */
        if (stop_pending)
                stop(arg);
}

static void stop_server(void *s)
{
        tern_server_stop(s); /* async-signal-safe */
}

void app_stop_server_on_signals(tern_server *s)
{
        app_stop_on_signals(stop_server, s);
}
