"""logs.format: --log-format json (and TERN_LOG_FORMAT=json) in every
program makes each stderr line one JSON object with ts, level, thread and
msg; the flag wins over the variable; a bad value exits 2. And tern-proxy's
connect-failure warning is rate-limited, its lines plus the suppressed counts
they report adding up to every failure.

logs.sighup (with --sighup first): every program survives SIGHUP, which
reloads what can be reloaded (nothing here: no TLS) and says so, and SIGUSR1,
which switches debug logging on and the next one off again, saying so in
the log; then SIGTERM still stops it with exit 0.

Usage: test_log_format.py [--sighup] TERN_ECHO TERN_KV TERN_PROXY TERN_CHAT
"""

import json
import os
import re
import signal
import subprocess
import sys
import time


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


def run(argv, env_extra=None, wait_for=" listening on ", signals=()):
    """Starts @argv, waits for its start-up line, sends @signals, pairs of
    (signal, the log text that answers it), each once the previous one is
    answered, stops it with SIGTERM and returns its stderr lines."""
    env = dict(os.environ, **(env_extra or {}))
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    os.set_blocking(p.stderr.fileno(), False)
    out = b""
    deadline = time.monotonic() + 10
    while wait_for.encode() not in out and time.monotonic() < deadline:
        if p.poll() is not None:
            break
        try:
            chunk = p.stderr.read()
        except BlockingIOError:
            chunk = None
        if chunk:
            out += chunk
        time.sleep(0.02)
    for i, (sig, answer) in enumerate(signals):
        if p.poll() is not None:
            break
        p.send_signal(sig)
        want = out.count(answer.encode()) + 1
        deadline = time.monotonic() + 5
        while out.count(answer.encode()) < want and time.monotonic() < deadline:
            if p.poll() is not None:
                fail(f"{argv[0]} died on signal {i + 1} ({sig.name}): status {p.returncode}\n"
                     f"{out.decode(errors='replace')}")
            try:
                chunk = p.stderr.read()
            except BlockingIOError:
                chunk = None
            if chunk:
                out += chunk
            time.sleep(0.02)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        fail(f"{argv[0]} did not stop")
    os.set_blocking(p.stderr.fileno(), True)
    out += p.stderr.read()
    if p.returncode != 0:
        fail(f"{argv} exited {p.returncode}:\n{out.decode(errors='replace')}")
    return out.decode().splitlines()


def check_json(name, lines):
    if len(lines) < 2:
        fail(f"{name}: {len(lines)} log lines, want start-up and stop lines")
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            fail(f"{name}: not a JSON line: {line!r}")
        if set(obj) != {"ts", "level", "thread", "msg"}:
            fail(f"{name}: keys {sorted(obj)}")
        if obj["level"] not in ("debug", "info", "warn", "error"):
            fail(f"{name}: level {obj['level']!r}")
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["ts"]):
            fail(f"{name}: ts {obj['ts']!r}")
    if not any(" listening on " in json.loads(l)["msg"] for l in lines):
        fail(f"{name}: no start-up line among {lines}")


def check_sighup(name, argv):
    lines = run(argv + ["--log-level", "info"],
                signals=[(signal.SIGHUP, "SIGHUP: reloading"),
                         (signal.SIGUSR1, "SIGUSR1: log level"),
                         (signal.SIGUSR1, "SIGUSR1: log level")])
    said = [l.split("] ", 1)[1] for l in lines if "SIGHUP" in l or "SIGUSR1" in l]
    want = ["SIGHUP: reloading (nothing to reload)", "SIGUSR1: log level debug (was info)",
            "SIGUSR1: log level info (was debug)"]
    if said != want:
        fail(f"{name}: signal lines {said}, want {want}")
    print(f"{name}: survives SIGHUP and SIGUSR1, debug on and off")


