/*
 * Layer 3.5 (chat.h lists the layers; includes cluster.h, so fanout.h and
 * below): the link from each worker to the Redis that joins instances into
 * one chat. cluster.h says what it does, docs/chat.md ("Cluster") why.
 *
 * Keys and channels, all under "tern-chat:":
 *   room:KEY  channel of room KEY (lower case); a message is
 *             "TAG LINE\r\n": TAG (8 hex digits) names the instance that
 *             sent it, which has already delivered it itself;
 *   nick:KEY  the nickname KEY, valued TAG, expiring unless refreshed;
 *   members:TAG:W  hash of worker W's members (nickname -> room), expiring
 *             unless refreshed, for /who and /rooms;
 *   members   sorted set of those hashes by last heartbeat (Redis's clock);
 *   inst:TAG  channel of private lines for instance TAG, "KEY LINE\r\n".
 *
 * hiredis is driven by our own small adapter over tern_loop_watch() (like
 * examples/hiredis_tern.h) because the link needs two things the example
 * does not: a bound on what one reply may buffer (hiredis 0.14 has none),
 * and an immediate close, not a graceful one, when the loop drains (a
 * subscribed connection never finishes a graceful disconnect).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "cluster.h"

int chat_cluster_url(const char *url, char *host, size_t cap, uint16_t *port)
{
        static const char scheme[] = "redis://";
        if (!url || strncasecmp(url, scheme, sizeof(scheme) - 1) != 0)
                return -EINVAL;
        const char *h = url + sizeof(scheme) - 1;
        const char *end = h + strlen(h);
        if (end > h && end[-1] == '/')
                end--;
        const char *colon = NULL;
        for (const char *p = h; p < end; p++)
                if (*p == ':')
                        colon = p;
        const char *hend = colon ? colon : end;
        size_t hlen = (size_t)(hend - h);
        if (hlen == 0 || hlen > 253 || memchr(h, '/', hlen) || memchr(h, '@', hlen))
                return -EINVAL; /* no path, no credentials: not supported yet */
        unsigned long p = 6379;
        if (colon) {
                char *e;
                if (colon + 1 == end || colon[1] < '0' || colon[1] > '9')
                        return -EINVAL;
                p = strtoul(colon + 1, &e, 10);
                if (e != end || p == 0 || p > 65535)
                        return -EINVAL;
        }
        if (host) {
                if (hlen >= cap)
                        return -EINVAL;
                memcpy(host, h, hlen);
                host[hlen] = '\0';
        }
        if (port)
                *port = (uint16_t)p;
        return 0;
}

#ifndef TERN_CHAT_CLUSTER

/* Built without hiredis: --cluster is refused at start, the rest is off. */
int chat_cluster_init(struct chat_server *cs)
{
        if (!cs->opts.cluster)
                return 0;
        tern_error("tern-chat: --cluster needs hiredis, which this build lacks "
                   "(libhiredis-dev, then re-run cmake)");
        return -EINVAL;
}
void chat_cluster_destroy(struct chat_server *cs)
{
        (void)cs;
}
void chat_cluster_worker_start(struct chat_worker *w)
{
        (void)w;
}
void chat_cluster_worker_stop(struct chat_worker *w)
{
        (void)w;
}
bool chat_cluster_up(const struct chat_worker *w)
{
        (void)w;
        return false;
}
void chat_cluster_publish(struct chat_worker *w, const struct chat_room *room, const char *data,
                          size_t len)
{
        (void)w, (void)room, (void)data, (void)len;
}
void chat_cluster_room_open(struct chat_worker *w, const struct chat_room *room)
{
        (void)w, (void)room;
}
void chat_cluster_room_close(struct chat_worker *w, const struct chat_room *room)
{
        (void)w, (void)room;
}
struct chat_cluster_claim *chat_cluster_nick_claim(struct chat_worker *w, const char *key,
                                                   chat_cluster_claim_cb cb, void *arg)
{
        (void)w, (void)key, (void)cb, (void)arg;
        errno = ENOTCONN;
        return NULL;
}
void chat_cluster_claim_cancel(struct chat_cluster_claim *c)
{
        (void)c;
}
void chat_cluster_nick_release(struct chat_worker *w, const char *key)
{
        (void)w, (void)key;
}
void chat_cluster_nick_adopt(struct chat_worker *w, const char *key)
{
        (void)w, (void)key;
}
uint64_t chat_cluster_lost(const struct chat_server *cs)
{
        (void)cs;
        return 0;
}
void chat_cluster_member_set(struct chat_worker *w, const char *nick, const char *room)
{
        (void)w, (void)nick, (void)room;
}
void chat_cluster_member_del(struct chat_worker *w, const char *nick)
{
        (void)w, (void)nick;
}
struct chat_cluster_claim *chat_cluster_members(struct chat_worker *w, const char *room,
                                                chat_cluster_list_cb cb, void *arg)
{
        (void)w, (void)room, (void)cb, (void)arg;
        errno = ENOTCONN;
        return NULL;
}
struct chat_cluster_claim *chat_cluster_pm(struct chat_worker *w, const char *key, const char *line,
                                           size_t len, chat_cluster_claim_cb cb, void *arg)
{
        (void)w, (void)key, (void)line, (void)len, (void)cb, (void)arg;
        errno = ENOTCONN;
        return NULL;
}
void chat_cluster_set_pm_handler(struct chat_server *cs, chat_cluster_pm_cb cb)
{
        (void)cs, (void)cb;
}

#else

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#define CL_PREFIX      "tern-chat:"
#define CL_ROOM_PREFIX CL_PREFIX "room:"
#define CL_NICK_PREFIX CL_PREFIX "nick:"
#define CL_INST_PREFIX CL_PREFIX "inst:"   /* channel: private lines for one instance */
#define CL_MEMBERS     CL_PREFIX "members" /* zset: live member hashes by heartbeat time */
#define CL_BUCKETS     64                  /* per-worker tables of channels and names */
#define CL_TAG_LEN     8

/* A name is free, or already ours (a refresh, or a re-registration after an
 * outage shorter than the expiry): take it for another TTL. */
static const char cl_claim_lua[] =
    "local v = redis.call('get', KEYS[1]) "
    "if v == false or v == ARGV[1] then "
    "redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2]) return 1 end return 0";
