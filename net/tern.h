/*
 * tern: a multi-reactor threaded TCP framework for Linux.
 * The umbrella header; see docs/architecture.md for the model.
 */
#ifndef TERN_H
#define TERN_H

#include "buf.h"
#include "client.h"
#include "clock.h"
#include "codec.h"
#include "conn.h"
#include "cpu.h"
#include "error.h"
#include "fixed.h"
#include "length.h"
#include "line.h"
#include "live.h"
#include "log.h"
#include "loop.h"
#include "resp.h"
#include "server.h"
#include "timer.h"
#include "version.h"

#endif
