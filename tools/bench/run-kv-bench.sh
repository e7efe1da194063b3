#!/usr/bin/env bash
# tern-kv against redis-server under redis-benchmark, in one interleaved run.
#
#   redis-benchmark -t ping,set,get,incr -n N -c 50 [-P 16]
#
# Server configurations (--configs, all by default):
#   tern1    tern-kv --workers 1, pinned to --server-cpu; client on --client-cpu
#   redis1   redis-server --save '' --appendonly no, pinned the same way
#   tern2    tern-kv --workers 2, nothing pinned
#   redis    redis-server as above, nothing pinned (the reference for tern2)
# Each measurement gets a fresh server. Within a round every (pipeline,
# configuration) pair runs once, the configuration order rotating from round
# to round; the table reports the median of the rounds. Every run goes to
# docs/bench/kv-<date>.csv, the medians to docs/bench/kv-<date>-median.csv.
#
# Needs: build/bin/tern-kv (or --tern-kv PATH; build it first, this script
# builds nothing), redis-benchmark and redis-server (Debian: redis-tools,
# redis-server), ss (iproute2), taskset (util-linux) for pinning.
#
# usage: tools/bench/run-kv-bench.sh [--rounds R] [--requests N] [--clients C]
#          [--configs LIST] [--pipelines LIST] [--tern-kv PATH] [--out DIR]
#          [--server-cpu N] [--client-cpu N] [--quick]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TERN_KV=$ROOT/build/bin/tern-kv
OUT=
QUICK=0
ROUNDS=3
REQUESTS=200000
CLIENTS=50
CONFIGS="tern1 redis1 tern2 redis"
PIPELINES="1 16"
SERVER_CPU=0
CLIENT_CPU=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
BENCH_NAME=run-kv-bench
# shellcheck source=tools/bench/lib.sh
. "$ROOT/tools/bench/lib.sh"
die() { bench_die "$@"; }

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --requests) REQUESTS=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --configs) CONFIGS=$2; shift ;;
    --pipelines) PIPELINES=$2; shift ;;
    --tern-kv) TERN_KV=$2; shift ;;
    --out) OUT=$2; shift ;;
    --server-cpu) SERVER_CPU=$2; shift ;;
    --client-cpu) CLIENT_CPU=$2; shift ;;
    --quick) QUICK=1; ROUNDS=1; REQUESTS=20000 ;; # smoke test of the script itself
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
# A smoke run must not overwrite the published results.
[ "$QUICK" = 1 ] && : "${OUT:=$ROOT/build/bench-results}"
: "${OUT:=$ROOT/docs/bench}"

[ -x "$TERN_KV" ] || die "$TERN_KV not found: build it first (cmake --build build --target tern-kv)"
command -v redis-benchmark >/dev/null || die "redis-benchmark not found (apt-get install redis-tools)"
command -v ss >/dev/null || die "ss (iproute2) is needed to find free ports"
case " $CONFIGS " in *" redis"*)
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)" ;;
esac

CAN_PIN=0
if command -v taskset >/dev/null && [ "$(nproc --all)" -ge 2 ]; then
  CAN_PIN=1
else
  echo "run-kv-bench: fewer than 2 CPUs or no taskset: tern1 and redis1 run unpinned" >&2
fi

# config -> "pinned" or "free"
placement() {
  case $1 in
    tern1|redis1) [ "$CAN_PIN" = 1 ] && echo pinned || echo free ;;
    tern2|redis) echo free ;;
    *) die "unknown configuration '$1' (tern1 redis1 tern2 redis)" ;;
  esac
}

bench_server_argv() { # config port -> the command, one word per line
  [ "$(placement "$1")" = pinned ] && printf '%s\n' taskset -c "$SERVER_CPU"
  case $1 in
    tern1) printf '%s\n' "$TERN_KV" --port "$2" --bind 127.0.0.1 --workers 1 --log-level warn ;;
    tern2) printf '%s\n' "$TERN_KV" --port "$2" --bind 127.0.0.1 --workers 2 --log-level warn ;;
    redis1|redis)
      printf '%s\n' redis-server --port "$2" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --loglevel warning ;;
  esac
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kv-bench.XXXXXX")
LOG=$WORK/run.log
bench_traps

