/* Codec hooks end to end: a length-prefixed echo app over loopback and a
 * line app that rejects hostile input, each frame checked. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "length.h"
#include "line.h"
#include "srvutil.h"
#include "testutil.h"

/* Echo each frame back through the codec's encoder. */
static void echo_frame(tern_conn *c, const struct tern_frame *f)
{
        if (f->kind == TERN_FRAME_DATA)
                cr_assert_eq(tern_conn_send_frame(c, f->data, f->len), 0);
}

static const struct tern_conn_ops frame_ops = {.on_frame = echo_frame};

static struct tern_length_config len_cfg;

static tern_server *start_length_echo(int workers)
{
        tern_length_config_init(&len_cfg); /* 4-byte big-endian length, stripped */
        len_cfg.length_field_length = 4;
        len_cfg.initial_bytes_to_strip = 4;
        len_cfg.max_frame_length = 70000;
        cr_assert_eq(tern_length_config_check(&len_cfg), 0);
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = workers;
        o.ops = &frame_ops;
        o.codec = &tern_length_codec;
        o.codec_config = &len_cfg;
        return su_start(&o);
}

struct framed_arg {
        uint16_t port;
        uint32_t seed;
        int failures;
        int frames;
};

/* Writes many frames of random sizes in one burst (so reads split them at
 * arbitrary points), then checks every echoed frame in order. */
static void *framed_client(void *p)
{
        struct framed_arg *a = p;
        int fd = tu_connect(a->port, false);
        if (fd < 0) {
                a->failures++;
                return NULL;
        }
        enum { FRAMES = 200 };
        uint32_t lens[FRAMES];
        size_t total = 0;
        unsigned seed = a->seed;
        for (int i = 0; i < FRAMES; i++) {
                lens[i] =
                    (uint32_t)(rand_r(&seed) % 3 == 0 ? rand_r(&seed) % 65536 : rand_r(&seed) % 64);
                total += 4 + lens[i];
        }
        uint8_t *wire = malloc(total), *p8 = wire;
        for (int i = 0; i < FRAMES; i++) {
                uint32_t be = htonl(lens[i]);
                memcpy(p8, &be, 4);
                tu_pattern(p8 + 4, lens[i], a->seed, (size_t)i);
                p8 += 4 + lens[i];
        }
        /* Write from a child-like helper thread so big bursts can't deadlock. */
        pid_t pid = fork();
        if (pid == 0)
                _exit(tu_write_all(fd, wire, total) ? 1 : 0);
        uint8_t *got = malloc(total);
        if (tu_read_exact(fd, got, total, 20000) || memcmp(got, wire, total))
                a->failures++;
        else
                a->frames += FRAMES;
        int st;
        waitpid(pid, &st, 0);
        free(wire);
        free(got);
        close(fd);
        return NULL;
}

Test(framed, length_prefixed_echo_many_clients_every_frame)
{
        tern_server *s = start_length_echo(2);
        enum { CLIENTS = 16 };
        pthread_t th[CLIENTS];
        struct framed_arg args[CLIENTS];
        for (int i = 0; i < CLIENTS; i++) {
                args[i] = (struct framed_arg){tern_server_port(s), 77u + (uint32_t)i, 0, 0};
                pthread_create(&th[i], NULL, framed_client, &args[i]);
        }
        for (int i = 0; i < CLIENTS; i++) {
                pthread_join(th[i], NULL);
                cr_expect_eq(args[i].failures, 0, "client %d saw a wrong frame", i);
                cr_expect_eq(args[i].frames, 200);
        }
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.codec_errors, 0);
        su_stop(s);
}

Test(framed, oversized_length_closes_only_that_connection)
{
        tern_server *s = start_length_echo(1);
        int good = tu_connect(tern_server_port(s), false);
        int bad = tu_connect(tern_server_port(s), false);
        /* 0xFFFFFFFF: rejected as soon as the header arrives, no body needed. */
        cr_assert_eq(tu_write_all(bad, "\xff\xff\xff\xff", 4), 0);
        cr_assert_eq(tu_wait_eof(bad, 5000), 0, "hostile frame did not close its connection");
        uint8_t frame[9] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}, back[9];
        cr_assert_eq(tu_write_all(good, frame, sizeof(frame)), 0);
        cr_assert_eq(tu_read_exact(good, back, sizeof(back), 5000), 0);
        cr_assert_eq(memcmp(back, frame, sizeof(frame)), 0);
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        cr_assert_eq(st.codec_errors, 1);
        close(good);
        close(bad);
        su_stop(s);
}

