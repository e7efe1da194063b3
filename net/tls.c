/*
 * TLS over OpenSSL 3: loading a configuration (tern_tls), reloading it, the
 * session ticket keys, and the transport a connection runs over
 * (conn_internal.h, struct tern__xport_ops).
 *
 * Edge-triggered epoll and OpenSSL: a read goes on until SSL_read() says
 * WANT_READ, which means both OpenSSL's buffers and the socket are empty, so
 * a record OpenSSL read ahead is never stranded without an edge. Reads and
 * writes that want the other direction (a TLS 1.3 key update) just wait: the
 * connection retries its read on every edge, either direction.
 *
 * Each load of the files is a generation: the SSL_CTXs of the default and
 * the SNI certificates. New connections take the current one; a reload
 * builds a complete new generation first and swaps it in only when every
 * file loaded, so a bad file changes nothing. A connection keeps a
 * reference to its generation (the SNI callback reads it) until it closes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "addr.h"
#include "clock.h"
#include "conn_internal.h"
#include "error.h"
#include "log.h"
#include "tls.h"

#define TLS_MAX_SNI  16
#define TLS_MAX_ALPN 255
#define TLS_WHY_SIZE 160
#define TLS12_CIPHERS                                                                              \
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* One load of the files. */
struct gen {
        int refs; /* atomic: the configuration's + one per connection */
        SSL_CTX *ctx;
        SSL_CTX *sni[TLS_MAX_SNI];
        size_t n_sni;
};

/* A session ticket key: name, AES-256 key, HMAC-SHA256 key. */
struct ticket_key {
        unsigned char name[16];
        unsigned char aes[32];
        unsigned char hmac[32];
};

struct tern_tls {
        struct tern__xport xport; /* first: listeners and connectors hand it down */
        bool client;
        enum tern_tls_verify verify;
        char *cert_file, *key_file, *ca_file;
        char *sni_cert[TLS_MAX_SNI], *sni_key[TLS_MAX_SNI];
        size_t n_sni;
        unsigned char alpn[TLS_MAX_ALPN + 1]; /* wire format: length-prefixed names */
        unsigned alpn_len;
        uint32_t ticket_lifetime_s;

        pthread_mutex_t lock; /* cur, generation, keys, client_sess */
        struct gen *cur;
        uint64_t generation;
        struct ticket_key keys[2]; /* [0] issues tickets, [1] still accepted */
        uint64_t keys_born;        /* tern_now_ms() */
        SSL_SESSION *client_sess;  /* a client's last session, to resume */
        char *client_sess_host;
};

/* A connection's state. */
struct tls_conn {
        SSL *ssl;
        int fd;
        bool drained; /* the last recv() found the socket empty or short */
        struct gen *gen;
        struct tern_tls *tls;
        char why[TLS_WHY_SIZE]; /* the reason of the last failure */
        struct sockaddr_storage peer;
        socklen_t peer_len; /* 0 until known */
};

static int g_conn_idx = -1; /* SSL ex_data: struct tls_conn */
static int g_tls_idx = -1;  /* SSL_CTX ex_data: struct tern_tls */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *g_bio;

/* ---- a socket BIO that never raises SIGPIPE ---- */

/* OpenSSL's own socket BIO writes with write(2): a reset peer would kill a
 * process that did not ignore SIGPIPE. Ours sends with MSG_NOSIGNAL, as the
 * plain connection does. */
static int bio_write(BIO *b, const char *buf, int len)
{
        int fd = ((struct tls_conn *)BIO_get_data(b))->fd;
        BIO_clear_retry_flags(b);
        ssize_t n;
        do
                n = send(fd, buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno == EAGAIN)
                BIO_set_retry_write(b);
        return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
        struct tls_conn *tc = BIO_get_data(b);
        BIO_clear_retry_flags(b);
        ssize_t n;
        do
                n = recv(tc->fd, buf, (size_t)len, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno == EAGAIN)
                BIO_set_retry_read(b);
        /* Less than asked for: the socket is empty now, and new bytes will
         * come with a new edge (see tls_drained). */
        tc->drained = n < len;
        return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
        (void)b, (void)num, (void)ptr;
        return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
        BIO_set_init(b, 1);
        return 1;
}

static void init_once(void)
{
        g_conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        g_tls_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        g_bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tern socket");
        if (g_bio) {
                BIO_meth_set_write(g_bio, bio_write);
                BIO_meth_set_read(g_bio, bio_read);
                BIO_meth_set_ctrl(g_bio, bio_ctrl);
                BIO_meth_set_create(g_bio, bio_create);
        }
}

