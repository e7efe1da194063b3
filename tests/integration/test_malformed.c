/*
 * Malformed frames for every codec, end to end over a connection (issue 6).
 * The codec unit tests check decode() alone; here each hostile input goes
 * through a real server and must end in a protocol-error close (or, for a
 * frame cut short by the peer's FIN, a plain close with no frame), with no
 * buffer allocated beyond the codec's maximum frame, while a healthy
 * connection on the same worker keeps working.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixed.h"
#include "length.h"
#include "line.h"
#include "resp.h"
#include "srvutil.h"
#include "testutil.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int nframes, nclosed;
static enum tern_close_reason last_reason;
static bool resp_replies; /* RESP: answer +OK instead of echoing */

static void on_frame(tern_conn *c, const struct tern_frame *f)
{
        pthread_mutex_lock(&mu);
        nframes++;
        pthread_mutex_unlock(&mu);
        if (f->kind != TERN_FRAME_DATA)
                return;
        if (resp_replies)
                tern_conn_send(c, "+OK\r\n", 5);
        else
                cr_assert_eq(tern_conn_send_frame(c, f->data, f->len), 0);
}

static void on_close(tern_conn *c, enum tern_close_reason r, int err)
{
        pthread_mutex_lock(&mu);
        nclosed++;
        last_reason = r;
        pthread_mutex_unlock(&mu);
}

static const struct tern_conn_ops ops = {.on_frame = on_frame, .on_close = on_close};

static int locked(int *v)
{
        pthread_mutex_lock(&mu);
        int x = *v;
        pthread_mutex_unlock(&mu);
        return x;
}

static bool closed_reach(void *p)
{
        return locked(&nclosed) >= *(int *)p;
}

static tern_server *start(const struct tern_codec *codec, const void *cfg)
{
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.workers = 1;
        o.ops = &ops;
        o.codec = codec;
        o.codec_config = cfg;
        return su_start(&o);
}

enum expect {
        PROTOCOL, /* closed by the server as a protocol error */
        CUT,      /* incomplete, then the peer's FIN: closed, no frame */
        FRAME,    /* valid: answered, connection stays open */
};

struct mcase {
        const char *name;
        const char *bytes;
        size_t len;
        enum expect expect;
        const char *reply; /* FRAME: the answer */
        size_t reply_len;
        int frames; /* whole frames before the bad part */
};

#define CN(name, lit, ex, nf)                                                                      \
        {                                                                                          \
                name, lit, sizeof(lit) - 1, ex, NULL, 0, nf                                        \
        }
#define C(name, lit, ex) CN(name, lit, ex, 0)
#define F(name, lit, rep)                                                                          \
        {                                                                                          \
                name, lit, sizeof(lit) - 1, FRAME, rep, sizeof(rep) - 1, 1                         \
        }

/* Waits for the end of the stream, skipping answers to whole frames that
 * came before the bad part. Returns 0 on EOF or reset, else -ETIMEDOUT. */
static int eof_after_answers(int fd)
{
        int r;
        while ((r = tu_wait_eof(fd, 5000)) == -EPROTO)
                ;
        return r;
}

/*
 * Runs every case on its own connection against @s and checks its outcome,
 * the codec error count, and that @healthy still gets answers after each.
 * @ping / @pong: a valid request on @healthy and its answer.
 */
