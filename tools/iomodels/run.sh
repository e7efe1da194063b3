#!/usr/bin/env bash
# The I/O-model comparison of docs/io-models.md: every server in
# tools/iomodels plus tern-echo at 1 and N (= nproc) workers, under the same
# tern-bench load, in one run.
#
# Workloads, each with a fresh server:
#   rr    closed-loop request/response, 32 B, one request in flight per
#         active connection, at 10, 100, 1,000 and 10,000 connections
#         (--conns) of which min(C, 100) send (--active-max) and the rest
#         stay open and silent: throughput, p50/p99 latency, and the
#         server's CPU time per request (its utime + stime over the measured
#         window, from /proc/PID/stat, divided by the requests)
#   idle  10,000 silent connections (--idle-conns; select: 1,000): the
#         server's RSS per connection and its CPU use while nothing happens
# Where a model cannot go the run records a "stopped" row with the reason
# instead of a number (select past FD_SETSIZE).
#
# Servers are interleaved within each round, their order rotating from
# round to round; every point is repeated R times (--rounds, default 3) and
# the tables and plots show medians. Nothing is pinned: tern-echo with N
# workers needs every core, and the client is one thread. Results:
#   OUT/iomodels.csv       medians, one row per server x workload x connections
#   OUT/iomodels-runs.csv  every run
#   OUT/iomodels.json      machine, load average, settings, medians
#   OUT/iomodels-*.svg     plots (gnuplot; installed via tools/install-deps.sh),
#   OUT/iomodels-*.png     and the same as PNG
# OUT is docs/bench, or build/bench-results/iomodels with --quick (one short
# round at 10, 100 and 1,000 connections, 1,000 idle: a smoke test).
#
# Builds what is missing (Release, in --build DIR, default build/) and runs
# private copies of the binaries, so a rebuild mid-run changes nothing.
#
# usage: tools/iomodels/run.sh [--quick] [--rounds R] [--duration S] [--warmup S]
#          [--conns LIST] [--active-max K] [--idle-conns N] [--idle-hold S]
#          [--servers LIST] [--build DIR] [--out DIR] [--no-plot] [--replot]
# --replot measures nothing: it redraws the tables and plots from
# OUT/iomodels-runs.csv, keeping the machine and load recorded in
# OUT/iomodels.json.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build
OUT=
QUICK=0
ROUNDS=3
DURATION=3
WARMUP=1
CONNS="10 100 1000 10000"
ACTIVE_MAX=100
IDLE_CONNS=10000
IDLE_HOLD=2
SELECT_MAX=1000 # FD_SETSIZE is 1,024 descriptors, the listener and stdio included
PLOT=1
REPLOT=0
NCPU=$(nproc)
SERVERS="blocking busy select poll epoll-lt epoll-et sigio uring tern-w1"
[ "$NCPU" -gt 1 ] && SERVERS="$SERVERS tern-w$NCPU"
SET_ROUNDS=0 SET_DURATION=0 SET_CONNS=0 SET_IDLE=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() {
  echo "iomodels/run.sh: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=$2; SET_ROUNDS=1; shift ;;
    --duration) DURATION=$2; SET_DURATION=1; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --conns) CONNS=$2; SET_CONNS=1; shift ;;
    --active-max) ACTIVE_MAX=$2; shift ;;
    --idle-conns) IDLE_CONNS=$2; SET_IDLE=1; shift ;;
    --idle-hold) IDLE_HOLD=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --build) BUILD=$(mkdir -p "$2" && cd "$2" && pwd); shift ;;
    --out) OUT=$2; shift ;;
    --no-plot) PLOT=0 ;;
    --replot) REPLOT=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
if [ $QUICK = 1 ]; then
  [ $SET_ROUNDS = 1 ] || ROUNDS=1
  [ $SET_DURATION = 1 ] || DURATION=0.5
  WARMUP=0.2
  IDLE_HOLD=0.5
  [ $SET_CONNS = 1 ] || CONNS="10 100 1000"
  [ $SET_IDLE = 1 ] || IDLE_CONNS=1000
  OUT=${OUT:-$ROOT/build/bench-results/iomodels}
fi
OUT=${OUT:-$ROOT/docs/bench}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# ---- binaries ---------------------------------------------------------------
BIN=$BUILD/bin
need=(tern-bench)
for s in $SERVERS; do
  case $s in
    tern-w*) need+=(tern-echo) ;;
    *) need+=("iomodel-$s") ;;
  esac
