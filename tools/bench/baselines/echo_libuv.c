/*
 * bench-echo-libuv: a single uv_loop echo server on libuv 1.x.
 *
 * Reads land in one shared 64 KiB buffer (safe: the loop is single-threaded
 * and read_cb consumes the data before the next alloc_cb). Each chunk is
 * echoed with uv_try_write; whatever it could not send is copied into a
 * uv_write request and reading stops until that write completes, so a slow
 * reader cannot make the server buffer without bound.
 *
 * Usage: bench-echo-libuv [--port P] [--bind ADDR]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define READ_BUF 65536

struct pending_write {
        uv_write_t req;
        char data[];
};

static char rbuf[READ_BUF];

static void on_close(uv_handle_t *h)
{
        free(h);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
        *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_write_done(uv_write_t *req, int status)
{
        uv_stream_t *s = req->handle;

        free(req);
        if (status < 0) {
                if (!uv_is_closing((uv_handle_t *)s))
                        uv_close((uv_handle_t *)s, on_close);
                return;
        }
        if (!uv_is_closing((uv_handle_t *)s))
                uv_read_start(s, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        struct pending_write *pw;
        uv_buf_t rest;
        int w;

        if (n <= 0) {
                if (n < 0)
                        uv_close((uv_handle_t *)s, on_close);
                return; /* 0: EAGAIN, nothing to do */
        }
        uv_buf_t whole = {.base = buf->base, .len = (size_t)n};
        w = uv_try_write(s, &whole, 1);
        if (w == UV_EAGAIN)
                w = 0;
        if (w < 0) {
                uv_close((uv_handle_t *)s, on_close);
                return;
        }
        if (w == n)
                return;
        pw = malloc(sizeof(*pw) + (size_t)(n - w));
        if (!pw) {
                uv_close((uv_handle_t *)s, on_close);
                return;
        }
        memcpy(pw->data, buf->base + w, (size_t)(n - w));
        rest = uv_buf_init(pw->data, (unsigned)(n - w));
        uv_read_stop(s);
        if (uv_write(&pw->req, s, &rest, 1, on_write_done)) {
                free(pw);
                uv_close((uv_handle_t *)s, on_close);
        }
}

static void on_connection(uv_stream_t *server, int status)
{
        uv_tcp_t *c;

        if (status < 0)
                return;
        c = malloc(sizeof(*c));
        if (!c)
                return;
        uv_tcp_init(server->loop, c);
        if (uv_accept(server, (uv_stream_t *)c)) {
                uv_close((uv_handle_t *)c, on_close);
                return;
        }
        uv_tcp_nodelay(c, 1);
        uv_read_start((uv_stream_t *)c, on_alloc, on_read);
}

int main(int argc, char **argv)
{
        const char *port = "7000", *addr = "127.0.0.1";
        struct sockaddr_storage ss;
        uv_loop_t *loop = uv_default_loop();
        uv_tcp_t server;
        int rc;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--port") && i + 1 < argc) {
                        port = argv[++i];
                } else if (!strcmp(argv[i], "--bind") && i + 1 < argc) {
                        addr = argv[++i];
                } else {
                        fprintf(stderr, "usage: %s [--port P] [--bind ADDR]\n", argv[0]);
                        return 2;
                }
        }
        char *end;
        long portn = strtol(port, &end, 10);
        if (end == port || *end || portn < 0 || portn > 65535) {
                fprintf(stderr, "bench-echo-libuv: bad port %s\n", port);
                return 2;
        }
        if (uv_ip4_addr(addr, (int)portn, (struct sockaddr_in *)&ss) &&
            uv_ip6_addr(addr, (int)portn, (struct sockaddr_in6 *)&ss)) {
                fprintf(stderr, "bench-echo-libuv: bad address %s\n", addr);
                return 1;
        }
        signal(SIGPIPE, SIG_IGN);
        uv_tcp_init(loop, &server);
        rc = uv_tcp_bind(&server, (struct sockaddr *)&ss, 0);
        if (!rc)
                rc = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection);
        if (rc) {
                fprintf(stderr, "bench-echo-libuv: listen on %s:%s: %s\n", addr, port,
                        uv_strerror(rc));
                return 1;
        }
        fprintf(stderr, "bench-echo-libuv: listening on %s:%s (libuv %s)\n", addr, port,
                uv_version_string());
        return uv_run(loop, UV_RUN_DEFAULT);
}
