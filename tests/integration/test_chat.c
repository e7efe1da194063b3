/*
 * tern-chat over loopback, at 1 and 4 workers: every protocol line, the
 * delivery guarantees under concurrency (exactly once, per-sender order,
 * room moves, nickname races), the slow consumer, limits, shutdown, the
 * command line, and 1,000 clients. Every test tears down to zero live
 * connections, buffers, timers, clients, rooms, nicknames and messages.
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
#include "srvutil.h"

/*
 * tern-chat is an application, not part of libtern: its modules (all but
 * main.c) are compiled into this test so that the tests can drive the
 * server in-process and check that it frees everything it allocated.
 */
#include "../../apps/common/cli.c"
#include "../../apps/chat/live.c"
#include "../../apps/chat/registry.c"
#include "../../apps/chat/worker.c"
#include "../../apps/chat/fanout.c"
#include "../../apps/chat/client.c"
#include "../../apps/chat/who.c"
#include "../../apps/chat/commands.c"
#include "../../apps/chat/server.c"
#include "../../apps/chat/config.c"
#include "../../apps/chat/check.c"

/* ---- server start / stop ---- */

static struct chat_server *start_with(struct chat_opts *o)
{
        o->bind = "127.0.0.1";
        o->port = 0;
        if (!o->drain_timeout_ms)
                o->drain_timeout_ms = 2000;
        struct chat_server *cs = chat_server_new(o);
        cr_assert_not_null(cs, "chat_server_new: %s", strerror(errno));
        cr_assert_eq(chat_server_start(cs), 0);
        return cs;
}

static struct chat_server *start(int workers)
{
        struct chat_opts o;
        chat_opts_init(&o);
        o.workers = workers;
        return start_with(&o);
}

static void stop(struct chat_server *cs)
{
        chat_server_stop(cs);
        cr_assert_eq(chat_server_wait(cs), 0);
        chat_server_free(cs);
        su_assert_nothing_live();
        struct chat_live_counts lc;
        chat_live_counts(&lc);
        cr_assert_eq(lc.clients, 0, "%ld clients still live", lc.clients);
        cr_assert_eq(lc.rooms, 0, "%ld rooms still live", lc.rooms);
        cr_assert_eq(lc.nicks, 0, "%ld nicknames still live", lc.nicks);
        cr_assert_eq(lc.msgs, 0, "%ld messages still live", lc.msgs);
}

/* Opens @n clients one after another; each earlier one sees each later
 * one join the lobby, and those notices are consumed here. */
static void open_all(struct cc *c, int n, uint16_t port)
{
        for (int i = 0; i < n; i++) {
                cr_assert_eq(cc_open(&c[i], port), 0, "client %d", i);
                for (int j = 0; j < i; j++)
                        cc_expectf(&c[j], "* %s joined #lobby", c[i].nick);
        }
}

static void close_all(struct cc *c, int n)
{
        for (int i = 0; i < n; i++)
                cc_close(&c[i]);
}

static void send_str(struct cc *c, const char *s)
{
        cr_assert_eq(cc_send(c, s, strlen(s)), 0, "%s: send failed", c->nick);
}

/* Moves @c to @room and waits for its own join notice (the room may be
 * spelt otherwise: its creator's spelling wins). */
static void join(struct cc *c, const char *room)
{
        cr_assert_eq(cc_sendf(c, "/join %s\r\n", room), 0);
        char want[128], got[CC_LINE_MAX];
        snprintf(want, sizeof(want), "* %s joined #%s", c->nick, room);
        int r;
        while ((r = cc_line(c, got, sizeof(got), 10000)) >= 0 && strcasecmp(got, want) != 0)
                ;
        cr_assert_geq(r, 0, "%s: no \"%s\": %s", c->nick, want, strerror(-r));
}

static void expect_eof(struct cc *c)
{
        char line[CC_LINE_MAX];
        int r = cc_line(c, line, sizeof(line), 10000);
        cr_assert(r == -ENODATA || r == -ECONNRESET, "%s: expected the end, got %d \"%s\"", c->nick,
                  r, r >= 0 ? line : "");
}

/* ---- the protocol, line by line ---- */

static void welcome_and_room_messages(int workers)
{
        struct chat_server *cs = start(workers);
        uint16_t port = chat_server_port(cs);
        struct cc c[3];
        open_all(c, 3, port);
        cr_assert_eq(strncmp(c[0].nick, "guest", 5), 0, "guest name: %s", c[0].nick);
        cr_assert_str_neq(c[0].nick, c[1].nick);

        /* Everyone in the room gets it, the sender included. */
        send_str(&c[0], "hello, world\r\n");
        for (int i = 0; i < 3; i++)
                cc_expectf(&c[i], "[#lobby] %s: hello, world", c[0].nick);

        /* "\n" and "\r\n" both end lines; empty lines are ignored. */
        send_str(&c[1], "\r\n\n\r\nbare newline\nand crlf\r\n");
        for (int i = 0; i < 3; i++) {
                cc_expectf(&c[i], "[#lobby] %s: bare newline", c[1].nick);
                cc_expectf(&c[i], "[#lobby] %s: and crlf", c[1].nick);
        }

        /* A disconnect counts as leaving. */
        cc_close(&c[2]);
        for (int i = 0; i < 2; i++)
                cc_expectf(&c[i], "* %s left #lobby", c[2].nick);
        close_all(c, 2);
        stop(cs);
}

Test(chat, welcome_then_messages_reach_every_member)
{
        welcome_and_room_messages(1);
        welcome_and_room_messages(4);
}