done
[ $REPLOT = 1 ] && need=()
missing=()
for b in "${need[@]}"; do [ -x "$BIN/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "building ${missing[*]} in $BUILD (Release)" >&2
  [ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j "$NCPU" --target "${missing[@]}" >/dev/null
fi
for b in "${need[@]}"; do [ -x "$BIN/$b" ] || die "$BIN/$b is missing (liburing-dev for iomodel-uring?)"; done
if [ $PLOT = 1 ] && ! command -v gnuplot >/dev/null; then
  TERN_EXTRA_DEPS="gnuplot-nox" bash "$ROOT/tools/install-deps.sh" || die "no gnuplot; use --no-plot"
fi

TMP=$(mktemp -d /tmp/iomodels-run.XXXXXX)
SPID=
cleanup() {
  if [ -n "$SPID" ]; then kill -KILL "$SPID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for b in "${need[@]}"; do cp "$BIN/$b" "$TMP/"; done
# Which binaries ran, for the record: name:sha256-prefix, and the tree's commit.
BINARIES=$(cd "$TMP" && for b in "${need[@]}"; do [ -f "$b" ] && echo "$b:$(sha256sum "$b" | cut -c1-16)"; done | sort -u | tr '\n' ' ')
GIT_HEAD=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
ulimit -n "$(ulimit -Hn)"
[ $REPLOT = 1 ] || [ "$(ulimit -n)" -ge $((IDLE_CONNS + 100)) ] || die "open-file limit $(ulimit -n) is below $IDLE_CONNS connections"

# ---- one server ---------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server NAME: sets SPID and SPORT, or returns 1 with the reason in WHY.
start_server() {
  local s=$1 i line
  SPID= SPORT= WHY=
  : >"$TMP/stdout"
  case $s in
    tern-w*)
      SPORT=$(free_port)
      "$TMP/tern-echo" --port "$SPORT" --bind 127.0.0.1 --workers "${s#tern-w}" \
        --log-level warn >"$TMP/stdout" 2>>"$TMP/server.log" &
      SPID=$!
      for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$SPORT") 2>/dev/null; then return 0; fi
        sleep 0.05
      done
      ;;
    *)
      "$TMP/iomodel-$s" --port 0 >"$TMP/stdout" 2>>"$TMP/server.log" &
      SPID=$!
      for i in $(seq 100); do
        line=$(head -n1 "$TMP/stdout")
        case $line in
          port\ *) SPORT=${line#port }; return 0 ;;
          unsupported:*) WHY=$line; wait "$SPID" || true; SPID=; return 1 ;;
        esac
        sleep 0.05
      done
      ;;
  esac
  WHY="did not start"
  stop_server
  return 1
}

stop_server() {
  local i
  [ -n "$SPID" ] || return 0
  kill -TERM "$SPID" 2>/dev/null || true
  for i in $(seq 100); do
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  SPID=
}

# ---- runs ---------------------------------------------------------------------
RUNS=$OUT/iomodels-runs.csv
[ $QUICK = 1 ] || RUNS=$TMP/runs.csv
echo "round,server,mode,conns,active,status,req_per_s,lat_p50_us,lat_p99_us,server_cpu_pct,cpu_us_per_req,rss_per_conn_bytes,errors,note" >"$RUNS"

# record ROUND SERVER MODE CONNS ACTIVE STATUS JSONFILE NOTE
record() {
  python3 - "$@" >>"$RUNS" <<'EOF'
import json, sys
rnd, srv, mode, conns, active, status, jf, note = sys.argv[1:9]
d = {}
try:
    d = json.load(open(jf))
except Exception:
    pass
def g(k, fmt="%.1f"):
    return fmt % d[k] if k in d else ""
cpu = ""
if d.get("requests") and "server_cpu_pct" in d:
    cpu = "%.2f" % (d["server_cpu_pct"] / 100 * d["duration_s"] * 1e6 / d["requests"])
if status == "ok" and d.get("errors"):
    status = "errors"
print(",".join([rnd, srv, mode, conns, active, status, g("req_per_s"), g("lat_p50_us"),
                g("lat_p99_us"), g("server_cpu_pct"), cpu, g("rss_per_conn_bytes"),
                g("errors", "%d"), note.replace(",", ";")]))
EOF
}

