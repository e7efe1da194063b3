/**
 * @file
 * Socket addresses as text, for log lines that name a peer.
 */
#ifndef TERN_ADDR_H
#define TERN_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#include "export.h"

/** Room for any address tern_sockaddr_str() writes, with its NUL. */
#define TERN_ADDRSTRLEN 128

/**
 * tern_sockaddr_str - @p sa as "192.0.2.1:5000", "[2001:db8::1]:443",
 * "unix:/run/x.sock" or "unix" (an unnamed Unix-domain socket) into @p buf
 * of @p size bytes, truncated if needed and always NUL-terminated when
 * @p size > 0. Returns @p buf. [any] Never fails: an unknown family is
 * written as "family N".
 */
TERN_EXPORT const char *tern_sockaddr_str(const struct sockaddr *sa, socklen_t len, char *buf,
                                          size_t size);

#endif