/* ---- errors ---- */

/* "what: OpenSSL's reason" into @err; clears OpenSSL's queue. */
static void say(char *err, size_t errlen, const char *what)
{
        char ossl[200] = "";
        unsigned long e = ERR_peek_last_error();
        if (e)
                ERR_error_string_n(e, ossl, sizeof(ossl));
        ERR_clear_error();
        if (err && errlen)
                snprintf(err, errlen, "%s%s%s", what, *ossl ? ": " : "", ossl);
}

/* ---- ticket keys ---- */

static int new_key(struct ticket_key *k)
{
        return RAND_bytes(k->name, sizeof(k->name)) == 1 &&
                       RAND_priv_bytes(k->aes, sizeof(k->aes)) == 1 &&
                       RAND_priv_bytes(k->hmac, sizeof(k->hmac)) == 1
                   ? 0
                   : -ENOMEM;
}

/* Under t->lock: the key that issues tickets is ticket_lifetime_s old at most;
 * its predecessor still opens tickets it issued. */
static void rotate_keys_locked(struct tern_tls *t, uint64_t now)
{
        if (now - t->keys_born < (uint64_t)t->ticket_lifetime_s * 1000)
                return;
        struct ticket_key k;
        if (new_key(&k) < 0)
                return; /* keep the old one; try again at the next ticket */
        t->keys[1] = t->keys[0];
        t->keys[0] = k;
        t->keys_born = now;
        OPENSSL_cleanse(&k, sizeof(k));
}

static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
        struct tern_tls *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), g_tls_idx);
        struct ticket_key k;
        int r = 1;
        pthread_mutex_lock(&t->lock);
        if (enc) {
                rotate_keys_locked(t, tern_now_ms());
                k = t->keys[0];
        } else if (!memcmp(name, t->keys[0].name, 16)) {
                k = t->keys[0];
        } else if (!memcmp(name, t->keys[1].name, 16)) {
                k = t->keys[1];
                r = 2; /* good, but issue a ticket under the current key */
        } else {
                r = 0; /* unknown or expired key: a full handshake */
        }
        pthread_mutex_unlock(&t->lock);
        if (r == 0)
                return 0;
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end(),
        };
        if (enc) {
                memcpy(name, k.name, 16);
                if (RAND_bytes(iv, 16) != 1 ||
                    !EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv))
                        r = -1;
        } else if (!EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv)) {
                r = -1;
        }
        if (r > 0 && !EVP_MAC_CTX_set_params(hctx, params))
                r = -1;
        OPENSSL_cleanse(&k, sizeof(k));
        return r;
}

/* ---- SNI, ALPN, client sessions ---- */

static int servername_cb(SSL *s, int *alert, void *arg)
{
        (void)alert, (void)arg;
        struct tls_conn *tc = SSL_get_ex_data(s, g_conn_idx);
        const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
        if (!name || !tc)
                return SSL_TLSEXT_ERR_OK;
        for (size_t i = 0; i < tc->gen->n_sni; i++) {
                X509 *leaf = SSL_CTX_get0_certificate(tc->gen->sni[i]);
                if (leaf && X509_check_host(leaf, name, 0, 0, NULL) == 1) {
                        SSL_set_SSL_CTX(s, tc->gen->sni[i]);
                        return SSL_TLSEXT_ERR_OK;
                }
        }
        /* No certificate has that name: the default one answers, as nginx's
         * default server does; a client that checks names refuses it. */
        return SSL_TLSEXT_ERR_OK;
}

static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
        (void)s;
        struct tern_tls *t = arg;
        unsigned char *o = NULL;
        if (SSL_select_next_proto(&o, outlen, t->alpn, t->alpn_len, in, inlen) !=
            OPENSSL_NPN_NEGOTIATED)
                return SSL_TLSEXT_ERR_NOACK; /* go on without ALPN */
        *out = o;
        return SSL_TLSEXT_ERR_OK;
}