/* ---- line codec with an error reply before the close ---- */

static void line_frame(tern_conn *c, const struct tern_frame *f)
{
        if (f->kind == TERN_FRAME_OVERSIZED) {
                tern_conn_send(c, "! line too long\r\n", 17);
                return;
        }
        tern_conn_send(c, "> ", 2);
        tern_conn_send_frame(c, f->data, f->len);
}

static void line_error(tern_conn *c, int err)
{
        tern_conn_send(c, "! bye\r\n", 7);
}

static const struct tern_conn_ops line_ops = {.on_frame = line_frame, .on_codec_error = line_error};
static struct tern_line_config line_cfg;

static tern_server *start_line(enum tern_line_overlong policy)
{
        tern_line_config_init(&line_cfg);
        line_cfg.lines = true;
        line_cfg.crlf_out = true;
        line_cfg.max_len = 16;
        line_cfg.overlong = policy;
        cr_assert_eq(tern_line_config_check(&line_cfg), 0);
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 1;
        o.ops = &line_ops;
        o.codec = &tern_line_codec;
        o.codec_config = &line_cfg;
        return su_start(&o);
}

static void expect(int fd, const char *want)
{
        size_t n = strlen(want);
        char got[1024] = {0};
        cr_assert_lt(n, sizeof(got));
        cr_assert_eq(tu_read_exact(fd, got, n, 5000), 0, "waiting for '%s'", want);
        cr_assert_eq(memcmp(got, want, n), 0, "got '%.*s' want '%s'", (int)n, got, want);
}

Test(framed, line_frames_split_and_batched)
{
        tern_server *s = start_line(TERN_LINE_OVERLONG_DISCARD);
        int fd = tu_connect(tern_server_port(s), false);
        cr_assert_eq(tu_write_all(fd, "one\r\ntwo\nthr", 12), 0);
        expect(fd, "> one\r\n> two\r\n");
        cr_assert_eq(tu_write_all(fd, "ee\n", 3), 0);
        expect(fd, "> three\r\n");
        /* Over-long: reported once, the connection stays usable. */
        cr_assert_eq(tu_write_all(fd, "0123456789abcdefXYZ\nok\n", 23), 0);
        expect(fd, "! line too long\r\n> ok\r\n");
        close(fd);
        su_stop(s);
}

/* An encoder that writes half a frame, then fails, for payloads starting
 * with '!': the connection must drop the half frame it queued. */
static int half_then_fail_encode(void *state, struct tern_buf *out, const void *payload, size_t len)
{
        const char *p = payload;
        int r = tern_buf_append(out, "<", 1);
        if (r == 0)
                r = tern_buf_append(out, p, len / 2);
        if (r == 0 && len && p[0] == '!')
                return -EINVAL;
        if (r == 0)
                r = tern_buf_append(out, p + len / 2, len - len / 2);
        return r ? r : tern_buf_append(out, ">", 1);
}

static struct tern_codec half_codec;

/* Queues three frames behind a cork; the middle one fails to encode. */
static void send_three(tern_conn *c, const struct tern_frame *f)
{
        if (f->kind != TERN_FRAME_DATA)
                return;
        tern_conn_cork(c);
        cr_assert_eq(tern_conn_send_frame(c, "first", 5), 0);
        cr_assert_eq(tern_conn_send_frame(c, "!broken", 7), -EINVAL);
        cr_assert_eq(tern_conn_send_frame(c, "third", 5), 0);
        tern_conn_uncork(c);
}

static const struct tern_conn_ops three_ops = {.on_frame = send_three};

