/*
 * tern-chat: the bundled multi-room chat server. See docs/chat.md.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "admin.h"
#include "cli.h"

static struct chat_server *server;

static void stop_chat(void *cs)
{
        chat_server_stop(cs); /* async-signal-safe */
}

static const char *env(const char *name)
{
        return getenv(name);
}

/*
 * "--check self": where the same settings (TERN_BIND, TERN_PORT) make the
 * server listen, so an image's HEALTHCHECK follows `-e TERN_PORT=...` with no
 * shell in the image to expand it. A wildcard bind is probed on loopback.
 */
static const char *self_target(const struct chat_opts *o, char *buf, size_t cap)
{
        const char *b = o->bind;
        if (!b || strcmp(b, "0.0.0.0") == 0)
                b = "127.0.0.1";
        else if (strcmp(b, "::") == 0)
                b = "::1";
        snprintf(buf, cap, strchr(b, ':') ? "[%s]:%u" : "%s:%u", b, o->port);
        return buf;
}

/* tern-chat's own families for /metrics: per-worker counters and the
 * process-wide counts of chat objects. Reads only atomics. */
static void chat_metrics(struct tern_buf *out, void *arg)
{
        const struct chat_server *cs = arg;
        int n = chat_server_workers(cs);
        static const struct {
                const char *name, *type, *help;
                size_t off;
        } per_worker[] = {
            {"tern_chat_messages_in_total", "counter", "Lines clients said into a room.",
             offsetof(struct chat_worker_stats, said)},
            {"tern_chat_deliveries_total", "counter",
             "Lines queued to room members' connections on this worker.",
             offsetof(struct chat_worker_stats, delivered)},
            {"tern_chat_slow_consumer_drops_total", "counter",
             "Members dropped because their pending output passed max_outbuf.",
             offsetof(struct chat_worker_stats, slow_drops)},
            {"tern_chat_speaker_pauses_total", "counter",
             "Speakers paused because another worker's inbox passed max_inbox.",
             offsetof(struct chat_worker_stats, throttles)},
            {"tern_chat_inbox_bytes", "gauge",
             "Room messages queued for this worker by others, not yet taken.",
             offsetof(struct chat_worker_stats, inbox_bytes)},
        };
        struct chat_worker_stats st[256];
        for (int w = 0; w < n; w++)
                chat_server_worker_stats(cs, w, &st[w]);
        int r = 0;
        char labels[32];
        for (size_t m = 0; !r && m < sizeof(per_worker) / sizeof(per_worker[0]); m++) {
                r = app_metric_family(out, per_worker[m].name, per_worker[m].type,
                                      per_worker[m].help);
                for (int w = 0; !r && w < n; w++) {
                        uint64_t v;
                        memcpy(&v, (const char *)&st[w] + per_worker[m].off, sizeof(v));
                        snprintf(labels, sizeof(labels), "worker=\"%d\"", w);
                        r = app_metric_value(out, per_worker[m].name, labels, v);
                }
        }
        struct chat_live_counts lc;
        chat_live_counts(&lc);
        if (!r)
                r = app_metric(out, "tern_chat_clients", "gauge", "Chat clients connected now.",
                               lc.clients < 0 ? 0 : (uint64_t)lc.clients);
        if (!r)
                r = app_metric(out, "tern_chat_rooms", "gauge",
                               "Room objects not yet freed (empty rooms awaiting RCU included).",
                               lc.rooms < 0 ? 0 : (uint64_t)lc.rooms);
        if (!r)
                r = app_metric(out, "tern_chat_nicks", "gauge", "Nicknames registered now.",
                               lc.nicks < 0 ? 0 : (uint64_t)lc.nicks);
        if (!r)
                r = app_metric(out, "tern_chat_peak_queued_bytes", "gauge",
                               "The most output ever pending for one client.",
                               chat_server_peak_queued(cs));
        if (!r)
                r = app_metric(out, "tern_chat_peak_inbox_bytes", "gauge",
                               "The most bytes ever queued at once in one worker's inbox.",
                               chat_server_peak_inbox(cs));
        if (!r)
                r = app_metric_family(out, "tern_chat_delivery_latency_seconds", "histogram",
                                      "From a room message's encoding on the sender's worker to "
                                      "its delivery to this worker's members.");
        for (int w = 0; !r && w < n; w++)
                r = app_metric_hist(out, "tern_chat_delivery_latency_seconds", w, &st[w].delivery);
}

/* "--check self" with --admin/TERN_ADMIN: where the admin endpoint listens,
 * a wildcard or missing host probed on loopback. */
static const char *self_admin_target(const char *admin, char *buf, size_t cap)
{
        char host[64];
        uint16_t port = 0;
        if (app_split_hostport(admin, "127.0.0.1", host, sizeof(host), &port) < 0)
                host[0] = '\0'; /* config.c checked it: not reached */
        const char *h = host;
        if (!h[0] || strcmp(h, "0.0.0.0") == 0)
                h = "127.0.0.1";
        else if (strcmp(h, "::") == 0)
                h = "::1";
        snprintf(buf, cap, strchr(h, ':') ? "[%s]:%u" : "%s:%u", h, port);
        return buf;
}

