/**
 * @file
 * Fixed-length codec: every frame is exactly frame_len bytes.
 *
 * Threads: a codec state belongs to its connection's worker thread; configs
 * are plain values that any thread may build.
 */
#ifndef TERN_FIXED_H
#define TERN_FIXED_H

#include "export.h"

#include <stddef.h>

#include "codec.h"

#define TERN_FIXED_MAX_LIMIT (1024u * 1024 * 1024) /**< largest frame_len */

/** Configuration of tern_fixed_codec. */
struct tern_fixed_config {
        size_t frame_len; /**< 1..TERN_FIXED_MAX_LIMIT */
};

/**
 * tern_fixed_config_init - set @p cfg to frames of @p frame_len bytes (no other
 * default makes sense). Does not validate; see tern_fixed_config_check().
 * Any thread.
 */
TERN_EXPORT void tern_fixed_config_init(struct tern_fixed_config *cfg, size_t frame_len);

/**
 * tern_fixed_config_check - whether tern_fixed_codec.state_new() will accept
 * @p cfg (borrowed). Any thread.
 * Returns 0, or -EINVAL when frame_len is 0 or above TERN_FIXED_MAX_LIMIT.
 */
TERN_EXPORT int tern_fixed_config_check(const struct tern_fixed_config *cfg);

/**
 * The codec. state_new() takes a const struct tern_fixed_config * (borrowed,
 * copied; NULL is refused) and returns NULL with errno EINVAL or ENOMEM.
 * decode() never fails: it delivers every frame_len bytes as a frame and
 * otherwise needs more. encode() appends @p payload, which must be exactly
 * frame_len bytes; when @p payload is already exactly the readable bytes of
 * @p out nothing needs to be done, and it may otherwise point anywhere outside
 * @p out's writable space. Returns 0, -EINVAL for another length, or
 * -ENOMEM or -EOVERFLOW from growing @p out (nothing appended).
 */
TERN_EXPORT extern const struct tern_codec tern_fixed_codec;

#endif
