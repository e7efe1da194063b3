/*
 * tern-kv: a small in-memory key-value server speaking RESP, so redis-cli,
 * redis-benchmark and Redis client libraries talk to it unmodified.
 * Commands, limits and the store's design: docs/kv.md.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "admin.h"
#include "cli.h"
#include "tern.h"
#include "tlsopt.h"

static tern_server *server;

/* The store's counters for /metrics (docs/admin.md): atomics, no lock. */
static void kv_metrics(struct tern_buf *out, void *arg)
{
        struct kv_app *app = arg;
        struct kv_store_stats ss;
        kv_store_stats(app->store, &ss);
        app_metric(out, "tern_kv_keys", "gauge", "Keys in the store.", ss.keys);
        app_metric(out, "tern_kv_keys_with_ttl", "gauge", "Keys that carry an expiry time.",
                   ss.expires);
        app_metric(out, "tern_kv_memory_bytes", "gauge",
                   "Accounted memory of keys, values, containers and bucket arrays.", ss.bytes);
        app_metric(out, "tern_kv_max_memory_bytes", "gauge", "The --max-memory cap; 0 = none.",
                   kv_store_max_memory(app->store));
        app_metric(out, "tern_kv_keyspace_hits_total", "counter", "Lookups that found their key.",
                   ss.hits);
        app_metric(out, "tern_kv_keyspace_misses_total", "counter",
                   "Lookups that did not find their key.", ss.misses);
        app_metric(out, "tern_kv_expired_keys_total", "counter",
                   "Keys removed because their TTL passed.", ss.expired);
        app_metric(out, "tern_kv_evicted_keys_total", "counter",
                   "Keys removed to stay under --max-memory.", ss.evicted);
        app_metric(out, "tern_kv_rejected_connections_total", "counter",
                   "Clients refused over --max-conns (INFO's rejected_connections).",
                   app_conn_limit_refused(&app->limit));
        app_metric(out, "tern_kv_connections_received_total", "counter",
                   "RESP connections accepted so far (INFO's total_connections_received).",
                   __atomic_load_n(&app->connections, __ATOMIC_RELAXED));
}

static void usage(FILE *f, const char *argv0)
{
        fprintf(f,
                "usage: %s --port P [--bind ADDR] [--workers N] [--accept MODE] [--log-level L]\n"
                "          [--max-conns N] [--max-memory BYTES] [--maxmemory-policy P]\n"
                "          [--requirepass PASS] [--max-bulk BYTES] [--max-args N]\n"
                "          [--max-inline BYTES] [--max-request BYTES] [--admin ADDR:PORT]\n"
                "\n"
                "An in-memory key-value server speaking RESP (the Redis protocol), with\n"
                "strings, hashes, lists, sets, sorted sets, expiry and transactions.\n"
                "The commands it supports: docs/kv.md, or COMMAND LIST. Every setting may\n"
                "also come from the variable shown; a flag wins over its variable.\n"
                "\n"
                "  -p, --port P          TERN_PORT        TCP port to listen on (required;\n"
                "                                         0 = ephemeral)\n"
                "  -b, --bind ADDR       TERN_BIND        address to bind (default: all IPv4\n"
                "                                         and IPv6)\n"
                "  -w, --workers N       TERN_WORKERS     worker threads (default: CPUs\n"
                "                                         available, %d here)\n"
                "  -a, --accept MODE     TERN_ACCEPT      thread, worker or auto (default):\n"
                "                                         where connections are accepted (see\n"
                "                                         tern-echo --help)\n"
                "  -l, --log-level L     TERN_LOG_LEVEL   debug, info, warn, error or off\n"
                "                                         (default info)\n"
                "      --log-format F    TERN_LOG_FORMAT  text or json, one object per line\n"
                "                                         (default text)\n"
                "      --max-conns N     TERN_MAX_CONNS   clients at once, 0 = unlimited\n"
                "                                         (default 0); more are told\n"
                "                                         \"-ERR max number of clients reached\"\n"
                "  -m, --max-memory B    TERN_MAX_MEMORY  cap on the memory keys and values\n"
                "                                         use (also --maxmemory; default 0 =\n"
                "                                         no limit)\n"
                "      --maxmemory-policy P TERN_MAXMEMORY_POLICY  over the cap: noeviction\n"
                "                                         (refuse writes with -OOM, the\n"
                "                                         default), allkeys-lru or volatile-ttl\n"
                "      --requirepass PASS TERN_REQUIREPASS clients must AUTH with PASS first\n"
                "      --max-bulk B      TERN_MAX_BULK    longest key or value (default %u)\n"
                "      --max-args N      TERN_MAX_ARGS    most arguments in one command\n"
                "                                         (default %u)\n"
                "      --max-inline B    TERN_MAX_INLINE  longest inline command line\n"
                "                                         (default %u)\n"
                "      --max-request B   TERN_MAX_REQUEST longest command in bytes (default %u)\n"
                "  -A, --admin ADDR:PORT TERN_ADMIN       serve /metrics, /healthz, /readyz\n"
                "                                         over HTTP there (default off;\n"
                "                                         docs/admin.md)\n"
                "  -h, --help                             this text\n"
                "  -V, --version                          the version, then exit\n",
                argv0, tern_default_workers(), TERN_RESP_DEFAULT_MAX_BULK,
                TERN_RESP_DEFAULT_MAX_ARGS, TERN_RESP_DEFAULT_MAX_INLINE,
                TERN_RESP_DEFAULT_MAX_FRAME);
        app_tls_usage(f);
        fputs("\nSizes take a k, m or g suffix (powers of 1024).\n"
              "SIGINT or SIGTERM stops it gracefully; SIGHUP reloads the TLS files;\n"
              "SIGUSR1 switches debug logging on and off. Exit\n"
              "status: 0 after a graceful stop, --help or --version; 1 when it cannot start\n"
              "or fails; 2 for a bad flag or variable.\n",
              f);
}

