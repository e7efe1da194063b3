/*
 * Several listeners per server, each with its own stack, all served by the
 * same workers: TCP and Unix-domain, stale socket files, permissions.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "srvutil.h"
#include "testutil.h"

static void upper_message(tern_conn *c, struct tern_buf *in)
{
        char buf[256];
        size_t n = tern_buf_len(in) < sizeof(buf) ? tern_buf_len(in) : sizeof(buf);
        for (size_t i = 0; i < n; i++)
                buf[i] = (char)toupper(tern_buf_data(in)[i]);
        /* The listener's user pointer says which one accepted us. */
        const char *tag = tern_conn_listener_user(c);
        tern_conn_send(c, tag, strlen(tag));
        tern_conn_send(c, buf, n);
        tern_buf_consume(in, n);
}

static const struct tern_conn_ops upper_ops = {.on_message = upper_message};

static char *sock_path(const char *name)
{
        static char path[100];
        snprintf(path, sizeof(path), "/tmp/tern-test-%d-%s.sock", (int)getpid(), name);
        return path;
}

static int connect_unix(const char *path)
{
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        return fd;
}

static void round_trip(int fd, const char *send, const char *want)
{
        cr_assert_eq(tu_write_all(fd, send, strlen(send)), 0);
        char got[64] = {0};
        cr_assert_eq(tu_read_exact(fd, got, strlen(want), 5000), 0);
        cr_assert_str_eq(got, want);
}

static tern_server *new_echo_server(int workers)
{
        static const struct tern_conn_ops echo_ops = {.on_message = su_echo_message};
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = workers;
        o.bind = "127.0.0.1";
        o.ops = &echo_ops;
        tern_server *s = tern_server_new(&o);
        cr_assert_not_null(s);
        return s;
}

static int add_unix(tern_server *s, const char *path, mode_t mode, const char *tag)
{
        struct tern_listener_opts lo;
        tern_listener_opts_init(&lo);
        lo.kind = TERN_LISTEN_UNIX;
        lo.path = path;
        lo.mode = mode;
        lo.ops = &upper_ops;
        lo.user = (void *)tag;
        return tern_server_listen(s, &lo);
}

Test(server, tcp_and_unix_listeners_with_their_own_stacks_share_the_workers)
{
        for (int workers = 1; workers <= 2; workers++) {
                tern_server *s = new_echo_server(workers);
                const char *path = sock_path("both");
                unlink(path);
                cr_assert_eq(add_unix(s, path, 0600, "unix:"), 1);
                struct tern_listener_opts lo;
                tern_listener_opts_init(&lo);
                lo.bind = "127.0.0.1";
                lo.ops = &upper_ops;
                lo.user = "tcp:";
                cr_assert_eq(tern_server_listen(s, &lo), 2);
                uint16_t p2 = tern_server_listener_port(s, 2);
                cr_assert_neq(p2, 0);
                cr_assert_neq(p2, tern_server_port(s));
                cr_assert_eq(tern_server_listener_port(s, 1), 0, "a Unix listener has no port");
                struct stat st;
                cr_assert_eq(stat(path, &st), 0);
                cr_assert(S_ISSOCK(st.st_mode));
                cr_assert_eq(st.st_mode & 0777, 0600);
                cr_assert_eq(tern_server_start(s), 0);
                cr_assert_eq(tern_server_listen(s, &lo), -EBUSY, "listeners come before start");

                int fds[6];
                for (int i = 0; i < 2; i++) { /* round-robin: both workers serve each */
                        fds[3 * i] = tu_connect(tern_server_port(s), false);
                        fds[3 * i + 1] = connect_unix(path);
                        fds[3 * i + 2] = tu_connect(p2, false);
                        cr_assert(fds[3 * i] >= 0 && fds[3 * i + 1] >= 0 && fds[3 * i + 2] >= 0);
                        round_trip(fds[3 * i], "echo", "echo");
                        round_trip(fds[3 * i + 1], "abc", "unix:ABC");
                        round_trip(fds[3 * i + 2], "xyz", "tcp:XYZ");
                }
                struct tern_stats per[2];
                tern_server_stats(s, NULL, per);
                for (int w = 0; w < workers; w++)
                        cr_assert_eq(per[w].accepted, (uint64_t)(6 / workers), "worker %d", w);
                for (int i = 0; i < 6; i++)
                        close(fds[i]);
                su_stop(s);
                cr_assert_neq(access(path, F_OK), 0, "the socket file is removed at free");
        }
}

Test(server, a_stale_socket_file_is_replaced_a_live_one_refused)
{
        const char *path = sock_path("stale");
        unlink(path);
        /* Stale: bound, listened, closed: nobody accepts there any more. */
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        strcpy(sun.sun_path, path);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
        cr_assert_eq(listen(fd, 1), 0);
        close(fd);
        cr_assert_eq(access(path, F_OK), 0);

        tern_server *a = new_echo_server(1);
        cr_assert_eq(add_unix(a, path, 0, "a:"), 1, "a stale file is replaced");
        cr_assert_eq(tern_server_start(a), 0);
        /* Live: a second server must not steal the path from the first. */
        tern_server *b = new_echo_server(1);
        cr_assert_eq(add_unix(b, path, 0, "b:"), -EADDRINUSE);
        tern_server_free(b);
        int c = connect_unix(path);
        cr_assert_geq(c, 0, "the first server still owns its socket");
        round_trip(c, "q", "a:Q");
        close(c);
        su_stop(a);
}

