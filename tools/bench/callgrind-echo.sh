#!/usr/bin/env bash
# User-space instructions per echo request, the deterministic measure of
# docs/reliability.md: tern-echo -w 1 under callgrind, driven by
# `tern-bench rr -c 10 -s 32` for a short and a long run; the slope
# (instructions difference / requests difference) cancels start-up and
# teardown. Usage: callgrind-echo.sh [ECHO_BIN] [BENCH_BIN] [REPS]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
echo_bin=${1:-$here/build/bin/tern-echo}
bench_bin=${2:-$here/build/bin/tern-bench}
reps=${3:-2}
command -v valgrind >/dev/null || { echo "valgrind not installed" >&2; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# one run: prints "instructions requests"
run_one() {
        local dur=$1 port
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" \
                "$echo_bin" -w 1 --port "$port" >/dev/null 2>"$tmp/vg.log" &
        local pid=$!
        for _ in $(seq 100); do
                (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
                sleep 0.1
        done
        "$bench_bin" rr -p "$port" -c 10 -s 32 -d "$dur" -w 0 --json >"$tmp/b.json"
        kill -TERM "$pid"
        wait "$pid" || true
        local ir reqs
        ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$tmp/cg.out")
        reqs=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("requests") or d.get("ops") or d["count"])' "$tmp/b.json")
        echo "$ir $reqs"
}

for r in $(seq "$reps"); do
        read -r i1 q1 < <(run_one 2)
        read -r i2 q2 < <(run_one 6)
        python3 -c "import sys; i1,q1,i2,q2=map(int,sys.argv[1:]); print('%.1f instructions/request (%d..%d requests)' % ((i2-i1)/(q2-q1), q1, q2))" "$i1" "$q1" "$i2" "$q2"
done
