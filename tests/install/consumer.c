/*
 * A program built out of tree against an installed tern (tests/install/run.sh
 * builds it through pkg-config and through find_package). It checks that the
 * headers and the library it runs with agree with the version under test,
 * then runs an echo server on an ephemeral loopback port for one round trip.
 * Usage: consumer EXPECTED_VERSION; exit 0 = pass.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <tern/tern.h>
#include <unistd.h>

#define FAIL(...)                                                                                  \
        do {                                                                                       \
                fprintf(stderr, "consumer: " __VA_ARGS__);                                         \
                fputc('\n', stderr);                                                               \
                return 1;                                                                          \
        } while (0)

static void echo(tern_conn *c, struct tern_buf *in)
{
        tern_conn_send(c, tern_buf_data(in), tern_buf_len(in));
        tern_buf_consume(in, tern_buf_len(in));
}

int main(int argc, char **argv)
{
        if (argc != 2)
                FAIL("usage: consumer EXPECTED_VERSION");
        if (strcmp(TERN_VERSION_STRING, argv[1]) != 0)
                FAIL("headers say %s, expected %s", TERN_VERSION_STRING, argv[1]);
        if (strcmp(tern_version(), argv[1]) != 0)
                FAIL("library says %s, expected %s", tern_version(), argv[1]);
        if (tern_version_number() != TERN_VERSION_NUMBER)
                FAIL("library number %#x, headers %#x", tern_version_number(), TERN_VERSION_NUMBER);

        static const struct tern_conn_ops ops = {.on_message = echo};
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.bind = "127.0.0.1";
        o.workers = 1;
        o.ops = &ops;
        tern_server *s = tern_server_new(&o);
        if (!s || tern_server_start(s) != 0)
                FAIL("cannot start a server");

        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(tern_server_port(s))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        struct timeval tv = {.tv_sec = 10};
        char got[6] = {0};
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
                 write(fd, "hello", 5) == 5 && recv(fd, got, 5, MSG_WAITALL) == 5 &&
                 memcmp(got, "hello", 5) == 0;
        if (fd >= 0)
                close(fd);
        tern_server_stop(s);
        int waited = tern_server_wait(s);
        tern_server_free(s);
        if (!ok)
                FAIL("echo round trip failed (got '%s')", got);
        if (waited != 0)
                FAIL("tern_server_wait: %s", tern_strerror(waited));
        printf("consumer: tern %s, echo round trip ok\n", tern_version());
        return 0;
}