/* Deletes a name only while it is still ours: after an expiry someone else
 * may hold it. */
static const char cl_release_lua[] = "if redis.call('get', KEYS[1]) == ARGV[1] then "
                                     "return redis.call('del', KEYS[1]) end return 0";

/* Refreshes a worker's member hash (KEYS[2]) and its entry in the index
 * (KEYS[1]), stamped with Redis's clock so that instances' clocks do not
 * matter. */
static const char cl_alive_lua[] =
    "local t = redis.call('time') "
    "redis.call('zadd', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000), KEYS[2]) "
    "redis.call('pexpire', KEYS[2], ARGV[1]) return 1";
/* The live member hashes (one whose heartbeat stopped is dropped from the
 * index first), summed up in Redis so that the reply grows with what is
 * asked, not with the cluster: with ARGV[2] empty, room, count, room,
 * count... (/rooms); else nickname, room... for the room whose lower-case
 * name is ARGV[2] (/who). */
static const char cl_list_lua[] =
    "local t = redis.call('time') "
    "local now = t[1] * 1000 + math.floor(t[2] / 1000) "
    "redis.call('zremrangebyscore', KEYS[1], '-inf', now - tonumber(ARGV[1])) "
    "local out, cnt, disp, order = {}, {}, {}, {} "
    "for _, k in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do "
    "local h = redis.call('hgetall', k) "
    "for i = 1, #h, 2 do "
    "local key = string.lower(h[i + 1]) "
    "if ARGV[2] == '' then "
    "if not cnt[key] then cnt[key] = 0 disp[key] = h[i + 1] order[#order + 1] = key end "
    "cnt[key] = cnt[key] + 1 "
    "elseif key == ARGV[2] then out[#out + 1] = h[i] out[#out + 1] = h[i + 1] end "
    "end end "
    "for _, key in ipairs(order) do out[#out + 1] = disp[key] "
    "out[#out + 1] = tostring(cnt[key]) end return out";
/* A private line to whoever holds a name: to that instance's channel. */
static const char cl_pm_lua[] = "local v = redis.call('get', KEYS[1]) "
                                "if not v then return 0 end "
                                "return redis.call('publish', '" CL_INST_PREFIX "' .. v, ARGV[1])";

enum cl_chan_state {
        CL_CHAN_OFF,     /* not subscribed (or the link is down) */
        CL_CHAN_ON,      /* SUBSCRIBE sent */
        CL_CHAN_LEAVING, /* UNSUBSCRIBE sent, its confirmation not yet back */
};

/* A room channel this worker wants or has not finished leaving. */
struct cl_chan {
        struct cl_chan *next;
        uint64_t room_id; /* the local room its messages go to */
        bool want;        /* local members: should be subscribed */
        enum cl_chan_state state;
        char key[CHAT_NAME_MAX + 1];
};

/* A nickname this worker holds in Redis for one of its clients. */
struct cl_nick {
        struct cl_nick *next;
        char key[CHAT_NAME_MAX + 1];
};

/* A member of this worker, as mirrored into Redis. */
struct cl_member {
        struct cl_member *next;
        char key[CHAT_NAME_MAX + 1]; /* nickname, lower case */
        char name[CHAT_NAME_MAX + 1];
        char room[CHAT_NAME_MAX + 1];
};

struct chat_cluster_link;

struct chat_cluster_claim {
        struct chat_cluster_link *link;
        chat_cluster_claim_cb cb;
        chat_cluster_list_cb list_cb;
        void *arg;
        bool cancelled;
        char key[CHAT_NAME_MAX + 1];
};

/* Our adapter's state for one hiredis context (ac->ev.data). */
struct cl_io {
        redisAsyncContext *ac; /* NULL once hiredis called cleanup */
        struct chat_cluster_link *link;
        tern_watch *watch;
        redisReader *shadow; /* parses what we read before hiredis sees it */
        unsigned want;
        bool in_callback; /* cleanup from inside our callback: free on return */
};

struct chat_cluster_link {
        struct chat_worker *w;
        struct chat_cluster *cc;
        redisAsyncContext *pub; /* commands and PUBLISH; NULL when none */
        redisAsyncContext *sub; /* SUBSCRIBE only */
        bool pub_ok, sub_ok;    /* connected */
        bool up;                /* both connected, channels and names resent */
        bool told_down;         /* clients were told the link is down */
        bool stopping;
        unsigned attempts; /* failed connects in a row, for the backoff */
        uint32_t rng;      /* the backoff's jitter */
        struct tern_timer retry, beat;
        size_t inflight;      /* bytes published, not yet acknowledged */
        uint64_t alive_sent;  /* loop ms of the oldest unanswered heartbeat, or 0 */
        uint64_t lost;        /* atomic (relaxed): lines not sent (down, queue full) */
        uint64_t unconfirmed; /* lines in flight when their connection went */
        struct cl_chan *chans[CL_BUCKETS];
        struct cl_nick *nicks[CL_BUCKETS];
        struct cl_member *members[CL_BUCKETS];
        char hkey[64]; /* this worker's member hash */
        char *buf;     /* TAG + ' ' + one line */
        size_t cap;
        size_t max_reply;
};

struct chat_cluster {
        char host[256];
        uint16_t port;
        struct chat_cluster_link *links; /* one per worker */
        chat_cluster_pm_cb on_pm;
};

static void cl_fail(struct chat_cluster_link *link, const char *why);

static unsigned cl_bucket(const char *key)
{
        return (unsigned)(chat_hash(key, strlen(key)) % CL_BUCKETS);
}

/* ---- the adapter: hiredis on the worker's loop ---- */

static void cl_io_update(void *privdata, unsigned add, unsigned del)
{
        struct cl_io *io = privdata;
        if (!io || !io->watch)
                return;
        io->want = (io->want | add) & ~del;
        (void)tern_watch_set(io->watch, io->want);
}

static void cl_io_add_read(void *p)
{
        cl_io_update(p, TERN_WATCH_READ, 0);
}
static void cl_io_del_read(void *p)
{
        cl_io_update(p, 0, TERN_WATCH_READ);
}
static void cl_io_add_write(void *p)
{
        cl_io_update(p, TERN_WATCH_WRITE, 0);
}
static void cl_io_del_write(void *p)
{
        cl_io_update(p, 0, TERN_WATCH_WRITE);
}

