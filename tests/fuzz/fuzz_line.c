/*
 * libFuzzer harness for the line / delimiter codec.
 *
 * Config bytes: mode (bit 0 discard, bit 1 crlf_out, bit 2 delimiter mode,
 * bits 3-5 delimiter length - 1, bit 6 large max_len), max_len, then the
 * delimiter bytes in delimiter mode; the rest is fuzz_codec()'s layout.
 */
#include "fuzz_common.h"
#include "line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fuzz_input in = {data, size};
        struct tern_line_config c;

        tern_line_config_init(&c);
        uint8_t mode = fuzz_byte(&in);
        uint8_t max = fuzz_byte(&in);
        /* Small limits reach the overlong paths within the input sizes a
         * fuzzer tries; the large ones keep the window arithmetic honest. */
        c.max_len = mode & 0x40 ? 1 + (size_t)max * 4096 : 1 + max % 64;
        c.overlong = mode & 1 ? TERN_LINE_OVERLONG_DISCARD : TERN_LINE_OVERLONG_CLOSE;
        c.crlf_out = mode & 2;
        if (mode & 4) {
                uint8_t d[TERN_LINE_DELIM_MAX];
                size_t dl = 1 + ((mode >> 3) & 7);
                for (size_t i = 0; i < dl; i++)
                        d[i] = fuzz_byte(&in);
                FUZZ_CHECK(tern_line_config_set_delim(&c, d, dl) == 0, "delimiter of %zu", dl);
        }

        struct fuzz_limits lim = {
            .max_data = c.max_len,
            .held_below = c.max_len + (c.lines ? 2 : c.delim_len),
        };
        /*
         * A decoded frame never holds the delimiter, so encoding it again
         * gives the same frame back, except in line mode with "\n" out: a
         * frame ending in '\r' would lose it. That asymmetry is documented.
         */
        if (!c.lines || c.crlf_out) {
                struct fuzz_roundtrip rt = {.codec = &tern_line_codec, .out = TERN_BUF_INIT};
                fuzz_codec(&tern_line_codec, &c, &in, &lim, fuzz_roundtrip_frame, &rt);
                fuzz_roundtrip_check(&rt, &c, &lim);
        } else {
                fuzz_codec(&tern_line_codec, &c, &in, &lim, NULL, NULL);
        }
        return 0;
}
