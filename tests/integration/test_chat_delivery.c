/*
 * tern-chat's delivery guarantees under concurrency, at 1 and 4 workers:
 * exactly once and in sender order, nickname races with one winner, room
 * moves while messages flow, and the slow consumer that is dropped while
 * nobody else waits. Every test tears down to zero live objects
 * (chat_client.h).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "chat_client.h"

/* ---- exactly once, in order, with several senders ---- */

struct sender_arg {
        struct cc *c;
        int id;
        int msgs;
        int batch;    /* lines per write */
        int pause_us; /* between writes: lets moves interleave */
        int failed;
};

static void *sender_thread(void *p)
{
        struct sender_arg *a = p;
        char buf[64 * 32];
        for (int q = 0; q < a->msgs;) {
                size_t off = 0;
                for (int k = 0; k < a->batch && q < a->msgs; k++, q++)
                        off +=
                            (size_t)snprintf(buf + off, sizeof(buf) - off, "m %d %d\n", a->id, q);
                if (cc_send(a->c, buf, off))
                        a->failed = 1;
                if (a->pause_us)
                        usleep((useconds_t)a->pause_us);
        }
        return NULL;
}

/* Parses "[#ROOM] NICK: m S Q". */
static bool parse_msg(const char *line, char *room, size_t cap, int *s, int *q)
{
        if (line[0] != '[' || line[1] != '#')
                return false;
        const char *end = strchr(line, ']');
        if (!end || (size_t)(end - line - 2) >= cap)
                return false;
        memcpy(room, line + 2, (size_t)(end - line - 2));
        room[end - line - 2] = '\0';
        const char *text = strstr(end, ": m ");
        return text && sscanf(text + 4, "%d %d", s, q) == 2;
}

struct flow {
        int nclients, nsenders, msgs;
        int *next; /* [client * nsenders + sender] */
        int complete;
        char err[256];
};

static int flow_line(int i, const char *line, size_t len, void *arg)
{
        struct flow *f = arg;
        char room[64];
        int s, q;
        if (!parse_msg(line, room, sizeof(room), &s, &q))
                return 0; /* joins and the like */
        if (s < 0 || s >= f->nsenders) {
                snprintf(f->err, sizeof(f->err), "client %d: bad line %s", i, line);
                return -EPROTO;
        }
        int *next = &f->next[i * f->nsenders + s];
        if (q != *next) {
                snprintf(f->err, sizeof(f->err),
                         "client %d: from sender %d got %d, expected %d (lost, doubled or "
                         "reordered)",
                         i, s, q, *next);
                return -EPROTO;
        }
        if (++*next == f->msgs) {
                int done = 1;
                for (int k = 0; k < f->nsenders; k++)
                        done &= f->next[i * f->nsenders + k] == f->msgs;
                f->complete += done;
        }
        return 0;
}

static bool flow_done(void *arg)
{
        struct flow *f = arg;
        return f->complete == f->nclients;
}

static void exactly_once(int workers)
{
        enum { CLIENTS = 20, SENDERS = 4, MSGS = 1000 };
        struct chat_server *cs = start(workers);
        struct cc c[CLIENTS];
        open_all(c, CLIENTS, chat_server_port(cs));
        struct flow f = {CLIENTS, SENDERS, MSGS, calloc(CLIENTS * SENDERS, sizeof(int)), 0, ""};
        pthread_t th[SENDERS];
        struct sender_arg sa[SENDERS];
        for (int s = 0; s < SENDERS; s++) {
                sa[s] = (struct sender_arg){&c[s * 5], s, MSGS, 32, 0, 0};
                pthread_create(&th[s], NULL, sender_thread, &sa[s]);
        }
        int r = cc_pump(c, CLIENTS, flow_line, flow_done, &f, 60000);
        for (int s = 0; s < SENDERS; s++) {
                pthread_join(th[s], NULL);
                cr_assert_eq(sa[s].failed, 0);
        }
        cr_assert_eq(r, 0, "%d workers: %s %s", workers, strerror(-r), f.err);
        free(f.next);
        close_all(c, CLIENTS);
        stop(cs);
}

