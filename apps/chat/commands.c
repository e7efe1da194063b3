/*
 * The line protocol: one command or message per line (docs/chat.md).
 *
 * Every reply is built in the worker's scratch line or on the stack; only
 * /rooms and /who, whose size grows with the server, allocate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat.h"

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

/* Appends @len bytes at @s to the line at @buf + *@off. */
static void put(char *buf, size_t *off, const void *s, size_t len)
{
        memcpy(buf + *off, s, len);
        *off += len;
}

static void puts_(char *buf, size_t *off, const char *s)
{
        put(buf, off, s, strlen(s));
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
        puts_(line, &off, what);
        chat_sanitize(line + off, arg, len);
        off += len;
        puts_(line, &off, "\r\n");
        chat_send(cl, line, off);
}

/* ---- room messages ---- */

static void room_message(struct chat_client *cl, const uint8_t *text, size_t len)
{
        if (!cl->room)
                return;
        char *line = cl->w->scratch;
        size_t off = 0;
        puts_(line, &off, "[#");
        puts_(line, &off, cl->room->name);
        puts_(line, &off, "] ");
        puts_(line, &off, cl->nick->name);
        puts_(line, &off, ": ");
        chat_sanitize(line + off, text, len);
        off += len;
        puts_(line, &off, "\r\n");
        if (chat_broadcast(cl->w, cl, cl->room, line, off) < 0)
                reply(cl, "! out of memory\r\n");
}

/* ---- /nick /join /rooms /msg /quit /help ---- */

static void cmd_nick(struct chat_client *cl, const uint8_t *arg, size_t len)
{
        const char *name = (const char *)arg;
        if (!chat_name_valid(name, len)) {
                reply(cl, "! invalid nickname\r\n");
                return;
        }
        struct chat_nick *old = cl->nick;
        if (strlen(old->name) == len && memcmp(old->name, name, len) == 0)
                return; /* already so */
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
        if (cl->room)
                chat_broadcast(cl->w, cl, cl->room, line, (size_t)n);
        else
                chat_send(cl, line, (size_t)n);
}

static void cmd_join(struct chat_client *cl, const uint8_t *arg, size_t len)
{
        if (len && arg[0] == '#') {
                arg++;
                len--;
        }
        if (!chat_name_valid((const char *)arg, len)) {
                reply(cl, "! invalid room\r\n");
                return;
        }
        if (chat_client_join(cl, (const char *)arg, len) < 0 && !cl->departed)
                reply(cl, "! out of memory\r\n");
}

static void cmd_rooms(struct chat_client *cl)
{
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
        if (cl) {
                chat_enter(cl->w);
                chat_send(cl, pm->data, pm->len);
                chat_exit(cl->w);
        }
        free(pm);
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
        puts_(pm->data, &off, "[pm] ");
        puts_(pm->data, &off, cl->nick->name);
        puts_(pm->data, &off, ": ");
        chat_sanitize(pm->data + off, text, tlen);
        off += tlen;
        puts_(pm->data, &off, "\r\n");
        pm->len = off;
        if (tern_handle_post(tern_conn_server(cl->conn), to->owner, pm_deliver, pm) < 0) {
                free(pm);
                reply_with(cl, "! no such user ", arg, nlen);
                return;
        }
        char *line = cl->w->scratch;
        off = 0;
        puts_(line, &off, "[pm to ");
        puts_(line, &off, to->name);
        puts_(line, &off, "] ");
        puts_(line, &off, cl->nick->name);
        puts_(line, &off, ": ");
        chat_sanitize(line + off, text, tlen);
        off += tlen;
        puts_(line, &off, "\r\n");
        chat_send(cl, line, off);
}

static const char help_text[] =
    "* commands:\r\n"
    "*   /nick NAME      change your nickname (1-32 of A-Z a-z 0-9 _ -)\r\n"
    "*   /join ROOM      leave your room for ROOM, creating it if needed\r\n"
    "*   /rooms          list the rooms and their member counts\r\n"
    "*   /who            list the members of your room\r\n"
    "*   /msg NAME TEXT  send TEXT to NAME only\r\n"
    "*   /quit           leave\r\n"
    "*   /help           this text\r\n"
    "* any other line is said to your room\r\n";

/* ---- /who: asked of every worker with members, answered by the last ---- */

struct who_part {
        char *names; /* NUL-separated */
        size_t len;
        uint32_t n;
};

struct who_req {
        struct chat_server *cs;
        tern_handle requester;
        uint64_t room_id;
        int pending; /* atomic: workers still to answer, +1 while asking */
        char room_name[CHAT_NAME_MAX + 1];
        struct who_part parts[]; /* one per worker, written by that worker */
};

struct who_reply {
        size_t len;
        char data[];
};

static void replay_pending(struct chat_client *cl);

static void who_reply_deliver(tern_conn *c, void *arg)
{
        struct who_reply *r = arg;
        struct chat_client *cl = c ? tern_conn_data(c) : NULL;
        if (cl) {
                chat_enter(cl->w);
                chat_send(cl, r->data, r->len);
                cl->waiting = false;
                replay_pending(cl);
                chat_exit(cl->w);
        }
        free(r);
}

