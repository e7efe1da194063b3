/*
 * tern-kv commands: the frame callback and one function per command.
 *
 * Each command's reply is built in a per-worker scratch buffer and handed to
 * tern_conn_send() whole. While the runtime delivers several commands from
 * one read it keeps the connection corked, so those sends only queue and the
 * whole pipeline's replies go out in one write; a lone command's reply is
 * written straight to the socket.
 */
#include "kv.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tern.h"

/* Scratch reply buffers bigger than this are freed after use, so one large
 * GET does not pin its size on a worker forever. */
#define KV_REPLY_KEEP (256u << 10)

/* Per worker thread: built in on_worker_start, freed in on_worker_stop. */
struct kv_worker {
        struct tern_buf reply;      /* the reply being built */
        struct tern_resp_arg *argv; /* max_args arguments of the current command */
        uint64_t *hash;             /* max_args hashes: the store's scratch */
};

static __thread struct kv_worker *kv_self;
/* Why the decoder refused the input, for the error reply: set by kv_decode
 * just before the runtime calls on_codec_error on the same thread. */
static __thread const char *kv_why;

/* ---- the codec: RESP, remembering the reason of an error ---- */

static ssize_t kv_decode(void *state, const uint8_t *in, size_t len, struct tern_frame *out)
{
        ssize_t n = tern_resp_decode(state, in, len, out);
        if (n < 0)
                kv_why = tern_resp_error_reason(state);
        return n;
}

static void *kv_codec_new(const void *config)
{
        return tern_resp_codec.state_new(config);
}

static void kv_codec_free(void *state)
{
        tern_resp_codec.state_free(state);
}

static const struct tern_codec kv_codec = {
    .name = "resp",
    .decode = kv_decode,
    .state_new = kv_codec_new,
    .state_free = kv_codec_free,
};

/* ---- commands ---- */

struct kv_ctx {
        struct kv_store *st;
        struct kv_worker *w;
        const struct tern_resp_arg *argv;
        int argc;
        struct tern_buf *out;
        bool quit; /* close the connection once the reply is sent */
};

struct kv_cmd {
        const char *name; /* lower case, as Redis names commands in errors */
        /* Redis's convention: n > 0 exactly n arguments (the name included),
         * n < 0 at least -n. */
        int arity;
        /* Appends the reply to x->out. Returns 0, or -ENOMEM when the reply
         * itself could not be built (the connection is then dropped). */
        int (*run)(struct kv_ctx *x);
};

static bool kv_arg_is(const struct tern_resp_arg *a, const char *word)
{
        size_t n = strlen(word);
        return a->len == n && strncasecmp((const char *)a->data, word, n) == 0;
}

static int kv_reply_oom(struct kv_ctx *x)
{
        return tern_resp_put_error(x->out, "OOM command not allowed when used memory > "
                                           "'maxmemory'.");
}

/* Store errors that are the client's answer, not the connection's end. */
static int kv_reply_store_error(struct kv_ctx *x, int err)
{
        switch (err) {
        case -ENOSPC:
                return kv_reply_oom(x);
        case -EINVAL:
                return tern_resp_put_error(x->out, "ERR value is not an integer or out of range");
        case -ERANGE:
                return tern_resp_put_error(x->out, "ERR increment or decrement would overflow");
        case -E2BIG:
                return tern_resp_put_error(x->out, "ERR string exceeds maximum allowed size");
        default:
                return tern_resp_put_error(x->out, "ERR out of memory");
        }
}

static int kv_ping(struct kv_ctx *x)
{
        if (x->argc > 2)
                return tern_resp_put_error(x->out, "ERR wrong number of arguments for 'ping' "
                                                   "command");
        if (x->argc == 2)
                return tern_resp_put_bulk(x->out, x->argv[1].data, x->argv[1].len);
        return tern_resp_put_simple(x->out, "PONG");
}

static int kv_echo(struct kv_ctx *x)
{
        return tern_resp_put_bulk(x->out, x->argv[1].data, x->argv[1].len);
}

static int kv_set_cmd(struct kv_ctx *x)
{
        enum kv_set_cond cond = KV_SET_ALWAYS;

        for (int i = 3; i < x->argc; i++) {
                enum kv_set_cond c;
                if (kv_arg_is(&x->argv[i], "nx"))
                        c = KV_SET_NX;
                else if (kv_arg_is(&x->argv[i], "xx"))
                        c = KV_SET_XX;
                else
                        return tern_resp_put_error(x->out, "ERR syntax error");
                if (cond != KV_SET_ALWAYS && cond != c)
                        return tern_resp_put_error(x->out, "ERR syntax error");
                cond = c;
        }
        int r =
            kv_set(x->st, x->argv[1].data, x->argv[1].len, x->argv[2].data, x->argv[2].len, cond);
        if (r < 0)
                return kv_reply_store_error(x, r);
        return r ? tern_resp_put_simple(x->out, "OK") : tern_resp_put_null(x->out);
}

static int kv_get_cmd(struct kv_ctx *x)
{
        return kv_get(x->st, x->argv[1].data, x->argv[1].len, x->out);
}

