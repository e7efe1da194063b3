/**
 * @file
 * tern error conventions.
 *
 * Actions return 0 on success or a negative errno value (-EAGAIN, -ENOMEM,
 * ...). Constructors return NULL and set errno. Predicates return bool.
 * Errors that have no errno equivalent use the TERN_E* codes below, which
 * are negative and lie outside the errno range.
 */
#ifndef TERN_ERROR_H
#define TERN_ERROR_H

#include "export.h"

#define TERN_EBASE                                                                                 \
        (-10000) /**< every TERN_E* code lies below this (-10001 was TERN_ESTALE, never returned,  \
                    removed in 0.2) */
#define TERN_EOUTLIMIT (TERN_EBASE - 2) /**< output buffer passed its hard cap */
#define TERN_EFRAME    (TERN_EBASE - 3) /**< codec rejected the byte stream */
#define TERN_ETOOBIG   (TERN_EBASE - 4) /**< a frame passed the codec's limit */
#define TERN_EINLIMIT  (TERN_EBASE - 5) /**< unconsumed input passed max_inbuf */
#define TERN_ETLS      (TERN_EBASE - 6) /**< TLS handshake or record failed (the log says why) */

/**
 * tern_strerror - describe a tern return code.
 * @p err: 0, a negative errno, or a TERN_E* code.
 * Returns a static string; never NULL. Thread-safe (any thread, any context
 * except signal handlers).
 */
TERN_EXPORT const char *tern_strerror(int err);

#endif
