/*
 * The programs' TLS flags, the TLS listener and reload on SIGHUP (tlsopt.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tlsopt.h"

static int set_sni(struct app_tls *t, const char *spec, const char *what, char *err, size_t errlen)
{
        /* A list: "CERT:KEY[,CERT:KEY...]" (a flag may also repeat). */
        const char *p = spec;
        while (*p) {
                size_t len = strcspn(p, ",");
                if (t->opts.n_sni == APP_TLS_MAX_SNI) {
                        snprintf(err, errlen, "invalid %s: at most %d certificates", what,
                                 APP_TLS_MAX_SNI);
                        return -1;
                }
                char *one = strndup(p, len);
                char *colon = one ? strchr(one, ':') : NULL;
                if (!colon || colon == one || !colon[1]) {
                        snprintf(err, errlen, "invalid %s '%.*s' (CERT_FILE:KEY_FILE)", what,
                                 (int)len, p);
                        free(one);
                        return -1;
                }
                *colon = '\0';
                size_t i = t->opts.n_sni++;
                t->sni_spec[i] = one;
                t->sni[i] = (struct tern_tls_cert){one, colon + 1};
                p += len;
                if (*p == ',')
                        p++;
        }
        t->opts.sni = t->sni;
        return 0;
}

static int set_verify(struct app_tls *t, const char *v, const char *what, char *err, size_t errlen)
{
        if (!strcmp(v, "none"))
                t->opts.verify = TERN_TLS_VERIFY_NONE;
        else if (!strcmp(v, "optional"))
                t->opts.verify = TERN_TLS_VERIFY_OPTIONAL;
        else if (!strcmp(v, "required"))
                t->opts.verify = TERN_TLS_VERIFY_REQUIRED;
        else {
                snprintf(err, errlen, "invalid %s '%s' (none, optional or required)", what, v);
                return -1;
        }
        return 0;
}

/* One setting from a flag or a variable; @what names it for the error. */
static int set(struct app_tls *t, int ch, const char *arg, const char *what, char *err,
               size_t errlen)
{
        long v;
        switch (ch) {
        case APP_OPT_TLS_PORT:
                if (!app_parse_long(arg, 0, 65535, &v)) {
                        snprintf(err, errlen, "invalid %s '%s' (0-65535)", what, arg);
                        return -1;
                }
                t->port = (uint16_t)v;
                t->have_port = true;
                return 0;
        case APP_OPT_TLS_CERT:
                t->opts.cert.cert_file = arg;
                return 0;
        case APP_OPT_TLS_KEY:
                t->opts.cert.key_file = arg;
                return 0;
        case APP_OPT_TLS_CA:
                t->opts.ca_file = arg;
                return 0;
        case APP_OPT_TLS_VERIFY_CLIENT:
                return set_verify(t, arg, what, err, errlen);
        case APP_OPT_TLS_SNI:
                return set_sni(t, arg, what, err, errlen);
        case APP_OPT_TLS_ALPN:
                t->opts.alpn = arg;
                return 0;
        case APP_OPT_TLS_HANDSHAKE_TIMEOUT:
                if (!app_parse_long(arg, 1, 3600000, &v)) {
                        snprintf(err, errlen, "invalid %s '%s' (milliseconds, 1-3600000)", what,
                                 arg);
                        return -1;
                }
                t->opts.handshake_timeout_ms = (uint32_t)v;
                return 0;
        default:
                return 1;
        }
}

void app_tls_init(struct app_tls *t)
{
        memset(t, 0, sizeof(*t));
        tern_tls_opts_init(&t->opts);
}

int app_tls_flag(struct app_tls *t, int val, const char *arg, const char *what, char *err,
                 size_t errlen)
{
        if (val < APP_OPT_TLS_PORT || val > APP_OPT_TLS_HANDSHAKE_TIMEOUT)
                return 0;
        bool from_env = strncmp(what, "TERN_", 5) == 0;
        if (val == APP_OPT_TLS_SNI) {
                if (!from_env && t->sni_from_env) {
                        for (size_t j = 0; j < t->opts.n_sni; j++) {
                                free(t->sni_spec[j]);
                                t->sni_spec[j] = NULL;
                        }
                        t->opts.n_sni = 0;
                }
                t->sni_from_env = from_env;
        }
        return set(t, val, arg, what, err, errlen) < 0 ? -EINVAL : 1;
}