static void run_cases(tern_server *s, const struct mcase *cases, size_t n, const char *ping,
                      size_t ping_len, const char *pong, size_t pong_len)
{
        uint16_t port = tern_server_port(s);
        int healthy = tu_connect(port, false);
        cr_assert_geq(healthy, 0);
        int errors = 0;
        for (size_t i = 0; i < n; i++) {
                const struct mcase *k = &cases[i];
                int closed0 = locked(&nclosed), frames0 = locked(&nframes);
                int fd = tu_connect(port, false);
                cr_assert_geq(fd, 0);
                cr_assert_eq(tu_write_all(fd, k->bytes, k->len), 0, "%s", k->name);
                if (k->expect == CUT)
                        shutdown(fd, SHUT_WR);
                if (k->expect == FRAME) {
                        char got[64];
                        cr_assert_lt(k->reply_len, sizeof(got));
                        cr_assert_eq(tu_read_exact(fd, got, k->reply_len, 5000), 0, "%s: no answer",
                                     k->name);
                        cr_assert_eq(memcmp(got, k->reply, k->reply_len), 0, "%s: wrong answer",
                                     k->name);
                        close(fd);
                } else {
                        cr_assert_eq(eof_after_answers(fd), 0, "%s: connection left open", k->name);
                        close(fd);
                        int want = closed0 + 1;
                        cr_assert(tu_wait_until(closed_reach, &want, 5000));
                        pthread_mutex_lock(&mu);
                        enum tern_close_reason r = last_reason;
                        pthread_mutex_unlock(&mu);
                        cr_assert_eq(r,
                                     k->expect == PROTOCOL ? TERN_CLOSE_PROTOCOL : TERN_CLOSE_PEER,
                                     "%s: closed as %s", k->name, tern_close_reason_str(r));
                        cr_assert_eq(locked(&nframes), frames0 + k->frames, "%s: produced a frame",
                                     k->name);
                        errors += k->expect == PROTOCOL;
                }
                struct tern_stats st;
                tern_server_stats(s, &st, NULL);
                cr_assert_eq(st.codec_errors, (uint64_t)errors, "%s: %lu codec errors, want %d",
                             k->name, (unsigned long)st.codec_errors, errors);
                char got[64];
                cr_assert_eq(tu_write_all(healthy, ping, ping_len), 0);
                cr_assert_eq(tu_read_exact(healthy, got, pong_len, 5000), 0,
                             "healthy connection stalled after %s", k->name);
                cr_assert_eq(memcmp(got, pong, pong_len), 0);
        }
        close(healthy);
}

/* Buffers may double past what they hold: twice the largest frame, plus a
 * codec's reply, is the most any case may make the server allocate. */
static void assert_peak_below(size_t max_frame)
{
        struct tern_live_counts lc;
        tern_live_counts(&lc);
        cr_log_info("buffer peak %ld bytes (max frame %zu)", lc.buf_bytes_peak, max_frame);
        cr_assert_leq(lc.buf_bytes_peak, (long)(2 * max_frame + 4096),
                      "buffers peaked at %ld bytes with max frame %zu", lc.buf_bytes_peak,
                      max_frame);
}

Test(malformed, length_field_values_over_a_connection)
{
        /* 4-byte big-endian length of the body, header stripped, 64 KiB. */
        static struct tern_length_config cfg;
        tern_length_config_init(&cfg);
        cfg.max_frame_length = 64 * 1024;
        tern_server *s = start(&tern_length_codec, &cfg);
        static const struct mcase cases[] = {
            F("length 0 is an empty frame", "\0\0\0\0", "\0\0\0\0"),
            C("length 0xFFFFFFFF", "\xff\xff\xff\xff", PROTOCOL),
            C("length 0x80000000", "\x80\0\0\0", PROTOCOL),
            C("length just over the max", "\0\x01\0\0", PROTOCOL),
            C("header cut short", "\0\0", CUT),
            C("body cut short",
              "\0\0\0\x0a"
              "abcde",
              CUT),
            C("one byte", "\x7f", CUT),
        };
        run_cases(s, cases, sizeof(cases) / sizeof(cases[0]), "\0\0\0\x02hi", 6, "\0\0\0\x02hi", 6);
        su_stop(s);
        assert_peak_below(64 * 1024);
}

Test(malformed, length_including_header_rejects_short_values)
{
        static struct tern_length_config cfg;
        tern_length_config_init(&cfg);
        cfg.length_includes_header = true;
        cfg.max_frame_length = 4096;
        tern_server *s = start(&tern_length_codec, &cfg);
        static const struct mcase cases[] = {
            C("length 0: shorter than the header", "\0\0\0\0", PROTOCOL),
            C("length 3: shorter than the header", "\0\0\0\x03", PROTOCOL),
            F("length 4: the header alone", "\0\0\0\x04", "\0\0\0\x04"),
            C("length 0xFFFFFFFF", "\xff\xff\xff\xff", PROTOCOL),
            C("length 0x80000000", "\x80\0\0\0", PROTOCOL),
        };
        run_cases(s, cases, sizeof(cases) / sizeof(cases[0]), "\0\0\0\x06hi", 6, "\0\0\0\x06hi", 6);
        su_stop(s);
        assert_peak_below(4096);
}

