#!/usr/bin/env bash
# shellcheck disable=SC2028 # the \n in gnuplot titles are for gnuplot, not echo
# Draws run-echo-bench.sh's medians as SVG with gnuplot:
#   echo-throughput.svg  pingpong MiB/s against connections (1 KiB and 16 KiB
#                        blocks), one line per pinned server
#   echo-latency.svg     rr 32 B latency p50/p90/p99/p99.9 per server, at 100
#                        and 1,000 connections
#   echo-idle-memory.svg server RSS per idle connection, per server
#   echo-workers.svg     tern-echo with 1, 2 and 4 workers (unpinned):
#                        pingpong 100 x 16 KiB and rr at 100 and 1,000
#                        connections, the pinned epoll loop as a reference
#   echo-handoff.svg     connect() to first echoed byte, p50 and p99
# Each plot's title carries the run's date, machine and load average. A plot
# whose workloads are not in the results is skipped with a note.
#
# Needs gnuplot (Debian: gnuplot-nox; `TERN_EXTRA_DEPS=gnuplot-nox
# tools/install-deps.sh` installs it).
#
# usage: tools/bench/plot.sh [--out DIR] [--png] [RESULTS.json]
#   RESULTS.json  default: the newest docs/bench/echo-*.json
#   --out DIR     where the plots go (default: the directory of RESULTS.json)
#   --png         PNG (pngcairo) instead of SVG
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=
JSON=
EXT=svg

usage() { sed -n '3,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() {
  echo "plot: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT=$2; shift ;;
    --png) EXT=png ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; exit 2 ;;
    *) JSON=$1 ;;
  esac
  shift
done

command -v gnuplot >/dev/null ||
  die "gnuplot not found: install it (apt-get install gnuplot-nox, or" \
      "TERN_EXTRA_DEPS=gnuplot-nox tools/install-deps.sh)"
if [ -z "$JSON" ]; then
  # shellcheck disable=SC2012 # our own file names, no odd characters
  JSON=$(ls -t "$ROOT"/docs/bench/echo-*.json 2>/dev/null | head -n1)
  [ -n "$JSON" ] || die "no docs/bench/echo-*.json: run tools/bench/run-echo-bench.sh first"
fi
[ -s "$JSON" ] || die "$JSON: no such file or empty"
: "${OUT:=$(dirname "$JSON")}"
mkdir -p "$OUT"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-plot.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# One result per line in run-echo-bench.sh's JSON: server workload metric median.
sed -n 's/.*"server": "\([^"]*\)", "workload": "\([^"]*\)", "metric": "\([^"]*\)", "median": \([-0-9.eE+]*\),.*/\1\t\2\t\3\t\4/p' \
  "$JSON" >"$WORK/medians.tsv"
[ -s "$WORK/medians.tsv" ] || die "$JSON holds no results"

jstr() { sed -n "s/.*\"$1\": \"\\([^\"]*\\)\".*/\\1/p" "$JSON" | head -n1; }
jnum() { sed -n "s/.*\"$1\": \\([0-9.]*\\).*/\\1/p" "$JSON" | head -n1; }
SUB="$(jstr started | cut -c1-16 | tr T ' ') UTC, $(jstr cpu), $(jnum cores) cores, Linux $(jstr kernel);"
SUB="$SUB load $(jstr loadavg_start) -> $(jstr loadavg_end); median of $(jnum rounds) round(s) of $(jnum duration_s) s"
SERVERS=$(sed -n 's/.*"servers": \[\(.*\)\],*$/\1/p' "$JSON" | tr -d '",')
UNPINNED=" $(sed -n 's/.*"unpinned": \[\(.*\)\],*$/\1/p' "$JSON" | tr -d '",') "
PINNED=()
for s in $SERVERS; do case $UNPINNED in *" $s "*) ;; *) PINNED+=("$s") ;; esac; done

# val SERVER WORKLOAD METRIC: the median, or "?" (missing for gnuplot).
val() {
  awk -F'\t' -v s="$1" -v w="$2" -v m="$3" '$1 == s && $2 == w && $3 == m { v = $4 }
    END { print (v == "") ? "?" : v }' "$WORK/medians.tsv"
}
have() { grep -q "	$1	$2	" "$WORK/medians.tsv"; }

