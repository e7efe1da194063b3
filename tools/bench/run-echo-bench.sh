#!/usr/bin/env bash
# Echo-server comparison: tern-echo (1 worker) against libevent, libuv and a
# hand-written epoll loop, under identical load from tern-bench, in one run.
#
# Builds nothing: it expects the binaries in build/bin (or --bin DIR):
#   tern-bench, bench-echo-epoll (required), bench-echo-libevent,
#   bench-echo-libuv, tern-echo (each optional; skipped with a note if absent).
#
# Each measurement gets a fresh server pinned to one core (taskset -c 0) and
# the client on another (taskset -c 1). Servers are interleaved within each
# round, their order rotating from round to round, and every point is
# repeated R times; the table reports medians and each server's ratio to the
# epoll baseline measured in the same run. Results go to
# docs/bench/echo-<date>.csv (every run) and .json (medians, machine).
#
# usage: tools/bench/run-echo-bench.sh [--quick] [--rounds R] [--duration S]
#          [--warmup S] [--idle-conns N] [--idle-hold S] [--bin DIR]
#          [--tern-echo PATH] [--out DIR] [--server-cpu N] [--client-cpu N]
#          [--servers LIST] [--workloads LIST]
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
SERVERS="epoll libevent libuv tern"
WORKLOADS="pingpong rr churn idle"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "run-echo-bench: $*" >&2; exit 1; }

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
    --servers) SERVERS=$2; shift ;;
    --workloads) WORKLOADS=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done

if [ "$QUICK" = 1 ]; then
  # CI smoke: one short round, so the tool and this script cannot rot.
  ROUNDS=1 DURATION=1 WARMUP=0.3 IDLE_CONNS=1000 IDLE_HOLD=0.5
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

server_cmd() { # name -> command line (without --port/--bind), or nothing if absent
  case $1 in
    epoll) echo "$BIN/bench-echo-epoll" ;;
    libevent) [ -x "$BIN/bench-echo-libevent" ] && echo "$BIN/bench-echo-libevent" ;;
    libuv) [ -x "$BIN/bench-echo-libuv" ] && echo "$BIN/bench-echo-libuv" ;;
    tern) [ -x "$TERN_ECHO" ] && echo "$TERN_ECHO --workers 1" ;;
    *) die "unknown server '$1' (epoll libevent libuv tern)" ;;
  esac
  return 0
}

ACTIVE=()
for s in $SERVERS; do
  if [ -n "$(server_cmd "$s")" ]; then ACTIVE+=("$s"); else
    echo "run-echo-bench: skipping $s: binary not found" >&2; fi
done
case " ${ACTIVE[*]} " in *" epoll "*) ;; *) die "the epoll baseline must be in --servers" ;; esac

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
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'echo "run-echo-bench: interrupted" >&2; exit 130' INT TERM

# A port nobody uses in any state (TIME_WAIT included), below the ephemeral
# range so that no client socket can be holding it either.
free_port() {
  local p _i
  for _i in $(seq 1 100); do
    p=$((20000 + RANDOM % 12000))
    if [ -z "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ]; then
      echo "$p"; return 0
    fi
  done
  return 1
}

# start_server NAME: sets SERVER_PID and PORT once the server listens.
start_server() {
  local cmd _try _i
  cmd=$(server_cmd "$1")
  for _try in 1 2 3; do
    PORT=$(free_port) || die "no free port found"
    echo "== start $1 on $PORT: $cmd" >>"$LOG"
    # shellcheck disable=SC2086 # cmd holds the program and its fixed flags
    "${PIN_S[@]}" $cmd --port "$PORT" --bind 127.0.0.1 >>"$LOG" 2>&1 &
    SERVER_PID=$!
    for _i in $(seq 1 100); do # 5 s at most
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
      if [ -n "$(ss -Htln "( sport = :$PORT )" 2>/dev/null)" ]; then return 0; fi
      sleep 0.05
    done
    stop_server
  done
  echo "run-echo-bench: $1 did not start listening (see $LOG)" >&2
  return 1
}

stop_server() {
  local _i
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _i in $(seq 1 40); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# json_get FILE KEY: a number from tern-bench's flat JSON object.
json_get() {
  grep -o "\"$2\": [-0-9.eE+]*" "$1" | head -n1 | sed 's/.*: //'
}

workload_args() {
  case $1 in
    pingpong) echo "pingpong -c 100 -s 16384 -d $DURATION -w $WARMUP" ;;
    rr) echo "rr -c 100 -s 32 -d $DURATION -w $WARMUP" ;;
    churn) echo "churn -c 100 -s 32 -d $DURATION -w $WARMUP" ;;
    idle) echo "idle -c $IDLE_CONNS -s 16 -d $IDLE_HOLD" ;;
    *) die "unknown workload '$1' (pingpong rr churn idle)" ;;
  esac
}

workload_metrics() {
  case $1 in
    pingpong) echo "mib_per_s client_cpu_pct server_cpu_pct" ;;
    rr) echo "req_per_s lat_p50_us lat_p99_us lat_p999_us client_cpu_pct server_cpu_pct" ;;
    churn) echo "conns_per_s connect_p99_us txn_p50_us txn_p99_us client_cpu_pct server_cpu_pct" ;;
    idle) echo "rss_per_conn_bytes rss_before_bytes rss_held_bytes echo_failed" ;;
  esac
}

