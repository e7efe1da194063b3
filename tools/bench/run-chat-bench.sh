#!/usr/bin/env bash
# tern-chat under tern-bench's chat mode: room fan-out rate, delivery latency,
# and idle memory per client, for tern-chat with 1, 2 and 4 workers.
#
#   load: tern-bench chat -c CLIENTS --senders 10 --rate R -d S -w 1 --json
#         every client in one room, so each message is delivered CLIENTS times:
#         --rates "10 100" offers 100 and 1,000 msg/s, i.e. 100k and 1M
#         deliveries/s at 1,000 clients (the second is a saturation point)
#   idle: tern-bench chat -c IDLE --idle --room-size 100 --pid PID: the
#         server's RSS growth per idle chat client (rooms of 100, so the
#         join notices stay linear)
# Each measurement gets a fresh server (--max-outbuf 64m --idle-timeout 0
# --flood-rate 0: the load is a machine, not people),
# not pinned: with more than one worker the server needs both cores, and on
# a 2-core machine the client then shares a core with it; read the server
# and client CPU columns. Within a round the worker counts rotate; the table
# shows the median of the rounds. Every run goes to docs/bench/chat-<date>.csv.
# Delivery is verified on every run (exactly once, in order, per sender); a
# run with errors is reported and makes the script exit 1.
#
# Needs build/bin/tern-chat and build/bin/tern-bench (or --bin DIR; this
# script builds nothing) and ss (iproute2).
#
# usage: tools/bench/run-chat-bench.sh [--rounds R] [--duration S] [--clients N]
#          [--senders K] [--rates LIST] [--workers LIST] [--idle-clients N]
#          [--bin DIR] [--out DIR] [--quick]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/build/bin
OUT=
ROUNDS=3
DURATION=5
CLIENTS=1000
SENDERS=10
RATES="10 100"
WORKERS="1 2 4"
IDLE=10000
QUICK=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
BENCH_NAME=run-chat-bench
# shellcheck source=tools/bench/lib.sh
. "$ROOT/tools/bench/lib.sh"
die() { bench_die "$@"; }

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --senders) SENDERS=$2; shift ;;
    --rates) RATES=$2; shift ;;
    --workers) WORKERS=$2; shift ;;
    --idle-clients) IDLE=$2; shift ;;
    --bin) BIN=$2; shift ;;
    --out) OUT=$2; shift ;;
    # smoke test of the tool and script: one short round, small, one worker
    --quick) QUICK=1; ROUNDS=1; DURATION=1; CLIENTS=100; WORKERS=1; IDLE=1000; RATES=10 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
# A smoke run must not overwrite the published results.
[ "$QUICK" = 1 ] && : "${OUT:=$ROOT/build/bench-results}"
: "${OUT:=$ROOT/docs/bench}"

CHAT=$BIN/tern-chat
BENCH=$BIN/tern-bench
[ -x "$CHAT" ] || die "$CHAT not found: build it first (cmake --build build --target tern-chat)"
[ -x "$BENCH" ] || die "$BENCH not found: build it first (cmake --build build --target tern-bench)"
command -v ss >/dev/null || die "ss (iproute2) is needed to find free ports"
[ "$SENDERS" -le "$CLIENTS" ] || die "--senders $SENDERS exceeds --clients $CLIENTS"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chat-bench.XXXXXX")
LOG=$WORK/run.log
bench_traps

bench_server_argv() { # workers port -> the command, one word per line
  printf '%s\n' "$CHAT" --bind 127.0.0.1 --port "$2" --workers "$1" --max-outbuf 64m \
    --idle-timeout 0 --flood-rate 0 --log-level warn
}
# Listening is not enough: tern-chat must answer its own health check.
bench_server_ready() { "$CHAT" --check "127.0.0.1:$1" >/dev/null 2>&1; }

# field NAME FILE: one number from tern-bench's flat JSON object.
field() { bench_json_get "$2" "$1"; }

