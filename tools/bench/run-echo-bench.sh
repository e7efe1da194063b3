#!/usr/bin/env bash
# Echo-server comparison: tern-echo against libevent, libuv and a hand-written
# epoll loop, under identical load from tern-bench, in one run.
#
# Builds nothing: it expects the binaries in build/bin (or --bin DIR):
#   tern-bench, bench-echo-epoll (required), bench-echo-libevent,
#   bench-echo-libuv, tern-echo (each optional; skipped with a note if absent).
#
# Servers (--servers):
#   epoll libevent libuv tern   single-threaded (tern: --workers 1, which
#                               accepts on its worker's loop), pinned to one
#                               core (taskset -c 0), the client on another
#                               (taskset -c 1); they run every workload
#   tern-thread                 tern-echo --workers 1 --accept thread, pinned
#                               the same way: one worker fed by an acceptor
#                               thread (the hand-off's cost, side by side)
#   tern-base                   a second tern-echo, $TERN_ECHO_BASE (say, one
#                               built from an older commit), run like tern:
#                               a change against its parent in the same run
#   tern-w1 tern-w2 tern-w4     tern-echo with 1, 2, 4 workers, nothing pinned
#                               (several workers need both cores, so client
#                               and server share them); they run only the
#                               scaling workloads (--scale-workloads)
# Workloads (--workloads):
#   pp-CxSk    pingpong, C connections x S KiB blocks: MiB/s
#              (1, 10, 100, 1000 connections x 1 and 16 KiB)
#   rr-C       rr, C connections x 32 B, one in flight: req/s, latency
#              percentiles (100 and 1000 connections)
#   churn      100 concurrent connect/32 B echo/close cycles: conn/s
#   handoff    churn with one cycle at a time and a 1-byte echo: connect()
#              start to first echoed byte, i.e. accept plus, in tern, the
#              acceptor-to-worker hand-off
#   idle       10,000 idle connections: server RSS per connection
# Each measurement gets a fresh server. Servers are interleaved within each
# round, their order rotating from round to round, and every point is
# repeated R times; the table reports medians and each server's ratio to the
# epoll baseline measured in the same round. Results go to
# docs/bench/echo-<date>T<time>.csv (every run) and .json (medians, ratios,
# machine, load average); tools/bench/plot.sh draws them into the same
# directory (SVG, when gnuplot is installed).
#
# usage: tools/bench/run-echo-bench.sh [--quick] [--rounds R] [--duration S]
#          [--warmup S] [--idle-conns N] [--idle-hold S] [--bin DIR]
#          [--tern-echo PATH] [--out DIR] [--server-cpu N] [--client-cpu N]
#          [--servers LIST] [--workloads LIST] [--scale-workloads LIST]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/build/bin
TERN_ECHO=
OUT=
ROUNDS=3
DURATION=5
WARMUP=1
IDLE_CONNS=10000
IDLE_HOLD=3
QUICK=0
SERVER_CPU=0
CLEAN_PCT=90
CLIENT_CPU=1
SERVERS="epoll libevent libuv tern tern-w1 tern-w2 tern-w4"
WORKLOADS="pp-1x1k pp-10x1k pp-100x1k pp-1000x1k pp-1x16k pp-10x16k pp-100x16k pp-1000x16k
           rr-100 rr-1000 churn handoff idle"
SCALE_WORKLOADS="pp-100x16k rr-100 rr-1000 handoff"
WORKLOADS_SET=0
SERVERS_SET=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
BENCH_NAME=run-echo-bench
BENCH_STOP_TICKS=40
# shellcheck source=tools/bench/lib.sh
. "$ROOT/tools/bench/lib.sh"
die() { bench_die "$@"; }

while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --idle-conns) IDLE_CONNS=$2; shift ;;
    --idle-hold) IDLE_HOLD=$2; shift ;;
    --bin) BIN=$(cd "$2" && pwd); shift ;;
    --tern-echo) TERN_ECHO=$2; shift ;;
    --out) OUT=$2; shift ;;
    --server-cpu) SERVER_CPU=$2; shift ;;
    --client-cpu) CLIENT_CPU=$2; shift ;;
    --servers) SERVERS=$2; SERVERS_SET=1; shift ;;
    --workloads) WORKLOADS=$2; WORKLOADS_SET=1; shift ;;
    --scale-workloads) SCALE_WORKLOADS=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done

