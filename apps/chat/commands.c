/*
 * Layer 6 (chat.h lists the layers; includes commands.h, so who.h,
 * client.h and the layers below): the line protocol, one command or
 * message per line (docs/chat.md), and the lines held behind a /who.
 *
 * Every reply is built in the worker's scratch line or on the stack; only
 * /rooms and /who, whose size grows with the server, allocate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "commands.h"

void chat_sanitize(char *dst, const uint8_t *src, size_t len)
{
        /* No client may put terminal escape sequences (ESC, CSI...) or a
         * bare CR on another's screen; TAB is harmless and common. */
        for (size_t i = 0; i < len; i++) {
                uint8_t b = src[i];
                dst[i] = (char)(((b < 0x20 && b != '\t') || b == 0x7f) ? '?' : b);
        }
}

static inline bool is_space(uint8_t b)
{
        return b == ' ' || b == '\t';
}

/* Trims spaces and tabs at both ends of [*p, *p + *len). */
static void trim(const uint8_t **p, size_t *len)
{
        while (*len && is_space((*p)[0])) {
                (*p)++;
                (*len)--;
        }
        while (*len && is_space((*p)[*len - 1]))
                (*len)--;
}

static void reply(struct chat_client *cl, const char *line)
{
        chat_send(cl, line, strlen(line));
}

/* "! <what> <arg>\r\n", the argument sanitized and cut to a name's length. */
static void reply_with(struct chat_client *cl, const char *what, const uint8_t *arg, size_t len)
{
        char line[CHAT_NAME_MAX * 4 + 64];
        size_t off = 0;
        if (len > CHAT_NAME_MAX * 3)
                len = CHAT_NAME_MAX * 3;
        chat_puts(line, &off, what);
        chat_sanitize(line + off, arg, len);
        off += len;
        chat_puts(line, &off, "\r\n");
        chat_send(cl, line, off);
}

/* ---- room messages ---- */

/* Says @text to the room: "[#ROOM] NICK: TEXT", or with @action (/me)
 * "* NICK TEXT". */
static void room_say(struct chat_client *cl, const uint8_t *text, size_t len, bool action)
{
        if (!cl->room)
                return;
        char *line = cl->w->scratch;
        size_t off = 0;
        if (action) {
                chat_puts(line, &off, "* ");
                chat_puts(line, &off, cl->nick->name);
                chat_puts(line, &off, " ");
        } else {
                chat_puts(line, &off, "[#");
                chat_puts(line, &off, cl->room->name);
                chat_puts(line, &off, "] ");
                chat_puts(line, &off, cl->nick->name);
                chat_puts(line, &off, ": ");
        }
        chat_sanitize(line + off, text, len);
        off += len;
        chat_puts(line, &off, "\r\n");
        if (chat_client_say(cl, line, off) < 0)
                reply(cl, "! out of memory\r\n");
}

/* ---- /nick /join /part /topic /me /rooms /msg /quit /help ---- */

static void who_answered(struct chat_client *cl);

static void cmd_nick(struct chat_client *cl, const uint8_t *arg, size_t len)
{
        const char *name = (const char *)arg;
        if (!len) {
                reply(cl, "! usage: /nick NAME\r\n");
                return;
        }
        if (!chat_name_valid(name, len)) {
                reply(cl, "! invalid nickname\r\n");
                return;
        }
        struct chat_nick *old = cl->nick;
        if (strlen(old->name) == len && memcmp(old->name, name, len) == 0)
                return; /* already so */
        if (chat_cluster_cmd_nick(cl, name, len, who_answered))
                return; /* --cluster: Redis decides, the answer held like a /who's */
        struct chat_nick *nick = chat_nick_rename(cl->w->cs, old, name, len);
        if (!nick) {
                reply(cl, errno == EEXIST ? "! nickname taken\r\n" : "! out of memory\r\n");
                return;
        }
        cl->nick = nick;
        /* @old is queued for call_rcu: still readable until this callback
         * returns (QSBR), which is all we need. */
        char line[2 * CHAT_NAME_MAX + 32];
        int n = snprintf(line, sizeof(line), "* %s is now %s\r\n", old->name, nick->name);
        chat_client_say(cl, line, (size_t)n);
}

