/*
 * Layer 4.5 (chat.h lists the layers; includes cluster_cmds.h, so client.h
 * and below): /nick, /rooms, /who and /msg across instances.
 *
 * /nick claims the name in Redis first (SET NX, cluster.c), then in this
 * instance's registry as without a cluster; the old name is given back
 * only once the new one is held, so a client always holds at least one
 * name, as in docs/chat.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cluster_cmds.h"

static void cc_say(struct chat_client *cl, const char *line)
{
        chat_send(cl, line, strlen(line));
}

static void cc_lower(char *dst, const char *src, size_t len)
{
        for (size_t i = 0; i < len; i++)
                dst[i] = (char)((src[i] >= 'A' && src[i] <= 'Z') ? src[i] + 32 : src[i]);
        dst[len] = '\0';
}

/* chat_sanitize()'s rule (commands.c, a layer above): no control
 * characters but TAB reach another client's terminal. */
static void cc_sanitize(char *dst, const uint8_t *src, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                uint8_t b = src[i];
                dst[i] = (char)(((b < 0x20 && b != '\t') || b == 0x7f) ? '?' : b);
        }
}

/* The answer comes later: hold @cl's next lines, as for a /who. */
static void cc_await(struct chat_client *cl, struct chat_cluster_claim *claim,
                     chat_cluster_done_cb done)
{
        cl->claim = claim;
        cl->claim_done = done;
        cl->waiting = true;
        tern_conn_pause_read(cl->m.conn);
}

/* The answer is out (or there is none to give): @cl may go on. */
static void cc_answered(struct chat_client *cl)
{
        cl->claim = NULL;
        free(cl->claim_line);
        cl->claim_line = NULL;
        cl->claim_done(cl);
}

/* ---- /nick ---- */

/* The local half, as cmd_nick does it without a cluster. Returns 0 or
 * -errno (-EEXIST: someone here took it meanwhile). */
static int cc_rename_here(struct chat_client *cl, const char *name, size_t len)
{
        struct chat_nick *old = cl->nick;
        struct chat_nick *nick = chat_nick_rename(cl->w->cs, old, name, len);
        if (!nick)
                return -errno;
        cl->nick = nick;
        if (strcmp(old->key, nick->key) != 0) {
                chat_cluster_nick_release(cl->w, old->key);
                chat_cluster_member_del(cl->w, old->name);
        }
        if (cl->room)
                chat_cluster_member_set(cl->w, nick->name, cl->room->name);
        /* @old is queued for call_rcu: readable until this callback returns. */
        char line[2 * CHAT_NAME_MAX + 32];
        int n = snprintf(line, sizeof(line), "* %s is now %s\r\n", old->name, nick->name);
        chat_client_say(cl, line, (size_t)n);
        return 0;
}

static void cc_report(struct chat_client *cl, int r)
{
        if (r == -EEXIST)
                cc_say(cl, "! nickname taken\r\n");
        else if (r == -ENOTCONN)
                cc_say(cl, "! cluster link down: nicknames cannot change now, try again later\r\n");
        else if (r < 0)
                cc_say(cl, "! out of memory\r\n");
}

static void cc_claimed(void *arg, int result)
{
        struct chat_client *cl = arg;
        size_t len = strlen(cl->claim_name);
        char key[CHAT_NAME_MAX + 1];
        cc_lower(key, cl->claim_name, len);
        if (result == 0) {
                result = cc_rename_here(cl, cl->claim_name, len);
                if (result < 0) /* won in Redis, lost here: give it back */
                        chat_cluster_nick_release(cl->w, key);
        }
        if (!chat_client_gone(cl))
                cc_report(cl, result);
        cc_answered(cl);
}

