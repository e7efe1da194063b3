/*
 * Layer 6 (chat.h lists the layers): the line protocol. Includes who.h
 * and cluster_cmds.h (and so client.h and the layers below). [worker]
 */
#ifndef CHAT_COMMANDS_H
#define CHAT_COMMANDS_H

#include "cluster_cmds.h"
#include "who.h"

void chat_on_line(struct chat_client *cl, const uint8_t *line, size_t len);
/* A frame (line or TERN_FRAME_OVERSIZED) from the client, queued behind a
 * /who in flight if there is one. */
void chat_on_frame(struct chat_client *cl, const struct tern_frame *f);
/* Copies @len bytes, replacing ASCII control characters other than TAB. */
void chat_sanitize(char *dst, const uint8_t *src, size_t len);

#endif
