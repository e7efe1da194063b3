/*
 * tern-bench chat mode. See bench_chat.h for the contract and README.md for
 * what is measured.
 *
 * One thread and one epoll set drive every client: a chat message fans out
 * to N receivers, so the client's cost is N reads per message, the same order
 * as the server's N writes; the report shows the client's CPU next to the
 * server's so a saturated client is visible rather than silently measured.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench_chat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench_hist.h"
#include "clock.h"

/* ---- verifier ------------------------------------------------------------ */

static bool gap_push(struct bench_chat_stream *s, uint64_t seq)
{
        if (s->ngaps == s->capgaps) {
                uint32_t cap = s->capgaps ? s->capgaps * 2 : 8;
                uint64_t *g;

                if (cap > BENCH_CHAT_MAX_GAPS)
                        return false;
                g = realloc(s->gaps, cap * sizeof(*g));
                if (!g)
                        return false;
                s->gaps = g;
                s->capgaps = cap;
        }
        s->gaps[s->ngaps++] = seq;
        return true;
}

enum bench_chat_class bench_chat_stream_observe(struct bench_chat_stream *s, uint64_t seq,
                                                struct bench_chat_verdict *v)
{
        if (seq == s->next) {
                s->next++;
                v->in_order++;
                return BENCH_CHAT_IN_ORDER;
        }
        if (seq > s->next) {
                for (uint64_t q = s->next; q < seq; q++)
                        if (!gap_push(s, q))
                                v->untracked++;
                s->next = seq + 1;
                v->in_order++;
                return BENCH_CHAT_SKIP;
        }
        for (uint32_t i = 0; i < s->ngaps; i++) {
                if (s->gaps[i] == seq) {
                        s->gaps[i] = s->gaps[--s->ngaps];
                        v->reordered++;
                        return BENCH_CHAT_LATE;
                }
        }
        v->duplicate++;
        return BENCH_CHAT_DUP;
}

void bench_chat_stream_finish(struct bench_chat_stream *s, uint64_t sent,
                              struct bench_chat_verdict *v)
{
        v->dropped += s->ngaps;
        if (sent > s->next)
                v->missing += sent - s->next;
        free(s->gaps);
        s->gaps = NULL;
        s->ngaps = s->capgaps = 0;
}

uint64_t bench_chat_verdict_errors(const struct bench_chat_verdict *v)
{
        return v->reordered + v->duplicate + v->dropped + v->missing + v->untracked;
}

/* ---- the load ------------------------------------------------------------ */

#define RBUF_SIZE   65536
#define PART_MAX    256 /* longest partial line carried between reads */
#define MAX_EVENTS  256
#define JOIN_WINDOW 128 /* clients started but not yet in their room */
#define DRAIN_NS    2000000000ull
#define CHECK_NS    30000000000ull
#define OUT_CAP     65536
#define SEND_BURST  64 /* messages one sender may catch up in one go */

enum cstate { C_NONE, C_CONNECTING, C_OPEN, C_LOST };

struct client {
        int fd;
        uint8_t state;
        bool welcomed, joined;
        uint8_t nicklen;
        uint16_t partlen;
        bool skipping;   /* discarding an overlong line up to its end */
        unsigned synced; /* highest sync marker seen */
        char nick[40];
        char part[PART_MAX];
        struct bench_chat_stream *streams; /* one per sender */
};

struct sender {
        unsigned client;
        bool ready;   /* closed loop: its last message came back (or none sent yet) */
        uint64_t seq; /* next to send = messages sent */
        uint64_t t_start;
        char *out; /* bytes the socket would not take yet */
        uint32_t outlen;
};

struct chat {
        const struct bench_chat_cfg *cfg;
        int epfd;
        struct client *cl;
        struct sender *snd;
        char *rbuf;
        unsigned next_src;
        uint64_t now;
        /* measured window: deliveries arriving in [m0, m1) count */
        uint64_t m0, m1;
        uint64_t delivered_window, delivered_total;
        uint64_t expected_done; /* first deliveries (in order + late) over all streams */
        struct bench_hist lat;
        struct bench_chat_verdict v;
        uint64_t lost, protocol_errors, malformed, server_errors;
        unsigned open, joined, connecting, next_conn;
        unsigned sync_target, synced;
        int fatal;
};

static void chat_lose(struct chat *ch, struct client *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        if (c->state == C_CONNECTING)
                ch->connecting--;
        if (c->state == C_OPEN)
                ch->open--;
        c->state = C_LOST;
        ch->lost++;
}

