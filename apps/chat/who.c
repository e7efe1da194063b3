/*
 * Layer 5 (chat.h lists the layers; includes who.h, so client.h and the
 * layers below): /who's scatter-gather.
 *
 * Member lists are private to their workers, so the asking worker asks
 * each worker whose count for the room is not zero (tern_loop_post); each
 * fills its own slot of the request, and the last to finish (an atomic
 * countdown) sorts the names and posts the answer to the requester's
 * connection by handle (safe if it has closed meanwhile). The command
 * layer learns that the answer went out through a callback.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "who.h"

static const char oom[] = "! out of memory\r\n";

struct who_part {
        char *names; /* NUL-separated */
        size_t len;
        uint32_t n;
};

struct who_req {
        struct chat_server *cs;
        tern_handle requester;
        chat_who_answered_cb answered;
        uint64_t room_id;
        int pending; /* atomic: workers still to answer, +1 while asking */
        char room_name[CHAT_NAME_MAX + 1];
        struct who_part parts[]; /* one per worker, written by that worker */
};

struct who_reply {
        chat_who_answered_cb answered;
        size_t len;
        char data[];
};

static void who_reply_deliver(tern_conn *c, void *arg)
{
        struct who_reply *r = arg;
        struct chat_client *cl = c ? tern_conn_data(c) : NULL;
        if (cl) {
                chat_send(cl, r->data, r->len);
                r->answered(cl);
        }
        free(r);
        chat_grace_release();
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
                chat_puts(r->data, &off, "* members of #");
                chat_puts(r->data, &off, req->room_name);
                chat_puts(r->data, &off, ":");
                for (size_t i = 0; i < n; i++) {
                        chat_puts(r->data, &off, " ");
                        chat_puts(r->data, &off, names[i]);
                }
                chat_puts(r->data, &off, "\r\n");
                r->len = off;
        } else if (r) {
                r->len = sizeof(oom) - 1;
                memcpy(r->data, oom, r->len);
        }
        if (direct) {
                if (r)
                        chat_send(direct, r->data, r->len);
                else
                        chat_send(direct, oom, sizeof(oom) - 1);
        } else if (r) {
                r->answered = req->answered;
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
        struct chat_member *m;
        size_t bytes = 0;
        cds_list_for_each_entry(m, &lr->members, link) bytes +=
            strlen(chat_client_of(m)->nick->name) + 1;
        struct who_part *part = &req->parts[w->index];
        part->names = malloc(bytes ? bytes : 1);
        if (!part->names)
                return; /* the answer misses this worker's members */
        cds_list_for_each_entry(m, &lr->members, link)
        {
                const char *name = chat_client_of(m)->nick->name;
                size_t len = strlen(name) + 1;
                memcpy(part->names + part->len, name, len);
                part->len += len;
                part->n++;
        }
}

static void who_task(tern_loop *loop, void *arg)
{
        struct who_req *req = arg;
        struct chat_worker *w = &req->cs->workers[tern_loop_index(loop)];
        who_collect(w, req);
        who_done(req, NULL);
        chat_grace_release();
}

bool chat_who(struct chat_client *cl, chat_who_answered_cb answered)
{
        struct chat_worker *w = cl->w;
        struct chat_server *cs = w->cs;
        struct chat_room *room = cl->room;
        if (!room)
                return true;
        struct who_req *req =
            calloc(1, sizeof(*req) + (size_t)cs->nworkers * sizeof(req->parts[0]));
        if (!req) {
                chat_send(cl, oom, sizeof(oom) - 1);
                return true;
        }
        req->cs = cs;
        req->requester = tern_conn_handle(cl->m.conn);
        req->answered = answered;
        req->room_id = room->id;
        memcpy(req->room_name, room->name, sizeof(req->room_name));
        /* Ask each worker that counts members (a count is raised before its
         * member can be seen joining, so whoever saw a join is answered
         * with that member). */
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
        /* Otherwise the answer comes back as a task on this worker,
         * necessarily after this callback. */
        return who_done(req, cl);
}
