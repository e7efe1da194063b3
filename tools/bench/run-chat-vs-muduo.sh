#!/usr/bin/env bash
# tern-chat against muduo's example chat servers (examples/asio/chat in
# muduo's public repository: asio_chat_server, one event loop, and
# asio_chat_server_threaded_highperformance, one loop per I/O thread). Give
# either the two binaries (--muduo-loop, --muduo-threaded) or a checkout of
# muduo's repository (--muduo-src DIR): the script then builds just those two
# targets (and the muduo_base/muduo_net libraries they need) in Release mode
# under DIR/build-tern-bench, which needs cmake, g++ and Debian's
# libboost-dev. Nothing of muduo is kept in this repository.
#
# The load (tern-bench chat --closed-loop): CLIENTS clients in one room,
# SENDERS of them closed-loop senders (each sends its next message as soon as
# its own copy of the previous one came back), every delivery checked at
# every receiver (exactly once, in order, per sender). tern-chat speaks its
# line protocol; the muduo servers get --framing muduo (4-byte big-endian
# length + payload; they relay every message to every client).
#
#   pinned:   server on CPU 0 (taskset), client on CPU 1; tern-chat
#             --workers 1, asio_chat_server, threaded_highperformance 1
#   unpinned: tern-chat --workers 2, threaded_highperformance 2, client
#             unpinned too (three busy threads on the machine's cores)
#
# Each run gets a fresh server; within a round the servers' order rotates,
# and the table shows the median of the rounds. Server CPU is utime+stime
# from /proc/PID/stat over the measured window, per 100,000 deliveries.
# "runq" is the time the server's threads spent runnable but waiting for a
# CPU (/proc/PID/task/*/schedstat, summed over threads, so it can pass 100%)
# over the whole client run (set-up and drain included), as a share of that
# run's wall time: high means other work was taking the CPUs. Every run goes
# to OUT/chat-vs-muduo-<date>T<time>Z.csv (UTC). A run with delivery errors
# makes the script exit 1.
#
# usage: tools/bench/run-chat-vs-muduo.sh (--muduo-src DIR |
#          --muduo-loop PATH --muduo-threaded PATH)
#          [--rounds R] [--duration S] [--clients N] [--senders K]
#          [--nice N] [--no-unpinned] [--bin DIR] [--out DIR] [--quick]
#   --nice N   run server and client at nice N (default 0; -10 keeps other
#              work on a shared machine from preempting the benchmark)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/build/bin
OUT=
ROUNDS=3
DURATION=5
CLIENTS=1000
SENDERS=10
NICE=0
UNPINNED=1
QUICK=0
MUDUO_LOOP=
MUDUO_THREADED=
MUDUO_SRC=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
BENCH_NAME=run-chat-vs-muduo
# shellcheck source=tools/bench/lib.sh
. "$ROOT/tools/bench/lib.sh"
die() { bench_die "$@"; }

while [ $# -gt 0 ]; do
  case $1 in
    --muduo-loop) MUDUO_LOOP=$2; shift ;;
    --muduo-threaded) MUDUO_THREADED=$2; shift ;;
    --muduo-src) MUDUO_SRC=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --senders) SENDERS=$2; shift ;;
    --nice) NICE=$2; shift ;;
    --no-unpinned) UNPINNED=0 ;;
    --bin) BIN=$2; shift ;;
    --out) OUT=$2; shift ;;
    # smoke test of the tool and script: one short round, small
    --quick) QUICK=1; ROUNDS=1; DURATION=1; CLIENTS=100 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
[ "$QUICK" = 1 ] && : "${OUT:=$ROOT/build/bench-results}"
: "${OUT:=$ROOT/docs/bench}"

CHAT=$BIN/tern-chat
BENCH=$BIN/tern-bench
[ -x "$CHAT" ] || die "$CHAT not found: build it first (cmake --build build --target tern-chat)"
[ -x "$BENCH" ] || die "$BENCH not found: build it first (cmake --build build --target tern-bench)"
# Builds the two chat servers from a muduo checkout: only their targets,
# Release (-O2, as muduo ships them), in a build tree of the checkout's own.
build_muduo() {
  local src=$1 b=$1/build-tern-bench
  [ -f "$src/examples/asio/chat/server_threaded_highperformance.cc" ] ||
    die "--muduo-src $src: not a muduo checkout (no examples/asio/chat)"
  command -v cmake >/dev/null && command -v g++ >/dev/null || die "--muduo-src needs cmake and g++"
  [ -f /usr/include/boost/version.hpp ] || die "--muduo-src needs boost headers (apt-get install libboost-dev)"
  cmake -S "$src" -B "$b" -DCMAKE_BUILD_TYPE=Release -DMUDUO_BUILD_EXAMPLES=ON >"$b.log" 2>&1 ||
    die "muduo configure failed: see $b.log"
  cmake --build "$b" -j "$(nproc)" --target asio_chat_server \
    asio_chat_server_threaded_highperformance >>"$b.log" 2>&1 || die "muduo build failed: see $b.log"
  # muduo's CMakeLists puts every executable in the build tree's bin/.
  MUDUO_LOOP=$b/bin/asio_chat_server
  MUDUO_THREADED=$b/bin/asio_chat_server_threaded_highperformance
}
[ -n "$MUDUO_SRC" ] && build_muduo "$MUDUO_SRC"
[ -n "$MUDUO_LOOP" ] && [ -x "$MUDUO_LOOP" ] || die "--muduo-loop PATH: muduo's asio_chat_server"
[ -n "$MUDUO_THREADED" ] && [ -x "$MUDUO_THREADED" ] ||
  die "--muduo-threaded PATH: muduo's asio_chat_server_threaded_highperformance"