WORKLOADS=$(tr -s ' \n' '  ' <<<"$WORKLOADS" | sed 's/^ //; s/ $//') # one line in messages
if [ "$QUICK" = 1 ]; then
  # CI smoke: one short round over one point of each kind, so the tool and
  # this script cannot rot; never written into docs/.
  ROUNDS=1 DURATION=0.4 WARMUP=0.1 IDLE_CONNS=1000 IDLE_HOLD=0.3
  [ "$WORKLOADS_SET" = 1 ] || WORKLOADS="pp-10x1k pp-100x16k rr-100 handoff idle"
  [ "$SERVERS_SET" = 1 ] || SERVERS="epoll libevent libuv tern tern-w2"
  SCALE_WORKLOADS="pp-100x16k handoff"
  : "${OUT:=$BIN/../bench-results}"
fi
: "${OUT:=$ROOT/docs/bench}"
: "${TERN_ECHO:=$BIN/tern-echo}"

TB=$BIN/tern-bench
[ -x "$TB" ] || die "$TB not found: build first (cmake --build build)"
[ -x "$BIN/bench-echo-epoll" ] || die "$BIN/bench-echo-epoll not found: build first"
command -v ss >/dev/null || die "ss (iproute2) is needed to find free ports"

# Pinning needs two CPUs; without them the run still works, unpinned.
PIN_S=() PIN_C=()
if command -v taskset >/dev/null && [ "$(nproc --all)" -ge 2 ]; then
  PIN_S=(taskset -c "$SERVER_CPU") PIN_C=(taskset -c "$CLIENT_CPU")
else
  echo "run-echo-bench: fewer than 2 CPUs or no taskset: running unpinned" >&2
fi

# The servers must hold IDLE_CONNS sockets too; they inherit this limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 64)) ]; then
  die "open-file limit $(ulimit -n) is below the $IDLE_CONNS idle connections: raise it" \
      "(as root: ulimit -Hn $((IDLE_CONNS * 2))) or pass --idle-conns"
fi

# Several workers need both cores: those servers, and their client, float.
unpinned() { case $1 in tern-w*) return 0 ;; *) return 1 ;; esac; }

server_bin() { # name -> its program, or nothing if absent
  case $1 in
    epoll) echo "$BIN/bench-echo-epoll" ;;
    libevent) [ -x "$BIN/bench-echo-libevent" ] && echo "$BIN/bench-echo-libevent" ;;
    libuv) [ -x "$BIN/bench-echo-libuv" ] && echo "$BIN/bench-echo-libuv" ;;
    tern|tern-thread|tern-w[1-9]*) [ -x "$TERN_ECHO" ] && echo "$TERN_ECHO" ;;
    tern-base) [ -x "${TERN_ECHO_BASE:-}" ] && echo "$TERN_ECHO_BASE" ;;
    *) die "unknown server '$1' (epoll libevent libuv tern tern-base tern-thread tern-wN)" ;;
  esac
  return 0
}

bench_server_argv() { # name port -> the command, one word per line
  unpinned "$1" || printf '%s\n' "${PIN_S[@]}"
  server_bin "$1"
  case $1 in
    tern | tern-base) printf '%s\n' --workers 1 ;;
    tern-thread) printf '%s\n' --workers 1 --accept thread ;;
    tern-w*) printf '%s\n' --workers "${1#tern-w}" ;;
  esac
  printf '%s\n' --port "$2" --bind 127.0.0.1
}

# runs SERVER WORKLOAD: whether this pair is measured at all.
runs() {
  unpinned "$1" || return 0
  case " $SCALE_WORKLOADS " in *" $2 "*) return 0 ;; esac
  return 1
}

ACTIVE=()
for s in $SERVERS; do
  if [ -n "$(server_bin "$s")" ]; then ACTIVE+=("$s"); else
    echo "run-echo-bench: skipping $s: binary not found" >&2; fi
done
case " ${ACTIVE[*]} " in *" epoll "*) ;; *) die "the epoll baseline must be in --servers" ;; esac
UNPINNED=()
for s in "${ACTIVE[@]}"; do if unpinned "$s"; then UNPINNED+=("$s"); fi; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/echo-bench.XXXXXX")
LOG=$WORK/run.log

