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
        app_metric(out, "tern_kv_connections_received_total", "counter",
                   "RESP connections accepted so far (INFO's total_connections_received).",
                   __atomic_load_n(&app->connections, __ATOMIC_RELAXED));
}

static void usage(FILE *f, const char *argv0)
{
        fprintf(f,
                "usage: %s --port P [--bind ADDR] [--workers N] [--accept MODE] [--log-level L]\n"
                "          [--log-format F]\n"
                "          [--max-memory BYTES] [--maxmemory-policy P] [--requirepass PASS]\n"
                "          [--max-bulk BYTES] [--max-args N] [--max-inline BYTES]\n"
                "          [--max-request BYTES] [--admin ADDR:PORT]\n"
                "\n"
                "An in-memory key-value server speaking RESP (the Redis protocol), with\n"
                "strings, hashes, lists, sets, sorted sets, expiry and transactions.\n"
                "The commands it supports: docs/kv.md, or COMMAND LIST.\n"
                "\n"
                "  -p, --port P          TCP port to listen on (required; 0 = ephemeral)\n"
                "  -b, --bind ADDR       address to bind (default: all IPv4 and IPv6)\n"
                "  -w, --workers N       worker threads (default: CPUs available, %d here)\n"
                "  -a, --accept MODE     thread, worker or auto (default): where connections\n"
                "                        are accepted (see tern-echo --help)\n"
                "  -l, --log-level L     debug, info, warn, error or off (default info)\n"
                "      --log-format F  text or json, one object per line (also\n"
                "                      TERN_LOG_FORMAT; default text)\n"
                "  -m, --max-memory B    cap on the memory keys and values use (also\n"
                "                        --maxmemory; default 0 = no limit)\n"
                "      --maxmemory-policy P  over the cap: noeviction (refuse writes with\n"
                "                        -OOM, the default), allkeys-lru or volatile-ttl\n"
                "      --requirepass PASS  clients must AUTH with PASS first\n"
                "      --max-bulk B      longest key or value (default %u)\n"
                "      --max-args N      most arguments in one command (default %u)\n"
                "      --max-inline B    longest inline command line (default %u)\n"
                "      --max-request B   longest command in bytes (default %u)\n"
                "  -A, --admin ADDR:PORT serve /metrics, /healthz, /readyz over HTTP there\n"
                "                        (also TERN_ADMIN; default off; docs/admin.md)\n"
                "  -h, --help            this text\n"
                "\n"
                "Sizes take a k, m or g suffix (powers of 1024).\n"
                "SIGINT or SIGTERM stops it gracefully; SIGHUP switches debug logging\n"
                "on, the next SIGHUP back off.\n",
                argv0, tern_default_workers(), TERN_RESP_DEFAULT_MAX_BULK,
                TERN_RESP_DEFAULT_MAX_ARGS, TERN_RESP_DEFAULT_MAX_INLINE,
                TERN_RESP_DEFAULT_MAX_FRAME);
}

