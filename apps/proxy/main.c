/*
 * tern-proxy: forwards every connection on --listen to --to, both ways,
 * with backpressure. The work is in proxy.c; this is option parsing.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cli.h"
#include "tlsopt.h"
#include "proxy.h"

static tern_server *server;

/* The proxy's own counters for /metrics (docs/admin.md). */
static void proxy_metrics(struct tern_buf *out, void *arg)
{
        struct proxy *px = arg;
        app_metric(out, "tern_proxy_pairs", "gauge", "Source-destination pairs alive now.",
                   (uint64_t)__atomic_load_n(&px->pairs, __ATOMIC_RELAXED));
        app_metric(out, "tern_proxy_connect_failures_total", "counter",
                   "Sources closed because their destination could not be reached.",
                   (uint64_t)__atomic_load_n(&px->connect_failed, __ATOMIC_RELAXED));
        app_metric(out, "tern_proxy_peak_queued_bytes", "gauge",
                   "Most output ever queued on one connection.",
                   (uint64_t)__atomic_load_n(&px->peak_queued, __ATOMIC_RELAXED));
}

static void usage(FILE *f, const char *argv0)
{
        fprintf(f,
                "usage: %s --listen [HOST:]PORT --to HOST:PORT [--workers N] [--accept MODE]\n"
                "          [--connect-timeout MS] [--high-water BYTES] [--log-level L]\n"
                "          [--admin ADDR:PORT] [--tls-cert FILE --tls-key FILE]\n"
                "          [--to-tls [--to-ca FILE] [--to-name NAME] [--to-insecure]]\n"
                "\n"
                "Forwards every connection accepted on --listen to --to, both ways.\n"
                "A destination that reads slowly pauses reading from its source.\n"
                "Every setting may also come from the variable shown; a flag wins over\n"
                "its variable.\n"
                "\n"
                "  -L, --listen [HOST:]PORT  TERN_LISTEN  where to accept (required; HOST\n"
                "                                         default: all addresses)\n"
                "  -t, --to HOST:PORT        TERN_TO      destination (required; a name is\n"
                "                                         resolved once, at start)\n"
                "  -w, --workers N           TERN_WORKERS worker threads (default: CPUs\n"
                "                                         available, %d here)\n"
                "  -a, --accept MODE         TERN_ACCEPT  thread, worker or auto (default):\n"
                "                                         where connections are accepted\n"
                "                                         (see tern-echo --help)\n"
                "  -T, --connect-timeout MS  TERN_CONNECT_TIMEOUT  per destination connect,\n"
                "                                         0-3600000 (default 10000)\n"
                "  -H, --high-water BYTES    TERN_HIGH_WATER  queued bytes per connection\n"
                "                                         before the other side pauses\n"
                "                                         (default %u; resumes at half)\n"
                "  -l, --log-level L         TERN_LOG_LEVEL  debug, info, warn, error or off\n"
                "                                         (default info)\n"
                "      --log-format F        TERN_LOG_FORMAT  text or json, one object per line\n"
                "                                         (default text)\n"
                "  -A, --admin ADDR:PORT     TERN_ADMIN   serve /metrics, /healthz, /readyz\n"
                "                                         over HTTP there (default off;\n"
                "                                         docs/admin.md)\n"
                "  -h, --help                             this text\n"
                "  -V, --version                          the version, then exit\n"
                "TLS termination: with --tls-cert and --tls-key, --listen speaks TLS (and\n"
                "--tls-port adds a second, TLS, listener instead):\n",
                argv0, tern_default_workers(), PROXY_DEFAULT_HIGH_WATER);
        app_tls_usage(f);
        fputs("TLS origination, to a destination that speaks TLS:\n"
              "  --to-tls               TERN_TO_TLS=1  connect to --to over TLS\n"
              "  --to-ca FILE           TERN_TO_CA     CAs to trust for it (default: the\n"
              "                                        system's store)\n"
              "  --to-name NAME         TERN_TO_NAME   name to ask for and verify (default:\n"
              "                                        the host of --to)\n"
              "  --to-insecure          TERN_TO_INSECURE=1  do not verify its certificate\n"
              "\nSIGINT or SIGTERM stops it gracefully; SIGHUP reloads the TLS files;\n"
              "SIGUSR1 switches debug logging on and off. Exit\n"
              "status: 0 after a graceful stop, --help or --version; 1 when it cannot start\n"
              "or fails; 2 for a bad flag or variable.\n",
              f);
}

