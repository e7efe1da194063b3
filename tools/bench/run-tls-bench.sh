#!/usr/bin/env bash
# TLS termination: tern-proxy against nginx (stream module) and stunnel4 in
# front of the same plain echo backend, plus the cost of TLS on tern-echo
# itself (its --tls-port against its plain port), in one run.
#
# Terminators (--terminators), each ONE worker/process pinned to
# --server-cpu (default 0), all with the same certificate (an ECDSA P-256
# self-signed one made at run time in a temp dir, never kept), TLS 1.2-1.3,
# session tickets on; the client offers only --suite (default
# TLS_AES_128_GCM_SHA256) so every terminator negotiates that:
#   tern      tern-proxy --listen 127.0.0.1:P --to 127.0.0.1:B --workers 1
#             --tls-cert C --tls-key K
#   nginx     nginx -c CONF (worker_processes 1, stream { server { listen P
#             ssl; proxy_pass B; } }), its worker process measured
#   stunnel   stunnel4, one process in the foreground (accept/connect)
#   echo      not a terminator: tern-echo --workers 1 with --port and
#             --tls-port, giving the TLS/plain ratio on tern-echo itself
# The backend is tern-echo --workers 1 pinned to --backend-cpu (default 1,
# shared with the load: the machine has two cores); the load (tern-bench,
# openssl s_time) runs on --client-cpu (default 1).
#
# Workloads (each a fresh measurement against the running terminator):
#   full      tern-bench churn --tls -c 16 -s 32: full handshakes/s
#   resumed   the same with --tls-resume (reports how many resumed)
#   stime     openssl s_time -new: sequential full handshakes/s (one
#             connection at a time; its own CPU-bound client)
#   bulk      tern-bench pingpong --tls -c 16 -s 65536: MiB/s
#   rr        tern-bench rr --tls -c 50 -s 64: req/s and p99
# echo runs rr and bulk over TLS and over plain TCP.
# Every figure comes with the terminator's CPU: work per CPU-second of the
# terminator process (all its threads; nginx: its worker), from /proc.
# Rounds rotate the terminators' order; the table gives medians over rounds
# and tern's ratio to nginx and to stunnel (above 1: tern better). Exit
# status 3 when a measurement failed or saw errors (the table still prints).
#
# usage: tools/bench/run-tls-bench.sh [--rounds R] [--duration S]
#          [--warmup S] [--bin DIR] [--out DIR] [--terminators LIST]
#          [--workloads LIST] [--suite S] [--server-cpu N] [--client-cpu N]
#          [--backend-cpu N] [--quick]
#        tools/bench/run-tls-bench.sh --table RAW.csv   (the table again)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/build/bin
OUT=
ROUNDS=3
DURATION=5
WARMUP=1
TERMINATORS="tern nginx stunnel echo"
WORKLOADS="full resumed stime bulk rr"
SUITE=TLS_AES_128_GCM_SHA256
SERVER_CPU=0
CLIENT_CPU=1
BACKEND_CPU=1
NGINX_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
TABLE_ONLY=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
BENCH_NAME=run-tls-bench
BENCH_STOP_TICKS=40
# shellcheck source=tools/bench/lib.sh
. "$ROOT/tools/bench/lib.sh"
die() { bench_die "$@"; }

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --bin) BIN=$2; shift ;;
    --out) OUT=$2; shift ;;
    --terminators) TERMINATORS=$2; shift ;;
    --workloads) WORKLOADS=$2; shift ;;
    --suite) SUITE=$2; shift ;;
    --server-cpu) SERVER_CPU=$2; shift ;;
    --client-cpu) CLIENT_CPU=$2; shift ;;
    --backend-cpu) BACKEND_CPU=$2; shift ;;
    --quick) ROUNDS=1; DURATION=1; WARMUP=0.5 ;;
    --table) TABLE_ONLY=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done

for b in tern-bench tern-echo tern-proxy; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing: make build"
done
command -v openssl >/dev/null || die "openssl missing (apt-get install openssl)"
have() { command -v "$1" >/dev/null; }
HAVE_NGINX=0 HAVE_STUNNEL=0
have nginx && [ -f "$NGINX_MODULE" ] && HAVE_NGINX=1
have stunnel4 && HAVE_STUNNEL=1

