/*
 * The programs in examples/, run as a user runs them: each binary is started
 * on a free port, talked to over loopback, stopped with SIGTERM, and must
 * exit 0 (under ASan that includes no leak reports).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

struct example {
        pid_t pid;
        uint16_t port;
};

/* The example running now, killed by the suite's fini if an assertion ends
 * the test early, so that no server outlives its test. */
static pid_t running;

static void kill_running(void)
{
        if (running > 0) {
                kill(running, SIGKILL);
                waitpid(running, NULL, 0);
                running = 0;
        }
}

TestSuite(examples, .fini = kill_running);

/* Starts build/bin/example-@name with port 0 and @arg (or none), and reads
 * the port from its "listening on ... port N" line. */
static struct example start(const char *name, const char *arg)
{
        char self[4096], path[4200];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        cr_assert_gt(n, 0);
        self[n] = '\0';
        *strrchr(self, '/') = '\0';
        snprintf(path, sizeof(path), "%s/../bin/example-%s", self, name);
        if (access(path, X_OK) != 0)
                cr_skip_test("%s is not built (TERN_BUILD_EXAMPLES=OFF?)", path);

        int out[2]; /* a socket, not a pipe: tu_read_exact() uses recv() */
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, out), 0);
        struct example ex = {.pid = fork()};
        cr_assert_geq(ex.pid, 0);
        if (ex.pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the test */
                dup2(out[1], 1);
                close(out[0]);
                execl(path, path, "0", arg, (char *)NULL);
                _exit(127);
        }
        running = ex.pid;
        close(out[1]);
        char line[256];
        size_t len = 0;
        while (len < sizeof(line) - 1 && (len == 0 || line[len - 1] != '\n')) {
                cr_assert_eq(tu_read_exact(out[0], line + len, 1, 10000), 0,
                             "example-%s printed no start-up line", name);
                len++;
        }
        line[len] = '\0';
        close(out[0]);
        const char *p = strstr(line, " port ");
        cr_assert_not_null(p, "start-up line: %s", line);
        ex.port = (uint16_t)atoi(p + 6);
        cr_assert_gt(ex.port, 0, "start-up line: %s", line);
        return ex;
}

static void stop(struct example ex)
{
        int status;
        cr_assert_eq(kill(ex.pid, SIGTERM), 0);
        cr_assert_eq(waitpid(ex.pid, &status, 0), ex.pid);
        running = 0;
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %#x", status);
}

static int connect_to(struct example ex)
{
        int fd = tu_connect(ex.port, false);
        cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
        return fd;
}

static void send_str(int fd, const char *s)
{
        cr_assert_eq(tu_write_all(fd, s, strlen(s)), 0);
}

/* Reads exactly strlen(@want) bytes and compares. */
static void expect(int fd, const char *want)
{
        char got[256] = {0};
        size_t len = strlen(want);
        cr_assert_lt(len, sizeof(got));
        cr_assert_eq(tu_read_exact(fd, got, len, 5000), 0, "waiting for '%s'", want);
        cr_assert_eq(memcmp(got, want, len), 0, "got '%s', want '%s'", got, want);
}

/* Reads one '\n'-terminated line (terminator kept). */
static void read_line(int fd, char *buf, size_t cap)
{
        size_t len = 0;
        while (len < cap - 1 && (len == 0 || buf[len - 1] != '\n')) {
                cr_assert_eq(tu_read_exact(fd, buf + len, 1, 5000), 0);
                len++;
        }
        buf[len] = '\0';
}

Test(examples, line_commands)
{
        struct example ex = start("line", NULL);
        int fd = connect_to(ex);
        send_str(fd, "UPPER hello, world\n");
        expect(fd, "HELLO, WORLD\n");
        send_str(fd, "REVERSE abc\r\n"); /* CRLF works too */
        expect(fd, "cba\n");
        send_str(fd, "NOPE\nUPPER\nUPPERCASE x\n"); /* pipelined, in one write */
        expect(fd, "ERR unknown command\n\nERR unknown command\n");

        /* An overlong line is dropped and reported; the connection lives on. */
        char big[3000];
        memset(big, 'a', sizeof(big));
        cr_assert_eq(tu_write_all(fd, "UPPER ", 6), 0);
        cr_assert_eq(tu_write_all(fd, big, sizeof(big)), 0);
        send_str(fd, "\nUPPER ok\n");
        expect(fd, "ERR line too long\nOK\n");

        send_str(fd, "QUIT\n");
        expect(fd, "BYE\n");
        cr_assert_eq(tu_wait_eof(fd, 5000), 0, "QUIT did not close");
        close(fd);
        stop(ex);
}

