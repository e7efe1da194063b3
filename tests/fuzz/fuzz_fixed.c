/*
 * libFuzzer harness for the fixed-length codec.
 *
 * Config byte: frame_len - 1 (so 1..256); the rest is fuzz_codec()'s layout.
 */
#include "fixed.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fuzz_input in = {data, size};
        struct tern_fixed_config c;

        tern_fixed_config_init(&c, 1 + (size_t)fuzz_byte(&in));
        struct fuzz_limits lim = {.max_data = c.frame_len, .held_below = c.frame_len};
        struct fuzz_roundtrip rt = {.codec = &tern_fixed_codec, .out = TERN_BUF_INIT};
        fuzz_codec(&tern_fixed_codec, &c, &in, &lim, fuzz_roundtrip_frame, &rt);
        fuzz_roundtrip_check(&rt, &c, &lim);
        return 0;
}
