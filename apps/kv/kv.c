/*
 * tern-kv commands: the frame callback and one function per command.
 *
 * Each command's reply is built in a per-worker scratch buffer and handed to
 * tern_conn_send() whole. While the runtime delivers several commands from
 * one read it keeps the connection corked, so those sends only queue and the
 * whole pipeline's replies go out in one write; a lone command's reply is
 * written straight to the socket.
 *
 * Every connection has a struct kv_client (its name, protocol, AUTH state
 * and transaction), registered with the app for CLIENT LIST and INFO.
 *
 * MULTI/EXEC: queued commands are copied into the client's queue. EXEC
 * works out every shard those commands (and the WATCHed keys) touch from
 * the command table's key positions, takes those shard locks in the
 * store's one ascending order (kv_hold), checks the WATCHed versions, runs
 * the commands as usual and releases. Other workers' commands on those
 * shards wait; commands on other shards carry on. docs/kv.md says more.
 */
#include "kv.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "obj.h"
#include "tern.h"

/* Scratch reply buffers bigger than this are freed after use, so one large
 * GET does not pin its size on a worker forever. */
#define KV_REPLY_KEEP (256u << 10)

/* What tern-kv tells clients it is: the Redis release whose commands and
 * replies it follows for everything docs/kv.md lists. */
#define KV_REDIS_VERSION "7.0.0"

/* Per worker thread: built in on_worker_start, freed in on_worker_stop. */
struct kv_worker {
        struct kv_worker *next; /* in app->workers, under app->lock */
        struct kv_app *app;
        tern_loop *loop;
        struct tern_buf reply;      /* the reply being built */
        struct tern_resp_arg *argv; /* max_args arguments of the current command */
        uint64_t *hash;             /* max_args hashes: the store's scratch */
        struct tern_timer tick;     /* active expiry */
        uint64_t commands;          /* processed; written by this thread only */
};

struct kv_client {
        struct kv_client *prev, *next; /* in app->clients, under app->lock */
        uint64_t id;
        int64_t since_ms;
        int fd;
        char addr[64];
        char name[KV_NAME_MAX + 1]; /* under app->lock: CLIENT LIST reads it */
        const char *last_cmd;       /* atomic: another worker's CLIENT LIST reads it */
        int proto;                  /* 2 or 3 (HELLO) */
        bool authed;
        bool in_multi;
        bool multi_dirty;      /* a command failed to queue: EXEC aborts */
        bool watch_dirty;      /* WATCH gave up (too many keys): EXEC aborts */
        struct tern_buf queue; /* queued commands: argc, then (len, bytes) each */
        uint32_t nqueued;
        struct tern_buf watch; /* watched keys: (version, len, bytes) each */
        uint32_t nwatch;
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
        struct kv_app *app;
        struct kv_store *st;
        struct kv_worker *w;
        struct kv_client *cl;
        tern_conn *c;
        const struct tern_resp_arg *argv;
        int argc;
        struct tern_buf *out;
        struct kv_reply r;
        bool quit; /* close the connection once the reply is sent */
};

/* Command flags. */
enum {
        KV_F_WRITE = 1,   /* may change the data set */
        KV_F_NOAUTH = 2,  /* allowed before AUTH */
        KV_F_TX = 4,      /* MULTI, EXEC, DISCARD, WATCH...: run even inside MULTI */
        KV_F_ALL = 8,     /* touches every key: EXEC locks every shard for it */
        KV_F_FAST = 16,   /* O(1) or O(log n), for COMMAND's flags */
        KV_F_NOMULTI = 32 /* refused inside MULTI */
};

struct kv_cmd {
        const char *name; /* lower case, as Redis names commands in errors */
        /* Redis's convention: n > 0 exactly n arguments (the name included),
         * n < 0 at least -n. */
        int arity;
        /* Appends the reply to x->out. Returns 0, or -ENOMEM when the reply
         * itself could not be built (the connection is then dropped). */
        int (*run)(struct kv_ctx *x);
        int flags;
        /* Key positions as COMMAND reports them (last < 0 counts from the
         * end); EXEC locks their shards. first 0 = no keys. */
        int first, last, step;
        const char *group;   /* for COMMAND DOCS */
        const char *summary; /* for COMMAND DOCS */
};

static bool kv_arg_is(const struct tern_resp_arg *a, const char *word)
{
        size_t n = strlen(word);
        return a->len == n && strncasecmp((const char *)a->data, word, n) == 0;
}

static bool kv_arg_i64(const struct tern_resp_arg *a, int64_t *v)
{
        return kv_parse_i64(a->data, a->len, v);
}

static int kv_err(struct kv_ctx *x, const char *msg)
{
        return tern_resp_put_error(x->out, msg);
}

static int kv_ok(struct kv_ctx *x)
{
        return tern_resp_put_simple(x->out, "OK");
}

static int kv_int(struct kv_ctx *x, int64_t v)
{
        return tern_resp_put_int(x->out, v);
}

static int kv_err_int(struct kv_ctx *x)
{
        return kv_err(x, "ERR value is not an integer or out of range");
}

static int kv_err_syntax(struct kv_ctx *x)
{
        return kv_err(x, "ERR syntax error");
}

/* Store errors that are the client's answer, not the connection's end. */
static int kv_reply_store_error(struct kv_ctx *x, int err)
{
        switch (err) {
        case -ENOSPC:
                return kv_err(x, "OOM command not allowed when used memory > 'maxmemory'.");
        case -EPROTOTYPE:
                return kv_err(x, "WRONGTYPE Operation against a key holding the wrong kind of "
                                 "value");
        case -EINVAL:
                return kv_err_int(x);
        case -ERANGE:
                return kv_err(x, "ERR increment or decrement would overflow");
        case -EDOM:
                return kv_err(x, "ERR increment would produce NaN or Infinity");
        case -ENOENT:
                return kv_err(x, "ERR no such key");
        case -E2BIG:
                if (tern_buf_len(x->out) > KV_MAX_REPLY / 2)
                        return -ENOMEM;
                return tern_resp_put_errorf(
                    x->out, "ERR reply over %u MiB or a value over its limit", KV_MAX_REPLY >> 20);
        default:
                return kv_err(x, "ERR out of memory");
        }
}

/* A store call's result: the error reply, or @ok's reply. */
#define KV_STORE(x, r, ok) ((r) < 0 ? kv_reply_store_error((x), (int)(r)) : (ok))

/* ---- strings ---- */

static int kv_ping(struct kv_ctx *x)
{
        if (x->argc > 2)
                return kv_err(x, "ERR wrong number of arguments for 'ping' command");
        if (x->argc == 2)
                return tern_resp_put_bulk(x->out, x->argv[1].data, x->argv[1].len);
        return tern_resp_put_simple(x->out, "PONG");
}

static int kv_echo(struct kv_ctx *x)
{
        return tern_resp_put_bulk(x->out, x->argv[1].data, x->argv[1].len);
}

/*
 * An expiry argument of SET, SETEX, GETEX or EXPIRE: @v in seconds
 * (@unit 1000) or milliseconds (1), relative or (@abs) since the epoch, to
 * unix ms in *@when. False on overflow.
 */
static bool kv_when(int64_t v, int64_t unit, bool abs, int64_t *when)
{
        int64_t ms;
        if (__builtin_mul_overflow(v, unit, &ms))
                return false;
        if (abs) {
                *when = ms;
                return true;
        }
        return !__builtin_add_overflow(ms, kv_now_ms(), when);
}

static int kv_err_expire(struct kv_ctx *x, const char *cmd)
{
        return tern_resp_put_errorf(x->out, "ERR invalid expire time in '%s' command", cmd);
}

/* Parses SET's or GETEX's options from argv[@from]. Returns 0, or 1 after
 * appending the error reply. */
static int kv_set_options(struct kv_ctx *x, int from, bool getex, struct kv_set_opts *o,
                          bool *persist, int *err)
{
        bool have_exp = false;
        for (int i = from; i < x->argc; i++) {
                const struct tern_resp_arg *a = &x->argv[i];
                int64_t unit = 0, v;
                bool abs = false;
                if (kv_arg_is(a, "ex"))
                        unit = 1000;
                else if (kv_arg_is(a, "px"))
                        unit = 1;
                else if (kv_arg_is(a, "exat"))
                        unit = 1000, abs = true;
                else if (kv_arg_is(a, "pxat"))
                        unit = 1, abs = true;
                if (unit) {
                        if (have_exp || o->keepttl || *persist || i + 1 >= x->argc)
                                goto syntax;
                        have_exp = true;
                        if (!kv_arg_i64(&x->argv[++i], &v))
                                goto not_int;
                        if (v <= 0 || !kv_when(v, unit, abs, &o->expire)) {
                                *err = kv_err_expire(x, getex ? "getex" : "set");
                                return 1;
                        }
                        continue;
                }
                if (getex && kv_arg_is(a, "persist") && !have_exp) {
                        *persist = true;
                } else if (!getex && kv_arg_is(a, "nx") && o->cond != KV_SET_XX) {
                        o->cond = KV_SET_NX;
                } else if (!getex && kv_arg_is(a, "xx") && o->cond != KV_SET_NX) {
                        o->cond = KV_SET_XX;
                } else if (!getex && kv_arg_is(a, "keepttl") && !have_exp) {
                        o->keepttl = true;
                } else if (!getex && kv_arg_is(a, "get")) {
                        o->get = true;
                } else {
                        goto syntax;
                }
        }
        return 0;
syntax:
        *err = kv_err_syntax(x);
        return 1;
not_int:
        *err = kv_err_int(x);
        return 1;
}

