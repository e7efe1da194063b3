/*
 * Layer 4.5 (chat.h lists the layers): /nick with --cluster, where a name
 * must be free on every instance, which only Redis can say. Includes
 * client.h. [worker]
 */
#ifndef CHAT_CLUSTER_NICK_H
#define CHAT_CLUSTER_NICK_H

#include "client.h"

/*
 * chat_cluster_nick - renames @cl to the valid name @name (@len bytes, not
 * its current name) after claiming it in Redis. Returns true when it is
 * settled at once (a case-only change, a name taken here, the link down);
 * false when the answer comes later: then @done(cl) runs after the reply
 * went out (not if @cl departed meanwhile), and the caller holds @cl's
 * later lines as for /who.
 */
bool chat_cluster_nick(struct chat_client *cl, const char *name, size_t len,
                       void (*done)(struct chat_client *cl));

#endif
