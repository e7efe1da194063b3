/*
 * hiredis_tern.h: runs hiredis's async API (hiredis/async.h) on a tern loop.
 * Header-only, like hiredis's own adapters/ *.h:
 *
 *     redisAsyncContext *ac = redisAsyncConnect("127.0.0.1", 6379);
 *     if (ac->err || redis_tern_attach(ac, loop) < 0)
 *             ... redisAsyncFree(ac) ...
 *     redisAsyncSetConnectCallback(ac, on_connect);   (after attaching)
 *
 * One watch (net/watch.h) per context, level-triggered, as hiredis expects:
 * its handlers do one read or one write per call. hiredis's add/del hooks
 * change the watch's interest; its cleanup hook, which hiredis may call from
 * inside redisAsyncHandleRead/Write (a reply callback that disconnects, a
 * peer that hung up), frees the watch, which tern allows from the watch's
 * own callback. With hiredis 1.x, whose contexts ask for timers
 * (scheduleTimer: redisAsyncSetTimeout, connect timeouts), a tern timer
 * calls redisAsyncHandleTimeout; 0.14 (Debian 12) has no timeouts to serve.
 *
 * Threads: everything on the loop's thread ([loop] in loop.h), as hiredis
 * contexts are not thread-safe anyway. Free the contexts (redisAsyncFree,
 * or let them disconnect) before tern_loop_free(): the loop frees watches
 * left behind, and a later cleanup would free one twice.
 */
#ifndef HIREDIS_TERN_H
#define HIREDIS_TERN_H

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <tern/tern.h>

#if HIREDIS_MAJOR >= 1
#define REDIS_TERN_TIMERS 1
#else
#define REDIS_TERN_TIMERS 0
#endif

/* The adapter's state, ac->ev.data. */
struct redis_tern {
        redisAsyncContext *ac; /* NULL once hiredis called cleanup */
        tern_loop *loop;
        tern_watch *watch;
        unsigned want;    /* TERN_WATCH_READ | TERN_WATCH_WRITE, as hiredis asked */
        bool in_callback; /* cleanup from inside our callback: free on return */
#if REDIS_TERN_TIMERS
        struct tern_timer timer;
#endif
};

/* Sets bits @p add and clears bits @p del of the interest. @p privdata is
 * NULL after cleanup (hiredis 1.x keeps a context with REDIS_NO_AUTO_FREE
 * and its hooks). hiredis returns nothing from its hooks; a failed
 * epoll_ctl() here (ENOMEM, or a descriptor closed without cleanup) leaves
 * the old interest, and hiredis's own error path takes over. */
static void redis_tern__update(void *privdata, unsigned add, unsigned del)
{
        struct redis_tern *rt = privdata;
        if (!rt || !rt->watch)
                return;
        rt->want = (rt->want | add) & ~del;
        (void)tern_watch_set(rt->watch, rt->want);
}

static void redis_tern__add_read(void *privdata)
{
        redis_tern__update(privdata, TERN_WATCH_READ, 0);
}

static void redis_tern__del_read(void *privdata)
{
        redis_tern__update(privdata, 0, TERN_WATCH_READ);
}

static void redis_tern__add_write(void *privdata)
{
        redis_tern__update(privdata, TERN_WATCH_WRITE, 0);
}

static void redis_tern__del_write(void *privdata)
{
        redis_tern__update(privdata, 0, TERN_WATCH_WRITE);
}

/* hiredis is done with the context: from redisAsyncFree(), or from inside
 * one of its handlers that we called (then rt lives until we return). */
static void redis_tern__cleanup(void *privdata)
{
        struct redis_tern *rt = privdata;
        if (!rt)
                return;
        tern_watch_free(rt->watch); /* safe inside the watch's own callback */
        rt->watch = NULL;
#if REDIS_TERN_TIMERS
        (void)tern_loop_timer_stop(rt->loop, &rt->timer);
#endif
        rt->ac->ev.data = NULL;
        rt->ac = NULL;
        if (!rt->in_callback)
                free(rt);
}

static void redis_tern__on_events(tern_watch *w, unsigned events, void *arg)
{
        struct redis_tern *rt = arg;
        (void)w;
        rt->in_callback = true;
        /* The loop is stopping: disconnect gracefully. hiredis sends what is
         * queued, waits for the replies still due, then calls cleanup,
         * which frees the watch and lets the loop finish its drain. */
        if (events & TERN_WATCH_DRAIN)
                redisAsyncDisconnect(rt->ac);
        if (rt->ac && (events & TERN_WATCH_READ))
                redisAsyncHandleRead(rt->ac);
        /* The read may have freed the context, or hiredis may no longer
         * want to write. */
        if (rt->ac && (events & TERN_WATCH_WRITE) && (rt->want & TERN_WATCH_WRITE))
                redisAsyncHandleWrite(rt->ac);
        rt->in_callback = false;
        if (!rt->ac)
                free(rt);
}

#if REDIS_TERN_TIMERS
static void redis_tern__on_timer(struct tern_timer *t, void *arg)
{
        struct redis_tern *rt = arg;
        (void)t;
        rt->in_callback = true;
        redisAsyncHandleTimeout(rt->ac); /* may free the context */
        rt->in_callback = false;
        if (!rt->ac)
                free(rt);
}

/* hiredis re-arms on every add hook while a timeout is set; tv is relative. */
static void redis_tern__schedule_timer(void *privdata, struct timeval tv)
{
        struct redis_tern *rt = privdata;
        if (!rt)
                return;
        uint64_t ms = (uint64_t)tv.tv_sec * 1000u + ((uint64_t)tv.tv_usec + 999u) / 1000u;
        (void)tern_loop_timer_start(rt->loop, &rt->timer, ms, 0);
}
#endif

/**
 * redis_tern_attach - serve @p ac's socket from @p loop. [loop]
 * Call it right after redisAsyncConnect*() succeeded (ac->err == 0) and
 * before redisAsyncSetConnectCallback(), which asks for a write event.
 * Returns 0; -EINVAL if @p ac is NULL or failed; -EALREADY if @p ac is
 * already attached to an event library; -ENOMEM; or tern_loop_watch()'s
 * error (-ESHUTDOWN on a draining loop, -EBADF, ...). On an error @p ac is
 * untouched and still the caller's to free.
 */
static inline int redis_tern_attach(redisAsyncContext *ac, tern_loop *loop)
{
        if (!ac || ac->err || ac->c.fd < 0)
                return -EINVAL;
        if (ac->ev.data)
                return -EALREADY;
        struct redis_tern *rt = calloc(1, sizeof(*rt));
        if (!rt)
                return -ENOMEM;
        rt->ac = ac;
        rt->loop = loop;
        rt->watch = tern_loop_watch(loop, ac->c.fd, 0, redis_tern__on_events, rt);
        if (!rt->watch) {
                int err = errno;
                free(rt);
                return -err;
        }
#if REDIS_TERN_TIMERS
        tern_timer_init(&rt->timer, redis_tern__on_timer, rt);
        ac->ev.scheduleTimer = redis_tern__schedule_timer;
#endif
        ac->ev.addRead = redis_tern__add_read;
        ac->ev.delRead = redis_tern__del_read;
        ac->ev.addWrite = redis_tern__add_write;
        ac->ev.delWrite = redis_tern__del_write;
        ac->ev.cleanup = redis_tern__cleanup;
        ac->ev.data = rt;
        return 0;
}

#endif
