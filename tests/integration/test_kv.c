/*
 * tern-kv over loopback, with a raw RESP client: exact reply bytes for every
 * command, pipelines, concurrency across workers, hostile input, limits.
 * Plus the store on its own (hash, atomicity, memory accounting), and
 * redis-cli against tern-kv when it is installed.
 *
 * The app's sources are compiled into this test (not main.c), so the server
 * runs in-process and teardown can prove nothing is left alive.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../apps/common/cli.c"
#include "../../apps/kv/kv.c"
#include "../../apps/kv/store.c"
#include "../../apps/kv/obj.c"
#include "srvutil.h"
#include "testutil.h"

/* ---- fixture ---- */

struct kv_fixture {
        struct kv_app app;
        tern_server *s;
        uint16_t port;
};

static void kv_start(struct kv_fixture *k, int workers, const struct tern_resp_config *cfg,
                     size_t max_memory)
{
        cr_assert_eq(kv_app_init(&k->app, cfg, max_memory), 0);
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = workers;
        kv_app_apply(&o, &k->app);
        k->s = su_start(&o);
        k->port = tern_server_port(k->s);
}

/* Stops the server (asserting no connection, buffer or timer is left),
 * checks that no replaced or deleted value was leaked, then frees the store
 * and every value in it. */
static void kv_stop(struct kv_fixture *k)
{
        struct kv_store_stats ss;
        su_stop(k->s);
        kv_store_stats(k->app.store, &ss);
        cr_assert_eq(ss.entries, ss.keys, "%zu value allocations for %zu keys", ss.entries,
                     ss.keys);
        kv_app_fini(&k->app);
}

static int kv_connect(const struct kv_fixture *k)
{
        int fd = tu_connect(k->port, false);
        cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
        return fd;
}

/* ---- raw client ---- */

static void put(int fd, const void *data, size_t len)
{
        cr_assert_eq(tu_write_all(fd, data, len), 0, "write failed");
}

static void puts_(int fd, const char *s)
{
        put(fd, s, strlen(s));
}

static void expect_n(int fd, const void *want, size_t len)
{
        char *got = malloc(len + 1);
        int r = tu_read_exact(fd, got, len, 10000);
        cr_assert_eq(r, 0, "reading %zu reply bytes: %s (want '%.*s')", len, strerror(-r),
                     (int)(len > 200 ? 200 : len), (const char *)want);
        cr_assert(memcmp(got, want, len) == 0, "reply '%.*s', want '%.*s'",
                  (int)(len > 200 ? 200 : len), got, (int)(len > 200 ? 200 : len),
                  (const char *)want);
        free(got);
}

static void expect(int fd, const char *want)
{
        expect_n(fd, want, strlen(want));
}

/* Sends @req and checks that exactly @want comes back. */
static void rt(int fd, const char *req, const char *want)
{
        puts_(fd, req);
        expect(fd, want);
}

/* Appends a RESP array of the @argc C strings to @b. */
static void cmd_buf(struct tern_buf *b, int argc, const char *const *argv)
{
        tern_resp_put_array(b, (size_t)argc);
        for (int i = 0; i < argc; i++)
                tern_resp_put_bulk(b, argv[i], strlen(argv[i]));
}

/* Sends one command in array form, as every client library does. */
static void cmdv(int fd, int argc, const char *const *argv)
{
        struct tern_buf b = TERN_BUF_INIT;
        cmd_buf(&b, argc, argv);
        put(fd, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_free(&b);
}

#define CMD(fd, ...)                                                                               \
        cmdv((fd), sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *),                   \
             (const char *[]){__VA_ARGS__})

/* A buffered reader of reply lines, for replies of unknown length. */
struct reader {
        int fd;
        char buf[4096];
        size_t off, len;
};

/*
 * Reads one CRLF-terminated line into @line (terminator dropped). Returns 0,
 * or -1 on timeout, end of stream or an overlong line. Asserts nothing, so
 * client threads may call it.
 */
static int read_line_try(struct reader *r, char *line, size_t cap)
{
        size_t n = 0;
        for (;;) {
                if (r->off == r->len) {
                        struct pollfd p = {.fd = r->fd, .events = POLLIN};
                        if (poll(&p, 1, 10000) != 1)
                                return -1;
                        ssize_t got = recv(r->fd, r->buf, sizeof(r->buf), 0);
                        if (got <= 0)
                                return -1;
                        r->off = 0;
                        r->len = (size_t)got;
                }
                char ch = r->buf[r->off++];
                if (ch == '\n' && n > 0 && line[n - 1] == '\r') {
                        line[n - 1] = '\0';
                        return 0;
                }
                if (n + 1 >= cap)
                        return -1;
                line[n++] = ch;
        }
}

static void read_line(struct reader *r, char *line, size_t cap)
{
        cr_assert_eq(read_line_try(r, line, cap), 0, "no complete reply line within 10 s");
}

/* ---- every command ---- */

Test(kv, ping_and_echo)
{
        struct kv_fixture k;
        kv_start(&k, 1, NULL, 0);
        int fd = kv_connect(&k);

        CMD(fd, "PING");
        expect(fd, "+PONG\r\n");
        CMD(fd, "ping", "hello there");
        expect(fd, "$11\r\nhello there\r\n");
        CMD(fd, "PING", "a", "b");
        expect(fd, "-ERR wrong number of arguments for 'ping' command\r\n");
        CMD(fd, "ECHO", "");
        expect(fd, "$0\r\n\r\n");
        CMD(fd, "EcHo", "x y");
        expect(fd, "$3\r\nx y\r\n");
        CMD(fd, "ECHO");
        expect(fd, "-ERR wrong number of arguments for 'echo' command\r\n");
        CMD(fd, "ECHO", "a", "b");
        expect(fd, "-ERR wrong number of arguments for 'echo' command\r\n");
        close(fd);
        kv_stop(&k);
}

