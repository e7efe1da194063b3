/*
 * TLS options shared by the programs in apps/ (docs/tls.md): the flags and
 * their TERN_TLS_* variables, loading the configuration, the TLS listener
 * beside the plain one, and certificate reload on SIGHUP. Not part of
 * libtern.
 */
#ifndef TERN_APP_TLSOPT_H
#define TERN_APP_TLSOPT_H

#include <getopt.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tern.h"
#include "tls.h"

#define APP_TLS_MAX_SNI 8

/* Codes of the TLS flags, above every program's own. */
enum {
        APP_OPT_TLS_PORT = 0x200,
        APP_OPT_TLS_CERT,
        APP_OPT_TLS_KEY,
        APP_OPT_TLS_CA,
        APP_OPT_TLS_VERIFY_CLIENT,
        APP_OPT_TLS_SNI,
        APP_OPT_TLS_ALPN,
        APP_OPT_TLS_HANDSHAKE_TIMEOUT,
};

/* For a program's struct app_flag table (cli.h): the TLS flags and their
 * TERN_TLS_* variables. */
#define APP_TLS_FLAGS                                                                              \
        {"tls-port", required_argument, APP_OPT_TLS_PORT, "TERN_TLS_PORT"},                        \
            {"tls-cert", required_argument, APP_OPT_TLS_CERT, "TERN_TLS_CERT"},                    \
            {"tls-key", required_argument, APP_OPT_TLS_KEY, "TERN_TLS_KEY"},                       \
            {"tls-ca", required_argument, APP_OPT_TLS_CA, "TERN_TLS_CA"},                          \
            {"tls-verify-client", required_argument, APP_OPT_TLS_VERIFY_CLIENT,                    \
             "TERN_TLS_VERIFY_CLIENT"},                                                            \
            {"tls-sni", required_argument, APP_OPT_TLS_SNI, "TERN_TLS_SNI"},                       \
            {"tls-alpn", required_argument, APP_OPT_TLS_ALPN, "TERN_TLS_ALPN"},                    \
        {                                                                                          \
                "tls-handshake-timeout", required_argument, APP_OPT_TLS_HANDSHAKE_TIMEOUT,         \
                    "TERN_TLS_HANDSHAKE_TIMEOUT"                                                   \
        }

/* What the flags (or their variables) asked for; the flag wins. */
struct app_tls {
        bool have_port;
        uint16_t port;
        struct tern_tls_opts opts;
        struct tern_tls_cert sni[APP_TLS_MAX_SNI];
        char *sni_spec[APP_TLS_MAX_SNI]; /* "CERT:KEY", owned */
        bool sni_from_env;               /* a --tls-sni flag replaces TERN_TLS_SNI */
        tern_tls *tls;                   /* after app_tls_load(), when asked for */
};

/* The defaults. */
void app_tls_init(struct app_tls *t);

/* For an app_apply_fn (cli.h): applies TLS flag or variable @val (@what is
 * "--tls-port" or "TERN_TLS_PORT"). Returns 1 when it was one of
 * APP_OPT_TLS_* and valid, 0 when it is not one, -EINVAL with one line in
 * @err for a bad value. */
int app_tls_flag(struct app_tls *t, int val, const char *arg, const char *what, char *err,
                 size_t errlen);

/* True when TLS was asked for (a TLS port, or a certificate). */
bool app_tls_wanted(const struct app_tls *t);

/* Checks the combination and loads the files: a missing or expired
 * certificate, a key that does not match, is one line naming the file.
 * @need_port: a certificate without --tls-port is an error (else it is for
 * the program's own listener, as tern-proxy's --listen). Returns 0 (t->tls
 * set, or TLS not wanted), or -1 with the reason in @err (exit 2). */
int app_tls_load(struct app_tls *t, bool need_port, char *err, size_t errlen);

/* Adds the TLS listener to @s: the stack of the first listener @o made
 * (bind address, ops, codec, idle timeout, user) on t->port, over TLS, and
 * logs where. Returns the listener id, 0 when TLS was not asked for, or
 * -errno (logged). */
int app_tls_listen(tern_server *s, struct app_tls *t, const struct tern_server_opts *o,
                   const char *prog);

/* Usage lines for the TLS flags. */
void app_tls_usage(FILE *f);

/* Frees what app_tls_init/opt/load made. */
void app_tls_free(struct app_tls *t);

/* For app_reload_on_sighup (cli.h): reloads the TLS files of a struct
 * app_tls, logging what it did. */
void app_reload_tls(void *app_tls);

#endif