Test(chat_delivery, every_member_gets_each_message_once_in_sender_order)
{
        exactly_once(1);
        exactly_once(4);
}

/* ---- nickname races ---- */

struct race {
        struct cc *c;
        int n;
        const char *name;  /* the name raced for, any case */
        int *taken, *seen; /* per client: "! nickname taken", the announcement */
        int winner;
        char won[64]; /* the name as the winner spelt it */
        char err[256];
};

static int race_line(int i, const char *line, size_t len, void *arg)
{
        struct race *r = arg;
        char old[64], neu[64];
        if (strcmp(line, "! nickname taken") == 0) {
                r->taken[i]++;
        } else if (sscanf(line, "* %63s is now %63s", old, neu) == 2) {
                if (strcasecmp(neu, r->name) != 0)
                        return 0;
                r->seen[i]++;
                int w = -1;
                for (int k = 0; k < r->n; k++)
                        if (strcmp(r->c[k].nick, old) == 0)
                                w = k;
                if (w < 0 || (r->winner >= 0 && r->winner != w)) {
                        snprintf(r->err, sizeof(r->err), "second winner: %s", line);
                        return -EPROTO;
                }
                r->winner = w;
                strcpy(r->won, neu);
        } else {
                return 0;
        }
        if (r->seen[i] > 1 || r->taken[i] > 1) {
                snprintf(r->err, sizeof(r->err), "client %d: twice: %s", i, line);
                return -EPROTO;
        }
        return 0;
}

static bool race_done(void *arg)
{
        struct race *r = arg;
        if (r->winner < 0)
                return false;
        for (int i = 0; i < r->n; i++)
                if (!r->seen[i] || (i != r->winner && !r->taken[i]))
                        return false;
        return true;
}

Test(chat_delivery, concurrent_nick_races_have_one_winner)
{
        enum { CLIENTS = 24, ROUNDS = 12 };
        struct chat_server *cs = start(4);
        struct cc c[CLIENTS];
        open_all(c, CLIENTS, chat_server_port(cs));
        int taken[CLIENTS], seen[CLIENTS];
        for (int round = 0; round < ROUNDS; round++) {
                char name[32], variant[32];
                snprintf(name, sizeof(name), "Racer%d", round);
                memset(taken, 0, sizeof(taken));
                memset(seen, 0, sizeof(seen));
                struct race r = {c, CLIENTS, name, taken, seen, -1, "", ""};
                /* Every client asks at once, in a different case each. */
                for (int i = 0; i < CLIENTS; i++) {
                        strcpy(variant, name);
                        for (int k = 0; variant[k]; k++)
                                if (((i >> (k % 5)) & 1) && isalpha((unsigned char)variant[k]))
                                        variant[k] ^= 0x20;
                        cr_assert_eq(cc_sendf(&c[i], "/nick %s\r\n", variant), 0);
                }
                int rc = cc_pump(c, CLIENTS, race_line, race_done, &r, 20000);
                cr_assert_eq(rc, 0, "round %d: %s %s", round, strerror(-rc), r.err);
                cr_assert_eq(taken[r.winner], 0);
                /* The registry agrees: the name is the winner's. */
                strcpy(c[r.winner].nick, r.won);
                send_str(&c[(r.winner + 1) % CLIENTS], "/msg racer");
                cr_assert_eq(cc_sendf(&c[(r.winner + 1) % CLIENTS], "%d ping\r\n", round), 0);
                cc_expectf(&c[r.winner], "[pm] %s: ping", c[(r.winner + 1) % CLIENTS].nick);
        }
        close_all(c, CLIENTS);
        stop(cs);
}

/* ---- room moves while messages flow ---- */

enum { MV_SENDERS = 4, MV_STAYERS = 8, MV_MOVERS = 4, MV_MOVES = 40, MV_MSGS = 1500 };
#define MV_CLIENTS (MV_SENDERS + MV_STAYERS + MV_MOVERS)

struct moves {
        struct cc *c;
        char room[MV_CLIENTS][8]; /* current room, from the client's own joins */
        int seg[MV_CLIENTS];      /* own joins seen */
        int next[MV_CLIENTS][MV_SENDERS];
        int seg_of[MV_CLIENTS][MV_SENDERS]; /* segment of the last message seen */
        int got[MV_CLIENTS][MV_SENDERS];
        char err[256];
};