static void cl_io_cleanup(void *privdata)
{
        struct cl_io *io = privdata;
        if (!io)
                return;
        tern_watch_free(io->watch); /* safe inside the watch's own callback */
        io->watch = NULL;
        redisReaderFree(io->shadow);
        io->shadow = NULL;
        io->ac->ev.data = NULL;
        io->ac = NULL;
        if (!io->in_callback)
                free(io);
}

static void cl_link_shutdown(struct chat_cluster_link *link);

/* hiredis 0.14 exports it but declares it only in async.c (1.x declares it
 * in async.h, the same way). */
void redisProcessCallbacks(redisAsyncContext *ac);

/*
 * hiredis 0.14 assert()s (aborts the process) on a reply nobody asked for
 * and on a subscriber message that is an array of fewer than two elements
 * or not led by a string: shapes no Redis sends, but bad input must fail
 * the link, not the process. So the bytes go through a second reader
 * first, and hiredis only gets them if every reply they complete is one it
 * can take. Returns NULL, or why not.
 */
static const char *cl_io_check(struct cl_io *io, const char *buf, size_t len)
{
        redisAsyncContext *ac = io->ac;
        bool sub = ac == io->link->sub;
        size_t expected = 0; /* replies hiredis holds a callback for */
        for (const redisCallback *cb = ac->replies.head; cb; cb = cb->next)
                expected++;
        if (redisReaderFeed(io->shadow, buf, len) != REDIS_OK)
                return "protocol error from Redis";
        void *reply;
        const char *bad = NULL;
        while (!bad && redisReaderGetReply(io->shadow, &reply) == REDIS_OK && reply) {
                const redisReply *r = reply;
                if (r->type == REDIS_REPLY_ERROR) {
                        /* hiredis takes an unexpected error as the reason to
                         * disconnect, without asserting */
                } else if (expected) {
                        expected--;
                } else if (!sub || !(ac->c.flags & REDIS_SUBSCRIBED)) {
                        bad = "a reply from Redis nobody asked for";
                } else if (r->type == REDIS_REPLY_ARRAY &&
                           (r->elements < 2 || r->element[0]->type != REDIS_REPLY_STRING)) {
                        bad = "a malformed message from Redis";
                }
                freeReplyObject(reply);
        }
        if (!bad && io->shadow->err)
                bad = "protocol error from Redis";
        /* hiredis 0.14 buffers a reply of any announced size: what one
         * reply may hold is our bound, not Redis's. */
        if (!bad && io->shadow->len - io->shadow->pos > io->link->max_reply)
                bad = "reply from Redis too large";
        return bad;
}

/* redisAsyncHandleRead(), with the bytes checked on their way in. */
static void cl_io_read(struct cl_io *io)
{
        redisAsyncContext *ac = io->ac;
        if (!(ac->c.flags & REDIS_CONNECTED)) {
                redisAsyncHandleRead(ac); /* completes the connect */
                return;
        }
        char buf[16 * 1024];
        ssize_t n = read(ac->c.fd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                /* EOF or an error: hiredis reads it again and tears down */
                redisAsyncHandleRead(ac);
                return;
        }
        const char *bad = cl_io_check(io, buf, (size_t)n);
        if (bad) {
                cl_fail(io->link, bad);
                return;
        }
        if (redisReaderFeed(ac->c.reader, buf, (size_t)n) != REDIS_OK) {
                cl_fail(io->link, "protocol error from Redis");
                return;
        }
        redisProcessCallbacks(ac);
}

static void cl_io_events(tern_watch *wt, unsigned events, void *arg)
{
        struct cl_io *io = arg;
        (void)wt;
        io->in_callback = true;
        if (events & TERN_WATCH_DRAIN)
                cl_link_shutdown(io->link); /* frees this context too */
        if (io->ac && (events & TERN_WATCH_READ))
                cl_io_read(io);
        if (io->ac && (events & TERN_WATCH_WRITE) && (io->want & TERN_WATCH_WRITE))
                redisAsyncHandleWrite(io->ac);
        io->in_callback = false;
        if (!io->ac)
                free(io);
        chat_grace_release();
}

static int cl_io_attach(redisAsyncContext *ac, struct chat_cluster_link *link)
{
        struct cl_io *io = calloc(1, sizeof(*io));
        if (!io)
                return -ENOMEM;
        io->ac = ac;
        io->link = link;
        io->shadow = redisReaderCreate();
        if (!io->shadow) {
                free(io);
                return -ENOMEM;
        }
        io->watch = tern_loop_watch(link->w->loop, ac->c.fd, 0, cl_io_events, io);
        if (!io->watch) {
                int err = errno;
                redisReaderFree(io->shadow);
                free(io);
                return -err;
        }
        ac->ev.addRead = cl_io_add_read;
        ac->ev.delRead = cl_io_del_read;
        ac->ev.addWrite = cl_io_add_write;
        ac->ev.delWrite = cl_io_del_write;
        ac->ev.cleanup = cl_io_cleanup;
        ac->ev.data = io;
        return 0;
}

/* ---- telling the worker's clients ---- */

static void cl_tell(struct chat_cluster_link *link, const char *line)
{
        chat_fanout_tell_all(link->w, line, strlen(line));
        chat_fanout_settle(link->w);
}

/* ---- tables ---- */

static struct cl_chan *cl_chan_find(struct chat_cluster_link *link, const char *key)
{
        for (struct cl_chan *c = link->chans[cl_bucket(key)]; c; c = c->next)
                if (strcmp(c->key, key) == 0)
                        return c;
        return NULL;
}

static void cl_chan_remove(struct chat_cluster_link *link, struct cl_chan *ch)
{
        struct cl_chan **pp = &link->chans[cl_bucket(ch->key)];
        while (*pp != ch)
                pp = &(*pp)->next;
        *pp = ch->next;
        free(ch);
}

static struct cl_nick **cl_nick_slot(struct chat_cluster_link *link, const char *key)
{
        struct cl_nick **pp = &link->nicks[cl_bucket(key)];
        while (*pp && strcmp((*pp)->key, key) != 0)
                pp = &(*pp)->next;
        return pp;
}

/* ---- commands ---- */

static void cl_subscribe(struct chat_cluster_link *link, struct cl_chan *ch);

