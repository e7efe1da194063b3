#!/usr/bin/env bash
# Soak test for tern-chat (not part of CI): many clients chatting and others
# churning for a long time, while the server's memory is sampled.
#
#   load:   tern-bench chat -c CLIENTS --senders K --rate R -d DURATION
#           every client in room #bench; each message is delivered CLIENTS
#           times and every delivery is verified (exactly once, in order)
#   churn:  meanwhile, tern-bench chat -c CHURN ... -d CHURN_PERIOD --room churn
#           in a loop: CHURN clients connect, join, chat, are verified and
#           disconnect, again and again until the load run ends
#   sample: every SAMPLE seconds the server's RSS, open fds and CPU go to a
#           CSV (t_s, rss_kb, fds, cpu_pct, phase)
#
# At the end: RSS after warm-up against RSS at the end (the medians of 5
# samples each; "flat" means growth under --rss-tolerance percent), delivery
# errors of the load run and of every churn round, the server's warnings and
# its exit status, delivered messages, and the load run's latency
# percentiles. Warm-up is the first max(60 s, 10% of the duration) after all
# CLIENTS are connected. Exit status 0 when everything passed, 1 otherwise.
#
# Writes to --out DIR (default: a new directory under /tmp):
#   soak-chat-<stamp>.csv      the samples
#   soak-chat-<stamp>.json     tern-bench's report of the load run
#   soak-chat-<stamp>-churn.jsonl  one tern-bench report per churn round
#   soak-chat-<stamp>.txt      the summary (also printed)
#   soak-chat-<stamp>-server.log
#
# Needs build/bin/tern-chat and build/bin/tern-bench (or --bin DIR; builds
# nothing), ss (iproute2), and an open-files limit of CLIENTS + CHURN + 100
# (the script raises the soft limit to the hard one).
#
# usage: tools/soak/soak-chat.sh [--duration S] [--clients N] [--senders K]
#          [--rate R] [--workers W] [--churn-clients N] [--churn-period S]
#          [--sample S] [--rss-tolerance PCT] [--bin DIR] [--out DIR]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/build/bin
OUT=
DURATION=1800
CLIENTS=5000
SENDERS=10
RATE=2
WORKERS=2
CHURN=200
CHURN_PERIOD=10
SAMPLE=5
TOLERANCE=10

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
BENCH_NAME=soak-chat
# shellcheck source=tools/bench/lib.sh
. "$ROOT/tools/bench/lib.sh"
die() { bench_die "$@"; }

while [ $# -gt 0 ]; do
  case $1 in
    --duration) DURATION=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --senders) SENDERS=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --workers) WORKERS=$2; shift ;;
    --churn-clients) CHURN=$2; shift ;;
    --churn-period) CHURN_PERIOD=$2; shift ;;
    --sample) SAMPLE=$2; shift ;;
    --rss-tolerance) TOLERANCE=$2; shift ;;
    --bin) BIN=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
for v in DURATION CLIENTS SENDERS WORKERS CHURN CHURN_PERIOD SAMPLE TOLERANCE; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v,,} must be a whole number, not '${!v}'"
done
[ "$CLIENTS" -gt 0 ] && [ "$DURATION" -gt 0 ] && [ "$SAMPLE" -gt 0 ] ||
  die "--clients, --duration and --sample must be positive"
for b in tern-chat tern-bench; do
  [ -x "$BIN/$b" ] || die "$BIN/$b not found (build first, or pass --bin DIR)"
done
command -v ss >/dev/null || die "ss not found (apt-get install iproute2)"

need=$((CLIENTS + CHURN + 100))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] ||
  die "open-files limit $(ulimit -n) is below the $need this needs (raise the hard limit)"

stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
[ -n "$OUT" ] || OUT=$(mktemp -d "${TMPDIR:-/tmp}/tern-soak.XXXXXX")
mkdir -p "$OUT"
base=$OUT/soak-chat-$stamp
CSV=$base.csv
LOG=$base-server.log
MAIN=$base.json
CHURN_LOG=$base-churn.jsonl
SUMMARY=$base.txt
: >"$CHURN_LOG"

warm=$((DURATION / 10))
[ "$warm" -ge 60 ] || warm=60
# Setting up CLIENTS in one room costs CLIENTS^2/2 join notices: allow time.
setup_timeout=$((60 + CLIENTS / 10))

bench_server_argv() {
  printf '%s\n' "$BIN/tern-chat" --port "$2" --workers "$WORKERS" --idle-timeout 0 \
    --flood-rate 0 --log-level warn
}
bench_server_ready() { "$BIN/tern-chat" --check "127.0.0.1:$1" >/dev/null 2>&1; }