enum {
        OPT_MAX_BULK = 256,
        OPT_MAX_ARGS,
        OPT_MAX_INLINE,
        OPT_MAX_REQUEST,
        OPT_POLICY,
        OPT_REQUIREPASS,
};

static const struct app_flag kv_flags[] = {
    {"port", required_argument, 'p', "TERN_PORT"},
    {"bind", required_argument, 'b', "TERN_BIND"},
    {"workers", required_argument, 'w', "TERN_WORKERS"},
    {"accept", required_argument, 'a', "TERN_ACCEPT"},
    {"log-level", required_argument, 'l', "TERN_LOG_LEVEL"},
    {"log-format", required_argument, APP_OPT_LOG_FORMAT, "TERN_LOG_FORMAT"},
    {"max-conns", required_argument, APP_OPT_MAX_CONNS, "TERN_MAX_CONNS"},
    {"max-memory", required_argument, 'm', "TERN_MAX_MEMORY"},
    {"maxmemory", required_argument, 'm', NULL}, /* Redis's spelling */
    {"maxmemory-policy", required_argument, OPT_POLICY, "TERN_MAXMEMORY_POLICY"},
    {"requirepass", required_argument, OPT_REQUIREPASS, "TERN_REQUIREPASS"},
    {"max-bulk", required_argument, OPT_MAX_BULK, "TERN_MAX_BULK"},
    {"max-args", required_argument, OPT_MAX_ARGS, "TERN_MAX_ARGS"},
    {"max-inline", required_argument, OPT_MAX_INLINE, "TERN_MAX_INLINE"},
    {"max-request", required_argument, OPT_MAX_REQUEST, "TERN_MAX_REQUEST"},
    {"admin", required_argument, 'A', APP_ADMIN_ENV},
    {"help", no_argument, 'h', NULL},
    {"version", no_argument, 'V', NULL},
    APP_TLS_FLAGS,
    {NULL, 0, 0, NULL},
};

struct kv_cfg {
        struct tern_server_opts o;
        struct tern_resp_config resp;
        size_t max_memory;
        enum kv_policy policy;
        const char *requirepass;
        const char *admin;
        uint32_t max_conns;
        bool have_port;
        struct app_tls tls;
};

static int kv_apply(void *ctx, int val, const char *arg, const char *what, char *err, size_t errlen)
{
        struct kv_cfg *cfg = ctx;
        uint64_t sz64;
        long v;
        int r = app_tls_flag(&cfg->tls, val, arg, what, err, errlen);
        if (r == 0)
                r = app_server_flag(val, arg, what, &cfg->o, &cfg->have_port, &cfg->max_conns, err,
                                    errlen);
        if (r)
                return r < 0 ? r : 0;
        switch (val) {
        case 'm':
                if (!app_parse_size(arg, 0, SIZE_MAX, &sz64))
                        return app_cli_fail(err, errlen, "invalid %s '%s': expected bytes", what,
                                            arg);
                cfg->max_memory = (size_t)sz64;
                return 0;
        case OPT_MAX_BULK:
        case OPT_MAX_INLINE:
        case OPT_MAX_REQUEST:
                if (!app_parse_size(arg, 0, TERN_RESP_MAX_SIZE_LIMIT, &sz64))
                        return app_cli_fail(err, errlen, "invalid %s '%s': expected bytes, 0-%u",
                                            what, arg, TERN_RESP_MAX_SIZE_LIMIT);
                if (val == OPT_MAX_BULK)
                        cfg->resp.max_bulk = (size_t)sz64;
                else if (val == OPT_MAX_INLINE)
                        cfg->resp.max_inline = (size_t)sz64;
                else
                        cfg->resp.max_frame = (size_t)sz64;
                return 0;
        case OPT_MAX_ARGS:
                if (*arg < '0' || *arg > '9' ||
                    !app_parse_long(arg, 1, TERN_RESP_MAX_ARGS_LIMIT, &v))
                        return app_cli_fail(err, errlen, "invalid %s '%s': expected a count, 1-%u",
                                            what, arg, TERN_RESP_MAX_ARGS_LIMIT);
                cfg->resp.max_args = (uint32_t)v;
                return 0;
        case OPT_POLICY:
                if (!strcmp(arg, "noeviction"))
                        cfg->policy = KV_NOEVICTION;
                else if (!strcmp(arg, "allkeys-lru"))
                        cfg->policy = KV_ALLKEYS_LRU;
                else if (!strcmp(arg, "volatile-ttl"))
                        cfg->policy = KV_VOLATILE_TTL;
                else
                        return app_cli_fail(
                            err, errlen,
                            "invalid %s '%s': expected noeviction, allkeys-lru or volatile-ttl",
                            what, arg);
                return 0;
        case OPT_REQUIREPASS:
                if (!*arg || strlen(arg) > 512)
                        return app_cli_fail(err, errlen, "invalid %s: expected 1 to 512 bytes",
                                            what); /* not echoed: it is a password */
                cfg->requirepass = arg;
                return 0;
        case 'A':
                if (*arg && !app_admin_addr_valid(arg))
                        return app_cli_fail(err, errlen, "invalid %s '%s': expected HOST:PORT",
                                            what, arg);
                cfg->admin = arg;
                return 0;
        default:
                return app_cli_fail(err, errlen, "internal error: unknown setting %d", val);
        }
}

