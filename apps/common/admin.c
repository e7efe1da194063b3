#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "error.h"
#include "http.h"
#include "live.h"
#include "log.h"
#include "version.h"

/* One endpoint per process: the listener's user pointer is this. */
static struct admin {
        bool on;
        tern_server *server;
        const char *prog;
        app_admin_metrics_fn metrics;
        void *arg;
        uint16_t port;
        double start_time; /* unix seconds */
        char host[64];
} admin;

bool app_admin_addr_valid(const char *addr)
{
        char host[64];
        uint16_t port;
        return addr && app_split_hostport(addr, "127.0.0.1", host, sizeof(host), &port) == 0;
}

int app_metric_family(struct tern_buf *out, const char *name, const char *type, const char *help)
{
        char line[512];
        int n =
            snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
        if (n < 0 || (size_t)n >= sizeof(line))
                return -EINVAL;
        return tern_buf_append(out, line, (size_t)n);
}

int app_metric_value(struct tern_buf *out, const char *name, const char *labels, uint64_t value)
{
        char line[512];
        int n = labels && *labels
                    ? snprintf(line, sizeof(line), "%s{%s} %llu\n", name, labels,
                               (unsigned long long)value)
                    : snprintf(line, sizeof(line), "%s %llu\n", name, (unsigned long long)value);
        if (n < 0 || (size_t)n >= sizeof(line))
                return -EINVAL;
        return tern_buf_append(out, line, (size_t)n);
}

/* The per-worker counters of struct tern_stats, in its order; the acceptor's
 * two (rejected, accept_errors) are exported on their own below. */
static const struct {
        size_t off;
        const char *name, *type, *help;
} worker_metrics[] = {
#define W(field, name, type, help)                                                                 \
        {                                                                                          \
                offsetof(struct tern_stats, field), name, type, help                               \
        }
    W(conns, "tern_connections_open", "gauge", "Connections open now on this worker."),
    W(accepted, "tern_connections_accepted_total", "counter",
      "Connections handed to this worker by the acceptor."),
    W(closed, "tern_connections_closed_total", "counter", "Connections this worker closed."),
    W(bytes_in, "tern_bytes_in_total", "counter", "Bytes read from sockets."),
    W(bytes_out, "tern_bytes_out_total", "counter", "Bytes written to sockets."),
    W(writes, "tern_writes_total", "counter", "Send system calls."),
    W(loop_iters, "tern_loop_iterations_total", "counter", "Event loop iterations."),
    W(wakeups, "tern_wakeups_total", "counter", "Eventfd wake-ups of the loop."),
    W(codec_errors, "tern_codec_errors_total", "counter",
      "Connections closed because their codec rejected the input."),
    W(outbuf_overflows, "tern_outbuf_overflows_total", "counter",
      "Connections closed because queued output passed max_outbuf."),
    W(inbuf_overflows, "tern_inbuf_overflows_total", "counter",
      "Connections closed because unconsumed input passed max_inbuf."),
    W(idle_timeouts, "tern_idle_timeouts_total", "counter",
      "Connections closed by the idle timeout."),
    W(connects, "tern_connects_total", "counter", "Outgoing connections established."),
    W(connect_errors, "tern_connect_errors_total", "counter",
      "Outgoing connection attempts that failed."),
    W(setup_errors, "tern_setup_errors_total", "counter",
      "New connections dropped while being set up (no memory, epoll_ctl)."),
    W(queued_bytes, "tern_output_queued_bytes", "gauge",
      "Output queued on this worker's connections, not yet taken by the kernel."),
    W(tls_handshakes, "tern_tls_handshakes_total", "counter", "TLS handshakes finished."),
    W(tls_resumed, "tern_tls_resumed_total", "counter",
      "TLS handshakes that resumed a session (tickets)."),
    W(tls_errors, "tern_tls_errors_total", "counter",
      "TLS connections closed by a handshake or record error, or a handshake timeout."),
#undef W
};

int app_metric(struct tern_buf *out, const char *name, const char *type, const char *help,
               uint64_t value)
{
        int r = app_metric_family(out, name, type, help);
        return r ? r : app_metric_value(out, name, NULL, value);
}