mkdir -p "$OUT"
DATE=$(date +%F)
CSV=$OUT/chat-$DATE.csv
RAW=$WORK/raw.csv
echo "date,round,workers,test,clients,senders,rate_per_sender,delivered_per_s,lat_p50_us,lat_p90_us,lat_p99_us,lat_p999_us,lat_max_us,server_cpu_pct,client_cpu_pct,rss_per_client_bytes,errors" >"$RAW"
LOAD_START=$(bench_loadavg)
read -r -a WS <<<"$WORKERS"
nw=${#WS[@]}
failed=0
errored=0
echo "run-chat-bench: workers $WORKERS; $CLIENTS clients, $SENDERS senders at $RATES msg/s;" \
     "idle $IDLE; $ROUNDS round(s) of ${DURATION}s; log in $LOG" >&2

# run_one ROUND WORKERS TEST ARGS...: one fresh server, one tern-bench run.
run_one() {
  local r=$1 w=$2 test=$3 out rc=0
  shift 3
  out=$WORK/$r-$w-$test.json
  [ -t 2 ] && printf '\r\033[Kround %d workers %s %s' "$r" "$w" "$test" >&2
  if ! bench_start_server "$w"; then
    echo "run-chat-bench: tern-chat --workers $w did not start (see $LOG)" >&2
    failed=$((failed + 1)); return 0
  fi
  timeout --kill-after=5 300 "$BENCH" chat -p "$PORT" --pid "$SERVER_PID" --json \
    --no-progress "$@" >"$out" 2>>"$LOG" || rc=$?
  bench_stop_server
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ] || [ ! -s "$out" ]; then
    echo "run-chat-bench: tern-bench chat $test against $w worker(s) failed (exit $rc; see $LOG)" >&2
    failed=$((failed + 1)); return 0
  fi
  cat "$out" >>"$LOG"
  if [ "$rc" -eq 3 ]; then
    echo "run-chat-bench: delivery errors in $test, $w worker(s): $(cat "$out")" >&2
    errored=$((errored + 1))
  fi
  echo "$DATE,$r,$w,$test,$(field connections "$out"),$(field senders "$out"),$(field rate_per_sender "$out"),$(field delivered_per_s "$out"),$(field lat_p50_us "$out"),$(field lat_p90_us "$out"),$(field lat_p99_us "$out"),$(field lat_p999_us "$out"),$(field lat_max_us "$out"),$(field server_cpu_pct "$out"),$(field client_cpu_pct "$out"),$(field rss_per_conn_bytes "$out"),$(field errors "$out")" >>"$RAW"
}

for ((r = 1; r <= ROUNDS; r++)); do
  for ((k = 0; k < nw; k++)); do
    w=${WS[$(((k + r - 1) % nw))]}
    for rate in $RATES; do
      run_one "$r" "$w" "load-$rate" -c "$CLIENTS" --senders "$SENDERS" --rate "$rate" \
        -d "$DURATION" -w 1
    done
    run_one "$r" "$w" idle -c "$IDLE" --idle --room-size 100 -d "$DURATION"
  done
done
[ -t 2 ] && printf '\r\033[K' >&2
cp "$RAW" "$CSV"

# median COLUMN WORKERS TEST: median over rounds of one CSV column.
median() {
  awk -F, -v c="$1" -v w="$2" -v t="$3" "$BENCH_AWK_MEDIAN"'
    NR > 1 && $3 == w && $4 == t && $c != "" { v = v " " $c }
    END { if (v == "") print "-"; else printf "%.0f\n", median(v) }' "$CSV"
}

echo
echo "tern-chat fan-out, median of $ROUNDS round(s) of ${DURATION}s; $CLIENTS clients in one room," \
     "$SENDERS senders"
echo "machine: $(bench_machine); commit $(bench_commit "$ROOT");" \
     "load $LOAD_START -> $(bench_loadavg)"
echo "server not pinned (workers > 1 need both cores; the client shares them)"
echo
printf '| %-7s | %-9s | %12s | %12s | %8s | %8s | %8s | %9s | %7s | %7s |\n' workers test \
  "offered/s" "delivered/s" "p50 us" "p99 us" "p99.9 us" "max us" "srv cpu" "cli cpu"
echo "|---------|-----------|--------------|--------------|----------|----------|----------|-----------|---------|---------|"
for w in "${WS[@]}"; do
  for rate in $RATES; do
    t=load-$rate
    offered=$(awk -v c="$CLIENTS" -v k="$SENDERS" -v r="$rate" 'BEGIN { printf "%.0f", c * k * r }')
    printf '| %-7s | %-9s | %12s | %12s | %8s | %8s | %8s | %9s | %6s%% | %6s%% |\n' "$w" "$t" \
      "$offered" "$(median 8 "$w" "$t")" "$(median 9 "$w" "$t")" "$(median 11 "$w" "$t")" \
      "$(median 12 "$w" "$t")" "$(median 13 "$w" "$t")" "$(median 14 "$w" "$t")" \
      "$(median 15 "$w" "$t")"
  done
done
echo
echo "idle: $IDLE chat clients (rooms of 100), server RSS growth per client"
for w in "${WS[@]}"; do
  printf '  %s worker(s): %s B per client\n' "$w" "$(median 16 "$w" idle)"
done
echo
echo "wrote $CSV"
if [ "$failed" -gt 0 ] || [ "$errored" -gt 0 ]; then
  echo "run-chat-bench: $failed run(s) failed, $errored with delivery errors; see $LOG" >&2
  exit 1
fi
rm -rf "$WORK"