bool app_tls_wanted(const struct app_tls *t)
{
        return t->have_port || t->opts.cert.cert_file || t->opts.cert.key_file;
}

int app_tls_load(struct app_tls *t, bool need_port, char *err, size_t errlen)
{
        if (!app_tls_wanted(t))
                return 0;
        if (!t->have_port && need_port) {
                snprintf(err, errlen, "--tls-cert needs --tls-port (or TERN_TLS_PORT)");
                return -1;
        }
        if (!t->opts.cert.cert_file || !t->opts.cert.key_file) {
                snprintf(err, errlen, "--tls-port needs --tls-cert and --tls-key");
                return -1;
        }
        char why[400];
        t->tls = tern_tls_new(&t->opts, why, sizeof(why));
        if (!t->tls) {
                snprintf(err, errlen, "TLS: %s", why);
                return -1;
        }
        return 0;
}

int app_tls_listen(tern_server *s, struct app_tls *t, const struct tern_server_opts *o,
                   const char *prog)
{
        if (!t->tls)
                return 0;
        struct tern_listener_opts lo;
        tern_listener_opts_init(&lo);
        lo.bind = o->bind;
        lo.port = t->port;
        lo.nodelay = o->nodelay;
        lo.reuseport = o->reuseport;
        lo.ops = o->ops;
        lo.codec = o->codec;
        lo.codec_config = o->codec_config;
        lo.idle_timeout_ms = o->idle_timeout_ms;
        lo.user = o->user;
        lo.tls = t->tls;
        int id = tern_server_listen(s, &lo);
        if (id < 0)
                tern_error("%s: cannot listen for TLS on port %u: %s", prog, t->port,
                           tern_strerror(id));
        else
                tern_info("%s listening for TLS on %s port %u", prog, lo.bind ? lo.bind : "*",
                          tern_server_listener_port(s, id));
        return id;
}

void app_tls_usage(FILE *f)
{
        fputs("  --tls-port P             TERN_TLS_PORT  also serve TLS on port P (0 =\n"
              "                                          ephemeral), on the same workers\n"
              "  --tls-cert FILE          TERN_TLS_CERT  PEM certificate chain (leaf first)\n"
              "  --tls-key FILE           TERN_TLS_KEY   PEM private key of that certificate\n"
              "  --tls-sni CERT:KEY       TERN_TLS_SNI   more certificates, chosen by the name\n"
              "                                          the client asks for (SNI); a comma-\n"
              "                                          separated list, or repeat the flag\n"
              "  --tls-alpn LIST          TERN_TLS_ALPN  ALPN protocols to accept\n"
              "  --tls-ca FILE            TERN_TLS_CA    CAs for client certificates (mTLS)\n"
              "  --tls-verify-client M    TERN_TLS_VERIFY_CLIENT  none (default), optional\n"
              "                                          or required (needs --tls-ca)\n"
              "  --tls-handshake-timeout MS  TERN_TLS_HANDSHAKE_TIMEOUT  close peers that\n"
              "                                          have not finished (default 10000)\n"
              "                                          (docs/tls.md)\n",
              f);
}

void app_tls_free(struct app_tls *t)
{
        tern_tls_free(t->tls);
        t->tls = NULL;
        for (size_t i = 0; i < APP_TLS_MAX_SNI; i++) {
                free(t->sni_spec[i]);
                t->sni_spec[i] = NULL;
        }
}

void app_reload_tls(void *arg)
{
        struct app_tls *t = arg;
        if (!t->tls)
                return;
        char err[512];
        int r = tern_tls_reload(t->tls, err, sizeof(err));
        if (r < 0)
                tern_warn("TLS reload refused, the old certificates stay in use: %s", err);
        else
                tern_info("TLS certificates reloaded (generation %llu)",
                          (unsigned long long)tern_tls_generation(t->tls));
}