static void nick_rules(int workers)
{
        struct chat_server *cs = start(workers);
        struct cc c[3];
        open_all(c, 3, chat_server_port(cs));
        join(&c[2], "elsewhere");
        for (int i = 0; i < 2; i++)
                cc_expectf(&c[i], "* %s left #lobby", c[2].nick);

        char old[64];
        strcpy(old, c[0].nick);
        send_str(&c[0], "/nick Alice\r\n");
        for (int i = 0; i < 2; i++)
                cc_expectf(&c[i], "* %s is now Alice", old);
        strcpy(c[0].nick, "Alice");

        /* Unique ignoring case. */
        send_str(&c[1], "/nick alice\r\n/nick ALICE\r\n");
        cc_expect(&c[1], "! nickname taken");
        cc_expect(&c[1], "! nickname taken");
        /* The holder may change the case of its own name. */
        send_str(&c[0], "/nick aLiCe\r\n");
        for (int i = 0; i < 2; i++)
                cc_expect(&c[i], "* Alice is now aLiCe");
        strcpy(c[0].nick, "aLiCe");
        /* The same name again changes nothing. */
        send_str(&c[0], "/nick aLiCe\r\nstill me\r\n");
        cc_expect(&c[0], "[#lobby] aLiCe: still me");
        cc_expect(&c[1], "[#lobby] aLiCe: still me");

        static const char *const bad[] = {
            "/nick\r\n",
            "/nick   \r\n",
            "/nick bad name\r\n",
            "/nick bad!\r\n",
            "/nick caf\xc3\xa9\r\n",
            "/nick 123456789012345678901234567890123\r\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                send_str(&c[1], bad[i]);
                cc_expect(&c[1], "! invalid nickname");
        }
        /* 32 characters of the whole alphabet are fine. */
        strcpy(old, c[1].nick);
        send_str(&c[1], "/nick Zz_-09abcdefghijklmnopqrstuvw\r\n");
        for (int i = 0; i < 2; i++)
                cc_expectf(&c[i], "* %s is now Zz_-09abcdefghijklmnopqrstuvw", old);
        strcpy(c[1].nick, "Zz_-09abcdefghijklmnopqrstuvw");

        /* A released name can be taken; messages carry the new name. */
        send_str(&c[0], "/nick Bob\r\n");
        for (int i = 0; i < 2; i++)
                cc_expect(&c[i], "* aLiCe is now Bob");
        send_str(&c[1], "/nick alice\r\nhi\r\n");
        for (int i = 0; i < 2; i++) {
                cc_expectf(&c[i], "* %s is now alice", c[1].nick);
                cc_expect(&c[i], "[#lobby] alice: hi");
        }
        /* Only the current room hears of nick changes. */
        send_str(&c[2], "here\r\n");
        cc_expectf(&c[2], "[#elsewhere] %s: here", c[2].nick);
        close_all(c, 3);
        stop(cs);
}

Test(chat, nicknames_are_valid_unique_and_announced)
{
        nick_rules(1);
        nick_rules(4);
}

static void join_rules(int workers)
{
        struct chat_server *cs = start(workers);
        struct cc c[3];
        open_all(c, 3, chat_server_port(cs));

        send_str(&c[0], "/join #Dev\r\n");
        cc_expectf(&c[0], "* %s joined #Dev", c[0].nick);
        cc_expectf(&c[1], "* %s left #lobby", c[0].nick);
        cc_expectf(&c[2], "* %s left #lobby", c[0].nick);

        /* Without '#' and in another case: the same room, spelt as made. */
        send_str(&c[1], "/join dev\r\n");
        cc_expectf(&c[0], "* %s joined #Dev", c[1].nick);
        cc_expectf(&c[1], "* %s joined #Dev", c[1].nick);
        cc_expectf(&c[2], "* %s left #lobby", c[1].nick);
        /* Joining the room one is in changes nothing. */
        send_str(&c[1], "/join #DEV\r\nin dev\r\n");
        cc_expectf(&c[0], "[#Dev] %s: in dev", c[1].nick);
        cc_expectf(&c[1], "[#Dev] %s: in dev", c[1].nick);

        static const char *const bad[] = {
            "/join\r\n",         "/join #\r\n",
            "/join ##x\r\n",     "/join two words\r\n",
            "/join dot.ted\r\n", "/join 123456789012345678901234567890123\r\n",
            "/join #a/b\r\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                send_str(&c[0], bad[i]);
                cc_expect(&c[0], "! invalid room");
        }
        /* Other rooms hear nothing of #Dev. */
        send_str(&c[2], "lobby only\r\n");
        cc_expectf(&c[2], "[#lobby] %s: lobby only", c[2].nick);

        cc_close(&c[1]);
        cc_expectf(&c[0], "* %s left #Dev", c[1].nick);
        /* An emptied room is gone. */
        join(&c[0], "lobby");
        cc_expectf(&c[2], "* %s joined #lobby", c[0].nick);
        send_str(&c[2], "/rooms\r\n");
        cc_expect(&c[2], "* rooms: #lobby(2)");
        cc_close(&c[0]);
        cc_close(&c[2]);
        stop(cs);
}

Test(chat, join_moves_between_rooms_and_announces_it)
{
        join_rules(1);
        join_rules(4);
}