if [ "$EXT" = png ]; then
  TERMINAL='set terminal pngcairo size 1000,520 enhanced font "sans,10" background "white"'
else
  TERMINAL='set terminal svg size 1000,520 dynamic enhanced font "sans,12" background "white"'
fi
PREAMBLE=$TERMINAL'
set datafile missing "?"
set key outside right top
set grid ytics
set style fill solid 0.85 border -1
set style histogram clustered gap 1
set style data histograms
set boxwidth 0.9'
made=()

plot_run() { # NAME: runs $WORK/NAME.gp into $OUT/NAME.$EXT
  { echo "$PREAMBLE"; echo "set output '$OUT/$1.$EXT'"; cat "$WORK/$1.gp"; } >"$WORK/$1.full.gp"
  gnuplot "$WORK/$1.full.gp" 2>"$WORK/$1.err" || { cat "$WORK/$1.err" >&2; die "gnuplot failed on $1"; }
  # gnuplot only warns about, say, an empty data set: a warning here is a bug.
  if [ -s "$WORK/$1.err" ]; then cat "$WORK/$1.err" >&2; die "gnuplot complained on $1"; fi
  made+=("$OUT/$1.$EXT")
}
skip() { echo "plot: $1: no such workloads in $JSON, skipped" >&2; }