# Run private copies: others rebuild build/ while a run takes minutes, and a
# server must not change between rounds. Their hashes go into the JSON.
mkdir "$WORK/bin"
for f in tern-bench bench-echo-epoll bench-echo-libevent bench-echo-libuv; do
  if [ -x "$BIN/$f" ]; then cp -p "$BIN/$f" "$WORK/bin/$f"; fi
done
if [ -x "$TERN_ECHO" ]; then cp -p "$TERN_ECHO" "$WORK/bin/tern-echo"; fi
BIN=$WORK/bin TB=$WORK/bin/tern-bench TERN_ECHO=$WORK/bin/tern-echo
BINARIES=$(cd "$WORK/bin" && for f in *; do
  printf '"%s": "sha256:%s %s", ' "$f" "$(sha256sum "$f" | cut -c1-16)" \
    "$(date -u -r "$f" +%FT%TZ)"; done | sed 's/, $//')
bench_traps

json_get() { bench_json_get "$@"; }

workload_args() {
  if [[ $1 =~ ^pp-([0-9]+)x([0-9]+)k$ ]]; then
    echo "pingpong -c ${BASH_REMATCH[1]} -s $((BASH_REMATCH[2] * 1024)) -d $DURATION -w $WARMUP"
    return
  fi
  if [[ $1 =~ ^rr-([0-9]+)$ ]]; then
    echo "rr -c ${BASH_REMATCH[1]} -s 32 -d $DURATION -w $WARMUP"
    return
  fi
  case $1 in
    churn) echo "churn -c 100 -s 32 -d $DURATION -w $WARMUP" ;;
    handoff) echo "churn -c 1 -s 1 -d $DURATION -w $WARMUP" ;;
    idle) echo "idle -c $IDLE_CONNS -s 16 -d $IDLE_HOLD" ;;
    *) die "unknown workload '$1' (pp-CxSk rr-C churn handoff idle)" ;;
  esac
}

# The first metric is the workload's rate (or, for handoff, its latency).
workload_metrics() {
  case $1 in
    pp-*) echo "mib_per_s client_cpu_pct server_cpu_pct" ;;
    rr-*) echo "req_per_s lat_p50_us lat_p90_us lat_p99_us lat_p999_us lat_max_us client_cpu_pct server_cpu_pct" ;;
    churn) echo "conns_per_s connect_p99_us txn_p50_us txn_p99_us client_cpu_pct server_cpu_pct" ;;
    handoff) echo "txn_p50_us txn_p90_us txn_p99_us connect_p50_us connect_p99_us conns_per_s client_cpu_pct server_cpu_pct" ;;
    idle) echo "rss_per_conn_bytes rss_before_bytes rss_held_bytes echo_failed" ;;
  esac
}

# The rate that must not be zero in a run that worked.
workload_rate() {
  case $1 in
    pp-*) echo mib_per_s ;;
    rr-*) echo req_per_s ;;
    churn|handoff) echo conns_per_s ;;
  esac
}

# Whether "one side had its core" can tell a clean run: only for the
# throughput workloads with enough connections to keep both sides busy. One
# or ten connections, handoff and idle are latency- or set-up-bound, so every
# run of them counts.
judged() { [[ $1 =~ ^(pp-[0-9]{3,}x|rr-[0-9]{3,}$|churn$) ]]; }

mkdir -p "$OUT"
DATE=$(date +%F)
STAMP=$(date -u +%Y-%m-%dT%H%MZ)
CSV=$OUT/echo-$STAMP.csv
JSON=$OUT/echo-$STAMP.json
RAW=$WORK/raw.csv
echo "date,round,server,workload,metric,value" >"$RAW"
STARTED=$(date -u +%FT%TZ)
LOAD_START=$(bench_loadavg)