static void rooms_and_who(int workers)
{
        struct chat_server *cs = start(workers);
        struct cc c[5];
        open_all(c, 5, chat_server_port(cs));
        join(&c[0], "zeta");
        join(&c[1], "Alpha");
        join(&c[2], "alpha");
        join(&c[3], "alpha");
        static const char *const names[] = {"zed", "Amy", "bob"};
        for (int i = 0; i < 3; i++) {
                char want[128];
                cr_assert_eq(cc_sendf(&c[1 + i], "/nick %s\r\n", names[i]), 0);
                snprintf(want, sizeof(want), "* %s is now %s", c[1 + i].nick, names[i]);
                cr_assert_geq(cc_skip_to(&c[1 + i], want, 10000), 0);
                strcpy(c[1 + i].nick, names[i]);
        }
        /* Drain what c[3] has seen so far. */
        send_str(&c[3], "sync\r\n");
        cr_assert_geq(cc_skip_to(&c[3], "[#Alpha] bob: sync", 10000), 0);

        /* c[4] saw the others leave the lobby: skip to the answer. */
        send_str(&c[4], "/rooms\r\n");
        cr_assert_geq(cc_skip_to(&c[4], "* rooms: #Alpha(3) #lobby(1) #zeta(1)", 10000), 0);
        /* Pipelined: the replies keep the order of the commands, although
         * /who asks other workers. */
        send_str(&c[3], "/who\r\n/rooms\r\n/who\r\nafter\r\n");
        cc_expect(&c[3], "* members of #Alpha: Amy bob zed");
        cc_expect(&c[3], "* rooms: #Alpha(3) #lobby(1) #zeta(1)");
        cc_expect(&c[3], "* members of #Alpha: Amy bob zed");
        cc_expect(&c[3], "[#Alpha] bob: after");
        send_str(&c[4], "/who\r\n");
        cc_expectf(&c[4], "* members of #lobby: %s", c[4].nick);
        close_all(c, 5);
        stop(cs);
}

Test(chat, rooms_and_who_are_sorted_and_in_command_order)
{
        rooms_and_who(1);
        rooms_and_who(4);
}

static void private_messages(int workers)
{
        struct chat_server *cs = start(workers);
        struct cc c[3];
        open_all(c, 3, chat_server_port(cs));
        join(&c[2], "other");
        for (int i = 0; i < 2; i++)
                cc_expectf(&c[i], "* %s left #lobby", c[2].nick);
        send_str(&c[1], "/nick Bea\r\n");
        for (int i = 0; i < 2; i++)
                cc_expectf(&c[i], "* %s is now Bea", c[1].nick);
        strcpy(c[1].nick, "Bea");

        /* The name ignoring case, the text trimmed. */
        send_str(&c[0], "/msg bea  hi there\t \r\n");
        cc_expectf(&c[0], "[pm to Bea] %s: hi there", c[0].nick);
        cc_expectf(&c[1], "[pm] %s: hi there", c[0].nick);

        /* Across rooms, with the text's control characters replaced. */
        send_str(&c[2], "/msg BEA \x1b[1mbold\r\n");
        cc_expectf(&c[2], "[pm to Bea] %s: ?[1mbold", c[2].nick);
        cc_expectf(&c[1], "[pm] %s: ?[1mbold", c[2].nick);

        send_str(&c[2], "/msg nobody hello\r\n");
        cc_expect(&c[2], "! no such user nobody");
        send_str(&c[2], "/msg bad!name hello\r\n");
        cc_expect(&c[2], "! no such user bad!name");
        send_str(&c[2], "/msg\r\n/msg Bea\r\n/msg Bea   \r\n");
        cc_expect(&c[2], "! usage: /msg NAME TEXT");
        cc_expect(&c[2], "! usage: /msg NAME TEXT");
        cc_expect(&c[2], "! usage: /msg NAME TEXT");
        /* To oneself: both lines. */
        send_str(&c[1], "/msg Bea note\r\n");
        cc_expect(&c[1], "[pm to Bea] Bea: note");
        cc_expect(&c[1], "[pm] Bea: note");
        /* Nobody else saw any of it. */
        send_str(&c[2], "end\r\n");
        cc_expectf(&c[2], "[#other] %s: end", c[2].nick);
        close_all(c, 3);
        stop(cs);
}

Test(chat, private_messages_reach_only_the_two)
{
        private_messages(1);
        private_messages(4);
}

Test(chat, quit_says_bye_and_closes)
{
        struct chat_server *cs = start(4);
        struct cc c[2];
        open_all(c, 2, chat_server_port(cs));
        /* Nothing after /quit is read. */
        send_str(&c[0], "/quit\r\nnot said\r\n");
        cc_expect(&c[0], "* bye");
        expect_eof(&c[0]);
        cc_expectf(&c[1], "* %s left #lobby", c[0].nick);
        send_str(&c[1], "/QUIT now\r\n");
        cc_expect(&c[1], "* bye");
        expect_eof(&c[1]);
        close_all(c, 2);
        stop(cs);
}

/* `printf '/who\n/rooms\n' | nc -N host 7000`: the answers come, then the end. */
Test(chat, half_close_gets_its_answers_then_leaves)
{
        struct chat_server *cs = start(4);
        struct cc c[4];
        open_all(c, 4, chat_server_port(cs));
        send_str(&c[0], "/who\r\n/rooms\r\nbye all\r\n");
        cr_assert_eq(shutdown(c[0].fd, SHUT_WR), 0);
        char want[512];
        snprintf(want, sizeof(want), "* members of #lobby: %s %s %s %s", c[0].nick, c[1].nick,
                 c[2].nick, c[3].nick);
        cc_expect(&c[0], want);
        cc_expect(&c[0], "* rooms: #lobby(4)");
        cc_expectf(&c[0], "[#lobby] %s: bye all", c[0].nick);
        expect_eof(&c[0]);
        cc_expectf(&c[1], "[#lobby] %s: bye all", c[0].nick);
        cc_expectf(&c[1], "* %s left #lobby", c[0].nick);
        close_all(c, 4);
        stop(cs);
}