static const char *sender_room(int s)
{
        return s < MV_SENDERS / 2 ? "ra" : "rb";
}

static bool is_mover(int i)
{
        return i >= MV_SENDERS + MV_STAYERS;
}

static int moves_line(int i, const char *line, size_t len, void *arg)
{
        struct moves *m = arg;
        char room[64], want[128];
        int s, q;
        snprintf(want, sizeof(want), "* %s joined #", m->c[i].nick);
        if (strncmp(line, want, strlen(want)) == 0) {
                snprintf(m->room[i], sizeof(m->room[i]), "%s", line + strlen(want));
                m->seg[i]++;
                return 0;
        }
        if (!parse_msg(line, room, sizeof(room), &s, &q))
                return 0;
        if (strcmp(room, m->room[i]) != 0 || strcmp(room, sender_room(s)) != 0) {
                snprintf(m->err, sizeof(m->err), "client %d in #%s got %s", i, m->room[i], line);
                return -EPROTO;
        }
        /* Within one stay in a room a sender's messages are consecutive;
         * across stays they still only go forward. */
        bool same_stay = m->seg_of[i][s] == m->seg[i];
        if ((same_stay || !is_mover(i)) ? q != m->next[i][s] : q < m->next[i][s]) {
                snprintf(m->err, sizeof(m->err), "client %d: sender %d: %d after %d (%s stay)", i,
                         s, q, m->next[i][s] - 1, same_stay ? "same" : "new");
                return -EPROTO;
        }
        m->next[i][s] = q + 1;
        m->seg_of[i][s] = m->seg[i];
        m->got[i][s]++;
        return 0;
}

static bool moves_done(void *arg)
{
        struct moves *m = arg;
        for (int i = 0; i < MV_CLIENTS; i++) {
                if (is_mover(i)) {
                        if (m->seg[i] < MV_MOVES)
                                return false;
                        continue;
                }
                for (int s = 0; s < MV_SENDERS; s++)
                        if (strcmp(sender_room(s), m->room[i]) == 0 && m->next[i][s] != MV_MSGS)
                                return false;
        }
        return true;
}

struct mover_arg {
        struct cc *c;
        int failed;
};

static void *mover_thread(void *p)
{
        struct mover_arg *a = p;
        for (int k = 0; k < MV_MOVES; k++) {
                if (cc_sendf(a->c, "/join %s\r\n", k % 2 ? "ra" : "rb"))
                        a->failed = 1;
                usleep(3000);
        }
        return NULL;
}

Test(chat_delivery, room_moves_while_messages_flow)
{
        struct chat_server *cs = start(4);
        struct cc c[MV_CLIENTS];
        open_all(c, MV_CLIENTS, chat_server_port(cs));
        struct moves *m = calloc(1, sizeof(*m));
        m->c = c;
        /* Senders 0,1 and half the stayers in #ra, the rest in #rb; movers
         * start in #ra. */
        for (int i = 0; i < MV_CLIENTS; i++) {
                const char *room = i < MV_SENDERS                ? sender_room(i)
                                   : i < MV_SENDERS + MV_STAYERS ? (i % 2 ? "rb" : "ra")
                                                                 : "ra";
                join(&c[i], room);
                strcpy(m->room[i], room);
        }
        pthread_t th[MV_SENDERS + MV_MOVERS];
        struct sender_arg sa[MV_SENDERS];
        struct mover_arg ma[MV_MOVERS];
        for (int s = 0; s < MV_SENDERS; s++) {
                sa[s] = (struct sender_arg){&c[s], s, MV_MSGS, 8, 1000, 0};
                pthread_create(&th[s], NULL, sender_thread, &sa[s]);
        }
        for (int k = 0; k < MV_MOVERS; k++) {
                ma[k] = (struct mover_arg){&c[MV_SENDERS + MV_STAYERS + k], 0};
                pthread_create(&th[MV_SENDERS + k], NULL, mover_thread, &ma[k]);
        }
        int r = cc_pump(c, MV_CLIENTS, moves_line, moves_done, m, 60000);
        for (int k = 0; k < MV_SENDERS + MV_MOVERS; k++)
                pthread_join(th[k], NULL);
        cr_assert_eq(r, 0, "%s %s", strerror(-r), m->err);
        for (int k = 0; k < MV_MOVERS; k++) {
                int i = MV_SENDERS + MV_STAYERS + k;
                cr_assert_eq(ma[k].failed, 0);
                cr_assert_str_eq(m->room[i], "ra");
                int got = 0;
                for (int s = 0; s < MV_SENDERS; s++)
                        got += m->got[i][s];
                cr_log_info("mover %d received %d messages across %d moves", k, got, MV_MOVES);
        }
        free(m);
        close_all(c, MV_CLIENTS);
        stop(cs);
}

