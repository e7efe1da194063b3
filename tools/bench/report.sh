#!/usr/bin/env bash
# Prints a run-echo-bench.sh JSON as the Markdown tables docs/benchmarks.md
# shows, so that no figure there is copied by hand:
#   throughput  each workload's rate per pinned server, tern / epoll (paired
#               ratio), and client and server CPU in epoll's and tern's runs
#   latency     rr p50/p90/p99/p99.9 per pinned server
#   handoff     connect() to first echoed byte, p50/p99, every server
#   workers     tern-echo with 1, 2, 4 workers (unpinned)
#   idle        server RSS per idle connection
# A "*" marks a median or ratio taken over contended runs (no clean run).
#
# usage: tools/bench/report.sh [RESULTS.json]   (default: newest docs/bench/echo-*.json)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
JSON=${1:-}
if [ -z "$JSON" ]; then
  # shellcheck disable=SC2012 # our own file names, no odd characters
  JSON=$(ls -t "$ROOT"/docs/bench/echo-*.json 2>/dev/null | head -n1)
fi
[ -s "$JSON" ] || { echo "report: no results (run tools/bench/run-echo-bench.sh)" >&2; exit 1; }

# server workload metric median clean(true/false) ratio ratio_clean
TSV=$(sed -n 's/.*"server": "\([^"]*\)", "workload": "\([^"]*\)", "metric": "\([^"]*\)", "median": \([-0-9.eE+]*\), "n_median": [0-9]*, "median_of_clean_runs": \([a-z]*\), "runs": \[[^]]*\], "ratio_to_epoll": \([-0-9.a-z]*\), "ratio_of_clean_rounds": \([a-z]*\)}.*/\1\t\2\t\3\t\4\t\5\t\6\t\7/p' "$JSON")
[ -n "$TSV" ] || { echo "report: $JSON holds no results" >&2; exit 1; }
SERVERS=$(sed -n 's/.*"servers": \[\(.*\)\],*$/\1/p' "$JSON" | tr -d '",')
UNPINNED=" $(sed -n 's/.*"unpinned": \[\(.*\)\],*$/\1/p' "$JSON" | tr -d '",') "
PINNED=() ALL=()
for s in $SERVERS; do
  ALL+=("$s")
  case $UNPINNED in *" $s "*) ;; *) PINNED+=("$s") ;; esac
done

# cell SERVER WORKLOAD METRIC FORMAT: the median, "*" if not from clean runs.
cell() {
  awk -F'\t' -v s="$1" -v w="$2" -v m="$3" -v f="$4" '$1 == s && $2 == w && $3 == m {
      printf f "%s", $4, ($5 == "true") ? "" : "*"; found = 1 }
    END { if (!found) printf "-" }' <<<"$TSV"
}
# ratio SERVER WORKLOAD METRIC: the paired ratio to epoll.
ratio() {
  awk -F'\t' -v s="$1" -v w="$2" -v m="$3" '$1 == s && $2 == w && $3 == m && $6 != "null" {
      printf "%.3f%s", $6, ($7 == "true") ? "" : "*"; found = 1 }
    END { if (!found) printf "-" }' <<<"$TSV"
}
has() { awk -F'\t' -v w="$1" '$2 == w { f = 1 } END { exit !f }' <<<"$TSV"; }

label() {
  if [[ $1 =~ ^pp-([0-9]+)x([0-9]+)k$ ]]; then
    echo "pingpong ${BASH_REMATCH[1]} x ${BASH_REMATCH[2]} KiB, MiB/s"
  elif [[ $1 =~ ^rr-([0-9]+)$ ]]; then
    echo "rr ${BASH_REMATCH[1]} x 32 B, req/s"
  else
    case $1 in
      churn) echo "churn 100 x 32 B, conn/s" ;;
      *) echo "$1" ;;
    esac
  fi
}

echo "Run: $(sed -n 's/.*"started": "\([^"]*\)".*/\1/p' "$JSON" | head -n1), commit" \
     "$(sed -n 's/.*"commit": "\([^"]*\)".*/\1/p' "$JSON" | head -n1);" \
     "$(sed -n 's/.*"cpu": "\([^"]*\)", "cores": \([0-9]*\), "kernel": "\([^"]*\)", "loadavg_start": "\([^"]*\)", "loadavg_end": "\([^"]*\)".*/\1, \2 cores, Linux \3; load average \4 at the start, \5 at the end/p' "$JSON");" \
     "$(sed -n 's/.*"rounds": \([0-9]*\), "duration_s": \([0-9.]*\), "warmup_s": \([0-9.]*\).*/\1 interleaved rounds of \2 s after \3 s warm-up/p' "$JSON")."
echo