Test(chat, help_and_unknown_commands)
{
        struct chat_server *cs = start(1);
        struct cc c;
        cr_assert_eq(cc_open(&c, chat_server_port(cs)), 0);
        send_str(&c, "/help\r\n");
        cc_expect(&c, "* commands:");
        char line[CC_LINE_MAX];
        int n = 0;
        do {
                cr_assert_geq(cc_line(&c, line, sizeof(line), 10000), 0);
                cr_assert_eq(strncmp(line, "* ", 2), 0, "help line: %s", line);
                n++;
        } while (strcmp(line, "* any other line is said to your room") != 0);
        cr_assert_geq(n, 8);
        send_str(&c, "/frobnicate the thing\r\n/\r\n/\x1b\r\n");
        cc_expect(&c, "! unknown command /frobnicate");
        cc_expect(&c, "! unknown command /");
        cc_expect(&c, "! unknown command /?");
        cc_close(&c);
        stop(cs);
}

Test(chat, control_characters_are_replaced)
{
        struct chat_server *cs = start(4);
        struct cc c[2];
        open_all(c, 2, chat_server_port(cs));
        static const char in[] = "a\x1b[2Jb\x00"
                                 "c\x7f"
                                 "d\te\rf\x01\x1f\x80\xff\xc3\xa9 end\r\n";
        cr_assert_eq(cc_send(&c[0], in, sizeof(in) - 1), 0);
        for (int i = 0; i < 2; i++)
                cc_expectf(&c[i], "[#lobby] %s: a?[2Jb?c?d\te?f??\x80\xff\xc3\xa9 end", c[0].nick);
        /* A trailing CR before the newline is the terminator, not text. */
        send_str(&c[0], "x\r\r\n");
        for (int i = 0; i < 2; i++)
                cc_expectf(&c[i], "[#lobby] %s: x?", c[0].nick);
        close_all(c, 2);
        stop(cs);
}

static void overlong_lines(int workers)
{
        struct chat_opts o;
        chat_opts_init(&o);
        o.workers = workers;
        o.max_line = 64;
        struct chat_server *cs = start_with(&o);
        struct cc c[2];
        open_all(c, 2, chat_server_port(cs));
        char big[300];
        memset(big, 'x', sizeof(big));

        /* Exactly max_line is fine, one more is not. */
        char line[128];
        memset(line, 'y', 64);
        memcpy(line + 64, "\r\n", 3);
        send_str(&c[0], line);
        for (int i = 0; i < 2; i++)
                cc_expectf(&c[i], "[#lobby] %s: %.64s", c[0].nick, line);
        memset(line, 'z', 65);
        memcpy(line + 65, "\n", 2);
        send_str(&c[0], line);
        cc_expect(&c[0], "! line too long");

        /* In pieces, a command too: discarded up to its end; the connection
         * stays and the next line is whole. */
        send_str(&c[0], "/nick ");
        for (int k = 0; k < 5; k++)
                cr_assert_eq(cc_send(&c[0], big, sizeof(big)), 0);
        send_str(&c[0], "\r\nnext\r\n");
        cc_expect(&c[0], "! line too long");
        for (int i = 0; i < 2; i++)
                cc_expectf(&c[i], "[#lobby] %s: next", c[0].nick);
        close_all(c, 2);
        stop(cs);
}

Test(chat, overlong_lines_are_refused_and_discarded)
{
        overlong_lines(1);
        overlong_lines(4);
}

Test(chat, binary_lines_arrive_as_bytes)
{
        struct chat_server *cs = start(4);
        struct cc c[2];
        open_all(c, 2, chat_server_port(cs));
        uint8_t *data = malloc(4096 + 2);
        char *want = malloc(CC_LINE_MAX), *got = malloc(CC_LINE_MAX);
        srand(7);
        for (int k = 0; k < 60; k++) {
                size_t len = 1 + (size_t)rand() % 4096;
                for (size_t i = 0; i < len; i++) {
                        data[i] = (uint8_t)rand();
                        if (data[i] == '\n')
                                data[i] = 0;
                }
                if (data[0] == '/')
                        data[0] = 'x'; /* a message, not a command */
                if (data[len - 1] == '\r')
                        data[len - 1] = 'r'; /* the terminator would eat it */
                data[len] = '\n';
                cr_assert_eq(cc_send(&c[0], data, len + 1), 0);
                int off = snprintf(want, CC_LINE_MAX, "[#lobby] %s: ", c[0].nick);
                chat_sanitize(want + off, data, len);
                want[off + (int)len] = '\0';
                for (int i = 0; i < 2; i++) {
                        int r = cc_line(&c[i], got, CC_LINE_MAX, 10000);
                        cr_assert_eq(r, off + (int)len, "line %d: length %d, want %zu", k, r,
                                     off + len);
                        cr_assert_eq(memcmp(got, want, (size_t)r), 0, "line %d differs", k);
                }
        }
        free(data);
        free(want);
        free(got);
        close_all(c, 2);
        stop(cs);
}

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

Test(chat, every_member_gets_each_message_once_in_sender_order)
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

