#!/usr/bin/env python3
"""tern-chat --cluster: instances sharing rooms through Redis pub/sub.

Starts a redis-server on a free loopback port (no persistence) and two
tern-chat instances (2 workers each) pointed at it, then checks:
  - rooms: members on both instances, 4 senders (2 per instance) at once;
    every member gets every sender's lines exactly once and in order;
  - nicknames: a name taken on one instance is refused on the other, and
    freed there when its owner leaves;
  - /who and /rooms count both instances' members, /msg reaches a user on
    the other instance (and '! no such user' when nobody holds the name),
    and answers keep the order of the commands;
  - kill -9 of a third instance frees its nicknames within the TTL
    (10 s) plus a heartbeat's slack, and not at once;
  - Redis stopped: each member is told once that the link is down, local
    rooms go on; Redis restarted on the same port: each member is told once
    that it is back, and cross-instance lines flow again without restarting
    tern-chat.
Exits 77 (skipped) without redis-server or when tern-chat was built without
hiredis.
usage: test_cluster.py TERN_CHAT"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

CHAT = sys.argv[1]
NICK_TTL_S = 10  # CHAT_CLUSTER_NICK_TTL_MS
HEARTBEAT_S = 3  # CHAT_CLUSTER_HEARTBEAT_MS
REDIS = shutil.which("redis-server")
if not REDIS:
    print("SKIP: redis-server not found (apt-get install redis-server)")
    sys.exit(77)

work = tempfile.mkdtemp(prefix="tern-chat-cluster-")
procs = []


def fail(msg):
    print("FAIL:", msg)
    for name in sorted(os.listdir(work)):
        if name.endswith(".log"):
            with open(os.path.join(work, name)) as f:
                print(f"--- {name} (tail)")
                print(f.read()[-3000:])
    cleanup()
    sys.exit(1)


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(work, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            fail(f"{what} exited {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.025)
    fail(f"{what} does not listen on {port}")


def start_redis(port):
    log = open(os.path.join(work, "redis.log"), "a")
    p = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", work],
                         stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    wait_port(port, p, "redis-server")
    return p


def start_chat(name, redis_port):
    port = free_port()
    log = open(os.path.join(work, f"{name}.log"), "w")
    p = subprocess.Popen([CHAT, "--bind", "127.0.0.1", "--port", str(port), "--workers", "2",
                          "--idle-timeout", "0", "--cluster", f"redis://127.0.0.1:{redis_port}"],
                         stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    try:
        p.wait(0.2)
        with open(os.path.join(work, f"{name}.log")) as f:
            if "needs hiredis" in f.read():
                print("SKIP: tern-chat built without hiredis (libhiredis-dev)")
                cleanup()
                sys.exit(77)
    except subprocess.TimeoutExpired:
        pass
    wait_port(port, p, f"tern-chat {name}")
    return p, port


def wait_links(name, workers=2, timeout=10.0):
    """Until every worker of instance @name logged its link up."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        with open(os.path.join(work, f"{name}.log")) as f:
            if f.read().count("cluster link up") >= workers:
                return
        time.sleep(0.05)
    fail(f"{name}: cluster links not up within {timeout} s")