TMP=$(mktemp -d /tmp/tern-tls-bench.XXXXXX)
DATE=$(date -u +%Y%m%dT%H%M%S)
OUT=${OUT:-$ROOT/build/bench-results}
mkdir -p "$OUT"
RAW=$OUT/tls-$DATE.csv
TABLE=$OUT/tls-$DATE.txt
LOG=$OUT/tls-$DATE.log
: >"$LOG"
CERT=$TMP/cert.pem
KEY=$TMP/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$KEY" \
  -out "$CERT" -days 1 -subj /CN=localhost >>"$LOG" 2>&1 || die "openssl req failed"

PIN_S=() PIN_C=() PIN_B=()
if command -v taskset >/dev/null && [ "$(nproc --all)" -ge 2 ]; then
  PIN_S=(taskset -c "$SERVER_CPU")
  PIN_C=(taskset -c "$CLIENT_CPU")
  PIN_B=(taskset -c "$BACKEND_CPU")
fi

BACKEND_PID=
BACKEND_PORT=
FAILED=0     # measurements that failed or saw errors: exit status 3
MEASURE_PID= # the process whose CPU is charged: terminator (nginx: worker)
TLS_PORT=    # echo: its TLS port (PORT is the plain one)

cleanup() {
  bench_stop_server
  if [ -n "$BACKEND_PID" ]; then
    kill -TERM "$BACKEND_PID" 2>/dev/null || true
    wait "$BACKEND_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "$BENCH_NAME: interrupted" >&2; exit 130' INT TERM

bench_server_argv() {
  local name=$1 port=$2
  case $name in
    tern)
      printf '%s\n' "${PIN_S[@]}" "$BIN/tern-proxy" --listen "127.0.0.1:$port" \
        --to "127.0.0.1:$BACKEND_PORT" --workers 1 --tls-cert "$CERT" --tls-key "$KEY" \
        --log-level warn
      ;;
    echo)
      printf '%s\n' "${PIN_S[@]}" "$BIN/tern-echo" --port "$port" --bind 127.0.0.1 --workers 1 \
        --tls-port "$TLS_PORT" --tls-cert "$CERT" --tls-key "$KEY" --log-level warn
      ;;
    nginx)
      cat >"$TMP/nginx.conf" <<EOF
load_module $NGINX_MODULE;
worker_processes 1;
events { worker_connections 4096; }
stream {
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    ssl_conf_command Ciphersuites $SUITE;
    proxy_pass 127.0.0.1:$BACKEND_PORT;
  }
}
EOF
      printf '%s\n' "${PIN_S[@]}" nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" \
        -g "daemon off; pid $TMP/nginx.pid; error_log $TMP/nginx-error.log warn;"
      ;;
    stunnel)
      cat >"$TMP/stunnel.conf" <<EOF
foreground = yes
pid =
output = $TMP/stunnel.log
debug = 3
[tls]
accept = 127.0.0.1:$port
connect = 127.0.0.1:$BACKEND_PORT
cert = $CERT
key = $KEY
sslVersionMin = TLSv1.2
ciphersuites = $SUITE
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
EOF
      printf '%s\n' "${PIN_S[@]}" stunnel4 "$TMP/stunnel.conf"
      ;;
  esac
}

bench_server_ready() {
  bench_listening "$1" || return 1
  [ "$CUR" != echo ] || bench_listening "$TLS_PORT"
}

# The process that does the TLS work: nginx's worker, else the server itself.
find_measure_pid() {
  local _i child
  MEASURE_PID=$SERVER_PID
  [ "$CUR" = nginx ] || return 0
  for _i in $(seq 1 100); do
    child=$(pgrep -P "$SERVER_PID" | head -n1 || true)
    if [ -n "$child" ]; then
      MEASURE_PID=$child
      return 0
    fi
    sleep 0.05
  done
  die "nginx started no worker (see $LOG, $TMP/nginx-error.log)"
}