int main(int argc, char **argv)
{
        static struct kv_cfg cfg;
        tern_server_opts_init(&cfg.o);
        tern_resp_config_init(&cfg.resp);
        cfg.policy = KV_NOEVICTION;
        app_tls_init(&cfg.tls);
        const struct app_cli cli = {
            .prog = "tern-kv",
            .shortopts = "p:b:w:a:l:m:A:hV",
            .flags = kv_flags,
            .apply = kv_apply,
            .ctx = &cfg,
            .usage = usage,
        };
        int r = app_cli_main(&cli, argc, argv);
        if (r >= 0) {
                app_tls_free(&cfg.tls);
                return r;
        }
        if (!cfg.have_port) {
                fprintf(stderr, "tern-kv: --port (or TERN_PORT) is required (see --help)\n");
                app_tls_free(&cfg.tls);
                return APP_EXIT_USAGE;
        }
        char err[512];
        if (app_tls_load(&cfg.tls, true, err, sizeof(err)) < 0) {
                fprintf(stderr, "tern-kv: %s\n", err);
                app_tls_free(&cfg.tls);
                return APP_EXIT_USAGE;
        }
        struct tern_server_opts o = cfg.o;
        const char *admin = cfg.admin;

        static struct kv_app app;
        r = kv_app_init(&app, &cfg.resp, cfg.max_memory);
        if (r == -EINVAL) {
                fprintf(stderr,
                        "tern-kv: limits out of range (max-bulk 1..%u, max-inline 1..%u, "
                        "max-request 16..%u)\n",
                        TERN_RESP_MAX_BULK_LIMIT, TERN_RESP_MAX_SIZE_LIMIT,
                        TERN_RESP_MAX_SIZE_LIMIT);
                return APP_EXIT_USAGE;
        }
        if (r) {
                tern_error("tern-kv: cannot start: %s", tern_strerror(r));
                return 1;
        }
        kv_store_set_policy(app.store, cfg.policy);
        app.requirepass = cfg.requirepass;
        app.limit.max = cfg.max_conns;
        kv_app_apply(&o, &app);
        app_catch_stop_signals(); /* before the port accepts */
        app_tune_malloc();
        app_reap_orphans_as_init();
        app_log_default_workers("tern-kv", o.workers);
        server = tern_server_new(&o);
        if (!server) {
                tern_error("tern-kv: cannot start: %s", strerror(errno));
                kv_app_fini(&app);
                return 1;
        }
        if (app_tls_listen(server, &cfg.tls, &o, "tern-kv") < 0 ||
            app_admin_attach(server, "tern-kv", admin, kv_metrics, &app) < 0) {
                tern_server_free(server);
                kv_app_fini(&app);
                app_tls_free(&cfg.tls);
                return 1;
        }
        if (cfg.tls.tls)
                app_reload_on_sighup(app_reload_tls, &cfg.tls);
        app_stop_server_on_signals(server);

        tern_info("tern-kv listening on %s port %u with %d worker(s), max conns %u (0 = "
                  "unlimited)",
                  o.bind ? o.bind : "*", tern_server_port(server), tern_server_workers(server),
                  cfg.max_conns);
        r = tern_server_run(server);
        if (r)
                tern_error("tern-kv: %s", tern_strerror(r));
        tern_server_free(server);
        tern_info("tern-kv stopped: %llu client(s) refused over --max-conns",
                  (unsigned long long)app_conn_limit_refused(&app.limit));
        kv_app_fini(&app);
        app_tls_free(&cfg.tls);
        return r ? 1 : 0;
}