static void cmd_join(struct chat_client *cl, const uint8_t *arg, size_t len)
{
        if (!len) {
                reply(cl, "! usage: /join ROOM\r\n");
                return;
        }
        if (arg[0] == '#') {
                arg++;
                len--;
        }
        if (!chat_name_valid((const char *)arg, len)) {
                reply(cl, "! invalid room\r\n");
                return;
        }
        if (chat_client_join(cl, (const char *)arg, len) < 0 && !chat_client_gone(cl))
                reply(cl, "! out of memory\r\n");
}

/* Back to the lobby: a /join that needs no name. */
static void cmd_part(struct chat_client *cl)
{
        if (cl->room && chat_room_is(cl->room, CHAT_LOBBY, strlen(CHAT_LOBBY))) {
                reply(cl, "! already in #" CHAT_LOBBY "\r\n");
                return;
        }
        if (chat_client_join(cl, CHAT_LOBBY, strlen(CHAT_LOBBY)) < 0 && !chat_client_gone(cl))
                reply(cl, "! out of memory\r\n");
}

/* "/topic" shows the room's topic; "/topic TEXT" sets it and tells the
 * room, the setter included. Members who join later get it with their join
 * notice. */
static void cmd_topic(struct chat_client *cl, const uint8_t *arg, size_t len)
{
        if (!cl->room)
                return;
        char *line = cl->w->scratch;
        size_t off = 0;
        if (!len) {
                const struct chat_topic *t = chat_room_topic(cl->room);
                if (!t) {
                        chat_sendf(cl, "* no topic for #%s\r\n", cl->room->name);
                        return;
                }
                chat_puts(line, &off, "* topic of #");
                chat_puts(line, &off, cl->room->name);
                chat_puts(line, &off, ": ");
                chat_put(line, &off, t->text, t->len);
                chat_puts(line, &off, "\r\n");
                chat_send(cl, line, off);
                return;
        }
        chat_puts(line, &off, "* ");
        chat_puts(line, &off, cl->nick->name);
        chat_puts(line, &off, " set the topic of #");
        chat_puts(line, &off, cl->room->name);
        chat_puts(line, &off, ": ");
        size_t start = off;
        chat_sanitize(line + off, arg, len);
        off += len;
        if (chat_room_set_topic(cl->room, line + start, len) < 0) {
                reply(cl, "! out of memory\r\n");
                return;
        }
        chat_puts(line, &off, "\r\n");
        if (chat_client_say(cl, line, off) < 0)
                reply(cl, "! out of memory\r\n");
}

static void cmd_me(struct chat_client *cl, const uint8_t *arg, size_t len)
{
        if (!len) {
                reply(cl, "! usage: /me ACTION\r\n");
                return;
        }
        room_say(cl, arg, len, true);
}

static void cmd_rooms(struct chat_client *cl)
{
        if (chat_cluster_cmd_rooms(cl, who_answered))
                return; /* --cluster: every instance's rooms */
        size_t len;
        char *line = chat_rooms_line(cl->w->cs, &len);
        if (!line) {
                reply(cl, "! out of memory\r\n");
                return;
        }
        chat_send(cl, line, len);
        free(line);
}

struct pm {
        size_t len;
        char data[];
};

static void pm_deliver(tern_conn *c, void *arg)
{
        struct pm *pm = arg;
        struct chat_client *cl = c ? tern_conn_data(c) : NULL;
        if (cl)
                chat_send(cl, pm->data, pm->len);
        free(pm);
        chat_grace_release();
}

