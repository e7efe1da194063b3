/*
 * example-tlv: a length-prefixed protocol with a codec written here.
 * Frame: | body length, 2 bytes big-endian | type, 1 byte | body |
 * Type 1 (ECHO) gets the same frame back; other types get type 255 with the
 * body "unknown type". Type 0, or a body over 4 KiB, closes the connection.
 * Usage: example-tlv [port]   (0 picks a free port; default 7002)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tern/tern.h>

/* Pure over bytes: look, never copy, and reject a bad header before its body. */
static ssize_t tlv_decode(void *state, const uint8_t *in, size_t len, struct tern_frame *out)
{
        const size_t *max_body = state;
        if (len < 3)
                return TERN_CODEC_NEED_MORE;
        size_t body = (size_t)in[0] << 8 | in[1];
        if (body > *max_body)
                return TERN_ETOOBIG;
        if (in[2] == 0)
                return TERN_EFRAME;
        if (len < 3 + body)
                return TERN_CODEC_NEED_MORE;
        out->kind = TERN_FRAME_DATA;
        out->data = in + 2; /* type + body, borrowed from the input */
        out->len = 1 + body;
        return (ssize_t)(3 + body);
}

/* @payload is type + body, from the application (never inside @out). */
static int tlv_encode(void *state, struct tern_buf *out, const void *payload, size_t len)
{
        (void)state;
        if (len < 1 || len - 1 > 0xffff)
                return -EMSGSIZE;
        int err = tern_buf_reserve(out, 2 + len); /* all or nothing */
        if (err)
                return err;
        uint8_t *p = tern_buf_tail(out);
        p[0] = (uint8_t)((len - 1) >> 8);
        p[1] = (uint8_t)(len - 1);
        memcpy(p + 2, payload, len);
        tern_buf_commit(out, 2 + len);
        return 0;
}

/* No state_new: the config (max_body below, which outlives the server) is
 * then the state. A codec that remembers progress between calls would make
 * per-connection state in state_new and free it in state_free. */
static const struct tern_codec tlv_codec = {
    .name = "tlv",
    .decode = tlv_decode,
    .encode = tlv_encode,
};

static void on_frame(tern_conn *c, const struct tern_frame *f)
{
        static const char unknown[] = "\xffunknown type"; /* type 255 + body */
        if (f->data[0] == 1)
                tern_conn_send_frame(c, f->data, f->len); /* copied before return */
        else
                tern_conn_send_frame(c, unknown, sizeof(unknown) - 1);
}

static tern_server *server;

static void on_signal(int sig)
{
        (void)sig;
        tern_server_stop(server); /* async-signal-safe */
}

int main(int argc, char **argv)
{
        static const struct tern_conn_ops ops = {.on_frame = on_frame};
        static const size_t max_body = 4096;
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.port = (uint16_t)(argc > 1 ? strtol(argv[1], NULL, 10) : 7002);
        o.bind = "127.0.0.1";
        o.ops = &ops;
        o.codec = &tlv_codec;
        o.codec_config = &max_body;
        if (!(server = tern_server_new(&o))) {
                perror("example-tlv");
                return 1;
        }
        struct sigaction sa = {.sa_handler = on_signal}; /* empty sa_mask */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        printf("example-tlv listening on 127.0.0.1 port %u\n", tern_server_port(server));
        fflush(stdout);
        int r = tern_server_run(server);
        tern_server_free(server);
        return r ? 1 : 0;
}
