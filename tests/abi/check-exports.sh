#!/usr/bin/env bash
# libtern.so exports exactly the public API: every defined dynamic symbol
# is a tern_* name (never an internal tern__*), and every function the
# public headers declare with TERN_EXPORT is there. A symbol that leaks, or
# a public function that lost its mark, fails this test.
# Usage: check-exports.sh LIBTERN_SO SOURCE_DIR
set -euo pipefail
lib=$1
src=$2
command -v nm >/dev/null || { echo "nm not found (binutils)"; exit 1; }

exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort -u)
[ -n "$exported" ] || { echo "FAIL: $lib exports nothing"; exit 1; }
bad=$(grep -v '^tern_' <<<"$exported" || true)
internal=$(grep '^tern__' <<<"$exported" || true)

headers=$(ls "$src"/core/*.h "$src"/net/*.h "$src"/proto/*.h | grep -v '_internal\.h$')
declared=$(grep -h '^TERN_EXPORT' $headers | grep -o 'tern_[a-z0-9_]*[[:space:]]*[(;]' |
        sed 's/[[:space:]]*[(;]$//' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
# A prototype that is public but not marked: a tern_ function in a public
# header without TERN_EXPORT (static inline ones excepted).
unmarked=$(grep -Hn -E '^(const |unsigned |struct |enum )?[a-z_0-9]+ \**tern_[a-z_0-9]+\(' $headers |
        grep -v -E 'TERN_EXPORT|static|typedef' || true)

rc=0
if [ -n "$bad" ]; then echo "FAIL: exported, not tern_*:"; echo "$bad"; rc=1; fi
if [ -n "$internal" ]; then echo "FAIL: internal tern__* exported:"; echo "$internal"; rc=1; fi
if [ -n "$missing" ]; then echo "FAIL: declared TERN_EXPORT, not exported:"; echo "$missing"; rc=1; fi
if [ -n "$unmarked" ]; then echo "FAIL: public prototypes without TERN_EXPORT:"; echo "$unmarked"; rc=1; fi
n=$(wc -l <<<"$exported")
[ $rc -eq 0 ] && echo "ok: $n symbols exported, all tern_*, every TERN_EXPORT present"
exit $rc
