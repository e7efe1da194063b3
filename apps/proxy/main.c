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
                "          [--log-format F]\n"
                "          [--admin ADDR:PORT]\n"
                "\n"
                "Forwards every connection accepted on --listen to --to, both ways.\n"
                "A destination that reads slowly pauses reading from its source.\n"
                "\n"
                "  -L, --listen [HOST:]PORT  where to accept (HOST default: all addresses)\n"
                "  -t, --to HOST:PORT        destination (a name is resolved once, at start)\n"
                "  -w, --workers N           worker threads (default: CPUs available, %d here)\n"
                "  -a, --accept MODE         thread, worker or auto (default): where connections\n"
                "                            are accepted (see tern-echo --help)\n"
                "  -T, --connect-timeout MS  per destination connect (default 10000)\n"
                "  -H, --high-water BYTES    queued bytes per connection before the other\n"
                "                            side pauses (default %u; resumes at half)\n"
                "  -l, --log-level L         debug, info, warn, error or off (default info)\n"
                "      --log-format F        text or json, one object per line (also\n"
                "                            TERN_LOG_FORMAT; default text)\n"
                "  -A, --admin ADDR:PORT     serve /metrics, /healthz, /readyz over HTTP there\n"
                "                            (also TERN_ADMIN; default off; docs/admin.md)\n"
                "  -h, --help                this text\n"
                "\n"
                "SIGINT or SIGTERM stops it gracefully; SIGHUP switches debug logging\n"
                "on, the next SIGHUP back off.\n",
                argv0, tern_default_workers(), PROXY_DEFAULT_HIGH_WATER);
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
            {"listen", required_argument, NULL, 'L'},
            {"to", required_argument, NULL, 't'},
            {"workers", required_argument, NULL, 'w'},
            {"accept", required_argument, NULL, 'a'},
            {"connect-timeout", required_argument, NULL, 'T'},
            {"high-water", required_argument, NULL, 'H'},
            {"log-level", required_argument, NULL, 'l'},
            APP_LOG_FORMAT_OPTION,
            {"admin", required_argument, NULL, 'A'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        char listen_host[256], to_host[256];
        uint16_t to_port = 0;
        bool have_listen = false, have_to = false, have_port = false;
        long timeout_ms = 10000, high = 0;
        const char *admin = getenv(APP_ADMIN_ENV);
        if (app_log_format_from_env(argv[0]) < 0)
                return 2;
        int ch;
        while ((ch = getopt_long(argc, argv, "L:t:w:a:T:H:l:A:h", longopts, NULL)) != -1) {
                switch (ch) {
                case 'L':
                        if (app_split_hostport(optarg, NULL, listen_host, sizeof(listen_host),
                                               &o.port) < 0) {
                                fprintf(stderr, "%s: invalid --listen '%s'\n", argv[0], optarg);
                                return 2;
                        }
                        o.bind = listen_host[0] ? listen_host : NULL;
                        have_listen = true;
                        break;
                case 't':
                        if (app_split_hostport(optarg, NULL, to_host, sizeof(to_host), &to_port) <
                                0 ||
                            !to_host[0] || !to_port) {
                                fprintf(stderr, "%s: invalid --to '%s': expected HOST:PORT\n",
                                        argv[0], optarg);
                                return 2;
                        }
                        have_to = true;
                        break;
                case 'T':
                        if (!app_parse_long(optarg, 0, 3600000, &timeout_ms)) {
                                fprintf(stderr, "%s: invalid --connect-timeout '%s'\n", argv[0],
                                        optarg);
                                return 2;
                        }
                        break;
                case 'H':
                        if (!app_parse_long(optarg, 1024, 1L << 30, &high)) {
                                fprintf(stderr, "%s: invalid --high-water '%s'\n", argv[0], optarg);
                                return 2;
                        }
                        break;
                case 'w':
                case 'a':
                case 'l':
                case APP_OPT_LOG_FORMAT:
                        if (app_server_opt(ch, optarg, argv[0], &o, &have_port) < 0)
                                return 2;
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
        if (!have_listen || !have_to || optind != argc) {
                usage(stderr, argv[0]);
                return 2;
        }
        if (admin && *admin && !app_admin_addr_valid(admin)) {
                fprintf(stderr, "%s: invalid --admin '%s' (HOST:PORT)\n", argv[0], admin);
                return 2;
        }

        static struct proxy px;
        if (proxy_init(&px, to_host, to_port, (uint32_t)timeout_ms) < 0)
                return 1;
        if (high) {
                o.high_water = (size_t)high;
                o.low_water = (size_t)high / 2;
        }
        proxy_apply(&o, &px);
        app_log_default_workers("tern-proxy", o.workers);
        server = tern_server_new(&o);
        if (!server) {
                tern_error("tern-proxy: cannot start: %s", strerror(errno));
                return 1;
        }
        if (app_admin_attach(server, "tern-proxy", admin, proxy_metrics, &px) < 0) {
                tern_server_free(server);
                return 1;
        }
        app_stop_server_on_signals(server);

        tern_info("tern-proxy listening on %s port %u, forwarding to %s port %u, %d worker(s)",
                  o.bind ? o.bind : "*", tern_server_port(server), px.to_host, px.to_port,
                  tern_server_workers(server));
        int r = tern_server_run(server);
        if (r)
                tern_error("tern-proxy: %s", tern_strerror(r));
        tern_server_free(server);
        tern_info("tern-proxy stopped");
        return r ? 1 : 0;
}