/* A client keeps its last session, to offer it on the next connect. */
static int client_new_session_cb(SSL *s, SSL_SESSION *sess)
{
        struct tls_conn *tc = SSL_get_ex_data(s, g_conn_idx);
        const char *host = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
        if (!tc)
                return 0;
        struct tern_tls *t = tc->tls;
        char *h = host ? strdup(host) : NULL;
        if (host && !h)
                return 0;
        pthread_mutex_lock(&t->lock);
        SSL_SESSION *old = t->client_sess;
        char *oldh = t->client_sess_host;
        t->client_sess = sess;
        t->client_sess_host = h;
        pthread_mutex_unlock(&t->lock);
        SSL_SESSION_free(old);
        free(oldh);
        return 1; /* we keep the reference */
}

/* ---- loading ---- */

static int alpn_wire(const char *list, unsigned char *out, unsigned *outlen)
{
        unsigned n = 0;
        const char *p = list;
        while (*p) {
                size_t len = strcspn(p, ",");
                if (len == 0 || len > 255 || n + 1 + len > TLS_MAX_ALPN)
                        return -EINVAL;
                out[n++] = (unsigned char)len;
                memcpy(out + n, p, len);
                n += (unsigned)len;
                p += len;
                if (*p == ',')
                        p++;
        }
        *outlen = n;
        return n ? 0 : -EINVAL;
}

/* A certificate that is not valid now is refused at load. */
static int check_dates(SSL_CTX *ctx, const char *file, char *err, size_t errlen)
{
        X509 *leaf = SSL_CTX_get0_certificate(ctx);
        if (!leaf)
                return 0;
        if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
                snprintf(err, errlen, "%s: certificate has expired", file);
                return -EINVAL;
        }
        if (X509_cmp_current_time(X509_get0_notBefore(leaf)) >= 0) {
                snprintf(err, errlen, "%s: certificate is not valid yet", file);
                return -EINVAL;
        }
        return 0;
}

static int load_pair(struct tern_tls *t, SSL_CTX *ctx, const char *cert, const char *key, char *err,
                     size_t errlen)
{
        char what[600];
        if (access(cert, R_OK) < 0 || access(key, R_OK) < 0) {
                int e = errno;
                snprintf(err, errlen, "%s: %s", access(cert, R_OK) < 0 ? cert : key, strerror(e));
                return -e;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
                snprintf(what, sizeof(what), "%s: cannot load the certificate chain", cert);
                say(err, errlen, what);
                return -EINVAL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
                if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
                        ERR_clear_error();
                        snprintf(err, errlen, "%s does not match the certificate in %s", key, cert);
                        return -EINVAL;
                }
                snprintf(what, sizeof(what), "%s: cannot load the private key", key);
                say(err, errlen, what);
                return -EINVAL;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
                snprintf(what, sizeof(what), "%s does not match the certificate in %s", key, cert);
                say(err, errlen, what);
                return -EINVAL;
        }
        (void)t;
        return check_dates(ctx, cert, err, errlen);
}

static SSL_CTX *make_ctx(struct tern_tls *t, const char *cert, const char *key, char *err,
                         size_t errlen, int *rc)
{
        SSL_CTX *ctx = SSL_CTX_new(t->client ? TLS_client_method() : TLS_server_method());
        *rc = -ENOMEM;
        if (!ctx) {
                say(err, errlen, "SSL_CTX_new");
                return NULL;
        }
        SSL_CTX_set_ex_data(ctx, g_tls_idx, t);
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                     SSL_OP_IGNORE_UNEXPECTED_EOF);
        /* Partial writes: a big send goes out record by record as the socket
         * takes it; the retry after WANT_WRITE comes from the output buffer,
         * which may have moved. Buffers are released while idle (nginx does
         * the same): an idle TLS connection costs no 34 KiB of them. */
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
        /* One recv() per burst of records instead of two per record. */
        SSL_CTX_set_read_ahead(ctx, 1);
        if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
                say(err, errlen, "cipher list");
                goto out_free;
        }
        *rc = -EINVAL;
        if (cert && *cert && (*rc = load_pair(t, ctx, cert, key, err, errlen)) < 0)
                goto out_free;
        *rc = -EINVAL;
        int mode = SSL_VERIFY_NONE;
        if (t->client) {
                if (t->verify != TERN_TLS_VERIFY_NONE)
                        mode = SSL_VERIFY_PEER;
                int ok = t->ca_file ? SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL)
                                    : SSL_CTX_set_default_verify_paths(ctx);
                if (ok != 1) {
                        char what[600];
                        snprintf(what, sizeof(what), "%s: cannot load CA certificates",
                                 t->ca_file ? t->ca_file : "the system's store");
                        say(err, errlen, what);
                        goto out_free;
                }
                if (t->alpn_len && SSL_CTX_set_alpn_protos(ctx, t->alpn, t->alpn_len) != 0)
                        goto out_free;
                SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                                        SSL_SESS_CACHE_NO_INTERNAL_STORE);
                SSL_CTX_sess_set_new_cb(ctx, client_new_session_cb);
        } else {
                if (t->verify == TERN_TLS_VERIFY_OPTIONAL)
                        mode = SSL_VERIFY_PEER;
                else if (t->verify == TERN_TLS_VERIFY_REQUIRED)
                        mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
                if (t->ca_file) {
                        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->ca_file);
                        if (!names || SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL) != 1) {
                                char what[600];
                                snprintf(what, sizeof(what), "%s: cannot load CA certificates",
                                         t->ca_file);
                                say(err, errlen, what);
                                sk_X509_NAME_pop_free(names, X509_NAME_free);
                                goto out_free;
                        }
                        SSL_CTX_set_client_CA_list(ctx, names);
                }
                SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"tern", 4);
                if (t->ticket_lifetime_s) {
                        /* Stateless: tickets only, no session cache to lock. */
                        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
                        SSL_CTX_set_timeout(ctx, (long)t->ticket_lifetime_s);
                        SSL_CTX_set_num_tickets(ctx, 1);
                        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
                } else {
                        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
                        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
                        SSL_CTX_set_num_tickets(ctx, 0);
                }
                SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
                if (t->alpn_len)
                        SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, t);
        }
        SSL_CTX_set_verify(ctx, mode, NULL);
        *rc = 0;
        return ctx;