/* A line from another instance: one line, as tern-chat writes them. */
static bool cl_line_ok(const struct chat_worker *w, const char *line, size_t len)
{
        return len >= 2 && len <= w->cs->scratch_cap && line[len - 2] == '\r' &&
               line[len - 1] == '\n' && !memchr(line, '\n', len - 1) &&
               !memchr(line, '\r', len - 2);
}

/* "KEY LINE" on this instance's own channel: a private line. */
static void cl_on_inst(struct chat_cluster_link *link, const redisReply *msg)
{
        struct chat_worker *w = link->w;
        if (msg->type != REDIS_REPLY_STRING) {
                cl_fail(link, "unexpected message type");
                return;
        }
        const char *sp =
            memchr(msg->str, ' ', msg->len < CHAT_NAME_MAX + 1 ? msg->len : CHAT_NAME_MAX + 1);
        if (!sp || !chat_name_valid(msg->str, (size_t)(sp - msg->str)) ||
            !cl_line_ok(w, sp + 1, msg->len - (size_t)(sp - msg->str) - 1)) {
                tern_warn("tern-chat: worker %d: malformed private line dropped", w->index);
                return;
        }
        char key[CHAT_NAME_MAX + 1];
        memcpy(key, msg->str, (size_t)(sp - msg->str));
        key[sp - msg->str] = '\0';
        if (link->cc->on_pm)
                link->cc->on_pm(w, key, sp + 1, msg->len - (size_t)(sp - msg->str) - 1);
}

/* Everything the subscriber connection receives: messages, and the
 * confirmations of SUBSCRIBE and UNSUBSCRIBE. */
static void cl_on_sub(redisAsyncContext *ac, void *reply, void *priv)
{
        struct chat_cluster_link *link = priv;
        redisReply *r = reply;
        (void)ac;
        if (!r || ac != link->sub)
                return; /* freed, or an old connection's leftovers */
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_STRING) {
                cl_fail(link, "unexpected reply on the subscriber connection");
                return;
        }
        const char *kind = r->element[0]->str;
        const redisReply *chan = r->element[1];
        if (chan->len > sizeof(CL_INST_PREFIX) - 1 &&
            memcmp(chan->str, CL_INST_PREFIX, sizeof(CL_INST_PREFIX) - 1) == 0) {
                if (strcmp(kind, "message") == 0)
                        cl_on_inst(link, r->element[2]);
                return;
        }
        size_t plen = sizeof(CL_ROOM_PREFIX) - 1;
        if (chan->len <= plen || chan->len > plen + CHAT_NAME_MAX ||
            memcmp(chan->str, CL_ROOM_PREFIX, plen) != 0)
                return; /* not one of ours */
        struct cl_chan *ch = cl_chan_find(link, chan->str + plen);
        if (strcmp(kind, "unsubscribe") == 0) {
                if (!ch || ch->state != CL_CHAN_LEAVING)
                        return;
                if (ch->want)
                        cl_subscribe(link, ch); /* rejoined while leaving */
                else
                        cl_chan_remove(link, ch);
                return;
        }
        if (strcmp(kind, "message") != 0 || !ch || ch->state != CL_CHAN_ON || !ch->want)
                return;
        const redisReply *msg = r->element[2];
        if (msg->type != REDIS_REPLY_STRING) {
                cl_fail(link, "unexpected message type");
                return;
        }
        struct chat_worker *w = link->w;
        if (msg->len < CL_TAG_LEN + 3 || msg->str[CL_TAG_LEN] != ' ')
                return;
        if (memcmp(msg->str, w->cs->tag, CL_TAG_LEN) == 0)
                return; /* ours: delivered here without Redis */
        const char *line = msg->str + CL_TAG_LEN + 1;
        size_t len = msg->len - CL_TAG_LEN - 1;
        /* Another instance sanitized it; a line that is not one line (or
         * longer than ours may be) was not written by tern-chat. */
        if (!cl_line_ok(w, line, len)) {
                tern_warn("tern-chat: worker %d: malformed line on %s dropped", w->index,
                          chan->str);
                return;
        }
        struct chat_lroom *lr = chat_lroom_find(w, ch->room_id);
        if (!lr)
                return;
        chat_lroom_deliver(w, lr, line, len);
        chat_fanout_settle(w);
}

static void cl_subscribe(struct chat_cluster_link *link, struct cl_chan *ch)
{
        ch->state = CL_CHAN_ON;
        if (redisAsyncCommand(link->sub, cl_on_sub, link, "SUBSCRIBE " CL_ROOM_PREFIX "%s",
                              ch->key) != REDIS_OK)
                ch->state = CL_CHAN_OFF; /* the context is failing; up resends */
}

/* A reply that must be an integer (PUBLISH, our scripts): anything else is
 * not Redis as we know it. */
static bool cl_int_reply(struct chat_cluster_link *link, redisAsyncContext *ac, const redisReply *r,
                         const char *what)
{
        if (!r)
                return false;
        if (r->type == REDIS_REPLY_INTEGER)
                return true;
        if (ac == link->pub) {
                char why[160];
                snprintf(why, sizeof(why), "unexpected reply to %s%s%.100s", what,
                         r->type == REDIS_REPLY_ERROR ? ": " : "",
                         r->type == REDIS_REPLY_ERROR ? r->str : "");
                cl_fail(link, why);
        }
        return false;
}

static void cl_on_pub(redisAsyncContext *ac, void *reply, void *priv)
{
        struct chat_cluster_link *link = ac->data;
        size_t len = (size_t)(uintptr_t)priv;
        link->inflight -= len;
        if (!reply) {
                /* Lost with the connection: it may or may not have crossed,
                 * and it is never resent (it would arrive out of order). */
                link->unconfirmed++;
                return;
        }
        cl_int_reply(link, ac, reply, "PUBLISH");
}

static void cl_on_refresh(redisAsyncContext *ac, void *reply, void *priv)
{
        struct chat_cluster_link *link = ac->data;
        (void)priv;
        if (cl_int_reply(link, ac, reply, "a nickname refresh") &&
            ((redisReply *)reply)->integer != 1)
                tern_warn("tern-chat: worker %d: a nickname of ours is held by another "
                          "instance (it expired during an outage)",
                          link->w->index);
}

