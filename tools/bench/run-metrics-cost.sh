#!/usr/bin/env bash
# What the admin endpoint costs tern-echo: the same tern-echo (--workers 1,
# --admin on, pinned to CPU 0) under the same rr load (tern-bench rr -c 50
# -s 64 on CPU 1), with its /metrics scraped every second by curl and not
# scraped, rounds interleaved. Prints req/s and server CPU microseconds per
# request for each; the per-update costs are tools/bench/micro/metrics_bench.c
# (bench-metrics_bench).
#
# usage: tools/bench/run-metrics-cost.sh [ROUNDS] [SECONDS]   (default 3 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/bin}
ROUNDS=${1:-3}
DUR=${2:-5}
HZ=$(getconf CLK_TCK)
BENCH_NAME=metrics-cost
LOG=$(mktemp /tmp/metrics-cost.XXXXXX.log)
# shellcheck source=tools/bench/lib.sh
. tools/bench/lib.sh
APORT=
bench_server_argv() {
  APORT=$(bench_free_port)
  printf '%s\n' taskset -c 0 "$BIN/tern-echo" --port "$2" --bind 127.0.0.1 --workers 1 \
    --admin "127.0.0.1:$APORT"
}
bench_traps
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
SCRAPER=
stop_scraper() { [ -z "$SCRAPER" ] || { kill "$SCRAPER" 2>/dev/null || true; wait "$SCRAPER" 2>/dev/null || true; SCRAPER=; }; }
trap 'stop_scraper; bench_stop_server' EXIT

one() { # MODE ROUND
  bench_start_server tern-echo || bench_die "tern-echo did not start (log: $LOG)"
  # APORT was picked inside a subshell (mapfile < <(...)): read it back.
  APORT=$(grep -o 'admin endpoint on 127.0.0.1 port [0-9]*' "$LOG" | tail -1 | awk '{print $NF}')
  [ -n "$APORT" ] || bench_die "no admin port in $LOG"
  if [ "$1" = scraped ]; then
    # On the load's CPU: the scraper's own work must not land on the server's.
    (while :; do taskset -c 1 curl -fsS "http://127.0.0.1:$APORT/metrics" >/dev/null; sleep 1; done) &
    SCRAPER=$!
  fi
  taskset -c 1 "$BIN/tern-bench" rr -p "$PORT" -c 50 -s 64 -d 1 -w 0 --no-progress >/dev/null
  local t0 t1 out req
  t0=$(cpu_ticks "$SERVER_PID")
  out=$(taskset -c 1 "$BIN/tern-bench" rr -p "$PORT" -c 50 -s 64 -d "$DUR" -w 0 --json \
        --no-progress)
  t1=$(cpu_ticks "$SERVER_PID")
  stop_scraper
  bench_stop_server
  req=$(echo "$out" | grep -o '"requests": *[0-9]*' | grep -o '[0-9]*$')
  awk -v m="$1" -v r="$2" -v req="$req" -v d="$DUR" -v t=$((t1 - t0)) -v hz="$HZ" \
    'BEGIN { printf "%-8s round %d  %9.0f req/s  %6.2f us server CPU per request\n",
             m, r, req / d, t / hz * 1e6 / req }'
}

echo "tern-echo, 1 worker on CPU 0; tern-bench rr -c 50 -s 64 on CPU 1; ${DUR}s per run; $(bench_machine); load $(bench_loadavg)"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then one scraped "$r"; one quiet "$r"; else one quiet "$r"; one scraped "$r"; fi
done
