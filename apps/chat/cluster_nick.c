/*
 * Layer 4.5 (chat.h lists the layers; includes cluster_nick.h, so client.h
 * and below): /nick across instances. The name is claimed in Redis first
 * (SET NX, cluster.c), then in this instance's registry as without a
 * cluster; the old name is given back only once the new one is held, so a
 * client always holds at least one name, as in docs/chat.md.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cluster_nick.h"

static void say(struct chat_client *cl, const char *line)
{
        chat_send(cl, line, strlen(line));
}

/* The local half, as cmd_nick does it without a cluster. Returns 0 or
 * -errno (-EEXIST: someone here took it meanwhile). */
static int rename_here(struct chat_client *cl, const char *name, size_t len)
{
        struct chat_nick *old = cl->nick;
        struct chat_nick *nick = chat_nick_rename(cl->w->cs, old, name, len);
        if (!nick)
                return -errno;
        cl->nick = nick;
        if (strcmp(old->key, nick->key) != 0)
                chat_cluster_nick_release(cl->w, old->key);
        /* @old is queued for call_rcu: readable until this callback returns. */
        char line[2 * CHAT_NAME_MAX + 32];
        int n = snprintf(line, sizeof(line), "* %s is now %s\r\n", old->name, nick->name);
        chat_client_say(cl, line, (size_t)n);
        return 0;
}

static void report(struct chat_client *cl, int r)
{
        if (r == -EEXIST)
                say(cl, "! nickname taken\r\n");
        else if (r == -ENOTCONN)
                say(cl, "! cluster link down: nicknames cannot change now, try again later\r\n");
        else if (r < 0)
                say(cl, "! out of memory\r\n");
}

static void claimed(void *arg, int result)
{
        struct chat_client *cl = arg;
        cl->claim = NULL;
        char key[CHAT_NAME_MAX + 1];
        size_t len = strlen(cl->claim_name);
        for (size_t i = 0; i <= len; i++)
                key[i] = (char)((cl->claim_name[i] >= 'A' && cl->claim_name[i] <= 'Z')
                                    ? cl->claim_name[i] + 32
                                    : cl->claim_name[i]);
        if (result == 0) {
                result = rename_here(cl, cl->claim_name, len);
                if (result < 0) /* won in Redis, lost here: give it back */
                        chat_cluster_nick_release(cl->w, key);
        }
        if (!chat_client_gone(cl))
                report(cl, result);
        cl->claim_done(cl);
}

bool chat_cluster_nick(struct chat_client *cl, const char *name, size_t len,
                       void (*done)(struct chat_client *cl))
{
        struct chat_worker *w = cl->w;
        /* Same name in another case: ours in Redis already. */
        if (strlen(cl->nick->name) == len && strncasecmp(cl->nick->name, name, len) == 0) {
                report(cl, rename_here(cl, name, len));
                return true;
        }
        struct chat_nick *here = chat_nick_find(w->cs, name, len);
        if (here) {
                report(cl, -EEXIST);
                return true;
        }
        char key[CHAT_NAME_MAX + 1];
        for (size_t i = 0; i < len; i++)
                key[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
        key[len] = '\0';
        cl->claim = chat_cluster_nick_claim(w, key, claimed, cl);
        if (!cl->claim) {
                report(cl, -errno);
                return true;
        }
        memcpy(cl->claim_name, name, len);
        cl->claim_name[len] = '\0';
        cl->claim_done = done;
        return false;
}