static int chat_write_all(int fd, const char *p, size_t len)
{
        while (len) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static uint64_t parse_u64(const char **pp, const char *end, bool *ok)
{
        const char *p = *pp;
        uint64_t v = 0;

        if (p >= end || *p < '0' || *p > '9')
                *ok = false;
        while (p < end && *p >= '0' && *p <= '9')
                v = v * 10 + (uint64_t)(*p++ - '0');
        *pp = p;
        return v;
}

/* `m SENDER SEQ NS` from one sender of the run. */
static void chat_on_message(struct chat *ch, struct client *c, const char *t, const char *end)
{
        const char *p = t + 2;
        bool ok = true;
        uint64_t s, q, ns;
        enum bench_chat_class k;

        s = parse_u64(&p, end, &ok);
        if (p < end && *p == ' ')
                p++;
        q = parse_u64(&p, end, &ok);
        if (p < end && *p == ' ')
                p++;
        ns = parse_u64(&p, end, &ok);
        if (!ok || p != end || s >= ch->cfg->senders || q >= ch->snd[s].seq) {
                ch->malformed++;
                return;
        }
        k = bench_chat_stream_observe(&c->streams[s], q, &ch->v);
        if (k == BENCH_CHAT_DUP)
                return;
        /* closed loop: the sender's own copy of its latest message lets it go on */
        if (ch->cfg->closed_loop && ch->snd[s].client == (unsigned)(c - ch->cl) &&
            q + 1 == ch->snd[s].seq)
                ch->snd[s].ready = true;
        ch->expected_done++;
        ch->delivered_total++;
        if (ch->now >= ch->m0 && ch->now < ch->m1) {
                ch->delivered_window++;
                bench_hist_record(&ch->lat, ch->now > ns ? ch->now - ns : 0);
        }
}

/* The room client @idx joins: cfg->room, or ROOM-k with room_size clients each. */
static size_t chat_room_of(const struct chat *ch, unsigned idx, char *out, size_t cap)
{
        int n;

        if (!ch->cfg->room_size)
                n = snprintf(out, cap, "%s", ch->cfg->room);
        else
                n = snprintf(out, cap, "%s-%u", ch->cfg->room, idx / ch->cfg->room_size);
        return n < 0 ? 0 : (size_t)n;
}

/* What a client said, as delivered: a benchmark message or a sync marker. */
static void chat_on_text(struct chat *ch, struct client *c, const char *t, const char *end)
{
        if (end - t >= 2 && t[0] == 'm' && t[1] == ' ') {
                chat_on_message(ch, c, t, end);
        } else if (end - t > 16 && !memcmp(t, "tern-bench-sync ", 16)) {
                bool ok = true;
                const char *p = t + 16;
                unsigned id = (unsigned)parse_u64(&p, end, &ok);
                if (ok && id > c->synced) {
                        c->synced = id;
                        if (id == ch->sync_target)
                                ch->synced++;
                }
        } else if (ch->cfg->framing == BENCH_CHAT_FRAMING_MUDUO) {
                ch->protocol_errors++; /* muduo relays only what the clients send */
        }
}

static void chat_on_line(struct chat *ch, struct client *c, const char *l, size_t len)
{
        const char *end = l + len;

        if (len && l[len - 1] == '\r')
                end--, len--;
        if (len >= 10 && !memcmp(l, "* welcome ", 10)) {
                size_t n = len - 10;
                if (n >= sizeof(c->nick))
                        n = sizeof(c->nick) - 1;
                memcpy(c->nick, l + 10, n);
                c->nicklen = (uint8_t)n;
                c->welcomed = true;
                return;
        }
        if (len && l[0] == '*') {
                /* `* NICK joined #ROOM`: our own join into the bench room */
                char room[48];
                size_t nl = c->nicklen;
                size_t rl = chat_room_of(ch, (unsigned)(c - ch->cl), room, sizeof(room));
                if (!c->joined && c->welcomed && len == 2 + nl + 9 + rl &&
                    !memcmp(l + 2, c->nick, nl) && !memcmp(l + 2 + nl, " joined #", 9) &&
                    !strncasecmp(l + 2 + nl + 9, room, rl)) {
                        c->joined = true;
                        ch->joined++;
                }
                return;
        }
        if (len && l[0] == '!') {
                ch->server_errors++;
                return;
        }
        if (len > 2 && l[0] == '[' && l[1] == '#') {
                const char *t = memmem(l, len, ": ", 2);
                if (!t) {
                        ch->protocol_errors++;
                        return;
                }
                chat_on_text(ch, c, t + 2, end);
                return;
        }
        ch->protocol_errors++;
}

/* Longest muduo payload a client accepts: every payload here is a short line. */
#define FRAME_MAX (PART_MAX - 4)

/*
 * Whole muduo frames in @p (@have bytes): each 4-byte big-endian length and
 * its payload to chat_on_text. Returns the bytes consumed, or -1 when a
 * length is not one this benchmark sends (the stream cannot be resynced).
 */
static ssize_t chat_on_frames(struct chat *ch, struct client *c, const char *p, size_t have)
{
        size_t off = 0;

        while (have - off >= 4) {
                const unsigned char *h = (const unsigned char *)p + off;
                uint32_t len =
                    (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];

                if (len > FRAME_MAX)
                        return -1;
                if (have - off < 4 + (size_t)len)
                        break;
                chat_on_text(ch, c, p + off + 4, p + off + 4 + len);
                if (c->state != C_OPEN)
                        break;
                off += 4 + (size_t)len;
        }
        return (ssize_t)off;
}

static void chat_read(struct chat *ch, struct client *c)
{
        for (;;) {
                size_t have = c->partlen, start = 0, ask = RBUF_SIZE - c->partlen;
                ssize_t n;

                memcpy(ch->rbuf, c->part, have);
                n = read(c->fd, ch->rbuf + have, ask);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                chat_lose(ch, c);
                        return;
                }
                if (n == 0) {
                        chat_lose(ch, c);
                        return;
                }
                have += (size_t)n;
                if (ch->cfg->framing == BENCH_CHAT_FRAMING_MUDUO) {
                        ssize_t used = chat_on_frames(ch, c, ch->rbuf, have);
                        if (used < 0) {
                                ch->protocol_errors++;
                                chat_lose(ch, c);
                                return;
                        }
                        c->partlen = (uint16_t)(have - (size_t)used); /* < 4 + FRAME_MAX */
                        memcpy(c->part, ch->rbuf + used, c->partlen);
                        if ((size_t)n < ask)
                                return;
                        continue;
                }
                for (size_t i = c->partlen; i < have; i++) {
                        if (ch->rbuf[i] != '\n')
                                continue;
                        if (!c->skipping)
                                chat_on_line(ch, c, ch->rbuf + start, i - start);
                        c->skipping = false;
                        start = i + 1;
                }
                c->partlen = 0;
                if (have - start > PART_MAX) {
                        c->skipping = true; /* not a line this benchmark produces */
                        ch->protocol_errors++;
                } else if (!c->skipping) {
                        memcpy(c->part, ch->rbuf + start, have - start);
                        c->partlen = (uint16_t)(have - start);
                }
                if ((size_t)n < ask)
                        return; /* drained: edge-triggered epoll reports the next batch */
        }
}