static void cl_claim_refresh(struct chat_cluster_link *link, const char *key)
{
        (void)redisAsyncCommand(link->pub, cl_on_refresh, NULL,
                                "EVAL %s 1 " CL_NICK_PREFIX "%s %s %d", cl_claim_lua, key,
                                link->w->cs->tag, CHAT_CLUSTER_NICK_TTL_MS);
}

static void cl_release(struct chat_cluster_link *link, const char *key)
{
        if (link->up)
                (void)redisAsyncCommand(link->pub, NULL, NULL, "EVAL %s 1 " CL_NICK_PREFIX "%s %s",
                                        cl_release_lua, key, link->w->cs->tag);
}

static void cl_on_alive(redisAsyncContext *ac, void *reply, void *priv)
{
        struct chat_cluster_link *link = ac->data;
        (void)priv;
        if (ac == link->pub && reply)
                link->alive_sent = 0;
        cl_int_reply(link, ac, reply, "a heartbeat");
}

static void cl_alive(struct chat_cluster_link *link)
{
        if (!link->alive_sent)
                link->alive_sent = tern_loop_now(link->w->loop);
        (void)redisAsyncCommand(link->pub, cl_on_alive, NULL, "EVAL %s 2 " CL_MEMBERS " %s %d",
                                cl_alive_lua, link->hkey, CHAT_CLUSTER_NICK_TTL_MS);
}

/* ---- link life ---- */

static void cl_on_up(struct chat_cluster_link *link)
{
        link->up = true;
        link->attempts = 0;
        /* Our member hash from scratch: Redis may have kept an old one (a
         * short outage) or lost it (a restart); either way this is exact. */
        (void)redisAsyncCommand(link->pub, NULL, NULL, "DEL %s", link->hkey);
        for (unsigned i = 0; i < CL_BUCKETS; i++)
                for (struct cl_member *m = link->members[i]; m; m = m->next)
                        (void)redisAsyncCommand(link->pub, NULL, NULL, "HSET %s %s %s", link->hkey,
                                                m->name, m->room);
        cl_alive(link);
        if (link->w->index == 0) /* one worker takes the instance's private lines */
                (void)redisAsyncCommand(link->sub, cl_on_sub, link,
                                        "SUBSCRIBE " CL_INST_PREFIX "%s", link->w->cs->tag);
        for (unsigned i = 0; i < CL_BUCKETS; i++) {
                for (struct cl_chan *c = link->chans[i]; c; c = c->next)
                        if (c->want)
                                cl_subscribe(link, c);
                for (struct cl_nick *n = link->nicks[i]; n; n = n->next)
                        cl_claim_refresh(link, n->key);
        }
        tern_info("tern-chat: worker %d: cluster link up (redis %s:%u)", link->w->index,
                  link->cc->host, link->cc->port);
        if (link->told_down) {
                link->told_down = false;
                cl_tell(link,
                        "* cluster link is back: other servers' rooms are in reach again\r\n");
        }
}

static void cl_on_connect(const redisAsyncContext *ac, int status)
{
        struct chat_cluster_link *link = ac->data;
        if (ac != link->pub && ac != link->sub)
                return;
        if (status != REDIS_OK) {
                /* hiredis frees it after this returns */
                if (ac == link->pub)
                        link->pub = NULL;
                else
                        link->sub = NULL;
                cl_fail(link, ac->errstr);
                return;
        }
        if (ac == link->pub)
                link->pub_ok = true;
        else
                link->sub_ok = true;
        if (link->pub_ok && link->sub_ok)
                cl_on_up(link);
        chat_grace_release();
}

