/*
 * Layer 4.5 (chat.h lists the layers): the commands whose answer, with
 * --cluster, only Redis knows: /nick (a name must be free on every
 * instance), /rooms and /who (members of every instance), /msg to a name
 * held elsewhere. Includes client.h. [worker]
 *
 * Each returns false when the command is not the cluster's to answer (no
 * --cluster; for /rooms, /who and /msg also a link that is down: the
 * instance then answers for itself, as without a cluster). When it returns
 * true the command is handled: answered at once, or later, in which case
 * @cl's reading is paused and its later lines are held (cl->waiting, as
 * for a /who) until @done(cl) runs after the answer went out.
 */
#ifndef CHAT_CLUSTER_CMDS_H
#define CHAT_CLUSTER_CMDS_H

#include "client.h"

typedef void (*chat_cluster_done_cb)(struct chat_client *cl);

/* /nick with a valid @name (@len bytes) that is not the current name. */
bool chat_cluster_cmd_nick(struct chat_client *cl, const char *name, size_t len,
                           chat_cluster_done_cb done);
bool chat_cluster_cmd_rooms(struct chat_client *cl, chat_cluster_done_cb done);
bool chat_cluster_cmd_who(struct chat_client *cl, chat_cluster_done_cb done);
/* /msg NAME TEXT where no one here holds NAME (@name, @nlen bytes; @text
 * is the client's, sanitized here). */
bool chat_cluster_cmd_msg(struct chat_client *cl, const char *name, size_t nlen,
                          const uint8_t *text, size_t tlen, chat_cluster_done_cb done);
/* Sets up delivery of private lines from other instances. [before start] */
void chat_cluster_cmds_init(struct chat_server *cs);

#endif
