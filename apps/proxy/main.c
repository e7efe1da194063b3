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
                "  -A, --admin ADDR:PORT     serve /metrics, /healthz, /readyz over HTTP there\n"
                "                            (also TERN_ADMIN; default off; docs/admin.md)\n"
                "  -h, --help                this text\n"
                "TLS termination: with --tls-cert and --tls-key, --listen speaks TLS (and\n"
                "--tls-port adds a second, TLS, listener instead):\n",
                argv0, tern_default_workers(), PROXY_DEFAULT_HIGH_WATER);
        app_tls_usage(f);
        fputs("TLS origination, to a destination that speaks TLS:\n"
              "  --to-tls                  connect to --to over TLS (TERN_TO_TLS=1)\n"
              "  --to-ca FILE              CAs to trust for it (TERN_TO_CA; default: the\n"
              "                            system's store)\n"
              "  --to-name NAME            name to ask for and verify (TERN_TO_NAME; default:\n"
              "                            the host of --to)\n"
              "  --to-insecure             do not verify its certificate (TERN_TO_INSECURE=1)\n"
              "\nSIGINT or SIGTERM stops it gracefully; SIGHUP reloads the certificates.\n",
              f);
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
            {"admin", required_argument, NULL, 'A'},
            {"help", no_argument, NULL, 'h'},
            {"to-tls", no_argument, NULL, 0x300},
            {"to-ca", required_argument, NULL, 0x301},
            {"to-name", required_argument, NULL, 0x302},
            {"to-insecure", no_argument, NULL, 0x303},
            APP_TLS_LONGOPTS,
            {NULL, 0, NULL, 0},
        };
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        char listen_host[256], to_host[256];
        uint16_t to_port = 0;
        bool have_listen = false, have_to = false, have_port = false;
        long timeout_ms = 10000, high = 0;
        const char *admin = getenv(APP_ADMIN_ENV);
        struct app_tls tls;
        char tls_err[512];
        if (app_tls_init(&tls, tls_err, sizeof(tls_err)) < 0) {
                fprintf(stderr, "%s: %s\n", argv[0], tls_err);
                return 2;
        }
        const char *to_ca = getenv("TERN_TO_CA"), *to_name = getenv("TERN_TO_NAME");
        const char *e = getenv("TERN_TO_TLS");
        bool to_tls = e && !strcmp(e, "1");
        e = getenv("TERN_TO_INSECURE");
        bool to_insecure = e && !strcmp(e, "1");
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
                        if (app_server_opt(ch, optarg, argv[0], &o, &have_port) < 0)
                                return 2;
                        break;
                case 'A':
                        admin = optarg;
                        break;
                case 'h':
                        usage(stdout, argv[0]);
                        return 0;
                case 0x300:
                        to_tls = true;
                        break;
                case 0x301:
                        to_ca = optarg;
                        break;
                case 0x302:
                        to_name = optarg;
                        break;
                case 0x303:
                        to_insecure = true;
                        break;
                default: {
                        int tr = app_tls_opt(&tls, ch, optarg, tls_err, sizeof(tls_err));
                        if (tr > 0)
                                break;
                        app_tls_free(&tls);
                        if (tr < 0) {
                                fprintf(stderr, "%s: %s\n", argv[0], tls_err);
                                return 2;
                        }
                        usage(stderr, argv[0]);
                        return 2;
                }
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

        if (app_tls_load(&tls, false, tls_err, sizeof(tls_err)) < 0) {
                fprintf(stderr, "%s: %s\n", argv[0], tls_err);
                return 2;
        }
        tern_tls *to = NULL;
        if (to_tls) {
                struct tern_tls_opts to_opts;
                tern_tls_opts_init(&to_opts);
                to_opts.client = true;
                to_opts.ca_file = to_ca;
                to_opts.verify = to_insecure ? TERN_TLS_VERIFY_NONE : TERN_TLS_VERIFY_REQUIRED;
                char err[512];
                to = tern_tls_new(&to_opts, err, sizeof(err));
                if (!to) {
                        fprintf(stderr, "%s: --to-tls: %s\n", argv[0], err);
                        app_tls_free(&tls);
                        return 2;
                }
        }

        static struct proxy px;
        if (proxy_init(&px, to_host, to_port, (uint32_t)timeout_ms) < 0) {
                tern_tls_free(to);
                app_tls_free(&tls);
                return 1;
        }
        px.to_tls = to;
        snprintf(px.to_name, sizeof(px.to_name), "%s", to_name ? to_name : to_host);
        if (!tls.have_port)
                o.tls = tls.tls; /* --listen itself speaks TLS */
        if (high) {
                o.high_water = (size_t)high;
                o.low_water = (size_t)high / 2;
        }
        proxy_apply(&o, &px);
        app_log_default_workers("tern-proxy", o.workers);
        server = tern_server_new(&o);
        if (!server) {
                tern_error("tern-proxy: cannot start: %s", strerror(errno));
                tern_tls_free(to);
                app_tls_free(&tls);
                return 1;
        }
        if (tls.have_port) {
                if (app_tls_listen(server, &tls, &o, "tern-proxy") < 0) {
                        tern_server_free(server);
                        tern_tls_free(to);
                        app_tls_free(&tls);
                        return 1;
                }
        }
        app_reload_on_sighup(app_reload_tls, &tls);
        if (app_admin_attach(server, "tern-proxy", admin, proxy_metrics, &px) < 0) {
                tern_server_free(server);
                return 1;
        }
        app_stop_server_on_signals(server);

        tern_info("tern-proxy listening on %s port %u%s, forwarding to %s port %u%s, %d "
                  "worker(s)",
                  o.bind ? o.bind : "*", tern_server_port(server), o.tls ? " (TLS)" : "",
                  px.to_host, px.to_port, to ? " over TLS" : "", tern_server_workers(server));
        int r = tern_server_run(server);
        if (r)
                tern_error("tern-proxy: %s", tern_strerror(r));
        tern_server_free(server);
        tern_tls_free(to);
        app_tls_free(&tls);
        tern_info("tern-proxy stopped");
        return r ? 1 : 0;
}
