#!/usr/bin/env bash
# Installs a built tern tree into a fresh prefix and uses it from outside, the
# way a user would: headers, pkg-config (shared and static), find_package
# (tern::tern and tern::tern_static). Every step must pass; the first failure
# stops the script with a message naming the step.
#   run.sh BUILD_DIR WORK_DIR VERSION SOVERSION [CC]
set -euo pipefail

build=$1 work=$2 version=$3 soversion=$4 cc=${5:-cc}
here=$(cd "$(dirname "$0")" && pwd)
prefix=$work/prefix
step() { echo "== $*"; }
fail() { echo "install test FAILED: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"

step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || {
        cat "$work/install.log"; fail "cmake --install"; }
libdir=$(dirname "$(find "$prefix" -name tern.pc -path '*/pkgconfig/*' | head -n1)")/..
libdir=$(cd "$libdir" && pwd)
inc=$prefix/include/tern

step "libraries and SONAME"
for f in libtern.a libtern.so "libtern.so.$soversion" "libtern.so.$version"; do
        [ -e "$libdir/$f" ] || fail "$libdir/$f not installed"
done
soname=$(readelf -d "$libdir/libtern.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libtern.so.$soversion" ] || fail "SONAME is '$soname', want libtern.so.$soversion"

step "programs in bin/"
for p in tern-chat tern-echo tern-kv tern-proxy; do
        [ -x "$prefix/bin/$p" ] || fail "$prefix/bin/$p not installed"
        "$prefix/bin/$p" --help >/dev/null 2>&1 || fail "$prefix/bin/$p --help failed"
done

step "public headers only, each self-contained, all reachable from tern.h"
[ -f "$inc/tern.h" ] || fail "no $inc/tern.h"
if ls "$inc" | grep -q '_internal\.h$'; then fail "private headers installed: $(ls "$inc" | grep _internal)"; fi
# The compiler's default dialect, and strict C11 with plain POSIX: no header
# may need _GNU_SOURCE, which the library's own build defines.
for h in "$inc"/*.h; do
        name=$(basename "$h")
        printf '#include <tern/%s>\n' "$name" >"$work/one.c"
        for std in "" "-std=c11 -D_POSIX_C_SOURCE=200809L"; do
                # shellcheck disable=SC2086
                "$cc" $std -Wall -Wextra -Werror -I"$prefix/include" -c "$work/one.c" -o /dev/null ||
                        fail "<tern/$name> does not compile on its own (${std:-default})"
        done
        [ "$name" = tern.h ] || grep -q "^#include \"$name\"" "$inc/tern.h" ||
                fail "tern.h (the umbrella) does not include $name"
done

export PKG_CONFIG_PATH=$libdir/pkgconfig
step "pkg-config: tern $(pkg-config --modversion tern)"
[ "$(pkg-config --modversion tern)" = "$version" ] || fail "tern.pc says $(pkg-config --modversion tern)"

step "pkg-config, shared: cc consumer.c \$(pkg-config --cflags --libs tern)"
# shellcheck disable=SC2046
"$cc" "$here/consumer.c" -o "$work/pc-shared" $(pkg-config --cflags --libs tern) ||
        fail "build with pkg-config (shared)"
readelf -d "$work/pc-shared" | grep -q "NEEDED.*\[libtern.so.$soversion\]" ||
        fail "pc-shared does not use libtern.so.$soversion"
LD_LIBRARY_PATH=$libdir "$work/pc-shared" "$version" || fail "run pkg-config shared build"

step "examples, as examples/README.md builds them: -Wall -Wextra, rpath to a non-default prefix"
# redis_async needs hiredis; the others only tern.
for ex in line_server ticker_server tlv_server http_hello; do
        # shellcheck disable=SC2046
        "$cc" -Wall -Wextra -Werror "$here/../../examples/$ex.c" -o "$work/ex-$ex" \
                $(pkg-config --cflags --libs tern) -Wl,-rpath,"$(pkg-config --variable=libdir tern)" ||
                fail "examples/$ex.c does not build warning-free against the installed tern"
        # No LD_LIBRARY_PATH: the rpath alone must find the installed library.
        # Captured first: grep -q quits at the first match, and under pipefail
        # ldd's SIGPIPE would fail the pipeline (2 runs in 50).
        deps=$(env -u LD_LIBRARY_PATH ldd "$work/ex-$ex")
        grep -q "libtern.so.$soversion => $libdir/" <<<"$deps" ||
                fail "examples/$ex.c: the loader does not find $libdir/libtern.so.$soversion"
done

step "pkg-config, static: the archive plus \$(pkg-config --static --libs tern)"
# -ltern would pick the .so: take the archive explicitly, and from
# --static --libs only what it needs (liburcu, ck, -pthread).
priv=$(pkg-config --static --libs tern | sed 's/\(^\| \)-ltern\( \|$\)/ /')
# shellcheck disable=SC2046,SC2086
"$cc" "$here/consumer.c" -o "$work/pc-static" $(pkg-config --cflags tern) \
        -Wl,-Bstatic -ltern -Wl,-Bdynamic $priv || fail "build with pkg-config (static)"
if readelf -d "$work/pc-static" | grep -q 'NEEDED.*libtern'; then fail "pc-static links libtern.so"; fi
"$work/pc-static" "$version" || fail "run pkg-config static build"

step "find_package(tern $version EXACT CONFIG COMPONENTS shared static)"
cmake -S "$here" -B "$work/cmake" -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" \
        -DTERN_EXPECTED_VERSION="$version" >"$work/cmake.log" 2>&1 || {
        cat "$work/cmake.log"; fail "configure the find_package project"; }
cmake --build "$work/cmake" >>"$work/cmake.log" 2>&1 || {
        cat "$work/cmake.log"; fail "build the find_package project"; }
readelf -d "$work/cmake/consumer-shared" | grep -q "NEEDED.*\[libtern.so.$soversion\]" ||
        fail "consumer-shared (tern::tern) does not use libtern.so.$soversion"
if readelf -d "$work/cmake/consumer-static" | grep -q 'NEEDED.*libtern'; then
        fail "consumer-static (tern::tern_static) links libtern.so"
fi
# CMake puts the prefix's lib directory in the build RPATH: no LD_LIBRARY_PATH.
"$work/cmake/consumer-shared" "$version" || fail "run tern::tern build"
"$work/cmake/consumer-static" "$version" || fail "run tern::tern_static build"

step "a version this package does not satisfy is refused"
if cmake -S "$here" -B "$work/cmake-wrong" -DCMAKE_PREFIX_PATH="$prefix" \
        -DTERN_EXPECTED_VERSION=99.0.0 >"$work/cmake-wrong.log" 2>&1; then
        fail "find_package(tern 99.0.0 EXACT) succeeded"
fi

echo "install test passed"
