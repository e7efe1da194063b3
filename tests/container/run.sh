#!/usr/bin/env bash
# The container image, end to end, with podman (no Docker engine needed):
#   * builds the image from the top-level Dockerfile on a Debian base made
#     offline with debootstrap and imported once (cached in podman's store,
#     keyed on the package list, so later runs only rebuild the image);
#   * runs tern-chat in it with TERN_WORKERS=2 on a free loopback port: two
#     chat clients join a room and exchange a message, the image's
#     HEALTHCHECK passes (and the probe does fail against a closed port);
#   * it runs as the non-root user, the image holds no shell, package manager
#     or compiler, and PID 1 leaves no zombie;
#   * `podman stop` (SIGTERM) drains: clients read "* server shutting down"
#     and the container exits 0 before podman's SIGKILL deadline;
#   * with --cpus 1 and no TERN_WORKERS the default is 1 worker and the JSON
#     log says why (the cgroup quota); SIGINT through the engine exits 0.
# Needs root (debootstrap, rootful podman); exits 77 (skipped) otherwise.
# Environment: TERN_CONTAINER_CACHE (default ~/.cache/tern-container),
# TERN_DEBIAN_MIRROR (default: the Debian archive apt uses here).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${TERN_CONTAINER_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tern-container}
SUITE=bookworm
# What the Dockerfile's build stage compiles with: every package
# tools/install-deps.sh names except those TERN_DEPS_NO_TESTS skips, so it
# finds them all present and the image build needs no network.
BASE_PKGS=$(grep -v TERN_DEPS_NO_TESTS "$ROOT/tools/install-deps.sh" |
        grep -o 'need+=([a-z0-9.+-]*)' | sed 's/need+=(\(.*\))/\1/' | sort -u | tr '\n' ' ')
BASE_PKGS=${BASE_PKGS% }
[ -n "$BASE_PKGS" ] || { echo "container: no packages found in tools/install-deps.sh" >&2; exit 1; }
DRAIN_S=5 # tern's drain deadline: tern_server_opts_init, drain_timeout_ms
IMAGE=localhost/tern-chat:test

T_START=$SECONDS
log() { printf 'container: [%3ds] %s\n' $((SECONDS - T_START)) "$*" >&2; }
fail() {
        log "FAIL: $*"
        exit 1
}
skip() {
        log "SKIP: $*"
        exit 77
}

[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap and rootful podman)"
command -v podman >/dev/null || skip "podman is not installed (make test-deps)"

WORK=$(mktemp -d)
CONTAINERS=()
cleanup() {
        local c
        for c in "${CONTAINERS[@]}"; do
                podman rm -f -t 0 "$c" >/dev/null 2>&1 || true
        done
        rm -rf "$WORK"
}
trap cleanup EXIT

# runc with cgroupfs (no systemd here), no default ulimits to apply, and
# events in a file instead of journald; our own file, /etc stays untouched.
mkdir -p "$CACHE"
export CONTAINERS_CONF="$CACHE/containers.conf"
cat >"$CONTAINERS_CONF.$$" <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
mv "$CONTAINERS_CONF.$$" "$CONTAINERS_CONF"