mkdir -p "$OUT"
DATE=$(date +%F)
CSV=$OUT/kv-$DATE.csv
MEDIAN=$OUT/kv-$DATE-median.csv
RAW=$WORK/raw.csv
echo "date,round,config,placement,pipeline,test,rps,p50_ms,p99_ms" >"$RAW"
LOAD_START=$(bench_loadavg)
read -r -a CFGS <<<"$CONFIGS"
ncfg=${#CFGS[@]}
failed=0
echo "run-kv-bench: $CONFIGS; pipelines $PIPELINES; $ROUNDS round(s) of $REQUESTS requests" \
     "x 5 tests, $CLIENTS clients; log in $LOG" >&2
for ((r = 1; r <= ROUNDS; r++)); do
  for p in $PIPELINES; do
    for ((k = 0; k < ncfg; k++)); do
      cfg=${CFGS[$(((k + r - 1) % ncfg))]}
      place=$(placement "$cfg")
      [ -t 2 ] && printf '\r\033[Kround %d -P %s %s' "$r" "$p" "$cfg" >&2
      if ! bench_start_server "$cfg"; then
        echo "run-kv-bench: $cfg did not start (see $LOG)" >&2
        failed=$((failed + 1)); continue
      fi
      pin=()
      [ "$place" = pinned ] && pin=(taskset -c "$CLIENT_CPU")
      out=$WORK/$r-$p-$cfg.csv
      rc=0
      timeout --kill-after=5 600 "${pin[@]}" redis-benchmark -h 127.0.0.1 -p "$PORT" \
        -t ping,set,get,incr -n "$REQUESTS" -c "$CLIENTS" -P "$p" --csv >"$out" 2>>"$LOG" || rc=$?
      bench_stop_server
      # --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
      #        "p95_latency_ms","p99_latency_ms","max_latency_ms"
      if [ "$rc" -ne 0 ] || [ "$(grep -c '^"[A-Z]' "$out" || true)" -lt 5 ]; then
        echo "run-kv-bench: redis-benchmark against $cfg -P $p failed (exit $rc; see $LOG)" >&2
        failed=$((failed + 1)); continue
      fi
      tr -d '"' <"$out" | awk -F, -v pre="$DATE,$r,$cfg,$place,$p" \
        '$1 ~ /^[A-Z]/ { printf "%s,%s,%s,%s,%s\n", pre, $1, $2, $5, $7 }' >>"$RAW"
    done
  done
done
[ -t 2 ] && printf '\r\033[K' >&2
cp "$RAW" "$CSV"

# Median per (config, pipeline, test) of rps, p50 and p99.
awk -F, "$BENCH_AWK_MEDIAN"'
  NR > 1 { key = $3 "," $4 "," $5 "," $6; n[key]++
    rps[key] = rps[key] " " $7; p50[key] = p50[key] " " $8; p99[key] = p99[key] " " $9 }
  END {
    print "config,placement,pipeline,test,runs,rps_median,p50_ms_median,p99_ms_median,rps_runs"
    for (key in n) {
      runs = substr(rps[key], 2); gsub(" ", ";", runs)
      printf "%s,%d,%.0f,%.3f,%.3f,%s\n", key, n[key], median(rps[key]), median(p50[key]),
        median(p99[key]), runs
    }
  }' "$CSV" | { read -r h; echo "$h"; sort; } >"$MEDIAN"

REDIS_VER=$(redis-server --version 2>/dev/null | sed 's/.*v=\([^ ]*\).*/\1/' || echo "?")
echo
echo "requests/s, median of $ROUNDS; redis-benchmark -t ping,set,get,incr -n $REQUESTS -c $CLIENTS"
echo "machine: $(bench_machine); redis $REDIS_VER; commit $(bench_commit "$ROOT");" \
     "load $LOAD_START -> $(bench_loadavg)"
echo "pinned: server on CPU $SERVER_CPU, redis-benchmark on CPU $CLIENT_CPU"
echo
printf '| %-8s | %-6s | %-8s |' config placed pipeline
TESTS="PING_INLINE PING_MBULK SET GET INCR"
for t in $TESTS; do printf ' %11s |' "$t"; done
echo
printf '|----------|--------|----------|'
for t in $TESTS; do printf -- '-------------|'; done
echo
for p in $PIPELINES; do
  for cfg in "${CFGS[@]}"; do
    printf '| %-8s | %-6s | %-8s |' "$cfg" "$(placement "$cfg")" "-P $p"
    for t in $TESTS; do
      v=$(awk -F, -v c="$cfg" -v p="$p" -v t="$t" '$1 == c && $3 == p && $4 == t { print $6 }' "$MEDIAN")
      printf ' %11s |' "${v:--}"
    done
    echo
  done
done
echo
echo "wrote $CSV and $MEDIAN"
if [ "$failed" -gt 0 ]; then
  echo "run-kv-bench: $failed measurement(s) failed; see $LOG" >&2
  exit 1
fi
rm -rf "$WORK"