out_free:
        SSL_CTX_free(ctx);
        return NULL;
}

static void gen_put(struct gen *g)
{
        if (!g || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
                return;
        SSL_CTX_free(g->ctx);
        for (size_t i = 0; i < g->n_sni; i++)
                SSL_CTX_free(g->sni[i]);
        free(g);
}

/* Loads every file into a new generation; NULL with @err and *@rc set. */
static struct gen *load_gen(struct tern_tls *t, char *err, size_t errlen, int *rc)
{
        struct gen *g = calloc(1, sizeof(*g));
        if (!g) {
                *rc = -ENOMEM;
                return NULL;
        }
        g->refs = 1;
        g->ctx = make_ctx(t, t->cert_file, t->key_file, err, errlen, rc);
        if (!g->ctx)
                goto out_put;
        for (size_t i = 0; i < t->n_sni; i++) {
                g->sni[i] = make_ctx(t, t->sni_cert[i], t->sni_key[i], err, errlen, rc);
                if (!g->sni[i])
                        goto out_put;
                g->n_sni++;
        }
        return g;

out_put:
        gen_put(g);
        return NULL;
}

void tern_tls_opts_init(struct tern_tls_opts *o)
{
        memset(o, 0, sizeof(*o));
        o->handshake_timeout_ms = 10000;
        o->ticket_lifetime_s = 3600;
}

static const struct tern__xport_ops tls_ops;

static char *dup_or_null(const char *s, bool *ok)
{
        if (!s || !*s)
                return NULL;
        char *d = strdup(s);
        if (!d)
                *ok = false;
        return d;
}

/* What tern_tls_new copied, and @t itself; the keys are wiped first. */
static void free_tls(struct tern_tls *t)
{
        OPENSSL_cleanse(t->keys, sizeof(t->keys));
        free(t->cert_file);
        free(t->key_file);
        free(t->ca_file);
        for (size_t i = 0; i < t->n_sni; i++) {
                free(t->sni_cert[i]);
                free(t->sni_key[i]);
        }
        free(t);
}

tern_tls *tern_tls_new(const struct tern_tls_opts *o, char *err, size_t errlen)
{
        char spare[8];
        if (!err || !errlen) {
                err = spare;
                errlen = sizeof(spare);
        }
        *err = '\0';
        pthread_once(&g_once, init_once);
        if (!g_bio || g_conn_idx < 0 || g_tls_idx < 0) {
                snprintf(err, errlen, "OpenSSL initialisation failed");
                errno = ENOMEM;
                return NULL;
        }
        if (!o->client && (!o->cert.cert_file || !o->cert.key_file)) {
                snprintf(err, errlen, "a TLS server needs a certificate and its key");
                errno = EINVAL;
                return NULL;
        }
        if (o->n_sni > TLS_MAX_SNI || (o->n_sni && !o->sni) || (o->client && o->n_sni)) {
                snprintf(err, errlen, "at most %d SNI certificates, and only for a server",
                         TLS_MAX_SNI);
                errno = EINVAL;
                return NULL;
        }
        struct tern_tls *t = calloc(1, sizeof(*t));
        if (!t) {
                errno = ENOMEM;
                return NULL;
        }
        int rc = -ENOMEM;
        bool ok = true;
        t->xport.ops = &tls_ops;
        t->xport.handshake_timeout_ms = o->handshake_timeout_ms;
        t->client = o->client;
        t->verify = o->verify;
        t->ticket_lifetime_s = o->ticket_lifetime_s;
        t->cert_file = dup_or_null(o->cert.cert_file, &ok);
        t->key_file = dup_or_null(o->cert.key_file, &ok);
        t->ca_file = dup_or_null(o->ca_file, &ok);
        for (size_t i = 0; i < o->n_sni; i++) {
                t->sni_cert[i] = dup_or_null(o->sni[i].cert_file, &ok);
                t->sni_key[i] = dup_or_null(o->sni[i].key_file, &ok);
                t->n_sni++;
                if (ok && (!t->sni_cert[i] || !t->sni_key[i])) {
                        snprintf(err, errlen, "SNI certificate %zu needs a certificate and a key",
                                 i);
                        rc = -EINVAL;
                        goto out_free;
                }
        }
        if (!ok)
                goto out_free;
        if (t->cert_file && !t->key_file) {
                snprintf(err, errlen, "%s: a certificate needs its key file", t->cert_file);
                rc = -EINVAL;
                goto out_free;
        }
        if (o->alpn && alpn_wire(o->alpn, t->alpn, &t->alpn_len) < 0) {
                snprintf(err, errlen, "bad ALPN list '%s'", o->alpn);
                rc = -EINVAL;
                goto out_free;
        }
        if (!t->client && t->verify > TERN_TLS_VERIFY_NONE && !t->ca_file) {
                snprintf(err, errlen, "verifying client certificates needs a CA file");
                rc = -EINVAL;
                goto out_free;
        }
        if (t->ticket_lifetime_s && (new_key(&t->keys[0]) < 0 || new_key(&t->keys[1]) < 0))
                goto out_free;
        t->keys_born = tern_now_ms();
        pthread_mutex_init(&t->lock, NULL);
        t->cur = load_gen(t, err, errlen, &rc);
        if (!t->cur) {
                pthread_mutex_destroy(&t->lock);
                goto out_free;
        }
        t->generation = 1;
        return t;

out_free:
        if (!*err)
                snprintf(err, errlen, "%s", strerror(-rc));
        free_tls(t);
        errno = -rc;
        return NULL;
}

int tern_tls_reload(tern_tls *t, char *err, size_t errlen)
{
        char spare[8];
        if (!err || !errlen) {
                err = spare;
                errlen = sizeof(spare);
        }
        *err = '\0';
        int rc = 0;
        struct gen *g = load_gen(t, err, errlen, &rc);
        if (!g)
                return rc;
        pthread_mutex_lock(&t->lock);
        struct gen *old = t->cur;
        t->cur = g;
        t->generation++;
        pthread_mutex_unlock(&t->lock);
        gen_put(old);
        return 0;
}

uint64_t tern_tls_generation(const tern_tls *t)
{
        pthread_mutex_lock((pthread_mutex_t *)&t->lock);
        uint64_t g = t->generation;
        pthread_mutex_unlock((pthread_mutex_t *)&t->lock);
        return g;
}

void tern_tls_free(tern_tls *t)
{
        if (!t)
                return;
        gen_put(t->cur);
        SSL_SESSION_free(t->client_sess);
        free(t->client_sess_host);
        pthread_mutex_destroy(&t->lock);
        free_tls(t);
}

/* ---- the transport ---- */

static void *tls_open(struct tern__xport *x, int fd, bool client, const char *server_name)
{
        struct tern_tls *t = (struct tern_tls *)x;
        struct tls_conn *tc = calloc(1, sizeof(*tc));
        if (!tc)
                return NULL;
        tc->tls = t;
        pthread_mutex_lock(&t->lock);
        tc->gen = t->cur;
        __atomic_add_fetch(&tc->gen->refs, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&t->lock);
        tc->ssl = SSL_new(tc->gen->ctx);
        BIO *bio = tc->ssl ? BIO_new(g_bio) : NULL;
        if (!bio)
                goto out_free;
        tc->fd = fd;
        BIO_set_data(bio, tc);
        /* Asked now: once the peer resets, the log line could not name it. */
        tc->peer_len = sizeof(tc->peer);
        if (getpeername(fd, (struct sockaddr *)&tc->peer, &tc->peer_len) < 0)
                tc->peer_len = 0; /* a connect in progress: asked at the handshake */
        SSL_set_bio(tc->ssl, bio, bio);
        SSL_set_ex_data(tc->ssl, g_conn_idx, tc);
        if (!client) {
                SSL_set_accept_state(tc->ssl);
                return tc;
        }
        SSL_set_connect_state(tc->ssl);
        if (server_name && *server_name) {
                /* An address is verified as one (RFC 6125 6.2.1), and sent no SNI. */
                unsigned char ip[16];
                bool is_ip = inet_pton(AF_INET, server_name, ip) == 1 ||
                             inet_pton(AF_INET6, server_name, ip) == 1;
                X509_VERIFY_PARAM *vp = SSL_get0_param(tc->ssl);
                if (!is_ip && SSL_set_tlsext_host_name(tc->ssl, server_name) != 1)
                        goto out_free;
                if (t->verify != TERN_TLS_VERIFY_NONE &&
                    (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, server_name)
                           : X509_VERIFY_PARAM_set1_host(vp, server_name, 0)) != 1)
                        goto out_free;
        }
        pthread_mutex_lock(&t->lock);
        if (t->client_sess &&
            ((!server_name && !t->client_sess_host) ||
             (server_name && t->client_sess_host && !strcmp(server_name, t->client_sess_host))))
                SSL_set_session(tc->ssl, t->client_sess);
        pthread_mutex_unlock(&t->lock);
        return tc;

out_free:
        ERR_clear_error();
        SSL_free(tc->ssl);
        gen_put(tc->gen);
        free(tc);
        errno = ENOMEM;
        return NULL;
}