command -v ss >/dev/null || die "ss (iproute2) is needed to find free ports"
command -v taskset >/dev/null || die "taskset (util-linux) is needed to pin"
[ "$SENDERS" -le "$CLIENTS" ] || die "--senders $SENDERS exceeds --clients $CLIENTS"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (server on CPU 0, client on CPU 1)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chat-vs-muduo.XXXXXX")
LOG=$WORK/run.log
bench_traps

# Server names: KIND-THREADS-PIN, e.g. tern-1-pin, mloop-1-pin, mhp-2-free.
bench_server_argv() {
  local kind threads pin
  IFS=- read -r kind threads pin <<<"$1"
  printf '%s\n' nice -n "$NICE"
  [ "$pin" = pin ] && printf '%s\n' taskset -c 0
  case $kind in
    tern) printf '%s\n' "$CHAT" --bind 127.0.0.1 --port "$2" --workers "$threads" \
            --max-outbuf 64m --idle-timeout 0 --flood-rate 0 --log-level warn ;;
    mloop) printf '%s\n' "$MUDUO_LOOP" "$2" ;;
    mhp) printf '%s\n' "$MUDUO_THREADED" "$2" "$threads" ;;
  esac
}
CUR=
bench_server_ready() {
  case $CUR in
    tern-*) "$CHAT" --check "127.0.0.1:$1" >/dev/null 2>&1 ;;
    *) bench_listening "$1" ;;
  esac
}
field() { bench_json_get "$2" "$1"; }
# Nanoseconds the process's threads waited runnable for a CPU (schedstat field 2).
runq_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $2 } END { printf "%.0f\n", s }'; }

mkdir -p "$OUT"
DATE=$(date -u +%F)
STAMP=$(date -u +%FT%H%MZ)
CSV=$OUT/chat-vs-muduo-$STAMP.csv
RAW=$WORK/raw.csv
echo "date,round,config,server,clients,senders,delivered_per_s,lat_p50_us,lat_p99_us,server_cpu_pct,client_cpu_pct,server_cpu_ms_per_100k,client_cpu_ms_per_100k,server_runq_pct,errors" >"$RAW"
LOAD_START=$(bench_loadavg)
failed=0
errored=0
echo "run-chat-vs-muduo: $CLIENTS clients, $SENDERS closed-loop senders; $ROUNDS round(s) of" \
     "${DURATION}s; nice $NICE; log in $LOG" >&2

# run_one ROUND CONFIG SERVER
run_one() {
  local r=$1 cfgname=$2 srv=$3 out rc=0 q0 q1 t0 t1 pin client=()
  out=$WORK/$r-$srv.json
  CUR=$srv
  pin=${srv##*-}
  [ -t 2 ] && printf '\r\033[Kround %d %s' "$r" "$srv" >&2
  if ! bench_start_server "$srv"; then
    echo "run-chat-vs-muduo: $srv did not start (see $LOG)" >&2
    failed=$((failed + 1)); return 0
  fi
  client=(nice -n "$NICE")
  [ "$pin" = pin ] && client+=(taskset -c 1)
  client+=("$BENCH" chat -p "$PORT" --pid "$SERVER_PID" --json --no-progress -c "$CLIENTS"
           --senders "$SENDERS" --closed-loop -d "$DURATION" -w 1)
  case $srv in m*) client+=(--framing muduo) ;; esac
  echo "== $srv: ${client[*]}" >>"$LOG"
  q0=$(runq_ns "$SERVER_PID"); t0=$(date +%s%N)
  timeout --kill-after=5 300 "${client[@]}" >"$out" 2>>"$LOG" || rc=$?
  q1=$(runq_ns "$SERVER_PID"); t1=$(date +%s%N)
  bench_stop_server
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ] || [ ! -s "$out" ]; then
    echo "run-chat-vs-muduo: $srv failed (exit $rc; see $LOG)" >&2
    failed=$((failed + 1)); return 0
  fi
  cat "$out" >>"$LOG"
  if [ "$rc" -eq 3 ]; then
    echo "run-chat-vs-muduo: delivery errors with $srv: $(cat "$out")" >&2
    errored=$((errored + 1))
  fi
  echo "$DATE,$r,$cfgname,$srv,$(field connections "$out"),$(field senders "$out"),$(field delivered_per_s "$out"),$(field lat_p50_us "$out"),$(field lat_p99_us "$out"),$(field server_cpu_pct "$out"),$(field client_cpu_pct "$out"),$(field server_cpu_ms_per_100k "$out"),$(field client_cpu_ms_per_100k "$out"),$(awk -v a="$q0" -v b="$q1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.1f", 100 * (b - a) / (e - s) }'),$(field errors "$out")" >>"$RAW"
}

