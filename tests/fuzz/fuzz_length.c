/*
 * libFuzzer harness for the length-field codec.
 *
 * Config bytes: shape (bits 0-2 field width index, bit 3 little endian,
 * bit 4 length includes header, bits 5-6 field offset), adjustment (int8,
 * with four values standing for the 64-bit extremes), strip, and two bytes
 * of max_frame_length above its floor; the rest is fuzz_codec()'s layout.
 */
#include "fuzz_common.h"
#include "length.h"

static int64_t adjustment(uint8_t b)
{
        switch (b) {
        case 0x7f:
                return INT64_MAX;
        case 0x80:
                return INT64_MIN;
        case 0x7e:
                return -4294967296LL;
        case 0x81:
                return 4294967296LL;
        default:
                return (int8_t)b;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const unsigned widths[] = {1, 2, 3, 4, 8};
        struct fuzz_input in = {data, size};
        struct tern_length_config c;

        tern_length_config_init(&c);
        uint8_t shape = fuzz_byte(&in);
        c.length_field_length = widths[(shape & 7) % 5];
        c.little_endian = shape & 8;
        c.length_includes_header = shape & 16;
        c.length_field_offset = (shape >> 5) & 3;
        size_t hdr = c.length_field_offset + c.length_field_length;
        c.length_adjustment = adjustment(fuzz_byte(&in));
        c.initial_bytes_to_strip = fuzz_byte(&in) % (hdr + 4);
        size_t floor = hdr > c.initial_bytes_to_strip ? hdr : c.initial_bytes_to_strip;
        uint16_t extra = fuzz_byte(&in);
        extra |= (uint16_t)(fuzz_byte(&in) << 8);
        c.max_frame_length = floor + extra % 4096;
        FUZZ_CHECK(tern_length_config_check(&c) == 0, "config refused");

        struct fuzz_limits lim = {
            .max_data = c.max_frame_length,
            .held_below = c.max_frame_length,
        };
        /* Encoding inverts decoding when the payload is all after the field. */
        if (c.length_field_offset == 0 && c.initial_bytes_to_strip == c.length_field_length) {
                struct fuzz_roundtrip rt = {.codec = &tern_length_codec, .out = TERN_BUF_INIT};
                fuzz_codec(&tern_length_codec, &c, &in, &lim, fuzz_roundtrip_frame, &rt);
                fuzz_roundtrip_check(&rt, &c, &lim);
        } else {
                fuzz_codec(&tern_length_codec, &c, &in, &lim, NULL, NULL);
        }
        return 0;
}