/*
 * The move is exact for what was sent before it: once the sender has seen
 * its own line, a member that then moves away has received the line too.
 */
Test(chat_delivery, a_move_keeps_what_was_sent_before_it)
{
        struct chat_server *cs = start(4);
        struct cc c[4];
        open_all(c, 4, chat_server_port(cs));
        for (int i = 0; i < 4; i++)
                join(&c[i], "ra");
        char want[128], got[CC_LINE_MAX];
        for (int k = 0; k < 60; k++) {
                struct cc *s = &c[k % 2], *mv = &c[2 + k % 2];
                cr_assert_eq(cc_sendf(s, "mark %d\r\n", k), 0);
                snprintf(want, sizeof(want), "[#ra] %s: mark %d", s->nick, k);
                cr_assert_geq(cc_skip_to(s, want, 10000), 0);
                send_str(mv, "/join rb\r\n");
                bool seen = false;
                snprintf(want, sizeof(want), "* %s joined #rb", mv->nick);
                for (;;) {
                        cr_assert_geq(cc_line(mv, got, sizeof(got), 10000), 0);
                        if (strcmp(got, want) == 0)
                                break;
                        char mark[128];
                        snprintf(mark, sizeof(mark), "[#ra] %s: mark %d", s->nick, k);
                        seen |= strcmp(got, mark) == 0;
                }
                cr_assert(seen, "round %d: moved away before receiving what was sent", k);
                join(mv, "ra");
        }
        close_all(c, 4);
        stop(cs);
}

/* ---- clients that vanish while the room talks ---- */

enum { VANISH_STAY = 4, VANISH_GONE = 12, VANISH_MSGS = 3000 };

struct vanish {
        struct cc *gone;
        int next[VANISH_STAY];
        int left[VANISH_STAY];
        bool seen[VANISH_STAY][VANISH_GONE];
        char err[192];
};

static int vanish_line(int i, const char *line, size_t len, void *arg)
{
        (void)len;
        struct vanish *v = arg;
        char room[64], want[128];
        int s, q;
        if (parse_msg(line, room, sizeof(room), &s, &q)) {
                if (q != v->next[i]) {
                        snprintf(v->err, sizeof(v->err), "client %d: m %d after %d", i, q,
                                 v->next[i]);
                        return -EPROTO;
                }
                v->next[i]++;
                return 0;
        }
        for (int g = 0; g < VANISH_GONE; g++) {
                snprintf(want, sizeof(want), "* %s left #lobby", v->gone[g].nick);
                if (strcmp(line, want) != 0)
                        continue;
                if (v->seen[i][g]) {
                        snprintf(v->err, sizeof(v->err), "client %d: \"%s\" twice", i, line);
                        return -EPROTO;
                }
                v->seen[i][g] = true;
                v->left[i]++;
        }
        return 0;
}

static bool vanish_done(void *arg)
{
        struct vanish *v = arg;
        for (int i = 0; i < VANISH_STAY; i++)
                if (v->next[i] != VANISH_MSGS || v->left[i] != VANISH_GONE)
                        return false;
        return true;
}

/* Clients reset (RST) while a room message flood is written to them: some
 * sends to them fail, and each leaves once, announced, from its on_close;
 * the others get every line, in order. */