enum { OPT_TO_TLS = 0x300, OPT_TO_CA, OPT_TO_NAME, OPT_TO_INSECURE };

static const struct app_flag proxy_flags[] = {
    {"listen", required_argument, 'L', "TERN_LISTEN"},
    {"to", required_argument, 't', "TERN_TO"},
    {"workers", required_argument, 'w', "TERN_WORKERS"},
    {"accept", required_argument, 'a', "TERN_ACCEPT"},
    {"connect-timeout", required_argument, 'T', "TERN_CONNECT_TIMEOUT"},
    {"high-water", required_argument, 'H', "TERN_HIGH_WATER"},
    {"log-level", required_argument, 'l', "TERN_LOG_LEVEL"},
    {"log-format", required_argument, APP_OPT_LOG_FORMAT, "TERN_LOG_FORMAT"},
    {"admin", required_argument, 'A', APP_ADMIN_ENV},
    {"help", no_argument, 'h', NULL},
    {"version", no_argument, 'V', NULL},
    {"to-tls", no_argument, OPT_TO_TLS, "TERN_TO_TLS"},
    {"to-ca", required_argument, OPT_TO_CA, "TERN_TO_CA"},
    {"to-name", required_argument, OPT_TO_NAME, "TERN_TO_NAME"},
    {"to-insecure", no_argument, OPT_TO_INSECURE, "TERN_TO_INSECURE"},
    APP_TLS_FLAGS,
    {NULL, 0, 0, NULL},
};

struct proxy_cfg {
        struct tern_server_opts o;
        char listen_host[256], to_host[256];
        uint16_t to_port;
        bool have_listen, have_to, have_port;
        long timeout_ms, high;
        const char *admin;
        struct app_tls tls;       /* --listen's (termination) */
        bool to_tls, to_insecure; /* origination */
        const char *to_ca, *to_name;
};

/* A switch given as a variable: "1" or "0". */
static int switch_value(const char *arg, const char *what, bool *out, char *err, size_t errlen)
{
        if (!arg || !strcmp(arg, "1")) { /* the flag itself has no value */
                *out = true;
                return 0;
        }
        if (!strcmp(arg, "0")) {
                *out = false;
                return 0;
        }
        return app_cli_fail(err, errlen, "invalid %s '%s': expected 1 or 0", what, arg);
}

static int proxy_flag_apply(void *ctx, int val, const char *arg, const char *what, char *err,
                            size_t errlen)
{
        struct proxy_cfg *cfg = ctx;
        uint32_t max_conns = 0;
        switch (val) {
        case 'L':
                if (app_split_hostport(arg, NULL, cfg->listen_host, sizeof(cfg->listen_host),
                                       &cfg->o.port) < 0)
                        return app_cli_fail(err, errlen, "invalid %s '%s': expected [HOST:]PORT",
                                            what, arg);
                cfg->o.bind = cfg->listen_host[0] ? cfg->listen_host : NULL;
                cfg->have_listen = true;
                return 0;
        case 't':
                if (app_split_hostport(arg, NULL, cfg->to_host, sizeof(cfg->to_host),
                                       &cfg->to_port) < 0 ||
                    !cfg->to_host[0] || !cfg->to_port)
                        return app_cli_fail(err, errlen, "invalid %s '%s': expected HOST:PORT",
                                            what, arg);
                cfg->have_to = true;
                return 0;
        case 'T':
                if (*arg < '0' || *arg > '9' || !app_parse_long(arg, 0, 3600000, &cfg->timeout_ms))
                        return app_cli_fail(err, errlen,
                                            "invalid %s '%s': expected milliseconds, 0-3600000",
                                            what, arg);
                return 0;
        case 'H':
                if (*arg < '0' || *arg > '9' || !app_parse_long(arg, 1024, 1L << 30, &cfg->high))
                        return app_cli_fail(err, errlen,
                                            "invalid %s '%s': expected bytes, 1024-1073741824",
                                            what, arg);
                return 0;
        case 'A':
                if (*arg && !app_admin_addr_valid(arg))
                        return app_cli_fail(err, errlen, "invalid %s '%s': expected HOST:PORT",
                                            what, arg);
                cfg->admin = arg;
                return 0;
        case OPT_TO_TLS:
                return switch_value(arg, what, &cfg->to_tls, err, errlen);
        case OPT_TO_INSECURE:
                return switch_value(arg, what, &cfg->to_insecure, err, errlen);
        case OPT_TO_CA:
                cfg->to_ca = arg;
                return 0;
        case OPT_TO_NAME:
                cfg->to_name = arg;
                return 0;
        default: {
                int r = app_tls_flag(&cfg->tls, val, arg, what, err, errlen);
                if (r == 0)
                        r = app_server_flag(val, arg, what, &cfg->o, &cfg->have_port, &max_conns,
                                            err, errlen);
                return r < 0 ? r : 0;
        }
        }
}

