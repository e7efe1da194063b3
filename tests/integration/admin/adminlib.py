"""Shared by the admin endpoint tests: start a tern program with --admin on
free loopback ports (read back from its log), speak plain HTTP/1.1 to it
over a raw socket, and stop it checking its exit and its log.
"""

import atexit
import os
import re
import signal
import socket
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


class Program:
    """A tern program run with --admin 127.0.0.1:0; .port and .admin_port."""

    def __init__(self, argv, env=None, admin=True):
        self.name = os.path.basename(argv[0])
        self.log = tempfile.NamedTemporaryFile(prefix=self.name + "-", suffix=".log", delete=False)
        args = list(argv) + (["--admin", "127.0.0.1:0"] if admin else [])
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env)
        atexit.register(self.kill)  # a failing test leaves no server behind
        self.port = self.admin_port = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            log = self.read_log()
            m = re.search(r" listening on \S+ port (\d+)", log)
            a = re.search(r"admin endpoint on \S+ port (\d+)", log)
            if m and (a or not admin):
                self.port = int(m.group(1))
                self.admin_port = int(a.group(1)) if a else None
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        fail(f"{self.name} did not start:\n{self.read_log()}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def read_log(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self, timeout=20):
        """SIGTERM; fails the test unless the exit is 0 with no sanitizer report."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail(f"{self.name} did not stop within {timeout} s:\n{self.read_log()}")
        log = self.read_log()
        os.unlink(self.log.name)
        if self.proc.returncode != 0:
            fail(f"{self.name} exited {self.proc.returncode}:\n{log}")
        if re.search(r"ERROR: (Address|Leak)Sanitizer|runtime error:", log):
            fail(f"sanitizer report from {self.name}:\n{log}")
        return log


_unread = {}  # socket -> bytes received past the last response read


def recv_response(sock, timeout=5.0, head_only=False):
    """One HTTP/1.1 response from @sock: (status, headers dict lowercased, body).
    Bytes past it (pipelined answers) are kept for the next call.
    @head_only: the answer to a HEAD, no body whatever Content-Length says
    (body is then what arrived after the head: must be nothing). Returns
    None when the peer closed before a whole response."""
    sock.settimeout(timeout)
    data = _unread.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if head_only:
        return status, headers, rest
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    if len(rest) > n:
        _unread[sock] = rest[n:]
    return status, headers, rest[:n]


def request(port, method, path, conn=None, extra=""):
    """Sends one request (on @conn when given, else a new connection that is
    closed after) and returns recv_response()'s answer."""
    s = conn or socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        return recv_response(s, head_only=(method == "HEAD"))
    finally:
        if conn is None:
            s.close()


def get(port, path):
    r = request(port, "GET", path)
    if r is None:
        fail(f"GET {path}: connection closed without a response")
    return r


def metrics_dict(text):
    """{'name{labels}': value} from an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, val = line.rsplit(" ", 1)
        out[key] = float(val)
    return out


def sum_metric(m, name):
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))