/*
 * One outgoing message in the run's framing: @text (@len bytes, no newline)
 * as a line or as a muduo frame, into @out (room for len + 4). Returns its size.
 */
static size_t chat_frame(const struct chat *ch, char *out, const char *text, size_t len)
{
        if (ch->cfg->framing == BENCH_CHAT_FRAMING_MUDUO) {
                out[0] = (char)(len >> 24);
                out[1] = (char)(len >> 16);
                out[2] = (char)(len >> 8);
                out[3] = (char)len;
                memmove(out + 4, text, len);
                return len + 4;
        }
        memmove(out, text, len);
        out[len] = '\n';
        return len + 1;
}

/* Sender @i's message @seq stamped @t, framed, into @out (room for 96). */
static size_t chat_format(const struct chat *ch, char *out, unsigned i, uint64_t seq, uint64_t t)
{
        char text[80];
        int len = snprintf(text, sizeof(text), "m %u %llu %llu", i, (unsigned long long)seq,
                           (unsigned long long)t);

        return chat_frame(ch, out, text, (size_t)len);
}

static int chat_flush(struct chat *ch, struct sender *s)
{
        struct client *c = &ch->cl[s->client];
        size_t off = 0;

        while (off < s->outlen) {
                ssize_t n = write(c->fd, s->out + off, s->outlen - off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return -errno;
                }
                off += (size_t)n;
        }
        memmove(s->out, s->out + off, s->outlen - off);
        s->outlen -= (uint32_t)off;
        return 0;
}

static void chat_event(struct chat *ch, struct client *c, uint32_t events)
{
        if (c->state == C_CONNECTING) {
                char cmd[64], room[48];
                int len;

                if (events & (EPOLLERR | EPOLLHUP)) {
                        int err = 0;
                        socklen_t sl = sizeof(err);
                        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) || !err)
                                err = ECONNRESET;
                        if (!ch->fatal)
                                ch->fatal = -err;
                        chat_lose(ch, c);
                        return;
                }
                if (!(events & EPOLLOUT))
                        return;
                ch->connecting--;
                c->state = C_OPEN;
                ch->open++;
                if (ch->cfg->framing == BENCH_CHAT_FRAMING_MUDUO) {
                        /* no rooms: connected is in; chat_sync proves the server agrees */
                        c->joined = true;
                        ch->joined++;
                        goto open;
                }
                chat_room_of(ch, (unsigned)(c - ch->cl), room, sizeof(room));
                len = snprintf(cmd, sizeof(cmd), "/join %s\n", room);
                if (chat_write_all(c->fd, cmd, (size_t)len)) {
                        chat_lose(ch, c);
                        return;
                }
        }