int main(int argc, char **argv)
{
        struct chat_config cfg;
        char err[512];
        int r = chat_config_parse(&cfg, argc, argv, env, stdout, err, sizeof(err));
        if (r == 1)
                return 0;
        if (r < 0) {
                fprintf(stderr, "tern-chat: %s (see --help)\n", err);
                return 2;
        }
        tern_log_set_level(cfg.log_level);
        tern_log_set_format(cfg.log_format);
        if (!cfg.check && app_tls_load(&cfg.tls, true, err, sizeof(err)) < 0) {
                fprintf(stderr, "tern-chat: %s\n", err);
                app_tls_free(&cfg.tls);
                return 2;
        }
        cfg.opts.tls = cfg.tls.tls;
        cfg.opts.tls_port = cfg.tls.port;

        if (cfg.check) {
                char self[300];
                const char *target = cfg.check;
                bool healthz = false;
                if (strcmp(target, "self") == 0 && cfg.admin) {
                        /* The admin endpoint's /healthz: it stays 200 through
                         * a drain, when the chat port already refuses. */
                        target = self_admin_target(cfg.admin, self, sizeof(self));
                        healthz = true;
                } else if (strcmp(target, "self") == 0) {
                        target = self_target(&cfg.opts, self, sizeof(self));
                }
                r = healthz ? chat_check_healthz(target, 2000, err, sizeof(err))
                            : chat_check(target, 2000, err, sizeof(err));
                app_tls_free(&cfg.tls);
                if (r) {
                        fprintf(stderr, "tern-chat: check failed: %s\n", err);
                        return r == -EINVAL ? 2 : 1;
                }
                return 0;
        }

        app_catch_stop_signals(); /* before the port accepts: a stop then is graceful too */
        app_tune_malloc();
        app_reap_orphans_as_init();
        app_log_default_workers("tern-chat", cfg.opts.workers);
        server = chat_server_new(&cfg.opts);
        if (!server) {
                int e = errno;
                tern_error("tern-chat: cannot start: %s", strerror(e));
                app_tls_free(&cfg.tls);
                return e == EINVAL ? 2 : 1;
        }
        app_stop_on_signals(stop_chat, server);
        if (cfg.tls.tls)
                app_reload_on_sighup(app_reload_tls, &cfg.tls);
        if (app_admin_attach(chat_server_tern(server), "tern-chat", cfg.admin, chat_metrics,
                             server) < 0) {
                chat_server_free(server);
                app_tls_free(&cfg.tls);
                return 1;
        }

        r = chat_server_start(server);
        if (r) {
                tern_error("tern-chat: cannot start: %s", tern_strerror(r));
                chat_server_free(server);
                return 1;
        }
        char conns[24];
        if (cfg.opts.max_conns)
                snprintf(conns, sizeof(conns), "%u", cfg.opts.max_conns);
        else
                snprintf(conns, sizeof(conns), "unlimited");
        tern_info("tern-chat listening on %s port %u: %d worker(s), idle timeout %u s, "
                  "max conns %s, max line %zu B, max outbuf %zu B, flood %u lines/s burst %u",
                  cfg.opts.bind ? cfg.opts.bind : "*", chat_server_port(server),
                  chat_server_workers(server), cfg.opts.idle_timeout_ms / 1000, conns,
                  cfg.opts.max_line, cfg.opts.max_outbuf, cfg.opts.flood_rate,
                  cfg.opts.flood_burst);
        if (cfg.tls.tls)
                tern_info("tern-chat listening for TLS on %s port %u",
                          cfg.opts.bind ? cfg.opts.bind : "*", chat_server_tls_port(server));
        r = chat_server_wait(server);
        if (r)
                tern_error("tern-chat: %s", tern_strerror(r));
        /* What backpressure did (docs/chat.md, "Overload"): operators and
         * the inbox test read it here. */
        tern_info("tern-chat: peak inbox %zu B (max inbox %zu B), speakers paused %llu times, "
                  "peak output per client %zu B, flood lines dropped %llu, flooders "
                  "disconnected %llu, clients refused over max conns %llu",
                  chat_server_peak_inbox(server), cfg.opts.max_inbox,
                  (unsigned long long)chat_server_throttles(server),
                  chat_server_peak_queued(server),
                  (unsigned long long)chat_server_flood_dropped(server),
                  (unsigned long long)chat_server_flood_kicked(server),
                  (unsigned long long)chat_server_refused(server));
        chat_server_free(server);
        app_tls_free(&cfg.tls);
        tern_info("tern-chat stopped");
        return r ? 1 : 0;
}