static int kv_del_cmd(struct kv_ctx *x)
{
        size_t n = kv_del(x->st, x->argv + 1, (size_t)x->argc - 1, x->w->hash);
        return tern_resp_put_int(x->out, (int64_t)n);
}

static int kv_exists_cmd(struct kv_ctx *x)
{
        size_t n = kv_exists(x->st, x->argv + 1, (size_t)x->argc - 1, x->w->hash);
        return tern_resp_put_int(x->out, (int64_t)n);
}

static int kv_incr_cmd(struct kv_ctx *x)
{
        int64_t v;
        int r = kv_incr(x->st, x->argv[1].data, x->argv[1].len, 1, &v);
        if (r < 0)
                return kv_reply_store_error(x, r);
        return tern_resp_put_int(x->out, v);
}

static int kv_mget_cmd(struct kv_ctx *x)
{
        int r = kv_mget(x->st, x->argv + 1, (size_t)x->argc - 1, x->w->hash, x->out, KV_MAX_REPLY);
        if (r == -E2BIG)
                return tern_resp_put_errorf(x->out, "ERR reply over %u MiB, ask for fewer keys",
                                            KV_MAX_REPLY >> 20);
        return r;
}

static int kv_mset_cmd(struct kv_ctx *x)
{
        if ((x->argc - 1) % 2)
                return tern_resp_put_error(x->out, "ERR wrong number of arguments for 'mset' "
                                                   "command");
        int r = kv_mset(x->st, x->argv + 1, (size_t)(x->argc - 1) / 2, x->w->hash);
        if (r < 0)
                return kv_reply_store_error(x, r);
        return tern_resp_put_simple(x->out, "OK");
}

static int kv_dbsize_cmd(struct kv_ctx *x)
{
        return tern_resp_put_int(x->out, (int64_t)kv_dbsize(x->st));
}

static int kv_flushall_cmd(struct kv_ctx *x)
{
        /* ASYNC and SYNC both free at once: only the unlinking holds locks. */
        if (x->argc > 2 ||
            (x->argc == 2 && !kv_arg_is(&x->argv[1], "async") && !kv_arg_is(&x->argv[1], "sync")))
                return tern_resp_put_error(x->out, "ERR syntax error");
        int r = kv_flushall(x->st);
        if (r < 0)
                return kv_reply_store_error(x, r);
        return tern_resp_put_simple(x->out, "OK");
}

static int kv_quit_cmd(struct kv_ctx *x)
{
        x->quit = true;
        return tern_resp_put_simple(x->out, "OK");
}

/*
 * CONFIG GET, only as far as redis-benchmark asks at start-up: "save" and
 * "appendonly", which truthfully are "" (no snapshots) and "no" (no log).
 * Other parameters are not found, which Redis answers with no pairs.
 */
static int kv_config_cmd(struct kv_ctx *x)
{
        static const char *const known[][2] = {{"save", ""}, {"appendonly", "no"}};
        size_t nknown = sizeof(known) / sizeof(known[0]);

        if (!kv_arg_is(&x->argv[1], "get") || x->argc < 3)
                return tern_resp_put_error(x->out, "ERR tern-kv supports only CONFIG GET "
                                                   "<parameter>");
        size_t pairs = 0;
        for (int i = 2; i < x->argc; i++)
                for (size_t k = 0; k < nknown; k++)
                        pairs += kv_arg_is(&x->argv[i], known[k][0]);
        int err = tern_resp_put_array(x->out, 2 * pairs);
        for (int i = 2; i < x->argc && !err; i++) {
                for (size_t k = 0; k < nknown && !err; k++) {
                        if (!kv_arg_is(&x->argv[i], known[k][0]))
                                continue;
                        err = tern_resp_put_bulk(x->out, known[k][0], strlen(known[k][0]));
                        if (!err)
                                err = tern_resp_put_bulk(x->out, known[k][1], strlen(known[k][1]));
                }
        }
        return err;
}

static const struct kv_cmd kv_cmds[] = {
    {"get", 2, kv_get_cmd},        {"set", -3, kv_set_cmd},           {"ping", -1, kv_ping},
    {"incr", 2, kv_incr_cmd},      {"mget", -2, kv_mget_cmd},         {"mset", -3, kv_mset_cmd},
    {"del", -2, kv_del_cmd},       {"exists", -2, kv_exists_cmd},     {"echo", 2, kv_echo},
    {"dbsize", 1, kv_dbsize_cmd},  {"flushall", -1, kv_flushall_cmd}, {"quit", -1, kv_quit_cmd},
    {"config", -2, kv_config_cmd},
};

static const struct kv_cmd *kv_lookup(const struct tern_resp_arg *name)
{
        for (size_t i = 0; i < sizeof(kv_cmds) / sizeof(kv_cmds[0]); i++)
                if (kv_arg_is(name, kv_cmds[i].name))
                        return &kv_cmds[i];
        return NULL;
}