open:
        if (c->state != C_OPEN)
                return;
        if (events & EPOLLIN)
                chat_read(ch, c);
        if (c->state == C_OPEN && (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) &&
            !(events & EPOLLIN))
                chat_lose(ch, c);
}

/* Starts connects while fewer than JOIN_WINDOW clients are on their way in. */
static int chat_connect_more(struct chat *ch)
{
        const struct bench_chat_cfg *cfg = ch->cfg;

        /*
         * A new client sits in #lobby until its /join is handled, and every
         * arrival there is announced to everyone in it: bounding the clients
         * not yet in their room keeps that chatter linear in N, not N^2.
         */
        while (ch->next_conn < cfg->conns && ch->next_conn - ch->joined < JOIN_WINDOW) {
                struct client *c = &ch->cl[ch->next_conn];
                const struct sockaddr_in *src = NULL;
                struct epoll_event ev;
                int fd;

                if (cfg->nsrc > 1)
                        src = &cfg->srcs[ch->next_src++ % cfg->nsrc];
                fd = bench_connect_start(cfg->target, src);
                if (fd < 0)
                        return fd;
                ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
                ev.data.ptr = c;
                if (epoll_ctl(ch->epfd, EPOLL_CTL_ADD, fd, &ev)) {
                        int err = -errno;
                        close(fd);
                        return err;
                }
                c->fd = fd;
                c->state = C_CONNECTING;
                ch->connecting++;
                ch->next_conn++;
        }
        return 0;
}

static void chat_poll(struct chat *ch, int timeout_ms)
{
        struct epoll_event evs[MAX_EVENTS];
        int n = epoll_wait(ch->epfd, evs, MAX_EVENTS, timeout_ms);

        ch->now = tern_now_ns();
        for (int i = 0; i < n; i++) {
                struct client *c = evs[i].data.ptr;
                chat_event(ch, c, evs[i].events);
                /* a sender whose socket drained may go on */
                if ((evs[i].events & EPOLLOUT) && c->state == C_OPEN && ch->snd) {
                        unsigned idx = (unsigned)(c - ch->cl);
                        for (unsigned s = 0; s < ch->cfg->senders; s++)
                                if (ch->snd[s].client == idx && ch->snd[s].outlen &&
                                    chat_flush(ch, &ch->snd[s]))
                                        chat_lose(ch, c);
                }
        }
}

static void chat_progress(struct chat *ch, const char *what, double el, double total)
{
        if (!ch->cfg->progress)
                return;
        fprintf(stderr,
                "\r\033[Kchat %s %.1f/%.1f s  open %u  joined %u  delivered %llu  lost %llu", what,
                el, total, ch->open, ch->joined, (unsigned long long)ch->delivered_total,
                (unsigned long long)ch->lost);
}

static void chat_progress_clear(const struct chat *ch)
{
        if (ch->cfg->progress)
                fprintf(stderr, "\r\033[K");
}

/* Client 0 (of each room) says `tern-bench-sync ID`; waits until every client has read it,
 * which proves each is in the room and served. Returns 0, -ETIMEDOUT, -EINTR. */
static int chat_sync(struct chat *ch, unsigned id, uint64_t limit_ns)
{
        char text[32], line[64];
        int tl = snprintf(text, sizeof(text), "tern-bench-sync %u", id);
        size_t len = chat_frame(ch, line, text, (size_t)tl);
        uint64_t deadline = tern_now_ns() + limit_ns, resend = 0;
        bool muduo = ch->cfg->framing == BENCH_CHAT_FRAMING_MUDUO;

        unsigned step = ch->cfg->room_size ? ch->cfg->room_size : ch->cfg->conns;

        ch->sync_target = id;
        ch->synced = 0;
        for (;;) {
                /*
                 * The first client of each room speaks for it. muduo has no
                 * join to wait for, so a client whose connection the server
                 * has not accepted yet misses the marker: it is said again
                 * every 100 ms (a client counts the first copy it reads).
                 */
                if (ch->now >= resend) {
                        for (unsigned i = 0; i < ch->cfg->conns; i += step)
                                if (ch->cl[i].state != C_OPEN ||
                                    chat_write_all(ch->cl[i].fd, line, len))
                                        return -ECONNRESET;
                        resend = muduo ? ch->now + 100000000ull : UINT64_MAX;
                }
                if (ch->synced + ch->lost >= ch->cfg->conns)
                        break;
                if (*ch->cfg->interrupted)
                        return -EINTR;
                if (ch->now >= deadline)
                        return -ETIMEDOUT;
                chat_poll(ch, 50);
        }
        return ch->lost ? -ECONNRESET : 0;
}