# Every client run is bounded: its own durations plus set-up and check slack.
LIMIT=$(awk -v d="$DURATION" -v w="$WARMUP" -v h="$IDLE_HOLD" 'BEGIN { printf "%d", d + w + h + 120 }')
nserv=${#ACTIVE[@]}
total=0
for wl in $WORKLOADS; do for s in "${ACTIVE[@]}"; do runs "$s" "$wl" && total=$((total + 1)); done; done
total=$((total * ROUNDS))
n=0
echo "run-echo-bench: ${ACTIVE[*]}; $WORKLOADS; $ROUNDS round(s) of ${DURATION}s" \
     "(+${WARMUP}s warm-up); log in $LOG" >&2
for ((r = 1; r <= ROUNDS; r++)); do
  for wl in $WORKLOADS; do
    args=$(workload_args "$wl")
    for ((k = 0; k < nserv; k++)); do
      s=${ACTIVE[$(((k + r - 1) % nserv))]}
      runs "$s" "$wl" || continue
      n=$((n + 1))
      [ -t 2 ] && printf '\r\033[K[%d/%d] round %d %s %s' "$n" "$total" "$r" "$wl" "$s" >&2
      # A run that moved nothing is a broken tool or server, not a figure;
      # but on a heavily loaded machine a pinned server can also be starved
      # for a whole short run, so a zero gets one more try.
      attempt=0
      while :; do
        attempt=$((attempt + 1))
        if ! bench_start_server "$s"; then
          echo "run-echo-bench: $s did not start listening (see $LOG)" >&2
          echo "$DATE,$r,$s,$wl,error,start" >>"$RAW"; continue 2
        fi
        pin=("${PIN_C[@]}")
        unpinned "$s" && pin=()
        out=$WORK/$r-$wl-$s.json
        rc=0
        # shellcheck disable=SC2086 # args is a fixed word list
        timeout --kill-after=5 "$LIMIT" "${pin[@]}" "$TB" $args -p "$PORT" --pid "$SERVER_PID" --json --no-progress \
          >"$out" 2>>"$LOG" || rc=$?
        bench_stop_server
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
          echo "$DATE,$r,$s,$wl,error,exit-$rc" >>"$RAW"
          echo >&2; echo "run-echo-bench: $wl against $s failed (exit $rc; see $LOG)" >&2
          continue 2
        fi
        rm=$(workload_rate "$wl")
        rate=
        [ -z "$rm" ] || rate=$(json_get "$out" "$rm")
        if [ -n "$rm" ] && ! awk -v v="${rate:-0}" 'BEGIN { exit !(v > 0) }'; then
          if [ "$attempt" = 1 ]; then
            echo "== $wl against $s measured no $rm: once more ($(cat "$out"))" >>"$LOG"
            continue
          fi
          echo "$DATE,$r,$s,$wl,error,zero-$rm" >>"$RAW"
          echo >&2; echo "run-echo-bench: $wl against $s measured no $rm, twice (see $LOG)" >&2
        fi
        break
      done
      for m in $(workload_metrics "$wl") errors; do
        v=$(json_get "$out" "$m")
        [ -n "$v" ] && echo "$DATE,$r,$s,$wl,$m,$v" >>"$RAW"
      done
      # Work per server CPU-second: on a shared machine the CPU share each
      # process gets moves the raw rates; this ratio moves much less.
      cpu=$(json_get "$out" server_cpu_pct)
      if [ "$wl" != handoff ] && [ -n "$rate" ] && [ -n "$cpu" ]; then
        awk -v r="$rate" -v c="$cpu" -v pre="$DATE,$r,$s,$wl" \
          'BEGIN { if (c > 0) printf "%s,per_server_cpu_s,%.1f\n", pre, r * 100 / c }' >>"$RAW"
      fi
      # A run is clean when the side that limited it had its core: server or
      # client near 100% busy. Below that, other processes took the CPU.
      awk -v sc="${cpu:-0}" -v cc="$(json_get "$out" client_cpu_pct)" \
          -v judged="$(judged "$wl" && echo 1 || echo 0)" \
          -v lim="$CLEAN_PCT" -v pre="$DATE,$r,$s,$wl" 'BEGIN {
        printf "%s,clean,%d\n", pre, (!judged || sc + 0 >= lim || cc + 0 >= lim) ? 1 : 0
      }' >>"$RAW"
    done
  done
done
[ -t 2 ] && printf '\r\033[K' >&2
cp "$RAW" "$CSV"

