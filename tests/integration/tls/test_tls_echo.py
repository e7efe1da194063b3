#!/usr/bin/env python3
"""TLS on tern-echo, tried with Python's ssl module and openssl s_client:
TLS 1.2 and 1.3, a 4 MiB round trip, SNI choosing between two certificates,
mTLS accepted and refused, resumption that really resumes, a certificate
reload on SIGHUP with a connection open (and a bad file refused), start-up
refused for an expired or mismatched certificate, and the bad inputs: garbage
instead of a ClientHello, a truncated handshake, a peer that stalls in the
handshake, a reset mid-record, and 300 random first flights. Every bad input
is logged with the peer's address and counted, and a connection opened
before them still echoes after them.
usage: test_tls_echo.py TERN_ECHO"""
import os
import random
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tlslib import (CA, Program, check, client_ctx, echo_ok, fail, openssl, path,  # noqa: E402
                    recv_exactly, tls_connect)

ECHO = sys.argv[1]

ca = CA("ca")
other_ca = CA("otherca")
srv_cert, srv_key = ca.leaf("server", "localhost", ["DNS:localhost", "IP:127.0.0.1"])
sni_cert, sni_key = ca.leaf("sni", "other.test", ["DNS:other.test", "DNS:*.other.test"])
cli_cert, cli_key = ca.leaf("client", "alice", client=True)
bad_cli_cert, bad_cli_key = other_ca.leaf("mallory", "mallory", client=True)
old_cert, old_key = ca.leaf("expired", "localhost", ["DNS:localhost"],
                            start="20200101000000Z", end="20200102000000Z")


def start_refused(args, want):
    r = subprocess.run([ECHO, "--port", "0", "--bind", "127.0.0.1", "--tls-port", "0", *args],
                       capture_output=True, timeout=10)
    err = r.stderr.decode(errors="replace")
    check(r.returncode == 2, f"start with {args} exited {r.returncode}, want 2: {err}")
    check(want in err, f"start with {args}: no '{want}' in: {err}")
    check(len(err.strip().splitlines()) == 1, f"want one line, got: {err}")
    print(f"ok: refused at start: {err.strip()}")


start_refused(["--tls-cert", old_cert, "--tls-key", old_key], "expired")
start_refused(["--tls-cert", srv_cert, "--tls-key", sni_key], "does not match")
start_refused(["--tls-cert", path("missing.pem"), "--tls-key", srv_key], "missing.pem")
start_refused(["--tls-cert", srv_cert], "--tls-key")

# Copies the server may reload from.
live_cert, live_key = path("live.pem"), path("live.key")
for src, dst in ((srv_cert, live_cert), (srv_key, live_key)):
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read())

srv = Program([ECHO, "--port", "0", "--bind", "127.0.0.1", "--workers", "2",
               "--tls-port", "0", "--tls-cert", live_cert, "--tls-key", live_key,
               "--tls-sni", f"{sni_cert}:{sni_key}", "--tls-handshake-timeout", "700",
               "--admin", "127.0.0.1:0"], want_admin=True)
P = srv.tls_port
trust = client_ctx(ca=ca.cert)

# ---- the basics ----
for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    s = tls_connect(P, client_ctx(ca=ca.cert, version=v))
    check(s.version() == v.name.replace("_", "."), f"negotiated {s.version()}, asked {v.name}")
    check(echo_ok(s), f"no echo over {v.name}")
    s.close()
print("ok: echo over TLS 1.2 and 1.3, the certificate verified for localhost")

# 4 MiB, written while it is read back: partial writes, records read ahead.
s = tls_connect(P, trust)
blob = random.randbytes(4 << 20)
# One thread (an SSL object is not for two at once), non-blocking: write
# what the socket takes, read what came back, until all has returned.
s.setblocking(False)
sent, got = 0, bytearray()
deadline = time.monotonic() + 60
while len(got) < len(blob) and time.monotonic() < deadline:
    want_w = sent < len(blob)
    select.select([s], [s] if want_w else [], [], 0.5)
    if want_w:
        try:
            sent += s.send(blob[sent:sent + 65536])
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            pass
    while True:
        try:
            b = s.recv(1 << 20)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            break
        if not b:
            fail(f"4 MiB round trip: closed after {len(got)} bytes:\n{srv.log()}")
        got += b