/* Opens every client and puts it in the room. Returns 0 or -errno. */
static int chat_setup(struct chat *ch)
{
        const struct bench_chat_cfg *cfg = ch->cfg;
        uint64_t start = tern_now_ns(), deadline = start + (uint64_t)(cfg->setup_timeout * 1e9);
        uint64_t shown = start;
        int rc;

        ch->now = start;
        while (ch->joined < cfg->conns) {
                rc = chat_connect_more(ch);
                if (rc)
                        return rc;
                if (ch->fatal)
                        return ch->fatal;
                if (ch->lost)
                        return -ECONNRESET;
                if (*cfg->interrupted)
                        return -EINTR;
                if (ch->now >= deadline)
                        return -ETIMEDOUT;
                chat_poll(ch, 50);
                if (ch->now - shown >= 500000000ull) {
                        chat_progress(ch, "set-up", (double)(ch->now - start) / 1e9,
                                      cfg->setup_timeout);
                        shown = ch->now;
                }
        }
        return chat_sync(ch, 1, deadline > ch->now ? deadline - ch->now : 1);
}

/* Sends what each sender's schedule says is due. */
static void chat_send_due(struct chat *ch)
{
        const struct bench_chat_cfg *cfg = ch->cfg;
        uint64_t interval = (uint64_t)(1e9 / cfg->rate);
        char line[96];

        for (unsigned i = 0; i < cfg->senders; i++) {
                struct sender *s = &ch->snd[i];
                struct client *c = &ch->cl[s->client];
                unsigned burst = 0;
                uint64_t t;

                if (c->state != C_OPEN || s->outlen)
                        continue; /* behind: the schedule slips rather than piling up */
                t = tern_now_ns();
                while (burst < SEND_BURST && s->t_start + s->seq * interval <= t &&
                       s->outlen + sizeof(line) <= OUT_CAP) {
                        size_t len = chat_format(ch, line, i, s->seq, t);
                        memcpy(s->out + s->outlen, line, len);
                        s->outlen += (uint32_t)len;
                        s->seq++;
                        burst++;
                }
                if (burst && chat_flush(ch, s))
                        chat_lose(ch, c);
        }
}

/* Closed loop: each sender whose last message came back sends its next one. */
static void chat_send_ready(struct chat *ch)
{
        char line[96];

        for (unsigned i = 0; i < ch->cfg->senders; i++) {
                struct sender *s = &ch->snd[i];
                struct client *c = &ch->cl[s->client];
                size_t len;

                if (!s->ready || c->state != C_OPEN || s->outlen)
                        continue;
                len = chat_format(ch, line, i, s->seq, tern_now_ns());
                memcpy(s->out, line, len);
                s->outlen = (uint32_t)len;
                s->seq++;
                s->ready = false;
                if (chat_flush(ch, s))
                        chat_lose(ch, c);
        }
}

/* CPU over the window; with deliveries, also CPU ms per 100,000 deliveries. */
static void chat_report_cpu(const struct chat *ch, uint64_t t0, uint64_t t1, uint64_t self0,
                            uint64_t self1, bool srv, uint64_t srv0, uint64_t srv1,
                            uint64_t delivered)
{
        double dt = (double)(t1 - t0);
        double self = 100.0 * (double)(self1 - self0) / dt;
        double server = srv ? 100.0 * (double)(srv1 - srv0) / dt : 0;
        double per = delivered ? 1e5 / 1e6 / (double)delivered : 0; /* ns -> ms per 100k */

        if (ch->cfg->json) {
                printf(",\"client_cpu_pct\":%.1f", self);
                if (srv)
                        printf(",\"server_cpu_pct\":%.1f", server);
                if (delivered) {
                        printf(",\"client_cpu_ms_per_100k\":%.2f", (double)(self1 - self0) * per);
                        if (srv)
                                printf(",\"server_cpu_ms_per_100k\":%.2f",
                                       (double)(srv1 - srv0) * per);
                }
                return;
        }
        printf("  %-14s client %.0f%%", "cpu (1 core=100)", self);
        if (srv)
                printf("  server %.0f%%", server);
        printf("\n");
        if (delivered) {
                printf("  %-14s client %.2f ms", "cpu/100k dlv", (double)(self1 - self0) * per);
                if (srv)
                        printf("  server %.2f ms", (double)(srv1 - srv0) * per);
                printf("\n");
        }
}