Test(chat, concurrent_nick_races_have_one_winner)
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

Test(chat, room_moves_while_messages_flow)
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
Test(chat, a_move_keeps_what_was_sent_before_it)
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

static void slow_consumer(int workers)
{
        enum { FAST = 3, MSGS = SLOW_MSGS, TEXT = SLOW_TEXT, OUTBUF = 128 * 1024 };
        struct chat_opts o;
        chat_opts_init(&o);
        o.workers = workers;
        o.max_outbuf = OUTBUF;
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

Test(chat, a_slow_consumer_is_dropped_and_nobody_else_waits)
{
        slow_consumer(1);
        slow_consumer(4);
}

/* ---- idle, limits, shutdown ---- */

Test(chat, idle_clients_are_told_and_closed)
{
        enum { ROUNDS = 14 };
        struct chat_opts o;
        chat_opts_init(&o);
        o.workers = 4;
        o.idle_timeout_ms = 1500;
        struct chat_server *cs = start_with(&o);
        struct cc c[2];
        open_all(c, 2, chat_server_port(cs));
        /* c[1] talks every 150 ms, ten times inside the limit; c[0] only
         * listens, and listening is not activity. */
        for (int k = 0; k < ROUNDS; k++) {
                usleep(150 * 1000);
                send_str(&c[1], "still here\r\n");
        }
        char said[128], left[128], line[CC_LINE_MAX];
        snprintf(said, sizeof(said), "[#lobby] %s: still here", c[1].nick);
        snprintf(left, sizeof(left), "* %s left #lobby", c[0].nick);
        int heard = 0;
        for (;;) {
                cr_assert_geq(cc_line(&c[0], line, sizeof(line), 10000), 0);
                if (strcmp(line, "* idle timeout") == 0)
                        break;
                cr_assert_str_eq(line, said);
                heard++;
        }
        cr_assert_gt(heard, 0, "c[0] heard nothing before timing out");
        expect_eof(&c[0]);
        int echoes = 0;
        bool saw_left = false;
        while (echoes < ROUNDS) {
                cr_assert_geq(cc_line(&c[1], line, sizeof(line), 10000), 0);
                echoes += strcmp(line, said) == 0;
                saw_left |= strcmp(line, left) == 0;
                cr_assert_str_neq(line, "* idle timeout", "an active client timed out");
        }
        if (!saw_left)
                cc_expect(&c[1], left);
        close_all(c, 2);
        stop(cs);
}

Test(chat, max_conns_turns_extra_clients_away)
{
        struct chat_opts o;
        chat_opts_init(&o);
        o.workers = 2;
        o.max_conns = 2;
        struct chat_server *cs = start_with(&o);
        struct cc c[3];
        open_all(c, 2, chat_server_port(cs));
        cr_assert_eq(cc_connect_raw(&c[2], chat_server_port(cs)), 0);
        expect_eof(&c[2]);
        close_all(c, 3);
        stop(cs);
}

Test(chat, shutdown_tells_every_client)
{
        struct chat_server *cs = start(4);
        struct cc c[6];
        open_all(c, 6, chat_server_port(cs));
        chat_server_stop(cs);
        /* The goodbye is the next line: nobody is told of the others
         * leaving while everybody leaves. */
        for (int i = 0; i < 6; i++) {
                cc_expect(&c[i], "* server shutting down");
                expect_eof(&c[i]);
        }
        close_all(c, 6);
        stop(cs);
}

/* ---- 1,000 clients ---- */

struct thousand {
        int n;
        int *joins; /* others' joins each client saw */
        int *hello;
        const char *hello_line;
        int complete;
        char err[256];
};

static int thousand_line(int i, const char *line, size_t len, void *arg)
{
        struct thousand *t = arg;
        if (strncmp(line, "* ", 2) == 0 && len > 14 &&
            strcmp(line + len - 14, " joined #lobby") == 0) {
                t->joins[i]++;
        } else if (strcmp(line, t->hello_line) == 0) {
                if (t->hello[i]++) {
                        snprintf(t->err, sizeof(t->err), "client %d: hello twice", i);
                        return -EPROTO;
                }
                /* Joins of later clients all came before: they happened
                 * before the hello was sent. */
                if (t->joins[i] != t->n - 1 - i) {
                        snprintf(t->err, sizeof(t->err), "client %d saw %d joins, expected %d", i,
                                 t->joins[i], t->n - 1 - i);
                        return -EPROTO;
                }
                t->complete++;
        } else {
                snprintf(t->err, sizeof(t->err), "client %d: unexpected %s", i, line);
                return -EPROTO;
        }
        return 0;
}

static bool thousand_done(void *arg)
{
        struct thousand *t = arg;
        return t->complete == t->n;
}

Test(chat, a_thousand_clients)
{
        enum { N = 1000 };
        struct rlimit rl;
        cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < 2 * N + 64)
                cr_skip_test("needs %d descriptors, the hard limit is %lu", 2 * N + 64,
                             (unsigned long)rl.rlim_cur);

        int64_t t0 = cc_now_ms();
        struct chat_server *cs = start(4);
        struct cc *c = calloc(N, sizeof(*c));
        for (int i = 0; i < N; i++)
                cr_assert_eq(cc_open(&c[i], chat_server_port(cs)), 0, "client %d", i);
        int64_t t1 = cc_now_ms();

        struct thousand t = {N, calloc(N, sizeof(int)), calloc(N, sizeof(int)), NULL, 0, ""};
        char hello[128];
        snprintf(hello, sizeof(hello), "[#lobby] %s: hello, all", c[0].nick);
        t.hello_line = hello;
        send_str(&c[0], "hello, all\r\n");
        int r = cc_pump(c, N, thousand_line, thousand_done, &t, 60000);
        cr_assert_eq(r, 0, "%s %s", strerror(-r), t.err);
        int64_t t2 = cc_now_ms();

        send_str(&c[N - 1], "/rooms\r\n/who\r\n");
        cc_expect(&c[N - 1], "* rooms: #lobby(1000)");
        char *who = malloc(CC_LINE_MAX * 4);
        cr_assert_geq(cc_line(&c[N - 1], who, CC_LINE_MAX * 4, 10000), 0);
        int names = 0;
        for (char *p = who; (p = strchr(p, ' ')); p++)
                names++;
        cr_assert_eq(names, 3 + N, "%.80s...", who); /* "* members of #lobby:" has 3 */
        free(who);

        stop(cs);
        int64_t t3 = cc_now_ms();
        close_all(c, N);
        cr_log_info("1000 clients: connect+welcome %lld ms, one message to all %lld ms, "
                    "shutdown %lld ms, whole test %lld ms",
                    (long long)(t1 - t0), (long long)(t2 - t1), (long long)(t3 - t2),
                    (long long)(cc_now_ms() - t0));
        free(t.joins);
        free(t.hello);
        free(c);
}