Test(framed, failed_encode_leaves_no_partial_frame_in_queued_output)
{
        half_codec = tern_line_codec;
        half_codec.encode = half_then_fail_encode;
        tern_line_config_init(&line_cfg);
        line_cfg.lines = true;
        cr_assert_eq(tern_line_config_check(&line_cfg), 0);
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 1;
        o.ops = &three_ops;
        o.codec = &half_codec;
        o.codec_config = &line_cfg;
        tern_server *s = su_start(&o);
        int fd = tu_connect(tern_server_port(s), false);
        cr_assert_eq(tu_write_all(fd, "go\n", 3), 0);
        expect(fd, "<first><third>");
        cr_assert_eq(tu_write_all(fd, "go\n", 3), 0);
        expect(fd, "<first><third>");
        close(fd);
        su_stop(s);
}

Test(framed, codec_error_reply_is_flushed_before_close)
{
        tern_server *s = start_line(TERN_LINE_OVERLONG_CLOSE);
        int fd = tu_connect(tern_server_port(s), false);
        cr_assert_eq(tu_write_all(fd, "fine\n0123456789abcdefXYZ", 24), 0);
        expect(fd, "> fine\r\n! bye\r\n");
        cr_assert_eq(tu_wait_eof(fd, 5000), 0);
        close(fd);
        su_stop(s);
}

Test(framed, pipelined_frames_reply_in_one_write)
{
        tern_server *s = start_line(TERN_LINE_OVERLONG_DISCARD);
        int fd = tu_connect(tern_server_port(s), false);
        char req[200], want[500];
        size_t wl = 0;
        for (int i = 0; i < 100; i++) {
                req[2 * i] = (char)('a' + i % 26);
                req[2 * i + 1] = '\n';
                wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "> %c\r\n", 'a' + i % 26);
        }
        cr_assert_eq(tu_write_all(fd, req, sizeof(req)), 0);
        expect(fd, want);
        struct tern_stats st;
        tern_server_stats(s, &st, NULL);
        /* 200 sends (prefix + frame for each line); one write per read. The
         * 200 bytes arrive in one read, or at worst a few. */
        cr_assert_leq(st.writes, 3, "%lu writes for 100 pipelined frames",
                      (unsigned long)st.writes);
        close(fd);
        su_stop(s);
}

/* ---- pausing holds back buffered frames too ---- */

static int frames_seen;

static void pausing_frame(tern_conn *c, const struct tern_frame *f)
{
        frames_seen++;
        tern_conn_send(c, f->data, f->len);
        tern_conn_send(c, "\n", 1);
        if (f->len == 5 && memcmp(f->data, "pause", 5) == 0) {
                tern_conn_pause_read(c);
                tern_conn_set_data(c, c);
        }
}

static void resume_task(tern_conn *c, void *arg)
{
        cr_assert_not_null(c);
        cr_assert_eq(frames_seen, 2, "frames after 'pause' were delivered while paused");
        tern_conn_resume_read(c);
}

static const struct tern_conn_ops pausing_ops = {.on_open = NULL, .on_frame = pausing_frame};
static tern_handle paused_handle;

static void remember_handle(tern_conn *c)
{
        __atomic_store_n(&paused_handle, tern_conn_handle(c), __ATOMIC_RELEASE);
}

Test(framed, pause_holds_buffered_frames_until_resume)
{
        static struct tern_conn_ops ops;
        ops = pausing_ops;
        ops.on_open = remember_handle;
        tern_line_config_init(&line_cfg);
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 1;
        o.ops = &ops;
        o.codec = &tern_line_codec;
        o.codec_config = &line_cfg;
        tern_server *s = su_start(&o);
        int fd = tu_connect(tern_server_port(s), false);
        /* One write: all four lines are buffered when 'pause' is seen. */
        cr_assert_eq(tu_write_all(fd, "a\npause\nb\nc\n", 12), 0);
        expect(fd, "a\npause\n");
        usleep(100000); /* nothing more may come while paused */
        char b;
        cr_assert_eq(recv(fd, &b, 1, MSG_DONTWAIT), -1, "data arrived while paused");
        tern_handle h;
        while (!(h = __atomic_load_n(&paused_handle, __ATOMIC_ACQUIRE)))
                usleep(1000);
        cr_assert_eq(tern_handle_post(s, h, resume_task, NULL), 0);
        /* Resume delivers the buffered frames with no new bytes from us. */
        expect(fd, "b\nc\n");
        close(fd);
        su_stop(s);
}
