#!/usr/bin/env bash
# Why pingpong figures swing: counts each echo server's system calls per
# message under tern-bench pingpong, with perf's syscall tracepoints over the
# whole measured window, next to the throughput of the same run.
#
# Closed-loop pingpong between two pinned processes has two steady states.
# In the fast one both sides find many connections ready each time they
# look: one epoll_wait serves tens of messages and neither side ever sleeps.
# In the slow one each epoll_wait finds a few, a side often goes to sleep,
# and every message risks a wake-up of the other side (an IPI, a context
# switch). Which one a run settles in is chance, for every server; the
# epoll_wait-per-message and context-switch columns tell them apart. Reads
# and sends per message show whether a server does more work per message.
#
# Needs perf (Debian: linux-perf) and the right to use tracepoints (root,
# or kernel.perf_event_paranoid <= -1). Builds nothing; the binaries come
# from build/bin (or --bin DIR). Bounded: R rounds x servers x S seconds.
#
# usage: tools/bench/pp-regimes.sh [--rounds R] [--duration S] [--conns C]
#          [--size B] [--servers "epoll libevent libuv tern"] [--bin DIR]
#          [--out FILE.csv]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/build/bin
ROUNDS=5
DURATION=4
CONNS=100
SIZE=16384
SERVERS="epoll libevent libuv tern"
OUT=

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --bin) BIN=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "pp-regimes: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

BENCH_NAME=pp-regimes
LOG=$(mktemp "${TMPDIR:-/tmp}/pp-regimes.XXXXXX.log")
# shellcheck source=tools/bench/lib.sh
. "$ROOT/tools/bench/lib.sh"
command -v perf >/dev/null || bench_die "perf not found (Debian: apt-get install linux-perf)"
[ -x "$BIN/tern-bench" ] || bench_die "no $BIN/tern-bench: build first (make)"

bench_server_argv() {
  printf '%s\n' taskset -c 0
  case $1 in
    epoll) echo "$BIN/bench-echo-epoll" ;;
    libevent) echo "$BIN/bench-echo-libevent" ;;
    libuv) echo "$BIN/bench-echo-libuv" ;;
    tern) printf '%s\n' "$BIN/tern-echo" --workers 1 --log-level warn ;;
    tern-thread) printf '%s\n' "$BIN/tern-echo" --workers 1 --accept thread --log-level warn ;;
    *) bench_die "unknown server '$1'" ;;
  esac
  printf '%s\n' --port "$2" --bind 127.0.0.1
}
bench_traps

EVENTS=syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_sendto
EVENTS=$EVENTS,syscalls:sys_enter_epoll_wait,context-switches
CSV=${OUT:-/dev/null}
echo "round,server,mib_per_s,read_per_msg,send_per_msg,epoll_wait_per_msg,ctxsw_per_msg" >"$CSV"
printf '%-5s %-11s %8s %9s %9s %11s %9s\n' round server MiB/s read/msg send/msg \
  epoll_w/msg ctxsw/msg
for r in $(seq "$ROUNDS"); do
  for s in $SERVERS; do
    bench_start_server "$s"
    stat=$(mktemp)
    perf stat -x, -e "$EVENTS" -p "$SERVER_PID" -o "$stat" &
    perf_pid=$!
    sleep 0.2
    json=$(taskset -c 1 "$BIN/tern-bench" pingpong -p "$PORT" -c "$CONNS" -s "$SIZE" \
      -d "$DURATION" -w 0 --json --no-progress)
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    bench_stop_server
    line=$(python3 - "$stat" "$json" "$SIZE" "$DURATION" <<'PY'
import json, sys
stat, j, size, dur = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
mib = j["mib_per_s"]
msgs = mib * (1 << 20) / size * j.get("duration_s", dur)
c = {}
for l in open(stat):
    p = l.strip().split(",")
    if len(p) > 2 and p[0].replace(".", "").isdigit():
        c[p[2].replace("syscalls:sys_enter_", "")] = float(p[0])
send = c.get("write", 0) + c.get("sendto", 0)
print("%.0f %.3f %.3f %.3f %.3f" % (mib, c.get("read", 0) / msgs, send / msgs,
                                      c.get("epoll_wait", 0) / msgs,
                                      c.get("context-switches", 0) / msgs))
PY
    )
    rm -f "$stat"
    read -r mib rd sd ew cs <<<"$line"
    printf '%-5s %-11s %8s %9s %9s %11s %9s\n' "$r" "$s" "$mib" "$rd" "$sd" "$ew" "$cs"
    echo "$r,$s,$mib,$rd,$sd,$ew,$cs" >>"$CSV"
  done
done
rm -f "$LOG"
