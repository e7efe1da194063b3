#!/usr/bin/env bash
# Static analysis of tern's own code; `make lint` runs it and CI runs that.
#
#   clang-tidy  checks and the reasons for each exclusion: .clang-tidy
#   cppcheck    warning, performance and portability classes;
#               tools/lint/cppcheck.cfg teaches it liburcu's macros,
#               .cppcheck-suppressions lists file-wide suppressions
#
# Both cover every C file that CMake compiles under core/ net/ proto/ apps/
# tools/ examples/ (tests/ are not linted). Any finding fails the run (exit 1);
# a false positive is silenced on its line with the reason:
#   /* NOLINT(check-name): why */            clang-tidy
#   /* cppcheck-suppress id ; why */ on the line before      cppcheck
#
# Usage: tools/lint.sh [FILE.c...]     (default: all of the above)
# Environment: LINT_BUILD_DIR (default build-lint), JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${LINT_BUILD_DIR:-build-lint}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

for tool in clang-tidy cppcheck; do
        if ! command -v "$tool" >/dev/null; then
                echo "lint: $tool not found; 'make lint' installs it (Debian: apt-get install $tool)" >&2
                exit 2
        fi
done

# Only the compile database is needed, so configure without building. Debug:
# no _FORTIFY_SOURCE wrappers around memcpy & co for the analysers to
# misread; tools on so that tools/ is analysed with its real flags.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DTERN_BUILD_TOOLS=ON -DTERN_BUILD_TESTS=OFF \
        -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$build.log" 2>&1 ||
        {
                cat "$build.log" >&2
                exit 2
        }
rm -f "$build.log"

if [ $# -gt 0 ]; then
        files=()
        for f in "$@"; do files+=("$(realpath "$f")"); done
else
        mapfile -t files < <(sed -n 's/^ *"file": "\(.*\)",\{0,1\}$/\1/p' "$build/compile_commands.json" |
                grep -E "^$root/(core|net|proto|apps|tools|examples)/" | sort -u)
fi
[ ${#files[@]} -gt 0 ] || {
        echo "lint: no files" >&2
        exit 2
}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0

echo "lint: clang-tidy on ${#files[@]} files ($jobs jobs)"
# clang-tidy exits non-zero on any finding (.clang-tidy: WarningsAsErrors);
# its "N warnings generated" chatter goes to stderr and is dropped.
if ! printf '%s\n' "${files[@]}" |
        xargs -P "$jobs" -n 2 clang-tidy -p "$build" --quiet >"$out/tidy" 2>"$out/tidy.err"; then
        status=1
fi
if grep -qE '(warning|error):' "$out/tidy"; then
        grep -E -A3 '(warning|error):' "$out/tidy"
        status=1
elif [ $status -ne 0 ]; then
        cat "$out/tidy" "$out/tidy.err" >&2
fi

echo "lint: cppcheck"
# System headers are not given: they are slow to parse and not ours.
# -D_GNU_SOURCE as the build has it; the one configuration the build uses.
if ! cppcheck --enable=warning,performance,portability --inline-suppr --error-exitcode=1 \
        --suppressions-list=.cppcheck-suppressions --library=tools/lint/cppcheck.cfg \
        --std=c11 -D_GNU_SOURCE -I core -I net -I proto -I apps/common --quiet -j "$jobs" \
        "${files[@]}" 2>"$out/cppcheck"; then
        status=1
fi
if [ -s "$out/cppcheck" ]; then
        cat "$out/cppcheck"
        status=1
fi

if [ $status -eq 0 ]; then
        echo "lint: clean"
else
        echo "lint: findings above (fix them, or suppress a false positive inline with a reason)" >&2
fi
exit $status