# Medians per (server, workload, metric) over the clean runs, or over all runs
# when none was clean (marked with * in the table).
# Columns: server workload metric median n_used all_clean(0/1) runs(round order)
SUMMARY=$WORK/summary.tsv
awk -F, '
  NR == FNR { if ($5 == "clean") clean[$2 SUBSEP $3 SUBSEP $4] = $6; next }
  FNR > 1 && $5 != "error" && $5 != "clean" {
    key = $3 "\t" $4 "\t" $5; all[key] = all[key] " " $6
    if (clean[$2 SUBSEP $3 SUBSEP $4]) good[key] = good[key] " " $6
  }
  END {
    for (key in all) {
      n = split(substr(all[key], 2), a, " ")
      runs = a[1]; for (i = 2; i <= n; i++) runs = runs ";" a[i]
      fallback = !(key in good)
      if (!fallback) n = split(substr(good[key], 2), a, " ")
      for (i = 2; i <= n; i++) { x = a[i]; j = i - 1
        while (j > 0 && a[j] + 0 > x + 0) { a[j + 1] = a[j]; j-- } a[j + 1] = x }
      med = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      print key "\t" med "\t" n "\t" (fallback ? 0 : 1) "\t" runs
    }
  }' "$CSV" "$CSV" | sort >"$SUMMARY"

med() { awk -F'\t' -v s="$1" -v w="$2" -v m="$3" '$1 == s && $2 == w && $3 == m { print $4 }' "$SUMMARY"; }
# medflag: "*" when the median had to use contended runs.
medflag() { awk -F'\t' -v s="$1" -v w="$2" -v m="$3" '$1 == s && $2 == w && $3 == m { print ($6 ? "" : "*") }' "$SUMMARY"; }

# pratio A B WORKLOAD METRIC: median over rounds of A's value / B's value in
# the same round. The machine's load drifts between rounds; servers measured
# seconds apart within a round share it, so paired ratios are steadier than a
# ratio of medians taken from different rounds. Only rounds where both runs
# were clean count, unless there are none: then all rounds, and a "*" follows.
pratio() {
  awk -F, -v a="$1" -v b="$2" -v w="$3" -v m="$4" '
    NR > 1 && $4 == w && $5 == m { if ($3 == a) va[$2] = $6; if ($3 == b) vb[$2] = $6 }
    NR > 1 && $4 == w && $5 == "clean" { if ($3 == a) ca[$2] = $6; if ($3 == b) cb[$2] = $6 }
    END {
      n = 0
      for (r in va) if ((r in vb) && vb[r] + 0 != 0 && ca[r] && cb[r]) x[++n] = va[r] / vb[r]
      flag = ""
      if (!n) {
        for (r in va) if ((r in vb) && vb[r] + 0 != 0) x[++n] = va[r] / vb[r]
        flag = "*"
      }
      if (!n) exit
      for (i = 2; i <= n; i++) { y = x[i]; j = i - 1
        while (j > 0 && x[j] > y) { x[j + 1] = x[j]; j-- } x[j + 1] = y }
      printf "%.4f%s", (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2, flag
    }' "$CSV"
}

CPU_MODEL=$(bench_cpu_model)
CORES=$(nproc --all)
KERNEL=$(uname -r)
COMMIT=$(bench_commit "$ROOT")
LOAD_END=$(bench_loadavg)
VER_EVENT=$(pkg-config --modversion libevent 2>/dev/null || echo "?")
VER_UV=$(pkg-config --modversion libuv 2>/dev/null || echo "?")

# Table rows: label, workload, metric, direction (higher/lower is better), format.
ROWS=$(
  for wl in $WORKLOADS; do
    case $wl in
      pp-*) echo "$wl MiB/s|$wl|mib_per_s|higher|%.1f" ;;
      rr-*)
        echo "$wl req/s|$wl|req_per_s|higher|%.0f"
        for p in p50 p90 p99 p999; do echo "$wl $p us|$wl|lat_${p}_us|lower|%.1f"; done ;;
      churn)
        echo "churn conn/s|churn|conns_per_s|higher|%.0f"
        echo "churn connect p99 us|churn|connect_p99_us|lower|%.1f" ;;
      handoff)
        echo "handoff 1st byte p50 us|handoff|txn_p50_us|lower|%.1f"
        echo "handoff 1st byte p99 us|handoff|txn_p99_us|lower|%.1f"
        echo "handoff connect p50 us|handoff|connect_p50_us|lower|%.1f" ;;
      idle) echo "idle ${IDLE_CONNS} B/conn|idle|rss_per_conn_bytes|lower|%.1f" ;;
    esac
  done
  for wl in $WORKLOADS; do
    case $wl in
      pp-100x16k) echo "$wl MiB/srv-cpu-s|$wl|per_server_cpu_s|higher|%.1f" ;;
      rr-100) echo "$wl req/srv-cpu-s|$wl|per_server_cpu_s|higher|%.0f" ;;
      churn) echo "churn conn/srv-cpu-s|churn|per_server_cpu_s|higher|%.0f" ;;
    esac
  done
)

