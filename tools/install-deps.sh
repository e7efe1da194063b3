#!/usr/bin/env bash
# Installs what building and testing tern needs, only when something is missing.
# Debian/Ubuntu via apt-get; other distributions: see README.md for package names.
set -euo pipefail

need=()
have_pc() { pkg-config --exists "$1" 2>/dev/null; }
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null || need+=(gcc)
# gcc only recommends the C library headers; a minimal system lacks them.
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)
command -v make >/dev/null || need+=(make)
command -v pkg-config >/dev/null || need+=(pkg-config)
have_pc liburcu-qsbr || need+=(liburcu-dev)
have_pc ck || need+=(libck-dev)
have_pc libssl || need+=(libssl-dev)
# TERN_DEPS_NO_TESTS=1: the library and apps only (the container image), so
# neither the test suite nor tools/; tests/container/run.sh bakes every
# other package named here into its build base.
[ -n "${TERN_DEPS_NO_TESTS:-}" ] || have_pc criterion || need+=(libcriterion-dev)
# io_uring for tools/iomodels' Proactor server (the build skips it when missing)
[ -n "${TERN_DEPS_NO_TESTS:-}" ] || have_pc liburing || need+=(liburing-dev)
# The TLS tests make certificates and talk with the openssl command line tool.
[ -n "${TERN_DEPS_NO_TESTS:-}" ] || command -v openssl >/dev/null || need+=(openssl)
# tern-chat --cluster (hiredis) and its test (integration.chat_cluster,
# which starts a redis-server); without them it is built without --cluster
# and the test skips. Not in the container image: the program there stays
# free of hiredis.
[ -n "${TERN_DEPS_NO_TESTS:-}" ] || have_pc hiredis || need+=(libhiredis-dev)
[ -n "${TERN_DEPS_NO_TESTS:-}" ] || command -v redis-server >/dev/null || need+=(redis-server)
# WebSocket integration test (tests/integration/ws): a client tern did not write.
[ -n "${TERN_DEPS_NO_TESTS:-}" ] || dpkg -s python3-websockets >/dev/null 2>&1 ||
  need+=(python3-websockets)
# Optional extras named by the caller, e.g. TERN_EXTRA_DEPS="libevent-dev libuv1-dev"
for p in ${TERN_EXTRA_DEPS:-}; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done

[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "install-deps: missing ${need[*]}; no apt-get here, see README.md for other distributions" >&2
  exit 1
fi
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${need[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
