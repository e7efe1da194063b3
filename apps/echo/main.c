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
#include "tlsopt.h"

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
                "          [--admin ADDR:PORT] [--tls-port P --tls-cert FILE --tls-key FILE]\n"
                "\n"
                "Echoes every byte it receives back to the sender. Every setting may also\n"
                "come from the variable shown; a flag wins over its variable.\n"
                "\n"
                "  -p, --port P        TERN_PORT       TCP port to listen on (required;\n"
                "                                      0 = ephemeral)\n"
                "  -b, --bind ADDR     TERN_BIND       address to bind (default: all IPv4\n"
                "                                      and IPv6)\n"
                "  -w, --workers N     TERN_WORKERS    worker threads (default: CPUs\n"
                "                                      available, %d here)\n"
                "  -a, --accept MODE   TERN_ACCEPT     where connections are accepted: thread\n"
                "                                      (an acceptor thread hands them to the\n"
                "                                      workers), worker (worker 0's loop\n"
                "                                      accepts), auto (worker with 1 worker,\n"
                "                                      else thread; the default)\n"
                "  -l, --log-level L   TERN_LOG_LEVEL  debug, info, warn, error or off\n"
                "                                      (default info)\n"
                "      --log-format F  TERN_LOG_FORMAT text or json, one object per line\n"
                "                                      (default text)\n"
                "  -A, --admin ADDR:PORT TERN_ADMIN    serve /metrics, /healthz, /readyz over\n"
                "                                      HTTP there (default off; docs/admin.md)\n"
                "  -h, --help                          this text\n"
                "  -V, --version                       the version, then exit\n",
                argv0, tern_default_workers());
        app_tls_usage(f);
        fputs("\nSIGINT or SIGTERM stops it gracefully; SIGHUP reloads the TLS files;\n"
              "SIGUSR1 switches debug logging on and off. Exit\n"
              "status: 0 after a graceful stop, --help or --version; 1 when it cannot start\n"
              "or fails; 2 for a bad flag or variable.\n",
              f);
}

static const struct app_flag echo_flags[] = {
    {"port", required_argument, 'p', "TERN_PORT"},
    {"bind", required_argument, 'b', "TERN_BIND"},
    {"workers", required_argument, 'w', "TERN_WORKERS"},
    {"accept", required_argument, 'a', "TERN_ACCEPT"},
    {"log-level", required_argument, 'l', "TERN_LOG_LEVEL"},
    {"log-format", required_argument, APP_OPT_LOG_FORMAT, "TERN_LOG_FORMAT"},
    {"admin", required_argument, 'A', APP_ADMIN_ENV},
    {"help", no_argument, 'h', NULL},
    {"version", no_argument, 'V', NULL},
    APP_TLS_FLAGS,
    {NULL, 0, 0, NULL},
};

struct echo_cfg {
        struct tern_server_opts o;
        bool have_port;
        const char *admin;
        struct app_tls tls;
};

static int echo_apply(void *ctx, int val, const char *arg, const char *what, char *err,
                      size_t errlen)
{
        struct echo_cfg *cfg = ctx;
        uint32_t max_conns = 0;
        if (val == 'A') {
                if (*arg && !app_admin_addr_valid(arg))
                        return app_cli_fail(err, errlen, "invalid %s '%s': expected HOST:PORT",
                                            what, arg);
                cfg->admin = arg;
                return 0;
        }
        int r = app_tls_flag(&cfg->tls, val, arg, what, err, errlen);
        if (r == 0)
                r = app_server_flag(val, arg, what, &cfg->o, &cfg->have_port, &max_conns, err,
                                    errlen);
        return r < 0 ? r : 0;
}

int main(int argc, char **argv)
{
        static struct echo_cfg cfg;
        tern_server_opts_init(&cfg.o);
        cfg.o.ops = &echo_ops;
        app_tls_init(&cfg.tls);
        const struct app_cli cli = {
            .prog = "tern-echo",
            .shortopts = "p:b:w:a:l:A:hV",
            .flags = echo_flags,
            .apply = echo_apply,
            .ctx = &cfg,
            .usage = usage,
        };
        int r = app_cli_main(&cli, argc, argv);
        if (r >= 0) {
                app_tls_free(&cfg.tls);
                return r;
        }
        if (!cfg.have_port) {
                fprintf(stderr, "tern-echo: --port (or TERN_PORT) is required (see --help)\n");
                app_tls_free(&cfg.tls);
                return APP_EXIT_USAGE;
        }
        char err[512];
        if (app_tls_load(&cfg.tls, true, err, sizeof(err)) < 0) {
                fprintf(stderr, "tern-echo: %s\n", err);
                app_tls_free(&cfg.tls);
                return APP_EXIT_USAGE;
        }
        struct tern_server_opts o = cfg.o;
        const char *admin = cfg.admin;

        app_catch_stop_signals(); /* before the port accepts */
        app_tune_malloc();
        app_reap_orphans_as_init();
        app_log_default_workers("tern-echo", o.workers);
        server = tern_server_new(&o);
        if (!server) {
                tern_error("tern-echo: cannot start: %s", strerror(errno));
                app_tls_free(&cfg.tls);
                return 1;
        }
        if (app_tls_listen(server, &cfg.tls, &o, "tern-echo") < 0 ||
            app_admin_attach(server, "tern-echo", admin, NULL, NULL) < 0) {
                tern_server_free(server);
                app_tls_free(&cfg.tls);
                return 1;
        }
        if (cfg.tls.tls)
                app_reload_on_sighup(app_reload_tls, &cfg.tls);
        app_stop_server_on_signals(server);

        tern_info("tern-echo listening on %s port %u with %d worker(s)", o.bind ? o.bind : "*",
                  tern_server_port(server), tern_server_workers(server));
        r = tern_server_run(server);
        if (r)
                tern_error("tern-echo: %s", tern_strerror(r));
        tern_server_free(server);
        app_tls_free(&cfg.tls);
        tern_info("tern-echo stopped");
        return r ? 1 : 0;
}
