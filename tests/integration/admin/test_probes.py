"""admin.probes: tern-echo's admin endpoint over raw HTTP/1.1.

/healthz and /readyz answer 200, unknown paths 404, other methods 405,
HEAD has no body, keep-alive carries several requests on one connection,
a malformed request gets its 400 and a close, TERN_ADMIN works like the
flag, a bad --admin exits 2, and during a graceful drain (SIGTERM while a
client keeps the drain going) the endpoint no longer says ready.

Usage: test_probes.py TERN_ECHO
"""

import os
import socket
import subprocess
import sys
import time

from adminlib import Program, fail, get, recv_response, request


def check(cond, why):
    if not cond:
        fail(why)


def main():
    echo = sys.argv[1]

    # The endpoint is off by default: no admin line in the log.
    p = Program([echo, "--bind", "127.0.0.1", "--port", "0", "--workers", "2"], admin=False)
    check("admin endpoint" not in p.read_log(), "admin endpoint on without --admin")
    p.stop()

    # A bad address is a usage error.
    r = subprocess.run([echo, "--port", "0", "--admin", "nohost:notaport"],
                       capture_output=True, text=True)
    check(r.returncode == 2, f"bad --admin: exit {r.returncode}, want 2")
    check("invalid --admin" in r.stderr, f"bad --admin: stderr {r.stderr!r}")

    # TERN_ADMIN does what --admin does.
    env = dict(os.environ, TERN_ADMIN="127.0.0.1:0")
    p = Program([echo, "--bind", "127.0.0.1", "--port", "0", "--workers", "1"], env=env,
                admin=False)
    check("admin endpoint on 127.0.0.1" in p.read_log(), "TERN_ADMIN ignored")
    p.stop()

    p = Program([echo, "--bind", "127.0.0.1", "--port", "0", "--workers", "2"])
    a = p.admin_port
    st, hd, body = get(a, "/healthz")
    check(st == 200 and body == b"ok\n", f"/healthz: {st} {body!r}")
    st, hd, body = get(a, "/readyz")
    check(st == 200 and body == b"ready\n", f"/readyz: {st} {body!r}")
    st, hd, body = get(a, "/metrics?x=1")
    check(st == 200, f"/metrics: {st}")
    check(hd.get("content-type", "").startswith("text/plain; version=0.0.4"),
          f"/metrics Content-Type {hd.get('content-type')!r}")
    check(b"tern_connections_open{worker=\"1\"}" in body, "no per-worker gauge in /metrics")
    st, _, _ = get(a, "/nope")
    check(st == 404, f"/nope: {st}, want 404")
    st, hd, _ = request(a, "POST", "/metrics", extra="Content-Length: 0\r\n")
    check(st == 405 and hd.get("allow") == "GET, HEAD", f"POST /metrics: {st} {hd}")
    st, _, rest = request(a, "HEAD", "/healthz")
    check(st == 200 and rest == b"", f"HEAD /healthz: {st} {rest!r}")

    # Keep-alive: three requests, one connection.
    s = socket.create_connection(("127.0.0.1", a), timeout=5)
    for path, want in (("/healthz", 200), ("/metrics", 200), ("/readyz", 200)):
        r = request(a, "GET", path, conn=s)
        check(r is not None and r[0] == want, f"keep-alive {path}: {r and r[0]}")
    # Malformed (a bare LF in the request line): 400, then the close.
    s.sendall(b"GET /healthz HTTP/1.1\nHost: x\r\n\r\n")
    data = b""
    s.settimeout(5)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    check(data.startswith(b"HTTP/1.1 400 "), f"malformed request answered {data[:40]!r}")
    s.close()

    # Pipelined: three requests in one write, three answers in order.
    s = socket.create_connection(("127.0.0.1", a), timeout=5)
    s.sendall(b"".join(f"GET {x} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                       for x in ("/healthz", "/nope", "/readyz")))
    got = [recv_response(s) for _ in range(3)]
    check([g and g[0] for g in got] == [200, 404, 200], f"pipelined: {[g and g[0] for g in got]}")
    s.close()

    # HTTP/1.0 without keep-alive: the answer, then the close.
    s = socket.create_connection(("127.0.0.1", a), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    r = recv_response(s)
    check(r is not None and r[0] == 200, f"HTTP/1.0 /healthz: {r and r[0]}")
    check(s.recv(1) == b"", "HTTP/1.0 without keep-alive: connection left open")
    s.close()

    # A request line past the codec's limit: 414, then the close.
    s = socket.create_connection(("127.0.0.1", a), timeout=5)
    s.sendall(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    r = recv_response(s)
    check(r is not None and r[0] == 414, f"long request line: {r and r[0]}, want 414")
    check(s.recv(1) == b"", "after 414: connection left open")
    s.close()

    # The data port still echoes.
    e = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    e.sendall(b"hello")
    check(e.recv(5) == b"hello", "echo broken with --admin on")
    e.close()

    # Drain: a client sends 32 MiB and reads none of the echo, so on SIGTERM
    # the drain waits (up to the 5 s drain timeout) for output that cannot
    # flush. An admin connection opened before the signal, and a new one
    # after it, must both stop reporting ready while the process drains.
    held = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    payload = b"x" * (1 << 20)
    for _ in range(32):
        held.sendall(payload)
    time.sleep(0.3)
    kept = socket.create_connection(("127.0.0.1", a), timeout=5)
    r = request(a, "GET", "/readyz", conn=kept)
    check(r is not None and r[0] == 200, "/readyz before the drain")
    t0 = time.monotonic()
    p.proc.send_signal(15)
    time.sleep(0.3)
    check(p.proc.poll() is None, "the drain ended at once: the test proves nothing")
    # The kept connection: 503, or closed by the drain (a probe failure too).
    try:
        r = request(a, "GET", "/readyz", conn=kept)
    except OSError:
        r = None
    check(r is None or r[0] == 503, f"/readyz on a kept connection while draining: {r and r[0]}")
    # A new connection: the listeners closed at the stop, so refused (or 503).
    try:
        r = request(a, "GET", "/readyz")
        check(r is None or r[0] == 503, f"/readyz while draining: {r[0]}, want 503 or refused")
        print(f"/readyz while draining: {r and r[0]}")
    except ConnectionRefusedError:
        print("/readyz while draining: connection refused (listeners closed)")
    check(p.proc.poll() is None, "process exited before the readiness check: inconclusive")
    kept.close()
    log = p.stop()
    check(time.monotonic() - t0 >= 1.0, "drain shorter than expected")
    held.close()
    print("ok: probes, 404, 405, HEAD, keep-alive, pipelining, HTTP/1.0, 400 and 414 + close, "
          "TERN_ADMIN, drain")
    del log


if __name__ == "__main__":
    main()
