/*
 * tern-echo: echoes every byte back. The benchmark target for tern's raw
 * speed, and the smallest complete tern server.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cli.h"
#include "tern.h"

static tern_server *server;

static void on_message(tern_conn *c, struct tern_buf *in)
{
        /* On a send error the connection is already closed; nothing to do. */
        tern_conn_send(c, tern_buf_data(in), tern_buf_len(in));
        tern_buf_consume(in, tern_buf_len(in));
}

static const struct tern_conn_ops echo_ops = {.on_message = on_message};

static void usage(FILE *f, const char *argv0)
{
        fprintf(f,
                "usage: %s --port P [--bind ADDR] [--workers N] [--accept MODE] [--log-level L]\n"
                "          [--log-format F] [--admin ADDR:PORT]\n"
                "\n"
                "Echoes every byte it receives back to the sender.\n"
                "\n"
                "  -p, --port P        TCP port to listen on (required; 0 = ephemeral)\n"
                "  -b, --bind ADDR     address to bind (default: all IPv4 and IPv6)\n"
                "  -w, --workers N     worker threads (default: CPUs available, %d here)\n"
                "  -a, --accept MODE   where connections are accepted: thread (an acceptor\n"
                "                      thread hands them to the workers), worker (worker 0's\n"
                "                      loop accepts), auto (worker with 1 worker, else thread;\n"
                "                      the default)\n"
                "  -l, --log-level L   debug, info, warn, error or off (default info)\n"
                "      --log-format F  text or json, one object per line (also\n"
                "                      TERN_LOG_FORMAT; default text)\n"
                "  -A, --admin ADDR:PORT  serve /metrics, /healthz, /readyz over HTTP there\n"
                "                      (also TERN_ADMIN; default off; docs/admin.md)\n"
                "  -h, --help          this text\n"
                "\n"
                "SIGINT or SIGTERM stops it gracefully; SIGHUP switches debug logging\n"
                "on, the next SIGHUP back off.\n",
                argv0, tern_default_workers());
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
            {"port", required_argument, NULL, 'p'},
            {"bind", required_argument, NULL, 'b'},
            {"workers", required_argument, NULL, 'w'},
            {"log-level", required_argument, NULL, 'l'},
            {"accept", required_argument, NULL, 'a'},
            {"admin", required_argument, NULL, 'A'},
            APP_LOG_FORMAT_OPTION,
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.ops = &echo_ops;
        bool have_port = false;
        const char *admin = getenv(APP_ADMIN_ENV);
        if (app_log_format_from_env(argv[0]) < 0)
                return 2;
        int ch;
        while ((ch = getopt_long(argc, argv, "p:b:w:a:l:A:h", longopts, NULL)) != -1) {
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

        app_reap_orphans_as_init();
        app_log_default_workers("tern-echo", o.workers);
        server = tern_server_new(&o);
        if (!server) {
                tern_error("tern-echo: cannot start: %s", strerror(errno));
                return 1;
        }
        if (app_admin_attach(server, "tern-echo", admin, NULL, NULL) < 0) {
                tern_server_free(server);
                return 1;
        }
        app_stop_server_on_signals(server);

        tern_info("tern-echo listening on %s port %u with %d worker(s)", o.bind ? o.bind : "*",
                  tern_server_port(server), tern_server_workers(server));
        int r = tern_server_run(server);
        if (r)
                tern_error("tern-echo: %s", tern_strerror(r));
        tern_server_free(server);
        tern_info("tern-echo stopped");
        return r ? 1 : 0;
}
