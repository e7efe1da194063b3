#!/usr/bin/env python3
"""TLS in the programs, with the real clients: redis-cli --tls and
redis-benchmark --tls against tern-kv; openssl s_client in tern-chat's lobby
beside a plain client; tern-proxy terminating TLS in front of
a plain tern-echo and originating TLS to tern-echo's TLS port (the name
verified, a wrong one refused); TERN_TLS_* variables in place of the flags.
usage: test_tls_programs.py TERN_ECHO TERN_KV TERN_PROXY TERN_CHAT"""
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tlslib import CA, Program, check, client_ctx, echo_ok, skip, tls_connect  # noqa: E402

ECHO, KV, PROXY, CHAT = sys.argv[1:5]
if not shutil.which("redis-cli") or not shutil.which("redis-benchmark"):
    skip("needs redis-cli and redis-benchmark (apt-get install redis-tools)")

ca = CA("ca")
cert, key = ca.leaf("server", "localhost", ["DNS:localhost", "IP:127.0.0.1"])
trust = client_ctx(ca=ca.cert)
TLS = ["--tls-port", "0", "--tls-cert", cert, "--tls-key", key]

# ---- tern-kv with redis-cli and redis-benchmark ----
kv = Program([KV, "--port", "0", "--bind", "127.0.0.1", "--workers", "2", *TLS])


def cli(*args):
    r = subprocess.run(["redis-cli", "--tls", "--cacert", ca.cert, "-h", "localhost", "-p",
                        str(kv.tls_port), *args], capture_output=True, timeout=20)
    return r.returncode, r.stdout.decode().strip()


check(cli("PING") == (0, "PONG"), f"redis-cli --tls PING: {cli('PING')}")
check(cli("SET", "tls-key", "over tls") == (0, "OK"), "redis-cli --tls SET")
check(cli("GET", "tls-key") == (0, "over tls"), f"redis-cli --tls GET: {cli('GET', 'tls-key')}")
# The same key through the plain port: one store behind both listeners.
r = subprocess.run(["redis-cli", "-p", str(kv.port), "GET", "tls-key"], capture_output=True,
                   timeout=10)
check(r.stdout.decode().strip() == "over tls", "the plain port does not see the TLS port's key")
r = subprocess.run(["redis-benchmark", "--tls", "--cacert", ca.cert, "-h", "localhost", "-p",
                    str(kv.tls_port), "-n", "5000", "-c", "20", "-t", "set,get,incr", "-q"],
                   capture_output=True, timeout=120)
out = r.stdout.decode(errors="replace")
check(r.returncode == 0 and out.count("requests per second") == 3,
      f"redis-benchmark --tls exited {r.returncode}:\n{out[-2000:]}\n{r.stderr.decode()[-500:]}")
print("ok: tern-kv: redis-cli --tls and redis-benchmark --tls (SET, GET, INCR)")
kv.stop()

# ---- tern-chat: openssl s_client and a plain client in one room ----
chat = Program([CHAT, "--port", "0", "--bind", "127.0.0.1", "--workers", "2", *TLS,
                "--flood-rate", "0"] if "--flood-rate" in subprocess.run(
                    [CHAT, "--help"], capture_output=True).stdout.decode() else
               [CHAT, "--port", "0", "--bind", "127.0.0.1", "--workers", "2", *TLS])