/* Why @r from @call failed: -EAGAIN to wait, 0 for a clean end, or an error
 * with tc->why filled. */
static int failure(struct tls_conn *tc, int r, int *want_io)
{
        int e = SSL_get_error(tc->ssl, r);
        switch (e) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
                *want_io = 1;
                return -EAGAIN;
        case SSL_ERROR_ZERO_RETURN:
                return 0;
        case SSL_ERROR_SYSCALL: {
                int err = errno;
                ERR_clear_error();
                if (!err || r == 0) {
                        snprintf(tc->why, sizeof(tc->why), "peer closed the connection");
                        return 0;
                }
                if (SSL_has_pending(tc->ssl)) {
                        /* Part of a record had come: the peer broke it off. */
                        snprintf(tc->why, sizeof(tc->why), "%s mid-record", strerror(err));
                        return TERN_ETLS;
                }
                snprintf(tc->why, sizeof(tc->why), "%s", strerror(err));
                return -err;
        }
        default: {
                long v = SSL_get_verify_result(tc->ssl);
                if (v != X509_V_OK) {
                        snprintf(tc->why, sizeof(tc->why), "certificate verify failed: %s",
                                 X509_verify_cert_error_string(v));
                        ERR_clear_error();
                } else {
                        say(tc->why, sizeof(tc->why), "TLS error");
                }
                return TERN_ETLS;
        }
        }
}

