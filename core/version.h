/**
 * @file version.h
 * @brief The version of tern, at compile time and at run time.
 *
 * tern follows Semantic Versioning. While the major version is 0, a minor
 * release may change the API or the ABI; from 1.0 on only a major release
 * may. The shared library's SONAME follows the same rule (libtern.so.0.1
 * for every 0.1.x, libtern.so.1 for every 1.y.z).
 *
 * The macros say which headers a program was compiled against;
 * tern_version() and tern_version_number() say which library it runs with.
 * They differ when a program built against one release runs with the shared
 * library of another.
 *
 * The numbers here are the single source of truth for C code; CMake refuses
 * to configure when they disagree with project(VERSION) in CMakeLists.txt.
 */
#ifndef TERN_VERSION_H
#define TERN_VERSION_H

#include "export.h"

#define TERN_VERSION_MAJOR  0       /**< Incompatible API changes (from 1.0). */
#define TERN_VERSION_MINOR  2       /**< Added features; while major is 0, also breaks. */
#define TERN_VERSION_PATCH  0       /**< Fixes only. */
#define TERN_VERSION_STRING "0.2.0" /**< "MAJOR.MINOR.PATCH". */

/**
 * One integer for a version, so versions compare with < and >, for example
 * `#if TERN_VERSION_NUMBER >= TERN_VERSION_ENCODE(0, 2, 0)`. Each part must
 * be below 256.
 */
#define TERN_VERSION_ENCODE(major, minor, patch)                                                   \
        (((unsigned)(major) << 16) | ((unsigned)(minor) << 8) | (unsigned)(patch))

/** The headers' version as one integer (see TERN_VERSION_ENCODE()). */
#define TERN_VERSION_NUMBER                                                                        \
        TERN_VERSION_ENCODE(TERN_VERSION_MAJOR, TERN_VERSION_MINOR, TERN_VERSION_PATCH)

/**
 * The library's version as "MAJOR.MINOR.PATCH". [any]
 * Returns a static string; never NULL.
 */
TERN_EXPORT const char *tern_version(void);

/**
 * The library's version as TERN_VERSION_ENCODE() makes it, for comparing
 * with TERN_VERSION_NUMBER at run time. [any]
 */
TERN_EXPORT unsigned tern_version_number(void);

#endif