{
  echo
  echo "echo servers: median of the clean runs among $ROUNDS (clean: server or client" \
       "had >= ${CLEAN_PCT}% of its core; * = no clean run, median of all);"
  echo "ratio = median over rounds of server / epoll measured in the same round;" \
       "unpinned: ${UNPINNED[*]:-none}"
  echo "machine: $CPU_MODEL, $CORES cores, Linux $KERNEL; load $LOAD_START -> $LOAD_END"
  printf '%-24s' "metric"
  for s in "${ACTIVE[@]}"; do printf ' %12s %6s' "$s" "ratio"; done
  echo
  while IFS='|' read -r label wl m dir fmt; do
    case " $WORKLOADS " in *" $wl "*) ;; *) continue ;; esac
    printf '%-24s' "$label"
    for s in "${ACTIVE[@]}"; do
      v=$(med "$s" "$wl" "$m")
      if [ -z "$v" ]; then printf ' %12s %6s' "-" ""; continue; fi
      q=$(pratio "$s" epoll "$wl" "$m")
      # shellcheck disable=SC2059 # the format comes from ROWS above
      printf " %12s %6s" "$(printf "$fmt" "$v")$(medflag "$s" "$wl" "$m")" \
        "$(awk -v q="${q%\*}" 'BEGIN { printf "%.3f", q }')${q//[^*]/}"
    done
    echo " ($dir is better)"
  done <<<"$ROWS"
  printf '%-24s' "clean runs"
  for s in "${ACTIVE[@]}"; do
    printf ' %19s' "$(awk -F, -v s="$s" -v judged=" $(for wl in $WORKLOADS; do
        judged "$wl" && printf '%s ' "$wl"; done)" '
      $3 == s && index(judged, " " $4 " ") && $5 == "clean" { n++; c += $6 }
      END { printf "%d/%d", c, n }' "$CSV")"
  done
  echo " (the throughput workloads with >= 100 connections)"
} | tee "$WORK/table.txt"

# Requirement check from the core issue, when tern-echo took part.
VERDICT=
if [ -n "$(med tern pp-100x16k mib_per_s)$(med tern rr-100 req_per_s)$(med tern churn conns_per_s)$(med tern idle rss_per_conn_bytes)" ]; then
  VERDICT=$(
    check() { # workload metric direction: paired ratios of tern to each rival
      local r q limit
      for r in libevent libuv epoll; do
        q=$(pratio tern "$r" "$1" "$2")
        [ -n "$q" ] || continue
        if [ "$r" = epoll ]; then limit=$([ "$3" = higher ] && echo 0.97 || echo 1.03)
        else limit=1; fi
        awk -v q="${q%\*}" -v star="${q//[^*]/}" -v d="$3" -v lim="$limit" \
            -v l="$1 $2: tern / $r" \
            -v t="$(med tern "$1" "$2")" -v o="$(med "$r" "$1" "$2")" 'BEGIN {
          ok = (d == "higher") ? (q >= lim) : (q <= lim)
          printf "%s  %s = %.4f%s (needs %s %s; medians %g vs %g)\n", ok ? "PASS" : "FAIL", l,
                 q, star, d == "higher" ? ">=" : "<=", lim, t, o }'
      done
    }
    check pp-100x16k mib_per_s higher
    check rr-100 req_per_s higher
    check rr-100 lat_p99_us lower
    check churn conns_per_s higher
    t=$(med tern idle rss_per_conn_bytes)
    [ -z "$t" ] || awk -v t="$t" 'BEGIN {
      printf "%s  idle rss per connection <= 256 B: tern %.1f B\n", t <= 256 ? "PASS" : "FAIL", t }'
  )
  echo
  echo "core-issue targets (paired ratios; on a shared machine one run is not a verdict):"
  echo "$VERDICT"
