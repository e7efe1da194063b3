#include "cli.h"

#include <errno.h>
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

void app_stop_on_signals(void (*stop)(void *), void *arg)
{
        stop_fn = stop;
        stop_arg = arg;
        struct sigaction sa = {.sa_handler = on_stop_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

static void stop_server(void *s)
{
        tern_server_stop(s); /* async-signal-safe */
}

void app_stop_server_on_signals(tern_server *s)
{
        app_stop_on_signals(stop_server, s);
}