# utime + stime of PID (all threads), in clock ticks.
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# rec ROUND NAME WORKLOAD KEY VALUE: one row of the raw CSV.
rec() { echo "$DATE,$1,$2,$3,$4,$5" >>"$RAW"; }

json_get() { bench_json_get "$@"; }

# tb ROUND NAME WORKLOAD PORT ARGS...: one tern-bench measurement.
tb() {
  local round=$1 name=$2 wl=$3 port=$4 out rate cpu key
  shift 4
  out=$TMP/out.json
  echo "== $round $name $wl: tern-bench $* -p $port" >>"$LOG"
  if ! "${PIN_C[@]}" "$BIN/tern-bench" "$@" -p "$port" -d "$DURATION" -w "$WARMUP" --json \
    --no-progress --pid "$MEASURE_PID" --tls-ciphersuites "$SUITE" >"$out" 2>>"$LOG"; then
    echo "$BENCH_NAME: $name $wl failed (see $LOG)" >&2
    FAILED=$((FAILED + 1))
  fi
  cat "$out" >>"$LOG"
  case $1 in
    churn) key=conns_per_s ;;
    pingpong) key=mib_per_s ;;
    rr) key=req_per_s ;;
  esac
  rate=$(json_get "$out" "$key")
  cpu=$(json_get "$out" server_cpu_pct)
  [ -n "$rate" ] || return 0
  rec "$round" "$name" "$wl" rate "$rate"
  rec "$round" "$name" "$wl" server_cpu_pct "$cpu"
  rec "$round" "$name" "$wl" client_cpu_pct "$(json_get "$out" client_cpu_pct)"
  rec "$round" "$name" "$wl" errors "$(json_get "$out" errors)"
  if [ -n "$cpu" ]; then
    rec "$round" "$name" "$wl" per_cpu_s "$(awk -v r="$rate" -v c="$cpu" \
      'BEGIN { if (c > 0) printf "%.1f", r * 100 / c }')"
  fi
  [ "$1" != rr ] || rec "$round" "$name" "$wl" p99_us "$(json_get "$out" lat_p99_us)"
  if [ "$wl" = resumed ] || [ "$wl" = full ]; then
    rec "$round" "$name" "$wl" resumed_pct "$(awk -v h="$(json_get "$out" tls_handshakes)" \
      -v r="$(json_get "$out" tls_resumed)" 'BEGIN { printf "%.1f", (h > 0 ? 100 * r / h : 0) }')"
  fi
}

# stime ROUND NAME PORT: openssl s_time -new, timed here (s_time's own wall
# time is whole seconds), with the terminator's CPU read from /proc.
stime() {
  local round=$1 name=$2 port=$3 t0 t1 c0 c1 out n secs rate cpu
  out=$TMP/stime.txt
  c0=$(proc_ticks "$MEASURE_PID")
  t0=$(date +%s%N)
  "${PIN_C[@]}" openssl s_time -connect "127.0.0.1:$port" -new -time "$DURATION" \
    -ciphersuites "$SUITE" >"$out" 2>>"$LOG" || true
  t1=$(date +%s%N)
  c1=$(proc_ticks "$MEASURE_PID")
  cat "$out" >>"$LOG"
  n=$(grep -o '^[0-9]* connections in [0-9.]* real' "$out" | awk '{ print $1 }' | head -n1)
  if [ -z "$n" ]; then
    echo "$BENCH_NAME: $name s_time failed (see $LOG)" >&2
    FAILED=$((FAILED + 1))
    return 0
  fi
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  rate=$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
  cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v s="$secs" \
    'BEGIN { printf "%.1f", 100 * (b - a) / hz / s }')
  rec "$round" "$name" stime rate "$rate"
  rec "$round" "$name" stime server_cpu_pct "$cpu"
  rec "$round" "$name" stime per_cpu_s "$(awk -v n="$n" -v a="$c0" -v b="$c1" -v hz="$HZ" \
    'BEGIN { if (b > a) printf "%.1f", n * hz / (b - a) }')"
}