# ---- the base image: debootstrap once, import, keep ----
mirror() {
        if [ -n "${TERN_DEBIAN_MIRROR:-}" ]; then
                echo "$TERN_DEBIAN_MIRROR"
                return
        fi
        local m
        m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                /etc/apt/sources.list.d/*.sources 2>/dev/null |
                grep -v '^[[:space:]]*#' | grep -oE 'https?://[^[:space:]]+/debian/?' |
                grep -v security | head -n1 || true)
        echo "${m:-http://deb.debian.org/debian}"
}
key=$(printf '%s %s\n' "$SUITE" "$BASE_PKGS" | sha256sum | cut -c1-12)
BASE=localhost/tern-base-build:$SUITE-$key
exec 9>"$CACHE/lock"
flock 9 # parallel runs make the base once
if podman image exists "$BASE"; then
        log "base $BASE cached"
else
        command -v debootstrap >/dev/null || skip "debootstrap is not installed (make test-deps)"
        t0=$SECONDS
        rootfs=$CACHE/rootfs-$key
        rm -rf "$rootfs"
        log "making base $BASE with debootstrap from $(mirror) (once)"
        if ! debootstrap --variant=minbase --include="${BASE_PKGS// /,}" "$SUITE" "$rootfs" \
                "$(mirror)" >"$CACHE/debootstrap.log" 2>&1; then
                tail -n 20 "$CACHE/debootstrap.log" >&2
                fail "debootstrap (log: $CACHE/debootstrap.log)"
        fi
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -c . | podman import --quiet - "$BASE" >/dev/null ||
                fail "podman import of the base"
        rm -rf "$rootfs"
        log "base made in $((SECONDS - t0)) s"
        # Bases for older package lists only take space now.
        podman images --format '{{.Repository}}:{{.Tag}}' localhost/tern-base-build |
                grep -vx "$BASE" | xargs -r podman rmi >/dev/null 2>&1 || true
fi
flock -u 9

# ---- the image ----
t0=$SECONDS
old_image=$(podman image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
# docker format: the OCI image format has no HEALTHCHECK. --layers=false:
# no 430 MB build-stage image left behind per source change; the compile
# takes seconds, the base is what is worth caching.
if ! podman build --layers=false --format docker --network host \
        --build-arg BASE_BUILD="$BASE" -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" \
        >"$WORK/build.log" 2>&1; then
        tail -n 40 "$WORK/build.log" >&2
        fail "podman build"
fi
if [ -n "$old_image" ] && [ "$old_image" != "$(podman image inspect -f '{{.Id}}' "$IMAGE")" ]; then
        podman rmi "$old_image" >/dev/null 2>&1 || true
fi
log "image built in $((SECONDS - t0)) s, $(podman image inspect -f '{{.Size}}' "$IMAGE") bytes"

user=$(podman image inspect -f '{{.Config.User}}' "$IMAGE")
[ -n "$user" ] && [ "${user%%:*}" != 0 ] && [ "${user%%:*}" != root ] ||
        fail "image user is '$user', expected a non-root user"
hc=$(podman image inspect -f '{{.Config.Healthcheck.Test}}' "$IMAGE")
[[ $hc == *tern-chat*--check* ]] || fail "image HEALTHCHECK is '$hc'"
stopsig=$(podman image inspect -f '{{.Config.StopSignal}}' "$IMAGE")
[ "$stopsig" = SIGTERM ] || fail "image STOPSIGNAL is '$stopsig'"

C0=tern-ctest-$$-files
CONTAINERS+=("$C0")
podman create --name "$C0" "$IMAGE" >/dev/null 2>&1 || fail "podman create"
podman export "$C0" | tar -t >"$WORK/files"
for want in usr/local/bin/tern-chat usr/local/bin/tern-echo usr/local/bin/tern-kv usr/local/bin/tern-proxy; do
        grep -qx "$want" "$WORK/files" || fail "image lacks $want"
done
if grep -E '(^|/)(sh|bash|dash|gcc|cc|ld|as|make|cmake|apt|apt-get|dpkg)$' "$WORK/files"; then
        fail "image holds a shell, compiler or package manager (above)"
fi
log "image: $(wc -l <"$WORK/files") entries, user $user, no shell/compiler/apt"

# ---- helpers ----
# Below the ephemeral range (32768+ on Linux), where a client socket of
# some other test may hold the port without listening on it.
free_port() {
        local p i
        for i in $(seq 1 100); do
                p=$((20000 + RANDOM % 12000))
                if ! (exec 7<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
                        echo "$p"
                        return
                fi
        done
        fail "no free port"
}

# expect_line FD REGEX: reads lines from FD until one matches, 5 s at most.
expect_line() {
        local fd=$1 re=$2 line rc end=$((SECONDS + 5))
        while ((SECONDS < end)); do
                rc=0
                IFS= read -r -t 1 -u "$fd" line || rc=$?
                if ((rc > 128)); then
                        continue
                fi
                ((rc == 0)) || fail "connection fd $fd closed before a line matching '$re'"
                line=${line%$'\r'}
                [[ $line =~ $re ]] && return 0
        done
        fail "no line matching '$re' on fd $fd within 5 s"
}

# The container's processes (same PID namespace as its PID 1) in state Z.
zombies() {
        local pid=$1 ns p
        ns=$(readlink "/proc/$pid/ns/pid")
        for p in /proc/[0-9]*; do
                [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] || continue
                awk '/^State:/ && $2 == "Z" { found = 1 } END { exit !found }' "$p/status" \
                        2>/dev/null && echo "${p#/proc/}"
        done
        return 0
}

# start NAME ARGS...: runs the image on a free port (in $PORT), trying another
# port when the chosen one was taken meanwhile.
start() {
        local name=$1 try
        shift
        for try in 1 2 3; do
                PORT=$(free_port)
                APORT=$(free_port)
                podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
                # Host networking: the image's default admin port (9100)
                # might be taken on this machine, so a free one.
                podman run -d --name "$name" --network host -e TERN_PORT="$PORT" \
                        -e TERN_ADMIN="127.0.0.1:$APORT" \
                        -e TERN_BIND=127.0.0.1 "$@" "$IMAGE" >/dev/null 2>"$WORK/run.err" ||
                        { cat "$WORK/run.err" >&2; fail "podman run $*"; }
                wait_healthy "$name" && return 0
                podman logs "$name" 2>&1 | grep -q 'Address already in use' || break
                log "port $PORT was taken, trying another"
        done
        podman ps -a --filter name="$name" >&2
        podman logs "$name" >&2 || true
        fail "$name: health check did not pass within 10 s"
}

wait_healthy() {
        local c=$1 i
        for i in $(seq 1 50); do
                podman healthcheck run "$c" >/dev/null 2>&1 && return 0
                [ "$(podman inspect -f '{{.State.Running}}' "$c")" = true ] || return 1
                sleep 0.2
        done
        return 1
}

# ---- run 1: TERN_WORKERS=2, two clients, health, SIGTERM ----
C1=tern-ctest-$$-chat
CONTAINERS+=("$C1")
start "$C1" -e TERN_WORKERS=2
[ "$(podman inspect -f '{{.State.Health.Status}}' "$C1")" = healthy ] ||
        fail "health status is not 'healthy'"
# The probe is real: pointed at a closed port it fails with 1.
rc=0
podman exec "$C1" /usr/local/bin/tern-chat --check 127.0.0.1:1 >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "tern-chat --check against a closed port exited $rc, expected 1"
log "health check passes (and fails against a closed port)"

podman logs "$C1" >"$WORK/log1" 2>&1
grep -q "listening on 127.0.0.1 port $PORT: 2 worker(s)" "$WORK/log1" ||
        { cat "$WORK/log1" >&2; fail "log does not show 2 workers on port $PORT"; }

exec 3<>"/dev/tcp/127.0.0.1/$PORT" 4<>"/dev/tcp/127.0.0.1/$PORT"
expect_line 3 '^\* welcome '
expect_line 4 '^\* welcome '
printf '/nick alice\n/join ctest\n' >&3
expect_line 3 '^\* alice joined #ctest$'
printf '/nick bob\n/join ctest\n' >&4
expect_line 4 '^\* bob joined #ctest$'
expect_line 3 '^\* bob joined #ctest$'
printf 'hello from bob\n' >&4
expect_line 3 '^\[#ctest\] bob: hello from bob$'
printf '/msg bob hello from alice\n' >&3
expect_line 4 '^\[pm\] alice: hello from alice$'
log "two clients exchanged messages in #ctest"

pid=$(podman inspect -f '{{.State.Pid}}' "$C1")
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
[ "$uid" != 0 ] || fail "tern-chat runs as root"
z=$(zombies "$pid")
[ -z "$z" ] || fail "zombie processes in the container: $z"
# An orphan in the container becomes PID 1's child; it must be reaped.
# (The host's sh, entered into the container's PID namespace: the image
# has no shell.)
nsenter -t "$pid" -p -- sh -c 'sleep 0.2 & exit' || fail "nsenter into the container"
sleep 0.7
z=$(zombies "$pid")
[ -z "$z" ] || fail "an orphan was left a zombie by PID 1: $z"
log "PID 1 runs as uid $uid; no zombies after the health checks or an orphan's exit"

# SIGTERM through the engine; past -t podman would SIGKILL (exit 137).
t0=$(date +%s%N)
podman stop -t $((DRAIN_S + 2)) "$C1" >/dev/null 2>&1 || fail "podman stop"
ms=$((($(date +%s%N) - t0) / 1000000))
expect_line 3 '^\* server shutting down$'
expect_line 4 '^\* server shutting down$'
exec 3<&- 4<&-
code=$(podman inspect -f '{{.State.ExitCode}}' "$C1")
[ "$code" = 0 ] || fail "exit code after podman stop is $code, expected 0"
((ms <= (DRAIN_S + 1) * 1000)) || fail "stop took $ms ms, drain deadline is $DRAIN_S s"
podman logs "$C1" 2>&1 | grep -q 'tern-chat stopped' || fail "no 'tern-chat stopped' in the log"
log "podman stop: clients told, exit 0 in $ms ms (drain deadline $DRAIN_S s)"

# ---- run 2: --cpus 1, default workers, JSON logs, SIGINT ----
C2=tern-ctest-$$-cpus
CONTAINERS+=("$C2")
start "$C2" --cpus 1 -e TERN_LOG_FORMAT=json
podman logs "$C2" >"$WORK/log2" 2>&1
grep -q '1 worker(s) by default: cgroup v[12] cpu' "$WORK/log2" ||
        { cat "$WORK/log2" >&2; fail "--cpus 1: the log does not show 1 default worker from the quota"; }
grep -q "port $PORT: 1 worker(s)" "$WORK/log2" || fail "--cpus 1: not started with 1 worker"
grep -v '^{.*}$' "$WORK/log2" && fail "--log-format json: a line above is not one JSON object"
log "--cpus 1: $(grep -o 'by default: [^"]*' "$WORK/log2")"
podman kill --signal INT "$C2" >/dev/null || fail "podman kill --signal INT"
code=$(timeout $((DRAIN_S + 5)) podman wait "$C2" 2>/dev/null) || fail "no exit after SIGINT"
[ "$code" = 0 ] || fail "exit code after SIGINT is $code, expected 0"
log "SIGINT: exit 0"

# ---- run 3: the other programs as the entry point, each healthy ----
# The image's HEALTHCHECK asks the admin endpoint's /healthz, which every
# program serves (TERN_ADMIN), so it works whatever program runs.
for prog in tern-kv tern-echo tern-proxy; do
        C3=tern-ctest-$$-$prog
        CONTAINERS+=("$C3")
        extra=()
        # tern-proxy listens where TERN_LISTEN says and forwards to TERN_TO.
        [ "$prog" = tern-proxy ] && extra=(-e TERN_LISTEN=127.0.0.1:0 -e TERN_TO=127.0.0.1:9)
        start "$C3" --entrypoint "/usr/local/bin/$prog" "${extra[@]}"
        [ "$(podman inspect -f '{{.State.Health.Status}}' "$C3")" = healthy ] ||
                fail "$prog: health status is not 'healthy'"
        if [ "$prog" = tern-kv ]; then
                exec 5<>"/dev/tcp/127.0.0.1/$PORT"
                printf 'PING\r\n' >&5
                expect_line 5 '^\+PONG'
                exec 5<&-
        fi
        podman stop -t $((DRAIN_S + 2)) "$C3" >/dev/null 2>&1 || fail "$prog: podman stop"
        code=$(podman inspect -f '{{.State.ExitCode}}' "$C3")
        [ "$code" = 0 ] || fail "$prog: exit code after podman stop is $code, expected 0"
        log "$prog as the entry point: healthy through /healthz, stopped with exit 0"
done
# The probe is real: a program without the admin endpoint, and not a chat,
# is unhealthy.
C4=tern-ctest-$$-noadmin
CONTAINERS+=("$C4")
PORT=$(free_port)
podman run -d --name "$C4" --network host -e TERN_PORT="$PORT" -e TERN_ADMIN= \
        -e TERN_BIND=127.0.0.1 --entrypoint /usr/local/bin/tern-kv "$IMAGE" >/dev/null ||
        fail "podman run tern-kv without admin"
sleep 1
podman healthcheck run "$C4" >/dev/null 2>&1 &&
        fail "tern-kv without the admin endpoint passed the chat's health check"
podman rm -f -t 0 "$C4" >/dev/null 2>&1 || true
log "without TERN_ADMIN the check fails for tern-kv, as it should"

log "all checks passed in $((SECONDS - T_START)) s"
