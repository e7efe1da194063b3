/**
 * @file
 * Watching any file descriptor from a loop, so that libraries with sockets
 * of their own (hiredis, c-ares, libpq) run on a tern loop:
 * examples/hiredis_tern.h adapts hiredis's async API with it.
 *
 * A watch is an I/O object of the loop like a connection: registered in its
 * epoll set and its generation-checked slot table, so an event that arrives
 * for a watch freed earlier in the same iteration is dropped, never
 * delivered to freed memory.
 *
 * Calling contexts: [loop] as in loop.h.
 */
#ifndef TERN_WATCH_H
#define TERN_WATCH_H

#include "export.h"
#include "loop.h"

/** @{ */
/** Interest and readiness bits of a watch. */
#define TERN_WATCH_READ  1u /**< readable (or error / hang-up) */
#define TERN_WATCH_WRITE 2u /**< writable (or error) */
/** Only ever reported, once: the loop is draining (tern_loop_stop()). Finish
 * up (a client library: disconnect) and free the watch; the loop waits for
 * its watches up to its drain deadline, then returns regardless. */
#define TERN_WATCH_DRAIN 4u
/** @} */

/** A watch on a file descriptor (opaque); see tern_loop_watch(). */
typedef struct tern_watch tern_watch;
/** @p w is ready: @p events holds TERN_WATCH_READ and/or TERN_WATCH_WRITE
 * (both on an error or hang-up, as far as the interest asks for them), or
 * TERN_WATCH_DRAIN. Runs on the loop's thread. */
typedef void (*tern_watch_cb)(tern_watch *w, unsigned events, void *arg);

/**
 * tern_loop_watch - call @p cb(w, events, @p arg) while @p fd is ready for
 * @p events (TERN_WATCH_READ | TERN_WATCH_WRITE; 0 = registered, quiet).
 * Level-triggered, as libraries with sockets of their own (hiredis, c-ares,
 * libpq) expect: @p cb runs every iteration while the condition holds and
 * the interest is set. With no interest the fd is out of the epoll set (a
 * hung-up socket cannot spin the loop). A live watch holds the loop's drain
 * (TERN_WATCH_DRAIN) until it is freed or the drain deadline passes. The
 * loop borrows @p fd and never closes it. [loop]
 * Returns the watch, or NULL with errno set: ENOMEM, ESHUTDOWN (the loop is
 * draining), or epoll_ctl()'s error (EBADF, EEXIST if @p fd is already
 * registered with this loop, EPERM for a regular file).
 */
TERN_EXPORT tern_watch *tern_loop_watch(tern_loop *loop, int fd, unsigned events, tern_watch_cb cb,
                                        void *arg);

/** Changes @p w's interest to @p events. [loop] Returns 0 or -errno from
 * epoll_ctl(). */
TERN_EXPORT int tern_watch_set(tern_watch *w, unsigned events);

/** The watched fd. [loop] */
TERN_EXPORT int tern_watch_fd(const tern_watch *w);

/** The loop @p w is on. [loop] */
TERN_EXPORT tern_loop *tern_watch_loop(const tern_watch *w);

/** Interest set on @p w. [loop] */
TERN_EXPORT unsigned tern_watch_events(const tern_watch *w);

/**
 * tern_watch_free - stop watching and free @p w (NULL is a no-op); the fd
 * stays open and is the caller's. Safe from @p w's own callback: it never
 * runs again, and the memory goes at the end of the iteration. [loop]
 */
TERN_EXPORT void tern_watch_free(tern_watch *w);

#endif
