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


def check_drain(echo, args):
    """SIGTERM while a client keeps the drain going: a client sends 32 MiB
    and reads none of the echo, so the drain waits (up to the 5 s drain
    timeout) for output that cannot flush. Meanwhile the data port refuses
    new connections, and the admin endpoint still answers, on a connection
    kept from before the signal and on a new one: /readyz 503, /healthz 200.
    Then the process exits 0."""
    p = Program([echo, "--bind", "127.0.0.1", "--port", "0"] + args)
    a = p.admin_port
    held = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    payload = b"x" * (1 << 20)
    for _ in range(32):
        held.sendall(payload)
    time.sleep(0.3)
    kept = socket.create_connection(("127.0.0.1", a), timeout=5)
    r = request(a, "GET", "/readyz", conn=kept)
    check(r is not None and r[0] == 200, f"{args}: /readyz before the drain: {r and r[0]}")
    t0 = time.monotonic()
    p.proc.send_signal(15)
    time.sleep(0.3)
    check(p.proc.poll() is None, f"{args}: the drain ended at once: the test proves nothing")
    r = request(a, "GET", "/readyz", conn=kept)
    check(r is not None and r[0] == 503 and r[2] == b"draining\n",
          f"{args}: /readyz on a kept connection while draining: {r and r[:3:2]}, want 503")
    r = request(a, "GET", "/healthz", conn=kept)
    check(r is not None and r[0] == 200, f"{args}: /healthz kept while draining: {r and r[0]}")
    for path, want in (("/readyz", 503), ("/healthz", 200)):
        r = request(a, "GET", path)  # a new admin connection: the listener serves on
        check(r is not None and r[0] == want,
              f"{args}: GET {path} on a new connection while draining: {r and r[0]}, want {want}")
    try:
        socket.create_connection(("127.0.0.1", p.port), timeout=2).close()
        fail(f"{args}: the data port accepted a connection while draining")
    except ConnectionRefusedError:
        pass
    check(p.proc.poll() is None, f"{args}: process exited before the checks: inconclusive")
    log = p.stop()  # exit 0, no sanitizer report
    elapsed = time.monotonic() - t0
    check(elapsed >= 1.0, f"{args}: drain of {elapsed:.1f} s, shorter than expected")
    check("drain deadline" in log, f"{args}: the held client did not hold the drain:\n{log}")
    kept.close()
    held.close()
    print(f"{args}: /readyz 503 and /healthz 200 through a {elapsed:.1f} s drain, then exit 0")


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

    kept_log = p.stop()
    del kept_log
    # The lame-duck drain, with the acceptor on its own thread and on
    # worker 0's loop (the two places it can run).
    check_drain(echo, ["--workers", "2", "--accept", "thread"])
    check_drain(echo, ["--workers", "2", "--accept", "worker"])
    print("ok: probes, 404, 405, HEAD, keep-alive, pipelining, HTTP/1.0, 400 and 414 + close, "
          "TERN_ADMIN, lame-duck drain")


if __name__ == "__main__":
    main()