mkdir -p "$OUT"
DATE=$(date +%F)
CSV=$OUT/echo-$DATE.csv
JSON=$OUT/echo-$DATE.json
RAW=$WORK/raw.csv
echo "date,round,server,workload,metric,value" >"$RAW"
STARTED=$(date -u +%FT%TZ)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Every client run is bounded: its own durations plus set-up and check slack.
LIMIT=$(awk -v d="$DURATION" -v w="$WARMUP" -v h="$IDLE_HOLD" 'BEGIN { printf "%d", d + w + h + 120 }')
nserv=${#ACTIVE[@]}
total=$((ROUNDS * $(wc -w <<<"$WORKLOADS") * nserv))
n=0
echo "run-echo-bench: ${ACTIVE[*]}; $WORKLOADS; $ROUNDS round(s) of ${DURATION}s" \
     "(+${WARMUP}s warm-up); log in $LOG" >&2
for ((r = 1; r <= ROUNDS; r++)); do
  for wl in $WORKLOADS; do
    args=$(workload_args "$wl")
    for ((k = 0; k < nserv; k++)); do
      s=${ACTIVE[$(((k + r - 1) % nserv))]}
      n=$((n + 1))
      [ -t 2 ] && printf '\r\033[K[%d/%d] round %d %s %s' "$n" "$total" "$r" "$wl" "$s" >&2
      if ! start_server "$s"; then
        echo "$DATE,$r,$s,$wl,error,start" >>"$RAW"; continue
      fi
      out=$WORK/$r-$wl-$s.json
      rc=0
      # shellcheck disable=SC2086 # args is a fixed word list
      timeout --kill-after=5 "$LIMIT" "${PIN_C[@]}" "$TB" $args -p "$PORT" --pid "$SERVER_PID" --json --no-progress \
        >"$out" 2>>"$LOG" || rc=$?
      stop_server
      if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
        echo "$DATE,$r,$s,$wl,error,exit-$rc" >>"$RAW"
        echo >&2; echo "run-echo-bench: $wl against $s failed (exit $rc; see $LOG)" >&2
        continue
      fi
      for m in $(workload_metrics "$wl") errors; do
        v=$(json_get "$out" "$m")
        [ -n "$v" ] && echo "$DATE,$r,$s,$wl,$m,$v" >>"$RAW"
      done
      # Work per server CPU-second: on a shared machine the CPU share each
      # process gets moves the raw rates; this ratio moves much less.
      rate=$(json_get "$out" "$(workload_metrics "$wl" | cut -d' ' -f1)")
      cpu=$(json_get "$out" server_cpu_pct)
      if [ "$wl" != idle ] && [ -n "$rate" ] && [ -n "$cpu" ]; then
        awk -v r="$rate" -v c="$cpu" -v pre="$DATE,$r,$s,$wl" \
          'BEGIN { if (c > 0) printf "%s,per_server_cpu_s,%.1f\n", pre, r * 100 / c }' >>"$RAW"
      fi
      # A run is clean when the side that limited it had its core: server or
      # client near 100% busy. Below that, other processes took the CPU.
      awk -v sc="${cpu:-0}" -v cc="$(json_get "$out" client_cpu_pct)" -v wl="$wl" \
          -v lim="$CLEAN_PCT" -v pre="$DATE,$r,$s,$wl" 'BEGIN {
        printf "%s,clean,%d\n", pre, (wl == "idle" || sc + 0 >= lim || cc + 0 >= lim) ? 1 : 0
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

CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //' || true)
CORES=$(nproc --all)
KERNEL=$(uname -r)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
VER_EVENT=$(pkg-config --modversion libevent 2>/dev/null || echo "?")
VER_UV=$(pkg-config --modversion libuv 2>/dev/null || echo "?")

# Table rows: label, workload, metric, direction (higher/lower is better), format.
ROWS="pingpong 100x16KiB MiB/s|pingpong|mib_per_s|higher|%.1f
rr 100x32B req/s|rr|req_per_s|higher|%.0f
rr 100x32B p50 us|rr|lat_p50_us|lower|%.1f
rr 100x32B p99 us|rr|lat_p99_us|lower|%.1f
churn conn/s|churn|conns_per_s|higher|%.0f
churn connect p99 us|churn|connect_p99_us|lower|%.1f
idle ${IDLE_CONNS} B/conn|idle|rss_per_conn_bytes|lower|%.1f
pingpong MiB/server-cpu-s|pingpong|per_server_cpu_s|higher|%.1f
rr req/server-cpu-s|rr|per_server_cpu_s|higher|%.0f
churn conn/server-cpu-s|churn|per_server_cpu_s|higher|%.0f"

{
  echo
  echo "echo servers: median of the clean runs among $ROUNDS (clean: server or client" \
       "had >= ${CLEAN_PCT}% of its core; * = no clean run, median of all);"
  echo "ratio = median over rounds of server / epoll measured in the same round"
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
    printf ' %19s' "$(awk -F, -v s="$s" '$3 == s && $4 != "idle" && $5 == "clean" { n++; c += $6 }
      END { printf "%d/%d", c, n }' "$CSV")"
  done
  echo " (pingpong, rr, churn together)"
} | tee "$WORK/table.txt"

# Requirement check from the core issue, when tern-echo took part.
VERDICT=
if [ -n "$(med tern pingpong mib_per_s)$(med tern rr req_per_s)$(med tern churn conns_per_s)$(med tern idle rss_per_conn_bytes)" ]; then
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
    check pingpong mib_per_s higher
    check rr req_per_s higher
    check rr lat_p99_us lower
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
  printf '],\n  "results": [\n'
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
if [ "$errors" -gt 0 ]; then
  echo "run-echo-bench: $errors measurement(s) failed or saw errors; see $CSV and $LOG" >&2
  exit 1
fi
rm -rf "$WORK"