plain = socket.create_connection(("127.0.0.1", chat.port), timeout=10)
pf = plain.makefile("rb")
check(pf.readline().startswith(b"* welcome"), "plain chat client: no welcome")
sc = subprocess.Popen(["openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{chat.tls_port}",
                       "-servername", "localhost", "-CAfile", ca.cert, "-verify_return_error"],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
check(sc.stdout.readline().startswith(b"* welcome"), "s_client: no welcome from tern-chat")
sc.stdin.write(b"/nick tlsuser\nhello from tls\n")
sc.stdin.flush()
deadline = time.monotonic() + 10
seen = b""
while b"tlsuser: hello from tls" not in seen and time.monotonic() < deadline:
    seen += pf.readline()
check(b"tlsuser: hello from tls" in seen, f"the plain client did not hear the TLS one: {seen!r}")
plain.sendall(b"hello from plain\n")
seen = b""
while b"hello from plain" not in seen and time.monotonic() < deadline:
    seen += sc.stdout.readline()
check(b"hello from plain" in seen, f"s_client did not hear the plain client: {seen!r}")
sc.terminate()  # -quiet ignores the end of its input
sc.wait(timeout=10)
plain.close()
# /quit: tern-chat says goodbye and closes gracefully, which over TLS means a
# close_notify first; Python's ssl raises SSLEOFError on an end without one.
strict = client_ctx(ca=ca.cert)
strict.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # Python sets it by default
q = tls_connect(chat.tls_port, strict)
q.sendall(b"/quit\n")
tail = b""
try:
    while True:
        b = q.recv(4096)
        if not b:
            break
        tail += b
except ssl.SSLError:  # UNEXPECTED_EOF_WHILE_READING
    fail(f"tern-chat closed without close_notify after: {tail!r}")
q.close()
chat.stop()
print("ok: a graceful close sends close_notify")
print("ok: tern-chat: openssl s_client and a plain client talk in one lobby")

# ---- tern-echo from TERN_TLS_* variables ----
env = dict(os.environ, TERN_TLS_PORT="0", TERN_TLS_CERT=cert, TERN_TLS_KEY=key)
p = subprocess.Popen([ECHO, "--port", "0", "--bind", "127.0.0.1", "--workers", "1"], env=env,
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
line = ""
while "listening for TLS" not in line:
    line = p.stdout.readline().decode()
    check(line, "tern-echo with TERN_TLS_* did not start a TLS listener")
port = int(line.rsplit(" ", 1)[1])
s = tls_connect(port, trust)
check(echo_ok(s), "no echo with TLS from TERN_TLS_* variables")
s.close()
p.terminate()
p.wait(timeout=10)
print("ok: TERN_TLS_PORT/CERT/KEY stand in for the flags")

# ---- tern-proxy: termination and origination ----
echo = Program([ECHO, "--port", "0", "--bind", "127.0.0.1", "--workers", "1", *TLS])
term = Program([PROXY, "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{echo.port}",
                "--workers", "1", "--tls-cert", cert, "--tls-key", key], want_tls=False)
s = tls_connect(term.port, trust)
check(echo_ok(s, b"through the terminator\n"), "tern-proxy did not terminate TLS")
s.close()
print("ok: tern-proxy terminates TLS in front of a plain backend")

orig = Program([PROXY, "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{echo.tls_port}",
                "--workers", "1", "--to-tls", "--to-ca", ca.cert, "--to-name", "localhost"],
               want_tls=False)
c = socket.create_connection(("127.0.0.1", orig.port), timeout=5)
check(echo_ok(c, b"through the originator\n"), "tern-proxy did not originate TLS")
c.close()
print("ok: tern-proxy originates TLS, the backend's name verified")

wrong = Program([PROXY, "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{echo.tls_port}",
                 "--workers", "1", "--to-tls", "--to-ca", ca.cert, "--to-name", "wrong.test"],
                want_tls=False)
c = socket.create_connection(("127.0.0.1", wrong.port), timeout=5)
c.sendall(b"x\n")
try:
    got = c.recv(10)
except ConnectionError:
    got = b""
check(got == b"", f"tern-proxy forwarded to a backend whose name did not verify: {got!r}")
c.close()
wrong.wait_log(r"TLS handshake failed: certificate verify failed: .*[Hh]ostname mismatch")
print("ok: tern-proxy refuses a backend whose certificate does not name it, and says why")
for prog in (wrong, orig, term, echo):
    prog.stop()
print("PASS")
