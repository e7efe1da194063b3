#!/usr/bin/env python3
"""The four programs as one family (issue 19): the same command-line
convention and the same start-up order.

  - --version exits 0 and names the program and tern's version;
  - --help exits 0 and lists every flag with its TERN_* variable;
  - a bad TERN_WORKERS=abc exits 2 with one line naming TERN_WORKERS;
  - --bogus exits 2 naming it; a missing required flag is named;
  - a flag wins over its variable (TERN_PORT says one port, --port another);
  - SIGTERM sent the moment the port accepts is a graceful stop (the
    "stopped" log line, exit 0), 20 times per program. With LISTEN_DELAY_SO
    (listen_delay.c, preloaded) every listen() returns 30 ms late, so the
    signal lands while the program is still setting up: without the signal
    handlers installed before the bind, this is where it would die.

usage: test_programs.py TERN_CHAT TERN_KV TERN_ECHO TERN_PROXY [LISTEN_DELAY_SO]
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

CHAT, KV, ECHO, PROXY = sys.argv[1:5]
LISTEN_DELAY = sys.argv[5] if len(sys.argv) > 5 else None
ROUNDS = 20
failures = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listen_args(name, port):
    """The flags that make @name listen on 127.0.0.1:@port (and whatever else
    it requires)."""
    if name == "tern-proxy":
        return ["--listen", f"127.0.0.1:{port}", "--to", "127.0.0.1:9"]
    return ["--bind", "127.0.0.1", "--port", str(port)]


PROGRAMS = [("tern-chat", CHAT), ("tern-kv", KV), ("tern-echo", ECHO), ("tern-proxy", PROXY)]
# What each program cannot start without, and the variable that could give it.
REQUIRED = {"tern-kv": ["--port"], "tern-echo": ["--port"], "tern-proxy": ["--listen", "--to"]}


def run(binary, *args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("TERN_")}
    e.update(env or {})
    return subprocess.run([binary, *args], capture_output=True, text=True, env=e, timeout=20)


def test_cli(name, binary):
    r = run(binary, "--version")
    check(r.returncode == 0, f"--version exited {r.returncode}: {r.stderr}")
    check(re.fullmatch(rf"{name} \d+\.\d+\.\d+\S*\n", r.stdout), f"--version said {r.stdout!r}")

    r = run(binary, "--help")
    check(r.returncode == 0, f"--help exited {r.returncode}")
    flags = set(re.findall(r"--([a-z][a-z-]+)", r.stdout))
    for want in ("help", "version", "workers", "log-level", "accept", "admin"
                 if name != "tern-chat" else "idle-timeout"):
        check(want in flags, f"--help lacks --{want}")
    # Every line of the flag list that names a setting names its variable.
    for line in r.stdout.splitlines():
        m = re.match(r"\s+(?:-\w, )?--([a-z-]+)", line)
        if m and m.group(1) not in ("help", "version", "check"):
            check("TERN_" in line, f"--help: --{m.group(1)} without its variable: {line!r}")

    port = free_port()
    r = run(binary, *listen_args(name, port), env={"TERN_WORKERS": "abc"})
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2, f"TERN_WORKERS=abc exited {r.returncode}, want 2")
    check(len(lines) == 1 and "TERN_WORKERS" in lines[0] and "abc" in lines[0],
          f"TERN_WORKERS=abc said {r.stderr!r}")

    r = run(binary, "--bogus")
    check(r.returncode == 2, f"--bogus exited {r.returncode}, want 2")
    check(len(r.stderr.strip().splitlines()) == 1 and "--bogus" in r.stderr,
          f"--bogus said {r.stderr!r}")

    r = run(binary, "--workers")
    check(r.returncode == 2 and "--workers" in r.stderr, f"--workers without a value: {r.stderr!r}")

    for flag in REQUIRED.get(name, []):
        args = [a for a in listen_args(name, port)]
        i = args.index(flag)
        del args[i:i + 2]
        if flag == "--port":
            args = ["--bind", "127.0.0.1"]
        r = run(binary, *args)
        check(r.returncode == 2 and flag in r.stderr,
              f"without {flag}: exit {r.returncode}, said {r.stderr!r}")


def start(binary, name, port, env=None, delay_listen=False):
    log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
    e = {k: v for k, v in os.environ.items() if not k.startswith("TERN_")}
    e.update(env or {})
    if delay_listen and LISTEN_DELAY:
        e["LD_PRELOAD"] = LISTEN_DELAY
    p = subprocess.Popen([binary, *listen_args(name, port), "--workers", "2"], stdout=log,
                         stderr=subprocess.STDOUT, env=e)
    return p, log.name


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def stop_and_check(p, path, name, what):
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"{what}: did not stop within 15 s:\n{read(path)}")
    log = read(path)
    os.unlink(path)
    check(p.returncode == 0, f"{what}: exited {p.returncode}, want 0:\n{log}")
    check(f"{name} stopped" in log, f"{what}: no '{name} stopped' line:\n{log}")
    return log


def test_flag_wins(name, binary):
    port = free_port()
    p, path = start(binary, name, port, env={"TERN_PORT": "1", "TERN_LISTEN": "127.0.0.1:1",
                                              "TERN_LOG_LEVEL": "off"})
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            check(p.poll() is None, f"exited {p.returncode} at start:\n{read(path)}")
            check(time.monotonic() < deadline, "never listened on the --port given")
            time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=15)
    log = read(path)
    os.unlink(path)
    check(p.returncode == 0, f"exit {p.returncode}")
    # TERN_LOG_LEVEL=off took effect (no flag said otherwise): nothing logged.
    check(log == "", f"TERN_LOG_LEVEL=off, yet it logged:\n{log}")


def test_sigterm_at_once(name, binary):
    for i in range(ROUNDS):
        port = free_port()
        p, path = start(binary, name, port, delay_listen=True)
        deadline = time.monotonic() + 10
        while True:  # as soon as the port accepts: connect, and stop it
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    p.kill()
                    raise AssertionError(f"round {i}: never accepted:\n{read(path)}")
        p.send_signal(signal.SIGTERM)
        stop_and_check(p, path, name, f"round {i}")
        c.close()


def main():
    for name, binary in PROGRAMS:
        for t in (test_cli, test_flag_wins, test_sigterm_at_once):
            try:
                t(name, binary)
                print(f"ok   {name} {t.__name__}")
            except Exception as e:  # every failure, not just the first
                print(f"FAIL {name} {t.__name__}: {type(e).__name__}: {e}")
                failures.append(f"{name} {t.__name__}")
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}")
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
