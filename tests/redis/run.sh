#!/usr/bin/env bash
# example-redis-async against a real redis-server: starts one on a free
# loopback port (no persistence, a scratch dir), waits for PING, runs the
# example and checks its lines and exit status 0; then with redis paused (no
# answer: timers), with a password set (every reply an error) and against a
# closed port, which must each exit 1 saying why. Under ASan any leak or error report fails.
# Exits 77 (skipped) when redis-server or the example (hiredis) is missing.
#   run.sh EXAMPLE_BINARY
set -euo pipefail

ex=$1
if ! command -v redis-server >/dev/null; then
        echo "SKIP: redis-server not found (apt-get install redis-server)"
        exit 77
fi
if [ ! -x "$ex" ]; then
        echo "SKIP: $ex not built: hiredis not found by pkg-config" \
             "(apt-get install libhiredis-dev, then re-run cmake)"
        exit 77
fi

fail() { echo "redis_async FAILED: $*" >&2; exit 1; }
work=$(mktemp -d)
redis_pid=
cleanup() {
        if [ -n "$redis_pid" ]; then
                kill "$redis_pid" 2>/dev/null || true
                wait "$redis_pid" 2>/dev/null || true
        fi
        rm -rf "$work"
}
trap cleanup EXIT

# Two distinct ports nothing listens on: bound to port 0 at once, then
# released (one for redis, one to find closed). redis has no "--port 0", so
# another process may take one first: the start is retried.
free_ports() {
        if command -v python3 >/dev/null; then
                python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])'
        else
                echo $((20000 + RANDOM % 20000)) $((40000 + RANDOM % 20000))
        fi
}

# PING over bash's /dev/tcp, so redis-cli is not needed; 0 on +PONG.
ping_redis() (
        exec 3<>"/dev/tcp/127.0.0.1/$1"
        printf 'PING\r\n' >&3
        read -r -t 2 reply <&3
        [ "${reply%$'\r'}" = "+PONG" ]
)

port=
for attempt in 1 2 3 4 5; do
        read -r p closed < <(free_ports)
        redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
                --dir "$work" --daemonize no --loglevel warning >"$work/redis.log" 2>&1 &
        redis_pid=$!
        for _ in $(seq 50); do
                if ping_redis "$p" 2>/dev/null; then
                        port=$p
                        break 2
                fi
                kill -0 "$redis_pid" 2>/dev/null || break
                sleep 0.1
        done
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=
        echo "redis-server did not answer on port $p (attempt $attempt):"
        cat "$work/redis.log"
done
[ -n "$port" ] || fail "could not start redis-server"
echo "== redis-server $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/') on 127.0.0.1:$port"

# Runs the example against 127.0.0.1:$2 ($1 names the run), output in
# $work/out and $work/err; it must exit $3, with no sanitizer report and
# with its last line saying that no loop, watch or timer is left.
run_example() {
        local rc=0
        echo "== $ex 127.0.0.1 $2 ($1)"
        timeout 30 "$ex" 127.0.0.1 "$2" >"$work/out" 2>"$work/err" || rc=$?
        cat "$work/out" "$work/err"
        [ "$rc" -eq "$3" ] || fail "$1: exit status $rc, want $3"
        ! grep -E 'Sanitizer|runtime error:' "$work/err" >/dev/null || fail "$1: sanitizer report"
        [ "$(tail -n1 "$work/out")" = "live after free: loops 0 watches 0 timers 0" ] ||
                fail "$1: the last line is not the zero live counts"
}

# redis answers these commands with one line, +OK.
redis_cmd() {
        local reply
        exec 3<>"/dev/tcp/127.0.0.1/$port"
        printf '%s\r\n' "$1" >&3
        read -r -t 2 reply <&3 || fail "$1: no reply"
        exec 3>&-
        [ "${reply%$'\r'}" = "+OK" ] || fail "$1: $reply"
}

run_example ok "$port" 0
for line in "SET tern:example -> OK" \
            "GET tern:example -> hello from tern" \
            "subscribed to tern:news" \
            "message on tern:news: hi, subscribers" \
            "unsubscribed from tern:news"; do
        grep -Fxq "$line" "$work/out" || fail "no line '$line'"
done
[ "$(wc -l <"$work/out")" -eq 6 ] || fail "want 6 lines of output"

# What the run left in redis: the key, read back over /dev/tcp.
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET tern:example\r\n' >&3
read -r -t 2 len <&3 && read -r -t 2 value <&3 || fail "GET after the run"
exec 3>&-
[ "${value%$'\r'}" = "hello from tern" ] || fail "redis holds '$value' for the key"

# No answer: writes paused, so SET waits (CLIENT UNPAUSE still runs; ALL
# would block it too). Timers end it: hiredis 1.x's 2 s command timeout (a
# tern timer in hiredis_tern.h) or, with 0.14, the example's 5 s deadline.
redis_cmd "CLIENT PAUSE 60000 WRITE"
run_example paused "$port" 1
redis_cmd "CLIENT UNPAUSE"
grep -Eiq '^example-redis-async: .*timeout' "$work/err" || fail "paused: no timeout message"

# Wrong replies: with a password set, every command is refused (NOAUTH).
# The example must fail cleanly, freeing both live contexts and their watches.
redis_cmd "CONFIG SET requirepass tern-test"
run_example requirepass "$port" 1
grep -Eq '^example-redis-async: .*NOAUTH' "$work/err" || fail "requirepass: no NOAUTH message"

run_example "closed port" "$closed" 1
grep -Fxq "example-redis-async: connect: Connection refused" "$work/err" ||
        fail "closed port: no 'connect: Connection refused' message"

echo "== redis_async: all checks passed"