# measure ROUND SERVER MODE CONNS
measure() {
  local r=$1 s=$2 mode=$3 c=$4 a rc=0 limit note=""
  a=$c
  [ "$mode" = rr ] && [ "$c" -gt "$ACTIVE_MAX" ] && a=$ACTIVE_MAX
  if [ "$s" = select ] && [ "$c" -gt $SELECT_MAX ]; then
    record "$r" "$s" "$mode" "$c" "$a" stopped /dev/null \
      "FD_SETSIZE: select cannot watch descriptors >= 1024"
    return
  fi
  if ! start_server "$s"; then
    record "$r" "$s" "$mode" "$c" "$a" stopped /dev/null "$WHY"
    return
  fi
  limit=$(python3 -c "print(int($WARMUP + $DURATION + $IDLE_HOLD + 90))")
  if [ "$mode" = rr ]; then
    timeout "$limit" "$TMP/tern-bench" rr -p "$SPORT" -c "$c" --active "$a" -s 32 \
      -d "$DURATION" -w "$WARMUP" --pid "$SPID" --setup-timeout 30 --json --no-progress \
      >"$TMP/out.json" 2>"$TMP/err" || rc=$?
  else
    timeout "$limit" "$TMP/tern-bench" idle -p "$SPORT" -c "$c" -d "$IDLE_HOLD" --pid "$SPID" \
      --setup-timeout 30 --json --no-progress >"$TMP/out.json" 2>"$TMP/err" || rc=$?
  fi
  stop_server
  case $rc in
    0 | 3) record "$r" "$s" "$mode" "$c" "$a" ok "$TMP/out.json" "" ;;
    *)
      note="tern-bench exit $rc: $(tail -n1 "$TMP/err" | tr -d '\r')"
      record "$r" "$s" "$mode" "$c" "$a" failed /dev/null "$note"
      ;;
  esac
  printf '  %-9s %-4s %6s conns  %s\n' "$s" "$mode" "$c" "$(tail -n1 "$RUNS" | cut -d, -f6-9)" >&2
}

measure_all() {
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
read -r -a srv <<<"$SERVERS"
n=${#srv[@]}
echo "iomodels: ${srv[*]}; rounds $ROUNDS, rr ${DURATION}s (+${WARMUP}s warm-up) at $CONNS connections; load $LOAD_BEFORE" >&2
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  for c in $CONNS; do
    for i in $(seq 0 $((n - 1))); do
      measure "$r" "${srv[$(((i + r - 1) % n))]}" rr "$c"
    done
  done
  for i in $(seq 0 $((n - 1))); do
    s=${srv[$(((i + r - 1) % n))]}
    c=$IDLE_CONNS
    [ "$s" = select ] && [ "$c" -gt $SELECT_MAX ] && c=$SELECT_MAX
    measure "$r" "$s" idle "$c"
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
[ $QUICK = 1 ] || cp "$RUNS" "$OUT/iomodels-runs.csv"
RUNS=$OUT/iomodels-runs.csv
}

if [ $REPLOT = 1 ]; then
  RUNS=$OUT/iomodels-runs.csv
  [ -f "$RUNS" ] && [ -f "$OUT/iomodels.json" ] || die "--replot needs $RUNS and $OUT/iomodels.json"
  eval "$(python3 - "$OUT/iomodels.json" <<'EOF'
import json, shlex, sys
d = json.load(open(sys.argv[1]))
m, s = d["machine"], d["settings"]
for k, v in [("STARTED", m["started"]), ("LOAD_BEFORE", m["load_before"]), ("LOAD_AFTER", m["load_after"]),
             ("ROUNDS", s["rounds"]), ("DURATION", s["duration"]), ("WARMUP", s["warmup"]),
             ("ACTIVE_MAX", s["active_max"]), ("IDLE_HOLD", s["idle_hold"]), ("NCPU", m["cpus"]),
             ("GIT_HEAD", m.get("git_head", "")), ("BINARIES", " ".join(m.get("binaries", [])))]:
    print("%s=%s" % (k, shlex.quote(str(v))))
EOF
)"
else
  measure_all
fi

# ---- medians, JSON, plots -------------------------------------------------------
export STARTED LOAD_BEFORE LOAD_AFTER ROUNDS DURATION WARMUP ACTIVE_MAX IDLE_HOLD NCPU BINARIES GIT_HEAD
python3 - "$RUNS" "$OUT" "$TMP" <<'EOF'
import csv, json, os, platform, statistics, sys
runs_file, out, tmp = sys.argv[1:4]
rows = list(csv.DictReader(open(runs_file)))
order = []
for r in rows:
    if r["server"] not in order:
        order.append(r["server"])
order.sort(key=lambda s: (s.startswith("tern"), ["blocking", "busy", "select", "poll", "epoll-lt",
           "epoll-et", "sigio", "uring"].index(s) if not s.startswith("tern") else int(s[6:])))
groups = {}
for r in rows:
    groups.setdefault((r["server"], r["mode"], int(r["conns"])), []).append(r)