# Throughput against connections, one panel per block size that was run;
# in each, one line per server that has a point.
sizes=()
for size in 1k 16k; do grep -q "	pp-[0-9]*x$size	mib_per_s	" "$WORK/medians.tsv" && sizes+=("$size"); done
if [ ${#sizes[@]} -gt 0 ]; then
  {
    echo "set multiplot layout 1,${#sizes[@]} title \"pingpong throughput against connections (server pinned to one core, client on the other)\\n{/*0.8 $SUB}\""
    echo 'set logscale x; set xrange [0.7:1500]; set xtics ("1" 1, "10" 10, "100" 100, "1000" 1000)'
    echo 'set xlabel "connections"; set ylabel "MiB/s received"; set yrange [0:*]'
    echo 'set key inside left top'
    for size in "${sizes[@]}"; do
      echo "set title \"${size/k/ KiB} blocks\""
      sep='plot '
      for s in "${PINNED[@]}"; do
        for c in 1 10 100 1000; do
          v=$(val "$s" "pp-${c}x$size" mib_per_s)
          [ "$v" = "?" ] || echo "$c $v"
        done >"$WORK/pp-$size-$s.dat"
        [ -s "$WORK/pp-$size-$s.dat" ] || continue
        printf "%s'%s' using 1:2 with linespoints lw 2 pt 7 title '%s'" "$sep" "$WORK/pp-$size-$s.dat" "$s"
        sep=', '
      done
      echo
    done
    echo 'unset multiplot'
  } >"$WORK/echo-throughput.gp"
  plot_run echo-throughput
else
  skip echo-throughput
fi

# rr latency percentiles, one panel per connection count.
panels=()
for c in 100 1000; do have "rr-$c" lat_p50_us && panels+=("$c"); done
if [ ${#panels[@]} -gt 0 ]; then
  for c in "${panels[@]}"; do
    for s in "${PINNED[@]}"; do
      echo "$s $(val "$s" "rr-$c" lat_p50_us) $(val "$s" "rr-$c" lat_p90_us)" \
           "$(val "$s" "rr-$c" lat_p99_us) $(val "$s" "rr-$c" lat_p999_us)"
    done >"$WORK/rr-$c.dat"
  done
  {
    echo "set multiplot layout 1,${#panels[@]} title \"rr 32 B request/response latency (closed loop, one in flight per connection)\\n{/*0.8 $SUB}\""
    echo 'set logscale y; set ylabel "microseconds (log scale)"; set yrange [*:*]'
    echo 'set key inside left top'
    for c in "${panels[@]}"; do
      echo "set title \"$c connections\""
      echo "plot '$WORK/rr-$c.dat' using 2:xtic(1) title 'p50', '' using 3 title 'p90', '' using 4 title 'p99', '' using 5 title 'p99.9'"
    done
    echo 'unset multiplot'
  } >"$WORK/echo-latency.gp"
  plot_run echo-latency
else
  skip echo-latency
fi

# Idle memory per connection.
if have idle rss_per_conn_bytes; then
  for s in "${PINNED[@]}"; do echo "$s $(val "$s" idle rss_per_conn_bytes)"; done >"$WORK/idle.dat"
  {
    echo "set title \"server memory per idle connection (RSS growth while holding them)\\n{/*0.8 $SUB}\""
    echo 'set ylabel "bytes per connection"; set yrange [0:*]; unset key'
    echo "plot '$WORK/idle.dat' using 2:xtic(1) title 'bytes/conn', '' using 0:2:(sprintf('%.0f', \$2)) with labels offset 0,0.7 notitle"
  } >"$WORK/echo-idle-memory.gp"
  plot_run echo-idle-memory
else
  skip echo-idle-memory
fi

# tern with 1, 2 and 4 workers: a panel for pingpong, one for rr, each
# only with what was run.
WSERVERS=()
for s in $SERVERS; do case $s in tern-w*) WSERVERS+=("$s") ;; esac; done
# wdat WORKLOAD METRIC: workers and median, one line per tern-wN that has it.
wdat() {
  local s v
  for s in "${WSERVERS[@]}"; do
    v=$(val "$s" "$1" "$2")
    [ "$v" = "?" ] || echo "${s#tern-w} $v"
  done >"$WORK/w-$1.dat"
  [ -s "$WORK/w-$1.dat" ]
}
wpp=0 wrr=()
if [ ${#WSERVERS[@]} -gt 0 ]; then
  wdat pp-100x16k mib_per_s && wpp=1
  for c in 100 1000; do wdat "rr-$c" req_per_s && wrr+=("$c"); done
fi
if [ $((wpp + ${#wrr[@]})) -gt 0 ]; then
  {
    echo "set multiplot layout 1,$((wpp + (${#wrr[@]} > 0))) title \"tern-echo with 1, 2 and 4 workers (not pinned: server and client share the 2 cores)\\n{/*0.8 $SUB}\""
    echo 'set xlabel "workers"; set xrange [0.5:4.5]; set xtics (1, 2, 4); set yrange [0:*]'
    echo 'set key below'
    if [ "$wpp" = 1 ]; then
      echo 'set title "pingpong, 100 connections x 16 KiB"; set ylabel "MiB/s"'
      printf "plot '%s' using 1:2 with linespoints lw 2 pt 7 title 'tern-echo'" "$WORK/w-pp-100x16k.dat"
      v=$(val epoll pp-100x16k mib_per_s)
      [ "$v" = "?" ] || printf ", %s with lines dt 2 lw 2 title 'epoll loop, pinned'" "$v"
      echo
    fi
    if [ ${#wrr[@]} -gt 0 ]; then
      echo 'set title "rr 32 B"; set ylabel "requests/s"'
      sep='plot '
      for c in "${wrr[@]}"; do
        printf "%s'%s' using 1:2 with linespoints lw 2 pt 7 title 'tern-echo, %s conns'" "$sep" "$WORK/w-rr-$c.dat" "$c"
        sep=', '
        v=$(val epoll "rr-$c" req_per_s)
        [ "$v" = "?" ] || printf ", %s with lines dt 2 lw 2 title 'epoll loop, pinned, %s conns'" "$v" "$c"
      done
      echo
    fi
    echo 'unset multiplot'
  } >"$WORK/echo-workers.gp"
  plot_run echo-workers
else
  skip echo-workers
fi

# Accept to first echoed byte.
if have handoff txn_p50_us; then
  for s in $SERVERS; do
    v=$(val "$s" handoff txn_p50_us)
    [ "$v" = "?" ] || echo "$s $v $(val "$s" handoff txn_p99_us)"
  done >"$WORK/handoff.dat"
  {
    echo "set title \"new connection: connect() to first echoed byte, one at a time (tern: acceptor to worker hand-off)\\n{/*0.8 $SUB}\""
    echo 'set logscale y; set ylabel "microseconds (log scale)"; set key inside left top'
    echo "plot '$WORK/handoff.dat' using 2:xtic(1) title 'p50', '' using 3 title 'p99'"
  } >"$WORK/echo-handoff.gp"
  plot_run echo-handoff
else
  skip echo-handoff
fi

[ ${#made[@]} -gt 0 ] || die "nothing to plot in $JSON"
for f in "${made[@]}"; do
  [ -s "$f" ] || die "$f was not written"
  echo "wrote $f"
done
