#!/usr/bin/env python3
"""tern-chat --cluster against a Redis that misbehaves: an error on the link,
never a crash.

A fake Redis on a free loopback port answers every command of one round of
connections the same wrong way, then the next round another way:
  1. a bulk reply announced as 100 MB, of which 2 MiB are sent: tern-chat
     must close the connection once a reply passes its bound (1 MiB), not
     buffer it all;
  2. a status reply where an integer is due (the heartbeat script);
  3. half a bulk reply, then the connection closes;
  4. right answers, then a reply nobody asked for (hiredis 0.14 would
     assert() on it: the link must be failed before hiredis sees it);
  5. silence: it reads everything and answers nothing. The link is up but
     nothing is acknowledged, so after 1 MiB of lines in flight (the
     bounded publish queue) further lines do not cross and are counted,
     while local delivery goes on; and within two heartbeats the link is
     called down ("no answer from Redis").
Throughout, tern-chat (1 worker) must keep running, keep reconnecting, and
serve its own clients: a line said in the lobby comes back. Its log must
name each failure. Needs no redis-server; exits 77 when tern-chat was built
without hiredis.
usage: test_cluster_bad_redis.py TERN_CHAT"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

CHAT = sys.argv[1]
work = tempfile.mkdtemp(prefix="tern-chat-badredis-")
logpath = os.path.join(work, "chat.log")


def fail(msg):
    print("FAIL:", msg)
    try:
        with open(logpath) as f:
            print(f.read()[-4000:])
    except OSError:
        pass
    sys.exit(1)


def count_commands(buf):
    """Complete RESP commands at the start of buf: (count, rest)."""
    n = 0
    while True:
        if not buf.startswith(b"*"):
            return n, buf
        end = buf.find(b"\r\n")
        if end < 0:
            return n, buf
        argc, pos = int(buf[1:end]), end + 2
        for _ in range(argc):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return n, buf
            ln = int(buf[pos + 1:end])
            pos = end + 2 + ln + 2
            if pos > len(buf):
                return n, buf
        buf = buf[pos:]
        n += 1


MODES = ["huge", "wrongtype", "midreply", "unsolicited", "silent"]
state = {"conns": 0, "huge_closed": False}


def serve(conn, mode):
    buf = b""
    conn.settimeout(10)
    if mode == "unsolicited":
        conn.settimeout(0.3)
        try:
            while True:
                d = conn.recv(65536)
                if not d:
                    return
                n, buf = count_commands(buf + d)
                conn.sendall(b":1\r\n" * n)
        except socket.timeout:
            pass
        except OSError:
            return
        try:
            conn.sendall(b":7\r\n")
            conn.settimeout(10)
            while conn.recv(65536):
                pass
        except OSError:
            pass
        conn.close()
        return
    try:
        while True:
            d = conn.recv(65536)
            if not d:
                return
            n, buf = count_commands(buf + d)
            if not n:
                continue
            if mode == "huge":
                conn.sendall(b"$100000000\r\n")
                chunk = b"x" * 65536
                try:
                    for _ in range(32):  # 2 MiB, twice the bound
                        conn.sendall(chunk)
                        time.sleep(0.005)
                except OSError:
                    state["huge_closed"] = True
                    return
                # tern-chat must have closed by now: reads see EOF
                try:
                    while conn.recv(65536):
                        pass
                    state["huge_closed"] = True
                except OSError:
                    state["huge_closed"] = True
                return
            if mode == "wrongtype":
                conn.sendall(b"+OK\r\n" * n)
            if mode == "silent":
                continue
            if mode == "midreply":
                conn.sendall(b"$10\r\nabc")
                return
    except OSError:
        return
    finally:
        conn.close()


lsock = socket.socket()
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind(("127.0.0.1", 0))
lsock.listen(16)
rport = lsock.getsockname()[1]


def acceptor():
    while True:
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        # two connections (publish, subscribe) per attempt share a mode
        mode = MODES[min(state["conns"] // 2, len(MODES) - 1)]
        state["conns"] += 1
        threading.Thread(target=serve, args=(c, mode), daemon=True).start()


threading.Thread(target=acceptor, daemon=True).start()

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
log = open(logpath, "w")
chat = subprocess.Popen([CHAT, "--bind", "127.0.0.1", "--port", str(port), "--workers", "1",
                         "--idle-timeout", "0", "--cluster", f"redis://127.0.0.1:{rport}"],
                        stdout=log, stderr=subprocess.STDOUT)
try:
    time.sleep(0.3)
    if chat.poll() is not None:
        with open(logpath) as f:
            if "needs hiredis" in f.read():
                print("SKIP: tern-chat built without hiredis (libhiredis-dev)")
                sys.exit(77)
        fail(f"tern-chat exited {chat.returncode}")

    def logged(text):
        with open(logpath) as f:
            return text in f.read()

    t0 = time.time()
    wants = ["reply from Redis too large", "unexpected reply to a heartbeat",
             "cluster link down", "a reply from Redis nobody asked for"]
    while time.time() - t0 < 20 and not (all(logged(w) for w in wants) and state["conns"] >= 8):
        if chat.poll() is not None:
            fail(f"tern-chat exited {chat.returncode} (signal {-chat.returncode})")
        time.sleep(0.1)
    for w in wants:
        if not logged(w):
            fail(f"no '{w}' in tern-chat's log after 20 s ({state['conns']} connections)")
    if state["conns"] < 8:
        fail(f"only {state['conns']} connections: tern-chat stopped reconnecting")
    if not state["huge_closed"]:
        fail("tern-chat read a 2 MiB reply to the end instead of closing at its bound")

    # its own clients are served all along
    c = socket.create_connection(("127.0.0.1", port))
    c.settimeout(5)
    f = c.makefile("rb")
    nick = f.readline().split()[2].decode()
    f.readline()
    c.sendall(b"still here\n")
    line = f.readline().decode().rstrip("\r\n")
    if line != f"[#lobby] {nick}: still here":
        fail(f"local chat: got {line!r}")

    # the silent round: lines pile up unacknowledged until the bound
    # up once per round: huge, wrongtype, midreply, unsolicited, then silent
    t0 = time.time()
    ups = 0
    while ups < 5 and time.time() - t0 < 10:
        time.sleep(0.1)
        with open(logpath) as lf:
            ups = lf.read().count("cluster link up")
    if ups < 5 or state["conns"] < 10:
        fail(f"the link never came up against the silent Redis ({ups} ups)")
    time.sleep(0.3)
    LINES, SIZE = 500, 3000
    pad = "p" * SIZE
    for k in range(LINES):
        c.sendall(f"{k} {pad}\n".encode())
        got = f.readline().decode().rstrip("\r\n")
        while got.startswith("* cluster link"):  # told when the link came back
            got = f.readline().decode().rstrip("\r\n")
        if got != f"[#lobby] {nick}: {k} {pad}":
            fail(f"local line {k} with the publish queue full: got {got[:60]!r}")
    c.close()
    # no reply timeouts in hiredis 0.14: the heartbeat notices the silence
    t0 = time.time()
    while not logged("no answer from Redis") and time.time() - t0 < 12:
        time.sleep(0.2)
    if not logged("no answer from Redis"):
        fail("a Redis that stopped answering was not noticed within 12 s")
    if chat.poll() is not None:
        fail(f"tern-chat exited {chat.returncode}")
    chat.send_signal(signal.SIGTERM)
    if chat.wait(15) != 0:
        fail(f"tern-chat exited {chat.returncode} on SIGTERM")
    with open(logpath) as lf:
        m = re.search(r"cluster: (\d+) line\(s\) did not cross .*, (\d+) unconfirmed", lf.read())
    # 1 MiB in flight holds about 349 of these lines: those went out (and
    # stayed unconfirmed), the rest were dropped and counted
    fit = (1 << 20) // SIZE
    dropped, unconfirmed = (int(m.group(1)), int(m.group(2))) if m else (-1, -1)
    if not (LINES - fit <= dropped <= LINES - fit + 10 and fit - 10 <= unconfirmed <= fit + 10):
        fail(f"with the publish queue full: {dropped} lines dropped and {unconfirmed} "
             f"unconfirmed; expected about {LINES - fit} and {fit}")
    print(f"silent Redis: {unconfirmed} lines in flight (1 MiB bound), {dropped} dropped and "
          "counted, all delivered locally")
    print(f"bad Redis: huge bulk, wrong type, a cut reply and an unasked one each failed the link "
          f"({state['conns']} connections); local chat went on; clean stop")
    print("PASS")
finally:
    if chat.poll() is None:
        chat.kill()
        chat.wait()
    lsock.close()