got = bytes(got)
s.setblocking(True)
check(got == blob, f"4 MiB round trip: got {len(got)} bytes back, equal={got == blob}:\n{srv.log()}")
s.close()
print("ok: 4 MiB round trip")

# Plain clients still reach the plain port of the same workers.
p = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
check(echo_ok(p), "plain port stopped echoing")
p.close()

# ---- SNI ----
s = tls_connect(P, trust, name="www.other.test")
check(dict(x[0] for x in s.getpeercert()["subject"])["commonName"] == "other.test",
      "SNI www.other.test did not get the other.test certificate")
check(echo_ok(s), "no echo over the SNI certificate")
s.close()
s = tls_connect(P, trust, name="localhost")
check(dict(x[0] for x in s.getpeercert()["subject"])["commonName"] == "localhost",
      "SNI localhost did not get the default certificate")
s.close()
mark = len(srv.log())
try:
    tls_connect(P, trust, name="nope.test").close()
    fail("a name no certificate has was accepted by a verifying client")
except ssl.SSLCertVerificationError:
    pass
srv.wait_log(r"127\.0\.0\.1:\d+: TLS handshake failed: .*alert", start=mark)
print("ok: SNI picks the certificate; a wrong name fails verification and is logged")

# ---- resumption: Python and openssl s_client ----
for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    ctx = client_ctx(ca=ca.cert, version=v)
    s = tls_connect(P, ctx)
    check(echo_ok(s), "echo before resuming")  # TLS 1.3 tickets come after the handshake
    sess = s.session
    s.close()
    s = tls_connect(P, ctx, session=sess)
    check(s.session_reused, f"{v.name}: the session was not resumed")
    check(echo_ok(s), "echo on a resumed session")
    s.close()
for flag in ("-tls1_2", "-tls1_3"):
    sess = path("sess" + flag)
    for arg, want in (("-sess_out", "New"), ("-sess_in", "Reused")):
        r = subprocess.run(["sh", "-c", f"(echo x; sleep 0.5) | openssl s_client -connect "
                            f"127.0.0.1:{P} -servername localhost -CAfile {ca.cert} {flag} "
                            f"{arg} {sess}"], capture_output=True, timeout=20)
        out = r.stdout.decode(errors="replace")
        check(f"\n{want}," in out, f"s_client {flag} {arg}: no '{want},' in:\n{out[-1500:]}")
print("ok: sessions resume (Python and s_client -sess_out/-sess_in: Reused), TLS 1.2 and 1.3")

# ---- SIGHUP reload with a connection open ----
keep = tls_connect(P, trust)
check(echo_ok(keep), "no echo before the reload")
serial_before = keep.getpeercert()["serialNumber"]
new_cert, new_key = ca.leaf("server2", "localhost", ["DNS:localhost", "IP:127.0.0.1"])
for src, dst in ((new_cert, live_cert), (new_key, live_key)):
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read())
mark = len(srv.log())
srv.signal(signal.SIGHUP)
srv.wait_log(r"TLS certificates reloaded \(generation 2\)", start=mark)
check(echo_ok(keep, b"still here\n"), "the open connection broke at the reload")
s = tls_connect(P, trust)
serial_after = s.getpeercert()["serialNumber"]
check(serial_after != serial_before, "a new connection still got the old certificate")
s.close()
# A key that does not match: refused, the new files stay in use.
with open(sni_key, "rb") as f, open(live_key, "wb") as g:
    g.write(f.read())
mark = len(srv.log())
srv.signal(signal.SIGHUP)
srv.wait_log(r"TLS reload refused, the old certificates stay in use: .*does not match", start=mark)
s = tls_connect(P, trust)
check(s.getpeercert()["serialNumber"] == serial_after, "a refused reload changed the certificate")
s.close()
check(echo_ok(keep, b"and here\n"), "the open connection broke at the refused reload")
check(srv.proc.poll() is None, "SIGHUP stopped the server")
print("ok: SIGHUP reloads with a connection open; a bad key is refused and the old one kept")

# ---- bad inputs; `keep` must echo after each ----
errors_before = srv.metrics().get("tern_tls_errors_total", 0)