# table CSV "SERVERS": medians over rounds and tern's ratios, from a raw CSV.
table() {
  awk -F, -v servers="$2" "$BENCH_AWK_MEDIAN"'
    NR > 1 { v[$3 "," $4 "," $5] = v[$3 "," $4 "," $5] " " $6; seen[$4] = 1 }
    function med(s, w, k) { return ((s "," w "," k) in v) ? median(v[s "," w "," k]) : "" }
    function ratio(a, b) { return (a != "" && b != "" && b > 0) ? sprintf("%.2f", a / b) : "-" }
    function show(x, f) { return x == "" ? "-" : sprintf(f, x) }
    BEGIN {
      nw = split("full resumed stime bulk rr", wls, " ")
      unit["full"] = "handshakes/s"; unit["resumed"] = "resumed hs/s"; unit["stime"] = "s_time -new conn/s"
      unit["bulk"] = "MiB/s"; unit["rr"] = "req/s"
    }
    END {
      printf "%-20s %-8s %8s %10s %5s %5s %7s %5s %11s %12s\n", "figure", "server", "rate", "per-cpu-s", "srv%", "cli%", "p99us", "res%", "tern/nginx", "tern/stunnel"
      for (i = 1; i <= nw; i++) {
        w = wls[i]; if (!(w in seen)) continue
        ns = split(servers, sv, " ")
        for (j = 1; j <= ns; j++) {
          s = sv[j]; if (s == "echo") continue
          r = med(s, w, "rate"); if (r == "") continue
          pc = med(s, w, "per_cpu_s")
          rt = s == "tern" ? ratio(med("tern", w, "rate"), med("nginx", w, "rate")) "/" ratio(med("tern", w, "per_cpu_s"), med("nginx", w, "per_cpu_s")) : ""
          rs = s == "tern" ? ratio(med("tern", w, "rate"), med("stunnel", w, "rate")) "/" ratio(med("tern", w, "per_cpu_s"), med("stunnel", w, "per_cpu_s")) : ""
          printf "%-20s %-8s %8s %10s %5s %5s %7s %5s %11s %12s\n", unit[w], s, show(r, "%.0f"), show(pc, "%.0f"), show(med(s, w, "server_cpu_pct"), "%.0f"), show(med(s, w, "client_cpu_pct"), "%.0f"), show(med(s, w, "p99_us"), "%.0f"), show(med(s, w, "resumed_pct"), "%.0f"), rt, rs
        }
      }
      print "(srv%/cli%: terminator / load CPU, 100 = one core; ratios: rate / per-cpu-s; above 1: tern ahead)"
      if ("rr-tls" in seen || "bulk-tls" in seen) {
        print ""
        print "TLS on tern-echo itself (--tls-port against its plain port):"
        printf "%-12s %10s %10s %12s %12s %10s %12s\n", "figure", "tls", "plain", "tls/plain", "tls/cpu-s", "plain/cpu-s", "cpu ratio"
        split("rr bulk", ew, " ")
        for (i = 1; i <= 2; i++) {
          a = med("echo", ew[i] "-tls", "rate"); b = med("echo", ew[i] "-plain", "rate")
          ca = med("echo", ew[i] "-tls", "per_cpu_s"); cb = med("echo", ew[i] "-plain", "per_cpu_s")
          if (a == "") continue
          printf "%-12s %10s %10s %12s %12s %10s %12s\n", ew[i] (ew[i] == "rr" ? " req/s" : " MiB/s"), show(a, "%.0f"), show(b, "%.0f"), ratio(a, b), show(ca, "%.0f"), show(cb, "%.0f"), ratio(ca, cb)
        }
      }
    }' "$1"
}

