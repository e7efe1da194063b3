/*
 * libFuzzer harness for the RESP request codec.
 *
 * Config bytes: max_bulk (1..64 or, with bit 7 of the mode byte, up to
 * 2^20), max_args (1..32), max_inline (1..128), max_frame (16..527), each
 * small so the limit paths are reachable; the rest is fuzz_codec()'s layout.
 *
 * Beyond the shared invariants (same frames whole and in pieces, no
 * over-read, bounded buffering), every frame must split into 1..max_args
 * arguments of at most max_bulk bytes, and those arguments re-encoded as an
 * array must decode to the same arguments.
 */
#include "fuzz_common.h"
#include "resp.h"

struct resp_check {
        struct tern_resp_config cfg;
        struct tern_resp_arg *argv;
        struct tern_resp_arg *again;
};

static void resp_check_frame(void *state, const uint8_t *data, size_t len, void *arg)
{
        struct resp_check *rc = arg;
        struct tern_frame f = {.kind = TERN_FRAME_DATA, .data = data, .len = len};
        int argc = tern_resp_args(&f, rc->argv, rc->cfg.max_args);

        FUZZ_CHECK(argc >= 1 && (uint32_t)argc <= rc->cfg.max_args, "%d arguments (max %u)", argc,
                   rc->cfg.max_args);
        bool inl = data[0] != '*';
        for (int i = 0; i < argc; i++) {
                FUZZ_CHECK(inl || rc->argv[i].len <= rc->cfg.max_bulk, "argument of %zu > %zu",
                           rc->argv[i].len, rc->cfg.max_bulk);
                FUZZ_CHECK(rc->argv[i].data >= data &&
                               rc->argv[i].data + rc->argv[i].len <= data + len,
                           "argument %d outside its frame", i);
        }

        /* Re-encode and decode with the defaults, which hold any of these. */
        struct tern_buf b = TERN_BUF_INIT;
        FUZZ_CHECK(tern_resp_put_array(&b, (size_t)argc) == 0, "out of memory");
        for (int i = 0; i < argc; i++)
                FUZZ_CHECK(tern_resp_put_bulk(&b, rc->argv[i].data, rc->argv[i].len) == 0,
                           "out of memory");
        struct tern_resp_state s;
        FUZZ_CHECK(tern_resp_state_init(&s, NULL) == 0, "default config refused");
        struct tern_frame g = {.kind = TERN_FRAME_NONE};
        ssize_t r = tern_resp_decode(&s, tern_buf_data(&b), tern_buf_len(&b), &g);
        FUZZ_CHECK(r == (ssize_t)tern_buf_len(&b) && g.kind == TERN_FRAME_DATA,
                   "re-encoded command decodes to %zd", r);
        FUZZ_CHECK(tern_resp_args(&g, rc->again, rc->cfg.max_args) == argc, "argc changed");
        for (int i = 0; i < argc; i++)
                FUZZ_CHECK(rc->again[i].len == rc->argv[i].len &&
                               memcmp(rc->again[i].data, rc->argv[i].data, rc->argv[i].len) == 0,
                           "argument %d changed in the round trip", i);
        tern_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fuzz_input in = {data, size};
        struct resp_check rc;
        struct tern_resp_arg argv[32], again[32];

        tern_resp_config_init(&rc.cfg);
        uint8_t mode = fuzz_byte(&in);
        uint8_t bulk = fuzz_byte(&in);
        rc.cfg.max_bulk = mode & 0x80 ? 1 + (size_t)bulk * 4096 : 1 + bulk % 64;
        rc.cfg.max_args = 1 + fuzz_byte(&in) % 32;
        rc.cfg.max_inline = 1 + fuzz_byte(&in) % 128;
        rc.cfg.max_frame = 16 + fuzz_byte(&in) * 2u;
        rc.argv = argv;
        rc.again = again;
        FUZZ_CHECK(tern_resp_config_check(&rc.cfg) == 0, "the harness built a bad config");

        size_t most = rc.cfg.max_frame > rc.cfg.max_inline ? rc.cfg.max_frame : rc.cfg.max_inline;
        size_t window = rc.cfg.max_inline + 2;
        struct fuzz_limits lim = {
            .max_data = most,
            .held_below = rc.cfg.max_frame > window ? rc.cfg.max_frame : window,
        };
        fuzz_codec(&tern_resp_codec, &rc.cfg, &in, &lim, resp_check_frame, &rc);
        return 0;
}
