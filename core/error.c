#include "error.h"

#include <string.h>

const char *tern_strerror(int err)
{
        switch (err) {
        case 0:
                return "success";
        case TERN_EOUTLIMIT:
                return "output buffer limit exceeded";
        case TERN_EFRAME:
                return "malformed frame";
        case TERN_ETOOBIG:
                return "frame exceeds size limit";
        case TERN_EINLIMIT:
                return "input buffer limit exceeded";
        case TERN_ETLS:
                return "TLS handshake or record failed";
        default:
                break;
        }
        if (err < 0 && err > TERN_EBASE)
                return strerrordesc_np(-err) ? strerrordesc_np(-err) : "unknown error";
        return "unknown error";
}