static void vanishing(int workers)
{
        struct chat_server *cs = start(workers);
        struct cc c[VANISH_STAY + VANISH_GONE];
        open_all(c, VANISH_STAY + VANISH_GONE, chat_server_port(cs));
        struct vanish v = {.gone = &c[VANISH_STAY]};

        struct sender_arg sa = {&c[0], 0, VANISH_MSGS, 10, 100, 0};
        pthread_t th;
        pthread_create(&th, NULL, sender_thread, &sa);
        for (int g = 0; g < VANISH_GONE; g++) {
                usleep(2000);
                struct linger lg = {.l_onoff = 1, .l_linger = 0};
                setsockopt(v.gone[g].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
                close(v.gone[g].fd);
                v.gone[g].fd = -1;
        }
        int r = cc_pump(c, VANISH_STAY, vanish_line, vanish_done, &v, 30000);
        pthread_join(th, NULL);
        cr_assert_eq(sa.failed, 0);
        cr_assert_eq(r, 0, "%d workers: %s %s; got %d %d %d %d, left %d %d %d %d", workers,
                     strerror(-r), v.err, v.next[0], v.next[1], v.next[2], v.next[3], v.left[0],
                     v.left[1], v.left[2], v.left[3]);
        close_all(c, VANISH_STAY + VANISH_GONE);
        stop(cs);
}

Test(chat_delivery, reset_clients_leave_once_while_messages_flow)
{
        vanishing(1);
        vanishing(4);
}

/* ---- the slow consumer ---- */

struct slow {
        int nfast, msgs;
        int next[4];
        bool left_seen[4];
        const char *slow_nick;
        char err[256];
};

static int slow_line(int i, const char *line, size_t len, void *arg)
{
        struct slow *sl = arg;
        char room[64], want[128];
        int s, q;
        snprintf(want, sizeof(want), "* %s left #lobby", sl->slow_nick);
        if (strcmp(line, want) == 0) {
                sl->left_seen[i] = true;
                return 0;
        }
        if (!parse_msg(line, room, sizeof(room), &s, &q))
                return 0;
        if (q != sl->next[i]) {
                snprintf(sl->err, sizeof(sl->err), "fast client %d: %d, expected %d", i, q,
                         sl->next[i]);
                return -EPROTO;
        }
        __atomic_store_n(&sl->next[i], sl->next[i] + 1, __ATOMIC_RELEASE);
        return 0;
}

static bool slow_done(void *arg)
{
        struct slow *sl = arg;
        for (int i = 0; i < sl->nfast; i++)
                if (sl->next[i] != sl->msgs || !sl->left_seen[i])
                        return false;
        return true;
}

enum { SLOW_MSGS = 8000, SLOW_TEXT = 1000 };

/*
 * Sends SLOW_MSGS lines "m 0 Q ppp...", SLOW_TEXT bytes each, through the
 * first fast client, never more than SLOW_WINDOW lines ahead of the fast
 * client that read least: on a loaded machine a reader thread may not be
 * scheduled for a while, and the fast clients must never be the slow ones.
 */
enum { SLOW_WINDOW = 32 };

struct big_sender {
        struct cc *c;
        struct slow *sl;
        int failed;
};

static int fast_min(const struct slow *sl)
{
        int m = INT32_MAX;
        for (int i = 0; i < sl->nfast; i++) {
                int n = __atomic_load_n(&sl->next[i], __ATOMIC_ACQUIRE);
                m = n < m ? n : m;
        }
        return m;
}

static void *send_big(void *p)
{
        struct big_sender *b = p;
        char *buf = malloc(SLOW_TEXT + 1);
        int64_t deadline = cc_now_ms() + 60000;
        for (int q = 0; q < SLOW_MSGS && !b->failed; q++) {
                while (q - fast_min(b->sl) > SLOW_WINDOW && cc_now_ms() < deadline)
                        usleep(100);
                int off = snprintf(buf, 64, "m 0 %d ", q);
                memset(buf + off, 'p', SLOW_TEXT - (size_t)off);
                buf[SLOW_TEXT] = '\n';
                b->failed = cc_send(b->c, buf, SLOW_TEXT + 1) != 0;
        }
        free(buf);
        return NULL;
}

static int nick_cmp(const void *a, const void *b)
{
        return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

static void slow_consumer(int workers)
{
        enum { FAST = 3, MSGS = SLOW_MSGS, TEXT = SLOW_TEXT, OUTBUF = 128 * 1024 };
        struct chat_opts o;
        chat_opts_init(&o);
        o.workers = workers;
        o.max_outbuf = OUTBUF;
        o.flood_rate = 0;           /* the fast senders are meant to outrun the slow reader */
        o.drain_timeout_ms = 30000; /* so the goodbye is still there to read */
        struct chat_server *cs = start_with(&o);
        uint16_t port = chat_server_port(cs);

        /* A small receive window so the kernel does not absorb it all. */
        struct cc slow;
        memset(&slow, 0, sizeof(slow));
        slow.fd = socket(AF_INET, SOCK_STREAM, 0);
        int small = 4096;
        setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert_eq(connect(slow.fd, (struct sockaddr *)&a, sizeof(a)), 0);
        char line[CC_LINE_MAX];
        cr_assert_gt(cc_line(&slow, line, sizeof(line), 10000), 10);
        strcpy(slow.nick, line + 10);
        cr_assert_geq(cc_line(&slow, line, sizeof(line), 10000), 0);

        struct cc fast[FAST];
        for (int i = 0; i < FAST; i++)
                cr_assert_eq(cc_open(&fast[i], port), 0);
        struct slow sl = {FAST, MSGS, {0}, {false}, slow.nick, ""};

        /* fast[0] sends 8 MB while the slow one reads nothing: more than the
         * kernel buffers (up to 4 MB of send buffer) and max_outbuf together. */
        pthread_t th;
        struct big_sender bs = {&fast[0], &sl, 0};
        pthread_create(&th, NULL, send_big, &bs);
        int r = cc_pump(fast, FAST, slow_line, slow_done, &sl, 60000);
        pthread_join(th, NULL);
        cr_assert_eq(bs.failed, 0);
        cr_assert_eq(r, 0, "%d workers: %s %s; got %d %d %d, left seen %d %d %d, peak %zu", workers,
                     strerror(-r), sl.err, sl.next[0], sl.next[1], sl.next[2], sl.left_seen[0],
                     sl.left_seen[1], sl.left_seen[2], chat_server_peak_queued(cs));

        /* Dropped means gone from the room at once, although its connection
         * still lingers to flush: /who and /rooms count the fast ones only. */
        const char *names[FAST];
        for (int i = 0; i < FAST; i++)
                names[i] = fast[i].nick;
        qsort(names, FAST, sizeof(names[0]), nick_cmp);
        send_str(&fast[1], "/who\r\n/rooms\r\n");
        cc_expectf(&fast[1], "* members of #lobby: %s %s %s", names[0], names[1], names[2]);
        cc_expect(&fast[1], "* rooms: #lobby(3)");

        /* Memory stayed bounded: no client ever had more than max_outbuf
         * plus one line pending. */
        size_t peak = chat_server_peak_queued(cs);
        cr_assert_leq(peak, OUTBUF + TEXT + CHAT_LINE_OVERHEAD, "peak pending output %zu", peak);
        cr_assert_gt(peak, OUTBUF, "the slow client was never over the limit (%zu)", peak);

        /* The slow client got an unbroken prefix, the notice, then the end. */
        int next = 0, n;
        char room[64];
        int s, q;
        for (;;) {
                n = cc_line(&slow, line, sizeof(line), 10000);
                cr_assert_geq(n, 0, "slow client: %s after %d messages", strerror(-n), next);
                if (strstr(line, " joined #lobby") && line[0] == '*')
                        continue; /* the fast ones arriving */
                if (!parse_msg(line, room, sizeof(room), &s, &q))
                        break;
                cr_assert_eq(q, next, "slow client: %d, expected %d", q, next);
                next++;
        }
        cr_assert_str_eq(line, "* disconnected: too slow");
        cr_assert_lt(next, MSGS);
        expect_eof(&slow);
        cc_close(&slow);
        close_all(fast, FAST);
        stop(cs);
}

Test(chat_delivery, a_slow_consumer_is_dropped_and_nobody_else_waits)
{
        slow_consumer(1);
        slow_consumer(4);
}
