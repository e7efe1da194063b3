/*
 * tern-bench's chat mode: load and delivery verification for tern-chat's line
 * protocol (docs/chat.md).
 *
 * Two parts. The verifier (bench_chat_stream_*) is pure bookkeeping with no
 * I/O, so the unit tests can feed it crafted streams: it follows one
 * (receiver, sender) pair's sequence numbers and classifies every arrival.
 * bench_chat_run drives a server: N clients join one room, K of them send
 * `m SENDER SEQ SEND_NS` lines at a fixed rate (open loop) or each as soon as
 * its previous one came back to it through the room (closed loop), and every
 * client checks that it received each sender's messages exactly once and in
 * order.
 *
 * Two framings. tern-chat's line protocol (welcome, /join, `[#room] nick:
 * text` deliveries), or muduo's example chat servers (examples/asio/chat in
 * muduo's repository): every frame a 4-byte big-endian length and that many
 * payload bytes, nothing sent on connect, and every frame a client sends
 * relayed to every connected client, the sender included.
 */
#ifndef TERN_BENCH_CHAT_H
#define TERN_BENCH_CHAT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench_sys.h"

/* Skipped sequence numbers remembered per stream, so a late one is told apart
 * from a duplicate; beyond this, skipped numbers count as dropped at once. */
#define BENCH_CHAT_MAX_GAPS 1024

/* One receiver's view of one sender. Zero-initialise; expects seq 0 first. */
struct bench_chat_stream {
        uint64_t next;  /* next sequence number expected in order */
        uint64_t *gaps; /* skipped numbers not seen yet (owned; up to MAX_GAPS) */
        uint32_t ngaps, capgaps;
};

/* Counts over any number of streams. */
struct bench_chat_verdict {
        uint64_t in_order;  /* first deliveries that arrived in sequence (gaps allowed) */
        uint64_t reordered; /* first deliveries of a number skipped earlier: arrived late */
        uint64_t duplicate; /* numbers delivered a second time */
        uint64_t dropped;   /* skipped numbers never delivered (bench_chat_stream_finish) */
        uint64_t missing;   /* numbers past the last one delivered, never delivered */
        uint64_t untracked; /* skips beyond MAX_GAPS, counted as dropped when seen */
};

enum bench_chat_class {
        BENCH_CHAT_IN_ORDER, /* seq == next */
        BENCH_CHAT_SKIP,     /* seq > next: delivered, but numbers before it are missing */
        BENCH_CHAT_LATE,     /* a skipped number arrived after a later one */
        BENCH_CHAT_DUP,      /* seen before */
};

/*
 * bench_chat_stream_observe - one arrival of @seq on stream @s; adds to @v.
 * Owner thread only. Never fails: if a gap list cannot grow, the skipped
 * numbers count as untracked drops (and a late one then as a duplicate).
 * Returns how the arrival was classified.
 */
enum bench_chat_class bench_chat_stream_observe(struct bench_chat_stream *s, uint64_t seq,
                                                struct bench_chat_verdict *v);

/*
 * bench_chat_stream_finish - the run is over and the sender sent @sent
 * messages (numbers 0..sent-1): adds the never-filled gaps to v->dropped and
 * the undelivered tail to v->missing, and frees the gap list.
 */
void bench_chat_stream_finish(struct bench_chat_stream *s, uint64_t sent,
                              struct bench_chat_verdict *v);

/* Delivery errors in @v: everything but in-order first deliveries. */
uint64_t bench_chat_verdict_errors(const struct bench_chat_verdict *v);

enum bench_chat_framing {
        BENCH_CHAT_FRAMING_TERN,  /* tern-chat's lines, one room joined with /join */
        BENCH_CHAT_FRAMING_MUDUO, /* 4-byte big-endian length + payload; no rooms */
};

/* What bench_chat_run needs; every pointer is borrowed for the run. */
struct bench_chat_cfg {
        const struct bench_target *target;
        const struct sockaddr_in *srcs; /* nsrc > 1: loopback source addresses */
        unsigned nsrc;
        const char *host; /* for messages */
        unsigned port;
        unsigned conns;
        unsigned senders; /* K <= conns; 0 with idle */
        double rate;      /* messages/s per sender (open loop only) */
        bool closed_loop; /* each sender sends when its previous message came back */
        enum bench_chat_framing framing;
        const char *room;
        unsigned room_size; /* idle only: clients per room ROOM-0, ROOM-1...; 0 = one room */
        double duration, warmup, setup_timeout;
        bool idle; /* hold the clients instead of sending; RSS per client with pid */
        bool json, progress;
        pid_t pid;
        volatile int *interrupted;          /* set by a signal handler */
        struct bench_chat_verdict *verdict; /* optional: receives the load run's verdict */
};

/*
 * bench_chat_run - run the chat benchmark and print the report (text, or one
 * JSON object with cfg->json). Main thread; single-threaded inside.
 * Returns the exit status: 0 ok, 1 could not run, 3 delivery errors.
 */
int bench_chat_run(const struct bench_chat_cfg *cfg);

#endif