int main(int argc, char **argv)
{
        static struct proxy_cfg cfg;
        tern_server_opts_init(&cfg.o);
        cfg.timeout_ms = 10000;
        app_tls_init(&cfg.tls);
        const struct app_cli cli = {
            .prog = "tern-proxy",
            .shortopts = "L:t:w:a:T:H:l:A:hV",
            .flags = proxy_flags,
            .apply = proxy_flag_apply,
            .ctx = &cfg,
            .usage = usage,
        };
        int r = app_cli_main(&cli, argc, argv);
        if (r >= 0) {
                app_tls_free(&cfg.tls);
                return r;
        }
        if (!cfg.have_listen || !cfg.have_to) {
                fprintf(stderr, "tern-proxy: %s (or %s) is required (see --help)\n",
                        cfg.have_listen ? "--to" : "--listen",
                        cfg.have_listen ? "TERN_TO" : "TERN_LISTEN");
                app_tls_free(&cfg.tls);
                return APP_EXIT_USAGE;
        }
        char err[512];
        if (app_tls_load(&cfg.tls, false, err, sizeof(err)) < 0) {
                fprintf(stderr, "tern-proxy: %s\n", err);
                app_tls_free(&cfg.tls);
                return APP_EXIT_USAGE;
        }
        static tern_tls *to;
        if (cfg.to_tls) {
                struct tern_tls_opts to_opts;
                tern_tls_opts_init(&to_opts);
                to_opts.client = true;
                to_opts.ca_file = cfg.to_ca;
                to_opts.verify = cfg.to_insecure ? TERN_TLS_VERIFY_NONE : TERN_TLS_VERIFY_REQUIRED;
                char why[400];
                to = tern_tls_new(&to_opts, why, sizeof(why));
                if (!to) {
                        fprintf(stderr, "tern-proxy: --to-tls: %s\n", why);
                        app_tls_free(&cfg.tls);
                        return APP_EXIT_USAGE;
                }
        }
        struct tern_server_opts o = cfg.o;
        const char *admin = cfg.admin;

        app_catch_stop_signals(); /* before the port accepts */
        static struct proxy px;
        if (proxy_init(&px, cfg.to_host, cfg.to_port, (uint32_t)cfg.timeout_ms) < 0) {
                tern_tls_free(to);
                app_tls_free(&cfg.tls);
                return 1;
        }
        px.to_tls = to;
        snprintf(px.to_name, sizeof(px.to_name), "%s", cfg.to_name ? cfg.to_name : cfg.to_host);
        if (!cfg.tls.have_port)
                o.tls = cfg.tls.tls; /* --listen itself speaks TLS */
        if (cfg.high) {
                o.high_water = (size_t)cfg.high;
                o.low_water = (size_t)cfg.high / 2;
        }
        proxy_apply(&o, &px);
        app_tune_malloc();
        app_log_default_workers("tern-proxy", o.workers);
        server = tern_server_new(&o);
        if (!server) {
                tern_error("tern-proxy: cannot start: %s", strerror(errno));
                tern_tls_free(to);
                app_tls_free(&cfg.tls);
                return 1;
        }
        if ((cfg.tls.have_port && app_tls_listen(server, &cfg.tls, &o, "tern-proxy") < 0) ||
            app_admin_attach(server, "tern-proxy", admin, proxy_metrics, &px) < 0) {
                tern_server_free(server);
                tern_tls_free(to);
                app_tls_free(&cfg.tls);
                return 1;
        }
        if (cfg.tls.tls)
                app_reload_on_sighup(app_reload_tls, &cfg.tls);
        app_stop_server_on_signals(server);

        tern_info("tern-proxy listening on %s port %u%s, forwarding to %s port %u%s, %d "
                  "worker(s)",
                  o.bind ? o.bind : "*", tern_server_port(server), o.tls ? " (TLS)" : "",
                  px.to_host, px.to_port, to ? " over TLS" : "", tern_server_workers(server));
        r = tern_server_run(server);
        if (r)
                tern_error("tern-proxy: %s", tern_strerror(r));
        tern_server_free(server);
        tern_tls_free(to);
        app_tls_free(&cfg.tls);
        tern_info("tern-proxy stopped");
        return r ? 1 : 0;
}
