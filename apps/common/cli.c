#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>

#include "cpu.h"
#include "log.h"

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

bool app_parse_log_format(const char *s, enum tern_log_format *out)
{
        if (strcasecmp(s, "text") == 0)
                *out = TERN_LOG_TEXT;
        else if (strcasecmp(s, "json") == 0)
                *out = TERN_LOG_JSON;
        else
                return false;
        return true;
}

int app_log_format_from_env(const char *argv0)
{
        const char *v = getenv(APP_LOG_FORMAT_ENV);
        enum tern_log_format f;
        if (!v || !*v)
                return 0;
        if (!app_parse_log_format(v, &f)) {
                fprintf(stderr, "%s: invalid %s '%s' (text or json)\n", argv0, APP_LOG_FORMAT_ENV,
                        v);
                return -1;
        }
        tern_log_set_format(f);
        return 0;
}

int app_server_opt(int ch, const char *arg, const char *argv0, struct tern_server_opts *o,
                   bool *have_port)
{
        long v;
        switch (ch) {
        case 'p':
                if (!app_parse_long(arg, 0, 65535, &v)) {
                        fprintf(stderr, "%s: invalid port '%s'\n", argv0, arg);
                        return -1;
                }
                o->port = (uint16_t)v;
                *have_port = true;
                return 1;
        case 'b':
                o->bind = arg;
                return 1;
        case 'w':
                if (!app_parse_long(arg, 1, 255, &v)) {
                        fprintf(stderr, "%s: invalid worker count '%s' (1-255)\n", argv0, arg);
                        return -1;
                }
                o->workers = (int)v;
                return 1;
        case 'a':
                if (!app_parse_accept(arg, &o->accept)) {
                        fprintf(stderr, "%s: invalid accept mode '%s' (auto, thread or worker)\n",
                                argv0, arg);
                        return -1;
                }
                return 1;
        case 'l': {
                enum tern_log_level lvl;
                if (!tern_log_level_parse(arg, &lvl)) {
                        fprintf(stderr, "%s: invalid log level '%s'\n", argv0, arg);
                        return -1;
                }
                tern_log_set_level(lvl);
                return 1;
        }
        case APP_OPT_LOG_FORMAT: {
                enum tern_log_format f;
                if (!app_parse_log_format(arg, &f)) {
                        fprintf(stderr, "%s: invalid log format '%s' (text or json)\n", argv0, arg);
                        return -1;
                }
                tern_log_set_format(f);
                return 1;
        }
        default:
                return 0;
        }
}

void app_log_default_workers(const char *prog, int workers)
{
        if (workers)
                return;
        struct tern_cpu_limit lim;
        tern_cpu_limit(&lim);
        tern_info("%s: %d worker(s) by default: %s", prog, lim.count, lim.why);
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

static void (*stop_fn)(void *);
static void *stop_arg;

static void on_stop_signal(int sig)
{
        (void)sig;
        stop_fn(stop_arg);
}

/* SIGHUP: the handler only writes a byte to a pipe (async-signal-safe);
 * a thread of ours reads it and does the rest, where logging is allowed. */
static int hup_pipe[2] = {-1, -1};
static enum tern_log_level hup_configured; /* the level before the first SIGHUP */

static void on_hup_signal(int sig)
{
        (void)sig;
        int e = errno; /* a handler must leave errno as it found it */
        ssize_t r = write(hup_pipe[1], "h", 1);
        (void)r;
        errno = e;
}

static void *hup_thread(void *arg)
{
        (void)arg;
        tern_log_set_thread_name("signals");
        char c;
        for (;;) {
                ssize_t r = read(hup_pipe[0], &c, 1);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return NULL;
                /* No configuration file to reload: SIGHUP switches debug
                 * logging on, and the next one back to the configured level. */
                enum tern_log_level was = tern_log_level(),
                                    now = was == TERN_LOG_DEBUG ? hup_configured : TERN_LOG_DEBUG;
                if (was != TERN_LOG_DEBUG)
                        hup_configured = was;
                tern_log_set_level(now);
                static const char *const names[] = {"debug", "info", "warn", "error", "off"};
                /* At info, or at the new level if that is higher, so the
                 * line is written (with "off", nothing can be). */
                enum tern_log_level say = now > TERN_LOG_INFO ? now : TERN_LOG_INFO;
                tern_log(say, "SIGHUP: log level %s (was %s)", names[now], names[was]);
        }
}

/* Starts the SIGHUP thread once. Returns 0 or -errno (then SIGHUP keeps
 * its default action: the process ends, as before). */
static int hup_start(void)
{
        if (hup_pipe[0] >= 0)
                return 0;
        if (pipe2(hup_pipe, O_CLOEXEC) < 0)
                return -errno;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old); /* it takes no signals itself */
        pthread_t t;
        int r = pthread_create(&t, NULL, hup_thread, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r) {
                close(hup_pipe[0]);
                close(hup_pipe[1]);
                hup_pipe[0] = hup_pipe[1] = -1;
                return -r;
        }
        pthread_detach(t);
        struct sigaction sa = {.sa_handler = on_hup_signal, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGHUP, &sa, NULL);
        return 0;
}

void app_stop_on_signals(void (*stop)(void *), void *arg)
{
        stop_fn = stop;
        stop_arg = arg;
        struct sigaction sa = {.sa_handler = on_stop_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        int r = hup_start();
        if (r)
                tern_warn("cannot handle SIGHUP (it will end the process): %s", strerror(-r));
}

static void stop_server(void *s)
{
        tern_server_stop(s); /* async-signal-safe */
}

void app_stop_server_on_signals(tern_server *s)
{
        app_stop_on_signals(stop_server, s);
}
