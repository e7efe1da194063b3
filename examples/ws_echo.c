/*
 * example-ws-echo: a WebSocket (RFC 6455) echo server on proto/websocket.
 *
 * A connection starts on the HTTP codec. A request that is a valid opening
 * handshake gets 101 and the connection switches to the WebSocket frame
 * codec; anything else gets its 4xx and is closed. Then every text or
 * binary message comes back as one frame of the same kind, pings get their
 * pong, and a close gets the close that completes the handshake, after which
 * the server closes the TCP connection. A message over 1 MiB is answered
 * with close 1009, text that is not UTF-8 with 1007, an unmasked or
 * otherwise malformed frame with 1002. A graceful stop (SIGINT, SIGTERM)
 * sends 1001 to every WebSocket connection.
 *
 * Echoes are sent as header + payload with tern_conn_sendv(): the header is
 * written by tern_ws_frame_header(), and the payload is the decoded message
 * itself, the way a fan-out sends one message to many connections.
 *
 * Usage: example-ws-echo [port] [allowed-origin ...]  (port 0 picks a free
 * one; default 8080). With origins given, a handshake whose Origin is not
 * one of them, or that has none, is refused with 403.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <tern/tern.h>

static tern_server *server;
static struct tern_ws_accept_opts accept_opts;
static struct tern_ws_config ws_cfg;

/* tern_conn_data: set once this side has sent its close frame. */
#define CLOSE_SENT ((void *)1)

static void send_close(tern_conn *c, uint16_t code)
{
        struct tern_buf b = TERN_BUF_INIT;
        if (tern_ws_put_close(&b, code, NULL, 0) == 0)
                tern_conn_send(c, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_free(&b);
        tern_conn_set_data(c, CLOSE_SENT);
}

static void ws_on_frame(tern_conn *c, const struct tern_frame *f)
{
        const struct tern_ws_message *m = tern_ws_message_of(f);
        if (!m)
                return;
        switch (m->opcode) {
        case TERN_WS_TEXT:
        case TERN_WS_BINARY: {
                uint8_t hdr[TERN_WS_MAX_HEADER];
                int h = tern_ws_frame_header(hdr, m->opcode, true, m->len);
                if (h < 0)
                        break;
                struct iovec iov[2] = {{hdr, (size_t)h}, {(void *)m->data, m->len}};
                tern_conn_sendv(c, iov, m->len ? 2 : 1);
                break;
        }
        case TERN_WS_PING:
                tern_conn_send(c, m->reply, m->reply_len);
                break;
        case TERN_WS_CLOSE:
                /* Their close answers ours, or ours answers theirs. */
                if (tern_conn_data(c) != CLOSE_SENT)
                        tern_conn_send(c, m->reply, m->reply_len);
                tern_conn_close(c); /* flushes the close first */
                break;
        default: /* a pong: nothing to do */
                break;
        }
}

static void ws_on_codec_error(tern_conn *c, int err)
{
        /* The close code for what was wrong; tern closes after flushing. */
        send_close(c, tern_ws_error_code(err));
}

static void ws_on_drain(tern_conn *c)
{
        if (tern_conn_data(c) != CLOSE_SENT)
                send_close(c, TERN_WS_CLOSE_GOING_AWAY);
}

static const struct tern_conn_ops ws_ops = {
    .on_frame = ws_on_frame,
    .on_codec_error = ws_on_codec_error,
    .on_drain = ws_on_drain,
};

static void http_on_frame(tern_conn *c, const struct tern_frame *f)
{
        const struct tern_http_request *r = tern_http_request_of(f);
        struct tern_buf b = TERN_BUF_INIT;
        if (r->part == TERN_HTTP_PART_HEAD) { /* a body: not a handshake */
                if (tern_http_put_error(&b, 400) == 0)
                        tern_conn_send(c, tern_buf_data(&b), tern_buf_len(&b));
                tern_buf_free(&b);
                tern_conn_close(c);
                return;
        }
        int status = tern_ws_accept(r, &accept_opts, &b);
        if (status > 0)
                tern_conn_send(c, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_free(&b);
        if (status != 101) {
                tern_conn_close(c);
                return;
        }
        /* Last: switching frees the HTTP state r lives in. Bytes behind the
         * request are decoded as frames by the new codec. */
        tern_conn_set_ops(c, &ws_ops);
        if (tern_conn_set_codec(c, &tern_ws_codec, &ws_cfg) < 0)
                tern_conn_abort(c);
}

static void http_on_codec_error(tern_conn *c, int err)
{
        struct tern_buf b = TERN_BUF_INIT;
        if (tern_http_put_error(&b, tern_http_error_status(err)) == 0)
                tern_conn_send(c, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_free(&b);
}

static void on_signal(int sig)
{
        (void)sig;
        tern_server_stop(server); /* async-signal-safe */
}

int main(int argc, char **argv)
{
        static const struct tern_conn_ops http_ops = {.on_frame = http_on_frame,
                                                      .on_codec_error = http_on_codec_error};
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.port = (uint16_t)(argc > 1 ? strtol(argv[1], NULL, 10) : 8080);
        o.workers = 1;
        o.bind = "127.0.0.1";
        o.ops = &http_ops;
        o.codec = &tern_http_codec;
        o.codec_config = NULL;        /* the default limits */
        tern_ws_config_init(&ws_cfg); /* 1 MiB messages, 1024 fragments */
        if (argc > 2) {
                accept_opts.origins = (const char *const *)(argv + 2);
                accept_opts.norigins = (size_t)(argc - 2);
        }
        if (!(server = tern_server_new(&o))) {
                perror("example-ws-echo");
                return 1;
        }
        struct sigaction sa = {.sa_handler = on_signal}; /* empty sa_mask */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        printf("example-ws-echo listening on 127.0.0.1 port %u\n", tern_server_port(server));
        fflush(stdout);
        int r = tern_server_run(server); /* returns after a graceful stop */
        tern_server_free(server);
        return r ? 1 : 0;
}
