/*
 * Watches: any file descriptor on a loop, level-triggered, for libraries
 * that own their sockets (hiredis, c-ares, libpq). Their read and write
 * handlers do one read or one write per call and expect to be called again
 * while the socket stays ready, which is level-triggered epoll's contract;
 * connections, which drain their sockets themselves, stay edge-triggered.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "fault_internal.h"
#include "live_internal.h"
#include "loop_internal.h"
#include "watch.h"

struct tern_watch {
        struct tern__io io; /* first: the loop hands us &io */
        unsigned events;
        tern_watch_cb cb;
        void *arg;
};

static uint32_t epoll_mask(unsigned events)
{
        return (events & TERN_WATCH_READ ? EPOLLIN | EPOLLRDHUP : 0u) |
               (events & TERN_WATCH_WRITE ? EPOLLOUT : 0u);
}

static void on_events(struct tern__io *io, uint32_t ev)
{
        struct tern_watch *w = (struct tern_watch *)io;
        unsigned got = 0;
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                got |= TERN_WATCH_READ;
        if (ev & (EPOLLOUT | EPOLLERR))
                got |= TERN_WATCH_WRITE;
        /* Only what was asked for: an error wakes both, but a watch that
         * wants only writes must not be told to read. */
        got &= w->events;
        if (got)
                w->cb(w, got, w->arg);
}

/* The loop drains: tell the owner, once; the deadline only ends the wait. */
static void on_drain(struct tern__io *io, bool deadline)
{
        struct tern_watch *w = (struct tern_watch *)io;
        if (!deadline)
                w->cb(w, TERN_WATCH_DRAIN, w->arg);
}

static void on_free(struct tern__io *io)
{
        free(io);
        tern__live_add(TERN__LIVE_WATCHES, -1);
}

static const struct tern__io_kind watch_kind = {
    .name = "watch",
    .on_events = on_events,
    .on_drain = on_drain,
    .on_free = on_free,
    .on_destroy = on_free,
};

tern_watch *tern_loop_watch(tern_loop *l, int fd, unsigned events, tern_watch_cb cb, void *arg)
{
        if (l->draining) {
                errno = ESHUTDOWN;
                return NULL;
        }
        struct tern_watch *w = TERN__CALLOC(1, sizeof(*w));
        if (!w)
                return NULL;
        w->io.kind = &watch_kind;
        w->io.loop = l;
        w->io.fd = fd;
        w->events = events & (TERN_WATCH_READ | TERN_WATCH_WRITE);
        w->cb = cb;
        w->arg = arg;
        int r = tern__io_register(&w->io, epoll_mask(w->events));
        if (r < 0) {
                free(w);
                errno = -r;
                return NULL;
        }
        tern__live_add(TERN__LIVE_WATCHES, 1);
        tern__loop_hold(l);
        return w;
}

int tern_watch_set(tern_watch *w, unsigned events)
{
        events &= TERN_WATCH_READ | TERN_WATCH_WRITE;
        if (events == w->events)
                return 0; /* hiredis re-asks often: no syscall for nothing */
        int r = tern__io_modify(&w->io, epoll_mask(events));
        if (r == 0)
                w->events = events;
        return r;
}

int tern_watch_fd(const tern_watch *w)
{
        return w->io.fd;
}

tern_loop *tern_watch_loop(const tern_watch *w)
{
        return w->io.loop;
}

unsigned tern_watch_events(const tern_watch *w)
{
        return w->events;
}

void tern_watch_free(tern_watch *w)
{
        if (!w)
                return;
        w->events = 0; /* an event already fetched in this batch is dropped */
        tern__loop_unhold(w->io.loop);
        /* Unregister: the fd stays open and is the caller's. */
        tern__io_release(&w->io, true);
}