static int name_cmp(const void *a, const void *b)
{
        return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Builds the answer. @direct is the requester when we run in its own /who
 * callback (every member was local); otherwise the answer travels to the
 * requester's worker, which is waiting for it.
 */
static void who_finish(struct who_req *req, struct chat_client *direct)
{
        struct chat_server *cs = req->cs;
        size_t n = 0, bytes = 0;
        for (int i = 0; i < cs->nworkers; i++) {
                n += req->parts[i].n;
                bytes += req->parts[i].len;
        }
        const char **names = malloc((n ? n : 1) * sizeof(*names));
        struct who_reply *r = malloc(sizeof(*r) + bytes + CHAT_LINE_OVERHEAD);
        if (names && r) {
                size_t k = 0;
                for (int i = 0; i < cs->nworkers; i++) {
                        const char *p = req->parts[i].names;
                        for (uint32_t j = 0; j < req->parts[i].n; j++, p += strlen(p) + 1)
                                names[k++] = p;
                }
                qsort(names, n, sizeof(*names), name_cmp);
                size_t off = 0;
                puts_(r->data, &off, "* members of #");
                puts_(r->data, &off, req->room_name);
                puts_(r->data, &off, ":");
                for (size_t i = 0; i < n; i++) {
                        puts_(r->data, &off, " ");
                        puts_(r->data, &off, names[i]);
                }
                puts_(r->data, &off, "\r\n");
                r->len = off;
        } else if (r) {
                r->len = (size_t)snprintf(r->data, CHAT_LINE_OVERHEAD, "! out of memory\r\n");
        }
        if (direct) {
                if (r)
                        chat_send(direct, r->data, r->len);
                else
                        reply(direct, "! out of memory\r\n");
        } else if (r) {
                /* Exactly once, even to a closed requester (then c = NULL). */
                if (tern_handle_post(cs->srv, req->requester, who_reply_deliver, r) == 0)
                        r = NULL;
        }
        /* Without memory for an answer the requester stays waiting; its idle
         * timeout (or a close) ends that. */
        free(r);
        free(names);
        for (int i = 0; i < cs->nworkers; i++)
                free(req->parts[i].names);
        free(req);
}

/* Returns true when this call answered the request. */
static bool who_done(struct who_req *req, struct chat_client *direct)
{
        if (__atomic_sub_fetch(&req->pending, 1, __ATOMIC_ACQ_REL))
                return false;
        who_finish(req, direct);
        return true;
}

static void who_collect(struct chat_worker *w, struct who_req *req)
{
        struct chat_lroom *lr = chat_lroom_find(w, req->room_id);
        if (!lr)
                return;
        struct chat_client *cl;
        size_t bytes = 0;
        cds_list_for_each_entry(cl, &lr->members, member) bytes += strlen(cl->nick->name) + 1;
        struct who_part *part = &req->parts[w->index];
        part->names = malloc(bytes ? bytes : 1);
        if (!part->names)
                return; /* the answer misses this worker's members */
        cds_list_for_each_entry(cl, &lr->members, member)
        {
                size_t len = strlen(cl->nick->name) + 1;
                memcpy(part->names + part->len, cl->nick->name, len);
                part->len += len;
                part->n++;
        }
}

static void who_task(tern_loop *loop, void *arg)
{
        struct who_req *req = arg;
        struct chat_worker *w = &req->cs->workers[tern_loop_index(loop)];
        chat_enter(w);
        who_collect(w, req);
        who_done(req, NULL);
        chat_exit(w);
}

static void cmd_who(struct chat_client *cl)
{
        struct chat_worker *w = cl->w;
        struct chat_server *cs = w->cs;
        struct chat_room *room = cl->room;
        if (!room)
                return;
        struct who_req *req =
            calloc(1, sizeof(*req) + (size_t)cs->nworkers * sizeof(req->parts[0]));
        if (!req) {
                reply(cl, "! out of memory\r\n");
                return;
        }
        req->cs = cs;
        req->requester = tern_conn_handle(cl->conn);
        req->room_id = room->id;
        memcpy(req->room_name, room->name, sizeof(req->room_name));
        /* Member lists are private to their workers: ask each worker that
         * counts members (a count is raised before its member can be seen
         * joining, so whoever saw a join is answered with that member). */
        uint8_t targets[256];
        int n = 0;
        for (int i = 0; i < cs->nworkers; i++)
                if (i != w->index && __atomic_load_n(&room->count[i], __ATOMIC_SEQ_CST))
                        targets[n++] = (uint8_t)i;
        req->pending = n + 1;
        who_collect(w, req);
        for (int i = 0; i < n; i++)
                if (tern_loop_post(cs->workers[targets[i]].loop, who_task, req) < 0)
                        who_done(req, NULL); /* that worker stopped: answer without it */
        if (who_done(req, cl))
                return;
        /* The answer comes back as a task on this worker, necessarily after
         * this callback: hold the client's next lines until then. */
        cl->waiting = true;
        tern_conn_pause_read(cl->conn);
}

/* ---- lines held behind a /who ---- */

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
        while (off < cl->pend_len && !cl->waiting && !cl->departed) {
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
        if (cl->waiting && !cl->departed) {
                memmove(cl->pend, cl->pend + off, cl->pend_len - off);
                cl->pend_len -= off;
                return;
        }
        free(cl->pend);
        cl->pend = NULL;
        cl->pend_len = cl->pend_cap = 0;
        if (cl->eof)
                chat_client_depart(cl, NULL);
        else if (!cl->departed && cl->conn)
                tern_conn_resume_read(cl->conn);
}

void chat_on_frame(struct chat_client *cl, const struct tern_frame *f)
{
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

void chat_on_line(struct chat_client *cl, const uint8_t *line, size_t len)
{
        if (len == 0)
                return;
        if (line[0] != '/') {
                room_message(cl, line, len);
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