static void chat_header(const struct chat *ch)
{
        const struct bench_chat_cfg *cfg = ch->cfg;
        bool muduo = cfg->framing == BENCH_CHAT_FRAMING_MUDUO;

        if (cfg->json) {
                printf("{\"tool\":\"tern-bench\",\"mode\":\"chat\",\"host\":\"%s\",\"port\":%u,"
                       "\"connections\":%u,\"senders\":%u,\"rate_per_sender\":%.3f,"
                       "\"room\":\"%s\",\"room_size\":%u,\"idle\":%s,\"src_addrs\":%u,"
                       "\"closed_loop\":%s,\"framing\":\"%s\"",
                       cfg->host, cfg->port, cfg->conns, cfg->senders, cfg->rate, cfg->room,
                       cfg->room_size, cfg->idle ? "true" : "false", cfg->nsrc,
                       cfg->closed_loop ? "true" : "false", muduo ? "muduo" : "tern");
                return;
        }
        if (muduo)
                printf("tern-bench chat -> %s:%u: %u clients, muduo framing", cfg->host, cfg->port,
                       cfg->conns);
        else
                printf("tern-bench chat -> %s:%u: %u clients in #%s", cfg->host, cfg->port,
                       cfg->conns, cfg->room);
        if (cfg->room_size)
                printf("-N (%u per room)", cfg->room_size);
        if (!cfg->idle && cfg->closed_loop)
                printf(", %u sending closed-loop", cfg->senders);
        else if (!cfg->idle)
                printf(", %u sending %.1f msg/s each", cfg->senders, cfg->rate);
        if (cfg->nsrc > 1)
                printf(", %u source addresses", cfg->nsrc);
        printf("\n");
}

static int chat_run_idle(struct chat *ch, uint64_t rss_before, bool have_rss)
{
        const struct bench_chat_cfg *cfg = ch->cfg;
        uint64_t start = tern_now_ns(), end = start + (uint64_t)(cfg->duration * 1e9);
        uint64_t rss = 0, shown = start;
        bool rss_ok = false;
        int rc;

        while (ch->now < end && !*cfg->interrupted) {
                chat_poll(ch, 50);
                if (ch->now - shown >= 500000000ull) {
                        chat_progress(ch, "holding", (double)(ch->now - start) / 1e9,
                                      cfg->duration);
                        shown = ch->now;
                }
        }
        if (have_rss)
                rss_ok = bench_proc_rss(cfg->pid, &rss) == 0;
        rc = chat_sync(ch, 2, CHECK_NS);
        chat_progress_clear(ch);
        chat_header(ch);
        if (cfg->json) {
                printf(",\"held_s\":%.3f,\"checked_ok\":%u,\"lost\":%llu",
                       (double)(end - start) / 1e9, ch->synced, (unsigned long long)ch->lost);
                if (rss_ok)
                        printf(",\"rss_before_bytes\":%llu,\"rss_after_bytes\":%llu,"
                               "\"rss_per_conn_bytes\":%.1f",
                               (unsigned long long)rss_before, (unsigned long long)rss,
                               ((double)rss - (double)rss_before) / cfg->conns);
                printf(",\"errors\":%llu}\n", (unsigned long long)ch->lost + (rc != 0));
        } else {
                printf("  held %u clients %.1f s; %u still served at the end, %llu lost\n",
                       cfg->conns, (double)(end - start) / 1e9, ch->synced,
                       (unsigned long long)ch->lost);
                if (rss_ok)
                        printf("  server rss     %.1f MiB -> %.1f MiB: %.0f B per client\n",
                               (double)rss_before / 1048576.0, (double)rss / 1048576.0,
                               ((double)rss - (double)rss_before) / cfg->conns);
        }
        return rc || ch->lost ? 3 : 0;
}

