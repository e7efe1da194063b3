# shellcheck shell=bash
# Shared by the run-*-bench.sh scripts (sourced, not run): one fresh server
# per measurement on a port nobody uses, waiting until it listens, stopping
# it with bounded patience, and the small helpers every script needs.
#
# The sourcing script sets BENCH_NAME (the prefix of its messages) and LOG
# (where server output and start lines go), and defines
#   bench_server_argv NAME PORT   the server's command, one word per line
#                                 (a taskset prefix included when pinned)
# and optionally
#   bench_server_ready PORT       true once the server answers (default:
#                                 something listens on PORT)
# bench_start_server and bench_stop_server keep the server in SERVER_PID and
# its port in PORT. BENCH_STOP_TICKS is how many 50 ms ticks a server gets
# to exit after SIGTERM before SIGKILL (default 100).

BENCH_NAME=${BENCH_NAME:-bench}
BENCH_STOP_TICKS=${BENCH_STOP_TICKS:-100}
SERVER_PID=
PORT=

bench_die() {
  echo "$BENCH_NAME: $*" >&2
  exit 1
}

# A port nobody uses in any state (TIME_WAIT included), below the ephemeral
# range so that no client socket can be holding it either.
bench_free_port() {
  local p _i
  for _i in $(seq 1 100); do
    p=$((20000 + RANDOM % 12000))
    if [ -z "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

bench_listening() {
  [ -n "$(ss -Htln "( sport = :$1 )" 2>/dev/null)" ]
}

# bench_start_server NAME: sets SERVER_PID and PORT once the server is ready.
# Three tries on fresh ports (another process may take a port between the
# check and the bind), each given 5 s. Returns 1 if none worked.
bench_start_server() {
  local _try _i argv=()
  for _try in 1 2 3; do
    PORT=$(bench_free_port) || bench_die "no free port found"
    mapfile -t argv < <(bench_server_argv "$1" "$PORT")
    echo "== start $1 on $PORT: ${argv[*]}" >>"$LOG"
    "${argv[@]}" >>"$LOG" 2>&1 &
    SERVER_PID=$!
    for _i in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      if declare -F bench_server_ready >/dev/null; then
        bench_server_ready "$PORT" && return 0
      else
        bench_listening "$PORT" && return 0
      fi
      sleep 0.05
    done
    bench_stop_server
  done
  return 1
}

bench_stop_server() {
  local _i
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _i in $(seq 1 "$BENCH_STOP_TICKS"); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# No server outlives the script, whichever way it ends.
bench_traps() {
  trap bench_stop_server EXIT
  trap 'echo "$BENCH_NAME: interrupted" >&2; exit 130' INT TERM
}

# bench_json_get FILE KEY: one number from tern-bench's flat JSON object
# (either spacing: `"key": 1` or `"key":1`); nothing, and success, if absent.
bench_json_get() {
  { grep -o "\"$2\": *[-0-9.eE+]*" "$1" 2>/dev/null || true; } | head -n1 | sed 's/.*: *//'
}

# The machine, for the record next to every result.
bench_cpu_model() { grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //' || true; }
bench_machine() { echo "$(bench_cpu_model), $(nproc --all) cores, Linux $(uname -r)"; }
bench_loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
bench_commit() { git -C "$1" rev-parse --short HEAD 2>/dev/null || echo unknown; }

# An awk function for the scripts' median computations:
# median(LIST) of a space-separated list with a leading space.
# shellcheck disable=SC2034 # used by the scripts that source this file
BENCH_AWK_MEDIAN='
  function median(s,   a, m, i, j, x) {
    m = split(substr(s, 2), a, " ")
    for (i = 2; i <= m; i++) { x = a[i]; j = i - 1
      while (j > 0 && a[j] + 0 > x + 0) { a[j + 1] = a[j]; j-- } a[j + 1] = x }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }'