static int tls_handshake(void *st)
{
        struct tls_conn *tc = st;
        if (!tc->peer_len) {
                tc->peer_len = sizeof(tc->peer);
                if (getpeername(tc->fd, (struct sockaddr *)&tc->peer, &tc->peer_len) < 0)
                        tc->peer_len = 0;
        }
        ERR_clear_error();
        int r = SSL_do_handshake(tc->ssl);
        if (r == 1)
                return 0;
        int want = 0;
        int e = failure(tc, r, &want);
        if (e == 0) { /* the peer left mid-handshake */
                if (!*tc->why)
                        snprintf(tc->why, sizeof(tc->why), "peer closed during the handshake");
                return -ECONNRESET;
        }
        return e;
}

static ssize_t tls_read(void *st, void *buf, size_t len)
{
        struct tls_conn *tc = st;
        ERR_clear_error();
        int r = SSL_read(tc->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        if (r > 0)
                return r;
        int want = 0;
        return failure(tc, r, &want);
}

static ssize_t tls_write(void *st, const void *buf, size_t len)
{
        struct tls_conn *tc = st;
        ERR_clear_error();
        int r = SSL_write(tc->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        if (r > 0)
                return r;
        int want = 0;
        int e = failure(tc, r, &want);
        if (want)
                return 0;
        return e ? e : -EPIPE;
}

static void tls_shutdown(void *st)
{
        struct tls_conn *tc = st;
        if (!SSL_is_init_finished(tc->ssl))
                return;
        ERR_clear_error();
        SSL_shutdown(tc->ssl); /* sends close_notify; we do not wait for the peer's */
        ERR_clear_error();
}

static void tls_close(void *st)
{
        struct tls_conn *tc = st;
        SSL_free(tc->ssl);
        gen_put(tc->gen);
        free(tc);
}

static const char *tls_why(void *st, int err, char *buf, size_t size)
{
        struct tls_conn *tc = st;
        snprintf(buf, size, "%s", *tc->why ? tc->why : tern_strerror(err));
        return buf;
}

/*
 * Nothing more to read without a new edge: OpenSSL holds no byte (neither
 * plaintext nor a record, whole or partial) and its last recv() came back
 * short. Saves the read that would only say EAGAIN, one system call per
 * request on a request/response connection, as the plain path's short-read
 * rule does.
 */
static bool tls_drained(void *st)
{
        struct tls_conn *tc = st;
        return tc->drained && !SSL_has_pending(tc->ssl);
}

static bool tls_resumed(void *st)
{
        return SSL_session_reused(((struct tls_conn *)st)->ssl) == 1;
}

static const char *tls_peer(void *st, char *buf, size_t size)
{
        struct tls_conn *tc = st;
        if (!tc->peer_len)
                return NULL;
        return tern_sockaddr_str((struct sockaddr *)&tc->peer, tc->peer_len, buf, size);
}

static const struct tern__xport_ops tls_ops = {
    .open = tls_open,
    .handshake = tls_handshake,
    .read = tls_read,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .why = tls_why,
    .resumed = tls_resumed,
    .peer = tls_peer,
    .drained = tls_drained,
};

/* ---- what a connection negotiated ---- */

static struct tls_conn *tls_of(const tern_conn *c)
{
        if (!c->cfg->xport || c->cfg->xport->ops != &tls_ops)
                return NULL;
        return TERN__CONN_XSTATE(c);
}

bool tern_conn_is_tls(const tern_conn *c)
{
        return tls_of(c) != NULL;
}

int tern_conn_tls_info(const tern_conn *c, struct tern_tls_info *info)
{
        struct tls_conn *tc = tls_of(c);
        if (!tc || !SSL_is_init_finished(tc->ssl))
                return -EINVAL;
        const unsigned char *alpn = NULL;
        unsigned alpn_len = 0;
        SSL_get0_alpn_selected(tc->ssl, &alpn, &alpn_len);
        /* The selected protocol is not NUL-terminated: keep a copy. The
         * error buffer is free once the handshake has succeeded. */
        if (alpn_len && alpn_len < sizeof(tc->why)) {
                memcpy(tc->why, alpn, alpn_len);
                tc->why[alpn_len] = '\0';
        }
        *info = (struct tern_tls_info){
            .version = SSL_get_version(tc->ssl),
            .cipher = SSL_get_cipher_name(tc->ssl),
            .alpn = alpn_len ? tc->why : NULL,
            .server_name = SSL_get_servername(tc->ssl, TLSEXT_NAMETYPE_host_name),
            .resumed = SSL_session_reused(tc->ssl) == 1,
            .peer_verified =
                SSL_get0_peer_certificate(tc->ssl) && SSL_get_verify_result(tc->ssl) == X509_V_OK,
        };
        return 0;
}

const char *tern_conn_tls_peer_subject(const tern_conn *c, char *buf, size_t size)
{
        struct tls_conn *tc = tls_of(c);
        if (!tc || !size)
                return NULL;
        X509 *peer = SSL_get0_peer_certificate(tc->ssl);
        if (!peer || SSL_get_verify_result(tc->ssl) != X509_V_OK)
                return NULL;
        BIO *m = BIO_new(BIO_s_mem());
        if (!m)
                return NULL;
        X509_NAME_print_ex(m, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
        int n = BIO_read(m, buf, (int)size - 1);
        BIO_free(m);
        buf[n > 0 ? n : 0] = '\0';
        return buf;
}
