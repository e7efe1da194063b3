/*
 * tern-chat over loopback, at 1 and 4 workers: every protocol line, one
 * command at a time (welcome, room messages, /nick, /join, /rooms, /who,
 * /msg, /quit, /help, half-close, control characters, over-long and binary
 * lines). Every test tears down to zero live connections, buffers, timers,
 * clients, rooms, nicknames and messages (chat_client.h).
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

Test(chat_protocol, welcome_then_messages_reach_every_member)
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

        /* No name at all is a usage question, not a bad name. */
        send_str(&c[1], "/nick\r\n/nick   \r\n");
        cc_expect(&c[1], "! usage: /nick NAME");
        cc_expect(&c[1], "! usage: /nick NAME");
        static const char *const bad[] = {
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

Test(chat_protocol, nicknames_are_valid_unique_and_announced)
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

        send_str(&c[0], "/join\r\n");
        cc_expect(&c[0], "! usage: /join ROOM");
        static const char *const bad[] = {
            "/join #\r\n",
            "/join ##x\r\n",
            "/join two words\r\n",
            "/join dot.ted\r\n",
            "/join 123456789012345678901234567890123\r\n",
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

Test(chat_protocol, join_moves_between_rooms_and_announces_it)
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

Test(chat_protocol, rooms_and_who_are_sorted_and_in_command_order)
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

Test(chat_protocol, private_messages_reach_only_the_two)
{
        private_messages(1);
        private_messages(4);
}

Test(chat_protocol, quit_says_bye_and_closes)
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
Test(chat_protocol, half_close_gets_its_answers_then_leaves)
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

static void me_part_topic(int workers)
{
        struct chat_server *cs = start(workers);
        struct cc c[3];
        open_all(c, 3, chat_server_port(cs));

        /* /me is an action; "//" escapes a leading slash; blank lines and
         * lines of spaces and tabs are nobody's business. */
        send_str(&c[0], "/me waves  at all\r\n   \r\n\t \t\r\n//etc/passwd is a path\r\n"
                        "/me\r\n/me   \r\nend\r\n");
        for (int i = 0; i < 3; i++) {
                cc_expectf(&c[i], "* %s waves  at all", c[0].nick);
                cc_expectf(&c[i], "[#lobby] %s: /etc/passwd is a path", c[0].nick);
        }
        cc_expect(&c[0], "! usage: /me ACTION");
        cc_expect(&c[0], "! usage: /me ACTION");
        for (int i = 0; i < 3; i++) /* nothing else reached the room */
                cc_expectf(&c[i], "[#lobby] %s: end", c[0].nick);

        /* A topic is per room, shown on demand and to whoever joins. */
        send_str(&c[0], "/join dev\r\n/topic\r\n");
        cc_expectf(&c[0], "* %s joined #dev", c[0].nick);
        cc_expect(&c[0], "* no topic for #dev");
        for (int i = 1; i < 3; i++)
                cc_expectf(&c[i], "* %s left #lobby", c[0].nick);
        send_str(&c[0], "/topic  release \x1b[1m friday \r\n");
        cc_expectf(&c[0], "* %s set the topic of #dev: release ?[1m friday", c[0].nick);
        send_str(&c[1], "/topic\r\n/join DEV\r\n");
        cc_expect(&c[1], "* no topic for #lobby");
        cc_expectf(&c[1], "* %s joined #dev", c[1].nick);
        cc_expect(&c[1], "* topic of #dev: release ?[1m friday");
        cc_expectf(&c[0], "* %s joined #dev", c[1].nick);
        send_str(&c[1], "/topic\r\n/topic next: monday\r\n");
        cc_expect(&c[1], "* topic of #dev: release ?[1m friday");
        for (int i = 0; i < 2; i++)
                cc_expectf(&c[i], "* %s set the topic of #dev: next: monday", c[1].nick);
        cc_expectf(&c[2], "* %s left #lobby", c[1].nick);

        /* /part goes back to the lobby, and from the lobby nowhere. */
        send_str(&c[1], "/part\r\n");
        cc_expectf(&c[0], "* %s left #dev", c[1].nick);
        cc_expectf(&c[1], "* %s joined #lobby", c[1].nick);
        cc_expectf(&c[2], "* %s joined #lobby", c[1].nick);
        send_str(&c[1], "/PART\r\n");
        cc_expect(&c[1], "! already in #lobby");
        /* The topic stays while the room lives and goes with it. */
        send_str(&c[2], "/join dev\r\n");
        cc_expectf(&c[2], "* %s joined #dev", c[2].nick);
        cc_expect(&c[2], "* topic of #dev: next: monday");
        cc_expectf(&c[1], "* %s left #lobby", c[2].nick);
        cc_expectf(&c[0], "* %s joined #dev", c[2].nick);
        send_str(&c[0], "/part\r\n");
        cc_expectf(&c[0], "* %s joined #lobby", c[0].nick);
        cc_expectf(&c[2], "* %s left #dev", c[0].nick);
        send_str(&c[2], "/part\r\n");
        cc_expectf(&c[2], "* %s joined #lobby", c[2].nick);
        send_str(&c[2], "/join dev\r\n/topic\r\n");
        cc_expectf(&c[2], "* %s joined #dev", c[2].nick);
        cc_expect(&c[2], "* no topic for #dev");
        close_all(c, 3);
        stop(cs);
}

Test(chat_protocol, me_slash_blank_part_and_topic)
{
        me_part_topic(1);
        me_part_topic(4);
}

Test(chat_protocol, help_and_unknown_commands)
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

Test(chat_protocol, control_characters_are_replaced)
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

Test(chat_protocol, overlong_lines_are_refused_and_discarded)
{
        overlong_lines(1);
        overlong_lines(4);
}

Test(chat_protocol, binary_lines_arrive_as_bytes)
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