Test(kv, set_get_and_conditions)
{
        struct kv_fixture k;
        kv_start(&k, 1, NULL, 0);
        int fd = kv_connect(&k);

        CMD(fd, "GET", "k");
        expect(fd, "$-1\r\n");
        CMD(fd, "SET", "k", "v1");
        expect(fd, "+OK\r\n");
        CMD(fd, "GET", "k");
        expect(fd, "$2\r\nv1\r\n");
        CMD(fd, "SET", "k", "longer value");
        expect(fd, "+OK\r\n");
        CMD(fd, "get", "k");
        expect(fd, "$12\r\nlonger value\r\n");
        CMD(fd, "SET", "k", "");
        expect(fd, "+OK\r\n");
        CMD(fd, "GET", "k");
        expect(fd, "$0\r\n\r\n");

        CMD(fd, "SET", "k", "nx", "NX");
        expect(fd, "$-1\r\n");
        CMD(fd, "SET", "n", "1", "nx");
        expect(fd, "+OK\r\n");
        CMD(fd, "SET", "k", "xx", "XX");
        expect(fd, "+OK\r\n");
        CMD(fd, "GET", "k");
        expect(fd, "$2\r\nxx\r\n");
        CMD(fd, "SET", "absent", "v", "XX");
        expect(fd, "$-1\r\n");
        CMD(fd, "GET", "absent");
        expect(fd, "$-1\r\n");
        CMD(fd, "SET", "k", "v", "NX", "XX");
        expect(fd, "-ERR syntax error\r\n");
        CMD(fd, "SET", "k", "v", "EX", "0");
        expect(fd, "-ERR invalid expire time in 'set' command\r\n");
        CMD(fd, "SET", "k", "v", "EX", "10", "PX", "10");
        expect(fd, "-ERR syntax error\r\n");
        CMD(fd, "SET", "k");
        expect(fd, "-ERR wrong number of arguments for 'set' command\r\n");
        CMD(fd, "GET");
        expect(fd, "-ERR wrong number of arguments for 'get' command\r\n");
        CMD(fd, "GET", "a", "b");
        expect(fd, "-ERR wrong number of arguments for 'get' command\r\n");

        /* Keys and values are binary-safe. */
        static const char key[] = "k\r\n\0ey", val[] = "\0\r\n$5\r\n";
        struct tern_buf b = TERN_BUF_INIT;
        tern_resp_put_array(&b, 3);
        tern_resp_put_bulk(&b, "SET", 3);
        tern_resp_put_bulk(&b, key, sizeof(key) - 1);
        tern_resp_put_bulk(&b, val, sizeof(val) - 1);
        tern_resp_put_array(&b, 2);
        tern_resp_put_bulk(&b, "GET", 3);
        tern_resp_put_bulk(&b, key, sizeof(key) - 1);
        put(fd, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_free(&b);
        expect(fd, "+OK\r\n");
        static const char want[] = "$7\r\n\0\r\n$5\r\n\r\n";
        expect_n(fd, want, sizeof(want) - 1);
        close(fd);
        kv_stop(&k);
}

Test(kv, del_exists_dbsize_flushall)
{
        struct kv_fixture k;
        kv_start(&k, 2, NULL, 0);
        int fd = kv_connect(&k);

        CMD(fd, "MSET", "a", "1", "b", "2", "c", "3");
        expect(fd, "+OK\r\n");
        CMD(fd, "DBSIZE");
        expect(fd, ":3\r\n");
        CMD(fd, "EXISTS", "a", "a", "zz", "b");
        expect(fd, ":3\r\n");
        CMD(fd, "DEL", "a", "zz", "a");
        expect(fd, ":1\r\n");
        CMD(fd, "EXISTS", "a");
        expect(fd, ":0\r\n");
        CMD(fd, "DEL");
        expect(fd, "-ERR wrong number of arguments for 'del' command\r\n");
        CMD(fd, "EXISTS");
        expect(fd, "-ERR wrong number of arguments for 'exists' command\r\n");
        CMD(fd, "DBSIZE", "x");
        expect(fd, "-ERR wrong number of arguments for 'dbsize' command\r\n");
        CMD(fd, "DBSIZE");
        expect(fd, ":2\r\n");
        CMD(fd, "FLUSHALL");
        expect(fd, "+OK\r\n");
        CMD(fd, "DBSIZE");
        expect(fd, ":0\r\n");
        CMD(fd, "GET", "b");
        expect(fd, "$-1\r\n");
        CMD(fd, "SET", "x", "1");
        expect(fd, "+OK\r\n");
        CMD(fd, "flushall", "async");
        expect(fd, "+OK\r\n");
        CMD(fd, "FLUSHALL", "SYNC");
        expect(fd, "+OK\r\n");
        CMD(fd, "FLUSHALL", "later");
        expect(fd, "-ERR syntax error\r\n");
        CMD(fd, "DBSIZE");
        expect(fd, ":0\r\n");
        close(fd);
        kv_stop(&k);
}

Test(kv, incr_rules)
{
        struct kv_fixture k;
        kv_start(&k, 1, NULL, 0);
        int fd = kv_connect(&k);

        CMD(fd, "INCR", "n");
        expect(fd, ":1\r\n");
        CMD(fd, "INCR", "n");
        expect(fd, ":2\r\n");
        CMD(fd, "GET", "n");
        expect(fd, "$1\r\n2\r\n");
        CMD(fd, "SET", "neg", "-5");
        expect(fd, "+OK\r\n");
        CMD(fd, "INCR", "neg");
        expect(fd, ":-4\r\n");
        /* A short value grows into a longer number. */
        CMD(fd, "SET", "nine", "9");
        expect(fd, "+OK\r\n");
        CMD(fd, "INCR", "nine");
        expect(fd, ":10\r\n");
        CMD(fd, "GET", "nine");
        expect(fd, "$2\r\n10\r\n");
        CMD(fd, "SET", "max", "9223372036854775807");
        expect(fd, "+OK\r\n");
        CMD(fd, "INCR", "max");
        expect(fd, "-ERR increment or decrement would overflow\r\n");
        CMD(fd, "SET", "min", "-9223372036854775808");
        expect(fd, "+OK\r\n");
        CMD(fd, "INCR", "min");
        expect(fd, ":-9223372036854775807\r\n");

        const char *bad[] = {"abc",
                             "",
                             "007",
                             "-0",
                             " 1",
                             "1 ",
                             "+1",
                             "1.5",
                             "9223372036854775808",
                             "-9223372036854775809",
                             "99999999999999999999999"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                CMD(fd, "SET", "s", bad[i]);
                expect(fd, "+OK\r\n");
                CMD(fd, "INCR", "s");
                expect(fd, "-ERR value is not an integer or out of range\r\n");
        }
        CMD(fd, "GET", "s");
        expect(fd, "$23\r\n99999999999999999999999\r\n");
        CMD(fd, "INCR");
        expect(fd, "-ERR wrong number of arguments for 'incr' command\r\n");
        close(fd);
        kv_stop(&k);
}

Test(kv, mget_mset)
{
        struct kv_fixture k;
        kv_start(&k, 1, NULL, 0);
        int fd = kv_connect(&k);

        CMD(fd, "MSET", "a", "1", "b", "22", "a", "333");
        expect(fd, "+OK\r\n");
        CMD(fd, "MGET", "a", "b", "c", "a");
        expect(fd, "*4\r\n$3\r\n333\r\n$2\r\n22\r\n$-1\r\n$3\r\n333\r\n");
        CMD(fd, "MGET", "none");
        expect(fd, "*1\r\n$-1\r\n");
        CMD(fd, "MSET", "a");
        expect(fd, "-ERR wrong number of arguments for 'mset' command\r\n");
        CMD(fd, "MSET", "a", "1", "b");
        expect(fd, "-ERR wrong number of arguments for 'mset' command\r\n");
        CMD(fd, "MGET");
        expect(fd, "-ERR wrong number of arguments for 'mget' command\r\n");
        close(fd);
        kv_stop(&k);
}

Test(kv, unknown_commands_and_config)
{
        struct kv_fixture k;
        kv_start(&k, 1, NULL, 0);
        int fd = kv_connect(&k);

        CMD(fd, "FOO", "bar");
        expect(fd, "-ERR unknown command 'FOO'\r\n");
        CMD(fd, "COMMAND", "COUNT");
        cr_assert_eq(tu_read_exact(fd, (char[1]){0}, 1, 10000), 0);
        struct reader rd = {.fd = fd};
        char line[64];
        cr_assert_eq(read_line_try(&rd, line, sizeof(line)), 0);
        cr_assert_gt(atoi(line), 70, "COMMAND COUNT says %s", line);
        /* A name from the client cannot break the reply line. */
        CMD(fd, "X\r\n+OK");
        expect(fd, "-ERR unknown command 'X  +OK'\r\n");
        char longname[300];
        memset(longname, 'z', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        CMD(fd, longname);
        char want[200];
        snprintf(want, sizeof(want), "-ERR unknown command '%.128s'\r\n", longname);
        expect(fd, want);

        CMD(fd, "CONFIG", "GET", "save");
        expect(fd, "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
        CMD(fd, "config", "get", "appendonly", "nosuch", "SAVE");
        expect(fd, "*4\r\n$10\r\nappendonly\r\n$2\r\nno\r\n$4\r\nsave\r\n$0\r\n\r\n");
        CMD(fd, "CONFIG", "GET", "maxmemory");
        expect(fd, "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n");
        CMD(fd, "CONFIG", "GET", "nosuch");
        expect(fd, "*0\r\n");
        CMD(fd, "CONFIG", "SET", "save", "");
        expect(fd, "-ERR tern-kv supports only CONFIG GET <parameter>\r\n");
        CMD(fd, "CONFIG");
        expect(fd, "-ERR wrong number of arguments for 'config' command\r\n");
        /* Still in sync after all of those. */
        CMD(fd, "PING");
        expect(fd, "+PONG\r\n");
        close(fd);
        kv_stop(&k);
}

Test(kv, inline_commands)
{
        struct kv_fixture k;
        kv_start(&k, 1, NULL, 0);
        int fd = kv_connect(&k);

        rt(fd, "PING\r\n", "+PONG\r\n");
        rt(fd, "set  greeting\thello\n", "+OK\r\n");
        rt(fd, "get greeting\r\n", "$5\r\nhello\r\n");
        rt(fd, "\r\n\r\nexists greeting nope\r\n", ":1\r\n");
        rt(fd, "incr c\nincr c\nmget c greeting\n", ":1\r\n:2\r\n*2\r\n$1\r\n2\r\n$5\r\nhello\r\n");
        close(fd);
        kv_stop(&k);
}

Test(kv, quit_replies_then_closes)
{
        struct kv_fixture k;
        kv_start(&k, 1, NULL, 0);
        int fd = kv_connect(&k);

        /* Commands after QUIT in the same write are not run. */
        rt(fd, "SET a 1\r\nQUIT\r\nSET a 2\r\n", "+OK\r\n+OK\r\n");
        cr_assert_eq(tu_wait_eof(fd, 5000), 0, "QUIT must close the connection");
        close(fd);
        fd = kv_connect(&k);
        rt(fd, "GET a\r\n", "$1\r\n1\r\n");
        close(fd);
        kv_stop(&k);
}

/* ---- pipelines ---- */

Test(kv, pipeline_of_100_commands_in_one_write)
{
        struct kv_fixture k;
        kv_start(&k, 1, NULL, 0);
        int fd = kv_connect(&k);
        struct tern_buf req = TERN_BUF_INIT, want = TERN_BUF_INIT;
        char key[32], val[32];

        for (int i = 0; i < 100; i++) {
                snprintf(key, sizeof(key), "key:%d", i / 4);
                snprintf(val, sizeof(val), "value-%d", i);
                switch (i % 4) {
                case 0:
                        cmd_buf(&req, 3, (const char *[]){"SET", key, val});
                        tern_resp_put_simple(&want, "OK");
                        break;
                case 1:
                        cmd_buf(&req, 2, (const char *[]){"GET", key});
                        snprintf(val, sizeof(val), "value-%d", i - 1);
                        tern_resp_put_bulk(&want, val, strlen(val));
                        break;
                case 2:
                        cmd_buf(&req, 2, (const char *[]){"INCR", "counter"});
                        tern_resp_put_int(&want, i / 4 + 1);
                        break;
                default:
                        cmd_buf(&req, 1, (const char *[]){"PING"});
                        tern_resp_put_simple(&want, "PONG");
                        break;
                }
        }
        put(fd, tern_buf_data(&req), tern_buf_len(&req));
        expect_n(fd, tern_buf_data(&want), tern_buf_len(&want));

        struct tern_stats st;
        tern_server_stats(k.s, &st, NULL);
        /* ~2.7 KB arrive in one read, at worst a few: one write each. */
        cr_assert_leq(st.writes, 3, "%lu writes for 100 pipelined commands",
                      (unsigned long)st.writes);
        tern_buf_free(&req);
        tern_buf_free(&want);
        close(fd);
        kv_stop(&k);
}

/* Replies much larger than the socket buffers: queued, then all delivered
 * in order, and the connection pauses reading instead of growing without
 * bound. */
Test(kv, large_values_pipelined)
{
        struct kv_fixture k;
        kv_start(&k, 2, NULL, 0);
        int fd = kv_connect(&k);
        size_t vlen = 1u << 20; /* the default max_bulk */
        uint8_t *v = malloc(vlen);
        struct tern_buf b = TERN_BUF_INIT;

        tu_pattern(v, vlen, 7, 0);
        tern_resp_put_array(&b, 3);
        tern_resp_put_bulk(&b, "SET", 3);
        tern_resp_put_bulk(&b, "big", 3);
        tern_resp_put_bulk(&b, v, vlen);
        put(fd, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_consume(&b, tern_buf_len(&b));
        expect(fd, "+OK\r\n");

        enum { GETS = 12 };
        for (int i = 0; i < GETS; i++)
                cmd_buf(&b, 2, (const char *[]){"GET", "big"});
        put(fd, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_consume(&b, tern_buf_len(&b));
        tern_resp_put_bulk(&b, v, vlen);
        for (int i = 0; i < GETS; i++)
                expect_n(fd, tern_buf_data(&b), tern_buf_len(&b));
        CMD(fd, "PING");
        expect(fd, "+PONG\r\n");
        tern_buf_free(&b);
        free(v);
        close(fd);
        kv_stop(&k);
}

/*
 * One MGET naming a 1 MiB value 100 times asks for a 100 MiB reply from a
 * 1.4 KiB request. It is refused before anything is allocated for it (the
 * buffer peak stays far below the reply's size), the connection stays
 * usable, and an MGET just under the cap still works.
 */
Test(kv, mget_reply_over_the_cap_is_refused_before_it_is_built)
{
        struct kv_fixture k;
        kv_start(&k, 1, NULL, 0);
        int fd = kv_connect(&k);
        size_t vlen = 1u << 20;
        uint8_t *v = malloc(vlen);
        struct tern_buf b = TERN_BUF_INIT;

        tu_pattern(v, vlen, 3, 0);
        tern_resp_put_array(&b, 3);
        tern_resp_put_bulk(&b, "SET", 3);
        tern_resp_put_bulk(&b, "big", 3);
        tern_resp_put_bulk(&b, v, vlen);
        put(fd, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_consume(&b, tern_buf_len(&b));
        expect(fd, "+OK\r\n");
        tern_buf_free(&b);

        enum { N = 100 };
        tern_resp_put_array(&b, N + 1);
        tern_resp_put_bulk(&b, "MGET", 4);
        for (int i = 0; i < N; i++)
                tern_resp_put_bulk(&b, "big", 3);
        put(fd, tern_buf_data(&b), tern_buf_len(&b));
        tern_buf_free(&b);
        expect(fd, "-ERR reply over 64 MiB, ask for fewer keys\r\n");
        struct tern_live_counts lc;
        tern_live_counts(&lc);
        cr_assert_lt(lc.buf_bytes_peak, 16L << 20, "buffers peaked at %ld bytes",
                     lc.buf_bytes_peak);
        CMD(fd, "PING");
        expect(fd, "+PONG\r\n");

        /* 8 copies (8 MiB) are under the cap: all of them arrive. */
        CMD(fd, "MGET", "big", "big", "big", "big", "big", "big", "big", "big");
        expect(fd, "*8\r\n");
        tern_resp_put_bulk(&b, v, vlen);
        for (int i = 0; i < 8; i++)
                expect_n(fd, tern_buf_data(&b), tern_buf_len(&b));
        CMD(fd, "PING");
        expect(fd, "+PONG\r\n");
        tern_buf_free(&b);
        free(v);
        close(fd);
        kv_stop(&k);
}

/* ---- concurrency ---- */

struct incr_arg {
        uint16_t port;
        int rounds;
        int failures;
};

/* Pipelines INCRs in batches of 50 and checks each reply is an integer. */
static void *incr_client(void *p)
{
        struct incr_arg *a = p;
        enum { BATCH = 50 };
        static const char incr[] = "*2\r\n$4\r\nINCR\r\n$6\r\nshared\r\n";
        char batch[BATCH * (sizeof(incr) - 1)];
        for (int i = 0; i < BATCH; i++)
                memcpy(batch + i * (sizeof(incr) - 1), incr, sizeof(incr) - 1);

        int fd = tu_connect(a->port, false);
        if (fd < 0) {
                a->failures++;
                return NULL;
        }
        struct reader r = {.fd = fd};
        char line[64];
        for (int k = 0; k < a->rounds; k++) {
                if (tu_write_all(fd, batch, sizeof(batch))) {
                        a->failures++;
                        break;
                }
                for (int i = 0; i < BATCH; i++) {
                        if (read_line_try(&r, line, sizeof(line)) || line[0] != ':') {
                                a->failures++;
                                break;
                        }
                }
        }
        close(fd);
        return NULL;
}

Test(kv, incr_on_a_shared_key_from_many_clients_is_exact)
{
        struct kv_fixture k;
        kv_start(&k, 2, NULL, 0);
        enum { CLIENTS = 16, ROUNDS = 20 };
        pthread_t t[CLIENTS];
        struct incr_arg a[CLIENTS];

        for (int i = 0; i < CLIENTS; i++) {
                a[i] = (struct incr_arg){.port = k.port, .rounds = ROUNDS};
                cr_assert_eq(pthread_create(&t[i], NULL, incr_client, &a[i]), 0);
        }
        for (int i = 0; i < CLIENTS; i++) {
                pthread_join(t[i], NULL);
                cr_assert_eq(a[i].failures, 0, "client %d: %d failures", i, a[i].failures);
        }
        struct tern_stats sum, per[2];
        tern_server_stats(k.s, &sum, per);
        cr_assert(per[0].accepted > 0 && per[1].accepted > 0, "both workers must serve clients");

        int fd = kv_connect(&k);
        char want[32];
        int total = CLIENTS * ROUNDS * 50;
        snprintf(want, sizeof(want), "$%d\r\n%d\r\n", total >= 10000 ? 5 : 4, total);
        CMD(fd, "GET", "shared");
        expect(fd, want);
        close(fd);
        kv_stop(&k);
}

/* ---- hostile input ---- */

struct bad_input {
        const char *in;
        const char *reply;
};

static const struct bad_input bad_inputs[] = {
    {"*-1\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
    {"*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
    {"*1\r\n$\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
    {"*99999999999999999999\r\n", "-ERR Protocol error: too many arguments\r\n"},
    {"*+1\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
    {"*1\r\n$3\r\nabcXY", "-ERR Protocol error: missing CRLF after bulk data\r\n"},
    {"*1\r\n:1\r\n", "-ERR Protocol error: expected '$'\r\n"},
    {"*1\r\n$2000000\r\n", "-ERR Protocol error: bulk length over the limit\r\n"},
    /* Replies to the good commands before it still arrive, first. */
    {"PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$-1\r\n",
     "+PONG\r\n+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"},
};

Test(kv, malformed_input_closes_only_that_connection)
{
        struct kv_fixture k;
        kv_start(&k, 2, NULL, 0);
        int good[2] = {kv_connect(&k), kv_connect(&k)};
        size_t n = sizeof(bad_inputs) / sizeof(bad_inputs[0]);

        rt(good[0], "SET survivor yes\r\n", "+OK\r\n");
        for (size_t i = 0; i < n; i++) {
                int fd = kv_connect(&k);
                puts_(fd, bad_inputs[i].in);
                expect(fd, bad_inputs[i].reply);
                cr_assert_eq(tu_wait_eof(fd, 5000), 0, "case %zu: connection left open", i);
                close(fd);
                for (int g = 0; g < 2; g++)
                        rt(good[g], "GET survivor\r\n", "$3\r\nyes\r\n");
        }

        /* An overlong inline line: max_inline + 2 bytes without a '\n' are
         * enough to know. (Exactly that many, so that the server has read
         * every byte when it closes, which then ends in a FIN, not a RST.) */
        int fd = kv_connect(&k);
        size_t over = TERN_RESP_DEFAULT_MAX_INLINE + 2;
        char *line = malloc(over);
        memset(line, 'a', over);
        put(fd, line, over);
        expect(fd, "-ERR Protocol error: too big inline request\r\n");
        cr_assert_eq(tu_wait_eof(fd, 5000), 0);
        close(fd);
        free(line);

        struct tern_stats st;
        tern_server_stats(k.s, &st, NULL);
        cr_assert_eq(st.codec_errors, n + 1);
        for (int g = 0; g < 2; g++) {
                rt(good[g], "PING\r\n", "+PONG\r\n");
                close(good[g]);
        }
        kv_stop(&k);
}

/* ---- limits ---- */

Test(kv, limits_come_from_the_codec_config)
{
        struct tern_resp_config c;
        tern_resp_config_init(&c);
        c.max_bulk = 16;
        c.max_args = 4;
        struct kv_fixture k;
        kv_start(&k, 1, &c, 0);

        int fd = kv_connect(&k);
        CMD(fd, "SET", "k", "0123456789abcdef");
        expect(fd, "+OK\r\n");
        CMD(fd, "MSET", "a", "1", "b");
        expect(fd, "-ERR wrong number of arguments for 'mset' command\r\n");
        CMD(fd, "SET", "k", "0123456789abcdefg");
        expect(fd, "-ERR Protocol error: bulk length over the limit\r\n");
        cr_assert_eq(tu_wait_eof(fd, 5000), 0);
        close(fd);

        fd = kv_connect(&k);
        CMD(fd, "MSET", "a", "1", "b", "2");
        expect(fd, "-ERR Protocol error: too many arguments\r\n");
        cr_assert_eq(tu_wait_eof(fd, 5000), 0);
        close(fd);
        kv_stop(&k);
}

Test(kv, max_memory_refuses_writes_with_oom)
{
        struct kv_fixture k;
        kv_start(&k, 1, NULL, 64 * 1024);
        int fd = kv_connect(&k);
        struct reader r = {.fd = fd};
        char key[32], line[2048], val[1000];
        int stored = 0;

        memset(val, 'v', sizeof(val) - 1);
        val[sizeof(val) - 1] = '\0';
        for (int i = 0; i < 1000; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                CMD(fd, "SET", key, val);
                read_line(&r, line, sizeof(line));
                if (strcmp(line, "+OK") != 0)
                        break;
                stored++;
        }
        cr_assert_str_eq(line, "-OOM command not allowed when used memory > 'maxmemory'.");
        cr_assert(stored > 10 && stored < 100, "%d values of 1 KB fit in 64 KiB", stored);
        /* Reads and deletes still work; deleting makes room again. */
        CMD(fd, "INCR", "x");
        read_line(&r, line, sizeof(line));
        cr_assert_str_eq(line, "-OOM command not allowed when used memory > 'maxmemory'.");
        CMD(fd, "GET", "k0");
        read_line(&r, line, sizeof(line));
        cr_assert_str_eq(line, "$999");
        read_line(&r, line, sizeof(line));
        CMD(fd, "FLUSHALL");
        read_line(&r, line, sizeof(line));
        cr_assert_str_eq(line, "+OK");
        CMD(fd, "SET", "k0", "small");
        read_line(&r, line, sizeof(line));
        cr_assert_str_eq(line, "+OK");
        close(fd);
        kv_stop(&k);
}

/* ---- the store on its own ---- */

/* The reference vector of the SipHash paper (SipHash-2-4, key 00..0f,
 * message 00..0e), and its first vector (empty message). */
Test(kv, siphash_reference_vectors)
{
        uint8_t kb[16], msg[15];
        uint64_t key[2];
        for (int i = 0; i < 16; i++)
                kb[i] = (uint8_t)i;
        for (int i = 0; i < 15; i++)
                msg[i] = (uint8_t)i;
        memcpy(key, kb, 16);
        key[0] = le64toh(key[0]);
        key[1] = le64toh(key[1]);
        cr_assert_eq(kv_siphash(key, msg, 15, 2, 4), 0xa129ca6149be45e5ULL);
        cr_assert_eq(kv_siphash(key, msg, 0, 2, 4), 0x726fdb47dd0e0e31ULL);
}

Test(kv, store_accounting_returns_to_empty)
{
        struct kv_store *st = kv_store_new(0);
        struct kv_store_stats empty, full, after;
        char key[32];
        cr_assert_not_null(st);
        kv_store_stats(st, &empty);
        cr_assert_eq(empty.keys, 0);

        for (int i = 0; i < 5000; i++) {
                snprintf(key, sizeof(key), "key-%d", i);
                cr_assert_eq(kv_set(st, key, strlen(key), "value", 5, KV_SET_ALWAYS), 1);
        }
        /* Replacing, refusing and incrementing must not leak the loser. */
        cr_assert_eq(kv_set(st, "key-7", 5, "a much longer value", 19, KV_SET_ALWAYS), 1);
        cr_assert_eq(kv_set(st, "key-8", 5, "x", 1, KV_SET_NX), 0);
        int64_t v;
        cr_assert_eq(kv_set(st, "n", 1, "9", 1, KV_SET_ALWAYS), 1);
        cr_assert_eq(kv_incr(st, "n", 1, 1, &v), 0);
        cr_assert_eq(v, 10);
        struct tern_resp_arg ms[4] = {{(const uint8_t *)"n", 1},
                                      {(const uint8_t *)"1", 1},
                                      {(const uint8_t *)"n", 1},
                                      {(const uint8_t *)"2", 1}};
        uint64_t mh[2];
        cr_assert_eq(kv_mset(st, ms, 2, mh), 0);
        cr_assert_eq(kv_del(st, ms, 1, mh), 1);
        kv_store_stats(st, &full);
        cr_assert_eq(full.keys, 5000);
        cr_assert_eq(full.entries, 5000, "%zu allocations for 5000 keys", full.entries);
        cr_assert_eq(kv_dbsize(st), 5000);
        cr_assert_gt(full.bytes, empty.bytes + 5000 * 5);

        struct tern_resp_arg del[2] = {{(const uint8_t *)"key-1", 5}, {(const uint8_t *)"no", 2}};
        uint64_t hash[2];
        cr_assert_eq(kv_del(st, del, 2, hash), 1);
        cr_assert_eq(kv_dbsize(st), 4999);
        cr_assert_eq(kv_flushall(st), 0);
        kv_store_stats(st, &after);
        cr_assert_eq(after.keys, 0);
        cr_assert_eq(after.entries, 0, "FLUSHALL left %zu values allocated", after.entries);
        cr_assert_eq(after.bytes, empty.bytes, "FLUSHALL left %zu bytes accounted",
                     after.bytes - empty.bytes);
        /* Every remaining value is freed here: ASan builds check for leaks. */
        for (int i = 0; i < 100; i++) {
                snprintf(key, sizeof(key), "again-%d", i);
                kv_set(st, key, strlen(key), "v", 1, KV_SET_ALWAYS);
        }
        kv_store_free(st);
}

struct mset_arg {
        struct kv_store *st;
        int id;
        int iters;
        int torn; /* readers: snapshots that mixed two MSETs */
};

static const char *const mset_keys[8] = {"alpha", "bravo",   "charlie", "delta",
                                         "echo",  "foxtrot", "golf",    "hotel"};

static void *mset_writer(void *p)
{
        struct mset_arg *a = p;
        struct tern_resp_arg kv[16];
        uint64_t hash[8];
        char val[32];
        for (int i = 0; i < a->iters; i++) {
                snprintf(val, sizeof(val), "%d:%d", a->id, i);
                for (int j = 0; j < 8; j++) {
                        kv[2 * j] = (struct tern_resp_arg){(const uint8_t *)mset_keys[j],
                                                           strlen(mset_keys[j])};
                        kv[2 * j + 1] = (struct tern_resp_arg){(const uint8_t *)val, strlen(val)};
                }
                if (kv_mset(a->st, kv, 8, hash))
                        a->torn++;
        }
        return NULL;
}

static void *mget_reader(void *p)
{
        struct mset_arg *a = p;
        struct tern_resp_arg keys[8];
        uint64_t hash[8];
        struct tern_buf out = TERN_BUF_INIT;
        for (int j = 0; j < 8; j++)
                keys[j] =
                    (struct tern_resp_arg){(const uint8_t *)mset_keys[j], strlen(mset_keys[j])};
        for (int i = 0; i < a->iters; i++) {
                if (kv_mget(a->st, keys, 8, hash, &out, SIZE_MAX)) {
                        a->torn++;
                        continue;
                }
                /* Every element of one snapshot must be the same value. */
                struct tern_resp_state s;
                struct tern_frame f = {.kind = TERN_FRAME_NONE};
                tern_resp_state_init(&s, NULL);
                /* Before any MSET: all absent. Otherwise the reply, eight
                 * bulks in an array, parses as a command of 8 arguments. */
                static const char none[] = "*8\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n"
                                           "$-1\r\n$-1\r\n";
                struct tern_resp_arg v[8];
                bool absent = tern_buf_len(&out) == sizeof(none) - 1 &&
                              memcmp(tern_buf_data(&out), none, sizeof(none) - 1) == 0;
                if (!absent) {
                        if (tern_resp_decode(&s, tern_buf_data(&out), tern_buf_len(&out), &f) <=
                                0 ||
                            tern_resp_args(&f, v, 8) != 8) {
                                a->torn++;
                        } else {
                                for (int j = 1; j < 8; j++)
                                        if (v[j].len != v[0].len ||
                                            memcmp(v[j].data, v[0].data, v[0].len))
                                                a->torn++;
                        }
                }
                tern_buf_consume(&out, tern_buf_len(&out));
        }
        tern_buf_free(&out);
        return NULL;
}

Test(kv, mset_and_mget_are_atomic_across_shards)
{
        struct kv_store *st = kv_store_new(0);
        cr_assert_not_null(st);
        uint64_t shards = 0;
        for (int j = 0; j < 8; j++)
                shards |= 1ULL << kv_shard_index(kv_hash(st, mset_keys[j], strlen(mset_keys[j])));
        cr_assert_gt(__builtin_popcountll(shards), 1, "the keys must span several shards");

        pthread_t t[4];
        struct mset_arg a[4];
        for (int i = 0; i < 4; i++) {
                a[i] = (struct mset_arg){.st = st, .id = i, .iters = 5000};
                cr_assert_eq(pthread_create(&t[i], NULL, i < 2 ? mset_writer : mget_reader, &a[i]),
                             0);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                cr_assert_eq(a[i].torn, 0, "thread %d saw %d torn or failed operations", i,
                             a[i].torn);
        }
        kv_store_free(st);
}

/* ---- real clients ---- */

static bool on_path(const char *prog)
{
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
        return system(cmd) == 0;
}

/* Runs redis-cli with @args (and @input on stdin, printf-formatted, when
 * not NULL) against the server; returns what it printed. */
static char *redis_cli(uint16_t port, const char *args, const char *input)
{
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "%s%s%stimeout 10 redis-cli -h 127.0.0.1 -p %u %s 2>&1",
                 input ? "printf '" : "", input ? input : "", input ? "' | " : "", port, args);
        FILE *p = popen(cmd, "r");
        cr_assert_not_null(p, "popen(redis-cli) failed");
        char *out = calloc(1, 4096);
        size_t n = fread(out, 1, 4095, p);
        out[n] = '\0';
        cr_assert_eq(pclose(p), 0, "redis-cli %s failed: %s", args, out);
        return out;
}

static void cli_expect(uint16_t port, const char *args, const char *want)
{
        char *out = redis_cli(port, args, NULL);
        cr_assert_str_eq(out, want, "redis-cli %s", args);
        free(out);
}

Test(kv, redis_cli_works_unmodified)
{
        if (!on_path("redis-cli"))
                cr_skip_test("redis-cli not on PATH (Debian: apt-get install redis-tools)");
        struct kv_fixture k;
        kv_start(&k, 2, NULL, 0);

        /* Without a terminal redis-cli prints raw replies, one per line. */
        cli_expect(k.port, "PING", "PONG\n");
        cli_expect(k.port, "SET greeting 'hello world'", "OK\n");
        cli_expect(k.port, "GET greeting", "hello world\n");
        cli_expect(k.port, "INCR visits", "1\n");
        cli_expect(k.port, "INCR visits", "2\n");
        cli_expect(k.port, "MSET a 1 b 2", "OK\n");
        cli_expect(k.port, "MGET a b nope", "1\n2\n\n");
        cli_expect(k.port, "EXISTS a b nope", "2\n");
        cli_expect(k.port, "DEL a", "1\n");
        cli_expect(k.port, "DBSIZE", "3\n");
        cli_expect(k.port, "ECHO hi", "hi\n");
        cli_expect(k.port, "NOSUCH thing", "ERR unknown command 'NOSUCH'\n\n");
        cli_expect(k.port, "FLUSHALL", "OK\n");
        cli_expect(k.port, "DBSIZE", "0\n");
        /* Several commands on stdin, one connection: its interactive start
         * (COMMAND DOCS) is answered with an error it tolerates. */
        char *out = redis_cli(k.port, "", "SET x 5\\nINCR x\\nGET x\\n");
        cr_assert_str_eq(out, "OK\n6\n6\n");
        free(out);
        kv_stop(&k);
}

/* ---- the commands redis-py and redis-benchmark needed, byte for byte ---- */

Test(kv, expiry_and_string_commands)
{
        struct kv_fixture k;
        kv_start(&k, 2, NULL, 0);
        int fd = kv_connect(&k);

        rt(fd, "SET k v EX 100\r\n", "+OK\r\n");
        rt(fd, "TTL k\r\n", ":100\r\n");
        rt(fd, "SET k w KEEPTTL GET\r\n", "$1\r\nv\r\n");
        rt(fd, "TTL k\r\n", ":100\r\n");
        rt(fd, "SET k w\r\n", "+OK\r\n");
        rt(fd, "TTL k\r\n", ":-1\r\n");
        rt(fd, "SET k v PX 10 EX 10\r\n", "-ERR syntax error\r\n");
        rt(fd, "SET k v KEEPTTL EX 10\r\n", "-ERR syntax error\r\n");
        rt(fd, "SET k v EX abc\r\n", "-ERR value is not an integer or out of range\r\n");
        rt(fd, "SET k v PX 9223372036854775807\r\n",
           "-ERR invalid expire time in 'set' command\r\n");
        rt(fd, "SETEX k 0 v\r\n", "-ERR invalid expire time in 'setex' command\r\n");
        rt(fd, "PSETEX k 50 v\r\n", "+OK\r\n");
        rt(fd, "EXPIRE k 10 NX XX\r\n",
           "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n");
        rt(fd, "EXPIRE k 10 GT LT\r\n",
           "-ERR GT and LT options at the same time are not compatible\r\n");
        usleep(100 * 1000);
        rt(fd, "GET k\r\n", "$-1\r\n");
        rt(fd, "TTL k\r\n", ":-2\r\n");
        rt(fd, "INCRBY n 10\r\n", ":10\r\n");
        rt(fd, "DECRBY n 3\r\n", ":7\r\n");
        rt(fd, "DECR n\r\n", ":6\r\n");
        rt(fd, "DECRBY n -9223372036854775808\r\n", "-ERR decrement would overflow\r\n");
        rt(fd, "INCRBYFLOAT n 0.5\r\n", "$3\r\n6.5\r\n");
        rt(fd, "INCRBYFLOAT n x\r\n", "-ERR value is not a valid float\r\n");
        rt(fd, "APPEND n 1\r\n", ":4\r\n");
        rt(fd, "GETDEL n\r\n", "$4\r\n6.51\r\n");
        rt(fd, "RPUSH l a\r\n", ":1\r\n");
        rt(fd, "GET l\r\n",
           "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
        rt(fd, "TYPE l\r\n", "+list\r\n");
        rt(fd, "SELECT 0\r\n", "+OK\r\n");
        char pat[600];
        memset(pat, '*', sizeof(pat));
        pat[sizeof(pat) - 1] = '\0';
        CMD(fd, "KEYS", pat);
        expect(fd, "-ERR pattern longer than 512 bytes\r\n");
        CMD(fd, "SCAN", "0", "MATCH", pat);
        expect(fd, "-ERR pattern longer than 512 bytes\r\n");
        rt(fd, "SELECT 1\r\n", "-ERR DB index is out of range (tern-kv has only database 0)\r\n");
        close(fd);
        kv_stop(&k);
}

Test(kv, multi_exec_discard_and_watch)
{
        struct kv_fixture k;
        kv_start(&k, 2, NULL, 0);
        int fd = kv_connect(&k), other = kv_connect(&k);

        rt(fd, "MULTI\r\n", "+OK\r\n");
        rt(fd, "MULTI\r\n", "-ERR MULTI calls can not be nested\r\n");
        rt(fd, "SET a 1\r\n", "+QUEUED\r\n");
        rt(fd, "INCR a\r\n", "+QUEUED\r\n");
        rt(fd, "LPUSH a x\r\n", "+QUEUED\r\n");
        /* Another client sees nothing of the queued commands yet. */
        rt(other, "GET a\r\n", "$-1\r\n");
        rt(fd, "EXEC\r\n",
           "*3\r\n+OK\r\n:2\r\n-WRONGTYPE Operation against a key holding the wrong kind of "
           "value\r\n");
        rt(fd, "EXEC\r\n", "-ERR EXEC without MULTI\r\n");
        rt(fd, "DISCARD\r\n", "-ERR DISCARD without MULTI\r\n");
        rt(fd, "MULTI\r\n", "+OK\r\n");
        rt(fd, "INCR a\r\n", "+QUEUED\r\n");
        rt(fd, "DISCARD\r\n", "+OK\r\n");
        rt(fd, "GET a\r\n", "$1\r\n2\r\n");
        rt(fd, "WATCH a\r\n", "+OK\r\n");
        rt(other, "INCR a\r\n", ":3\r\n");
        rt(fd, "MULTI\r\n", "+OK\r\n");
        rt(fd, "WATCH a\r\n", "-ERR WATCH inside MULTI is not allowed\r\n");
        rt(fd, "INCR a\r\n", "+QUEUED\r\n");
        rt(fd, "EXEC\r\n", "*-1\r\n");
        rt(fd, "GET a\r\n", "$1\r\n3\r\n");
        rt(fd, "MULTI\r\n", "+OK\r\n");
        rt(fd, "NOSUCH\r\n", "-ERR unknown command 'NOSUCH'\r\n");
        rt(fd, "EXEC\r\n", "-EXECABORT Transaction discarded because of previous errors.\r\n");
        rt(fd, "MULTI\r\n", "+OK\r\n");
        rt(fd, "FLUSHALL\r\n", "+QUEUED\r\n");
        rt(fd, "DBSIZE\r\n", "+QUEUED\r\n");
        rt(fd, "EXEC\r\n", "*2\r\n+OK\r\n:0\r\n");
        close(other);
        close(fd);
        kv_stop(&k);
}

Test(kv, hello_3_switches_to_resp3_replies)
{
        struct kv_fixture k;
        kv_start(&k, 1, NULL, 0);
        int fd = kv_connect(&k);

        rt(fd, "HELLO 4\r\n", "-NOPROTO unsupported protocol version\r\n");
        rt(fd, "HSET h f v\r\n", ":1\r\n");
        rt(fd, "HGETALL h\r\n", "*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
        puts_(fd, "HELLO 3 SETNAME app\r\n");
        expect(fd, "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"
                   "$5\r\nproto\r\n:3\r\n$2\r\nid\r\n");
        struct reader rd = {.fd = fd};
        char line[64];
        cr_assert_eq(read_line_try(&rd, line, sizeof(line)), 0); /* the id */
        static const char rest[] = "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n"
                                   "$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
        for (const char *p = rest; *p;) {
                cr_assert_eq(read_line_try(&rd, line, sizeof(line)), 0);
                const char *eol = strstr(p, "\r\n");
                cr_assert(strncmp(line, p, (size_t)(eol - p)) == 0, "got '%s' for '%.*s'", line,
                          (int)(eol - p), p);
                p = eol + 2;
        }
        rt(fd, "GET nope\r\n", "_\r\n");
        rt(fd, "HGETALL h\r\n", "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
        rt(fd, "CLIENT GETNAME\r\n", "$3\r\napp\r\n");
        rt(fd, "HELLO 2\r\n",
           "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"
           "$5\r\n7.0.0\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n");
        close(fd);
        kv_stop(&k);
}