run_terminator() {
  local round=$1 name=$2 port wl
  CUR=$name
  if [ "$name" = echo ]; then
    TLS_PORT=$(bench_free_port) || die "no free port"
  fi
  bench_start_server "$name" || {
    echo "$BENCH_NAME: $name did not start (see $LOG)" >&2
    FAILED=$((FAILED + 1))
    return 0
  }
  find_measure_pid
  port=$PORT
  if [ "$name" = echo ]; then
    for wl in $WORKLOADS; do
      case $wl in
        bulk)
          tb "$round" echo bulk-tls "$TLS_PORT" pingpong --tls -c 16 -s 65536
          tb "$round" echo bulk-plain "$PORT" pingpong -c 16 -s 65536
          ;;
        rr)
          tb "$round" echo rr-tls "$TLS_PORT" rr --tls -c 50 -s 64
          tb "$round" echo rr-plain "$PORT" rr -c 50 -s 64
          ;;
      esac
    done
  else
    for wl in $WORKLOADS; do
      case $wl in
        full) tb "$round" "$name" full "$port" churn --tls -c 16 -s 32 ;;
        resumed) tb "$round" "$name" resumed "$port" churn --tls-resume -c 16 -s 32 ;;
        stime) stime "$round" "$name" "$port" ;;
        bulk) tb "$round" "$name" bulk "$port" pingpong --tls -c 16 -s 65536 ;;
        rr) tb "$round" "$name" rr "$port" rr --tls -c 50 -s 64 ;;
      esac
    done
  fi
  bench_stop_server
}

if [ -n "$TABLE_ONLY" ]; then
  table "$TABLE_ONLY" "$(awk -F, 'NR > 1 && !seen[$3]++ { printf "%s ", $3 }' "$TABLE_ONLY")"
  exit 0
fi

# The backend, for the whole run.
BACKEND_PORT=$(bench_free_port) || die "no free port"
"${PIN_B[@]}" "$BIN/tern-echo" --port "$BACKEND_PORT" --bind 127.0.0.1 --workers 1 \
  --log-level warn >>"$LOG" 2>&1 &
BACKEND_PID=$!
for _i in $(seq 1 100); do
  bench_listening "$BACKEND_PORT" && break
  sleep 0.05
done
bench_listening "$BACKEND_PORT" || die "backend tern-echo did not start"

LIST=()
for t in $TERMINATORS; do
  case $t in
    nginx) [ "$HAVE_NGINX" = 1 ] || { echo "$BENCH_NAME: no nginx + stream module (apt-get install nginx-light libnginx-mod-stream); skipping" >&2; continue; } ;;
    stunnel) [ "$HAVE_STUNNEL" = 1 ] || { echo "$BENCH_NAME: no stunnel4 (apt-get install stunnel4); skipping" >&2; continue; } ;;
  esac
  LIST+=("$t")
done
[ ${#LIST[@]} -gt 0 ] || die "nothing to run"

echo "date,round,server,workload,key,value" >"$RAW"
LOAD_START=$(bench_loadavg)
echo "$BENCH_NAME: ${#LIST[@]} servers x $ROUNDS rounds, ${DURATION}s each; raw: $RAW" >&2
for round in $(seq 1 "$ROUNDS"); do
  n=${#LIST[@]}
  for i in $(seq 0 $((n - 1))); do
    name=${LIST[$(((i + round - 1) % n))]}
    echo "$BENCH_NAME: round $round: $name" >&2
    run_terminator "$round" "$name"
  done
done
LOAD_END=$(bench_loadavg)

# ---- the table: medians over rounds, tern's ratios -----------------------
{
  echo "TLS termination, $(bench_machine); commit $(bench_commit "$ROOT"), $DATE"
  echo "rounds $ROUNDS x ${DURATION}s (warm-up ${WARMUP}s), suite $SUITE, server cpu $SERVER_CPU," \
    "client cpu $CLIENT_CPU, backend cpu $BACKEND_CPU; loadavg $LOAD_START -> $LOAD_END"
  echo "medians over rounds; per-cpu-s = work per CPU-second of the terminator process"
  echo
  table "$RAW" "${LIST[*]}"
} | tee "$TABLE"
echo "$BENCH_NAME: raw $RAW, log $LOG" >&2
if [ "$FAILED" -gt 0 ]; then
  echo "$BENCH_NAME: $FAILED measurement(s) failed or saw errors" >&2
  exit 3
fi
