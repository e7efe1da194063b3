#!/usr/bin/env bash
# The benchmark suite's smoke test (ctest bench.smoke, label bench-smoke):
# every script in --quick mode on the binaries of one build, then the report
# and the plots, so that tern-bench, the scripts, report.sh and plot.sh
# cannot rot. Takes about 30 s.
# It fails when a script fails or saw errors, when a result or a plot is
# missing, when a rate is zero, or when anything under docs/bench changed.
# The figures themselves are not judged: a CI machine's numbers mean nothing.
#
# redis-server (for the kv comparison) and gnuplot are optional here: the
# step that needs one is skipped, with a note, when it is missing. CI installs
# both (Makefile TEST_EXTRA_DEPS).
#
# usage: tools/bench/smoke.sh BIN_DIR OUT_DIR
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -eq 2 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
BIN=$(cd "$1" && pwd)
OUT=$2
BENCH=$ROOT/tools/bench

fail() {
  echo "bench-smoke: FAIL: $*" >&2
  exit 1
}
step() { echo "== bench-smoke: $*"; }

rm -rf "$OUT"
mkdir -p "$OUT"
MARK=$OUT/.started
touch "$MARK"
sleep 1 # a file written in this second must count as newer than the mark

step "tern-bench --help"
"$BIN/tern-bench" --help >/dev/null || fail "tern-bench --help"

step "run-echo-bench.sh --quick"
"$BENCH/run-echo-bench.sh" --quick --bin "$BIN" --out "$OUT" || fail "run-echo-bench.sh"
JSON=$(ls "$OUT"/echo-*.json 2>/dev/null || true)
CSV=$(ls "$OUT"/echo-*.csv 2>/dev/null || true)
if [ ! -s "$JSON" ] || [ ! -s "$CSV" ]; then fail "run-echo-bench.sh wrote no results"; fi
# Every workload of the quick set has a positive median for the pinned servers.
for want in "epoll pp-10x1k mib_per_s" "epoll pp-100x16k mib_per_s" "epoll rr-100 req_per_s" \
            "epoll handoff txn_p50_us" "epoll idle rss_held_bytes" "tern-w2 pp-100x16k mib_per_s"; do
  read -r s w m <<<"$want"
  if [ "$s" = tern-w2 ] && [ ! -x "$BIN/tern-echo" ]; then continue; fi
  v=$(sed -n "s/.*\"server\": \"$s\", \"workload\": \"$w\", \"metric\": \"$m\", \"median\": \([-0-9.eE+]*\),.*/\1/p" "$JSON")
  awk -v v="${v:-0}" 'BEGIN { exit !(v > 0) }' || fail "$s $w $m is '${v:-missing}' in $JSON"
done

step "run-chat-bench.sh --quick"
if [ -x "$BIN/tern-chat" ]; then
  "$BENCH/run-chat-bench.sh" --quick --bin "$BIN" --out "$OUT" || fail "run-chat-bench.sh"
  awk -F, 'NR > 1 && $4 == "load-10" && $8 + 0 > 0 { ok = 1 } END { exit !ok }' "$OUT"/chat-*.csv ||
    fail "run-chat-bench.sh delivered nothing"
else
  echo "bench-smoke: no tern-chat in $BIN: skipped"
fi

step "run-kv-bench.sh --quick"
if [ -x "$BIN/tern-kv" ] && command -v redis-benchmark >/dev/null; then
  configs=tern1
  command -v redis-server >/dev/null && configs="tern1 redis1"
  "$BENCH/run-kv-bench.sh" --quick --pipelines 16 --configs "$configs" --tern-kv "$BIN/tern-kv" \
    --out "$OUT" || fail "run-kv-bench.sh"
  awk -F, 'NR > 1 && $1 == "tern1" && $6 + 0 > 0 { ok = 1 } END { exit !ok }' "$OUT"/kv-*-median.csv ||
    fail "run-kv-bench.sh measured nothing"
else
  echo "bench-smoke: no tern-kv or redis-benchmark (redis-tools): skipped"
fi

step "run-tls-bench.sh --quick"
if [ -x "$BIN/tern-proxy" ] && [ -x "$BIN/tern-echo" ] && command -v openssl >/dev/null; then
  # tern only (nginx and stunnel are optional extras here): every path of
  # tern-bench --tls, and resumption must really resume.
  "$BENCH/run-tls-bench.sh" --quick --terminators "tern echo" --bin "$BIN" --out "$OUT" ||
    fail "run-tls-bench.sh"
  for want in "tern,full,rate" "tern,bulk,rate" "tern,rr,rate" "echo,rr-plain,rate"; do
    awk -F, -v k="$want" 'NR > 1 && $3 "," $4 "," $5 == k && $6 + 0 > 0 { ok = 1 } END { exit !ok }' \
      "$OUT"/tls-*.csv || fail "run-tls-bench.sh: no $want"
  done
  awk -F, 'NR > 1 && $3 == "tern" && $4 == "resumed" && $5 == "resumed_pct" && $6 + 0 == 100 { ok = 1 }
    END { exit !ok }' "$OUT"/tls-*.csv || fail "run-tls-bench.sh: resumed handshakes did not resume"
else
  echo "bench-smoke: no tern-proxy, tern-echo or openssl: skipped"
fi

step "bench-timer_bench --quick"
if [ -x "$BIN/bench-timer_bench" ]; then
  "$BIN/bench-timer_bench" --quick >"$OUT/timer.txt" || fail "bench-timer_bench"
fi

step "report.sh"
"$BENCH/report.sh" "$JSON" >"$OUT/report.md" || fail "report.sh"
grep -q '^| pingpong 100 x 16 KiB, MiB/s | [0-9]' "$OUT/report.md" || fail "report.sh printed no throughput table"

step "plot.sh"
if command -v gnuplot >/dev/null; then
  "$BENCH/plot.sh" --out "$OUT/plots" "$JSON" || fail "plot.sh"
  for p in throughput latency idle-memory workers handoff; do
    grep -q '<svg' "$OUT/plots/echo-$p.svg" 2>/dev/null || fail "plot echo-$p.svg missing"
  done
else
  echo "bench-smoke: gnuplot not found (gnuplot-nox): plots skipped"
fi

changed=$(find "$ROOT/docs/bench" -newer "$MARK" 2>/dev/null || true)
[ -z "$changed" ] || fail "a smoke run wrote into docs/bench: $changed"
echo "bench-smoke: ok (results in $OUT)"
