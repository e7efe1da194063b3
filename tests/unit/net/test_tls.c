/*
 * TLS configurations and TLS connectors against a TLS listener, in one
 * process: what tern_tls_new refuses and why, a connector that verifies the
 * server's name, negotiates ALPN and resumes its session on the next
 * connect, a name that does not verify failing the attempt (TERN_ETLS), and
 * nothing left alive after. Certificates are made here with the openssl
 * tool, in a temporary directory.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srvutil.h"
#include "testutil.h"
#include "tern.h"

static char dir[64];
static char ca[128], cert[128], key[128], other_key[128];

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
        char cmd[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        cr_assert_eq(system(cmd), 0, "failed: %s", cmd);
}

static void make_certs(void)
{
        snprintf(dir, sizeof(dir), "/tmp/tern-tls-unit-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
        snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
        snprintf(cert, sizeof(cert), "%s/srv.pem", dir);
        snprintf(key, sizeof(key), "%s/srv.key", dir);
        snprintf(other_key, sizeof(other_key), "%s/other.key", dir);
        const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        sh("cd %s && openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=unit-ca "
           "-addext basicConstraints=critical,CA:TRUE 2>/dev/null",
           dir, ec);
        sh("cd %s && openssl req %s -keyout srv.key -out srv.csr -subj /CN=localhost "
           "2>/dev/null && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext && "
           "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
           "-extfile ext -out srv.pem 2>/dev/null",
           dir, ec);
        sh("cd %s && openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 "
           "-out other.key 2>/dev/null",
           dir);
}

static void remove_certs(void)
{
        sh("rm -rf %s", dir);
}

TestSuite(tls, .init = make_certs, .fini = remove_certs);

static tern_tls *server_tls(const char *alpn)
{
        struct tern_tls_opts o;
        tern_tls_opts_init(&o);
        o.cert.cert_file = cert;
        o.cert.key_file = key;
        o.alpn = alpn;
        char err[256];
        tern_tls *t = tern_tls_new(&o, err, sizeof(err));
        cr_assert_not_null(t, "server TLS: %s", err);
        return t;
}

Test(tls, new_refuses_what_cannot_work_and_says_why)
{
        struct tern_tls_opts o;
        char err[512];

        tern_tls_opts_init(&o); /* a server without a certificate */
        cr_assert_null(tern_tls_new(&o, err, sizeof(err)));
        cr_assert_eq(errno, EINVAL);
        cr_assert(strstr(err, "certificate"), "%s", err);

        o.cert.cert_file = cert;
        o.cert.key_file = other_key;
        cr_assert_null(tern_tls_new(&o, err, sizeof(err)));
        cr_assert_eq(errno, EINVAL);
        cr_assert(strstr(err, "does not match"), "%s", err);

        o.cert.key_file = "/nonexistent/key.pem";
        cr_assert_null(tern_tls_new(&o, err, sizeof(err)));
        cr_assert_eq(errno, ENOENT);
        cr_assert(strstr(err, "/nonexistent/key.pem"), "%s", err);

        o.cert.key_file = key;
        o.alpn = "h2,,http/1.1";
        cr_assert_null(tern_tls_new(&o, err, sizeof(err)));
        cr_assert(strstr(err, "ALPN"), "%s", err);

        o.alpn = NULL;
        o.verify = TERN_TLS_VERIFY_REQUIRED; /* mTLS without a CA to check against */
        cr_assert_null(tern_tls_new(&o, err, sizeof(err)));
        cr_assert(strstr(err, "CA"), "%s", err);

        o.verify = TERN_TLS_VERIFY_DEFAULT;
        tern_tls *t = tern_tls_new(&o, err, sizeof(err));
        cr_assert_not_null(t, "%s", err);
        cr_assert_eq(tern_tls_generation(t), 1);
        /* A reload that fails changes nothing. */
        char *saved = strdup(key);
        cr_assert_eq(rename(key, other_key), 0); /* key gone, other.key replaced */
        cr_assert_lt(tern_tls_reload(t, err, sizeof(err)), 0);
        cr_assert(strstr(err, key), "%s", err);
        cr_assert_eq(tern_tls_generation(t), 1);
        cr_assert_eq(rename(other_key, saved), 0);
        cr_assert_eq(tern_tls_reload(t, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(tern_tls_generation(t), 2);
        free(saved);
        tern_tls_free(t);
}

/* ---- a connector on a bare loop ---- */

static struct {
        int opens, errors, resumed;
        int last_err;
        char alpn[32], version[16], name[64];
        bool verified;
        char got[16];
        size_t ngot;
} seen;

static void c_open(tern_conn *c)
{
        struct tern_tls_info info;
        cr_assert(tern_conn_is_tls(c));
        cr_assert_eq(tern_conn_tls_info(c, &info), 0);
        seen.opens++;
        seen.resumed += info.resumed;
        seen.verified = info.peer_verified;
        snprintf(seen.alpn, sizeof(seen.alpn), "%s", info.alpn ? info.alpn : "");
        snprintf(seen.version, sizeof(seen.version), "%s", info.version);
        snprintf(seen.name, sizeof(seen.name), "%s", info.server_name ? info.server_name : "");
        tern_conn_send(c, "hello", 5);
}

static void c_message(tern_conn *c, struct tern_buf *in)
{
        size_t n = tern_buf_len(in);
        memcpy(seen.got, tern_buf_data(in), n < sizeof(seen.got) ? n : sizeof(seen.got));
        seen.ngot += n;
        tern_buf_consume(in, n);
        if (seen.ngot >= 5)
                tern_loop_stop(tern_conn_loop(c)); /* drains: a graceful close */
}

static void c_error(tern_connector *cn, int err, uint32_t attempt)
{
        seen.errors++;
        seen.last_err = err;
}

static void c_give_up(tern_connector *cn, int err)
{
        tern_loop_stop(tern_connector_loop(cn));
}

static const struct tern_conn_ops client_ops = {.on_open = c_open, .on_message = c_message};

static void run_client(tern_tls *ctls, uint16_t port, const char *name)
{
        memset(&seen, 0, sizeof(seen));
        tern_loop *l = tern_loop_new(NULL);
        cr_assert_not_null(l);
        struct tern_connector_opts o;
        tern_connector_opts_init(&o);
        o.host = "127.0.0.1";
        o.port = port;
        o.ops = &client_ops;
        o.tls = ctls;
        o.tls_server_name = name;
        o.on_connect_error = c_error;
        o.on_give_up = c_give_up;
        tern_connector *cn = tern_connector_new(l, &o);
        cr_assert_not_null(cn);
        cr_assert_eq(tern_connector_start(cn), 0);
        cr_assert_eq(tern_loop_run(l), 0);
        tern_loop_free(l);
}

static bool tls_error_counted(void *server)
{
        struct tern_stats st;
        tern_server_stats(server, &st, NULL);
        return st.tls_errors >= 1;
}

Test(tls, connector_verifies_negotiates_alpn_and_resumes)
{
        tern_tls *stls = server_tls("h2,http/1.1");
        static const struct tern_conn_ops echo_ops = {.on_message = su_echo_message};
        struct tern_server_opts so;
        tern_server_opts_init(&so);
        so.workers = 2;
        so.ops = &echo_ops;
        so.tls = stls;
        tern_server *s = su_start(&so);

        struct tern_tls_opts co;
        tern_tls_opts_init(&co);
        co.client = true;
        co.ca_file = ca;
        co.alpn = "http/1.1";
        char err[256];
        tern_tls *ctls = tern_tls_new(&co, err, sizeof(err));
        cr_assert_not_null(ctls, "%s", err);

        run_client(ctls, tern_server_port(s), "localhost");
        cr_assert_eq(seen.errors, 0, "connect error %d (%s)", seen.last_err,
                     tern_strerror(seen.last_err));
        cr_assert_eq(seen.opens, 1);
        cr_assert_eq(seen.ngot, 5);
        cr_assert_eq(memcmp(seen.got, "hello", 5), 0);
        cr_assert_str_eq(seen.alpn, "http/1.1");
        cr_assert_str_eq(seen.version, "TLSv1.3");
        cr_assert_str_eq(seen.name, "localhost");
        cr_assert(seen.verified);
        cr_assert_eq(seen.resumed, 0);

        /* The client kept the session: the next connect resumes it. */
        run_client(ctls, tern_server_port(s), "localhost");
        cr_assert_eq(seen.opens, 1);
        cr_assert_eq(seen.resumed, 1, "the second connect did not resume");

        /* A name the certificate does not carry: the attempt fails. */
        run_client(ctls, tern_server_port(s), "wrong.test");
        cr_assert_eq(seen.opens, 0);
        cr_assert_eq(seen.errors, 1);
        cr_assert_eq(seen.last_err, TERN_ETLS, "got %d (%s)", seen.last_err,
                     tern_strerror(seen.last_err));

        /* The server counts the refused handshake when the client's alert
         * reaches it, which may be after the client has gone. */
        cr_assert(tu_wait_until(tls_error_counted, s, 5000), "the refused handshake not counted");
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.tls_handshakes, 2);
        cr_assert_eq(st.tls_resumed, 1);
        su_stop(s);
        tern_tls_free(ctls);
        tern_tls_free(stls);
        su_assert_nothing_live();
}