static void cl_on_disconnect(const redisAsyncContext *ac, int status)
{
        struct chat_cluster_link *link = ac->data;
        if (ac != link->pub && ac != link->sub)
                return; /* one we let go of */
        if (ac == link->pub)
                link->pub = NULL;
        else
                link->sub = NULL;
        cl_fail(link, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static redisAsyncContext *cl_connect(struct chat_cluster_link *link)
{
        redisAsyncContext *ac = redisAsyncConnect(link->cc->host, link->cc->port);
        if (!ac)
                return NULL;
        if (ac->err || cl_io_attach(ac, link) < 0) {
                redisAsyncFree(ac);
                return NULL;
        }
        ac->data = link;
        redisAsyncSetConnectCallback(ac, cl_on_connect);
        redisAsyncSetDisconnectCallback(ac, cl_on_disconnect);
        return ac;
}

/* xorshift32: jitter needs spread, not secrecy. */
static uint32_t cl_random(struct chat_cluster_link *link)
{
        uint32_t x = link->rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return link->rng = x;
}

static void cl_retry_later(struct chat_cluster_link *link)
{
        if (link->stopping || tern_timer_armed(&link->retry))
                return;
        unsigned shift = link->attempts < 8 ? link->attempts : 8;
        uint64_t ms = (uint64_t)CHAT_CLUSTER_BACKOFF_MIN_MS << shift;
        if (ms > CHAT_CLUSTER_BACKOFF_MAX_MS)
                ms = CHAT_CLUSTER_BACKOFF_MAX_MS;
        /* Jitter, so that instances and workers cut off together do not
         * all come back in the same millisecond. */
        ms = ms / 2 + cl_random(link) % (ms / 2 + 1);
        link->attempts++;
        tern_loop_timer_start(link->w->loop, &link->retry, ms, 0);
}

static void cl_start(struct chat_cluster_link *link)
{
        if (link->stopping)
                return;
        link->pub = cl_connect(link);
        link->sub = link->pub ? cl_connect(link) : NULL;
        if (!link->pub || !link->sub)
                cl_fail(link, "cannot connect");
}

static void cl_retry_cb(struct tern_timer *t, void *arg)
{
        (void)t;
        cl_start(arg);
        chat_grace_release();
}

/* Lets both connections go (pending callbacks get NULL replies). */
static void cl_drop_contexts(struct chat_cluster_link *link)
{
        redisAsyncContext *pub = link->pub, *sub = link->sub;
        link->pub = link->sub = NULL;
        link->pub_ok = link->sub_ok = false;
        link->up = false;
        link->alive_sent = 0;
        if (pub)
                redisAsyncFree(pub); /* deferred by hiredis inside its callbacks */
        if (sub)
                redisAsyncFree(sub);
}

static void cl_fail(struct chat_cluster_link *link, const char *why)
{
        bool was_up = link->up;
        cl_drop_contexts(link);
        /* Redis forgot our subscriptions with the connection. */
        for (unsigned i = 0; i < CL_BUCKETS; i++) {
                struct cl_chan **pp = &link->chans[i];
                while (*pp) {
                        struct cl_chan *c = *pp;
                        if (!c->want) {
                                *pp = c->next;
                                free(c);
                                continue;
                        }
                        c->state = CL_CHAN_OFF;
                        pp = &c->next;
                }
        }
        if (link->stopping)
                return;
        if (was_up || link->attempts == 0)
                tern_warn("tern-chat: worker %d: cluster link down (redis %s:%u): %s; retrying",
                          link->w->index, link->cc->host, link->cc->port, why ? why : "?");
        cl_retry_later(link);
        if (was_up && !link->told_down) {
                link->told_down = true;
                cl_tell(link, "* cluster link down: only this server's members are in reach\r\n");
        }
}

static void cl_link_shutdown(struct chat_cluster_link *link)
{
        link->stopping = true;
        tern_loop_timer_stop(link->w->loop, &link->retry);
        tern_loop_timer_stop(link->w->loop, &link->beat);
        cl_drop_contexts(link);
}

static void cl_beat_cb(struct tern_timer *t, void *arg)
{
        (void)t;
        struct chat_cluster_link *link = arg;
        /* hiredis 0.14 has no reply timeouts: a Redis that stopped answering
         * without closing (stopped, or a black hole) shows here, as replies
         * come back in order on the command connection. */
        if (link->up && link->alive_sent &&
            tern_loop_now(link->w->loop) - link->alive_sent > 2 * CHAT_CLUSTER_HEARTBEAT_MS)
                cl_fail(link, "no answer from Redis");
        if (link->up)
                cl_alive(link);
        if (link->up)
                for (unsigned i = 0; i < CL_BUCKETS; i++)
                        for (struct cl_nick *n = link->nicks[i]; n; n = n->next)
                                cl_claim_refresh(link, n->key);
        chat_grace_release();
}

/* ---- the interface ---- */

int chat_cluster_init(struct chat_server *cs)
{
        if (!cs->opts.cluster)
                return 0;
        struct chat_cluster *cc = calloc(1, sizeof(*cc));
        if (!cc)
                return -ENOMEM;
        if (chat_cluster_url(cs->opts.cluster, cc->host, sizeof(cc->host), &cc->port) < 0) {
                free(cc);
                return -EINVAL;
        }
        cs->opts.cluster = NULL; /* borrowed; the parsed copy is ours */
        uint32_t tag;
        if (getrandom(&tag, sizeof(tag), 0) != sizeof(tag))
                tag = (uint32_t)(uintptr_t)cc ^ (uint32_t)getpid();
        snprintf(cs->tag, sizeof(cs->tag), "%08x", tag);
        cc->links = calloc((size_t)cs->nworkers, sizeof(*cc->links));
        if (!cc->links) {
                free(cc);
                return -ENOMEM;
        }
        for (int i = 0; i < cs->nworkers; i++) {
                struct chat_cluster_link *link = &cc->links[i];
                link->w = &cs->workers[i];
                link->cc = cc;
                link->cap = CL_TAG_LEN + 1 + cs->scratch_cap;
                link->rng = (tag ^ (uint32_t)(i * 0x9e3779b9u)) | 1u; /* never 0 */
                link->max_reply = CHAT_CLUSTER_MAX_REPLY;
                if (link->max_reply < 2 * link->cap + 4096)
                        link->max_reply = 2 * link->cap + 4096;
                link->buf = malloc(link->cap);
                if (!link->buf) {
                        cs->cluster = cc;
                        chat_cluster_destroy(cs);
                        return -ENOMEM;
                }
                snprintf(link->hkey, sizeof(link->hkey), CL_PREFIX "members:%s:%d", cs->tag, i);
                tern_timer_init(&link->retry, cl_retry_cb, link);
                tern_timer_init(&link->beat, cl_beat_cb, link);
                cs->workers[i].link = link;
        }
        cs->cluster = cc;
        return 0;
}

void chat_cluster_destroy(struct chat_server *cs)
{
        struct chat_cluster *cc = cs->cluster;
        if (!cc)
                return;
        uint64_t lost = 0, unconfirmed = 0;
        for (int i = 0; i < cs->nworkers; i++) {
                struct chat_cluster_link *link = &cc->links[i];
                lost += link->lost;
                unconfirmed += link->unconfirmed;
                for (unsigned b = 0; b < CL_BUCKETS; b++) {
                        while (link->chans[b]) {
                                struct cl_chan *c = link->chans[b];
                                link->chans[b] = c->next;
                                free(c);
                        }
                        while (link->members[b]) {
                                struct cl_member *m = link->members[b];
                                link->members[b] = m->next;
                                free(m);
                        }
                        while (link->nicks[b]) {
                                struct cl_nick *n = link->nicks[b];
                                link->nicks[b] = n->next;
                                free(n);
                        }
                }
                free(link->buf);
                cs->workers[i].link = NULL;
        }
        tern_info("tern-chat: cluster: %llu line(s) did not cross to other instances (link down "
                  "or publish queue full), %llu unconfirmed when a connection closed",
                  (unsigned long long)lost, (unsigned long long)unconfirmed);
        free(cc->links);
        free(cc);
        cs->cluster = NULL;
}

void chat_cluster_worker_start(struct chat_worker *w)
{
        struct chat_cluster_link *link = w->link;
        if (!link)
                return;
        tern_loop_timer_start(w->loop, &link->beat, CHAT_CLUSTER_HEARTBEAT_MS,
                              CHAT_CLUSTER_HEARTBEAT_MS);
        cl_start(link);
}

void chat_cluster_worker_stop(struct chat_worker *w)
{
        if (w->link)
                cl_link_shutdown(w->link);
}

bool chat_cluster_up(const struct chat_worker *w)
{
        return w->link && w->link->up;
}

void chat_cluster_publish(struct chat_worker *w, const struct chat_room *room, const char *data,
                          size_t len)
{
        struct chat_cluster_link *link = w->link;
        if (!link)
                return;
        /* Down, or Redis is not keeping up: the line stays on this instance.
         * Never queued for later: it would arrive after newer lines. */
        if (!link->up || link->inflight + len > CHAT_CLUSTER_PUB_QUEUE ||
            CL_TAG_LEN + 1 + len > link->cap) {
                __atomic_add_fetch(&link->lost, 1, __ATOMIC_RELAXED);
                return;
        }
        memcpy(link->buf, w->cs->tag, CL_TAG_LEN);
        link->buf[CL_TAG_LEN] = ' ';
        memcpy(link->buf + CL_TAG_LEN + 1, data, len);
        if (redisAsyncCommand(link->pub, cl_on_pub, (void *)(uintptr_t)len,
                              "PUBLISH " CL_ROOM_PREFIX "%s %b", room->key, link->buf,
                              CL_TAG_LEN + 1 + len) != REDIS_OK) {
                __atomic_add_fetch(&link->lost, 1, __ATOMIC_RELAXED);
                return;
        }
        link->inflight += len;
}

void chat_cluster_room_open(struct chat_worker *w, const struct chat_room *room)
{
        struct chat_cluster_link *link = w->link;
        if (!link)
                return;
        struct cl_chan *ch = cl_chan_find(link, room->key);
        if (!ch) {
                ch = calloc(1, sizeof(*ch));
                if (!ch) {
                        tern_warn("tern-chat: worker %d: out of memory: #%s stays local", w->index,
                                  room->name);
                        return;
                }
                memcpy(ch->key, room->key, sizeof(ch->key));
                unsigned b = cl_bucket(ch->key);
                ch->next = link->chans[b];
                link->chans[b] = ch;
        }
        ch->want = true;
        ch->room_id = room->id;
        if (link->up && ch->state == CL_CHAN_OFF)
                cl_subscribe(link, ch);
        /* CL_CHAN_LEAVING: subscribes again once the UNSUBSCRIBE is
         * confirmed (hiredis drops a channel's callback at that point). */
}

void chat_cluster_room_close(struct chat_worker *w, const struct chat_room *room)
{
        struct chat_cluster_link *link = w->link;
        if (!link)
                return;
        struct cl_chan *ch = cl_chan_find(link, room->key);
        if (!ch || ch->room_id != room->id)
                return;
        ch->want = false;
        /* Down or stopping: Redis forgot the subscription with the
         * connection (the state is stale until cl_fail resets it). */
        if (ch->state == CL_CHAN_OFF || !link->up) {
                cl_chan_remove(link, ch);
        } else if (ch->state == CL_CHAN_ON) {
                ch->state = CL_CHAN_LEAVING;
                (void)redisAsyncCommand(link->sub, NULL, NULL, "UNSUBSCRIBE " CL_ROOM_PREFIX "%s",
                                        ch->key);
        }
}

static void cl_on_claim(redisAsyncContext *ac, void *reply, void *priv)
{
        struct chat_cluster_claim *c = priv;
        struct chat_cluster_link *link = c->link;
        redisReply *r = reply;
        int result;
        if (!r)
                result = -ENOTCONN;
        else if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0)
                result = 0;
        else if (r->type == REDIS_REPLY_NIL)
                result = -EEXIST;
        else
                result = -EPROTO;
        if (result == 0) {
                struct cl_nick **pp = cl_nick_slot(link, c->key);
                if (c->cancelled) {
                        cl_release(link, c->key);
                } else if (!*pp) {
                        struct cl_nick *n = calloc(1, sizeof(*n));
                        if (n) {
                                memcpy(n->key, c->key, sizeof(n->key));
                                *pp = n;
                        } /* else not refreshed: it expires, the name stays local */
                }
        }
        if (!c->cancelled)
                c->cb(c->arg, result == -EPROTO ? -ENOTCONN : result);
        free(c);
        if (result == -EPROTO && ac == link->pub)
                cl_fail(link, "unexpected reply to SET NX");
}

struct chat_cluster_claim *chat_cluster_nick_claim(struct chat_worker *w, const char *key,
                                                   chat_cluster_claim_cb cb, void *arg)
{
        struct chat_cluster_link *link = w->link;
        if (!link || !link->up) {
                errno = ENOTCONN;
                return NULL;
        }
        struct chat_cluster_claim *c = calloc(1, sizeof(*c));
        if (!c) {
                errno = ENOMEM;
                return NULL;
        }
        c->link = link;
        c->cb = cb;
        c->arg = arg;
        snprintf(c->key, sizeof(c->key), "%s", key);
        if (redisAsyncCommand(link->pub, cl_on_claim, c, "SET " CL_NICK_PREFIX "%s %s NX PX %d",
                              c->key, w->cs->tag, CHAT_CLUSTER_NICK_TTL_MS) != REDIS_OK) {
                free(c);
                errno = ENOTCONN;
                return NULL;
        }
        return c;
}

void chat_cluster_claim_cancel(struct chat_cluster_claim *c)
{
        if (c)
                c->cancelled = true; /* its reply (or NULL) always comes, and frees it */
}

void chat_cluster_nick_adopt(struct chat_worker *w, const char *key)
{
        struct chat_cluster_link *link = w->link;
        if (!link)
                return;
        struct cl_nick **pp = cl_nick_slot(link, key);
        if (*pp)
                return;
        struct cl_nick *n = calloc(1, sizeof(*n));
        if (!n)
                return; /* unreachable by /msg from elsewhere, nothing worse */
        snprintf(n->key, sizeof(n->key), "%s", key);
        *pp = n;
        if (link->up) /* else registered when the link comes up */
                cl_claim_refresh(link, n->key);
}

void chat_cluster_nick_release(struct chat_worker *w, const char *key)
{
        struct chat_cluster_link *link = w->link;
        if (!link)
                return;
        struct cl_nick **pp = cl_nick_slot(link, key);
        struct cl_nick *n = *pp;
        if (!n)
                return; /* a guest name, or never won */
        *pp = n->next;
        cl_release(link, n->key); /* while down: it expires by itself */
        free(n);
}

uint64_t chat_cluster_lost(const struct chat_server *cs)
{
        uint64_t n = 0;
        for (int i = 0; cs->cluster && i < cs->nworkers; i++)
                n += __atomic_load_n(&cs->cluster->links[i].lost, __ATOMIC_RELAXED);
        return n;
}

/* ---- the cluster-wide view of members; private lines ---- */

static struct cl_member **cl_member_slot(struct chat_cluster_link *link, const char *nick)
{
        char key[CHAT_NAME_MAX + 1];
        size_t i = 0;
        for (; nick[i] && i < CHAT_NAME_MAX; i++)
                key[i] = (char)((nick[i] >= 'A' && nick[i] <= 'Z') ? nick[i] + 32 : nick[i]);
        key[i] = '\0';
        struct cl_member **pp = &link->members[cl_bucket(key)];
        while (*pp && strcmp((*pp)->key, key) != 0)
                pp = &(*pp)->next;
        return pp;
}

void chat_cluster_member_set(struct chat_worker *w, const char *nick, const char *room)
{
        struct chat_cluster_link *link = w->link;
        if (!link)
                return;
        struct cl_member **pp = cl_member_slot(link, nick);
        struct cl_member *m = *pp;
        if (m && strcmp(m->name, nick) != 0 && link->up) /* a case-only rename */
                (void)redisAsyncCommand(link->pub, NULL, NULL, "HDEL %s %s", link->hkey, m->name);
        if (!m) {
                m = calloc(1, sizeof(*m));
                if (!m)
                        return; /* not in the cluster's /who: better than nothing */
                for (size_t i = 0; i <= CHAT_NAME_MAX && nick[i]; i++)
                        m->key[i] =
                            (char)((nick[i] >= 'A' && nick[i] <= 'Z') ? nick[i] + 32 : nick[i]);
                unsigned b = cl_bucket(m->key);
                m->next = link->members[b];
                link->members[b] = m;
        }
        snprintf(m->name, sizeof(m->name), "%s", nick);
        snprintf(m->room, sizeof(m->room), "%s", room);
        if (link->up)
                (void)redisAsyncCommand(link->pub, NULL, NULL, "HSET %s %s %s", link->hkey, m->name,
                                        m->room);
}

void chat_cluster_member_del(struct chat_worker *w, const char *nick)
{
        struct chat_cluster_link *link = w->link;
        if (!link)
                return;
        struct cl_member **pp = cl_member_slot(link, nick);
        struct cl_member *m = *pp;
        if (!m)
                return;
        *pp = m->next;
        if (link->up)
                (void)redisAsyncCommand(link->pub, NULL, NULL, "HDEL %s %s", link->hkey, m->name);
        free(m);
}

static void cl_on_list(redisAsyncContext *ac, void *reply, void *priv)
{
        struct chat_cluster_claim *c = priv;
        redisReply *r = reply;
        bool bad = r && (r->type != REDIS_REPLY_ARRAY || r->elements % 2);
        const char **strs = NULL;
        size_t n = 0;
        if (r && !bad && r->elements) {
                strs = calloc(r->elements, sizeof(*strs));
                for (size_t i = 0; strs && i < r->elements; i++) {
                        if (r->element[i]->type != REDIS_REPLY_STRING ||
                            r->element[i]->len > CHAT_NAME_MAX) {
                                bad = true;
                                break;
                        }
                        strs[n++] = r->element[i]->str;
                }
        }
        if (!c->cancelled) {
                if (!r || bad || (r->elements && !strs))
                        c->list_cb(c->arg, !r || bad ? -ENOTCONN : -ENOMEM, 0, NULL);
                else
                        c->list_cb(c->arg, 0, n, strs);
        }
        struct chat_cluster_link *link = c->link;
        free(strs);
        free(c);
        if (bad && ac == link->pub)
                cl_fail(link, "unexpected reply to the member list");
}

struct chat_cluster_claim *chat_cluster_members(struct chat_worker *w, const char *room,
                                                chat_cluster_list_cb cb, void *arg)
{
        struct chat_cluster_link *link = w->link;
        if (!link || !link->up) {
                errno = ENOTCONN;
                return NULL;
        }
        struct chat_cluster_claim *c = calloc(1, sizeof(*c));
        if (!c) {
                errno = ENOMEM;
                return NULL;
        }
        c->link = link;
        c->list_cb = cb;
        c->arg = arg;
        /* A hash is live while its worker's heartbeat is younger than the
         * nickname expiry, the same bound as for names. */
        if (redisAsyncCommand(link->pub, cl_on_list, c, "EVAL %s 1 " CL_MEMBERS " %d %s",
                              cl_list_lua, CHAT_CLUSTER_NICK_TTL_MS,
                              room ? room : "") != REDIS_OK) {
                free(c);
                errno = ENOTCONN;
                return NULL;
        }
        return c;
}

static void cl_on_pm(redisAsyncContext *ac, void *reply, void *priv)
{
        struct chat_cluster_claim *c = priv;
        struct chat_cluster_link *link = c->link;
        redisReply *r = reply;
        bool ok = cl_int_reply(link, ac, r, "a private line");
        if (!c->cancelled)
                c->cb(c->arg, !ok ? -ENOTCONN : r->integer > 0 ? 0 : -ENOENT);
        free(c);
}

struct chat_cluster_claim *chat_cluster_pm(struct chat_worker *w, const char *key, const char *line,
                                           size_t len, chat_cluster_claim_cb cb, void *arg)
{
        struct chat_cluster_link *link = w->link;
        if (!link || !link->up) {
                errno = ENOTCONN;
                return NULL;
        }
        struct chat_cluster_claim *c = calloc(1, sizeof(*c));
        if (!c) {
                errno = ENOMEM;
                return NULL;
        }
        c->link = link;
        c->cb = cb;
        c->arg = arg;
        size_t klen = strlen(key);
        if (klen + 1 + len > link->cap) {
                free(c);
                errno = EMSGSIZE;
                return NULL;
        }
        memcpy(link->buf, key, klen);
        link->buf[klen] = ' ';
        memcpy(link->buf + klen + 1, line, len);
        if (redisAsyncCommand(link->pub, cl_on_pm, c, "EVAL %s 1 " CL_NICK_PREFIX "%s %b",
                              cl_pm_lua, key, link->buf, klen + 1 + len) != REDIS_OK) {
                free(c);
                errno = ENOTCONN;
                return NULL;
        }
        return c;
}

void chat_cluster_set_pm_handler(struct chat_server *cs, chat_cluster_pm_cb cb)
{
        if (cs->cluster)
                cs->cluster->on_pm = cb;
}

#endif