static uint64_t nonneg(long v)
{
        return v < 0 ? 0 : (uint64_t)v;
}

/* One worker's histogram as Prometheus wants it: cumulative buckets with
 * their "le" in seconds, then _sum (seconds) and _count. */
int app_metric_hist(struct tern_buf *b, const char *name, int w, const struct tern_hist *h)
{
        char line[256];
        uint64_t cum = 0;
        for (int i = 0; i <= TERN_HIST_BOUNDS; i++) {
                cum += h->buckets[i];
                char le[32];
                if (i < TERN_HIST_BOUNDS)
                        snprintf(le, sizeof(le), "%g", (double)tern_hist_bound_ns(i) / 1e9);
                else
                        snprintf(le, sizeof(le), "+Inf");
                int n = snprintf(line, sizeof(line), "%s_bucket{worker=\"%d\",le=\"%s\"} %llu\n",
                                 name, w, le, (unsigned long long)cum);
                int r = n > 0 && (size_t)n < sizeof(line) ? tern_buf_append(b, line, (size_t)n)
                                                          : -EINVAL;
                if (r)
                        return r;
        }
        /* _count is the +Inf bucket as read, so the two always agree. */
        int n = snprintf(line, sizeof(line),
                         "%s_sum{worker=\"%d\"} %.9f\n%s_count{worker=\"%d\"} %llu\n", name, w,
                         (double)h->sum_ns / 1e9, name, w, (unsigned long long)cum);
        return n > 0 && (size_t)n < sizeof(line) ? tern_buf_append(b, line, (size_t)n) : -EINVAL;
}

/* The loops' histograms, per worker (loop.h: tern_loop_histograms). */
static int render_histograms(struct tern_buf *b, int n)
{
        struct tern_hist *iter = calloc((size_t)n * 2, sizeof(*iter));
        if (!iter)
                return -ENOMEM;
        struct tern_hist *delay = iter + n;
        for (int w = 0; w < n; w++)
                tern_loop_histograms(tern_server_loop(admin.server, w), &iter[w], &delay[w]);
        int r = app_metric_family(b, "tern_loop_iteration_seconds", "histogram",
                                  "Busy time of a loop iteration: from epoll_wait's return to the "
                                  "end of its work.");
        for (int w = 0; !r && w < n; w++)
                r = app_metric_hist(b, "tern_loop_iteration_seconds", w, &iter[w]);
        if (!r)
                r = app_metric_family(b, "tern_loop_dispatch_delay_seconds", "histogram",
                                      "Per batch of events, how long its last event waited from "
                                      "epoll_wait's return for its callback.");
        for (int w = 0; !r && w < n; w++)
                r = app_metric_hist(b, "tern_loop_dispatch_delay_seconds", w, &delay[w]);
        free(iter);
        return r;
}

/* The whole exposition. Reads only lock-free counters: the workers' and the
 * acceptor's (tern_server_stats) and the live counts. */