static void tlv_send(int fd, uint8_t type, const void *body, size_t len)
{
        uint8_t hdr[3] = {(uint8_t)(len >> 8), (uint8_t)len, type};
        cr_assert_eq(tu_write_all(fd, hdr, 3), 0);
        cr_assert_eq(tu_write_all(fd, body, len), 0);
}

static void tlv_expect(int fd, uint8_t type, const void *body, size_t len)
{
        uint8_t hdr[3], got[4096];
        cr_assert_eq(tu_read_exact(fd, hdr, 3, 5000), 0);
        cr_assert_eq((size_t)hdr[0] << 8 | hdr[1], len);
        cr_assert_eq(hdr[2], type);
        cr_assert_eq(tu_read_exact(fd, got, len, 5000), 0);
        cr_assert_eq(memcmp(got, body, len), 0);
}

Test(examples, tlv_custom_codec)
{
        struct example ex = start("tlv", NULL);
        int fd = connect_to(ex);
        tlv_send(fd, 1, "ping", 4);
        tlv_expect(fd, 1, "ping", 4);
        tlv_send(fd, 1, "", 0); /* an empty body is a frame too */
        tlv_expect(fd, 1, "", 0);
        tlv_send(fd, 7, "x", 1);
        tlv_expect(fd, 255, "unknown type", 12);

        /* The largest body, one byte at a time: reassembled by the codec. */
        static uint8_t body[4096];
        tu_pattern(body, sizeof(body), 1, 0);
        uint8_t frame[3 + sizeof(body)] = {0x10, 0x00, 1};
        memcpy(frame + 3, body, sizeof(body));
        for (size_t i = 0; i < 64; i++)
                cr_assert_eq(tu_write_all(fd, frame + i, 1), 0);
        cr_assert_eq(tu_write_all(fd, frame + 64, sizeof(frame) - 64), 0);
        tlv_expect(fd, 1, body, sizeof(body));

        /* Type 0 is malformed: the connection closes. */
        tlv_send(fd, 0, "", 0);
        cr_assert_eq(tu_wait_eof(fd, 5000), 0);
        close(fd);

        /* A header announcing more than 4 KiB closes before any body. */
        fd = connect_to(ex);
        cr_assert_eq(tu_write_all(fd, "\x10\x01\x01", 3), 0);
        cr_assert_eq(tu_wait_eof(fd, 5000), 0);
        close(fd);
        stop(ex);
}

Test(examples, ticker_broadcasts_to_every_client)
{
        struct example ex = start("ticker", "20");
        int a = connect_to(ex), b = connect_to(ex);
        char la[64], lb[64];
        unsigned long first_a, prev_a, prev_b, n;
        read_line(a, la, sizeof(la));
        cr_assert_eq(sscanf(la, "tick %lu\n", &first_a), 1, "'%s'", la);
        prev_a = first_a;
        read_line(b, lb, sizeof(lb));
        cr_assert_eq(sscanf(lb, "tick %lu\n", &prev_b), 1, "'%s'", lb);
        /* Every tick reaches every client, in order, none skipped. */
        for (int i = 0; i < 5; i++) {
                read_line(a, la, sizeof(la));
                cr_assert_eq(sscanf(la, "tick %lu", &n), 1);
                cr_assert_eq(n, prev_a + 1, "a: '%s' after %lu", la, prev_a);
                prev_a = n;
                read_line(b, lb, sizeof(lb));
                cr_assert_eq(sscanf(lb, "tick %lu", &n), 1);
                cr_assert_eq(n, prev_b + 1, "b: '%s' after %lu", lb, prev_b);
                prev_b = n;
        }
        /* One client leaving does not disturb the other. */
        close(b);
        for (int i = 0; i < 3; i++) {
                read_line(a, la, sizeof(la));
                cr_assert_eq(sscanf(la, "tick %lu", &n), 1);
                cr_assert_eq(n, prev_a + 1);
                prev_a = n;
        }
        close(a);
        stop(ex);
}