bool chat_cluster_cmd_nick(struct chat_client *cl, const char *name, size_t len,
                           chat_cluster_done_cb done)
{
        struct chat_worker *w = cl->w;
        if (!chat_cluster_on(w->cs))
                return false;
        /* Same name in another case: ours in Redis already. */
        if (strlen(cl->nick->name) == len && strncasecmp(cl->nick->name, name, len) == 0) {
                cc_report(cl, cc_rename_here(cl, name, len));
                return true;
        }
        if (chat_nick_find(w->cs, name, len)) {
                cc_report(cl, -EEXIST);
                return true;
        }
        char key[CHAT_NAME_MAX + 1];
        cc_lower(key, name, len);
        struct chat_cluster_claim *claim = chat_cluster_nick_claim(w, key, cc_claimed, cl);
        if (!claim) {
                cc_report(cl, -errno);
                return true;
        }
        memcpy(cl->claim_name, name, len);
        cl->claim_name[len] = '\0';
        cc_await(cl, claim, done);
        return true;
}

/* ---- /rooms and /who ---- */

struct cc_row {
        const char *room, *count;
};

static int cc_row_room_cmp(const void *a, const void *b)
{
        return strcasecmp(((const struct cc_row *)a)->room, ((const struct cc_row *)b)->room);
}

