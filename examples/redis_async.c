/*
 * example-redis-async: hiredis's async API on a tern loop with no server,
 * through examples/hiredis_tern.h. Two connections to one redis-server:
 * "cmd" SETs a key and GETs it back; "sub" SUBSCRIBEs to a channel, and
 * once both are done cmd PUBLISHes to it; sub prints the message,
 * unsubscribes, both disconnect and the loop stops.
 * Exits 0 on success, 1 with a message on stderr on any error (connection
 * refused, an unexpected reply, no answer within 5 s; with hiredis 1.x a
 * reply more than 2 s late).
 * Usage: example-redis-async HOST PORT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tern/tern.h>

#include "hiredis_tern.h"

#define KEY     "tern:example"
#define VALUE   "hello from tern"
#define CHANNEL "tern:news"
#define MESSAGE "hi, subscribers"

static tern_loop *loop;
static redisAsyncContext *cmd, *sub; /* NULL once gone */
static struct tern_timer deadline;
static int status; /* exit status; 1 after the first failure */
static bool got_value, subscribed;

/* Reports the first failure and stops the loop; main() frees what is left. */
static void fail(const char *what, const char *why)
{
        if (status == 0)
                fprintf(stderr, "example-redis-async: %s: %s\n", what, why);
        status = 1;
        tern_loop_stop(loop);
}

static bool is(const redisReply *r, int type, const char *str)
{
        return r && r->type == type && (!str || (r->str && strcmp(r->str, str) == 0));
}

static void on_connect(const redisAsyncContext *ac, int st)
{
        if (st != REDIS_OK) {
                /* hiredis frees the context after this returns */
                if (ac == cmd)
                        cmd = NULL;
                else
                        sub = NULL;
                fail("connect", ac->errstr);
        }
}

static void on_disconnect(const redisAsyncContext *ac, int st)
{
        if (ac == cmd)
                cmd = NULL;
        else
                sub = NULL;
        if (st != REDIS_OK)
                fail("disconnected", ac->errstr);
        else if (!cmd && !sub)
                tern_loop_stop(loop); /* both done */
}

static void on_publish(redisAsyncContext *ac, void *reply, void *priv)
{
        redisReply *r = reply;
        if (!r || status)
                return; /* freed while failing */
        if (r->type != REDIS_REPLY_INTEGER || r->integer != 1)
                return fail("PUBLISH", "expected one receiver");
        redisAsyncDisconnect(ac); /* once this callback has returned */
}

/* Once the value is back and sub listens: cmd publishes, from either side. */
static void maybe_publish(void)
{
        if (got_value && subscribed)
                redisAsyncCommand(cmd, on_publish, NULL, "PUBLISH %s %s", CHANNEL, MESSAGE);
}

/* The channel's messages, and the subscribe and unsubscribe confirmations. */
static void on_channel(redisAsyncContext *ac, void *reply, void *priv)
{
        redisReply *r = reply;
        if (!r || status)
                return;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
            !is(r->element[0], REDIS_REPLY_STRING, NULL))
                return fail("SUBSCRIBE", "unexpected reply");
        const char *kind = r->element[0]->str;
        if (strcmp(kind, "subscribe") == 0) {
                printf("subscribed to %s\n", CHANNEL);
                subscribed = true;
                maybe_publish();
        } else if (strcmp(kind, "message") == 0) {
                if (!is(r->element[2], REDIS_REPLY_STRING, MESSAGE))
                        return fail("SUBSCRIBE", "wrong message");
                printf("message on %s: %s\n", CHANNEL, r->element[2]->str);
                redisAsyncCommand(ac, NULL, NULL, "UNSUBSCRIBE %s", CHANNEL);
        } else if (strcmp(kind, "unsubscribe") == 0) {
                printf("unsubscribed from %s\n", CHANNEL);
                redisAsyncDisconnect(ac);
        }
}

static void on_get(redisAsyncContext *ac, void *reply, void *priv)
{
        redisReply *r = reply;
        if (!r || status)
                return;
        if (!is(r, REDIS_REPLY_STRING, VALUE))
                return fail("GET", r->type == REDIS_REPLY_ERROR ? r->str : "wrong value");
        printf("GET %s -> %s\n", KEY, r->str);
        got_value = true;
        maybe_publish();
}

static void on_set(redisAsyncContext *ac, void *reply, void *priv)
{
        redisReply *r = reply;
        if (!r || status)
                return;
        if (!is(r, REDIS_REPLY_STATUS, "OK"))
                return fail("SET", r->type == REDIS_REPLY_ERROR ? r->str : "not OK");
        printf("SET %s -> OK\n", KEY);
}

static void on_deadline(struct tern_timer *t, void *arg)
{
        fail("timeout", "no answer from redis within 5 s");
}

static redisAsyncContext *connect_to(const char *host, int port)
{
        redisAsyncContext *ac = redisAsyncConnect(host, port);
        if (!ac || ac->err) { /* refused at once (loopback), or no memory */
                fail("connect", ac ? ac->errstr : "out of memory");
                redisAsyncFree(ac);
                return NULL;
        }
        int r = redis_tern_attach(ac, loop);
        if (r < 0) {
                fail("attach", strerror(-r));
                redisAsyncFree(ac);
                return NULL;
        }
#if REDIS_TERN_TIMERS
        /* hiredis 1.x: a reply not there 2 s after its command fails the
         * context; hiredis_tern.h keeps the time with a tern timer. */
        redisAsyncSetTimeout(ac, (struct timeval){.tv_sec = 2});
#endif
        redisAsyncSetConnectCallback(ac, on_connect);
        redisAsyncSetDisconnectCallback(ac, on_disconnect);
        return ac;
}

int main(int argc, char **argv)
{
        char *end = NULL;
        long port = argc == 3 ? strtol(argv[2], &end, 10) : 0;
        if (!end || *end || port < 1 || port > 65535) {
                fprintf(stderr, "usage: example-redis-async HOST PORT\n");
                return 1;
        }
        if (!(loop = tern_loop_new(NULL))) {
                perror("example-redis-async: tern_loop_new");
                return 1;
        }
        if ((cmd = connect_to(argv[1], (int)port)) && (sub = connect_to(argv[1], (int)port))) {
                /* Queued now, written once connected; replies come in order. */
                redisAsyncCommand(cmd, on_set, NULL, "SET %s %s", KEY, VALUE);
                redisAsyncCommand(cmd, on_get, NULL, "GET %s", KEY);
                redisAsyncCommand(sub, on_channel, NULL, "SUBSCRIBE %s", CHANNEL);
        }
        tern_timer_init(&deadline, on_deadline, NULL);
        tern_loop_timer_start(loop, &deadline, 5000, 0);
        tern_loop_run(loop);

        /* After a failure: free what is still open (runs cleanup, frees the
         * watches). The loop is not running, so this thread may. */
        tern_loop_timer_stop(loop, &deadline);
        redisAsyncContext *left[] = {cmd, sub};
        for (size_t i = 0; i < 2; i++)
                if (left[i])
                        redisAsyncFree(left[i]);
        tern_loop_free(loop);

        struct tern_live_counts lc;
        tern_live_counts(&lc);
        printf("live after free: loops %ld watches %ld timers %ld\n", lc.loops, lc.watches,
               lc.timers);
        if (lc.loops || lc.watches || lc.timers) {
                fprintf(stderr, "example-redis-async: tern objects left after free\n");
                return 1;
        }
        return status;
}
