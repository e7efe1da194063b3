#!/usr/bin/env bash
# example-http-hello against nginx under wrk, in one interleaved run: the
# TechEmpower "plaintext" test (GET / -> 200 "Hello, World!").
#
#   wrk -t 1 -c C -d D --latency [-s pipeline.lua (16 requests per write)]
#
# Servers, each with one worker, pinned with taskset to --server-cpu while
# wrk runs on --client-cpu:
#   tern    build/bin/example-http-hello PORT 1
#   nginx   nginx (Debian nginx-light) with a config generated into a temp
#           dir: worker_processes 1, access_log off, return 200 "Hello,
#           World!", keepalive_requests unlimited; pid file and error log in
#           the temp dir; run as root in the foreground (never the system
#           service)
# Each measurement gets a fresh server on a free loopback port. Within a
# round every (pipeline, server) pair runs once, the server order rotating
# from round to round; the table reports the median of the rounds:
# requests/s, wrk's p99 latency, and server CPU per request (utime + stime
# of the server's processes from /proc/PID/stat over the run, divided by the
# requests wrk completed). Every run goes to docs/bench/http-<date>.csv, the
# medians to docs/bench/http-<date>-median.csv.
#
# Needs: build/bin/example-http-hello (build it first; this script builds
# nothing), wrk and nginx (Debian: wrk, nginx-light), ss (iproute2),
# taskset (util-linux).
#
# usage: tools/bench/run-http-bench.sh [--rounds R] [--seconds S]
#          [--connections C] [--servers LIST] [--pipelines LIST]
#          [--hello PATH] [--out DIR] [--server-cpu N] [--client-cpu N] [--quick]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HELLO=$ROOT/build/bin/example-http-hello
OUT=
QUICK=0
ROUNDS=3
SECONDS_EACH=5
CONNS=100
SERVERS="tern nginx"
PIPELINES="1 16"
SERVER_CPU=0
CLIENT_CPU=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
BENCH_NAME=run-http-bench
# shellcheck source=tools/bench/lib.sh
. "$ROOT/tools/bench/lib.sh"
die() { bench_die "$@"; }

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --seconds) SECONDS_EACH=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --pipelines) PIPELINES=$2; shift ;;
    --hello) HELLO=$2; shift ;;
    --out) OUT=$2; shift ;;
    --server-cpu) SERVER_CPU=$2; shift ;;
    --client-cpu) CLIENT_CPU=$2; shift ;;
    --quick) QUICK=1; ROUNDS=1; SECONDS_EACH=1 ;; # smoke test of the script itself
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
# A smoke run must not overwrite the published results.
[ "$QUICK" = 1 ] && : "${OUT:=$ROOT/build/bench-results}"
: "${OUT:=$ROOT/docs/bench}"

[ -x "$HELLO" ] || die "$HELLO not found: build it first (cmake --build build --target example-http-hello)"
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v ss >/dev/null || die "ss (iproute2) is needed to find free ports"
command -v taskset >/dev/null || die "taskset (util-linux) is needed to pin the processes"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
case " $SERVERS " in *" nginx "*)
  [ -x "$NGINX" ] || die "nginx not found (apt-get install nginx-light)" ;;
esac
[ "$(nproc --all)" -ge 2 ] || die "needs 2 CPUs: one for the server, one for wrk"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/http-bench.XXXXXX")
LOG=$WORK/run.log
bench_traps

# wrk sends 16 requests per write with this script (as TechEmpower's
# plaintext test does).
cat >"$WORK/pipeline.lua" <<'EOF'
init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do r[i] = wrk.format() end
  req = table.concat(r)
end
request = function() return req end
EOF

nginx_conf() { # port -> $WORK/nginx-PORT/nginx.conf
  local d=$WORK/nginx-$1
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  keepalive_requests 1000000000;
  server {
    listen 127.0.0.1:$1 backlog=4096;
    location / {
      default_type text/plain;
      return 200 "Hello, World!";
    }
  }
}
EOF
  echo "$d/nginx.conf"
}

bench_server_argv() { # server port -> the command, one word per line
  printf '%s\n' taskset -c "$SERVER_CPU"
  case $1 in
    tern) printf '%s\n' "$HELLO" "$2" 1 ;;
    nginx)
      local conf
      conf=$(nginx_conf "$2")
      printf '%s\n' "$NGINX" -p "$WORK" -e "$WORK/nginx-$2/error.log" -c "$conf" ;;
    *) die "unknown server '$1' (tern nginx)" ;;
  esac
}

# utime + stime, in clock ticks, of PID and its children (nginx's worker).
cpu_ticks() {
  local p total=0 f
  for p in $1 $(pgrep -P "$1" || true); do
    f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    f=${f##*) } # after "(comm) "; fields from 3 on
    read -r -a a <<<"$f"
    total=$((total + a[11] + a[12])) # fields 14 and 15
  done
  echo "$total"
}

# wrk's latency with its unit -> milliseconds
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.3f", n }'
}