static int kv_set_cmd(struct kv_ctx *x)
{
        struct kv_set_opts o = {.cond = KV_SET_ALWAYS};
        bool persist = false;
        int err;

        if (x->argc > 3 && kv_set_options(x, 3, false, &o, &persist, &err))
                return err;
        size_t len0 = tern_buf_len(x->out);
        int r = kv_set_full(x->st, x->argv[1].data, x->argv[1].len, x->argv[2].data, x->argv[2].len,
                            &o, &x->r);
        if (r < 0) {
                tern_buf_truncate(x->out, len0);
                return kv_reply_store_error(x, r);
        }
        if (o.get) /* the old value is the reply */
                return 0;
        return r ? kv_ok(x) : kv_put_null(&x->r);
}

static int kv_setnx_cmd(struct kv_ctx *x)
{
        int r = kv_set(x->st, x->argv[1].data, x->argv[1].len, x->argv[2].data, x->argv[2].len,
                       KV_SET_NX);
        return KV_STORE(x, r, kv_int(x, r));
}

/* SETEX key seconds value, PSETEX key milliseconds value. */
static int kv_setex_cmd(struct kv_ctx *x)
{
        bool ms = x->argv[0].len == 6;
        struct kv_set_opts o = {.cond = KV_SET_ALWAYS};
        int64_t v;
        if (!kv_arg_i64(&x->argv[2], &v))
                return kv_err_int(x);
        if (v <= 0 || !kv_when(v, ms ? 1 : 1000, false, &o.expire))
                return kv_err_expire(x, ms ? "psetex" : "setex");
        int r = kv_set_full(x->st, x->argv[1].data, x->argv[1].len, x->argv[3].data, x->argv[3].len,
                            &o, NULL);
        return KV_STORE(x, r, kv_ok(x));
}

static int kv_get_cmd(struct kv_ctx *x)
{
        int r = kv_get(x->st, x->argv[1].data, x->argv[1].len, &x->r);
        return r == -EPROTOTYPE ? kv_reply_store_error(x, r) : r;
}

static int kv_getset_cmd(struct kv_ctx *x)
{
        struct kv_set_opts o = {.cond = KV_SET_ALWAYS, .get = true};
        size_t len0 = tern_buf_len(x->out);
        int r = kv_set_full(x->st, x->argv[1].data, x->argv[1].len, x->argv[2].data, x->argv[2].len,
                            &o, &x->r);
        if (r < 0) {
                tern_buf_truncate(x->out, len0);
                return kv_reply_store_error(x, r);
        }
        return 0;
}

static int kv_getdel_cmd(struct kv_ctx *x)
{
        int r = kv_getdel(x->st, x->argv[1].data, x->argv[1].len, &x->r);
        return r == -EPROTOTYPE ? kv_reply_store_error(x, r) : r;
}

static int kv_getex_cmd(struct kv_ctx *x)
{
        struct kv_set_opts o = {.cond = KV_SET_ALWAYS};
        bool persist = false;
        int err;
        if (kv_set_options(x, 2, true, &o, &persist, &err))
                return err;
        enum kv_getex_mode mode = persist    ? KV_GETEX_PERSIST
                                  : o.expire ? KV_GETEX_SET
                                             : KV_GETEX_KEEP;
        int r = kv_getex(x->st, x->argv[1].data, x->argv[1].len, mode, o.expire, &x->r);
        return r == -EPROTOTYPE ? kv_reply_store_error(x, r) : r;
}

/* INCR, DECR, INCRBY, DECRBY: told apart by name. */
static int kv_incr_cmd(struct kv_ctx *x)
{
        bool decr = (x->argv[0].data[0] | 0x20) == 'd';
        int64_t by = 1, v = 0;
        if (x->argc == 3 && !kv_arg_i64(&x->argv[2], &by))
                return kv_err_int(x);
        if (decr) {
                if (by == INT64_MIN)
                        return kv_err(x, "ERR decrement would overflow");
                by = -by;
        }
        int r = kv_incr(x->st, x->argv[1].data, x->argv[1].len, by, &v);
        return KV_STORE(x, r, kv_int(x, v));
}

static int kv_incrbyfloat_cmd(struct kv_ctx *x)
{
        char buf[64];
        const struct tern_resp_arg *a = &x->argv[2];
        long double by;
        char *end;
        if (a->len == 0 || a->len >= sizeof(buf))
                return kv_err(x, "ERR value is not a valid float");
        memcpy(buf, a->data, a->len);
        buf[a->len] = '\0';
        by = strtold(buf, &end);
        if (end != buf + a->len || isnan(by) || isinf(by) || buf[0] == ' ')
                return kv_err(x, "ERR value is not a valid float");
        int r = kv_incrbyfloat(x->st, x->argv[1].data, x->argv[1].len, by, &x->r);
        if (r == -EINVAL)
                return kv_err(x, "ERR value is not a valid float");
        return KV_STORE(x, r, 0);
}

static int kv_append_cmd(struct kv_ctx *x)
{
        int64_t len = 0;
        int r = kv_append(x->st, x->argv[1].data, x->argv[1].len, x->argv[2].data, x->argv[2].len,
                          x->app->resp.max_bulk, &len);
        if (r == -E2BIG)
                return kv_err(x, "ERR string exceeds maximum allowed size (--max-bulk)");
        return KV_STORE(x, r, kv_int(x, len));
}

static int kv_strlen_cmd(struct kv_ctx *x)
{
        int64_t n = kv_len(x->st, x->argv[1].data, x->argv[1].len, KV_STRING);
        return KV_STORE(x, n, kv_int(x, n));
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
        bool nx = x->argv[0].len == 6;
        if ((x->argc - 1) % 2)
                return tern_resp_put_errorf(x->out,
                                            "ERR wrong number of arguments for '%s' command",
                                            nx ? "msetnx" : "mset");
        size_t n = (size_t)(x->argc - 1) / 2;
        int r = nx ? kv_msetnx(x->st, x->argv + 1, n, x->w->hash)
                   : kv_mset(x->st, x->argv + 1, n, x->w->hash);
        return KV_STORE(x, r, nx ? kv_int(x, r) : kv_ok(x));
}

/* ---- keys ---- */

static int kv_del_cmd(struct kv_ctx *x)
{
        size_t n = kv_del(x->st, x->argv + 1, (size_t)x->argc - 1, x->w->hash);
        return kv_int(x, (int64_t)n);
}

static int kv_exists_cmd(struct kv_ctx *x)
{
        size_t n = kv_exists(x->st, x->argv + 1, (size_t)x->argc - 1, x->w->hash);
        return kv_int(x, (int64_t)n);
}

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: told apart by name. */
static int kv_expire_cmd(struct kv_ctx *x)
{
        const struct tern_resp_arg *name = &x->argv[0];
        bool ms = (name->data[0] | 0x20) == 'p';
        bool abs = (name->data[name->len - 1] | 0x20) == 't';
        char cmd[16];
        int64_t v, when;
        int flags = 0;

        snprintf(cmd, sizeof(cmd), "%s",
                 ms ? (abs ? "pexpireat" : "pexpire") : (abs ? "expireat" : "expire"));
        if (!kv_arg_i64(&x->argv[2], &v))
                return kv_err_int(x);
        for (int i = 3; i < x->argc; i++) {
                if (kv_arg_is(&x->argv[i], "nx"))
                        flags |= KV_EXP_NX;
                else if (kv_arg_is(&x->argv[i], "xx"))
                        flags |= KV_EXP_XX;
                else if (kv_arg_is(&x->argv[i], "gt"))
                        flags |= KV_EXP_GT;
                else if (kv_arg_is(&x->argv[i], "lt"))
                        flags |= KV_EXP_LT;
                else
                        return tern_resp_put_errorf(
                            x->out, "ERR Unsupported option %.*s",
                            (int)(x->argv[i].len > 64 ? 64 : x->argv[i].len),
                            (const char *)x->argv[i].data);
        }
        if ((flags & KV_EXP_NX) && (flags & ~KV_EXP_NX))
                return kv_err(x, "ERR NX and XX, GT or LT options at the same time are not "
                                 "compatible");
        if ((flags & KV_EXP_GT) && (flags & KV_EXP_LT))
                return kv_err(x, "ERR GT and LT options at the same time are not compatible");
        if (!kv_when(v, ms ? 1 : 1000, abs, &when))
                return kv_err_expire(x, cmd);
        int r = kv_expire(x->st, x->argv[1].data, x->argv[1].len, when, flags);
        return kv_int(x, r);
}

static int kv_ttl_cmd(struct kv_ctx *x)
{
        int64_t ms = kv_pttl(x->st, x->argv[1].data, x->argv[1].len);
        if (ms < 0 || (x->argv[0].data[0] | 0x20) == 'p')
                return kv_int(x, ms);
        return kv_int(x, (ms + 500) / 1000);
}

static int kv_persist_cmd(struct kv_ctx *x)
{
        return kv_int(x, kv_persist(x->st, x->argv[1].data, x->argv[1].len));
}

static int kv_type_cmd(struct kv_ctx *x)
{
        return tern_resp_put_simple(
            x->out, kv_type_name(kv_type_of(x->st, x->argv[1].data, x->argv[1].len)));
}

static int kv_rename_cmd(struct kv_ctx *x)
{
        bool nx = x->argv[0].len == 8;
        int r =
            kv_rename(x->st, x->argv[1].data, x->argv[1].len, x->argv[2].data, x->argv[2].len, nx);
        return KV_STORE(x, r, nx ? kv_int(x, r) : kv_ok(x));
}

/* Longest KEYS or SCAN MATCH pattern. Matching costs up to pattern length
 * times key length per key, and KEYS runs with every shard locked. */
#define KV_PATTERN_MAX 512

static int kv_err_pattern(struct kv_ctx *x)
{
        return tern_resp_put_errorf(x->out, "ERR pattern longer than %d bytes", KV_PATTERN_MAX);
}

static int kv_keys_cmd(struct kv_ctx *x)
{
        if (x->argv[1].len > KV_PATTERN_MAX)
                return kv_err_pattern(x);
        int r = kv_keys(x->st, x->argv[1].data, x->argv[1].len, &x->r);
        if (r == -E2BIG)
                return tern_resp_put_errorf(x->out, "ERR reply over %u MiB, use SCAN",
                                            KV_MAX_REPLY >> 20);
        return r;
}

