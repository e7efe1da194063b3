/*
 * The admin endpoint the programs in apps/ share: GET /metrics (Prometheus
 * text format 0.0.4), GET /healthz and GET /readyz, served over proto/http
 * by a second listener of the program's own server, so the same worker
 * loops answer it (no thread of its own). Metrics and probes: docs/admin.md.
 * Not part of libtern.
 *
 * Adding it to a program is one call after tern_server_new() (plus the
 * --admin option or TERN_ADMIN variable that gives @addr):
 *
 *     if (app_admin_attach(server, "tern-chat", cfg.admin, NULL, NULL) < 0)
 *             return 1;
 *
 * Threads: app_admin_attach() on the main thread before the server starts;
 * the metrics callback on whichever worker serves the scrape.
 */
#ifndef TERN_APP_ADMIN_H
#define TERN_APP_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "server.h"

/* The environment variable that gives --admin's value when the flag is absent. */
#define APP_ADMIN_ENV "TERN_ADMIN"

/*
 * A program's own metrics: appends complete families (app_metric_family()
 * then app_metric_value() lines) to @out. Runs on the worker serving the
 * scrape; it must only read counters (atomics), never wait.
 */
typedef void (*app_admin_metrics_fn)(struct tern_buf *out, void *arg);

/* Whether @addr is a valid --admin value: "HOST:PORT", "[V6]:PORT", ":PORT"
 * (every address) or "PORT" (127.0.0.1). [any] */
bool app_admin_addr_valid(const char *addr);

/*
 * app_admin_attach - serve the admin endpoint on @addr (see
 * app_admin_addr_valid; NULL or "" = off, then this does nothing) as a
 * further listener of @s, labelled @prog (borrowed, static) in
 * tern_build_info; @metrics(@arg) adds the program's own families (NULL =
 * none). One endpoint per process. Logs where it listens, or why not.
 * Before the server starts. Returns 0, -EINVAL for a bad @addr, -EALREADY
 * for a second call, or what tern_server_listen() returned.
 */
int app_admin_attach(tern_server *s, const char *prog, const char *addr,
                     app_admin_metrics_fn metrics, void *arg);

/* Appends "# HELP @name @help" and "# TYPE @name @type" (@type "counter",
 * "gauge" or "histogram"). Returns 0 or -ENOMEM. [the buffer's owner] */
int app_metric_family(struct tern_buf *out, const char *name, const char *type, const char *help);

/* Appends "@name{@labels} @value" (@labels NULL or "" = none, else e.g.
 * `worker="0"`, escaped by the caller). Returns 0 or -ENOMEM. */
int app_metric_value(struct tern_buf *out, const char *name, const char *labels, uint64_t value);

/* A whole family of one unlabelled sample: app_metric_family() then
 * app_metric_value(). Returns 0 or -ENOMEM. */
int app_metric(struct tern_buf *out, const char *name, const char *type, const char *help,
               uint64_t value);

/* The samples of worker @w's histogram @h (after its app_metric_family()
 * with type "histogram"): cumulative buckets with "le" in seconds, then
 * _sum in seconds and _count. Returns 0 or -ENOMEM. */
int app_metric_hist(struct tern_buf *out, const char *name, int w, const struct tern_hist *h);

#endif