enum {
        OPT_MAX_BULK = 256,
        OPT_MAX_ARGS,
        OPT_MAX_INLINE,
        OPT_MAX_REQUEST,
        OPT_POLICY,
        OPT_REQUIREPASS,
};

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
            {"port", required_argument, NULL, 'p'},
            {"bind", required_argument, NULL, 'b'},
            {"workers", required_argument, NULL, 'w'},
            {"accept", required_argument, NULL, 'a'},
            {"log-level", required_argument, NULL, 'l'},
            APP_LOG_FORMAT_OPTION,
            {"max-memory", required_argument, NULL, 'm'},
            {"maxmemory", required_argument, NULL, 'm'},
            {"maxmemory-policy", required_argument, NULL, OPT_POLICY},
            {"requirepass", required_argument, NULL, OPT_REQUIREPASS},
            {"max-bulk", required_argument, NULL, OPT_MAX_BULK},
            {"max-args", required_argument, NULL, OPT_MAX_ARGS},
            {"max-inline", required_argument, NULL, OPT_MAX_INLINE},
            {"max-request", required_argument, NULL, OPT_MAX_REQUEST},
            {"admin", required_argument, NULL, 'A'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        struct tern_server_opts o;
        struct tern_resp_config resp;
        size_t max_memory = 0, sz;
        enum kv_policy policy = KV_NOEVICTION;
        const char *requirepass = NULL;
        uint64_t sz64;
        long v;
        bool have_port = false;
        const char *admin = getenv(APP_ADMIN_ENV);
        if (app_log_format_from_env(argv[0]) < 0)
                return 2;
        int ch;

        tern_server_opts_init(&o);
        tern_resp_config_init(&resp);
        while ((ch = getopt_long(argc, argv, "p:b:w:a:l:m:A:h", longopts, NULL)) != -1) {
                switch (ch) {
                case 'p':
                case 'b':
                case 'w':
                case 'a':
                case 'l':
                case APP_OPT_LOG_FORMAT:
                        if (app_server_opt(ch, optarg, argv[0], &o, &have_port) < 0)
                                return 2;
                        break;
                case 'm':
                        if (!app_parse_size(optarg, 0, SIZE_MAX, &sz64)) {
                                fprintf(stderr, "%s: invalid size '%s'\n", argv[0], optarg);
                                return 2;
                        }
                        max_memory = (size_t)sz64;
                        break;
                case OPT_MAX_BULK:
                case OPT_MAX_INLINE:
                case OPT_MAX_REQUEST:
                        if (!app_parse_size(optarg, 0, TERN_RESP_MAX_SIZE_LIMIT, &sz64)) {
                                fprintf(stderr, "%s: invalid size '%s'\n", argv[0], optarg);
                                return 2;
                        }
                        sz = (size_t)sz64;
                        if (ch == OPT_MAX_BULK)
                                resp.max_bulk = sz;
                        else if (ch == OPT_MAX_INLINE)
                                resp.max_inline = sz;
                        else
                                resp.max_frame = sz;
                        break;
                case OPT_MAX_ARGS:
                        if (!app_parse_long(optarg, 1, TERN_RESP_MAX_ARGS_LIMIT, &v)) {
                                fprintf(stderr, "%s: invalid argument count '%s'\n", argv[0],
                                        optarg);
                                return 2;
                        }
                        resp.max_args = (uint32_t)v;
                        break;
                case OPT_POLICY:
                        if (!strcmp(optarg, "noeviction")) {
                                policy = KV_NOEVICTION;
                        } else if (!strcmp(optarg, "allkeys-lru")) {
                                policy = KV_ALLKEYS_LRU;
                        } else if (!strcmp(optarg, "volatile-ttl")) {
                                policy = KV_VOLATILE_TTL;
                        } else {
                                fprintf(stderr,
                                        "%s: --maxmemory-policy is noeviction, allkeys-lru or "
                                        "volatile-ttl, not '%s'\n",
                                        argv[0], optarg);
                                return 2;
                        }
                        break;
                case OPT_REQUIREPASS:
                        if (!*optarg || strlen(optarg) > 512) {
                                fprintf(stderr, "%s: --requirepass takes 1 to 512 bytes\n",
                                        argv[0]);
                                return 2;
                        }
                        requirepass = optarg;
                        break;
                case 'A':
                        admin = optarg;
                        break;
                case 'h':
                        usage(stdout, argv[0]);
                        return 0;
                default:
                        usage(stderr, argv[0]);
                        return 2;
                }
        }
        if (!have_port || optind != argc) {
                usage(stderr, argv[0]);
                return 2;
        }
        if (admin && *admin && !app_admin_addr_valid(admin)) {
                fprintf(stderr, "%s: invalid --admin '%s' (HOST:PORT)\n", argv[0], admin);
                return 2;
        }

        struct kv_app app;
        int r = kv_app_init(&app, &resp, max_memory);
        if (r == -EINVAL) {
                fprintf(stderr,
                        "%s: limits out of range (max-bulk 1..%u, max-inline 1..%u, "
                        "max-request 16..%u)\n",
                        argv[0], TERN_RESP_MAX_BULK_LIMIT, TERN_RESP_MAX_SIZE_LIMIT,
                        TERN_RESP_MAX_SIZE_LIMIT);
                return 2;
        }
        if (r) {
                tern_error("tern-kv: cannot start: %s", tern_strerror(r));
                return 1;
        }
        kv_store_set_policy(app.store, policy);
        app.requirepass = requirepass;
        kv_app_apply(&o, &app);
        app_reap_orphans_as_init();
        app_log_default_workers("tern-kv", o.workers);
        server = tern_server_new(&o);
        if (!server) {
                tern_error("tern-kv: cannot start: %s", strerror(errno));
                kv_app_fini(&app);
                return 1;
        }
        if (app_admin_attach(server, "tern-kv", admin, kv_metrics, &app) < 0) {
                tern_server_free(server);
                kv_app_fini(&app);
                return 1;
        }
        app_stop_server_on_signals(server);

        tern_info("tern-kv listening on %s port %u with %d worker(s)", o.bind ? o.bind : "*",
                  tern_server_port(server), tern_server_workers(server));
        r = tern_server_run(server);
        if (r)
                tern_error("tern-kv: %s", tern_strerror(r));
        tern_server_free(server);
        kv_app_fini(&app);
        tern_info("tern-kv stopped");
        return r ? 1 : 0;
}
