"""Shared by the TLS tests: certificates made at test time with the openssl
command line tool (never committed keys), tern programs started on free
loopback ports (read back from their logs), and small TLS clients.
"""

import atexit
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

SKIP = 77  # ctest's SKIP_RETURN_CODE


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


def check(cond, why):
    if not cond:
        fail(why)


if not shutil.which("openssl"):
    skip("needs the openssl command line tool (apt-get install openssl)")

WORK = tempfile.mkdtemp(prefix="tern-tls-")
atexit.register(shutil.rmtree, WORK, True)


def path(name):
    return os.path.join(WORK, name)


def openssl(*args, stdin=None):
    r = subprocess.run(["openssl", *args], cwd=WORK, input=stdin, capture_output=True)
    if r.returncode != 0:
        fail(f"openssl {' '.join(args)}: {r.stderr.decode(errors='replace')}")
    return r.stdout


CA_CNF = """[ ca ]
default_ca = ca_default
[ ca_default ]
dir = {dir}
database = {dir}/{name}.index
new_certs_dir = {dir}
serial = {dir}/{name}.serial
default_md = sha256
policy = any
copy_extensions = copy
[ any ]
commonName = supplied
"""


class CA:
    """A certificate authority, to sign leaves with (optionally out of date)."""

    def __init__(self, name):
        self.name = name
        self.key, self.cert = path(name + ".key"), path(name + ".pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", f"/CN={name}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        with open(path(name + ".index.attr"), "w") as f:
            f.write("unique_subject = no\n")
        open(path(name + ".index"), "w").close()
        with open(path(name + ".serial"), "w") as f:
            f.write("1000\n")
        with open(path(name + ".cnf"), "w") as f:
            f.write(CA_CNF.format(dir=WORK, name=name))

    def leaf(self, name, cn, sans=(), client=False, start=None, end=None):
        """Signs a new key for @cn; returns (cert_file, key_file)."""
        key, csr, cert = path(name + ".key"), path(name + ".csr"), path(name + ".pem")
        args = ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", f"/CN={cn}"]
        if sans:
            args += ["-addext", "subjectAltName=" + ",".join(sans)]
        args += ["-addext", "extendedKeyUsage=" + ("clientAuth" if client else "serverAuth")]
        openssl(*args)
        dates = ["-startdate", start, "-enddate", end] if start else ["-days", "2"]
        openssl("ca", "-batch", "-notext", "-config", path(self.name + ".cnf"), "-cert", self.cert,
                "-keyfile", self.key, "-in", csr, "-out", cert, *dates)
        return cert, key


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Program:
    """A tern program; .port (plain), .tls_port, .admin_port from its log."""

    def __init__(self, argv, want_tls=True, want_admin=False, plain_re=r" listening on \S+ port (\d+)"):
        self.name = os.path.basename(argv[0])
        self.logf = tempfile.NamedTemporaryFile(prefix=self.name + "-", suffix=".log",
                                                delete=False, dir=WORK)
        self.proc = subprocess.Popen(list(argv), stdout=self.logf, stderr=subprocess.STDOUT)
        atexit.register(self.kill)
        self.port = self.tls_port = self.admin_port = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            log = self.log()
            m = re.search(plain_re, log)
            t = re.search(r" listening for TLS on \S+ port (\d+)", log)
            a = re.search(r"admin endpoint on \S+ port (\d+)", log)
            if m and (t or not want_tls) and (a or not want_admin):
                self.port = int(m.group(1))
                self.tls_port = int(t.group(1)) if t else None
                self.admin_port = int(a.group(1)) if a else None
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        fail(f"{self.name} did not start:\n{self.log()}")

    def log(self):
        with open(self.logf.name, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=5.0, start=0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log()[start:])
            if m:
                return m
            time.sleep(0.02)
        fail(f"{self.name}: no log line matching {pattern!r} within {timeout} s:\n{self.log()}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        """SIGTERM; a graceful exit (0) is required."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
            fail(f"{self.name} did not stop on SIGTERM:\n{self.log()}")
        check(rc == 0, f"{self.name} exited {rc}:\n{self.log()}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def metrics(self):
        s = socket.create_connection(("127.0.0.1", self.admin_port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
        out = {}
        for line in data.decode().split("\r\n\r\n", 1)[1].splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                base = name.split("{")[0]
                out[base] = out.get(base, 0) + float(value)
        return out


def client_ctx(ca=None, cert=None, key=None, version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        ctx.load_verify_locations(ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def tls_connect(port, ctx, name="localhost", session=None, timeout=5):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=name, session=session)
    except Exception:
        raw.close()
        raise


def recv_exactly(s, n):
    data = b""
    while len(data) < n:
        b = s.recv(min(65536, n - len(data)))
        if not b:
            break
        data += b
    return data


def echo_ok(s, payload=b"ping\n"):
    s.sendall(payload)
    got = recv_exactly(s, len(payload))
    return got == payload