static void cmd_msg(struct chat_client *cl, const uint8_t *arg, size_t len)
{
        size_t nlen = 0;
        while (nlen < len && !is_space(arg[nlen]))
                nlen++;
        const uint8_t *text = arg + nlen;
        size_t tlen = len - nlen;
        trim(&text, &tlen);
        if (!nlen || !tlen) {
                reply(cl, "! usage: /msg NAME TEXT\r\n");
                return;
        }
        struct chat_server *cs = cl->w->cs;
        struct chat_nick *to = chat_nick_find(cs, (const char *)arg, nlen);
        if (!to) {
                if (chat_cluster_cmd_msg(cl, (const char *)arg, nlen, text, tlen, who_answered))
                        return; /* --cluster: maybe held elsewhere */
                reply_with(cl, "! no such user ", arg, nlen);
                return;
        }
        /* The recipient's worker formats nothing: it gets the finished line
         * and sends it if the connection is still there. */
        size_t cap = tlen + CHAT_LINE_OVERHEAD;
        struct pm *pm = malloc(sizeof(*pm) + cap);
        if (!pm) {
                reply(cl, "! out of memory\r\n");
                return;
        }
        size_t off = 0;
        chat_puts(pm->data, &off, "[pm] ");
        chat_puts(pm->data, &off, cl->nick->name);
        chat_puts(pm->data, &off, ": ");
        chat_sanitize(pm->data + off, text, tlen);
        off += tlen;
        chat_puts(pm->data, &off, "\r\n");
        pm->len = off;
        if (tern_handle_post(tern_conn_server(cl->m.conn), to->owner, pm_deliver, pm) < 0) {
                free(pm);
                reply_with(cl, "! no such user ", arg, nlen);
                return;
        }
        char *line = cl->w->scratch;
        off = 0;
        chat_puts(line, &off, "[pm to ");
        chat_puts(line, &off, to->name);
        chat_puts(line, &off, "] ");
        chat_puts(line, &off, cl->nick->name);
        chat_puts(line, &off, ": ");
        chat_sanitize(line + off, text, tlen);
        off += tlen;
        chat_puts(line, &off, "\r\n");
        chat_send(cl, line, off);
}

static const char help_text[] =
    "* commands:\r\n"
    "*   /nick NAME      change your nickname (1-32 of A-Z a-z 0-9 _ -)\r\n"
    "*   /join ROOM      leave your room for ROOM, creating it if needed\r\n"
    "*   /part           leave your room for the lobby\r\n"
    "*   /topic [TEXT]   show your room's topic, or set it to TEXT\r\n"
    "*   /me ACTION      say \"* NICK ACTION\" to your room\r\n"
    "*   /rooms          list the rooms and their member counts\r\n"
    "*   /who            list the members of your room\r\n"
    "*   /msg NAME TEXT  send TEXT to NAME only\r\n"
    "*   /quit           leave\r\n"
    "*   /help           this text\r\n"
    "*   //TEXT          say /TEXT to your room\r\n"
    "* any other line is said to your room\r\n";

/* ---- /who and the lines held behind it ---- */

static void replay_pending(struct chat_client *cl);

static void who_answered(struct chat_client *cl)
{
        cl->waiting = false;
        replay_pending(cl);
}

static void cmd_who(struct chat_client *cl)
{
        if (chat_cluster_cmd_who(cl, who_answered))
                return; /* --cluster: every instance's members, held the same way */
        if (chat_who(cl, who_answered))
                return;
        /* Hold the client's next lines until the answer is out. */
        cl->waiting = true;
        tern_conn_pause_read(cl->m.conn);
}

static void hold(struct chat_client *cl, const struct tern_frame *f)
{
        size_t len = f->kind == TERN_FRAME_OVERSIZED ? 0 : f->len;
        size_t need = cl->pend_len + sizeof(uint32_t) + len;
        if (need > cl->pend_cap) {
                size_t cap = cl->pend_cap ? cl->pend_cap : 256;
                while (cap < need)
                        cap *= 2;
                uint8_t *p = realloc(cl->pend, cap);
                if (!p) {
                        chat_client_depart(cl, "! out of memory\r\n");
                        return;
                }
                cl->pend = p;
                cl->pend_cap = cap;
        }
        /* Reading is paused, so this holds at most what one read brought. */
        uint32_t rec = f->kind == TERN_FRAME_OVERSIZED ? UINT32_MAX : (uint32_t)len;
        memcpy(cl->pend + cl->pend_len, &rec, sizeof(rec));
        if (len)
                memcpy(cl->pend + cl->pend_len + sizeof(rec), f->data, len);
        cl->pend_len = need;
}