fields = ["req_per_s", "lat_p50_us", "lat_p99_us", "server_cpu_pct", "cpu_us_per_req",
          "rss_per_conn_bytes"]
med = []
for (srv, mode, conns), rs in sorted(groups.items(), key=lambda k: (order.index(k[0][0]), k[0][1], k[0][2])):
    good = [r for r in rs if r["status"] == "ok"]
    m = {"server": srv, "mode": mode, "conns": conns, "active": int(rs[0]["active"]),
         "runs": len(rs), "ok_runs": len(good)}
    if good:
        m["status"] = "ok"
        for f in fields:
            vals = [float(r[f]) for r in good if r[f] != ""]
            if vals:
                m[f] = round(statistics.median(vals), 2)
    else:
        m["status"] = rs[0]["status"]
        m["note"] = rs[0]["note"]
    med.append(m)
with open(os.path.join(out, "iomodels.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["server", "mode", "conns", "active", "status", "ok_runs", "runs"] + fields + ["note"])
    for m in med:
        w.writerow([m["server"], m["mode"], m["conns"], m["active"], m["status"], m["ok_runs"],
                    m["runs"]] + [m.get(f, "") for f in fields] + [m.get("note", "")])
cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
mem = open("/proc/meminfo").readline().split()[1]
machine = {"cpu": cpu, "cpus": int(os.environ["NCPU"]), "kernel": platform.release(),
           "mem_kib": int(mem), "started": os.environ["STARTED"],
           "load_before": os.environ["LOAD_BEFORE"], "load_after": os.environ["LOAD_AFTER"],
           "git_head": os.environ.get("GIT_HEAD", ""), "binaries": os.environ.get("BINARIES", "").split()}
settings = {k.lower(): os.environ[k] for k in ["ROUNDS", "DURATION", "WARMUP", "ACTIVE_MAX", "IDLE_HOLD"]}
json.dump({"machine": machine, "settings": settings, "medians": med}, open(os.path.join(out, "iomodels.json"), "w"), indent=1)

label = {"blocking": "blocking, thread/conn", "busy": "non-blocking busy poll", "select": "select",
         "poll": "poll", "epoll-lt": "epoll LT", "epoll-et": "epoll ET", "sigio": "signal-driven (RT signal)",
         "uring": "io_uring (Proactor)"}
def name(s):
    if s.startswith("tern-w"):
        n = s[6:]
        return "tern-echo, %s worker%s" % (n, "" if n == "1" else "s")
    return label.get(s, s)
# One data file per server for the rr curves; stops go into the titles.
plots = []
for s in order:
    pts = [m for m in med if m["server"] == s and m["mode"] == "rr"]
    ok = [m for m in pts if m["status"] == "ok"]
    stop = [m for m in pts if m["status"] != "ok"]
    fn = os.path.join(tmp, "rr-%s.dat" % s)
    with open(fn, "w") as f:
        for m in ok:
            f.write("%d %s %s %s\n" % (m["conns"], m.get("req_per_s", "NaN"),
                                       m.get("lat_p99_us", "NaN"), m.get("cpu_us_per_req", "NaN")))
    title = name(s)
    if stop:
        title += " (stops at %d: %s)" % (max(m["conns"] for m in ok) if ok else 0,
                                          "FD_SETSIZE" if "FD_SETSIZE" in stop[0].get("note", "") else stop[0]["status"])
    plots.append((fn, title))
with open(os.path.join(tmp, "idle.dat"), "w") as f:
    for i, s in enumerate(order):
        for m in med:
            if m["server"] == s and m["mode"] == "idle" and m["status"] == "ok":
                f.write('%d %.0f %.0f "%s\\n(%d conns, CPU %.0f%%)"\n' % (
                    i, m.get("rss_per_conn_bytes", 0), m.get("server_cpu_pct", 0),
                    name(s), m["conns"], m.get("server_cpu_pct", 0)))
when = "%s, %s (%d CPUs), Linux %s, load %s" % (machine["started"][:16].replace("T", " "),
        cpu, machine["cpus"], machine["kernel"], machine["load_before"])
act = os.environ["ACTIVE_MAX"]
colors = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf", "#1f77b4", "#bcbd22", "#2ca02c",
          "#ff7f0e", "#d62728"]
def curve(col, ylabel, title, fname, logy):
    g = ['set terminal svg size 1100,600 dynamic enhanced font "sans,12" background "#ffffff"',
         'set output "%s"' % os.path.join(out, fname),
         'set title "%s: rr 32 B, min(C, %s) of C connections active, medians\\n{/*0.8 %s}"' % (title, act, when.replace("_", "\\\\_")),
         'set logscale x', 'set xlabel "connections open (C)"', 'set ylabel "%s"' % ylabel,
         'set key outside right top', 'set grid', 'set xtics ("10" 10, "100" 100, "1,000" 1000, "10,000" 10000)',
         'set xrange [7:14000]']
    g.append('set logscale y; set yrange [*:*]' if logy else 'unset logscale y; set yrange [0:*]')
    g.append('plot ' + ', '.join('"%s" using 1:%d with linespoints lw %d lc rgb "%s" pt %d title "%s"' % (
        fn, col, 3 if "tern" in t else 2, colors[i % len(colors)], 5 + i % 9,
        t.replace("_", "\\\\_")) for i, (fn, t) in enumerate(plots)))
    return "\n".join(g) + "\n"
script = curve(2, "requests/s", "Throughput", "iomodels-throughput.svg", False)
script += curve(3, "p99 latency (us)", "p99 latency", "iomodels-p99.svg", True)
script += curve(4, "server CPU time per request (us)", "Server CPU per request", "iomodels-cpu.svg", False)
script += "\n".join([
    'set terminal svg size 960,560 dynamic enhanced font "sans,12" background "#ffffff"',
    'set output "%s"' % os.path.join(out, "iomodels-idle.svg"),
    'unset logscale', 'unset xrange', 'set key off', 'set grid y', 'set logscale y',
    'set title "Idle connections: server RSS per connection (CPU use while idle in the label)\\n{/*0.8 medians; %s}"' % when.replace("_", "\\\\_"),
    'set ylabel "bytes of RSS per idle connection (log scale)"', 'set xlabel ""', 'set yrange [10:*]',
    'set style fill solid 0.6', 'set boxwidth 0.7', 'set xtics rotate by -30 font ",9" noenhanced',
    'plot "%s" using 1:2:xticlabels(4) with boxes, "" using 1:2:(sprintf("%%.0f", $2)) with labels offset 0,0.7' % os.path.join(tmp, "idle.dat"),
]) + "\n"
open(os.path.join(tmp, "plot.gp"), "w").write(script)

# A table for the terminal (and docs/io-models.md).
print("\n| server | " + " | ".join("rr %s conns (req/s, p99 us, CPU us/req)" % c for c in sorted({m["conns"] for m in med if m["mode"] == "rr"})) + " | idle: B/conn, CPU % |")
print("|---" * (2 + len({m["conns"] for m in med if m["mode"] == "rr"})) + "|")
for s in order:
    cells = []
    for c in sorted({m["conns"] for m in med if m["mode"] == "rr"}):
        m = next((m for m in med if m["server"] == s and m["mode"] == "rr" and m["conns"] == c), None)
        if not m:
            cells.append("")
        elif m["status"] != "ok":
            cells.append("stopped: " + m.get("note", m["status"]))
        else:
            cells.append("%.0f / %.0f / %.1f" % (m.get("req_per_s", 0), m.get("lat_p99_us", 0), m.get("cpu_us_per_req", float("nan"))))
    i = next((m for m in med if m["server"] == s and m["mode"] == "idle"), None)
    cells.append("%.0f B, %.0f%% (%d)" % (i.get("rss_per_conn_bytes", 0), i.get("server_cpu_pct", 0), i["conns"]) if i and i["status"] == "ok" else "")
    print("| %s | %s |" % (name(s), " | ".join(cells)))
EOF
if [ $PLOT = 1 ]; then
  gnuplot "$TMP/plot.gp" 2>"$TMP/gnuplot.err" || { cat "$TMP/gnuplot.err" >&2; die "gnuplot failed"; }
  # The same plots as PNG, for viewers that do not render SVG.
  sed -e 's/^set terminal svg size \([0-9]*\),\([0-9]*\) dynamic enhanced font "sans,12"/set terminal pngcairo size \1,\2 enhanced font "sans,10"/' \
    -e 's/\.svg"$/.png"/' "$TMP/plot.gp" >"$TMP/plot-png.gp"
  gnuplot "$TMP/plot-png.gp" 2>"$TMP/gnuplot.err" || { cat "$TMP/gnuplot.err" >&2; die "gnuplot (png) failed"; }
fi
echo "load before $LOAD_BEFORE, after $LOAD_AFTER; results in $OUT/iomodels{.csv,-runs.csv,.json}$([ $PLOT = 1 ] && echo ', iomodels-*.{svg,png}')" >&2
if grep -q ',failed,' "$RUNS"; then
  echo "some runs failed: see the note column of $RUNS" >&2
  exit 1
fi
