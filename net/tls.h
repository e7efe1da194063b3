/**
 * @file
 * TLS: encrypted connections, for listeners (tern_listener_opts.tls) and
 * connectors (tern_connector_opts.tls), through OpenSSL 3.
 *
 * A tern_tls is one TLS configuration: certificates, trust, ALPN, ticket
 * keys. Give it to as many listeners or connectors as you like; it is shared
 * by every worker. Codecs and applications never see TLS: they keep seeing
 * plaintext bytes, with the usual limits (max_inbuf, max_outbuf) applying to
 * plaintext. on_open runs once the handshake has finished, so the
 * connection's tern_conn_tls_info() is complete there.
 *
 * Profile (Mozilla "intermediate", 5.7): TLS 1.2 and 1.3 only; TLS 1.2 with
 * ECDHE and AEAD ciphers only (AES-GCM, ChaCha20-Poly1305); the server's
 * cipher order; renegotiation refused; compression off; session tickets
 * (TLS 1.2 and 1.3) encrypted with keys tern rotates (ticket_lifetime_s) and
 * keeps across tern_tls_reload(), so resumption works on every worker and
 * survives a certificate reload. A graceful close sends close_notify.
 *
 * Calling contexts: [any] any thread.
 */
#ifndef TERN_TLS_H
#define TERN_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "export.h"

/** A TLS configuration (opaque, thread-safe). */
typedef struct tern_tls tern_tls;

/** Whether the peer must present a certificate. */
enum tern_tls_verify {
        TERN_TLS_VERIFY_DEFAULT = 0, /**< server: none; client: required */
        TERN_TLS_VERIFY_NONE,        /**< not asked for (server) / not checked (client) */
        TERN_TLS_VERIFY_OPTIONAL,    /**< server: asked for, checked if sent */
        TERN_TLS_VERIFY_REQUIRED,    /**< server: mTLS; client: chain and hostname */
};

/** A certificate chain and its private key, PEM files (paths copied). */
struct tern_tls_cert {
        const char *cert_file; /**< leaf first, then intermediates */
        const char *key_file;  /**< the leaf's private key, unencrypted */
};

/** Options for tern_tls_new(); start from tern_tls_opts_init(). */
struct tern_tls_opts {
        bool client; /**< for connectors; else for listeners */
        /** Server: the default certificate (required). Client: the client
         * certificate to present when the server asks (optional). */
        struct tern_tls_cert cert;
        /** Server: further certificates chosen by SNI: the first whose
         * names (subjectAltName, wildcards as RFC 6125) match the name the
         * client asks for; the default certificate otherwise. At most 16. */
        const struct tern_tls_cert *sni; /**< the SNI certificates (copied) */
        size_t n_sni;                    /**< how many there are in sni */
        /** ALPN protocols, comma-separated in preference order ("h2,http/1.1");
         * NULL = no ALPN. A server picks its first that the client offers and
         * goes on without ALPN when none matches; a client offers them. */
        const char *alpn;
        /** PEM file of trusted CAs: a server checks client certificates
         * against it; a client checks the server's (NULL = the system's
         * default store). */
        const char *ca_file;
        enum tern_tls_verify verify;   /**< see enum; a server needs ca_file to verify */
        uint32_t handshake_timeout_ms; /**< default 10000: a peer that has not
                                            finished by then is closed */
        uint32_t ticket_lifetime_s;    /**< session ticket key rotation period and
                                            ticket lifetime; default 3600; 0 = no
                                            tickets */
};

/** Fills @p o with the defaults documented above. [any] */
TERN_EXPORT void tern_tls_opts_init(struct tern_tls_opts *o);

/**
 * tern_tls_new - load a TLS configuration: reads and checks every file now
 * (a certificate must match its key, be valid today, and a server's must be
 * given). [any]
 * Copies @p o (file names included). On failure returns NULL with errno set
 * (EINVAL: bad options or files; ENOENT; ENOMEM) and a one-line reason in
 * @p err (@p errlen bytes, NUL-terminated; may be NULL) naming the file.
 */
TERN_EXPORT tern_tls *tern_tls_new(const struct tern_tls_opts *o, char *err, size_t errlen);

/**
 * tern_tls_reload - read the certificate, key and CA files again (SIGHUP).
 * Connections already open keep what they negotiated; new ones use the new
 * files. When anything fails (a missing file, a key that does not match, an
 * expired certificate) nothing changes, the old files stay in use and the
 * reason is in @p err. Ticket keys are kept, so sessions still resume.
 * [any] Returns 0 or -errno (-EINVAL, -ENOENT, -ENOMEM).
 */
TERN_EXPORT int tern_tls_reload(tern_tls *t, char *err, size_t errlen);

/** Frees @p t (NULL is a no-op) once every server and connector given it has
 * been freed. [any] */
TERN_EXPORT void tern_tls_free(tern_tls *t);

/** How many times the files were loaded (1 after tern_tls_new(), +1 per
 * successful reload). [any] */
TERN_EXPORT uint64_t tern_tls_generation(const tern_tls *t);

/** What a TLS connection negotiated (tern_conn_tls_info()). Strings are
 * borrowed from the connection: valid until on_close returns. */
struct tern_tls_info {
        const char *version;     /**< "TLSv1.3" */
        const char *cipher;      /**< "TLS_AES_256_GCM_SHA384" */
        const char *alpn;        /**< the protocol chosen, or NULL */
        const char *server_name; /**< SNI the client sent, or NULL */
        bool resumed;            /**< an abbreviated (resumed) handshake */
        bool peer_verified;      /**< the peer presented a certificate that verified */
};

/** True when @p c runs over TLS. [loop] */
TERN_EXPORT bool tern_conn_is_tls(const tern_conn *c);

/**
 * tern_conn_tls_info - fill @p info for the TLS connection @p c, after
 * on_open. [loop] Returns 0, or -EINVAL when @p c is not a TLS connection or
 * its handshake has not finished.
 */
TERN_EXPORT int tern_conn_tls_info(const tern_conn *c, struct tern_tls_info *info);

/**
 * tern_conn_tls_peer_subject - the peer certificate's subject as one line
 * ("CN=alice,O=Example") into @p buf (@p size bytes, NUL-terminated). [loop]
 * Returns @p buf, or NULL when there is no verified peer certificate.
 */
TERN_EXPORT const char *tern_conn_tls_peer_subject(const tern_conn *c, char *buf, size_t size);

#endif