PINNED=(tern-1-pin mloop-1-pin mhp-1-pin)
FREE=(tern-2-free mhp-2-free)
for ((r = 1; r <= ROUNDS; r++)); do
  for ((k = 0; k < ${#PINNED[@]}; k++)); do
    run_one "$r" pinned "${PINNED[$(((k + r - 1) % ${#PINNED[@]}))]}"
  done
  if [ "$UNPINNED" = 1 ]; then
    for ((k = 0; k < ${#FREE[@]}; k++)); do
      run_one "$r" unpinned "${FREE[$(((k + r - 1) % ${#FREE[@]}))]}"
    done
  fi
done
[ -t 2 ] && printf '\r\033[K' >&2
cp "$RAW" "$CSV"

# med COLUMN SERVER: median over rounds of one CSV column (raw number).
med() {
  awk -F, -v c="$1" -v s="$2" "$BENCH_AWK_MEDIAN"'
    NR > 1 && $4 == s && $c != "" { v = v " " $c }
    END { if (v == "") print ""; else print median(v) }' "$CSV"
}
name() {
  case $1 in
    tern-*) echo "tern-chat --workers ${1#tern-}" ;;
    mloop-*) echo "muduo asio_chat_server" ;;
    mhp-*) echo "muduo threaded_hp $(cut -d- -f2 <<<"$1")" ;;
  esac | sed 's/-pin$//; s/-free$//'
}
row() {
  printf '| %-26s | %12.0f | %10.0f | %10.0f | %11.1f | %11.1f | %9.1f | %6.1f |\n' "$(name "$1")" \
    "$(med 7 "$1")" "$(med 8 "$1")" "$(med 9 "$1")" "$(med 12 "$1")" "$(med 13 "$1")" \
    "$(med 10 "$1")" "$(med 14 "$1")"
}
# ratios TERN MUDUO: deliveries/s, server CPU per delivery, p99 (tern / muduo)
ratios() {
  awk -v td="$(med 7 "$1")" -v md="$(med 7 "$2")" -v tc="$(med 12 "$1")" -v mc="$(med 12 "$2")" \
      -v tp="$(med 9 "$1")" -v mp="$(med 9 "$2")" -v n="$(name "$2")" 'BEGIN {
    printf "  vs %-26s deliveries/s %.2fx (goal >= 1.2)  cpu/delivery %.2fx (goal <= 0.6)  p99 %.2fx (goal <= 1)\n",
      n, md ? td / md : 0, mc ? tc / mc : 0, mp ? tp / mp : 0 }'
}
header() {
  echo "| server                     | deliveries/s |     p50 us |     p99 us | srv ms/100k | cli ms/100k | srv cpu % | runq % |"
  echo "|----------------------------|--------------|------------|------------|-------------|-------------|-----------|--------|"
}

echo
echo "chat fan-out, closed loop: $CLIENTS clients in one room, $SENDERS closed-loop senders;" \
     "median of $ROUNDS round(s) of ${DURATION}s (+1 s warm-up); nice $NICE"
echo "machine: $(bench_machine); commit $(bench_commit "$ROOT"); load $LOAD_START -> $(bench_loadavg)"
echo
echo "pinned: server on CPU 0, client on CPU 1"
header
for s in "${PINNED[@]}"; do row "$s"; done
# against muduo's better single-thread server (more deliveries/s)
best=$(for s in mloop-1-pin mhp-1-pin; do echo "$(med 7 "$s") $s"; done | sort -g | tail -n1 | cut -d' ' -f2)
ratios tern-1-pin "$best"
if [ "$UNPINNED" = 1 ]; then
  echo
  echo "unpinned: 2 server threads, client anywhere"
  header
  for s in "${FREE[@]}"; do row "$s"; done
  ratios tern-2-free mhp-2-free
fi
echo
echo "wrote $CSV"
if [ "$failed" -gt 0 ] || [ "$errored" -gt 0 ]; then
  echo "run-chat-vs-muduo: $failed run(s) failed, $errored with delivery errors; see $LOG" >&2
  exit 1
fi
rm -rf "$WORK"
