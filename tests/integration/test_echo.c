/* tern-echo-style server over loopback: the runtime end to end. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "srvutil.h"
#include "testutil.h"

static void echo_message(tern_conn *c, struct tern_buf *in)
{
        tern_conn_send(c, tern_buf_data(in), tern_buf_len(in));
        tern_buf_consume(in, tern_buf_len(in));
}

static const struct tern_conn_ops echo_ops = {.on_message = echo_message};

static tern_server *start_echo(int workers)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = workers;
        o.ops = &echo_ops;
        return su_start(&o);
}

static void roundtrip(int fd, size_t len, uint32_t seed)
{
        uint8_t *out = malloc(len), *in = malloc(len);
        tu_pattern(out, len, seed, 0);
        cr_assert_eq(tu_write_all(fd, out, len), 0);
        cr_assert_eq(tu_read_exact(fd, in, len, 5000), 0);
        cr_assert_eq(memcmp(in, out, len), 0, "echoed bytes differ");
        free(out);
        free(in);
}

Test(echo, single_client_roundtrip)
{
        tern_server *s = start_echo(1);
        int fd = tu_connect(tern_server_port(s), false);
        cr_assert_geq(fd, 0);
        roundtrip(fd, 1, 1);
        roundtrip(fd, 100000, 2);
        close(fd);
        su_stop(s);
}

struct many_arg {
        uint16_t port;
        int clients;
        int rounds;
        uint32_t seed;
        int failures;
};

/* Each thread drives its clients in lock-step chunks: write a chunk to every
 * client, then read every echo back, so neither side's buffers deadlock. */
static void *many_clients_thread(void *p)
{
        struct many_arg *a = p;
        enum { CHUNK = 16 * 1024 };
        int fds[64];
        uint8_t out[CHUNK], in[CHUNK];
        for (int i = 0; i < a->clients; i++)
                fds[i] = tu_connect(a->port, false);
        for (int r = 0; r < a->rounds; r++) {
                for (int i = 0; i < a->clients; i++) {
                        tu_pattern(out, CHUNK, a->seed + (uint32_t)i, (size_t)r * CHUNK);
                        if (fds[i] < 0 || tu_write_all(fds[i], out, CHUNK))
                                a->failures++;
                }
                for (int i = 0; i < a->clients; i++) {
                        tu_pattern(out, CHUNK, a->seed + (uint32_t)i, (size_t)r * CHUNK);
                        if (fds[i] < 0 || tu_read_exact(fds[i], in, CHUNK, 10000) ||
                            memcmp(in, out, CHUNK))
                                a->failures++;
                }
        }
        for (int i = 0; i < a->clients; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        return NULL;
}

Test(echo, many_clients_every_byte_checked)
{
        tern_server *s = start_echo(2);
        enum { THREADS = 4 };
        pthread_t th[THREADS];
        struct many_arg args[THREADS];
        for (int t = 0; t < THREADS; t++) {
                args[t] = (struct many_arg){tern_server_port(s), 50, 8, 1000u * (uint32_t)t, 0};
                pthread_create(&th[t], NULL, many_clients_thread, &args[t]);
        }
        for (int t = 0; t < THREADS; t++) {
                pthread_join(th[t], NULL);
                cr_expect_eq(args[t].failures, 0, "thread %d: %d failures", t, args[t].failures);
        }
        struct tern_stats st, per[2];
        tern_server_stats(s, &st, per);
        cr_assert_eq(st.accepted, 200);
        /* Round-robin hand-off: both workers got half. */
        cr_assert_eq(per[0].accepted, 100);
        cr_assert_eq(per[1].accepted, 100);
        cr_assert_eq(st.bytes_in, 200ull * 8 * 16 * 1024);
        su_stop(s);
}

Test(echo, half_close_reply_still_delivered)
{
        tern_server *s = start_echo(1);
        int fd = tu_connect(tern_server_port(s), false);
        enum { LEN = 3 << 20 };
        uint8_t *out = malloc(LEN), *in = malloc(LEN);
        tu_pattern(out, LEN, 7, 0);
        /* Write everything, then half-close, and only then start reading:
         * the server must queue, see EOF, and still flush every byte. */
        pid_t pid = fork();
        if (pid == 0) {
                int r = tu_write_all(fd, out, LEN);
                shutdown(fd, SHUT_WR);
                _exit(r ? 1 : 0);
        }
        cr_assert_eq(tu_read_exact(fd, in, LEN, 10000), 0);
        cr_assert_eq(memcmp(in, out, LEN), 0);
        cr_assert_eq(tu_wait_eof(fd, 5000), 0, "server did not close after flushing");
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        close(fd);
        free(out);
        free(in);
        su_stop(s);
}

Test(echo, ipv6_listener)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 1;
        o.ops = &echo_ops;
        o.bind = "::1";
        tern_server *s = tern_server_new(&o);
        if (!s)
                cr_skip_test("no IPv6 loopback here: %s", strerror(errno));
        cr_assert_eq(tern_server_start(s), 0);
        int fd = tu_connect(tern_server_port(s), true);
        cr_assert_geq(fd, 0);
        roundtrip(fd, 5000, 3);
        close(fd);
        su_stop(s);
}

Test(echo, wildcard_bind_serves_v4_and_v6)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 1;
        o.ops = &echo_ops;
        tern_server *s = tern_server_new(&o); /* bind NULL: every address */
        cr_assert_not_null(s);
        cr_assert_eq(tern_server_start(s), 0);
        int fd = tu_connect(tern_server_port(s), false);
        roundtrip(fd, 1000, 4);
        close(fd);
        int fd6 = tu_connect(tern_server_port(s), true);
        if (fd6 >= 0) {
                roundtrip(fd6, 1000, 5);
                close(fd6);
        }
        su_stop(s);
}

Test(echo, stop_with_live_clients_repeatedly)
{
        for (int round = 0; round < 25; round++) {
                tern_server *s = start_echo(1 + round % 3);
                int fds[10];
                for (int i = 0; i < 10; i++) {
                        fds[i] = tu_connect(tern_server_port(s), false);
                        cr_assert_geq(fds[i], 0);
                        roundtrip(fds[i], 100, (uint32_t)i);
                }
                /* Unread data pending on some connections at stop time. */
                for (int i = 0; i < 10; i += 2)
                        tu_write_all(fds[i], "pending", 7);
                su_stop(s);
                for (int i = 0; i < 10; i++) {
                        char buf[16];
                        /* Whatever was echoed before the drain, then EOF. */
                        if (i % 2 == 0)
                                tu_read_exact(fds[i], buf, 7, 2000);
                        cr_assert_eq(tu_wait_eof(fds[i], 5000), 0, "client %d not closed", i);
                        close(fds[i]);
                }
        }
}

Test(echo, stop_before_any_client)
{
        tern_server *s = start_echo(2);
        su_stop(s);
        /* Never started: free alone must work too. */
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.bind = "127.0.0.1";
        s = tern_server_new(&o);
        cr_assert_not_null(s);
        tern_server_free(s);
        su_assert_nothing_live();
}

Test(echo, bind_conflict_is_a_clear_error)
{
        tern_server *s = start_echo(1);
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.bind = "127.0.0.1";
        o.port = tern_server_port(s);
        tern_server *s2 = tern_server_new(&o);
        cr_assert_null(s2);
        cr_assert_eq(errno, EADDRINUSE);
        su_stop(s);
}