SAMPLER_PID=
LOAD_PID=
CHURN_PID=
WARM_PID=
cleanup() {
  for p in $CHURN_PID $LOAD_PID $SAMPLER_PID $WARM_PID; do
    kill "$p" 2>/dev/null || true
  done
  bench_stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_start_server tern-chat || die "tern-chat did not start (see $LOG)"
SRV=$SERVER_PID
t0=$(date +%s)
echo "soak-chat: tern-chat pid $SRV on port $PORT, $WORKERS workers; $CLIENTS clients," \
  "$SENDERS x $RATE msg/s, churn $CHURN every ~${CHURN_PERIOD}s, ${DURATION}s; out $OUT"

# Phase marks for the CSV, written by this shell, read by the sampler.
PHASE_FILE=$base.phase
echo setup >"$PHASE_FILE"
hz=$(getconf CLK_TCK)
sampler() {
  local prev_ticks=0 prev_t=0 t ticks rss fds cpu phase
  echo "t_s,rss_kb,fds,cpu_pct,phase" >"$CSV"
  while kill -0 "$SRV" 2>/dev/null; do
    t=$(($(date +%s) - t0))
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SRV/status" 2>/dev/null) || break
    fds=$(find "/proc/$SRV/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    # utime + stime: fields 14 and 15, counted after the ')' closing comm
    ticks=$(sed 's/.*) //' "/proc/$SRV/stat" 2>/dev/null | awk '{print $12 + $13}') || break
    cpu=0
    if [ "$t" -gt "$prev_t" ]; then
      cpu=$(((ticks - prev_ticks) * 100 / hz / (t - prev_t)))
    fi
    [ "$prev_t" -gt 0 ] || [ "$prev_ticks" -gt 0 ] || cpu=0
    phase=$(cat "$PHASE_FILE" 2>/dev/null || echo ?)
    echo "$t,$rss,$fds,$cpu,$phase" >>"$CSV"
    prev_ticks=$ticks
    prev_t=$t
    sleep "$SAMPLE"
  done
}
sampler &
SAMPLER_PID=$!

"$BIN/tern-bench" chat -p "$PORT" -c "$CLIENTS" --senders "$SENDERS" --rate "$RATE" \
  -d "$DURATION" -w 1 --setup-timeout "$setup_timeout" --pid "$SRV" --json --no-progress \
  >"$MAIN" 2>"$base-load.err" &
LOAD_PID=$!

# Wait until every load client is connected (the server holds CLIENTS + its
# own few fds); that ends set-up, and churn starts.
while kill -0 "$LOAD_PID" 2>/dev/null; do
  fds=$(find "/proc/$SRV/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  [ "$fds" -lt "$CLIENTS" ] || break
  sleep 1
done
t_loaded=$(($(date +%s) - t0))
echo warmup >"$PHASE_FILE"
echo "soak-chat: $CLIENTS clients connected after ${t_loaded}s; churn starts"

churn_loop() {
  local i=0
  while kill -0 "$LOAD_PID" 2>/dev/null; do
    i=$((i + 1))
    local rc=0
    "$BIN/tern-bench" chat -p "$PORT" -c "$CHURN" --senders 2 --rate 5 -d "$CHURN_PERIOD" \
      -w 0 --room churn --setup-timeout 120 --json --no-progress \
      >"$base.churn-one" 2>"$base.churn-err" || rc=$?
    if [ -s "$base.churn-one" ]; then
      sed "s/^{/{\"round\":$i,\"exit\":$rc,/" "$base.churn-one" >>"$CHURN_LOG"
    else
      printf '{"round":%d,"exit":%d,"stderr":"%s"}\n' "$i" "$rc" \
        "$(tr -d '"\\' <"$base.churn-err" | tr '\n' ' ')" >>"$CHURN_LOG"
    fi
  done
  rm -f "$base.churn-one" "$base.churn-err"
}
churn_loop &
CHURN_PID=$!

( sleep "$warm"; echo steady >"$PHASE_FILE" ) &
WARM_PID=$!
load_rc=0
wait "$LOAD_PID" || load_rc=$?
LOAD_PID=
kill "$WARM_PID" 2>/dev/null || true
wait "$WARM_PID" 2>/dev/null || true
echo drain >"$PHASE_FILE"
wait "$CHURN_PID" || true
CHURN_PID=
t_end=$(($(date +%s) - t0))

# Stop the server ourselves to see how it exits.
srv_alive=yes
kill -0 "$SRV" 2>/dev/null || srv_alive=no
kill -TERM "$SRV" 2>/dev/null || true
srv_rc=0
wait "$SRV" || srv_rc=$?
SERVER_PID=
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=
rm -f "$PHASE_FILE"

# ---- summary ----
field() { grep -o "\"$1\":[^,}]*" "$2" 2>/dev/null | head -1 | cut -d: -f2 | tr -d '"'; }
median() { sort -n | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]; else print 0}'; }
# RSS after warm-up: the 5 samples from t_loaded + warm on; at the end: the
# last 5 samples taken while the load ran (phase steady).
rss_warm=$(awk -F, -v from=$((t_loaded + warm)) 'NR > 1 && $1 >= from && $5 == "steady" {print $2}' \
  "$CSV" | head -5 | median)
rss_end=$(awk -F, 'NR > 1 && $5 == "steady" {print $2}' "$CSV" | tail -5 | median)
rss_peak=$(awk -F, 'NR > 1 {print $2}' "$CSV" | sort -n | tail -1)
rss_min_steady=$(awk -F, 'NR > 1 && $5 == "steady" {print $2}' "$CSV" | sort -n | head -1)
nsamples=$(awk -F, 'NR > 1 && $5 == "steady"' "$CSV" | wc -l)
growth=n/a
flat=no
if [ "${rss_warm:-0}" -gt 0 ] && [ "$nsamples" -ge 10 ]; then
  growth=$(awk -v a="$rss_warm" -v b="$rss_end" 'BEGIN {printf "%.1f", (b - a) * 100 / a}')
  flat=$(awk -v g="$growth" -v t="$TOLERANCE" 'BEGIN {print (g < t) ? "yes" : "no"}')
fi

churn_rounds=$(wc -l <"$CHURN_LOG")
churn_bad=$(grep -vc '"exit":0,' "$CHURN_LOG" || true)
churn_conns=$((churn_rounds * CHURN))
churn_delivered=$(grep -o '"delivered":[0-9]*' "$CHURN_LOG" | cut -d: -f2 | awk '{s += $1} END {print s + 0}')
warnings=$(grep -cE ' (WARN|ERROR) ' "$LOG" || true)

main_errors=$(field errors "$MAIN")
pass=yes
[ "$load_rc" -eq 0 ] || pass=no
[ "${main_errors:-1}" = 0 ] || pass=no
[ "$churn_bad" -eq 0 ] || pass=no
[ "$srv_alive" = yes ] && [ "$srv_rc" -eq 0 ] || pass=no
[ "$flat" = yes ] || pass=no

{
  echo "tern-chat soak, $stamp"
  echo "machine:   $(nproc) CPUs, $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)," \
    "$(uname -sr); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "binaries:  $BIN (tern-chat $(sha256sum "$BIN/tern-chat" | cut -c1-12))"
  echo "command:   tools/soak/soak-chat.sh --duration $DURATION --clients $CLIENTS --senders $SENDERS" \
    "--rate $RATE --workers $WORKERS --churn-clients $CHURN --churn-period $CHURN_PERIOD"
  echo "timeline:  clients connected at ${t_loaded}s; warm-up ${warm}s; load ran until ${t_end}s"
  echo "load:      exit $load_rc; sent $(field sent "$MAIN"), delivered $(field delivered "$MAIN")" \
    "($(field delivered_per_s "$MAIN")/s) in the ${DURATION}s window"
  echo "verified:  in order $(field in_order "$MAIN"), dropped $(field dropped "$MAIN")," \
    "duplicate $(field duplicate "$MAIN"), reordered $(field reordered "$MAIN")," \
    "missing $(field missing "$MAIN"), lost clients $(field lost "$MAIN"), errors ${main_errors:-?}"
  echo "latency:   p50 $(field lat_p50_us "$MAIN") us, p99 $(field lat_p99_us "$MAIN") us," \
    "p99.9 $(field lat_p999_us "$MAIN") us, max $(field lat_max_us "$MAIN") us"
  echo "cpu:       server $(field server_cpu_pct "$MAIN")%, load client $(field client_cpu_pct "$MAIN")% (1 core = 100)"
  echo "churn:     $churn_rounds rounds, $churn_conns connections opened and closed," \
    "$churn_delivered deliveries verified; rounds with errors: $churn_bad"
  echo "rss:       after warm-up ${rss_warm:-?} kB, end ${rss_end:-?} kB (growth ${growth}%," \
    "tolerance ${TOLERANCE}%: flat=$flat); steady min ${rss_min_steady:-?} kB, peak ${rss_peak:-?} kB;" \
    "$nsamples steady samples every ${SAMPLE}s"
  echo "server:    alive until stopped: $srv_alive; exit status after SIGTERM: $srv_rc;" \
    "warning/error log lines: $warnings"
  if [ -s "$base-load.err" ]; then
    echo "load stderr: $(head -3 "$base-load.err" | tr '\n' ' ')"
  fi
  echo "result:    $([ "$pass" = yes ] && echo PASS || echo FAIL)"
} | tee "$SUMMARY"
rm -f "$base-load.err"
[ "$pass" = yes ]
