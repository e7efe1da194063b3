/**
 * @file
 * tern: a multi-reactor threaded TCP framework for Linux.
 * The umbrella header; see docs/architecture.md for the model.
 */
/**
 * @mainpage tern API reference
 *
 * Everything public comes with `#include <tern/tern.h>`. Start with
 * server.h (options, start, stop) and conn.h (callbacks, sending, handles
 * for other threads); loop.h has timers and cross-thread tasks; codec.h
 * says how framing plugs in, with line.h, length.h, fixed.h and resp.h as
 * the built-in codecs; connector.h makes outgoing connections; watch.h watches any fd.
 *
 * Every function says which threads may call it: [any] any thread, [loop]
 * only the owning loop's thread, [signal] also from a signal handler. Actions
 * return 0 or a negative errno (or a TERN_E* code, see error.h); constructors
 * return NULL with errno set.
 *
 * docs/guide.md in the source tree goes from an empty directory to a
 * running server; examples/ has complete small servers.
 */
#ifndef TERN_H
#define TERN_H

#include "addr.h"
#include "buf.h"
#include "clock.h"
#include "codec.h"
#include "conn.h"
#include "connector.h"
#include "cpu.h"
#include "error.h"
#include "export.h"
#include "fixed.h"
#include "http.h"
#include "length.h"
#include "line.h"
#include "live.h"
#include "log.h"
#include "loop.h"
#include "resp.h"
#include "server.h"
#include "timer.h"
#include "tls.h"
#include "version.h"
#include "watch.h"
#include "websocket.h"

#endif