Test(server, a_path_that_is_not_a_socket_is_never_removed)
{
        const char *path = sock_path("file");
        int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, "data", 4), 4);
        close(fd);
        tern_server *s = new_echo_server(1);
        cr_assert_eq(add_unix(s, path, 0, "x"), -EEXIST);
        tern_server_free(s);
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        cr_assert(S_ISREG(st.st_mode));
        cr_assert_eq(st.st_size, 4);
        unlink(path);
        su_assert_nothing_live();
}

Test(server, bad_listener_options_and_the_limit)
{
        tern_server *s = new_echo_server(1);
        struct tern_listener_opts lo;
        tern_listener_opts_init(&lo);
        lo.kind = TERN_LISTEN_UNIX;
        lo.path = NULL;
        cr_assert_eq(tern_server_listen(s, &lo), -EINVAL);
        char longp[200];
        memset(longp, 'a', sizeof(longp) - 1);
        longp[sizeof(longp) - 1] = 0;
        lo.path = longp;
        cr_assert_eq(tern_server_listen(s, &lo), -EINVAL);
        tern_listener_opts_init(&lo);
        lo.bind = "127.0.0.1";
        int n = 1;
        int r;
        while ((r = tern_server_listen(s, &lo)) >= 0)
                n++;
        cr_assert_eq(r, -ENOSPC);
        cr_assert_eq(n, 8);
        tern_server_free(s);
        su_assert_nothing_live();
}

/* ---- drain_last: a listener that serves through the drain ---- */

static bool read_all_in(void *arg)
{
        struct tern_stats st;
        tern_server_stats(arg, &st, NULL);
        return st.bytes_in >= 8u << 20;
}

static bool data_port_refused(void *arg)
{
        int fd = tu_connect(*(uint16_t *)arg, false);
        if (fd >= 0)
                close(fd);
        return fd == -ECONNREFUSED;
}

Test(server, a_drain_last_listener_serves_until_the_others_drained)
{
        for (int workers = 1; workers <= 2; workers++) { /* acceptor at home, on a thread */
                struct tern_server_opts o;
                tern_server_opts_init(&o);
                static const struct tern_conn_ops echo_ops = {.on_message = su_echo_message};
                o.workers = workers;
                o.bind = "127.0.0.1";
                o.ops = &echo_ops;
                o.drain_timeout_ms = 5000;
                tern_server *s = tern_server_new(&o);
                cr_assert_not_null(s);
                struct tern_listener_opts lo;
                tern_listener_opts_init(&lo);
                lo.bind = "127.0.0.1";
                lo.ops = &upper_ops;
                lo.user = "late:";
                lo.drain_last = true;
                cr_assert_eq(tern_server_listen(s, &lo), 1);
                uint16_t data = tern_server_port(s), late = tern_server_listener_port(s, 1);
                cr_assert_eq(tern_server_start(s), 0);
                cr_assert_not(tern_server_draining(s));

                /* A client that reads none of its 8 MiB echo holds the drain. */
                int held = tu_connect(data, false);
                cr_assert(held >= 0);
                static char junk[1 << 20];
                for (int i = 0; i < 8; i++)
                        cr_assert_eq(tu_write_all(held, junk, sizeof(junk)), 0);
                cr_assert(tu_wait_until(read_all_in, s, 5000));
                int kept = tu_connect(late, false);
                cr_assert(kept >= 0);
                round_trip(kept, "a", "late:A");

                int64_t t0 = tu_now_ms();
                tern_server_stop(s);
                cr_assert(tern_server_draining(s));
                cr_assert(tu_wait_until(data_port_refused, &data, 2000),
                          "the data listener still accepts after the stop");
                round_trip(kept, "b", "late:B"); /* from before the stop */
                int fresh = tu_connect(late, false);
                cr_assert(fresh >= 0, "the late listener refused during the drain: %d", fresh);
                round_trip(fresh, "c", "late:C");

                /* The held client goes: the late connections drain at once,
                 * long before the 5 s deadline. */
                tu_set_rst_on_close(held);
                close(held);
                cr_assert_eq(tu_wait_eof(kept, 3000), 0);
                cr_assert_eq(tu_wait_eof(fresh, 3000), 0);
                cr_assert_lt(tu_now_ms() - t0, 4000, "the late ones waited for the deadline");
                cr_assert_eq(tern_server_wait(s), 0);
                cr_assert_lt(tu_now_ms() - t0, 4000);
                int after = tu_connect(late, false);
                cr_assert_eq(after, -ECONNREFUSED, "the late listener outlived the server: %d",
                             after);
                close(kept);
                close(fresh);
                tern_server_free(s);
                su_assert_nothing_live();
        }
}