static int render_metrics(struct tern_buf *b)
{
        int n = tern_server_workers(admin.server);
        struct tern_stats total, *pw = calloc((size_t)n, sizeof(*pw));
        if (!pw)
                return -ENOMEM;
        tern_server_stats(admin.server, &total, pw);
        int r = 0;
        char labels[32];
        for (size_t m = 0; !r && m < sizeof(worker_metrics) / sizeof(worker_metrics[0]); m++) {
                r = app_metric_family(b, worker_metrics[m].name, worker_metrics[m].type,
                                      worker_metrics[m].help);
                for (int w = 0; !r && w < n; w++) {
                        uint64_t v;
                        memcpy(&v, (const char *)&pw[w] + worker_metrics[m].off, sizeof(v));
                        snprintf(labels, sizeof(labels), "worker=\"%d\"", w);
                        r = app_metric_value(b, worker_metrics[m].name, labels, v);
                }
        }
        free(pw);
        if (!r)
                r = render_histograms(b, n);

        struct tern_live_counts lc;
        tern_live_counts(&lc);
        const struct {
                const char *name, *type, *help;
                uint64_t v;
        } one[] = {
            {"tern_acceptor_rejected_total", "counter",
             "Connections accepted then closed at once: over max_conns.", total.rejected},
            {"tern_acceptor_accept_errors_total", "counter",
             "accept(2) failures (EMFILE and friends).", total.accept_errors},
            {"tern_live_connections", "gauge", "Connection objects not yet freed, process-wide.",
             nonneg(lc.conns)},
            {"tern_live_buffers", "gauge", "Input and output buffer allocations not yet freed.",
             nonneg(lc.bufs)},
            {"tern_live_buffer_bytes", "gauge", "Buffer capacity allocated now.",
             nonneg(lc.buf_bytes)},
            {"tern_live_buffer_peak_bytes", "gauge",
             "Most buffer capacity allocated at once since start.", nonneg(lc.buf_bytes_peak)},
            {"tern_timers_armed", "gauge", "Timers armed on any loop's wheel.", nonneg(lc.timers)},
            {"tern_live_loops", "gauge", "Event loops not yet freed.", nonneg(lc.loops)},
            {"tern_live_watches", "gauge", "Fd watches not yet freed.", nonneg(lc.watches)},
            {"tern_live_connectors", "gauge", "Connectors not yet freed.", nonneg(lc.connectors)},
            {"tern_workers", "gauge", "Worker loops of the server.", (uint64_t)n},
        };
        for (size_t i = 0; !r && i < sizeof(one) / sizeof(one[0]); i++)
                r = app_metric(b, one[i].name, one[i].type, one[i].help, one[i].v);

        char info[160];
        snprintf(info, sizeof(info), "program=\"%s\",version=\"%s\"", admin.prog, tern_version());
        if (!r)
                r = app_metric_family(b, "tern_build_info", "gauge",
                                      "Program and tern version; always 1.");
        if (!r)
                r = app_metric_value(b, "tern_build_info", info, 1);
        char start[256];
        int sn = snprintf(start, sizeof(start),
                          "# HELP process_start_time_seconds Start time of the process since "
                          "unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\n"
                          "process_start_time_seconds %.3f\n",
                          admin.start_time);
        if (!r && sn > 0 && (size_t)sn < sizeof(start))
                r = tern_buf_append(b, start, (size_t)sn);
        if (!r && admin.metrics)
                admin.metrics(b, admin.arg);
        return r;
}