def eventually(c, command, want, what, timeout=5.0):
    """Sends @command until its answer (a line starting like @want) is @want:
    what another instance did reaches Redis a moment later."""
    t0 = time.time()
    while True:
        c.drain(0.02)
        c.send(command)
        got = c.expect(lambda l: l.startswith(want.split(":")[0]), what=what)
        if got == want:
            return
        if time.time() - t0 > timeout:
            fail(f"{what}: {got!r}, expected {want!r}")
        time.sleep(0.1)


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.settimeout(0.05)
        self.buf = b""
        self.lines = []  # every line received, in order
        self.nick = self.expect(lambda l: l.startswith("* welcome ")).split()[2]
        self.expect(lambda l: l == f"* {self.nick} joined #lobby")

    def send(self, line):
        self.s.sendall(line.encode() + b"\n")

    def poll(self):
        try:
            d = self.s.recv(1 << 16)
            if not d:
                raise EOFError("closed")
            self.buf += d
        except socket.timeout:
            pass
        *done, self.buf = self.buf.split(b"\r\n")
        new = [x.decode() for x in done]
        self.lines += new
        return new

    def expect(self, pred, timeout=5.0, what=None):
        """The first new line matching pred; fails after timeout."""
        if not hasattr(self, "seen"):
            self.seen = 0
        t0 = time.time()
        while True:
            while self.seen < len(self.lines):
                line = self.lines[self.seen]
                self.seen += 1
                if pred(line):
                    return line
            if time.time() - t0 > timeout:
                fail(f"{getattr(self, 'nick', '?')}: no {what or 'expected line'} within "
                     f"{timeout} s; last lines {self.lines[-5:]}")
            self.poll()

    def drain(self, secs=0.2):
        t0 = time.time()
        while time.time() - t0 < secs:
            self.poll()
        self.seen = len(self.lines)

    def close(self):
        self.s.close()


def nick(c, name):
    c.send(f"/nick {name}")
    line = c.expect(lambda l: l.startswith("! ") or l.endswith(f" is now {name}"),
                    what=f"an answer to /nick {name}")
    if line.startswith("! "):
        return line
    c.nick = name
    return None


def sync_room(clients, speakers, room, timeout=10.0):
    """Until every client has seen a line of every speaker: each worker's
    SUBSCRIBE is through (no fixed sleep, which a loaded machine outruns)."""
    pat = re.compile(r"^\[#" + room + r"\] (\S+): sync \d+$")
    seen = [set() for _ in clients]
    names = {s.nick for s in speakers}
    t0, k = time.time(), 0
    while not all(s >= names for s in seen):
        if time.time() - t0 > timeout:
            fail(f"#{room} not in sync after {timeout} s: {[sorted(s) for s in seen]}")
        for s in speakers:
            s.send(f"sync {k}")
        k += 1
        t1 = time.time()
        while time.time() - t1 < 0.1:
            for i, c in enumerate(clients):
                for line in c.poll():
                    m = pat.match(line)
                    if m:
                        seen[i].add(m.group(1))
    for c in clients:
        c.drain(0.1)


def room_lines(clients, senders, room, count):
    """Every client checks each sender's numbered lines: exactly once, in order."""
    pat = re.compile(r"^\[#" + room + r"\] (\S+): n (\d+)$")
    got = [{s.nick: 0 for s in senders} for _ in clients]
    t0 = time.time()
    while time.time() - t0 < 30:
        for i, c in enumerate(clients):
            for line in c.poll():
                m = pat.match(line)
                if not m or m.group(1) not in got[i]:
                    continue
                k = int(m.group(2))
                if k != got[i][m.group(1)]:
                    fail(f"{c.nick}: from {m.group(1)} got {k}, expected {got[i][m.group(1)]}")
                got[i][m.group(1)] = k + 1
        if all(v == count for g in got for v in g.values()):
            return
    short = {clients[i].nick: g for i, g in enumerate(got) if any(v != count for v in g.values())}
    fail(f"lines missing after 30 s: {short}")


