/**
 * @file
 * TERN_EXPORT: the mark on every public function.
 *
 * The library is built with -fvisibility=hidden, so libtern.so exports
 * exactly the functions declared with this mark (all named tern_*), and the
 * internal tern__* functions stay private to it (as libuv's UV_EXTERN).
 */
#ifndef TERN_EXPORT_H
#define TERN_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define TERN_EXPORT __attribute__((visibility("default"))) /**< a public function */
#else
#define TERN_EXPORT /**< a public function */
#endif

#endif
