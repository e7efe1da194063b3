/*
 * Command line and environment. Every flag has a TERN_* variable; the
 * variables are read first and the flags then override them, so a flag
 * always wins. A bad value is reported with the name the user typed.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat.h"
#include "../common/cli.h"
#include "line.h"

enum {
        OPT_BIND = 'b',
        OPT_PORT = 'p',
        OPT_WORKERS = 'w',
        OPT_HELP = 'h',
        OPT_ACCEPT = 'a',
        OPT_VERSION = 'V',
        OPT_ADMIN = 'A',
        OPT_IDLE = 256,
        OPT_MAX_CONNS,
        OPT_MAX_LINE,
        OPT_MAX_OUTBUF,
        OPT_MAX_INBOX,
        OPT_LOG_LEVEL,
        OPT_LOG_FORMAT,
        OPT_CHECK,
        OPT_FLOOD_RATE,
        OPT_FLOOD_BURST,
        OPT_CLUSTER,
};

/* Every flag with its variable, in the order the variables are applied.
 * --check has none: it is a mode, not a setting. */
static const struct app_flag chat_flags[] = {
    {"bind", required_argument, OPT_BIND, "TERN_BIND"},
    {"port", required_argument, OPT_PORT, "TERN_PORT"},
    {"workers", required_argument, OPT_WORKERS, "TERN_WORKERS"},
    {"accept", required_argument, OPT_ACCEPT, "TERN_ACCEPT"},
    {"idle-timeout", required_argument, OPT_IDLE, "TERN_IDLE_TIMEOUT"},
    {"max-conns", required_argument, OPT_MAX_CONNS, "TERN_MAX_CONNS"},
    {"max-line", required_argument, OPT_MAX_LINE, "TERN_MAX_LINE"},
    {"max-outbuf", required_argument, OPT_MAX_OUTBUF, "TERN_MAX_OUTBUF"},
    {"max-inbox", required_argument, OPT_MAX_INBOX, "TERN_MAX_INBOX"},
    {"flood-rate", required_argument, OPT_FLOOD_RATE, "TERN_FLOOD_RATE"},
    {"flood-burst", required_argument, OPT_FLOOD_BURST, "TERN_FLOOD_BURST"},
    {"log-level", required_argument, OPT_LOG_LEVEL, "TERN_LOG_LEVEL"},
    {"log-format", required_argument, OPT_LOG_FORMAT, "TERN_LOG_FORMAT"},
    {"admin", required_argument, OPT_ADMIN, "TERN_ADMIN"},
    {"cluster", required_argument, OPT_CLUSTER, "TERN_CLUSTER"},
    {"check", required_argument, OPT_CHECK, NULL},
    {"help", no_argument, OPT_HELP, NULL},
    {"version", no_argument, OPT_VERSION, NULL},
    APP_TLS_FLAGS,
    {NULL, 0, 0, NULL},
};

#define MAX_LINE_LIMIT   (1024u * 1024)
#define MIN_OUTBUF       1024u
#define MAX_OUTBUF_LIMIT (1024ull * 1024 * 1024)
#define MAX_IDLE_S       (UINT32_MAX / 1000)