try:
    rport = free_port()
    redis = start_redis(rport)
    a, aport = start_chat("a", rport)
    b, bport = start_chat("b", rport)
    wait_links("a")
    wait_links("b")

    # --- rooms: both ways, several senders, exactly once, in order ---
    A = [Client(aport) for _ in range(3)]
    B = [Client(bport) for _ in range(3)]
    everyone = A + B
    for c in everyone:
        c.send("/join r")
        c.expect(lambda l, c=c: l == f"* {c.nick} joined #r")
    sync_room(everyone, [A[0], B[0]], "r")
    senders = [A[0], A[1], B[0], B[1]]
    N = 300
    for k in range(N):
        for s in senders:
            s.send(f"n {k}")
    room_lines(everyone, senders, "r", N)
    print(f"room: {len(senders)} senders x {N} lines reached {len(everyone)} members "
          "on 2 instances, once each, in order")

    # joins and leaves cross too
    A[2].send("/join lobby")
    B[2].expect(lambda l: l == f"* {A[2].nick} left #r", what="a remote leave notice")

    # a member that hops between rooms faster than its worker's SUBSCRIBE /
    # UNSUBSCRIBE round trips ends up subscribed where it stays
    hopper = Client(bport)
    hopper.send("\n".join(f"/join {'hx' if k % 2 else 'hy'}" for k in range(41)))
    for k in range(41):
        hopper.expect(lambda l: l.startswith(f"* {hopper.nick} joined #h"), what=f"hop {k}")
    A[2].send("/join hy")
    A[2].expect(lambda l: l == f"* {A[2].nick} joined #hy")
    sync_room([hopper, A[2]], [A[2]], "hy")  # fails if hy's channel was left for good
    hopper.close()
    A[2].send("/join lobby")
    A[2].expect(lambda l: l == f"* {A[2].nick} joined #lobby")

    # --- nicknames: unique across instances ---
    if nick(A[0], "Carol"):
        fail("/nick Carol refused on a")
    r = nick(B[0], "cAROL")
    if r != "! nickname taken":
        fail(f"b: /nick cAROL (held on a): expected '! nickname taken', got {r!r}")
    A[0].close()  # leaves: the name is given back at once
    t0 = time.time()
    while nick(B[0], "carol"):
        if time.time() - t0 > 3:
            fail("b: /nick carol still refused 3 s after its owner left")
        time.sleep(0.1)
    print("nicknames: taken on one instance is refused on the other; freed on leave")

    # --- /who, /rooms, /msg across instances ---
    # In #r now: A[1] (a), B[0] (carol, b), B[1] (b), B[2] (b); A[2] is in
    # #lobby on a, with nobody else.
    want = sorted([A[1].nick, B[0].nick, B[1].nick, B[2].nick], key=str.lower)
    A[1].drain(0.05)
    A[1].send("/who")
    got = A[1].expect(lambda l: l.startswith("* members of #r:"), what="/who's answer")
    if got != "* members of #r: " + " ".join(want):
        fail(f"/who on a: {got!r}, expected the members of both instances {want}")
    B[2].drain(0.05)
    B[2].send("/rooms")
    got = B[2].expect(lambda l: l.startswith("* rooms:"), what="/rooms' answer")
    if got != "* rooms: #lobby(1) #r(4)":
        fail(f"/rooms on b: {got!r}, expected '* rooms: #lobby(1) #r(4)'")
    B[2].send(f"/msg {A[2].nick} psst over there")
    B[2].expect(lambda l: l == f"[pm to {A[2].nick}] {B[2].nick}: psst over there",
                what="the /msg echo")
    A[2].expect(lambda l: l == f"[pm] {B[2].nick}: psst over there", what="a cross-instance /msg")
    B[2].send("/msg nobody-here hello")
    B[2].expect(lambda l: l == "! no such user nobody-here", what="'! no such user'")
    # answers keep the order of the commands, behind the cluster's replies
    A[1].send("/who\n/rooms\nafter both")
    l1 = A[1].expect(lambda l: l.startswith("* "), what="the first answer")
    l2 = A[1].expect(lambda l: l.startswith("* "), what="the second answer")
    l3 = A[1].expect(lambda l: l.startswith("[#r]"), what="the line after")
    if not (l1.startswith("* members of") and l2.startswith("* rooms:") and
            l3 == f"[#r] {A[1].nick}: after both"):
        fail(f"answers out of order: {l1!r} {l2!r} {l3!r}")
    print("/who, /rooms and /msg answer for both instances, in the order asked")

    # --- kill -9 frees an instance's names within the TTL ---
    c_proc, cport = start_chat("c", rport)
    wait_links("c")
    victim = Client(cport)
    if nick(victim, "dave"):
        fail("/nick dave refused on c")
    eventually(B[1], "/rooms", "* rooms: #lobby(2) #r(4)", "/rooms with c up")
    c_proc.send_signal(signal.SIGKILL)
    c_proc.wait()
    t0 = time.time()
    if nick(B[1], "dave") != "! nickname taken":
        fail("dave was free at once after kill -9: the name should outlive a crash "
             "until its expiry")
    while nick(B[1], "dave"):
        if time.time() - t0 > NICK_TTL_S + HEARTBEAT_S + 2:
            fail("dave not freed within the TTL after kill -9")
        time.sleep(0.5)
    B[1].send("/rooms")
    got = B[1].expect(lambda l: l.startswith("* rooms:"), what="/rooms' answer")
    if got != "* rooms: #lobby(1) #r(4)":
        fail(f"/rooms still counts the dead instance's member: {got!r}")
    print(f"kill -9: the dead instance's nickname and member were gone after {time.time() - t0:.1f} s "
          f"(TTL {NICK_TTL_S} s)")

    # --- Redis away: local chat goes on; back: cross-instance again ---
    if nick(A[1], "erin"):
        fail("/nick erin refused on a")
    live = [A[1], A[2], B[1], B[2]]
    for c in live:
        c.send("/join s")
        c.expect(lambda l, c=c: l == f"* {c.nick} joined #s")
    sync_room(live, [A[1], B[1]], "s")
    redis.terminate()
    redis.wait()
    for c in live:
        c.expect(lambda l: l.startswith("* cluster link down"), what="the link-down notice")
    A[1].send("local still works")
    A[2].expect(lambda l: l == f"[#s] {A[1].nick}: local still works",
                what="a local line during the outage")
    B[1].send("b local too")
    B[2].expect(lambda l: l == f"[#s] {B[1].nick}: b local too", what="b's local line")
    time.sleep(1.0)
    for c in live:
        c.drain(0.05)
    redis = start_redis(rport)
    for c in live:
        c.expect(lambda l: l.startswith("* cluster link is back"), timeout=10,
                 what="the link-back notice")
    sync_room(live, [A[1], B[1]], "s")  # every worker resubscribed
    # the restarted Redis knows nothing: names and members were re-registered
    if nick(B[2], "Erin") != "! nickname taken":
        fail("erin (held on a) was free on b after Redis restarted: not re-registered")
    B[2].drain(0.05)
    B[2].send("/who")
    got = B[2].expect(lambda l: l.startswith("* members of #s:"), what="/who after the restart")
    want = sorted([c.nick for c in live], key=str.lower)
    if got != "* members of #s: " + " ".join(want):
        fail(f"/who after the restart: {got!r}, expected {want}")
    A[1].send("across again")
    B[2].expect(lambda l: l == f"[#s] {A[1].nick}: across again", what="a line across after")
    B[1].send("and back")
    A[2].expect(lambda l: l == f"[#s] {B[1].nick}: and back", what="a line back after")
    for c in live:
        c.drain(0.2)
        down = sum(l.startswith("* cluster link down") for l in c.lines)
        back = sum(l.startswith("* cluster link is back") for l in c.lines)
        if (down, back) != (1, 1):
            fail(f"{c.nick}: told {down} time(s) down and {back} back, expected once each")
        if any("local still works" in l for l in c.lines if c in B):
            fail(f"{c.nick}: got a line from the outage late")
    print("outage: told once down and once back; local rooms went on; lines cross again")

    for p in (a, b):
        p.send_signal(signal.SIGTERM)
        if p.wait(15) != 0:
            fail(f"tern-chat exited {p.returncode}")
    with open(os.path.join(work, "a.log")) as f:
        m = re.search(r"cluster: (\d+) line\(s\) did not cross", f.read())
    if not m or int(m.group(1)) < 1:
        fail("a's stop line does not count the line said during the outage")
    print(f"a counted {m.group(1)} line(s) that did not cross")
    print("PASS")
finally:
    cleanup()