/* Reads one HTTP response: the head into @head (NUL-terminated), the
 * Content-Length body into @body. Returns the status code. */
static int http_response(int fd, char *head, size_t cap, char *body, size_t bcap)
{
        size_t len = 0;
        while (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0) {
                cr_assert_lt(len, cap - 1, "response head too long");
                cr_assert_eq(tu_read_exact(fd, head + len, 1, 5000), 0, "waiting for a response");
                len++;
        }
        head[len] = '\0';
        int status = 0;
        cr_assert_eq(sscanf(head, "HTTP/1.1 %d ", &status), 1, "'%s'", head);
        const char *cl = strstr(head, "Content-Length: ");
        cr_assert_not_null(cl, "'%s'", head);
        size_t n = (size_t)atoi(cl + 16);
        cr_assert_lt(n, bcap);
        cr_assert_eq(tu_read_exact(fd, body, n, 5000), 0);
        body[n] = '\0';
        return status;
}

static void expect_hello(int fd)
{
        char head[512], body[64];
        cr_assert_eq(http_response(fd, head, sizeof(head), body, sizeof(body)), 200);
        cr_assert_str_eq(body, "Hello, World!");
        cr_assert_not_null(strstr(head, "\r\nServer: tern\r\n"), "'%s'", head);
        cr_assert_not_null(strstr(head, "\r\nDate: "), "'%s'", head);
        cr_assert_not_null(strstr(head, "\r\nContent-Type: text/plain\r\n"), "'%s'", head);
}

Test(examples, http_hello_keep_alive_pipelining_smuggling)
{
        struct example ex = start("http-hello", "1");
        static const char get[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        int fd = connect_to(ex);

        /* Keep-alive: two requests, one connection. */
        send_str(fd, get);
        expect_hello(fd);
        send_str(fd, get);
        expect_hello(fd);

        /* 16 pipelined in one write: 16 answers, in order. */
        char batch[sizeof(get) * 16];
        for (int i = 0; i < 16; i++)
                memcpy(batch + i * (sizeof(get) - 1), get, sizeof(get) - 1);
        cr_assert_eq(tu_write_all(fd, batch, 16 * (sizeof(get) - 1)), 0);
        for (int i = 0; i < 16; i++)
                expect_hello(fd);

        char head[512], body[64];
        send_str(fd, "GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n");
        cr_assert_eq(http_response(fd, head, sizeof(head), body, sizeof(body)), 404);

        /* Content-Length beside Transfer-Encoding: the classic CL.TE smuggling
         * attempt is answered 400 and the connection closes. */
        send_str(fd, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n");
        cr_assert_eq(http_response(fd, head, sizeof(head), body, sizeof(body)), 400);
        cr_assert_not_null(strstr(head, "\r\nConnection: close\r\n"));
        cr_assert_eq(tu_wait_eof(fd, 5000), 0, "not closed after a 400");
        close(fd);

        /* HTTP/1.0 asking for keep-alive is told so and kept; without it,
         * one answer, then the close. */
        fd = connect_to(ex);
        send_str(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        cr_assert_eq(http_response(fd, head, sizeof(head), body, sizeof(body)), 200);
        cr_assert_not_null(strstr(head, "\r\nConnection: keep-alive\r\n"), "'%s'", head);
        send_str(fd, "GET / HTTP/1.0\r\n\r\n");
        expect_hello(fd);
        cr_assert_eq(tu_wait_eof(fd, 5000), 0);
        close(fd);
        stop(ex);
}

Test(examples, http_hello_curl)
{
        if (system("command -v curl >/dev/null 2>&1") != 0)
                cr_skip_test("curl is not installed");
        struct example ex = start("http-hello", "1");
        char cmd[128], out[64] = {0};
        snprintf(cmd, sizeof(cmd), "curl -sS --max-time 5 http://127.0.0.1:%u/", ex.port);
        FILE *p = popen(cmd, "r");
        cr_assert_not_null(p);
        size_t n = fread(out, 1, sizeof(out) - 1, p);
        cr_assert_eq(pclose(p), 0, "curl failed: '%.*s'", (int)n, out);
        cr_assert_str_eq(out, "Hello, World!");
        stop(ex);
}