static bool kv_parse_type(const struct tern_resp_arg *a, enum kv_type *t)
{
        for (int i = KV_STRING; i <= KV_ZSET; i++)
                if (kv_arg_is(a, kv_type_name((enum kv_type)i))) {
                        *t = (enum kv_type)i;
                        return true;
                }
        return false;
}

static int kv_scan_cmd(struct kv_ctx *x)
{
        const struct tern_resp_arg *c = &x->argv[1], *pat = NULL;
        enum kv_type type = KV_NONE;
        uint64_t cursor = 0;
        int64_t count = 10;

        if (c->len == 0 || c->len > 20)
                return kv_err(x, "ERR invalid cursor");
        for (size_t i = 0; i < c->len; i++) {
                unsigned d = (unsigned)(c->data[i] - '0');
                if (d > 9 || cursor > (UINT64_MAX - d) / 10)
                        return kv_err(x, "ERR invalid cursor");
                cursor = cursor * 10 + d;
        }
        for (int i = 2; i < x->argc; i += 2) {
                if (i + 1 >= x->argc)
                        return kv_err_syntax(x);
                const struct tern_resp_arg *v = &x->argv[i + 1];
                if (kv_arg_is(&x->argv[i], "match")) {
                        if (v->len > KV_PATTERN_MAX)
                                return kv_err_pattern(x);
                        pat = v;
                } else if (kv_arg_is(&x->argv[i], "count")) {
                        if (!kv_arg_i64(v, &count))
                                return kv_err_int(x);
                        if (count < 1)
                                return kv_err_syntax(x);
                } else if (kv_arg_is(&x->argv[i], "type")) {
                        if (!kv_parse_type(v, &type))
                                type = (enum kv_type)99; /* matches nothing, as in Redis */
                } else {
                        return kv_err_syntax(x);
                }
        }
        /* A "*" pattern matches everything: skip the matching. */
        if (pat && pat->len == 1 && pat->data[0] == '*')
                pat = NULL;
        return kv_scan(x->st, cursor, pat ? pat->data : NULL, pat ? pat->len : 0, (size_t)count,
                       type, &x->r);
}

static int kv_dbsize_cmd(struct kv_ctx *x)
{
        return kv_int(x, (int64_t)kv_dbsize(x->st));
}

static int kv_flushall_cmd(struct kv_ctx *x)
{
        /* ASYNC and SYNC both free at once: only the unlinking holds locks. */
        if (x->argc > 2 ||
            (x->argc == 2 && !kv_arg_is(&x->argv[1], "async") && !kv_arg_is(&x->argv[1], "sync")))
                return kv_err_syntax(x);
        int r = kv_flushall(x->st);
        return KV_STORE(x, r, kv_ok(x));
}

/* ---- hashes, lists, sets, sorted sets ---- */

static int kv_hset_cmd(struct kv_ctx *x)
{
        bool hmset = (x->argv[0].data[1] | 0x20) == 'm';
        int64_t added = 0;
        if ((x->argc - 2) % 2)
                return tern_resp_put_errorf(x->out,
                                            "ERR wrong number of arguments for '%s' command",
                                            hmset ? "hmset" : "hset");
        int r = kv_hset(x->st, x->argv[1].data, x->argv[1].len, x->argv + 2,
                        (size_t)(x->argc - 2) / 2, &added);
        return KV_STORE(x, r, hmset ? kv_ok(x) : kv_int(x, added));
}

static int kv_hget_cmd(struct kv_ctx *x)
{
        int r = kv_hget(x->st, x->argv[1].data, x->argv[1].len, &x->argv[2], &x->r);
        return KV_STORE(x, r, 0);
}

static int kv_hmget_cmd(struct kv_ctx *x)
{
        int r = kv_hmget(x->st, x->argv[1].data, x->argv[1].len, x->argv + 2, (size_t)x->argc - 2,
                         &x->r);
        return KV_STORE(x, r, 0);
}

static int kv_hdel_cmd(struct kv_ctx *x)
{
        int64_t n = 0;
        int r =
            kv_hdel(x->st, x->argv[1].data, x->argv[1].len, x->argv + 2, (size_t)x->argc - 2, &n);
        return KV_STORE(x, r, kv_int(x, n));
}

/* HGETALL, HKEYS, HVALS: told apart by name. */
static int kv_hgetall_cmd(struct kv_ctx *x)
{
        int what = x->argv[0].len == 7 ? 0 : (x->argv[0].data[1] | 0x20) == 'k' ? 1 : 2;
        int r = kv_hgetall(x->st, x->argv[1].data, x->argv[1].len, what, &x->r);
        return KV_STORE(x, r, 0);
}

static int kv_hincrby_cmd(struct kv_ctx *x)
{
        int64_t by, v = 0;
        if (!kv_arg_i64(&x->argv[3], &by))
                return kv_err_int(x);
        int r = kv_hincrby(x->st, x->argv[1].data, x->argv[1].len, &x->argv[2], by, &v);
        if (r == -EINVAL)
                return kv_err(x, "ERR hash value is not an integer");
        return KV_STORE(x, r, kv_int(x, v));
}

/* HEXISTS and SISMEMBER. */
static int kv_hexists_cmd(struct kv_ctx *x)
{
        enum kv_type t = (x->argv[0].data[0] | 0x20) == 'h' ? KV_HASH : KV_SET;
        int r = kv_hexists(x->st, x->argv[1].data, x->argv[1].len, t, &x->argv[2]);
        return KV_STORE(x, r, kv_int(x, r));
}

/* HLEN, LLEN, SCARD, ZCARD. */
static int kv_len_cmd(struct kv_ctx *x)
{
        char c = (char)(x->argv[0].data[0] | 0x20);
        enum kv_type t = c == 'h' ? KV_HASH : c == 'l' ? KV_LIST : c == 's' ? KV_SET : KV_ZSET;
        int64_t n = kv_len(x->st, x->argv[1].data, x->argv[1].len, t);
        return KV_STORE(x, n, kv_int(x, n));
}

static int kv_push_cmd(struct kv_ctx *x)
{
        bool front = (x->argv[0].data[0] | 0x20) == 'l';
        int64_t len = 0;
        int r = kv_push(x->st, x->argv[1].data, x->argv[1].len, x->argv + 2, (size_t)x->argc - 2,
                        front, &len);
        return KV_STORE(x, r, kv_int(x, len));
}

/* An optional count argument of LPOP, RPOP, SPOP, ZPOPMIN: -1 when absent. */
static int kv_count_arg(struct kv_ctx *x, int64_t *count)
{
        *count = -1;
        if (x->argc < 3)
                return 0;
        if (x->argc > 3)
                return kv_err_syntax(x) ? -ENOMEM : 1;
        if (!kv_arg_i64(&x->argv[2], count) || *count < 0)
                return kv_err(x, "ERR value is out of range, must be positive") ? -ENOMEM : 1;
        return 0;
}

static int kv_pop_cmd(struct kv_ctx *x)
{
        bool front = (x->argv[0].data[0] | 0x20) == 'l';
        int64_t count;
        int r = kv_count_arg(x, &count);
        if (r)
                return r < 0 ? r : 0;
        r = kv_pop(x->st, x->argv[1].data, x->argv[1].len, front, count, &x->r);
        return KV_STORE(x, r, 0);
}

static int kv_lrange_cmd(struct kv_ctx *x)
{
        int64_t start, stop;
        if (!kv_arg_i64(&x->argv[2], &start) || !kv_arg_i64(&x->argv[3], &stop))
                return kv_err_int(x);
        int r = kv_lrange(x->st, x->argv[1].data, x->argv[1].len, start, stop, &x->r);
        return KV_STORE(x, r, 0);
}

static int kv_sadd_cmd(struct kv_ctx *x)
{
        int64_t n = 0;
        int r =
            kv_sadd(x->st, x->argv[1].data, x->argv[1].len, x->argv + 2, (size_t)x->argc - 2, &n);
        return KV_STORE(x, r, kv_int(x, n));
}

/* SREM and ZREM. */
static int kv_srem_cmd(struct kv_ctx *x)
{
        enum kv_type t = (x->argv[0].data[0] | 0x20) == 's' ? KV_SET : KV_ZSET;
        int64_t n = 0;
        int r = kv_srem(x->st, x->argv[1].data, x->argv[1].len, t, x->argv + 2, (size_t)x->argc - 2,
                        &n);
        return KV_STORE(x, r, kv_int(x, n));
}

static int kv_spop_cmd(struct kv_ctx *x)
{
        int64_t count;
        int r = kv_count_arg(x, &count);
        if (r)
                return r < 0 ? r : 0;
        r = kv_spop(x->st, x->argv[1].data, x->argv[1].len, count, &x->r);
        return KV_STORE(x, r, 0);
}

static int kv_smembers_cmd(struct kv_ctx *x)
{
        int r = kv_smembers(x->st, x->argv[1].data, x->argv[1].len, &x->r);
        return KV_STORE(x, r, 0);
}

static int kv_zadd_cmd(struct kv_ctx *x)
{
        int64_t added = 0;
        double d;
        if ((x->argc - 2) % 2)
                return kv_err_syntax(x);
        for (int i = 2; i < x->argc; i += 2)
                if (!kv_parse_double(x->argv[i].data, x->argv[i].len, &d))
                        return kv_err(x, "ERR value is not a valid float");
        int r = kv_zadd(x->st, x->argv[1].data, x->argv[1].len, x->argv + 2,
                        (size_t)(x->argc - 2) / 2, &added);
        return KV_STORE(x, r, kv_int(x, added));
}

static int kv_zscore_cmd(struct kv_ctx *x)
{
        int r = kv_zscore(x->st, x->argv[1].data, x->argv[1].len, &x->argv[2], &x->r);
        return KV_STORE(x, r, 0);
}

