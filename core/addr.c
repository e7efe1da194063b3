#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

const char *tern_sockaddr_str(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
        char host[INET6_ADDRSTRLEN];
        if (!size)
                return buf;
        switch (sa->sa_family) {
        case AF_INET: {
                const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
                break;
        }
        case AF_INET6: {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
                break;
        }
        case AF_UNIX: {
                const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
                size_t off = offsetof(struct sockaddr_un, sun_path);
                /* An unnamed peer (the usual connecting client) has no path;
                 * an abstract one starts with a NUL. */
                size_t n = len > off ? (size_t)len - off : 0;
                if (n && un->sun_path[0])
                        snprintf(buf, size, "unix:%.*s", (int)strnlen(un->sun_path, n),
                                 un->sun_path);
                else if (n > 1)
                        snprintf(buf, size, "unix:@%.*s", (int)(n - 1), un->sun_path + 1);
                else
                        snprintf(buf, size, "unix");
                break;
        }
        default:
                snprintf(buf, size, "family %d", sa->sa_family);
        }
        return buf;
}