fi

# JSON: machine, parameters, medians with every run and the ratio to epoll.
{
  printf '{\n  "tool": "run-echo-bench.sh",\n  "started": "%s",\n  "commit": "%s",\n' \
    "$STARTED" "$COMMIT"
  printf '  "machine": {"cpu": "%s", "cores": %s, "kernel": "%s", "loadavg_start": "%s", "loadavg_end": "%s"},\n' \
    "$CPU_MODEL" "$CORES" "$KERNEL" "$LOAD_START" "$LOAD_END"
  printf '  "versions": {"libevent": "%s", "libuv": "%s"},\n' "$VER_EVENT" "$VER_UV"
  printf '  "binaries": {%s},\n' "$BINARIES"
  printf '  "params": {"rounds": %s, "duration_s": %s, "warmup_s": %s, "idle_conns": %s, "idle_hold_s": %s, "server_cpu": "%s", "client_cpu": "%s", "quick": %s},\n' \
    "$ROUNDS" "$DURATION" "$WARMUP" "$IDLE_CONNS" "$IDLE_HOLD" \
    "${PIN_S[*]:-unpinned}" "${PIN_C[*]:-unpinned}" "$([ "$QUICK" = 1 ] && echo true || echo false)"
  printf '  "servers": ['
  sep=; for s in "${ACTIVE[@]}"; do printf '%s"%s"' "$sep" "$s"; sep=", "; done
  printf '],\n  "unpinned": ['
  sep=; for s in "${UNPINNED[@]}"; do printf '%s"%s"' "$sep" "$s"; sep=", "; done
  printf '],\n  "workloads": {'
  sep=; for wl in $WORKLOADS; do printf '%s"%s": "%s"' "$sep" "$wl" "$(workload_args "$wl")"; sep=", "; done
  printf '},\n  "results": [\n'
  sep=
  while IFS=$'\t' read -r s wl m median nused clean runs; do
    q=$(pratio "$s" epoll "$wl" "$m")
    printf '%s    {"server": "%s", "workload": "%s", "metric": "%s", "median": %s, "n_median": %s, "median_of_clean_runs": %s, "runs": [%s], "ratio_to_epoll": %s, "ratio_of_clean_rounds": %s}' \
      "$sep" "$s" "$wl" "$m" "$median" "$nused" "$([ "$clean" = 1 ] && echo true || echo false)" \
      "${runs//;/, }" "$(q2=${q%\*}; echo "${q2:-null}")" "$([ -n "$q" ] && [ "${q%\*}" = "$q" ] && echo true || echo false)"
    sep=$',\n'
  done <"$SUMMARY"
  printf '\n'
  printf '  ]'
  if [ -n "$VERDICT" ]; then
    printf ',\n  "targets": [\n'
    sed 's/"/\\"/g; s/^/    "/; s/$/",/' <<<"$VERDICT" | sed '$ s/,$//'
    printf '  ]'
  fi
  printf '\n}\n'
} >"$JSON"

errors=$(awk -F, '$5 == "error" || ($5 == "errors" && $6 + 0 > 0) || ($5 == "echo_failed" && $6 + 0 > 0)' "$CSV" | wc -l)
echo
echo "wrote $CSV and $JSON"
# The plots of a full run go next to its results (smoke.sh plots --quick runs).
if [ "$QUICK" = 0 ]; then
  if command -v gnuplot >/dev/null; then
    "$ROOT/tools/bench/plot.sh" --out "$OUT" "$JSON" || echo "run-echo-bench: plot.sh failed" >&2
  else
    echo "run-echo-bench: no plots: gnuplot not found (apt-get install gnuplot-nox, or" \
         "TERN_EXTRA_DEPS=gnuplot-nox tools/install-deps.sh)" >&2
  fi
fi
if [ "$errors" -gt 0 ]; then
  echo "run-echo-bench: $errors measurement(s) failed or saw errors; see $CSV and $LOG" >&2
  exit 1
fi
rm -rf "$WORK"