static int kv_zpopmin_cmd(struct kv_ctx *x)
{
        int64_t count;
        int r = kv_count_arg(x, &count);
        if (r)
                return r < 0 ? r : 0;
        r = kv_zpopmin(x->st, x->argv[1].data, x->argv[1].len, count < 0 ? 1 : count, &x->r);
        return KV_STORE(x, r, 0);
}

/* ---- connection ---- */

static int kv_quit_cmd(struct kv_ctx *x)
{
        x->quit = true;
        return kv_ok(x);
}

static int kv_select_cmd(struct kv_ctx *x)
{
        int64_t db;
        if (!kv_arg_i64(&x->argv[1], &db))
                return kv_err_int(x);
        if (db != 0)
                return kv_err(x, "ERR DB index is out of range (tern-kv has only database 0)");
        return kv_ok(x);
}

/* Equal-time comparison, so the reply time does not tell a guess's prefix. */
static bool kv_pass_ok(const struct kv_app *app, const struct tern_resp_arg *pass)
{
        size_t n = strlen(app->requirepass);
        unsigned diff = (unsigned)(pass->len != n);
        for (size_t i = 0; i < pass->len; i++)
                diff |= (unsigned)(pass->data[i] ^ (uint8_t)app->requirepass[i % (n ? n : 1)]);
        return n && !diff;
}

/* AUTH's check for AUTH and HELLO: @user may be NULL. Returns 0 when
 * authenticated, 1 after appending the error reply. */
static int kv_auth_check(struct kv_ctx *x, const struct tern_resp_arg *user,
                         const struct tern_resp_arg *pass, int *err)
{
        if (!x->app->requirepass) {
                *err = kv_err(x, "ERR AUTH <password> called without any password configured "
                                 "for the default user. Are you sure your configuration is "
                                 "correct?");
                return 1;
        }
        if ((user && !kv_arg_is(user, "default")) || !kv_pass_ok(x->app, pass)) {
                *err = kv_err(x, "WRONGPASS invalid username-password pair or user is disabled.");
                return 1;
        }
        x->cl->authed = true;
        return 0;
}

static int kv_auth_cmd(struct kv_ctx *x)
{
        int err;
        if (x->argc > 3)
                return kv_err_syntax(x);
        if (kv_auth_check(x, x->argc == 3 ? &x->argv[1] : NULL, &x->argv[x->argc - 1], &err))
                return err;
        return kv_ok(x);
}

/* Redis accepts names of printable characters without spaces. */
static bool kv_name_ok(const struct tern_resp_arg *a)
{
        if (a->len > KV_NAME_MAX)
                return false;
        for (size_t i = 0; i < a->len; i++)
                if (a->data[i] <= ' ' || a->data[i] > '~')
                        return false;
        return true;
}

static void kv_set_name(struct kv_ctx *x, const struct tern_resp_arg *a)
{
        pthread_mutex_lock(&x->app->lock);
        memcpy(x->cl->name, a->data, a->len);
        x->cl->name[a->len] = '\0';
        pthread_mutex_unlock(&x->app->lock);
}

static int kv_err_name(struct kv_ctx *x)
{
        return tern_resp_put_errorf(x->out,
                                    "ERR Client names cannot contain spaces, newlines or "
                                    "special characters, nor be longer than %d bytes",
                                    KV_NAME_MAX);
}

static int kv_bulk_str(struct kv_ctx *x, const char *s)
{
        return tern_resp_put_bulk(x->out, s, strlen(s));
}

static int kv_hello_cmd(struct kv_ctx *x)
{
        int64_t proto = x->cl->proto;
        const struct tern_resp_arg *name = NULL;
        int err;

        if (x->argc >= 2 && (!kv_arg_i64(&x->argv[1], &proto) || proto < 2 || proto > 3))
                return kv_err(x, "NOPROTO unsupported protocol version");
        for (int i = 2; i < x->argc; i++) {
                if (kv_arg_is(&x->argv[i], "auth") && i + 2 < x->argc) {
                        if (kv_auth_check(x, &x->argv[i + 1], &x->argv[i + 2], &err))
                                return err;
                        i += 2;
                } else if (kv_arg_is(&x->argv[i], "setname") && i + 1 < x->argc) {
                        name = &x->argv[++i];
                        if (!kv_name_ok(name))
                                return kv_err_name(x);
                } else {
                        return tern_resp_put_errorf(
                            x->out, "ERR Syntax error in HELLO option '%.*s'",
                            (int)(x->argv[i].len > 64 ? 64 : x->argv[i].len),
                            (const char *)x->argv[i].data);
                }
        }
        if (x->app->requirepass && !x->cl->authed)
                return kv_err(x, "NOAUTH HELLO must be called with the client already "
                                 "authenticated, otherwise the HELLO <proto> AUTH <user> <pass> "
                                 "option can be used to authenticate the client and select the "
                                 "RESP protocol version at the same time");
        if (name)
                kv_set_name(x, name);
        __atomic_store_n(&x->cl->proto, (int)proto, __ATOMIC_RELAXED);
        x->r.proto = (int)proto;
        err = kv_put_map(&x->r, 7);
        err = err ?: kv_bulk_str(x, "server");
        err = err ?: kv_bulk_str(x, "redis");
        err = err ?: kv_bulk_str(x, "version");
        err = err ?: kv_bulk_str(x, KV_REDIS_VERSION);
        err = err ?: kv_bulk_str(x, "proto");
        err = err ?: kv_int(x, proto);
        err = err ?: kv_bulk_str(x, "id");
        err = err ?: kv_int(x, (int64_t)x->cl->id);
        err = err ?: kv_bulk_str(x, "mode");
        err = err ?: kv_bulk_str(x, "standalone");
        err = err ?: kv_bulk_str(x, "role");
        err = err ?: kv_bulk_str(x, "master");
        err = err ?: kv_bulk_str(x, "modules");
        err = err ?: tern_resp_put_array(x->out, 0);
        return err;
}

/* One CLIENT LIST / CLIENT INFO line; under app->lock (the name). Other
 * workers' clients change their state without that lock, so what they
 * change is read atomically: a line is a moment's view, as in Redis. */
