/*
 * What every I/O-model echo server in tools/iomodels shares, so that each
 * model's file holds only the model: the command line, the listening socket,
 * stopping on SIGTERM/SIGINT, and (for the non-blocking models) one round of
 * echo work on a connection.
 *
 * Not part of libtern. Every server is single-threaded unless its file says
 * otherwise (io_blocking.c); nothing here is thread-safe.
 */
#ifndef TERN_IOMODELS_COMMON_H
#define TERN_IOMODELS_COMMON_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * One read() copies at most this much from the kernel. Deliberately smaller
 * than the largest messages the tests send (64 KiB): a server that reads only
 * once per edge-triggered notification then visibly leaves data behind.
 */
#define IOM_READ_BUF 16384

struct iom_opts {
        const char *name; /* program name for messages */
        unsigned port;    /* 0: the kernel picks one */
        const char *bind; /* numeric address, default 127.0.0.1 */
        bool naive;       /* --naive: the model's deliberately broken variant */
        long sigpending;  /* --sigpending N (io_sigio): RLIMIT_SIGPENDING, 0 = leave */
};

/* Set by the SIGTERM/SIGINT handler that iom_stop_signals() installs. */
extern volatile sig_atomic_t iom_stop;

/*
 * Parses --port P, --bind ADDR, and --naive / --sigpending N when @extra
 * names them ("naive", "sigpending"). Prints usage and returns 2 on a bad
 * command line, -1 after --help, 0 otherwise.
 */
int iom_parse(int argc, char **argv, const char *name, const char *extra, struct iom_opts *o);

/*
 * Raises the soft file-descriptor limit to the hard one, opens a listening
 * TCP socket on o->bind:o->port (non-blocking when @nonblock), and prints
 * "port N" on stdout (the port actually bound, so tests can use --port 0).
 * Returns the listening fd, or -1 after printing why.
 */
int iom_listen(const struct iom_opts *o, bool nonblock);

/*
 * Blocks SIGTERM and SIGINT and installs a handler that sets iom_stop.
 * Stores in @wait_mask the previous mask without them: pass it to the
 * model's waiting call (pselect, ppoll, epoll_pwait...) so that a stop
 * signal can only arrive while waiting, never between checking iom_stop
 * and starting to wait. Ignores SIGPIPE.
 */
void iom_stop_signals(sigset_t *wait_mask);

/*
 * The start the servers share: iom_parse, iom_stop_signals, iom_listen.
 * Returns the listening fd, or -1 with *status set to the exit status
 * (0 after --help).
 */
int iom_start(int argc, char **argv, const char *name, const char *extra, bool nonblock,
              struct iom_opts *o, sigset_t *wait_mask, int *status);

/* Sets TCP_NODELAY: echoed replies must not wait for Nagle. */
void iom_nodelay(int fd);

/* A non-blocking connection of a single-threaded Reactor-style server. */
struct iom_conn {
        int fd;
        uint32_t pend_off, pend_len;  /* pend[off, len): read but not yet written */
        char *pend;                   /* NULL unless a write ran out of space */
        bool want_write;              /* output is stuck: wait for writability */
        struct iom_conn *prev, *next; /* every open connection, for iom_conn_free_all */
};

enum iom_serve {
        IOM_DRAINED, /* read() said EAGAIN: nothing left until new data arrives */
        IOM_BUDGET,  /* stopped after max_reads reads: there may be more to read */
        IOM_BLOCKED, /* output stuck: wait until writable, read nothing until then */
        IOM_CLOSED,  /* EOF or error: the caller closes the connection */
};

/*
 * One round of echo work on a ready non-blocking connection: first writes
 * out what is pending, then reads (phase 2 of a read: the copy from the
 * kernel) and writes each chunk back, at most @max_reads times (0: until
 * read() says EAGAIN). Reads go through one buffer shared by every
 * connection, so an idle connection holds no buffer; only what the socket
 * would not take is kept, in c->pend. Sets c->want_write.
 */
enum iom_serve iom_serve(struct iom_conn *c, unsigned max_reads);

/* Allocates a connection for @fd (made non-blocking), NULL if out of memory. */
struct iom_conn *iom_conn_new(int fd);

/* Closes the socket and frees the connection. */
void iom_conn_free(struct iom_conn *c);

/* Closes and frees every connection still open: a clean exit. */
void iom_conn_free_all(void);

#endif