static int cc_str_case_cmp(const void *a, const void *b)
{
        return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

static void cc_rooms_listed(void *arg, int result, size_t n, const char *const *pairs)
{
        struct chat_client *cl = arg;
        size_t rows_n = n / 2;
        struct cc_row *rows = rows_n ? malloc(rows_n * sizeof(*rows)) : NULL;
        char *line = malloc(sizeof("* rooms:\r\n") +
                            rows_n * (CHAT_NAME_MAX + 32) /* " #" NAME "(" 20 digits ")" */);
        if (result < 0 || !line || (rows_n && !rows)) {
                if (!chat_client_gone(cl))
                        cc_say(cl, result == -ENOTCONN ? "! cluster link down: try again\r\n"
                                                       : "! out of memory\r\n");
                goto out;
        }
        /* One row per room (the script sums up ignoring case), counts in
         * decimal; at most CHAT_NAME_MAX bytes each (cluster.c checks). */
        for (size_t i = 0; i < rows_n; i++)
                rows[i] = (struct cc_row){pairs[2 * i], pairs[2 * i + 1]};
        if (rows_n > 1)
                qsort(rows, rows_n, sizeof(*rows), cc_row_room_cmp);
        size_t off = 0;
        chat_puts(line, &off, "* rooms:");
        for (size_t i = 0; i < rows_n; i++)
                off += (size_t)sprintf(line + off, " #%s(%lu)", rows[i].room,
                                       strtoul(rows[i].count, NULL, 10));
        chat_puts(line, &off, "\r\n");
        if (!chat_client_gone(cl))
                chat_send(cl, line, off);
out:
        free(rows);
        free(line);
        cc_answered(cl);
}

bool chat_cluster_cmd_rooms(struct chat_client *cl, chat_cluster_done_cb done)
{
        struct chat_cluster_claim *claim = chat_cluster_members(cl->w, NULL, cc_rooms_listed, cl);
        if (!claim)
                return false; /* no cluster, or it is down: this instance's rooms */
        cc_await(cl, claim, done);
        return true;
}

static void cc_who_listed(void *arg, int result, size_t n, const char *const *pairs)
{
        struct chat_client *cl = arg;
        const char **names = n ? malloc(n / 2 * sizeof(*names)) : NULL;
        char *line =
            malloc(sizeof("* members of #:\r\n") + CHAT_NAME_MAX + n / 2 * (CHAT_NAME_MAX + 1));
        if (result < 0 || !line || (n && !names)) {
                if (!chat_client_gone(cl))
                        cc_say(cl, result == -ENOTCONN ? "! cluster link down: try again\r\n"
                                                       : "! out of memory\r\n");
                goto out;
        }
        if (!cl->room || chat_client_gone(cl))
                goto out;
        size_t k = 0;
        for (size_t i = 0; i + 1 < n; i += 2)
                if (strcasecmp(pairs[i + 1], cl->room->name) == 0)
                        names[k++] = pairs[i];
        if (k > 1)
                qsort(names, k, sizeof(*names), cc_str_case_cmp);
        size_t off = 0;
        chat_puts(line, &off, "* members of #");
        chat_puts(line, &off, cl->room->name);
        chat_puts(line, &off, ":");
        for (size_t i = 0; i < k; i++) {
                chat_puts(line, &off, " ");
                chat_puts(line, &off, names[i]);
        }
        chat_puts(line, &off, "\r\n");
        chat_send(cl, line, off);
out:
        free(names);
        free(line);
        cc_answered(cl);
}

bool chat_cluster_cmd_who(struct chat_client *cl, chat_cluster_done_cb done)
{
        if (!cl->room)
                return false;
        struct chat_cluster_claim *claim =
            chat_cluster_members(cl->w, cl->room->key, cc_who_listed, cl);
        if (!claim)
                return false;
        cc_await(cl, claim, done);
        return true;
}

/* ---- /msg to another instance ---- */

static void cc_pm_sent(void *arg, int result)
{
        struct chat_client *cl = arg;
        if (!chat_client_gone(cl)) {
                if (result == 0)
                        chat_send(cl, cl->claim_line, strlen(cl->claim_line));
                else if (result == -ENOTCONN)
                        cc_say(cl, "! cluster link down: try again\r\n");
                else
                        chat_sendf(cl, "! no such user %s\r\n", cl->claim_name);
        }
        cc_answered(cl);
}

bool chat_cluster_cmd_msg(struct chat_client *cl, const char *name, size_t nlen,
                          const uint8_t *text, size_t tlen, chat_cluster_done_cb done)
{
        struct chat_worker *w = cl->w;
        if (!chat_cluster_up(w) || !chat_name_valid(name, nlen))
                return false;
        /* The line the recipient reads, and the sender's echo (written only
         * once the recipient's instance took it). */
        size_t cap = tlen + CHAT_LINE_OVERHEAD;
        char *echo = malloc(cap);
        if (!echo)
                return false;
        char *line = w->scratch;
        size_t off = 0;
        chat_puts(line, &off, "[pm] ");
        chat_puts(line, &off, cl->nick->name);
        chat_puts(line, &off, ": ");
        cc_sanitize(line + off, text, tlen);
        off += tlen;
        chat_puts(line, &off, "\r\n");
        char key[CHAT_NAME_MAX + 1];
        cc_lower(key, name, nlen);
        struct chat_cluster_claim *claim = chat_cluster_pm(w, key, line, off, cc_pm_sent, cl);
        if (!claim) {
                free(echo);
                return false;
        }
        /* The recipient's spelling is its instance's: the echo uses the
         * sender's. */
        size_t eo = 0;
        chat_puts(echo, &eo, "[pm to ");
        chat_put(echo, &eo, name, nlen);
        chat_puts(echo, &eo, "] ");
        chat_put(echo, &eo, line + 5, off - 5); /* "FROM: TEXT\r\n" */
        echo[eo] = '\0';
        cl->claim_line = echo;
        memcpy(cl->claim_name, name, nlen);
        cl->claim_name[nlen] = '\0';
        cc_await(cl, claim, done);
        return true;
}

struct cc_pm {
        size_t len;
        char data[];
};

static void cc_pm_deliver(tern_conn *c, void *arg)
{
        struct cc_pm *pm = arg;
        struct chat_client *cl = c ? tern_conn_data(c) : NULL;
        if (cl)
                chat_send(cl, pm->data, pm->len);
        free(pm);
        chat_grace_release();
}

/* A private line from another instance, on worker 0: to its recipient's
 * worker by handle, as a local /msg goes. */
static void cc_pm_arrived(struct chat_worker *w, const char *key, const char *line, size_t len)
{
        struct chat_nick *to = chat_nick_find(w->cs, key, strlen(key));
        if (!to)
                return; /* gone since its instance said it was here */
        struct cc_pm *pm = malloc(sizeof(*pm) + len);
        if (!pm)
                return;
        pm->len = len;
        memcpy(pm->data, line, len);
        if (tern_handle_post(w->cs->srv, to->owner, cc_pm_deliver, pm) < 0)
                free(pm);
}

void chat_cluster_cmds_init(struct chat_server *cs)
{
        chat_cluster_set_pm_handler(cs, cc_pm_arrived);
}
