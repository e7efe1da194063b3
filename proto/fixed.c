#include "fixed.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fault_internal.h"

void tern_fixed_config_init(struct tern_fixed_config *cfg, size_t frame_len)
{
        cfg->frame_len = frame_len;
}

int tern_fixed_config_check(const struct tern_fixed_config *cfg)
{
        if (cfg->frame_len == 0 || cfg->frame_len > TERN_FIXED_MAX_LIMIT)
                return -EINVAL;
        return 0;
}

/* frame_len >= 1 was checked by state_new, so every frame consumes bytes. */
static ssize_t fixed_decode(void *state, const uint8_t *in, size_t len, struct tern_frame *out)
{
        const struct tern_fixed_config *cfg = state;

        if (len < cfg->frame_len)
                return TERN_CODEC_NEED_MORE;
        out->kind = TERN_FRAME_DATA;
        out->data = in;
        out->len = cfg->frame_len;
        return (ssize_t)cfg->frame_len;
}

static int fixed_encode(void *state, struct tern_buf *out, const void *payload, size_t len)
{
        const struct tern_fixed_config *cfg = state;

        if (len != cfg->frame_len)
                return -EINVAL;

        /* The payload may already sit in @out, and reserving can move it. */
        uintptr_t p = (uintptr_t)payload;
        uintptr_t data = (uintptr_t)tern_buf_data(out);
        size_t have = tern_buf_len(out);
        bool inside = data && p >= data && p - data <= have && len <= have - (p - data);
        size_t rel = inside ? p - data : 0;

        /* Built in place: the frame is already there, unchanged. */
        if (inside && rel == 0 && len == have)
                return 0;
        int err = tern_buf_reserve(out, len);
        if (err)
                return err;
        memcpy(tern_buf_tail(out), inside ? tern_buf_data(out) + rel : payload, len);
        tern_buf_commit(out, len);
        return 0;
}

static void *fixed_state_new(const void *config)
{
        const struct tern_fixed_config *cfg = config;

        if (!cfg || tern_fixed_config_check(cfg)) {
                errno = EINVAL;
                return NULL;
        }
        struct tern_fixed_config *s = TERN__MALLOC(sizeof(*s));
        if (!s)
                return NULL;
        *s = *cfg;
        return s;
}

static void fixed_state_free(void *state)
{
        free(state);
}

const struct tern_codec tern_fixed_codec = {
    .name = "fixed",
    .decode = fixed_decode,
    .encode = fixed_encode,
    .state_new = fixed_state_new,
    .state_free = fixed_state_free,
};