def check_rate_limit(proxy):
    """tern-proxy to a closed port: every client's connect fails and warns,
    through a rate limit (10 at once, one a second). Lines written plus the
    suppressed counts they report must account for every failure."""
    import socket
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
    port = closed.getsockname()[1]
    env = dict(os.environ)
    p = subprocess.Popen([proxy, "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{port}",
                          "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=env)
    os.set_blocking(p.stderr.fileno(), False)
    out = b""
    deadline = time.monotonic() + 10
    while not re.search(rb" listening on \S+ port (\d+)", out) and time.monotonic() < deadline:
        try:
            out += p.stderr.read() or b""
        except BlockingIOError:
            pass
        time.sleep(0.02)
    m = re.search(rb" listening on \S+ port (\d+)", out)
    if not m:
        p.kill()
        fail(f"tern-proxy did not start: {out!r}")
    lport = int(m.group(1))

    def one_client():
        c = socket.create_connection(("127.0.0.1", lport), timeout=5)
        if c.recv(1) != b"":
            fail("proxy kept a source whose destination refused")
        c.close()

    n = 25
    for _ in range(n):
        one_client()
    time.sleep(1.2)  # a token back: the next warning goes out with the count
    one_client()
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=15)
    os.set_blocking(p.stderr.fileno(), True)
    out += p.stderr.read()
    closed.close()
    lines = [l for l in out.decode().splitlines() if "cannot connect to" in l]
    reported = sum(int(x) for x in re.findall(r"\[(\d+) similar suppressed\]", "\n".join(lines)))
    if len(lines) >= n + 1:
        fail(f"{len(lines)} warnings for {n + 1} failures: nothing was rate-limited")
    if len(lines) + reported != n + 1:
        fail(f"{len(lines)} lines + {reported} reported suppressed != {n + 1} failures:\n"
             + "\n".join(lines))
    print(f"tern-proxy: {n + 1} connect failures, {len(lines)} warnings, {reported} suppressed")


def check_debug_connects(echo):
    """At debug, every connection's start and end is one line naming the
    peer (and the end its reason); at info, none."""
    import socket
    for level, want in (("debug", True), ("info", False)):
        p = subprocess.Popen([echo, "--bind", "127.0.0.1", "--port", "0", "--workers", "1",
                              "--log-level", level], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        line = p.stderr.readline().decode()
        m = re.search(r" listening on \S+ port (\d+)", line)
        if not m:
            p.kill()
            fail(f"tern-echo did not start: {line!r}")
        c = socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=5)
        me = "127.0.0.1:%d" % c.getsockname()[1]
        c.sendall(b"x")
        c.recv(1)
        c.close()
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=15)[1].decode()
        got = [l for l in out.splitlines() if me in l]
        if want and not (any(f"{me}: accepted" in l for l in got) and
                         any(f"{me}: closed (peer)" in l for l in got)):
            fail(f"--log-level debug: no accepted/closed lines for {me}:\n{out}")
        if not want and got:
            fail(f"--log-level info logged connections: {got}")
    print("tern-echo: connects and closes at debug, with the peer and the reason")


def main():
    sighup = sys.argv[1] == "--sighup"
    if sighup:
        del sys.argv[1]
    echo, kv, proxy, chat = sys.argv[1:5]
    programs = {
        "tern-echo": [echo, "--bind", "127.0.0.1", "--port", "0", "--workers", "1"],
        "tern-kv": [kv, "--bind", "127.0.0.1", "--port", "0", "--workers", "1"],
        "tern-proxy": [proxy, "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "--workers", "1"],
        "tern-chat": [chat, "--bind", "127.0.0.1", "--port", "0", "--workers", "1"],
    }
    for name, argv in programs.items():
        if sighup:
            check_sighup(name, argv)
            continue
        check_json(name + " --log-format json", run(argv + ["--log-format", "json"]))
        check_json(name + " TERN_LOG_FORMAT=json", run(argv, {"TERN_LOG_FORMAT": "json"}))
        text = run(argv + ["--log-format", "text"], {"TERN_LOG_FORMAT": "json"})
        if any(l.startswith("{") for l in text) or not any(" INFO  " in l for l in text):
            fail(f"{name}: --log-format text did not win over TERN_LOG_FORMAT=json: {text}")
        for bad_args, bad_env in (([ "--log-format", "xml"], None), ([], {"TERN_LOG_FORMAT": "xml"})):
            r = subprocess.run(argv + bad_args, capture_output=True, text=True,
                               env=dict(os.environ, **(bad_env or {})), timeout=10)
            if r.returncode != 2:
                fail(f"{name} {bad_args or bad_env}: exit {r.returncode}, want 2\n{r.stderr}")
        print(f"{name}: json lines, flag over variable, bad value exits 2")
    if not sighup:
        check_rate_limit(proxy)
        check_debug_connects(echo)
    print("ok")


if __name__ == "__main__":
    main()