static void respond(tern_conn *c, const struct tern_http_request *rq, int status, const char *ctype,
                    const char *extra_name, const char *extra_value, const struct tern_buf *body)
{
        struct tern_buf b = TERN_BUF_INIT;
        size_t blen = body ? tern_buf_len(body) : 0;
        int r = tern_http_put_status(&b, status, NULL);
        if (!r)
                r = tern_http_put_header(&b, "Content-Type", 12, ctype, strlen(ctype));
        if (!r && extra_name)
                r = tern_http_put_header(&b, extra_name, strlen(extra_name), extra_value,
                                         strlen(extra_value));
        if (!r && !rq->keep_alive)
                r = tern_http_put_header(&b, "Connection", 10, "close", 5);
        else if (!r && rq->version_minor == 0)
                r = tern_http_put_header(&b, "Connection", 10, "keep-alive", 10);
        if (!r)
                r = tern_http_put_body(&b, body ? tern_buf_data(body) : NULL, blen);
        if (!r && rq->method_id == TERN_HTTP_HEAD)
                tern_buf_truncate(&b, tern_buf_len(&b) - blen);
        if (r)
                tern_conn_close(c);
        else
                tern_conn_send(c, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_free(&b);
        if (!rq->keep_alive)
                tern_conn_close(c); /* after the response has flushed */
}

static void text(tern_conn *c, const struct tern_http_request *rq, int status, const char *msg,
                 const char *extra_name, const char *extra_value)
{
        struct tern_buf body = TERN_BUF_INIT;
        if (tern_buf_append(&body, msg, strlen(msg)) == 0)
                respond(c, rq, status, "text/plain; charset=utf-8", extra_name, extra_value, &body);
        else
                tern_conn_close(c);
        tern_buf_free(&body);
}

static bool path_is(const struct tern_http_request *rq, const char *p)
{
        size_t len = rq->path_len;
        const char *q = memchr(rq->path, '?', len);
        if (q)
                len = (size_t)(q - rq->path);
        return len == strlen(p) && memcmp(rq->path, p, len) == 0;
}

static void on_frame(tern_conn *c, const struct tern_frame *f)
{
        const struct tern_http_request *rq = tern_http_request_of(f);
        if (!rq) {
                tern_conn_close(c);
                return;
        }
        if (rq->part == TERN_HTTP_PART_HEAD) { /* Expect: 100-continue: no bodies here */
                text(c, rq, 405, "Method Not Allowed\n", "Allow", "GET, HEAD");
                tern_conn_close(c);
                return;
        }
        bool metrics = path_is(rq, "/metrics"), healthz = path_is(rq, "/healthz"),
             readyz = path_is(rq, "/readyz");
        if (!metrics && !healthz && !readyz) {
                text(c, rq, 404, "Not Found\n", NULL, NULL);
                return;
        }
        if (rq->method_id != TERN_HTTP_GET && rq->method_id != TERN_HTTP_HEAD) {
                text(c, rq, 405, "Method Not Allowed\n", "Allow", "GET, HEAD");
                return;
        }
        if (healthz) {
                text(c, rq, 200, "ok\n", NULL, NULL);
        } else if (readyz) {
                /* Not ready from the stop on: the admin listener serves on
                 * (drain_last) while the data connections drain, so load
                 * balancers see 503 rather than a refused probe. */
                if (tern_server_draining(tern_conn_server(c)) ||
                    tern_loop_draining(tern_conn_loop(c)))
                        text(c, rq, 503, "draining\n", NULL, NULL);
                else
                        text(c, rq, 200, "ready\n", NULL, NULL);
        } else {
                struct tern_buf body = TERN_BUF_INIT;
                if (render_metrics(&body) == 0)
                        respond(c, rq, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, NULL,
                                &body);
                else
                        text(c, rq, 500, "cannot render metrics\n", NULL, NULL);
                tern_buf_free(&body);
        }
}

/* A malformed request: its 4xx, then the connection closes (the codec's doing). */
static void on_codec_error(tern_conn *c, int err)
{
        struct tern_buf b = TERN_BUF_INIT;
        if (tern_http_put_error(&b, tern_http_error_status(err)) == 0)
                tern_conn_send(c, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_free(&b);
}

static const struct tern_conn_ops admin_ops = {.on_frame = on_frame,
                                               .on_codec_error = on_codec_error};

int app_admin_attach(tern_server *s, const char *prog, const char *addr,
                     app_admin_metrics_fn metrics, void *arg)
{
        if (!addr || !*addr)
                return 0;
        if (admin.on)
                return -EALREADY;
        uint16_t port;
        if (app_split_hostport(addr, "127.0.0.1", admin.host, sizeof(admin.host), &port) < 0) {
                tern_error("%s: invalid admin address '%s' (HOST:PORT)", prog, addr);
                return -EINVAL;
        }
        struct tern_listener_opts lo;
        tern_listener_opts_init(&lo);
        lo.bind = admin.host[0] ? admin.host : NULL;
        lo.port = port;
        lo.ops = &admin_ops;
        lo.codec = &tern_http_codec;
        lo.codec_config = NULL; /* the default limits */
        lo.idle_timeout_ms = 60000;
        lo.user = &admin;
        lo.drain_last = true; /* /readyz answers 503 through the drain */
        int id = tern_server_listen(s, &lo);
        if (id < 0) {
                tern_error("%s: cannot serve admin on %s: %s", prog, addr, tern_strerror(id));
                return id;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        admin.start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
        admin.server = s;
        admin.prog = prog;
        admin.metrics = metrics;
        admin.arg = arg;
        admin.port = tern_server_listener_port(s, id);
        admin.on = true;
        tern_info("%s admin endpoint on %s port %u (/metrics, /healthz, /readyz)", prog,
                  admin.host[0] ? admin.host : "*", admin.port);
        return 0;
}
