/*
 * Layer 5 (chat.h lists the layers): /who, asked of every worker with
 * members of the room and answered by the last. Includes client.h. [worker]
 */
#ifndef CHAT_WHO_H
#define CHAT_WHO_H

#include "client.h"

/* Runs with the requester once its answer has gone out, when that was
 * not at once (chat_who() returned false). */
typedef void (*chat_who_answered_cb)(struct chat_client *cl);

/*
 * chat_who - sends @cl the sorted members of its room. Returns true when
 * the answer went out at once (every member was local, or out of memory);
 * false when it comes back later from other workers, as a task on this
 * worker that sends it and then calls @answered(cl) (not if @cl closed
 * meanwhile).
 */
bool chat_who(struct chat_client *cl, chat_who_answered_cb answered);

#endif