static int kv_client_line(struct tern_buf *b, const struct kv_client *cl, int64_t now)
{
        const char *cmd = __atomic_load_n(&cl->last_cmd, __ATOMIC_RELAXED);
        bool multi = __atomic_load_n(&cl->in_multi, __ATOMIC_RELAXED);
        uint32_t queued = __atomic_load_n(&cl->nqueued, __ATOMIC_RELAXED);
        int proto = __atomic_load_n(&cl->proto, __ATOMIC_RELAXED);
        char line[512];
        int n = snprintf(line, sizeof(line),
                         "id=%" PRIu64 " addr=%s fd=%d name=%s age=%" PRId64
                         " idle=0 flags=%s db=0 multi=%d cmd=%s user=default resp=%d\n",
                         cl->id, cl->addr, cl->fd, cl->name, (now - cl->since_ms) / 1000,
                         multi ? "x" : "N", multi ? (int)queued : -1, cmd ? cmd : "NULL", proto);
        return tern_buf_append(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static int kv_client_cmd(struct kv_ctx *x)
{
        const struct tern_resp_arg *sub = &x->argv[1];
        int64_t now = kv_now_ms();
        int err;

        if (kv_arg_is(sub, "setname") && x->argc == 3) {
                if (!kv_name_ok(&x->argv[2]))
                        return kv_err_name(x);
                kv_set_name(x, &x->argv[2]);
                return kv_ok(x);
        }
        if (kv_arg_is(sub, "getname") && x->argc == 2) {
                if (!x->cl->name[0])
                        return kv_put_null(&x->r);
                return kv_bulk_str(x, x->cl->name);
        }
        if (kv_arg_is(sub, "id") && x->argc == 2)
                return kv_int(x, (int64_t)x->cl->id);
        if (kv_arg_is(sub, "setinfo") && x->argc == 4)
                return kv_ok(x); /* library name and version: accepted, not kept */
        if ((kv_arg_is(sub, "info") && x->argc == 2) || kv_arg_is(sub, "list")) {
                struct tern_buf b = TERN_BUF_INIT;
                pthread_mutex_lock(&x->app->lock);
                if (kv_arg_is(sub, "info")) {
                        err = kv_client_line(&b, x->cl, now);
                } else {
                        err = 0;
                        for (struct kv_client *cl = x->app->clients; cl && !err; cl = cl->next)
                                err = kv_client_line(&b, cl, now);
                }
                pthread_mutex_unlock(&x->app->lock);
                if (!err)
                        err = tern_resp_put_bulk(x->out, tern_buf_data(&b), tern_buf_len(&b));
                tern_buf_free(&b);
                return err;
        }
        return tern_resp_put_errorf(x->out,
                                    "ERR unknown subcommand or wrong number of arguments for "
                                    "'%.*s'. tern-kv supports CLIENT SETNAME, GETNAME, ID, "
                                    "INFO, LIST and SETINFO",
                                    (int)(sub->len > 64 ? 64 : sub->len), (const char *)sub->data);
}

/* ---- server ---- */

static const char *kv_policy_name(enum kv_policy p)
{
        return p == KV_ALLKEYS_LRU    ? "allkeys-lru"
               : p == KV_VOLATILE_TTL ? "volatile-ttl"
                                      : "noeviction";
}

/*
 * CONFIG GET: "save" is "" (no snapshots) and "appendonly" "no" (no log),
 * both true; maxmemory, maxmemory-policy and databases report the
 * configuration. Patterns are globs, as in Redis.
 */
static int kv_config_cmd(struct kv_ctx *x)
{
        char mem[24];
        snprintf(mem, sizeof(mem), "%zu", kv_store_max_memory(x->st));
        const char *const known[][2] = {
            {"save", ""},       {"appendonly", "no"},
            {"maxmemory", mem}, {"maxmemory-policy", kv_policy_name(kv_store_policy(x->st))},
            {"databases", "1"},
        };
        size_t nknown = sizeof(known) / sizeof(known[0]);
        bool hit[sizeof(known) / sizeof(known[0])] = {false};

        if (!kv_arg_is(&x->argv[1], "get") || x->argc < 3)
                return kv_err(x, "ERR tern-kv supports only CONFIG GET <parameter>");
        /* In the order asked, each parameter once. */
        size_t pairs = 0;
        int order[sizeof(known) / sizeof(known[0])];
        for (int i = 2; i < x->argc; i++) {
                /* Parameter names are case-insensitive: match in lower case. */
                uint8_t pat[64];
                size_t plen = x->argv[i].len;
                if (plen > sizeof(pat))
                        continue;
                for (size_t j = 0; j < plen; j++) {
                        uint8_t ch = x->argv[i].data[j];
                        pat[j] = ch >= 'A' && ch <= 'Z' ? (uint8_t)(ch | 0x20) : ch;
                }
                for (size_t k = 0; k < nknown; k++)
                        if (!hit[k] && kv_glob_match(pat, plen, (const uint8_t *)known[k][0],
                                                     strlen(known[k][0]))) {
                                hit[k] = true;
                                order[pairs++] = (int)k;
                        }
        }
        int err = kv_put_map(&x->r, pairs);
        for (size_t i = 0; i < pairs && !err; i++) {
                err = kv_bulk_str(x, known[order[i]][0]);
                if (!err)
                        err = kv_bulk_str(x, known[order[i]][1]);
        }
        return err;
}

static void kv_human(char *buf, size_t cap, size_t bytes)
{
        if (bytes < 1024)
                snprintf(buf, cap, "%zuB", bytes);
        else if (bytes < (1u << 20))
                snprintf(buf, cap, "%.2fK", (double)bytes / 1024.0);
        else if (bytes < (1u << 30))
                snprintf(buf, cap, "%.2fM", (double)bytes / 1048576.0);
        else
                snprintf(buf, cap, "%.2fG", (double)bytes / 1073741824.0);
}

static bool kv_want_section(struct kv_ctx *x, const char *name)
{
        if (x->argc == 1)
                return true;
        for (int i = 1; i < x->argc; i++)
                if (kv_arg_is(&x->argv[i], name) || kv_arg_is(&x->argv[i], "all") ||
                    kv_arg_is(&x->argv[i], "default") || kv_arg_is(&x->argv[i], "everything"))
                        return true;
        return false;
}

static int kv_info_cmd(struct kv_ctx *x)
{
        struct kv_app *app = x->app;
        struct kv_store_stats ss;
        struct tern_buf b = TERN_BUF_INIT;
        char line[512], h1[32], h2[32];
        size_t nclients;
        uint64_t commands = 0;
        int64_t up = (kv_now_ms() - app->started_ms) / 1000;
        int err = 0;

        kv_store_stats(x->st, &ss);
        pthread_mutex_lock(&app->lock);
        nclients = app->nclients;
        for (struct kv_worker *w = app->workers; w; w = w->next)
                commands += __atomic_load_n(&w->commands, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&app->lock);

#define KV_INFO(...)                                                                               \
        do {                                                                                       \
                int n_ = snprintf(line, sizeof(line), __VA_ARGS__);                                \
                if (!err && n_ > 0)                                                                \
                        err = tern_buf_append(                                                     \
                            &b, line, (size_t)n_ < sizeof(line) ? (size_t)n_ : sizeof(line) - 1);  \
        } while (0)

        if (kv_want_section(x, "server")) {
                struct utsname u;
                if (uname(&u))
                        memset(&u, 0, sizeof(u));
                KV_INFO("# Server\r\nredis_version:%s\r\ntern_version:%s\r\n"
                        "redis_mode:standalone\r\nos:%s %s %s\r\narch_bits:%d\r\n"
                        "multiplexing_api:epoll\r\nprocess_id:%d\r\ntcp_port:%u\r\n"
                        "uptime_in_seconds:%" PRId64 "\r\nuptime_in_days:%" PRId64
                        "\r\nhz:%d\r\nio_threads_active:%d\r\n\r\n",
                        KV_REDIS_VERSION, tern_version(), u.sysname, u.release, u.machine,
                        (int)(sizeof(void *) * 8), (int)getpid(),
                        tern_server_port(tern_conn_server(x->c)), up, up / 86400, 1000 / KV_TICK_MS,
                        tern_server_workers(tern_conn_server(x->c)) > 1);
        }
        if (kv_want_section(x, "clients"))
                KV_INFO("# Clients\r\nconnected_clients:%zu\r\nblocked_clients:0\r\n"
                        "tracking_clients:0\r\n\r\n",
                        nclients);
        if (kv_want_section(x, "memory")) {
                kv_human(h1, sizeof(h1), ss.bytes);
                kv_human(h2, sizeof(h2), kv_store_max_memory(x->st));
                KV_INFO("# Memory\r\nused_memory:%zu\r\nused_memory_human:%s\r\n"
                        "maxmemory:%zu\r\nmaxmemory_human:%s\r\nmaxmemory_policy:%s\r\n\r\n",
                        ss.bytes, h1, kv_store_max_memory(x->st), h2,
                        kv_policy_name(kv_store_policy(x->st)));
        }
        if (kv_want_section(x, "stats"))
                KV_INFO("# Stats\r\ntotal_connections_received:%" PRIu64
                        "\r\ntotal_commands_processed:%" PRIu64 "\r\nrejected_connections:%" PRIu64
                        "\r\nexpired_keys:%zu\r\nevicted_keys:%zu\r\n"
                        "keyspace_hits:%zu\r\nkeyspace_misses:%zu\r\n\r\n",
                        __atomic_load_n(&app->connections, __ATOMIC_RELAXED), commands,
                        app_conn_limit_refused(&app->limit), ss.expired, ss.evicted, ss.hits,
                        ss.misses);
        if (kv_want_section(x, "keyspace")) {
                KV_INFO("# Keyspace\r\n");
                if (ss.keys)
                        KV_INFO("db0:keys=%zu,expires=%zu,avg_ttl=0\r\n", ss.keys, ss.expires);
        }
#undef KV_INFO
        if (!err)
                err = tern_resp_put_bulk(x->out, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_free(&b);
        return err;
}

/* ---- transactions ---- */

static const struct kv_cmd *kv_lookup(const struct tern_resp_arg *name);

/* Per-client transaction state (queue and watched keys) stays under the
 * request limit: a client cannot queue more than one request could carry. */
static size_t kv_tx_limit(const struct kv_app *app)
{
        return app->resp.max_frame;
}

static void kv_tx_reset(struct kv_client *cl)
{
        __atomic_store_n(&cl->in_multi, false, __ATOMIC_RELAXED);
        cl->multi_dirty = false;
        cl->watch_dirty = false;
        tern_buf_free(&cl->queue);
        tern_buf_free(&cl->watch);
        __atomic_store_n(&cl->nqueued, 0, __ATOMIC_RELAXED);
        cl->nwatch = 0;
}

static int kv_multi_cmd(struct kv_ctx *x)
{
        if (x->cl->in_multi)
                return kv_err(x, "ERR MULTI calls can not be nested");
        __atomic_store_n(&x->cl->in_multi, true, __ATOMIC_RELAXED);
        return kv_ok(x);
}

static int kv_discard_cmd(struct kv_ctx *x)
{
        if (!x->cl->in_multi)
                return kv_err(x, "ERR DISCARD without MULTI");
        kv_tx_reset(x->cl);
        return kv_ok(x);
}

static int kv_watch_cmd(struct kv_ctx *x)
{
        struct kv_client *cl = x->cl;
        if (cl->in_multi)
                return kv_err(x, "ERR WATCH inside MULTI is not allowed");
        for (int i = 1; i < x->argc; i++) {
                const struct tern_resp_arg *k = &x->argv[i];
                uint64_t ver = kv_version(x->st, k->data, k->len);
                uint32_t len = (uint32_t)k->len;
                if (tern_buf_len(&cl->watch) + sizeof(ver) + sizeof(len) + k->len >
                        kv_tx_limit(x->app) ||
                    tern_buf_append(&cl->watch, &ver, sizeof(ver)) ||
                    tern_buf_append(&cl->watch, &len, sizeof(len)) ||
                    tern_buf_append(&cl->watch, k->data, k->len)) {
                        /* Cannot watch it: the transaction must not succeed. */
                        cl->watch_dirty = true;
                        return kv_err(x, "ERR too many watched keys (over --max-request bytes); "
                                         "EXEC will fail");
                }
                cl->nwatch++;
        }
        return kv_ok(x);
}

static int kv_unwatch_cmd(struct kv_ctx *x)
{
        tern_buf_free(&x->cl->watch);
        x->cl->nwatch = 0;
        x->cl->watch_dirty = false;
        return kv_ok(x);
}

/* Appends the current command to the queue, or says why not. */
static int kv_queue(struct kv_ctx *x)
{
        struct kv_client *cl = x->cl;
        size_t need = sizeof(uint32_t) * (1 + (size_t)x->argc);
        for (int i = 0; i < x->argc; i++)
                need += x->argv[i].len;
        if (tern_buf_len(&cl->queue) + need > kv_tx_limit(x->app)) {
                cl->multi_dirty = true;
                return kv_err(x, "ERR transaction over --max-request bytes; EXEC will fail");
        }
        uint32_t argc = (uint32_t)x->argc;
        int err = tern_buf_reserve(&cl->queue, need);
        if (err) {
                cl->multi_dirty = true;
                return kv_err(x, "ERR out of memory queueing the command");
        }
        tern_buf_append(&cl->queue, &argc, sizeof(argc));
        for (int i = 0; i < x->argc; i++) {
                uint32_t len = (uint32_t)x->argv[i].len;
                tern_buf_append(&cl->queue, &len, sizeof(len));
                tern_buf_append(&cl->queue, x->argv[i].data, x->argv[i].len);
        }
        __atomic_store_n(&cl->nqueued, cl->nqueued + 1, __ATOMIC_RELAXED);
        return tern_resp_put_simple(x->out, "QUEUED");
}

/* Decodes the queued command at *@off into @argv; returns its argc. */
static int kv_unqueue(const struct tern_buf *q, size_t *off, struct tern_resp_arg *argv)
{
        const uint8_t *p = tern_buf_data(q) + *off;
        uint32_t argc, len;
        memcpy(&argc, p, sizeof(argc));
        p += sizeof(argc);
        for (uint32_t i = 0; i < argc; i++) {
                memcpy(&len, p, sizeof(len));
                p += sizeof(len);
                argv[i].data = p;
                argv[i].len = len;
                p += len;
        }
        *off = (size_t)(p - tern_buf_data(q));
        return (int)argc;
}

/* The shards command @cmd touches with @argv, for kv_hold(). */
static uint64_t kv_cmd_shards(struct kv_store *st, const struct kv_cmd *cmd,
                              const struct tern_resp_arg *argv, int argc)
{
        if (cmd->flags & KV_F_ALL)
                return ~0ULL >> (64 - KV_SHARDS);
        if (!cmd->first)
                return 0;
        int last = cmd->last < 0 ? argc + cmd->last : cmd->last;
        uint64_t mask = 0;
        for (int i = cmd->first; i <= last && i < argc; i += cmd->step)
                mask |= kv_shard_mask(st, argv[i].data, argv[i].len);
        return mask;
}

static int kv_run(struct kv_ctx *x, const struct kv_cmd *cmd);

static int kv_exec_cmd(struct kv_ctx *x)
{
        struct kv_client *cl = x->cl;
        struct tern_resp_arg *argv = x->w->argv;
        uint64_t mask = 0;
        size_t off;
        int err = 0;

        if (!cl->in_multi)
                return kv_err(x, "ERR EXEC without MULTI");
        if (cl->multi_dirty || cl->watch_dirty) {
                kv_tx_reset(cl);
                return kv_err(x, "EXECABORT Transaction discarded because of previous errors.");
        }
        /* Every shard the commands and the watched keys touch, locked at once. */
        off = 0;
        for (uint32_t i = 0; i < cl->nqueued; i++) {
                int argc = kv_unqueue(&cl->queue, &off, argv);
                mask |= kv_cmd_shards(x->st, kv_lookup(&argv[0]), argv, argc);
        }
        off = 0;
        for (uint32_t i = 0; i < cl->nwatch; i++) {
                uint32_t len;
                const uint8_t *p = tern_buf_data(&cl->watch) + off + sizeof(uint64_t);
                memcpy(&len, p, sizeof(len));
                mask |= kv_shard_mask(x->st, p + sizeof(len), len);
                off += sizeof(uint64_t) + sizeof(len) + len;
        }
        kv_hold(x->st, mask);
        bool changed = false;
        off = 0;
        for (uint32_t i = 0; i < cl->nwatch && !changed; i++) {
                uint64_t ver;
                uint32_t len;
                const uint8_t *p = tern_buf_data(&cl->watch) + off;
                memcpy(&ver, p, sizeof(ver));
                memcpy(&len, p + sizeof(ver), sizeof(len));
                changed = kv_version(x->st, p + sizeof(ver) + sizeof(len), len) != ver;
                off += sizeof(ver) + sizeof(len) + len;
        }
        if (changed) {
                err = kv_put_null_array(&x->r);
        } else {
                err = tern_resp_put_array(x->out, cl->nqueued);
                off = 0;
                for (uint32_t i = 0; i < cl->nqueued && !err; i++) {
                        struct kv_ctx q = *x;
                        q.argc = kv_unqueue(&cl->queue, &off, argv);
                        q.argv = argv;
                        err = kv_run(&q, kv_lookup(&argv[0]));
                }
        }
        kv_release(x->st);
        kv_tx_reset(cl);
        return err;
}

static int kv_reset_cmd(struct kv_ctx *x)
{
        kv_tx_reset(x->cl);
        __atomic_store_n(&x->cl->proto, 2, __ATOMIC_RELAXED);
        x->r.proto = 2;
        if (x->app->requirepass)
                x->cl->authed = false;
        pthread_mutex_lock(&x->app->lock);
        x->cl->name[0] = '\0';
        pthread_mutex_unlock(&x->app->lock);
        return tern_resp_put_simple(x->out, "RESET");
}

/* ---- the command table ---- */

static int kv_command_cmd(struct kv_ctx *x);

#define W   KV_F_WRITE
#define F   KV_F_FAST
#define TX  KV_F_TX
#define NA  KV_F_NOAUTH
#define STR "string"
#define GEN "generic"
#define CON "connection"
#define SRV "server"
#define HSH "hash"
#define LST "list"
#define SET "set"
#define ZST "sorted-set"
#define TRX "transactions"

static const struct kv_cmd kv_cmds[] = {
    {"get", 2, kv_get_cmd, F, 1, 1, 1, STR, "Get the value of a key"},
    {"set", -3, kv_set_cmd, W, 1, 1, 1, STR,
     "Set a key's value, with NX XX GET EX PX EXAT PXAT KEEPTTL"},
    {"setnx", 3, kv_setnx_cmd, W | F, 1, 1, 1, STR, "Set a key's value only if it does not exist"},
    {"setex", 4, kv_setex_cmd, W, 1, 1, 1, STR, "Set a key's value and TTL in seconds"},
    {"psetex", 4, kv_setex_cmd, W, 1, 1, 1, STR, "Set a key's value and TTL in milliseconds"},
    {"getset", 3, kv_getset_cmd, W, 1, 1, 1, STR, "Set a key's value and return the old one"},
    {"getdel", 2, kv_getdel_cmd, W | F, 1, 1, 1, STR, "Get a key's value and delete the key"},
    {"getex", -2, kv_getex_cmd, W | F, 1, 1, 1, STR, "Get a key's value and set or remove its TTL"},
    {"incr", 2, kv_incr_cmd, W | F, 1, 1, 1, STR, "Add 1 to an integer value"},
    {"decr", 2, kv_incr_cmd, W | F, 1, 1, 1, STR, "Subtract 1 from an integer value"},
    {"incrby", 3, kv_incr_cmd, W | F, 1, 1, 1, STR, "Add to an integer value"},
    {"decrby", 3, kv_incr_cmd, W | F, 1, 1, 1, STR, "Subtract from an integer value"},
    {"incrbyfloat", 3, kv_incrbyfloat_cmd, W | F, 1, 1, 1, STR, "Add to a floating-point value"},
    {"append", 3, kv_append_cmd, W | F, 1, 1, 1, STR, "Append to a value"},
    {"strlen", 2, kv_strlen_cmd, F, 1, 1, 1, STR, "Length of a value"},
    {"mget", -2, kv_mget_cmd, F, 1, -1, 1, STR, "Get the values of several keys at once"},
    {"mset", -3, kv_mset_cmd, W, 1, -1, 2, STR, "Set several keys at once"},
    {"msetnx", -3, kv_mset_cmd, W, 1, -1, 2, STR, "Set several keys at once if none exists"},
    {"del", -2, kv_del_cmd, W, 1, -1, 1, GEN, "Delete keys"},
    {"unlink", -2, kv_del_cmd, W | F, 1, -1, 1, GEN, "Delete keys"},
    {"exists", -2, kv_exists_cmd, F, 1, -1, 1, GEN, "Count the keys that exist"},
    {"expire", -3, kv_expire_cmd, W | F, 1, 1, 1, GEN, "Set a TTL in seconds"},
    {"pexpire", -3, kv_expire_cmd, W | F, 1, 1, 1, GEN, "Set a TTL in milliseconds"},
    {"expireat", -3, kv_expire_cmd, W | F, 1, 1, 1, GEN, "Set an expiry time in unix seconds"},
    {"pexpireat", -3, kv_expire_cmd, W | F, 1, 1, 1, GEN, "Set an expiry time in unix ms"},
    {"ttl", 2, kv_ttl_cmd, F, 1, 1, 1, GEN, "Seconds to live"},
    {"pttl", 2, kv_ttl_cmd, F, 1, 1, 1, GEN, "Milliseconds to live"},
    {"persist", 2, kv_persist_cmd, W | F, 1, 1, 1, GEN, "Remove a key's TTL"},
    {"type", 2, kv_type_cmd, F, 1, 1, 1, GEN, "Type of a key's value"},
    {"rename", 3, kv_rename_cmd, W, 1, 2, 1, GEN, "Rename a key"},
    {"renamenx", 3, kv_rename_cmd, W | F, 1, 2, 1, GEN, "Rename a key if the new name is free"},
    {"keys", 2, kv_keys_cmd, KV_F_ALL, 0, 0, 0, GEN, "Keys matching a pattern"},
    {"scan", -2, kv_scan_cmd, KV_F_ALL, 0, 0, 0, GEN, "Iterate over the keys"},
    {"dbsize", 1, kv_dbsize_cmd, F, 0, 0, 0, SRV, "Number of keys"},
    {"flushall", -1, kv_flushall_cmd, W | KV_F_ALL, 0, 0, 0, SRV, "Delete every key"},
    {"flushdb", -1, kv_flushall_cmd, W | KV_F_ALL, 0, 0, 0, SRV, "Delete every key"},
    {"hset", -4, kv_hset_cmd, W | F, 1, 1, 1, HSH, "Set hash fields"},
    {"hmset", -4, kv_hset_cmd, W | F, 1, 1, 1, HSH, "Set hash fields"},
    {"hget", 3, kv_hget_cmd, F, 1, 1, 1, HSH, "Get a hash field"},
    {"hmget", -3, kv_hmget_cmd, F, 1, 1, 1, HSH, "Get hash fields"},
    {"hdel", -3, kv_hdel_cmd, W | F, 1, 1, 1, HSH, "Delete hash fields"},
    {"hgetall", 2, kv_hgetall_cmd, 0, 1, 1, 1, HSH, "Every field and value of a hash"},
    {"hkeys", 2, kv_hgetall_cmd, 0, 1, 1, 1, HSH, "Every field of a hash"},
    {"hvals", 2, kv_hgetall_cmd, 0, 1, 1, 1, HSH, "Every value of a hash"},
    {"hincrby", 4, kv_hincrby_cmd, W | F, 1, 1, 1, HSH, "Add to an integer hash field"},
    {"hexists", 3, kv_hexists_cmd, F, 1, 1, 1, HSH, "Whether a hash field exists"},
    {"hlen", 2, kv_len_cmd, F, 1, 1, 1, HSH, "Number of fields in a hash"},
    {"lpush", -3, kv_push_cmd, W | F, 1, 1, 1, LST, "Prepend to a list"},
    {"rpush", -3, kv_push_cmd, W | F, 1, 1, 1, LST, "Append to a list"},
    {"lpop", -2, kv_pop_cmd, W | F, 1, 1, 1, LST, "Remove and return the first elements"},
    {"rpop", -2, kv_pop_cmd, W | F, 1, 1, 1, LST, "Remove and return the last elements"},
    {"lrange", 4, kv_lrange_cmd, 0, 1, 1, 1, LST, "A range of a list"},
    {"llen", 2, kv_len_cmd, F, 1, 1, 1, LST, "Length of a list"},
    {"sadd", -3, kv_sadd_cmd, W | F, 1, 1, 1, SET, "Add members to a set"},
    {"srem", -3, kv_srem_cmd, W | F, 1, 1, 1, SET, "Remove members from a set"},
    {"spop", -2, kv_spop_cmd, W | F, 1, 1, 1, SET, "Remove and return random members"},
    {"scard", 2, kv_len_cmd, F, 1, 1, 1, SET, "Number of members in a set"},
    {"sismember", 3, kv_hexists_cmd, F, 1, 1, 1, SET, "Whether a member is in a set"},
    {"smembers", 2, kv_smembers_cmd, 0, 1, 1, 1, SET, "Every member of a set"},
    {"zadd", -4, kv_zadd_cmd, W | F, 1, 1, 1, ZST, "Add members with scores (no options)"},
    {"zrem", -3, kv_srem_cmd, W | F, 1, 1, 1, ZST, "Remove members from a sorted set"},
    {"zscore", 3, kv_zscore_cmd, F, 1, 1, 1, ZST, "Score of a member"},
    {"zcard", 2, kv_len_cmd, F, 1, 1, 1, ZST, "Number of members in a sorted set"},
    {"zpopmin", -2, kv_zpopmin_cmd, W, 1, 1, 1, ZST, "Remove and return the lowest scores"},
    {"multi", 1, kv_multi_cmd, TX | F, 0, 0, 0, TRX, "Start a transaction"},
    {"exec", 1, kv_exec_cmd, TX, 0, 0, 0, TRX, "Run the queued commands atomically"},
    {"discard", 1, kv_discard_cmd, TX | F, 0, 0, 0, TRX, "Drop the queued commands"},
    {"watch", -2, kv_watch_cmd, TX | F, 1, -1, 1, TRX, "Make EXEC fail if these keys change"},
    {"unwatch", 1, kv_unwatch_cmd, TX | F, 0, 0, 0, TRX, "Forget the watched keys"},
    {"ping", -1, kv_ping, F, 0, 0, 0, CON, "Ping the server"},
    {"echo", 2, kv_echo, F, 0, 0, 0, CON, "Echo the argument"},
    {"quit", -1, kv_quit_cmd, TX | NA | F, 0, 0, 0, CON, "Close the connection"},
    {"reset", 1, kv_reset_cmd, TX | NA | F, 0, 0, 0, CON, "Reset the connection's state"},
    {"select", 2, kv_select_cmd, F, 0, 0, 0, CON, "Select database 0 (the only one)"},
    {"auth", -2, kv_auth_cmd, NA | F | KV_F_NOMULTI, 0, 0, 0, CON, "Authenticate"},
    {"hello", -1, kv_hello_cmd, NA | F | KV_F_NOMULTI, 0, 0, 0, CON,
     "Handshake: protocol 2 or 3, AUTH, SETNAME"},
    {"client", -2, kv_client_cmd, 0, 0, 0, 0, CON,
     "CLIENT SETNAME, GETNAME, ID, INFO, LIST, SETINFO"},
    {"info", -1, kv_info_cmd, 0, 0, 0, 0, SRV, "Server information and statistics"},
    {"config", -2, kv_config_cmd, 0, 0, 0, 0, SRV, "CONFIG GET of a few parameters"},
    {"command", -1, kv_command_cmd, 0, 0, 0, 0, SRV, "COMMAND, COUNT, INFO, DOCS, LIST"},
};

#undef W
#undef F
#undef TX
#undef NA

#define KV_NCMDS (sizeof(kv_cmds) / sizeof(kv_cmds[0]))
#define KV_INDEX 256 /* open addressing over the names: a power of two */

static uint8_t kv_index[KV_INDEX]; /* 1 + position in kv_cmds, 0 = empty */
static pthread_once_t kv_index_once = PTHREAD_ONCE_INIT;

/* FNV-1a of the lower-cased name. */
static uint32_t kv_name_hash(const uint8_t *p, size_t n)
{
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < n; i++)
                h = (h ^ (uint8_t)(p[i] | 0x20)) * 16777619u;
        return h;
}

static void kv_index_build(void)
{
        _Static_assert(KV_NCMDS < 255 && KV_NCMDS * 2 < KV_INDEX, "command index too small");
        for (size_t i = 0; i < KV_NCMDS; i++) {
                const char *n = kv_cmds[i].name;
                uint32_t h = kv_name_hash((const uint8_t *)n, strlen(n));
                while (kv_index[h & (KV_INDEX - 1)])
                        h++;
                kv_index[h & (KV_INDEX - 1)] = (uint8_t)(i + 1);
        }
}

static const struct kv_cmd *kv_lookup(const struct tern_resp_arg *name)
{
        if (name->len > 16)
                return NULL;
        for (uint32_t h = kv_name_hash(name->data, name->len);; h++) {
                uint8_t i = kv_index[h & (KV_INDEX - 1)];
                if (!i)
                        return NULL;
                if (kv_arg_is(name, kv_cmds[i - 1].name))
                        return &kv_cmds[i - 1];
        }
}

static int kv_flag_words(struct kv_ctx *x, int flags)
{
        const char *words[4];
        int n = 0;
        words[n++] = flags & KV_F_WRITE ? "write" : "readonly";
        if (flags & KV_F_FAST)
                words[n++] = "fast";
        if (flags & KV_F_NOAUTH)
                words[n++] = "no_auth";
        int err = tern_resp_put_array(x->out, (size_t)n);
        for (int i = 0; i < n && !err; i++)
                err = tern_resp_put_simple(x->out, words[i]);
        return err;
}

/* COMMAND's entry for @c, in Redis 7's ten-element form. */
static int kv_command_info(struct kv_ctx *x, const struct kv_cmd *c)
{
        int err = tern_resp_put_array(x->out, 10);
        err = err ?: kv_bulk_str(x, c->name);
        err = err ?: kv_int(x, c->arity);
        err = err ?: kv_flag_words(x, c->flags);
        err = err ?: kv_int(x, c->first);
        err = err ?: kv_int(x, c->last);
        err = err ?: kv_int(x, c->step);
        for (int i = 0; i < 4 && !err; i++) /* ACL categories, tips, key specs, subcommands */
                err = tern_resp_put_array(x->out, 0);
        return err;
}

static int kv_command_docs(struct kv_ctx *x, const struct kv_cmd *c)
{
        int err = kv_bulk_str(x, c->name);
        err = err ?: kv_put_map(&x->r, 3);
        err = err ?: kv_bulk_str(x, "summary");
        err = err ?: kv_bulk_str(x, c->summary);
        err = err ?: kv_bulk_str(x, "since");
        err = err ?: kv_bulk_str(x, "1.0.0");
        err = err ?: kv_bulk_str(x, "group");
        err = err ?: kv_bulk_str(x, c->group);
        return err;
}

static int kv_command_cmd(struct kv_ctx *x)
{
        int err;
        if (x->argc == 1) {
                err = tern_resp_put_array(x->out, KV_NCMDS);
                for (size_t i = 0; i < KV_NCMDS && !err; i++)
                        err = kv_command_info(x, &kv_cmds[i]);
                return err;
        }
        const struct tern_resp_arg *sub = &x->argv[1];
        if (kv_arg_is(sub, "count") && x->argc == 2)
                return kv_int(x, (int64_t)KV_NCMDS);
        if (kv_arg_is(sub, "list") && x->argc == 2) {
                err = tern_resp_put_array(x->out, KV_NCMDS);
                for (size_t i = 0; i < KV_NCMDS && !err; i++)
                        err = kv_bulk_str(x, kv_cmds[i].name);
                return err;
        }
        if (kv_arg_is(sub, "info")) {
                err = tern_resp_put_array(x->out, (size_t)x->argc - 2);
                for (int i = 2; i < x->argc && !err; i++) {
                        const struct kv_cmd *c = kv_lookup(&x->argv[i]);
                        err = c ? kv_command_info(x, c) : kv_put_null_array(&x->r);
                }
                return err;
        }
        if (kv_arg_is(sub, "docs")) {
                size_t n = 0;
                for (int i = 2; i < x->argc; i++)
                        n += kv_lookup(&x->argv[i]) != NULL;
                err = kv_put_map(&x->r, x->argc == 2 ? KV_NCMDS : n);
                for (size_t i = 0; x->argc == 2 && i < KV_NCMDS && !err; i++)
                        err = kv_command_docs(x, &kv_cmds[i]);
                for (int i = 2; i < x->argc && !err; i++) {
                        const struct kv_cmd *c = kv_lookup(&x->argv[i]);
                        if (c)
                                err = kv_command_docs(x, c);
                }
                return err;
        }
        return kv_err(x, "ERR tern-kv supports COMMAND, COMMAND COUNT, INFO, DOCS and LIST");
}

/* Runs a command found in the table, counting it. */
static int kv_run(struct kv_ctx *x, const struct kv_cmd *cmd)
{
        __atomic_store_n(&x->w->commands, x->w->commands + 1, __ATOMIC_RELAXED);
        if (x->cl->last_cmd != cmd->name)
                __atomic_store_n(&x->cl->last_cmd, cmd->name, __ATOMIC_RELAXED);
        return cmd->run(x);
}

static int kv_dispatch(struct kv_ctx *x)
{
        const struct kv_cmd *cmd = kv_lookup(&x->argv[0]);
        struct kv_client *cl = x->cl;

        if (!cmd) {
                if (cl->in_multi)
                        cl->multi_dirty = true;
                /* As Redis does, at most 128 bytes of a name we did not know. */
                int n = x->argv[0].len > 128 ? 128 : (int)x->argv[0].len;
                return tern_resp_put_errorf(x->out, "ERR unknown command '%.*s'", n,
                                            (const char *)x->argv[0].data);
        }
        if ((cmd->arity > 0 && x->argc != cmd->arity) || x->argc < -cmd->arity) {
                if (cl->in_multi)
                        cl->multi_dirty = true;
                return tern_resp_put_errorf(
                    x->out, "ERR wrong number of arguments for '%s' command", cmd->name);
        }
        if (!cl->authed && !(cmd->flags & KV_F_NOAUTH)) {
                if (cl->in_multi)
                        cl->multi_dirty = true;
                return kv_err(x, "NOAUTH Authentication required.");
        }
        if (cl->in_multi && !(cmd->flags & KV_F_TX)) {
                if (cmd->flags & KV_F_NOMULTI) {
                        cl->multi_dirty = true;
                        return kv_err(x, "ERR Command not allowed inside a transaction");
                }
                return kv_queue(x);
        }
        return kv_run(x, cmd);
}

/* ---- worker state ---- */

static void kv_tick(struct tern_timer *t, void *arg)
{
        struct kv_worker *w = arg;
        kv_store_tick(w->app->store);
}

static struct kv_worker *kv_worker_new(struct kv_app *app)
{
        struct kv_worker *w = calloc(1, sizeof(*w));
        if (!w)
                return NULL;
        w->app = app;
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
        struct kv_app *app = user;
        struct kv_worker *w = kv_worker_new(app);
        kv_self = w;
        if (!w) {
                tern_error("tern-kv: worker %d: out of memory; its connections will be closed",
                           tern_loop_index(loop));
                return;
        }
        w->loop = loop;
        pthread_mutex_lock(&app->lock);
        w->next = app->workers;
        app->workers = w;
        pthread_mutex_unlock(&app->lock);
        /* Active expiry: memory held by expired keys comes back without reads. */
        tern_timer_init(&w->tick, kv_tick, w);
        tern_loop_timer_start(loop, &w->tick, KV_TICK_MS, KV_TICK_MS);
}

static void kv_worker_stop(tern_loop *loop, void *user)
{
        struct kv_app *app = user;
        struct kv_worker *w = kv_self;
        kv_self = NULL;
        if (!w)
                return;
        tern_loop_timer_stop(loop, &w->tick);
        pthread_mutex_lock(&app->lock);
        for (struct kv_worker **pp = &app->workers; *pp; pp = &(*pp)->next)
                if (*pp == w) {
                        *pp = w->next;
                        break;
                }
        pthread_mutex_unlock(&app->lock);
        tern_buf_free(&w->reply);
        free(w->argv);
        free(w->hash);
        free(w);
}

/* ---- connection callbacks ---- */

static void kv_on_open(tern_conn *c)
{
        struct kv_app *app = tern_server_user(tern_conn_server(c));
        /* Redis's own words, which its clients know. */
        if (!app_conn_limit_enter(&app->limit, c, "-ERR max number of clients reached\r\n"))
                return; /* no client data: its on_close does nothing */
        struct kv_client *cl = calloc(1, sizeof(*cl));
        if (!cl) {
                app_conn_limit_leave(&app->limit);
                tern_warn("tern-kv: fd %d: out of memory for a new client; closing",
                          tern_conn_fd(c));
                tern_conn_abort(c);
                return;
        }
        cl->id = __atomic_add_fetch(&app->next_id, 1, __ATOMIC_RELAXED);
        cl->since_ms = kv_now_ms();
        cl->fd = tern_conn_fd(c);
        cl->proto = 2;
        cl->authed = app->requirepass == NULL;
        tern_buf_init(&cl->queue);
        tern_buf_init(&cl->watch);
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char host[INET6_ADDRSTRLEN] = "?";
        unsigned port = 0;
        if (tern_conn_peer(c, (struct sockaddr *)&ss, &len) == 0) {
                if (ss.ss_family == AF_INET) {
                        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
                        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
                        port = ntohs(a->sin_port);
                } else if (ss.ss_family == AF_INET6) {
                        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
                        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
                        port = ntohs(a->sin6_port);
                }
        }
        snprintf(cl->addr, sizeof(cl->addr), "%s:%u", host, port);
        __atomic_add_fetch(&app->connections, 1, __ATOMIC_RELAXED);
        pthread_mutex_lock(&app->lock);
        cl->next = app->clients;
        if (cl->next)
                cl->next->prev = cl;
        app->clients = cl;
        app->nclients++;
        pthread_mutex_unlock(&app->lock);
        tern_conn_set_data(c, cl);
}

static void kv_on_close(tern_conn *c, enum tern_close_reason reason, int err)
{
        struct kv_app *app = tern_server_user(tern_conn_server(c));
        struct kv_client *cl = tern_conn_data(c);
        if (!cl)
                return;
        tern_conn_set_data(c, NULL);
        pthread_mutex_lock(&app->lock);
        if (cl->prev)
                cl->prev->next = cl->next;
        else
                app->clients = cl->next;
        if (cl->next)
                cl->next->prev = cl->prev;
        app->nclients--;
        pthread_mutex_unlock(&app->lock);
        kv_tx_reset(cl);
        free(cl);
        app_conn_limit_leave(&app->limit);
}

static void kv_on_frame(tern_conn *c, const struct tern_frame *f)
{
        struct kv_app *app = tern_server_user(tern_conn_server(c));
        struct kv_worker *w = kv_self;
        struct kv_client *cl = tern_conn_data(c);

        if (!cl)
                return; /* refused over --max-conns, or out of memory: it is closing */
        if (!w) {
                tern_conn_abort(c);
                return;
        }
        int argc = tern_resp_args(f, w->argv, app->resp.max_args);
        struct kv_ctx x = {
            .app = app,
            .st = app->store,
            .w = w,
            .cl = cl,
            .c = c,
            .argv = w->argv,
            .argc = argc,
            .out = &w->reply,
            .r = {.buf = &w->reply, .proto = cl->proto, .max = KV_MAX_REPLY},
        };
        int err;
        /* The decoder already enforced max_args: this is a safety net. */
        if (argc <= 0 || (uint32_t)argc > app->resp.max_args)
                err = tern_resp_put_error(&w->reply, "ERR Protocol error: bad command");
        else
                err = kv_dispatch(&x);
        if (err) {
                tern_warn("tern-kv: client %s (fd %d): cannot build a reply: %s; closing", cl->addr,
                          tern_conn_fd(c), tern_strerror(err));
                tern_buf_consume(&w->reply, tern_buf_len(&w->reply));
                tern_conn_abort(c);
                return;
        }
        /* Every command replies; a client left waiting would hang for good,
         * so a command that did not is a bug reported to both sides. */
        if (tern_buf_empty(&w->reply)) {
                tern_error("tern-kv: '%.*s' built no reply",
                           (int)(x.argv[0].len > 32 ? 32 : x.argv[0].len),
                           (const char *)x.argv[0].data);
                tern_resp_put_error(&w->reply, "ERR internal error: no reply");
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
 * first the client learns why, in Redis's words, and the log names it. */
static void kv_on_codec_error(tern_conn *c, int err)
{
        struct kv_client *cl = tern_conn_data(c);
        const char *why = kv_why ? kv_why : tern_strerror(err);
        char line[128];
        int n = snprintf(line, sizeof(line), "-ERR Protocol error: %s\r\n", why);
        kv_why = NULL;
        /* Any client can cause this as often as it reconnects. */
        static struct tern_log_limit limit;
        tern_log_limited(&limit, TERN_LOG_INFO,
                         "tern-kv: client %s (fd %d): protocol error: %s; closing",
                         cl ? cl->addr : "?", tern_conn_fd(c), why);
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
    .on_open = kv_on_open,
    .on_frame = kv_on_frame,
    .on_codec_error = kv_on_codec_error,
    .on_high_water = kv_on_high_water,
    .on_low_water = kv_on_low_water,
    .on_close = kv_on_close,
};

/* ---- the app ---- */

int kv_app_init(struct kv_app *app, const struct tern_resp_config *resp, size_t max_memory)
{
        memset(app, 0, sizeof(*app));
        app->limit.prog = "tern-kv";
        pthread_once(&kv_index_once, kv_index_build);
        if (resp)
                app->resp = *resp;
        else
                tern_resp_config_init(&app->resp);
        if (tern_resp_config_check(&app->resp))
                return -EINVAL;
        app->store = kv_store_new(max_memory);
        if (!app->store)
                return -ENOMEM;
        pthread_mutex_init(&app->lock, NULL);
        app->started_ms = kv_now_ms();
        return 0;
}

void kv_app_fini(struct kv_app *app)
{
        kv_store_free(app->store);
        app->store = NULL;
        pthread_mutex_destroy(&app->lock);
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