/* ---- the command line ---- */

static const char *const *fake_env;

static const char *fake_getenv(const char *name)
{
        for (const char *const *e = fake_env; e && *e; e += 2)
                if (strcmp(e[0], name) == 0)
                        return e[1];
        return NULL;
}

static int parse(struct chat_config *cfg, const char *const *env, char *err, int argc, ...)
{
        char *argv[16];
        va_list ap;
        va_start(ap, argc);
        argv[0] = "tern-chat";
        for (int i = 1; i < argc; i++)
                argv[i] = va_arg(ap, char *);
        va_end(ap);
        argv[argc] = NULL;
        fake_env = env;
        FILE *out = fopen("/dev/null", "w");
        int r = chat_config_parse(cfg, argc, argv, fake_getenv, out, err, 256);
        fclose(out);
        return r;
}

Test(chat, config_defaults)
{
        struct chat_config cfg;
        char err[256];
        cr_assert_eq(parse(&cfg, NULL, err, 1), 0, "%s", err);
        cr_assert_null(cfg.opts.bind);
        cr_assert_eq(cfg.opts.port, 7000);
        cr_assert_eq(cfg.opts.workers, 0);
        cr_assert_eq(cfg.opts.idle_timeout_ms, 300000);
        cr_assert_eq(cfg.opts.max_conns, 0);
        cr_assert_eq(cfg.opts.max_line, 4096);
        cr_assert_eq(cfg.opts.max_outbuf, 1024 * 1024);
        cr_assert_eq(cfg.log_level, TERN_LOG_INFO);
        cr_assert_eq(cfg.log_format, TERN_LOG_TEXT);
        cr_assert_null(cfg.check);
}

Test(chat, config_flags_win_over_environment)
{
        static const char *const env[] = {
            "TERN_BIND",
            "::1",
            "TERN_PORT",
            "7100",
            "TERN_WORKERS",
            "3",
            "TERN_IDLE_TIMEOUT",
            "0",
            "TERN_MAX_CONNS",
            "50",
            "TERN_MAX_LINE",
            "1k",
            "TERN_MAX_OUTBUF",
            "2m",
            "TERN_LOG_LEVEL",
            "warn",
            "TERN_LOG_FORMAT",
            "json",
            NULL,
        };
        struct chat_config cfg;
        char err[256];
        cr_assert_eq(parse(&cfg, env, err, 1), 0, "%s", err);
        cr_assert_str_eq(cfg.opts.bind, "::1");
        cr_assert_eq(cfg.opts.port, 7100);
        cr_assert_eq(cfg.opts.workers, 3);
        cr_assert_eq(cfg.opts.idle_timeout_ms, 0);
        cr_assert_eq(cfg.opts.max_conns, 50);
        cr_assert_eq(cfg.opts.max_line, 1024);
        cr_assert_eq(cfg.opts.max_outbuf, 2 * 1024 * 1024);
        cr_assert_eq(cfg.log_level, TERN_LOG_WARN);
        cr_assert_eq(cfg.log_format, TERN_LOG_JSON);

        cr_assert_eq(parse(&cfg, env, err, 12, "--port", "7200", "-w", "2", "--max-outbuf=65536",
                           "--idle-timeout", "30", "--log-format", "text", "--bind", "127.0.0.1"),
                     0, "%s", err);
        cr_assert_eq(cfg.opts.port, 7200);
        cr_assert_eq(cfg.opts.workers, 2);
        cr_assert_eq(cfg.opts.max_outbuf, 65536);
        cr_assert_eq(cfg.opts.idle_timeout_ms, 30000);
        cr_assert_eq(cfg.log_format, TERN_LOG_TEXT);
        cr_assert_str_eq(cfg.opts.bind, "127.0.0.1");
        cr_assert_eq(cfg.opts.max_conns, 50, "unset flags keep the variable");

        /* A variable set to nothing counts as unset. */
        static const char *const empty[] = {"TERN_PORT", "", NULL};
        cr_assert_eq(parse(&cfg, empty, err, 1), 0, "%s", err);
        cr_assert_eq(cfg.opts.port, 7000);
}