static int chat_run_load(struct chat *ch)
{
        const struct bench_chat_cfg *cfg = ch->cfg;
        uint64_t start = tern_now_ns(), shown = start, drain_end, sent = 0, self0, self1, srv0 = 0,
                 srv1 = 0, t_stop;
        double total = cfg->warmup + cfg->duration;
        bool srv = false, interrupted = false;
        struct bench_chat_verdict fin;
        int rc = 0;

        ch->m0 = start + (uint64_t)(cfg->warmup * 1e9);
        ch->m1 = ch->m0 + (uint64_t)(cfg->duration * 1e9);
        /* Staggered, so K senders do not fire in lock-step bursts. */
        for (unsigned i = 0; i < cfg->senders; i++) {
                ch->snd[i].t_start = start + (uint64_t)(1e9 / cfg->rate) * i / cfg->senders;
                ch->snd[i].ready = true;
        }
        ch->now = start;
        self0 = bench_self_cpu_ns();
        bool measuring = false;
        while (ch->now < ch->m1) {
                if (*cfg->interrupted) {
                        interrupted = true;
                        break;
                }
                if (!measuring && ch->now >= ch->m0) {
                        measuring = true;
                        self0 = bench_self_cpu_ns();
                        if (cfg->pid > 0)
                                srv = bench_proc_cpu_ns(cfg->pid, &srv0) == 0;
                }
                if (cfg->closed_loop)
                        chat_send_ready(ch);
                else
                        chat_send_due(ch);
                chat_poll(ch, 1);
                if (ch->now - shown >= 500000000ull) {
                        chat_progress(ch, ch->now < ch->m0 ? "warm-up" : "measuring",
                                      (double)(ch->now - start) / 1e9, total);
                        shown = ch->now;
                }
        }
        t_stop = ch->now;
        self1 = bench_self_cpu_ns();
        if (srv)
                srv = bench_proc_cpu_ns(cfg->pid, &srv1) == 0;
        /* Deliveries still in flight finish (or not) within DRAIN_NS. */
        for (unsigned i = 0; i < cfg->senders; i++)
                sent += ch->snd[i].seq;
        drain_end = ch->now + DRAIN_NS;
        for (;;) {
                bool pending = false;
                for (unsigned i = 0; i < cfg->senders; i++)
                        pending |= ch->snd[i].outlen != 0;
                if (!pending && ch->expected_done >= sent * (uint64_t)cfg->conns && !ch->lost)
                        break;
                if (ch->now >= drain_end || *cfg->interrupted)
                        break;
                chat_poll(ch, 10);
        }
        chat_progress_clear(ch);

        fin = ch->v;
        for (unsigned r = 0; r < cfg->conns; r++)
                for (unsigned s = 0; s < cfg->senders; s++)
                        bench_chat_stream_finish(&ch->cl[r].streams[s], ch->snd[s].seq, &fin);

        if (cfg->verdict)
                *cfg->verdict = fin;

        double secs = measuring ? (double)(t_stop - ch->m0) / 1e9 : 0;
        uint64_t errors = bench_chat_verdict_errors(&fin) + ch->lost + ch->malformed +
                          ch->protocol_errors + ch->server_errors;
        static const double pcts[] = {50, 90, 99, 99.9};
        static const char *names[] = {"p50", "p90", "p99", "p999"};

        chat_header(ch);
        if (cfg->json) {
                printf(",\"duration_s\":%.3f,\"sent\":%llu,\"sent_per_s\":%.1f,"
                       "\"delivered\":%llu,\"delivered_per_s\":%.1f",
                       secs, (unsigned long long)sent,
                       (double)sent / ((double)(t_stop - start) / 1e9),
                       (unsigned long long)ch->delivered_window,
                       secs > 0 ? (double)ch->delivered_window / secs : 0);
                for (size_t i = 0; i < 4; i++)
                        printf(",\"lat_%s_us\":%.1f", names[i],
                               (double)bench_hist_percentile(&ch->lat, pcts[i]) / 1e3);
                printf(",\"lat_max_us\":%.1f", (double)bench_hist_percentile(&ch->lat, 100) / 1e3);
                chat_report_cpu(ch, ch->m0, t_stop, self0, self1, srv, srv0, srv1,
                                ch->delivered_window);
                printf(",\"in_order\":%llu,\"dropped\":%llu,\"duplicate\":%llu,"
                       "\"reordered\":%llu,\"missing\":%llu,\"lost\":%llu,\"malformed\":%llu,"
                       "\"errors\":%llu,\"interrupted\":%s}\n",
                       (unsigned long long)fin.in_order,
                       (unsigned long long)fin.dropped + fin.untracked,
                       (unsigned long long)fin.duplicate, (unsigned long long)fin.reordered,
                       (unsigned long long)fin.missing, (unsigned long long)ch->lost,
                       (unsigned long long)ch->malformed + ch->protocol_errors + ch->server_errors,
                       (unsigned long long)errors, interrupted ? "true" : "false");
        } else {
                if (cfg->closed_loop)
                        printf("  %-14s closed loop, %llu sent (%.0f msg/s)\n", "sent",
                               (unsigned long long)sent,
                               (double)sent / ((double)(t_stop - start) / 1e9));
                else
                        printf("  %-14s %.0f msg/s offered, %llu sent\n", "sent",
                               cfg->rate * cfg->senders, (unsigned long long)sent);
                printf("  %-14s %.0f msg/s over %.2f s (%llu in the window)\n", "delivered",
                       secs > 0 ? (double)ch->delivered_window / secs : 0, secs,
                       (unsigned long long)ch->delivered_window);
                printf("  %-14s", "latency");
                for (size_t i = 0; i < 4; i++)
                        printf(" %s %.0f us", names[i],
                               (double)bench_hist_percentile(&ch->lat, pcts[i]) / 1e3);
                printf(" max %.0f us\n", (double)bench_hist_percentile(&ch->lat, 100) / 1e3);
                chat_report_cpu(ch, ch->m0, t_stop, self0, self1, srv, srv0, srv1,
                                ch->delivered_window);
                printf("  %-14s %llu delivered in sequence; dropped %llu, duplicate %llu, "
                       "reordered %llu, missing at end %llu, lost clients %llu, bad lines %llu\n",
                       "verified", (unsigned long long)fin.in_order,
                       (unsigned long long)fin.dropped + fin.untracked,
                       (unsigned long long)fin.duplicate, (unsigned long long)fin.reordered,
                       (unsigned long long)fin.missing, (unsigned long long)ch->lost,
                       (unsigned long long)ch->malformed + ch->protocol_errors + ch->server_errors);
                if (interrupted)
                        printf("  (interrupted)\n");
        }
        if (errors)
                rc = 3;
        return rc;
}