echo "**Throughput** (pinned servers; ratio = median of same-round tern / epoll):"
echo
printf '| workload |'
printf ' %s |' "${PINNED[@]}"
echo ' tern / epoll | CPU client / server, epoll run | CPU client / server, tern run |'
printf '| --- |'
for _ in "${PINNED[@]}"; do printf ' ---: |'; done
echo ' ---: | ---: | ---: |'
for wl in $(sed -n 's/.*"workloads": {\(.*\)},*$/\1/p' "$JSON" | grep -o '"[^"]*": "' | tr -d '":'); do
  case $wl in pp-*) m=mib_per_s f=%.0f ;; rr-*) m=req_per_s f=%.0f ;; churn) m=conns_per_s f=%.0f ;; *) continue ;; esac
  printf '| %s |' "$(label "$wl")"
  for s in "${PINNED[@]}"; do printf ' %s |' "$(cell "$s" "$wl" "$m" "$f")"; done
  printf ' **%s** | %s / %s | %s / %s |\n' "$(ratio tern "$wl" "$m")" \
    "$(cell epoll "$wl" client_cpu_pct %.0f%%)" "$(cell epoll "$wl" server_cpu_pct %.0f%%)" \
    "$(cell tern "$wl" client_cpu_pct %.0f%%)" "$(cell tern "$wl" server_cpu_pct %.0f%%)"
done
for wl in pp-100x16k rr-100 churn; do
  has "$wl" || continue
  case $wl in pp-*) m="MiB" ;; rr-*) m="requests" ;; *) m="connections" ;; esac
  printf '| %s per server CPU-second |' "${wl}: $m"
  for s in "${PINNED[@]}"; do printf ' %s |' "$(cell "$s" "$wl" per_server_cpu_s %.0f)"; done
  printf ' **%s** | | |\n' "$(ratio tern "$wl" per_server_cpu_s)"
done
echo

for c in 100 1000; do
  has "rr-$c" || continue
  echo "**rr latency, $c connections x 32 B** (µs):"
  echo
  echo '| server | p50 | p90 | p99 | p99.9 | p99 / epoll |'
  echo '| --- | ---: | ---: | ---: | ---: | ---: |'
  for s in "${PINNED[@]}"; do
    echo "| $s | $(cell "$s" "rr-$c" lat_p50_us %.0f) | $(cell "$s" "rr-$c" lat_p90_us %.0f) |" \
         "$(cell "$s" "rr-$c" lat_p99_us %.0f) | $(cell "$s" "rr-$c" lat_p999_us %.0f) |" \
         "$(ratio "$s" "rr-$c" lat_p99_us) |"
  done
  echo
done

if has handoff; then
  echo "**Hand-off: connect() to first echoed byte**, one connection at a time (µs):"
  echo
  echo '| server | placement | p50 | p90 | p99 | p50 / epoll | p99 / epoll | connect() p50 |'
  echo '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |'
  for s in "${ALL[@]}"; do
    [ "$(cell "$s" handoff txn_p50_us %.1f)" = - ] && continue
    case $UNPINNED in *" $s "*) p=unpinned ;; *) p=pinned ;; esac
    echo "| $s | $p | $(cell "$s" handoff txn_p50_us %.1f) | $(cell "$s" handoff txn_p90_us %.1f) |" \
         "$(cell "$s" handoff txn_p99_us %.1f) | $(ratio "$s" handoff txn_p50_us) |" \
         "$(ratio "$s" handoff txn_p99_us) | $(cell "$s" handoff connect_p50_us %.1f) |"
  done
  echo
fi

W=()
for s in "${ALL[@]}"; do case $s in tern-w*) W+=("$s") ;; esac; done
if [ ${#W[@]} -gt 0 ]; then
  echo "**tern-echo workers** (unpinned; epoll = the pinned loop in the same rounds):"
  echo
  printf '| workload | epoll |'
  printf ' %s |' "${W[@]}"
  echo
  printf '| --- | ---: |'
  for _ in "${W[@]}"; do printf ' ---: |'; done
  echo
  for wl in pp-100x16k rr-100 rr-1000; do
    has "$wl" || continue
    case $wl in pp-*) m=mib_per_s ;; *) m=req_per_s ;; esac
    printf '| %s | %s |' "$(label "$wl")" "$(cell epoll "$wl" "$m" %.0f)"
    for s in "${W[@]}"; do printf ' %s (%s) |' "$(cell "$s" "$wl" "$m" %.0f)" "$(ratio "$s" "$wl" "$m")"; done
    echo
  done
  printf '| server CPU in pp-100x16k | %s |' "$(cell epoll pp-100x16k server_cpu_pct %.0f%%)"
  for s in "${W[@]}"; do printf ' %s |' "$(cell "$s" pp-100x16k server_cpu_pct %.0f%%)"; done
  echo
  echo
fi

if has idle; then
  echo "**Idle memory**, server RSS growth per idle connection (bytes):"
  echo
  printf '|'
  printf ' %s |' "${PINNED[@]}"
  echo
  printf '|'
  for _ in "${PINNED[@]}"; do printf ' ---: |'; done
  echo
  printf '|'
  for s in "${PINNED[@]}"; do printf ' %s |' "$(cell "$s" idle rss_per_conn_bytes %.0f)"; done
  echo
fi