/*
 * A ticket issued under a key that has since been rotated out of issuing
 * still resumes: the previous key is kept for one more period. Lifetime 1 s:
 * the first client's ticket is issued late in the first key's life, a second
 * client's handshake then rotates the keys, and the first ticket, younger
 * than its lifetime, still resumes.
 */
Test(tls, tickets_resume_across_a_key_rotation)
{
        struct tern_tls_opts so_tls;
        tern_tls_opts_init(&so_tls);
        so_tls.cert.cert_file = cert;
        so_tls.cert.key_file = key;
        so_tls.ticket_lifetime_s = 1;
        char err[256];
        tern_tls *stls = tern_tls_new(&so_tls, err, sizeof(err));
        cr_assert_not_null(stls, "%s", err);
        static const struct tern_conn_ops echo_ops = {.on_message = su_echo_message};
        struct tern_server_opts so;
        tern_server_opts_init(&so);
        so.workers = 1;
        so.ops = &echo_ops;
        so.tls = stls;
        tern_server *s = su_start(&so);

        struct tern_tls_opts co;
        tern_tls_opts_init(&co);
        co.client = true;
        co.ca_file = ca;
        tern_tls *first = tern_tls_new(&co, err, sizeof(err));
        tern_tls *second = tern_tls_new(&co, err, sizeof(err));
        cr_assert(first && second, "%s", err);

        usleep(750 * 1000);
        run_client(first, tern_server_port(s), "localhost"); /* ticket under key 0 */
        cr_assert_eq(seen.opens, 1);
        usleep(400 * 1000);
        run_client(second, tern_server_port(s), "localhost"); /* issuing rotates: key 1 */
        cr_assert_eq(seen.opens, 1);
        cr_assert_eq(seen.resumed, 0);
        run_client(first, tern_server_port(s), "localhost");
        cr_assert_eq(seen.opens, 1);
        cr_assert_eq(seen.resumed, 1, "a ticket of the previous key did not resume");

        su_stop(s);
        tern_tls_free(first);
        tern_tls_free(second);
        tern_tls_free(stls);
        su_assert_nothing_live();
}