Test(chat, config_rejects_bad_values_by_name)
{
        static const char *const bad_flags[][2] = {
            {"--port", "70000"},      {"--port", "abc"},
            {"--port", "-1"},         {"--port", " 80"},
            {"--workers", "0"},       {"--workers", "256"},
            {"--idle-timeout", "-5"}, {"--idle-timeout", "1.5"},
            {"--max-conns", "many"},  {"--max-line", "10"},
            {"--max-line", "2m"},     {"--max-outbuf", "12"},
            {"--max-outbuf", "5x"},   {"--max-outbuf", "1kk"},
            {"--log-level", "loud"},  {"--log-format", "xml"},
            {"--bind", ""},           {"--check", ""},
        };
        struct chat_config cfg;
        char err[256];
        for (size_t i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++) {
                int r = parse(&cfg, NULL, err, 3, bad_flags[i][0], bad_flags[i][1]);
                cr_assert_eq(r, -EINVAL, "%s %s accepted", bad_flags[i][0], bad_flags[i][1]);
                cr_assert(strstr(err, bad_flags[i][0]), "message does not name %s: %s",
                          bad_flags[i][0], err);
        }
        static const char *const bad_env[] = {"TERN_WORKERS", "lots", NULL};
        cr_assert_eq(parse(&cfg, bad_env, err, 1), -EINVAL);
        cr_assert(strstr(err, "TERN_WORKERS"), "%s", err);
        /* The flag is read after the variable, but a bad variable is still an error. */
        cr_assert_eq(parse(&cfg, bad_env, err, 3, "--workers", "2"), -EINVAL);

        cr_assert_eq(parse(&cfg, NULL, err, 2, "--frobnicate"), -EINVAL);
        cr_assert(strstr(err, "--frobnicate"), "%s", err);
        cr_assert_eq(parse(&cfg, NULL, err, 2, "--port"), -EINVAL);
        cr_assert(strstr(err, "--port"), "%s", err);
        cr_assert_eq(parse(&cfg, NULL, err, 2, "stray"), -EINVAL);
        cr_assert(strstr(err, "stray"), "%s", err);
}