mkdir -p "$OUT"
DATE=$(date +%F)
CSV=$OUT/http-$DATE.csv
MEDIAN=$OUT/http-$DATE-median.csv
RAW=$WORK/raw.csv
echo "date,round,server,pipeline,rps,p99_ms,requests,cpu_us_per_req" >"$RAW"
TCK=$(getconf CLK_TCK)
LOAD_START=$(bench_loadavg)
read -r -a SRV <<<"$SERVERS"
nsrv=${#SRV[@]}
failed=0
echo "run-http-bench: $SERVERS; pipelines $PIPELINES; $ROUNDS round(s) of ${SECONDS_EACH}s," \
     "$CONNS connections; log in $LOG" >&2
for ((r = 1; r <= ROUNDS; r++)); do
  for p in $PIPELINES; do
    for ((k = 0; k < nsrv; k++)); do
      srv=${SRV[$(((k + r - 1) % nsrv))]}
      [ -t 2 ] && printf '\r\033[Kround %d pipeline %s %s' "$r" "$p" "$srv" >&2
      if ! bench_start_server "$srv"; then
        echo "run-http-bench: $srv did not start (see $LOG)" >&2
        failed=$((failed + 1)); continue
      fi
      script=()
      [ "$p" -gt 1 ] && script=(-s "$WORK/pipeline.lua")
      out=$WORK/$r-$p-$srv.txt
      url=http://127.0.0.1:$PORT/
      # One second of warm-up (connections, caches), then the measurement.
      taskset -c "$CLIENT_CPU" wrk -t 1 -c "$CONNS" -d 1s "${script[@]}" "$url" ${script:+-- "$p"} \
        >/dev/null 2>>"$LOG" || true
      t0=$(cpu_ticks "$SERVER_PID")
      rc=0
      timeout --kill-after=5 $((SECONDS_EACH + 60)) taskset -c "$CLIENT_CPU" \
        wrk -t 1 -c "$CONNS" -d "${SECONDS_EACH}s" --latency "${script[@]}" "$url" \
        ${script:+-- "$p"} >"$out" 2>>"$LOG" || rc=$?
      t1=$(cpu_ticks "$SERVER_PID")
      bench_stop_server
      cat "$out" >>"$LOG"
      rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
      p99=$(awk '$1 == "99%" { print $2 }' "$out")
      reqs=$(awk '/requests in/ { print $1 }' "$out")
      errs=$(awk '/Non-2xx|Socket errors/' "$out")
      if [ "$rc" -ne 0 ] || [ -z "$rps" ] || [ -z "$p99" ] || [ -z "$reqs" ] || [ -n "$errs" ]; then
        echo "run-http-bench: wrk against $srv pipeline $p failed (exit $rc${errs:+; $errs}; see $LOG)" >&2
        failed=$((failed + 1)); continue
      fi
      cpu=$(awk -v d=$((t1 - t0)) -v t="$TCK" -v n="$reqs" 'BEGIN { printf "%.3f", d / t * 1e6 / n }')
      echo "$DATE,$r,$srv,$p,$rps,$(to_ms "$p99"),$reqs,$cpu" >>"$RAW"
    done
  done
done
[ -t 2 ] && printf '\r\033[K' >&2
cp "$RAW" "$CSV"

awk -F, "$BENCH_AWK_MEDIAN"'
  NR > 1 { key = $3 "," $4; n[key]++
    rps[key] = rps[key] " " $5; p99[key] = p99[key] " " $6; cpu[key] = cpu[key] " " $8 }
  END {
    print "server,pipeline,runs,rps_median,p99_ms_median,cpu_us_per_req_median,rps_runs"
    for (key in n) {
      runs = substr(rps[key], 2); gsub(" ", ";", runs)
      printf "%s,%d,%.0f,%.3f,%.3f,%s\n", key, n[key], median(rps[key]), median(p99[key]),
        median(cpu[key]), runs
    }
  }' "$CSV" | { read -r h; echo "$h"; sort; } >"$MEDIAN"

NGINX_VER=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///' || echo "?")
echo
echo "median of $ROUNDS round(s); wrk -t 1 -c $CONNS -d ${SECONDS_EACH}s --latency;" \
     "server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU"
echo "machine: $(bench_machine); nginx $NGINX_VER; commit $(bench_commit "$ROOT");" \
     "load $LOAD_START -> $(bench_loadavg)"
echo
echo "| server | pipeline | requests/s | p99 ms | server CPU us/request | tern / nginx req/s |"
echo "|--------|----------|-----------:|-------:|----------------------:|-------------------:|"
for p in $PIPELINES; do
  base=$(awk -F, -v p="$p" '$1 == "nginx" && $2 == p { print $4 }' "$MEDIAN")
  for srv in "${SRV[@]}"; do
    awk -F, -v s="$srv" -v p="$p" -v b="${base:-0}" '$1 == s && $2 == p {
      ratio = (s == "tern" && b > 0) ? sprintf("%.2fx", $4 / b) : ""
      printf "| %-6s | %8s | %10s | %6s | %21s | %18s |\n", s, p, $4, $5, $6, ratio }' "$MEDIAN"
  done
done
echo
echo "wrote $CSV and $MEDIAN"
if [ "$failed" -gt 0 ]; then
  echo "run-http-bench: $failed measurement(s) failed; see $LOG" >&2
  exit 1
fi
rm -rf "$WORK"
