/*
 * example-line: a tiny command protocol over the line codec.
 *
 *   UPPER <text>    -> <TEXT>
 *   REVERSE <text>  -> <txet>
 *   QUIT            -> BYE, then the server closes the connection
 *   anything else   -> ERR unknown command
 *
 * Lines end with "\n" or "\r\n"; a line over 1 KiB is thrown away and
 * answered with "ERR line too long" (the connection stays open).
 * Usage: example-line [port]   (0 picks a free port; default 7001)
 */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tern/tern.h>

static tern_server *server;

static void reply(tern_conn *c, const char *s, size_t len)
{
        tern_conn_send_frame(c, s, len); /* the codec adds the "\n" */
}

static bool command(const struct tern_frame *f, const char *name, size_t *arg)
{
        size_t n = strlen(name);
        if (f->len < n || memcmp(f->data, name, n) != 0)
                return false;
        if (f->len == n || f->data[n] == ' ') {
                *arg = f->len == n ? n : n + 1; /* offset of the argument */
                return true;
        }
        return false;
}

static void on_frame(tern_conn *c, const struct tern_frame *f)
{
        char out[1024]; /* max_len below: every argument fits */
        size_t arg = 0, n = 0;
        if (f->kind == TERN_FRAME_OVERSIZED) {
                reply(c, "ERR line too long", 17);
        } else if (command(f, "UPPER", &arg)) {
                for (size_t i = arg; i < f->len; i++)
                        out[n++] = (char)toupper(f->data[i]);
                reply(c, out, n);
        } else if (command(f, "REVERSE", &arg)) {
                for (size_t i = f->len; i > arg; i--)
                        out[n++] = (char)f->data[i - 1];
                reply(c, out, n);
        } else if (command(f, "QUIT", &arg) && arg == f->len) {
                reply(c, "BYE", 3);
                tern_conn_close(c); /* flushes BYE first */
        } else {
                reply(c, "ERR unknown command", 19);
        }
}

static void on_signal(int sig)
{
        (void)sig;
        tern_server_stop(server); /* async-signal-safe */
}

int main(int argc, char **argv)
{
        static const struct tern_conn_ops ops = {.on_frame = on_frame};
        struct tern_line_config lines;
        tern_line_config_init(&lines);
        lines.max_len = 1024;
        lines.overlong = TERN_LINE_OVERLONG_DISCARD;

        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.port = (uint16_t)(argc > 1 ? strtol(argv[1], NULL, 10) : 7001);
        o.bind = "127.0.0.1";
        o.ops = &ops;
        o.codec = &tern_line_codec;
        o.codec_config = &lines;
        if (!(server = tern_server_new(&o))) {
                perror("example-line");
                return 1;
        }
        struct sigaction sa = {.sa_handler = on_signal}; /* empty sa_mask */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        printf("example-line listening on 127.0.0.1 port %u\n", tern_server_port(server));
        fflush(stdout);
        int r = tern_server_run(server); /* returns after a graceful stop */
        tern_server_free(server);
        return r ? 1 : 0;
}