Test(chat, config_help_lists_every_flag_and_variable)
{
        char *text = NULL;
        size_t size = 0;
        FILE *out = open_memstream(&text, &size);
        char *argv[] = {"tern-chat", "--help", NULL};
        struct chat_config cfg;
        char err[256];
        fake_env = NULL;
        cr_assert_eq(chat_config_parse(&cfg, 2, argv, fake_getenv, out, err, sizeof(err)), 1);
        fclose(out);
        static const char *const names[] = {
            "--bind",          "--port",
            "--workers",       "--idle-timeout",
            "--max-conns",     "--max-line",
            "--max-outbuf",    "--log-level",
            "--log-format",    "--check",
            "TERN_BIND",       "TERN_PORT",
            "TERN_WORKERS",    "TERN_IDLE_TIMEOUT",
            "TERN_MAX_CONNS",  "TERN_MAX_LINE",
            "TERN_MAX_OUTBUF", "TERN_LOG_LEVEL",
            "TERN_LOG_FORMAT",
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                cr_assert(strstr(text, names[i]), "--help does not mention %s", names[i]);
        free(text);
}

Test(chat, sizes_take_binary_suffixes)
{
        uint64_t v;
        cr_assert(app_parse_size("4096", 1, 1u << 30, &v) && v == 4096);
        cr_assert(app_parse_size("64k", 1, 1u << 30, &v) && v == 65536);
        cr_assert(app_parse_size("1M", 1, 1u << 30, &v) && v == 1048576);
        cr_assert(app_parse_size("1g", 1, 1u << 30, &v) && v == 1u << 30);
        cr_assert_not(app_parse_size("2g", 1, 1u << 30, &v));
        cr_assert_not(app_parse_size("k", 1, 1u << 30, &v));
        cr_assert_not(app_parse_size("-1", 0, UINT64_MAX, &v));
        cr_assert_not(app_parse_size(" 5", 0, UINT64_MAX, &v));
        cr_assert_not(app_parse_size("5kb", 0, UINT64_MAX, &v));
        cr_assert_not(app_parse_size("99999999999999999999", 1, UINT64_MAX, &v));
        cr_assert_not(app_parse_size("17179869184g", 1, UINT64_MAX, &v));
}

/* apps/common: --accept for tern-echo, tern-kv and tern-proxy */
Test(chat, accept_modes_parse)
{
        enum tern_accept_mode m = TERN_ACCEPT_THREAD;
        cr_assert(app_parse_accept("auto", &m) && m == TERN_ACCEPT_AUTO);
        cr_assert(app_parse_accept("thread", &m) && m == TERN_ACCEPT_THREAD);
        cr_assert(app_parse_accept("worker", &m) && m == TERN_ACCEPT_WORKER);
        cr_assert_not(app_parse_accept("Worker", &m));
        cr_assert_not(app_parse_accept("", &m));
        cr_assert_not(app_parse_accept("threads", &m));
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        bool have_port = false;
        cr_assert_eq(app_server_opt('a', "worker", "t", &o, &have_port), 1);
        cr_assert_eq(o.accept, TERN_ACCEPT_WORKER);
        cr_assert_eq(app_server_opt('a', "sideways", "t", &o, &have_port), -1);
}

/* ---- --check ---- */

Test(chat, check_sees_a_live_server_and_only_that)
{
        struct chat_server *cs = start(2);
        char target[64], err[256];
        snprintf(target, sizeof(target), "127.0.0.1:%u", chat_server_port(cs));
        cr_assert_eq(chat_check(target, 2000, err, sizeof(err)), 0, "%s", err);
        snprintf(target, sizeof(target), "%u", chat_server_port(cs));
        cr_assert_eq(chat_check(target, 2000, err, sizeof(err)), 0, "%s", err);

        /* A port that accepts but never speaks is not healthy. */
        int l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t alen = sizeof(a);
        cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(listen(l, 4), 0);
        getsockname(l, (struct sockaddr *)&a, &alen);
        snprintf(target, sizeof(target), "127.0.0.1:%u", ntohs(a.sin_port));
        cr_assert_eq(chat_check(target, 300, err, sizeof(err)), -ETIMEDOUT, "%s", err);
        close(l);
        /* Nobody listening now. */
        cr_assert_eq(chat_check(target, 2000, err, sizeof(err)), -ECONNREFUSED, "%s", err);

        static const char *const bad[] = {"", "host:", "a:b:c", "[::1]", "[::1]:x", "7000x"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                cr_assert_eq(chat_check(bad[i], 100, err, sizeof(err)), -EINVAL, "'%s'", bad[i]);
        stop(cs);
}

/* ---- the program itself ---- */

static bool chat_binary(char *path, size_t cap)
{
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
                return false;
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (!slash)
                return false;
        *slash = '\0';
        snprintf(path, cap, "%s/../bin/tern-chat", self);
        return access(path, X_OK) == 0;
}

/* Runs @path with @argv and @env; returns its exit status. */
static int run(char *const argv[], char *const env[])
{
        pid_t pid = fork();
        if (pid == 0) {
                int devnull = open("/dev/null", O_WRONLY);
                dup2(devnull, 1);
                dup2(devnull, 2);
                execve(argv[0], argv, env);
                _exit(127);
        }
        int status;
        waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(chat, the_program_runs_checks_and_stops_on_sigterm)
{
        char path[4200];
        if (!chat_binary(path, sizeof(path)))
                cr_skip_test("build/bin/tern-chat is not built next to this test");

        char *bad_port[] = {path, "--port", "nope", NULL};
        char *no_env[] = {NULL};
        cr_assert_eq(run(bad_port, no_env), 2);
        char *bad_env[] = {"TERN_WORKERS=0", NULL};
        char *plain[] = {path, NULL};
        cr_assert_eq(run(plain, bad_env), 2);
        char *help[] = {path, "--help", NULL};
        cr_assert_eq(run(help, no_env), 0);

        int err_pipe[2];
        cr_assert_eq(pipe(err_pipe), 0);
        pid_t pid = fork();
        if (pid == 0) {
                dup2(err_pipe[1], 2);
                close(err_pipe[0]);
                char *argv[] = {path, "--port", "0", "--bind", "127.0.0.1", NULL};
                char *env[] = {"TERN_WORKERS=2", "TERN_LOG_LEVEL=info", NULL};
                execve(path, argv, env);
                _exit(127);
        }
        close(err_pipe[1]);
        /* The start-up line names the port. */
        char log[4096];
        size_t len = 0;
        unsigned port = 0;
        while (!port && len < sizeof(log) - 1) {
                ssize_t n = read(err_pipe[0], log + len, sizeof(log) - 1 - len);
                cr_assert_gt(n, 0, "tern-chat exited before listening");
                len += (size_t)n;
                log[len] = '\0';
                const char *p = strstr(log, "listening on 127.0.0.1 port ");
                if (p && strchr(p, '\n'))
                        sscanf(p + strlen("listening on 127.0.0.1 port "), "%u", &port);
        }
        cr_assert(strstr(log, "2 worker(s)"), "%s", log);

        char target[32];
        snprintf(target, sizeof(target), "127.0.0.1:%u", port);
        char *check[] = {path, "--check", target, NULL};
        cr_assert_eq(run(check, no_env), 0);

        struct cc c;
        cr_assert_eq(cc_open(&c, (uint16_t)port), 0);
        kill(pid, SIGTERM);
        cc_expect(&c, "* server shutting down");
        expect_eof(&c);
        cc_close(&c);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
        close(err_pipe[0]);
        /* Down now: the check says so. */
        cr_assert_eq(run(check, no_env), 1);
}

/* ---- pieces ---- */

Test(chat, siphash_matches_the_reference_vectors)
{
        /* Key 00..0f; messages 00..(n-1): vectors of the SipHash paper. */
        uint8_t msg[16];
        for (int i = 0; i < 16; i++)
                msg[i] = (uint8_t)i;
        const uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
        cr_assert_eq(chat_siphash(k0, k1, msg, 0), 0x726fdb47dd0e0e31ull);
        cr_assert_eq(chat_siphash(k0, k1, msg, 1), 0x74f839c593dc67fdull);
        cr_assert_eq(chat_siphash(k0, k1, msg, 15), 0xa129ca6149be45e5ull);
}

Test(chat, names_are_1_to_32_safe_characters)
{
        cr_assert(chat_name_valid("a", 1));
        cr_assert(chat_name_valid("Az09_-", 6));
        cr_assert(chat_name_valid("12345678901234567890123456789012", 32));
        cr_assert_not(chat_name_valid("", 0));
        cr_assert_not(chat_name_valid("123456789012345678901234567890123", 33));
        cr_assert_not(chat_name_valid("a b", 3));
        cr_assert_not(chat_name_valid("a#", 2));
        cr_assert_not(chat_name_valid("\xc3\xa9", 2));
}