int bench_chat_run(const struct bench_chat_cfg *cfg)
{
        struct chat ch = {.cfg = cfg, .epfd = -1};
        uint64_t rss_before = 0;
        bool have_rss = false;
        int rc = 1, err;

        ch.epfd = epoll_create1(EPOLL_CLOEXEC);
        ch.cl = calloc(cfg->conns, sizeof(*ch.cl));
        ch.rbuf = malloc(RBUF_SIZE);
        if (cfg->senders)
                ch.snd = calloc(cfg->senders, sizeof(*ch.snd));
        if (ch.epfd < 0 || !ch.cl || !ch.rbuf || (cfg->senders && !ch.snd) ||
            bench_hist_init(&ch.lat, BENCH_HIST_DEFAULT_PRECISION)) {
                fprintf(stderr, "tern-bench: out of memory\n");
                goto out;
        }
        for (unsigned i = 0; i < cfg->conns; i++) {
                ch.cl[i].fd = -1;
                if (cfg->senders) {
                        ch.cl[i].streams = calloc(cfg->senders, sizeof(*ch.cl[i].streams));
                        if (!ch.cl[i].streams) {
                                fprintf(stderr, "tern-bench: out of memory\n");
                                goto out;
                        }
                }
        }
        for (unsigned i = 0; i < cfg->senders; i++) {
                /* spread senders over the clients */
                ch.snd[i].client = (unsigned)((uint64_t)i * cfg->conns / cfg->senders);
                ch.snd[i].out = malloc(OUT_CAP);
                if (!ch.snd[i].out) {
                        fprintf(stderr, "tern-bench: out of memory\n");
                        goto out;
                }
        }
        if (cfg->idle && cfg->pid > 0) {
                err = bench_proc_rss(cfg->pid, &rss_before);
                if (err) {
                        fprintf(stderr, "tern-bench: cannot read memory of pid %d: %s\n",
                                (int)cfg->pid, strerror(-err));
                        goto out;
                }
                have_rss = true;
        }
        err = chat_setup(&ch);
        if (err) {
                const char *why = bench_explain_errno(err, cfg->host, cfg->port);
                chat_progress_clear(&ch);
                if (err == -ETIMEDOUT && err != ch.fatal)
                        fprintf(stderr,
                                "tern-bench: set-up did not finish within %.0f s (%u open, %u "
                                "in the room, %u saw the sync line)\n",
                                cfg->setup_timeout, ch.open, ch.joined, ch.synced);
                else if (why)
                        fprintf(stderr, "tern-bench: %s\n", why);
                else if (err == -ECONNRESET)
                        fprintf(stderr,
                                "tern-bench: the server closed %llu client(s) during "
                                "set-up\n",
                                (unsigned long long)(ch.lost ? ch.lost : 1));
                else
                        fprintf(stderr, "tern-bench: %s\n", strerror(-err));
                goto out;
        }
        chat_progress_clear(&ch);
        rc = cfg->idle ? chat_run_idle(&ch, rss_before, have_rss) : chat_run_load(&ch);
out:
        for (unsigned i = 0; ch.cl && i < cfg->conns; i++) {
                if (ch.cl[i].fd >= 0)
                        close(ch.cl[i].fd);
                if (ch.cl[i].streams) {
                        for (unsigned s = 0; s < cfg->senders; s++)
                                free(ch.cl[i].streams[s].gaps);
                        free(ch.cl[i].streams);
                }
        }
        for (unsigned i = 0; ch.snd && i < cfg->senders; i++)
                free(ch.snd[i].out);
        free(ch.snd);
        free(ch.cl);
        free(ch.rbuf);
        bench_hist_destroy(&ch.lat);
        if (ch.epfd >= 0)
                close(ch.epfd);
        return rc;
}
