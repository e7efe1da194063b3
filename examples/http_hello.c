/*
 * example-http-hello: the TechEmpower "plaintext" server on the HTTP codec.
 *
 *   GET /       -> 200, Content-Type: text/plain, "Hello, World!"
 *   HEAD /      -> the same head, no body
 *   other paths -> 404; other methods on / -> 405
 *
 * Keep-alive and pipelining come from the codec and the connection: each
 * request of a pipelined batch is one frame, and the replies to one read
 * leave in one write. Every response carries Server and Date; the Date
 * value changes once a second, so each worker keeps its whole 200 response
 * prebuilt and rebuilds it from a one-second loop timer. A malformed request
 * is answered with its 4xx status, then the connection closes.
 * Usage: example-http-hello [port] [workers]  (port 0 picks a free one;
 * default 8080; workers default to the CPUs available)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tern/http.h>
#include <tern/tern.h>
#include <time.h>

#define HELLO "Hello, World!"

static tern_server *server;

/* Per worker (each loop is one thread): responses rebuilt every second. */
static _Thread_local struct {
        struct tern_buf ok, ok10, ok_head, not_found, not_allowed;
        struct tern_timer tick;
} w;

/* Status line, Server, Date, then the @name field (when not NULL) and a
 * body of @len bytes (only its Content-Length when @head_only). */
static void build(struct tern_buf *b, int status, const char *date, const char *name,
                  const char *value, const char *body, size_t len, bool head_only)
{
        tern_buf_truncate(b, 0);
        tern_http_put_status(b, status, NULL);
        tern_http_put_header(b, "Server", 6, "tern", 4);
        tern_http_put_header(b, "Date", 4, date, strlen(date));
        tern_http_put_header(b, "Content-Type", 12, "text/plain", 10);
        if (name)
                tern_http_put_header(b, name, strlen(name), value, strlen(value));
        tern_http_put_body(b, body, len);
        if (head_only)
                tern_buf_truncate(b, tern_buf_len(b) - len);
}

static void refresh(struct tern_timer *t, void *arg)
{
        (void)t;
        (void)arg;
        char date[64];
        struct tm tm;
        time_t now = time(NULL);
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
        build(&w.ok, 200, date, NULL, NULL, HELLO, strlen(HELLO), false);
        /* An HTTP/1.0 client keeps the connection only when told so. */
        build(&w.ok10, 200, date, "Connection", "keep-alive", HELLO, strlen(HELLO), false);
        build(&w.ok_head, 200, date, NULL, NULL, HELLO, strlen(HELLO), true);
        build(&w.not_found, 404, date, NULL, NULL, "Not Found\n", 10, false);
        build(&w.not_allowed, 405, date, "Allow", "GET, HEAD", "Method Not Allowed\n", 19, false);
}

static void on_worker_start(tern_loop *loop, void *user)
{
        (void)user;
        tern_timer_init(&w.tick, refresh, NULL);
        refresh(&w.tick, NULL);
        tern_loop_timer_start(loop, &w.tick, 1000, 1000);
}

static void on_worker_stop(tern_loop *loop, void *user)
{
        (void)user;
        tern_loop_timer_stop(loop, &w.tick);
        tern_buf_free(&w.ok);
        tern_buf_free(&w.ok10);
        tern_buf_free(&w.ok_head);
        tern_buf_free(&w.not_found);
        tern_buf_free(&w.not_allowed);
}

static void send_buf(tern_conn *c, const struct tern_buf *b)
{
        tern_conn_send(c, tern_buf_data(b), tern_buf_len(b));
}

static void on_frame(tern_conn *c, const struct tern_frame *f)
{
        const struct tern_http_request *r = tern_http_request_of(f);
        if (r->part == TERN_HTTP_PART_HEAD) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                tern_conn_send(c, cont, sizeof(cont) - 1);
                return;
        }
        if (r->path_len != 1 || r->path[0] != '/')
                send_buf(c, &w.not_found);
        else if (r->method_id == TERN_HTTP_GET)
                send_buf(c, r->version_minor == 0 && r->keep_alive ? &w.ok10 : &w.ok);
        else if (r->method_id == TERN_HTTP_HEAD)
                send_buf(c, &w.ok_head);
        else
                send_buf(c, &w.not_allowed);
        if (!r->keep_alive)
                tern_conn_close(c); /* flushes the response first */
}

/* A malformed request: answer its status; the connection then closes. */
static void on_codec_error(tern_conn *c, int err)
{
        struct tern_buf b = TERN_BUF_INIT;
        if (tern_http_put_error(&b, tern_http_error_status(err)) == 0)
                send_buf(c, &b);
        tern_buf_free(&b);
}

static void on_signal(int sig)
{
        (void)sig;
        tern_server_stop(server); /* async-signal-safe */
}

int main(int argc, char **argv)
{
        static const struct tern_conn_ops ops = {.on_frame = on_frame,
                                                 .on_codec_error = on_codec_error};
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.port = (uint16_t)(argc > 1 ? strtol(argv[1], NULL, 10) : 8080);
        o.workers = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 0;
        o.bind = "127.0.0.1";
        o.backlog = 4096;
        o.ops = &ops;
        o.codec = &tern_http_codec;
        o.codec_config = NULL; /* the default limits */
        o.on_worker_start = on_worker_start;
        o.on_worker_stop = on_worker_stop;
        if (!(server = tern_server_new(&o))) {
                perror("example-http-hello");
                return 1;
        }
        struct sigaction sa = {.sa_handler = on_signal}; /* empty sa_mask */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        printf("example-http-hello listening on 127.0.0.1 port %u\n", tern_server_port(server));
        fflush(stdout);
        int r = tern_server_run(server); /* returns after a graceful stop */
        tern_server_free(server);
        return r ? 1 : 0;
}