Test(malformed, length_8_byte_field_and_negative_adjustment)
{
        static struct tern_length_config cfg;
        tern_length_config_init(&cfg);
        cfg.length_field_length = 8;
        cfg.initial_bytes_to_strip = 8;
        cfg.length_adjustment = -2; /* the field counts a 2-byte trailer we drop */
        cfg.max_frame_length = 4096;
        tern_server *s = start(&tern_length_codec, &cfg);
        static const struct mcase cases[] = {
            C("length 2^64-1", "\xff\xff\xff\xff\xff\xff\xff\xff", PROTOCOL),
            C("length 2^63", "\x80\0\0\0\0\0\0\0", PROTOCOL),
            C("length 0xFFFFFFFF", "\0\0\0\0\xff\xff\xff\xff", PROTOCOL),
            C("length 1: negative after adjustment", "\0\0\0\0\0\0\0\x01", PROTOCOL),
            C("length 0: negative after adjustment", "\0\0\0\0\0\0\0\0", PROTOCOL),
            C("header cut short", "\0\0\0\0\0", CUT),
        };
        run_cases(s, cases, sizeof(cases) / sizeof(cases[0]), "\0\0\0\0\0\0\0\x04hi", 10,
                  "\0\0\0\0\0\0\0\x04hi", 10);
        su_stop(s);
        assert_peak_below(4096);
}

Test(malformed, line_codec_over_a_connection)
{
        static struct tern_line_config cfg;
        tern_line_config_init(&cfg);
        cfg.max_len = 64;
        tern_server *s = start(&tern_line_codec, &cfg);
        static const struct mcase cases[] = {
            C("65-byte line", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
              PROTOCOL),
            C("67 bytes, no delimiter yet",
              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", PROTOCOL),
            F("an empty line", "\r\n", "\n"),
            F("NUL bytes are data", "a\0b\n", "a\0b\n"),
            C("line cut short", "no newline", CUT),
        };
        run_cases(s, cases, sizeof(cases) / sizeof(cases[0]), "hi\n", 3, "hi\n", 3);
        su_stop(s);
        assert_peak_below(64 + 2);
}

Test(malformed, fixed_codec_over_a_connection)
{
        static struct tern_fixed_config cfg;
        tern_fixed_config_init(&cfg, 8);
        tern_server *s = start(&tern_fixed_codec, &cfg);
        static const struct mcase cases[] = {
            C("frame cut short", "abc", CUT),
            CN("one frame and a cut one", "abcdefghXY", CUT, 1),
            F("exactly one frame", "01234567", "01234567"),
        };
        run_cases(s, cases, sizeof(cases) / sizeof(cases[0]), "pingping", 8, "pingping", 8);
        cr_assert_eq(locked(&nframes), 1 + 1 + 3,
                     "frames: the cut case's whole one, the "
                     "valid one, three pings");
        su_stop(s);
        assert_peak_below(8);
}

Test(malformed, resp_headers_over_a_connection)
{
        static struct tern_resp_config cfg;
        tern_resp_config_init(&cfg);
        cfg.max_bulk = 4096;
        cfg.max_args = 16;
        cfg.max_inline = 256;
        cfg.max_frame = 8192;
        resp_replies = true;
        tern_server *s = start(&tern_resp_codec, &cfg);
        static const struct mcase cases[] = {
            C("count 4294967295", "*4294967295\r\n", PROTOCOL),
            C("count 2147483648", "*2147483648\r\n", PROTOCOL),
            C("count -1", "*-1\r\n", PROTOCOL),
            C("bulk 4294967295", "*1\r\n$4294967295\r\n", PROTOCOL),
            C("bulk 2147483648", "*1\r\n$2147483648\r\n", PROTOCOL),
            C("bulk -2", "*1\r\n$-2\r\n", PROTOCOL),
            C("bulk just over the max", "*1\r\n$4097\r\n", PROTOCOL),
            C("no CRLF after the count", "*1x", PROTOCOL),
            C("bulk cut short", "*1\r\n$5\r\nab", CUT),
            C("header cut short", "*1\r", CUT),
            F("a command", "*1\r\n$4\r\nPING\r\n", "+OK\r\n"),
        };
        run_cases(s, cases, sizeof(cases) / sizeof(cases[0]), "PING\r\n", 6, "+OK\r\n", 5);
        su_stop(s);
        assert_peak_below(8192);
}