def bad(name, send, expect_log, hold=0.0, rst=False):
    mark = len(srv.log())
    c = socket.create_connection(("127.0.0.1", P), timeout=5)
    port = c.getsockname()[1]
    if send:
        c.sendall(send)
    if hold:
        c.settimeout(hold + 3)
        t0 = time.monotonic()
        try:
            while c.recv(4096):
                pass
        except OSError:
            pass
        check(time.monotonic() - t0 < hold + 2.5, f"{name}: not closed in time")
    if rst:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    srv.wait_log(rf"127\.0\.0\.1:{port}: TLS {expect_log}", start=mark)
    check(echo_ok(keep), f"the good connection stopped echoing after {name}")
    print(f"ok: {name}: logged with the peer, others unaffected")


def client_hello():
    """The first flight of a real client, from an in-memory handshake."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


hello = client_hello()
check(hello[0] == 0x16 and len(hello) > 100, "could not build a ClientHello")
bad("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", r"handshake failed: .*(http request|wrong version number)")
bad("truncated handshake", hello[:60], r"handshake failed: .*peer closed")
bad("slowloris", hello[:10], r"handshake not finished in time", hold=0.7)


def reset_mid_record():
    """A full handshake over memory BIOs, then half a record and a RST."""
    mark = len(srv.log())
    raw = socket.create_connection(("127.0.0.1", P), timeout=5)
    port = raw.getsockname()[1]
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname="localhost")
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(out.read())
            inc.write(raw.recv(65536))
    raw.sendall(out.read())
    obj.write(b"x" * 1000)
    rec = out.read()
    raw.sendall(rec[:len(rec) // 2])
    time.sleep(0.1)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()
    srv.wait_log(rf"127\.0\.0\.1:{port}: TLS read failed: .*reset", start=mark)
    check(echo_ok(keep), "the good connection stopped echoing after a reset mid-record")
    print("ok: reset mid-record: logged with the peer, others unaffected")


reset_mid_record()

# 300 random first flights: random bytes, or a real record header with a
# random body, each closed or reset at once.
rng = random.Random(1234)
for i in range(300):
    body = rng.randbytes(rng.randint(1, 3000))
    data = (bytes([0x16, 3, rng.randint(0, 4)]) + struct.pack(">H", len(body)) + body
            if i % 2 else body)
    c = socket.create_connection(("127.0.0.1", P), timeout=5)
    try:
        c.sendall(data)
    except OSError:
        pass
    if i % 3 == 0:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
time.sleep(1.1)
check(srv.proc.poll() is None, "the server died under random first flights")
# At most 10 lines a second per worker: the next line says how many were not.
bad("one more garbage", b"\x00" * 64, r"handshake failed: .*left out\)")
check(echo_ok(keep), "the good connection stopped echoing after random first flights")
m = srv.metrics()
counted = m.get("tern_tls_errors_total", 0) - errors_before
check(counted >= 4 + 150, f"only {counted} TLS errors counted for 4 bad peers + 300 random ones")
check(m.get("tern_tls_handshakes_total", 0) >= 10, "handshakes not counted")
check(m.get("tern_tls_resumed_total", 0) >= 4, "resumed handshakes not counted")
print(f"ok: 300 random first flights survived; {int(counted)} TLS errors counted, "
      f"{int(m['tern_tls_handshakes_total'])} handshakes, {int(m['tern_tls_resumed_total'])} "
      "resumed")
keep.close()

# ---- mTLS ----
srv.stop()
srv = Program([ECHO, "--port", "0", "--bind", "127.0.0.1", "--workers", "1",
               "--tls-port", "0", "--tls-cert", srv_cert, "--tls-key", srv_key,
               "--tls-ca", ca.cert, "--tls-verify-client", "required"])
P = srv.tls_port
s = tls_connect(P, client_ctx(ca=ca.cert, cert=cli_cert, key=cli_key))
check(echo_ok(s), "mTLS: a client with a good certificate got no echo")
s.close()


def refused(ctx, what, log):
    mark = len(srv.log())
    try:
        s = tls_connect(P, ctx)
        s.sendall(b"x\n")  # TLS 1.3: the server's verdict comes after the client's Finished
        if s.recv(10):
            fail(f"mTLS: {what} was served")
    except (ssl.SSLError, ConnectionError, OSError):
        pass
    srv.wait_log(r"127\.0\.0\.1:\d+: TLS handshake failed: " + log, start=mark)
    print(f"ok: mTLS refuses {what}, logged")


refused(client_ctx(ca=ca.cert), "a client without a certificate", r".*certificate")
refused(client_ctx(ca=ca.cert, cert=bad_cli_cert, key=bad_cli_key),
        "a certificate from the wrong CA", r"certificate verify failed")
srv.stop()
print("PASS")