static int kv_dispatch(struct kv_ctx *x)
{
        const struct kv_cmd *cmd = kv_lookup(&x->argv[0]);

        if (!cmd) {
                /* As Redis does, at most 128 bytes of a name we did not know. */
                int n = x->argv[0].len > 128 ? 128 : (int)x->argv[0].len;
                return tern_resp_put_errorf(x->out, "ERR unknown command '%.*s'", n,
                                            (const char *)x->argv[0].data);
        }
        if ((cmd->arity > 0 && x->argc != cmd->arity) || x->argc < -cmd->arity)
                return tern_resp_put_errorf(
                    x->out, "ERR wrong number of arguments for '%s' command", cmd->name);
        return cmd->run(x);
}

/* ---- worker state ---- */

static struct kv_worker *kv_worker_new(const struct kv_app *app)
{
        struct kv_worker *w = calloc(1, sizeof(*w));
        if (!w)
                return NULL;
        tern_buf_init(&w->reply);
        w->argv = calloc(app->resp.max_args, sizeof(*w->argv));
        w->hash = calloc(app->resp.max_args, sizeof(*w->hash));
        if (!w->argv || !w->hash) {
                free(w->argv);
                free(w->hash);
                free(w);
                return NULL;
        }
        return w;
}

static void kv_worker_start(tern_loop *loop, void *user)
{
        kv_self = kv_worker_new(user);
        if (!kv_self)
                tern_error("tern-kv: worker %d: out of memory; its connections will be closed",
                           tern_loop_index(loop));
}

static void kv_worker_stop(tern_loop *loop, void *user)
{
        struct kv_worker *w = kv_self;
        kv_self = NULL;
        if (!w)
                return;
        tern_buf_free(&w->reply);
        free(w->argv);
        free(w->hash);
        free(w);
}

/* ---- connection callbacks ---- */

static void kv_on_frame(tern_conn *c, const struct tern_frame *f)
{
        struct kv_app *app = tern_server_user(tern_conn_server(c));
        struct kv_worker *w = kv_self;

        if (!w) {
                tern_conn_abort(c);
                return;
        }
        int argc = tern_resp_args(f, w->argv, app->resp.max_args);
        struct kv_ctx x = {
            .st = app->store,
            .w = w,
            .argv = w->argv,
            .argc = argc,
            .out = &w->reply,
        };
        int err;
        /* The decoder already enforced max_args: this is a safety net. */
        if (argc <= 0 || (uint32_t)argc > app->resp.max_args)
                err = tern_resp_put_error(&w->reply, "ERR Protocol error: bad command");
        else
                err = kv_dispatch(&x);
        if (err) {
                tern_warn("tern-kv: fd %d: cannot build a reply: %s; closing", tern_conn_fd(c),
                          tern_strerror(err));
                tern_buf_consume(&w->reply, tern_buf_len(&w->reply));
                tern_conn_abort(c);
                return;
        }
        /* On failure the connection is already closed: nothing more to do. */
        tern_conn_send(c, tern_buf_data(&w->reply), tern_buf_len(&w->reply));
        tern_buf_consume(&w->reply, tern_buf_len(&w->reply));
        if (w->reply.cap > KV_REPLY_KEEP)
                tern_buf_free(&w->reply);
        if (x.quit)
                tern_conn_close(c);
}

/* A malformed request closes the connection (the stream cannot be resynced);
 * first the client learns why, in Redis's words. */
static void kv_on_codec_error(tern_conn *c, int err)
{
        char line[128];
        int n = snprintf(line, sizeof(line), "-ERR Protocol error: %s\r\n",
                         kv_why ? kv_why : tern_strerror(err));
        kv_why = NULL;
        if (n > 0)
                tern_conn_send(c, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void kv_on_high_water(tern_conn *c, size_t queued)
{
        tern_conn_pause_read(c);
}

static void kv_on_low_water(tern_conn *c, size_t queued)
{
        tern_conn_resume_read(c);
}

static const struct tern_conn_ops kv_ops = {
    .on_frame = kv_on_frame,
    .on_codec_error = kv_on_codec_error,
    .on_high_water = kv_on_high_water,
    .on_low_water = kv_on_low_water,
};

/* ---- the app ---- */

int kv_app_init(struct kv_app *app, const struct tern_resp_config *resp, size_t max_memory)
{
        memset(app, 0, sizeof(*app));
        if (resp)
                app->resp = *resp;
        else
                tern_resp_config_init(&app->resp);
        if (tern_resp_config_check(&app->resp))
                return -EINVAL;
        app->store = kv_store_new(max_memory);
        return app->store ? 0 : -ENOMEM;
}

void kv_app_fini(struct kv_app *app)
{
        kv_store_free(app->store);
        app->store = NULL;
}

void kv_app_apply(struct tern_server_opts *o, struct kv_app *app)
{
        o->ops = &kv_ops;
        o->codec = &kv_codec;
        o->codec_config = &app->resp;
        o->user = app;
        o->on_worker_start = kv_worker_start;
        o->on_worker_stop = kv_worker_stop;
        o->high_water = KV_HIGH_WATER;
        o->low_water = KV_HIGH_WATER / 2;
}