static void usage(FILE *f, const char *argv0)
{
        fprintf(
            f,
            "usage: %s [--bind ADDR] [--port P] [--workers N] [--accept MODE]\n"
            "          [--idle-timeout SECONDS]\n"
            "          [--max-conns N] [--max-line BYTES] [--max-outbuf BYTES]\n"
            "          [--max-inbox BYTES] [--flood-rate N] [--flood-burst N]\n"
            "          [--log-level L] [--log-format F] [--admin ADDR:PORT]\n"
            "          [--cluster redis://HOST:PORT]\n"
            "       %s --check [HOST:]PORT\n"
            "\n"
            "tern-chat: a multi-room chat server; talk to it with nc or telnet.\n"
            "Every setting may also come from the environment variable shown;\n"
            "a flag wins over its variable.\n"
            "\n"
            "  -b, --bind ADDR           TERN_BIND          address to listen on\n"
            "                                               (default: all IPv4 and IPv6)\n"
            "  -p, --port P              TERN_PORT          TCP port, 0-65535 (default %d)\n"
            "  -w, --workers N           TERN_WORKERS       worker threads, 1-255\n"
            "                                               (default: CPUs available, %d "
            "here)\n"
            "  -a, --accept MODE         TERN_ACCEPT        where connections are accepted:\n"
            "                                               thread, worker or auto (default;\n"
            "                                               see tern-echo --help)\n"
            "      --idle-timeout SECONDS TERN_IDLE_TIMEOUT close clients silent this long,\n"
            "                                               0 = never (default %d)\n"
            "      --max-conns N         TERN_MAX_CONNS     clients at once, 0 = unlimited\n"
            "                                               (default 0)\n"
            "      --max-line BYTES      TERN_MAX_LINE      longest line a client may send,\n"
            "                                               %u-%u (default %d)\n"
            "      --max-outbuf BYTES    TERN_MAX_OUTBUF    pending output past which a slow\n"
            "                                               client is dropped (default 1m)\n"
            "      --max-inbox BYTES     TERN_MAX_INBOX     room messages other workers may\n"
            "                                               queue for one worker before their\n"
            "                                               speakers pause (default 4m)\n"
            "      --flood-rate N        TERN_FLOOD_RATE    lines per second one client may\n"
            "                                               send, 0 = no flood control\n"
            "                                               (default %d)\n"
            "      --flood-burst N       TERN_FLOOD_BURST   lines one client may send at once,\n"
            "                                               0 = no flood control (default %d)\n"
            "      --log-level L         TERN_LOG_LEVEL     debug, info, warn, error, off\n"
            "                                               (default info)\n"
            "      --log-format F        TERN_LOG_FORMAT    text or json (default text)\n"
            "  -A, --admin ADDR:PORT     TERN_ADMIN         serve /metrics, /healthz, /readyz\n"
            "                                               over HTTP there (default off;\n"
            "                                               docs/admin.md)\n"
            "      --check [HOST:]PORT                      health check: connect, expect\n"
            "                                               the welcome line within 2 s,\n"
            "                                               exit 0 (up) or 1 (down); 'self'\n"
            "                                               probes TERN_BIND/TERN_PORT, or\n"
            "                                               with --admin/TERN_ADMIN its\n"
            "                                               /healthz (must answer 200)\n"
            "      --cluster redis://HOST:PORT TERN_CLUSTER one chat with every instance\n"
            "                                               using this Redis (docs/chat.md)\n"
            "  -h, --help                                   this text\n"
            "  -V, --version                                the version, then exit\n"
            "\n"
            "BYTES take an optional k, m or g suffix (powers of 1024).\n"
            "SIGINT or SIGTERM stops the server gracefully; SIGHUP reloads the TLS files;\n"
            "SIGUSR1 switches debug logging on and off.\n"
            "Exit status: 0 after a graceful stop, --help or --version; 1 when it cannot\n"
            "start or fails (--check: the server is down); 2 for a bad flag or variable.\n"
            "\n"
            "TLS: plain and TLS listeners on the same workers, the same rooms:\n",
            argv0, argv0, CHAT_DEFAULT_PORT, tern_default_workers(), CHAT_DEFAULT_IDLE_S, 16u,
            MAX_LINE_LIMIT, CHAT_DEFAULT_LINE, CHAT_DEFAULT_FLOOD_RATE, CHAT_DEFAULT_FLOOD_BURST);
        app_tls_usage(f);
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
        if (!s || *s < '0' || *s > '9')
                return false; /* no sign, no space: strtoull accepts "-1" */
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return false;
        *out = v;
        return true;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

/* Applies one setting; @what is "--port" or "TERN_PORT", for the message. */
static int apply(void *ctx, int opt, const char *val, const char *what, char *err, size_t errlen)
{
        struct chat_config *cfg = ctx;
        uint64_t v;
        switch (opt) {
        case OPT_BIND:
                if (!*val || strlen(val) > 255)
                        return fail(err, errlen, "invalid %s '%s': expected an address", what, val);
                cfg->opts.bind = val;
                return 0;
        case OPT_PORT:
                if (!parse_u64(val, 0, 65535, &v))
                        return fail(err, errlen, "invalid %s '%s': expected a port, 0-65535", what,
                                    val);
                cfg->opts.port = (uint16_t)v;
                return 0;
        case OPT_WORKERS:
                if (!parse_u64(val, 1, 255, &v))
                        return fail(err, errlen,
                                    "invalid %s '%s': expected a number of workers, 1-255", what,
                                    val);
                cfg->opts.workers = (int)v;
                return 0;
        case OPT_ACCEPT:
                if (!app_parse_accept(val, &cfg->opts.accept))
                        return fail(err, errlen, "invalid %s '%s': expected auto, thread or worker",
                                    what, val);
                return 0;
        case OPT_IDLE:
                if (!parse_u64(val, 0, MAX_IDLE_S, &v))
                        return fail(err, errlen,
                                    "invalid %s '%s': expected whole seconds, 0-%u (0 = never)",
                                    what, val, MAX_IDLE_S);
                cfg->opts.idle_timeout_ms = (uint32_t)v * 1000u;
                return 0;
        case OPT_MAX_CONNS:
                if (!parse_u64(val, 0, UINT32_MAX, &v))
                        return fail(err, errlen,
                                    "invalid %s '%s': expected a count, 0-%u (0 = unlimited)", what,
                                    val, UINT32_MAX);
                cfg->opts.max_conns = (uint32_t)v;
                return 0;
        case OPT_MAX_LINE:
                if (!app_parse_size(val, 16, MAX_LINE_LIMIT, &v))
                        return fail(err, errlen, "invalid %s '%s': expected bytes, 16-%u", what,
                                    val, MAX_LINE_LIMIT);
                cfg->opts.max_line = (size_t)v;
                return 0;
        case OPT_MAX_OUTBUF:
                if (!app_parse_size(val, MIN_OUTBUF, MAX_OUTBUF_LIMIT, &v))
                        return fail(err, errlen, "invalid %s '%s': expected bytes, %u-%llu (1g)",
                                    what, val, MIN_OUTBUF, MAX_OUTBUF_LIMIT);
                cfg->opts.max_outbuf = (size_t)v;
                return 0;
        case OPT_MAX_INBOX:
                if (!app_parse_size(val, MIN_OUTBUF, MAX_OUTBUF_LIMIT, &v))
                        return fail(err, errlen, "invalid %s '%s': expected bytes, %u-%llu (1g)",
                                    what, val, MIN_OUTBUF, MAX_OUTBUF_LIMIT);
                cfg->opts.max_inbox = (size_t)v;
                return 0;
        case OPT_FLOOD_RATE:
        case OPT_FLOOD_BURST:
                if (!parse_u64(val, 0, 1000000, &v))
                        return fail(err, errlen,
                                    "invalid %s '%s': expected lines, 0-1000000 (0 = no flood "
                                    "control)",
                                    what, val);
                if (opt == OPT_FLOOD_RATE)
                        cfg->opts.flood_rate = (uint32_t)v;
                else
                        cfg->opts.flood_burst = (uint32_t)v;
                return 0;
        case OPT_LOG_LEVEL:
                if (!tern_log_level_parse(val, &cfg->log_level))
                        return fail(err, errlen,
                                    "invalid %s '%s': expected debug, info, warn, error or off",
                                    what, val);
                return 0;
        case OPT_LOG_FORMAT:
                if (strcasecmp(val, "text") == 0)
                        cfg->log_format = TERN_LOG_TEXT;
                else if (strcasecmp(val, "json") == 0)
                        cfg->log_format = TERN_LOG_JSON;
                else
                        return fail(err, errlen, "invalid %s '%s': expected text or json", what,
                                    val);
                return 0;
        case OPT_ADMIN: {
                /* app_admin_addr_valid()'s rule, from cli.c alone: the
                 * tests build this file without admin.c. */
                char host[256];
                uint16_t port;
                if (app_split_hostport(val, "127.0.0.1", host, sizeof(host), &port) < 0)
                        return fail(err, errlen, "invalid %s '%s': expected [HOST:]PORT", what,
                                    val);
                cfg->admin = val;
                return 0;
        }
        case OPT_CLUSTER:
                if (chat_cluster_url(val, NULL, 0, NULL) < 0)
                        return fail(err, errlen, "invalid %s '%s': expected redis://HOST:PORT",
                                    what, val);
                cfg->opts.cluster = val;
                return 0;
        case OPT_CHECK:
                if (!*val)
                        return fail(err, errlen, "invalid %s '': expected [HOST:]PORT", what);
                cfg->check = val;
                return 0;
        }
        int r = app_tls_flag(&cfg->tls, opt, val, what, err, errlen);
        if (r)
                return r < 0 ? r : 0;
        return fail(err, errlen, "internal error: unknown setting %d", opt);
}

int chat_config_parse(struct chat_config *cfg, int argc, char **argv, chat_getenv_cb getenv_fn,
                      FILE *out, char *err, size_t errlen)
{
        memset(cfg, 0, sizeof(*cfg));
        chat_opts_init(&cfg->opts);
        cfg->log_level = TERN_LOG_INFO;
        cfg->log_format = TERN_LOG_TEXT;
        app_tls_init(&cfg->tls);
        const struct app_cli cli = {
            .prog = "tern-chat",
            .shortopts = "b:p:w:a:A:hV",
            .flags = chat_flags,
            .apply = apply,
            .ctx = cfg,
            .usage = usage,
        };
        return app_cli_parse(&cli, argc, argv, getenv_fn, out, err, errlen);
}