static void replay_pending(struct chat_client *cl)
{
        size_t off = 0;
        while (off < cl->pend_len && !cl->waiting && !chat_client_gone(cl)) {
                uint32_t rec;
                memcpy(&rec, cl->pend + off, sizeof(rec));
                off += sizeof(rec);
                if (rec == UINT32_MAX) {
                        reply(cl, "! line too long\r\n");
                        continue;
                }
                chat_on_line(cl, cl->pend + off, rec);
                off += rec;
        }
        if (cl->waiting && !chat_client_gone(cl)) {
                memmove(cl->pend, cl->pend + off, cl->pend_len - off);
                cl->pend_len -= off;
                return;
        }
        free(cl->pend);
        cl->pend = NULL;
        cl->pend_len = cl->pend_cap = 0;
        if (cl->eof)
                chat_client_depart(cl, NULL);
        else if (!chat_client_gone(cl))
                if (!chat_client_throttled(cl)) /* else its resume resumes */
                        tern_conn_resume_read(cl->m.conn);
}

void chat_on_frame(struct chat_client *cl, const struct tern_frame *f)
{
        /* Counted as it arrives, so lines held behind a /who count once. */
        if (!chat_client_flood_ok(cl))
                return;
        if (cl->waiting)
                hold(cl, f);
        else if (f->kind == TERN_FRAME_OVERSIZED)
                reply(cl, "! line too long\r\n");
        else
                chat_on_line(cl, f->data, f->len);
}

/* ---- dispatch ---- */

static bool word_is(const uint8_t *w, size_t len, const char *name)
{
        return strlen(name) == len && strncasecmp((const char *)w, name, len) == 0;
}

/* Whether the line is nothing but spaces and tabs. */
static bool blank(const uint8_t *line, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (!is_space(line[i]))
                        return false;
        return true;
}

void chat_on_line(struct chat_client *cl, const uint8_t *line, size_t len)
{
        /* A blank line is a stray Enter, not something to show a room. */
        if (blank(line, len))
                return;
        if (line[0] != '/') {
                room_say(cl, line, len, false);
                return;
        }
        if (len > 1 && line[1] == '/') { /* "//text" says "/text" */
                room_say(cl, line + 1, len - 1, false);
                return;
        }
        size_t wlen = 1;
        while (wlen < len && !is_space(line[wlen]))
                wlen++;
        const uint8_t *word = line + 1;
        const uint8_t *arg = line + wlen;
        size_t alen = len - wlen;
        trim(&arg, &alen);
        wlen--;

        if (word_is(word, wlen, "nick"))
                cmd_nick(cl, arg, alen);
        else if (word_is(word, wlen, "join"))
                cmd_join(cl, arg, alen);
        else if (word_is(word, wlen, "part"))
                cmd_part(cl);
        else if (word_is(word, wlen, "topic"))
                cmd_topic(cl, arg, alen);
        else if (word_is(word, wlen, "me"))
                cmd_me(cl, arg, alen);
        else if (word_is(word, wlen, "rooms"))
                cmd_rooms(cl);
        else if (word_is(word, wlen, "who"))
                cmd_who(cl);
        else if (word_is(word, wlen, "msg"))
                cmd_msg(cl, arg, alen);
        else if (word_is(word, wlen, "quit"))
                chat_client_depart(cl, "* bye\r\n");
        else if (word_is(word, wlen, "help"))
                chat_send(cl, help_text, sizeof(help_text) - 1);
        else
                reply_with(cl, "! unknown command /", word, wlen);
}
