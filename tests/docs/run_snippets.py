#!/usr/bin/env python3
"""ctest docs.snippets: every C block of README.md and docs/*.md, checked as
its marker says (the convention: tools/docs-snippets.py).

  program   compiled against the in-tree libtern.a with the project's
            warnings and -Werror, started on a free loopback port, talked to
            as its steps say, stopped with SIGTERM: it must exit 0 in 5 s
  fragment  compiled (at file scope, or inside a function for "body")
  excerpt   each line found, in order, in the file it quotes
  skip      counted, nothing else

  run_snippets.py --root SRC --work DIR --cc CC --cflags "..." --libs "..."
                  [--only SUBSTRING]

Exit 0 when every block passes, 1 otherwise (each failure says why).
"""
import argparse
import ctypes
import errno
import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

IO_TIMEOUT_S = 5
START_TIMEOUT_S = 10
STOP_TIMEOUT_S = 5


class Failed(Exception):
    pass


def load_extractor(root):
    path = os.path.join(root, "tools", "docs-snippets.py")
    spec = importlib.util.spec_from_file_location("docs_snippets", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def compile_block(block, a, extra):
    src = os.path.join(a.work, block.name + ".c")
    exe = os.path.join(a.work, block.name)
    with open(src, "w", encoding="utf-8") as f:
        f.write(block.translation_unit())
    obj_only = block.kind != "program"
    cmd = [a.cc] + shlex.split(a.cflags) + extra
    cmd += ["-c", src, "-o", exe + ".o"] if obj_only else [src, "-o", exe] + shlex.split(a.libs)
    # cwd=root: the #line paths (docs/guide.md) in diagnostics are relative to it.
    p = subprocess.run(cmd, cwd=a.root, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise Failed("does not compile:\n  " + " ".join(shlex.quote(c) for c in cmd) +
                     "\n" + p.stdout + p.stderr)
    return exe


def die_with_parent():
    """In the child: SIGKILL when the driver dies (a ctest timeout), so that
    no program outlives its test. PR_SET_PDEATHSIG is 1."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def show(data, limit=80):
    r = repr(bytes(data))
    return r if len(r) <= limit else r[:limit] + f"... ({len(data)} bytes)"


def connect(port, proc, deadline):
    """A connection to the program, retried until it listens."""
    while True:
        if proc.poll() is not None:
            raise Failed(f"exited ({describe(proc.returncode)}) before accepting on port {port}")
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=1)
        except OSError:
            if time.monotonic() > deadline:
                raise Failed(f"nothing accepted on port {port} within {START_TIMEOUT_S} s")
            time.sleep(0.05)


def describe(rc):
    if rc is None:
        return "still running"
    if rc < 0:
        return f"killed by {signal.Signals(-rc).name}"
    return f"exit status {rc}"


def recv_some(conn, deadline):
    """Some bytes, b"" at end of stream or reset, None on timeout."""
    conn.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        return conn.recv(65536)
    except socket.timeout:
        return None
    except ConnectionResetError:
        return b""


def read_log(path):
    """What the program wrote so far. A description of our own: the program's
    shares its offset with the one it was started with."""
    with open(path, "rb") as f:
        return f.read()


def exchange(conn, port, proc, steps, log_path):
    for op, value in steps:
        if op == "connect":
            conn.close()
            conn = connect(port, proc, time.monotonic() + START_TIMEOUT_S)
        elif op == "sleep":
            time.sleep(value / 1000)
        elif op == "output":
            deadline = time.monotonic() + IO_TIMEOUT_S
            while value not in read_log(log_path):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise Failed(f"no {show(value)} in its output")
                time.sleep(0.05)
        elif op == "send":
            conn.settimeout(IO_TIMEOUT_S)
            try:
                conn.sendall(value)
            except OSError as e:
                raise Failed(f"send {show(value)}: {os.strerror(e.errno or errno.EIO)}")
        elif op == "expect":
            got = bytearray()
            deadline = time.monotonic() + IO_TIMEOUT_S
            while len(got) < len(value):
                data = recv_some(conn, deadline)
                if not data:
                    why = "timed out" if data is None else "connection closed"
                    raise Failed(f"expected {show(value)}, {why} after {show(got)}")
                got += data
            if got != value:
                raise Failed(f"expected {show(value)}, got {show(got)}")
        elif op == "expect-close":
            data = recv_some(conn, time.monotonic() + IO_TIMEOUT_S)
            if data is None:
                raise Failed(f"expected the server to close, still open after {IO_TIMEOUT_S} s")
            if data:
                raise Failed(f"expected the server to close, got {show(data)}")
    return conn


def run_program(block, exe, a):
    port = free_port()
    argv = [exe] + [x.replace("{port}", str(port)) for x in block.args]
    log_path = os.path.join(a.work, block.name + ".log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                preexec_fn=die_with_parent)
        conn = None
        try:
            conn = connect(port, proc, time.monotonic() + START_TIMEOUT_S)
            conn = exchange(conn, port, proc, block.steps, log_path)
            conn.close()
            conn = None
            if proc.poll() is not None:
                raise Failed(f"exited ({describe(proc.returncode)}) before SIGTERM")
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise Failed(f"still running {STOP_TIMEOUT_S} s after SIGTERM")
            if rc != 0:
                raise Failed(f"{describe(rc)} after SIGTERM, want exit status 0")
        except Failed as e:
            out = read_log(log_path).decode(errors="replace").strip()
            tail = "\n".join(out.split("\n")[-20:])
            raise Failed(f"{e}\n  ran: {' '.join(argv)}" + (f"\n  output:\n{tail}" if tail else ""))
        finally:
            if conn:
                conn.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def check(block, mod, a):
    """None if @block passes, else raises Failed."""
    if block.kind == "skip":
        return
    if block.kind == "excerpt":
        why = mod.check_excerpt(a.root, block)
        if why:
            raise Failed(why)
        return
    if block.kind == "fragment":
        # A fragment need not use what it declares, nor name every parameter.
        compile_block(block, a, ["-Wno-unused-function", "-Wno-unused-parameter"])
        return
    exe = compile_block(block, a, [])
    run_program(block, exe, a)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--cflags", default="")
    ap.add_argument("--libs", default="")
    ap.add_argument("--only", help="check only blocks whose file:line contains this")
    a = ap.parse_args()
    a.root = os.path.abspath(a.root)
    shutil.rmtree(a.work, ignore_errors=True)  # no stale programs or logs
    os.makedirs(a.work)
    mod = load_extractor(a.root)

    blocks, errors = mod.collect(a.root)
    failures = [f"marker: {e}" for e in errors]
    counts = {}
    for b in blocks:
        if a.only and a.only not in b.where:
            continue
        counts[b.kind] = counts.get(b.kind, 0) + 1
        label = f"{b.where} ({b.kind}{' ' + b.arg if b.kind == 'skip' else ''})"
        try:
            check(b, mod, a)
            print(f"ok    {label}", flush=True)
        except (Failed, subprocess.TimeoutExpired) as e:
            print(f"FAIL  {label}: {e}", flush=True)
            failures.append(f"{label}: {str(e).split(chr(10))[0]}")
    print("checked: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for f in failures:
        print(f"FAILED {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
