#!/usr/bin/env python3
"""tern-chat under overload: a worker's inbox stays bounded.

2 workers, 2,000 members in the lobby: 50 senders push 300 lines each in
bursts as fast as TCP takes them (and read what the room says, as members
do), 50 members read everything, 1,900 never read. A speaker whose line
fills another worker's inbox past --max-inbox is paused until it drains
(backpressure to TCP), so:
  - every member that keeps up (senders and readers) gets every line of
    every sender, in order, and no sender is dropped;
  - the peak inbox stays within --max-inbox plus one message per speaker,
    and speakers were paused (tern-chat's stop line reports both);
  - the server's peak RSS stays under a stated bound (members x max-outbuf
    for those that never read, plus slack);
  - the members that never read are dropped as too slow, nobody else.
Without the bound (or with it far above the flood), senders fall behind the
room's traffic and are dropped as too slow: this test fails.
usage: test_inbox_bound.py TERN_CHAT"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import resource

CHAT = sys.argv[1]
with open(CHAT, "rb") as f:
    image = f.read()
SENDERS, READERS, SLOW, LINES = 50, 50, 1900, 300
if b"__tsan_init" in image:
    # ThreadSanitizer runs the server 5-15 times slower: a smaller room, so
    # the members that read keep up and what is checked is the inbox's
    # cross-thread hand-off, not the machine's speed.
    SENDERS, READERS, SLOW, LINES = 20, 20, 200, 300  # a reader per sender
MAX_INBOX, MAX_OUTBUF = 16 * 1024, 256 * 1024
if b"__tsan_init" in image:
    MAX_INBOX = 4 * 1024  # so that the smaller flood still fills it
MSG_MAX = 200  # header (struct chat_msg) + "[#lobby] guestNNNN: flood NNN\r\n", generously
RSS_BOUND = 64 * 2**20 + SLOW * (MAX_OUTBUF + 64 * 1024)
# An ASan build keeps freed blocks in quarantine (256 MiB by default) and
# pads each block with redzones: that is the tool's memory, not tern-chat's.
# TSan's shadow memory is several times the application's.
if b"__asan_init" in image:
    RSS_BOUND += 256 * 2**20 + RSS_BOUND // 4
if b"__tsan_init" in image:
    RSS_BOUND = RSS_BOUND * 8 + 512 * 2**20


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
need = 2 * (SENDERS + READERS + SLOW) + 200
if hard < need:
    print(f"SKIP: needs {need} descriptors, the hard limit is {hard}")
    sys.exit(77)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

port = free_port()
log = open(os.environ.get("TMPDIR", "/tmp") + f"/tern-chat-inbox-{os.getpid()}.log", "w+")
srv = subprocess.Popen([CHAT, "--bind", "127.0.0.1", "--port", str(port), "--workers", "2",
                        "--max-inbox", str(MAX_INBOX), "--max-outbuf", str(MAX_OUTBUF),
                        "--idle-timeout", "0", "--flood-rate", "0"], stdout=log, stderr=subprocess.STDOUT)
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.05)

    def member():
        s = socket.create_connection(("127.0.0.1", port))
        f = s.makefile("rb")
        nick = f.readline().split()[2].decode()  # "* welcome NICK"
        f.readline()  # its own join
        s.setblocking(False)
        return s, nick

    # Senders and readers alternate, so each worker has both.
    pairs = [(member(), member()) for _ in range(SENDERS)]
    senders = [p[0] for p in pairs]
    readers = [p[1] for p in pairs]
    # Every join is announced to the room, and an announcement pauses no
    # speaker: 1,900 joins in one burst could fill an inbox past the bound
    # before the flood begins. In batches of 100 (at most ~7 KiB of notices,
    # under --max-inbox) with a pause to drain, the peak is the flood's.
    slow = []
    for _ in range(0, SLOW, 100):
        slow += [socket.create_connection(("127.0.0.1", port)) for _ in range(min(100, SLOW - len(slow)))]
        time.sleep(0.05)
    index = {nick: i for i, (_, nick) in enumerate(senders)}
    line_re = re.compile(rb"^\[#lobby\] ([^:]+): flood (\d+)$")

    stop = threading.Event()
    errors = []

    def check(buf, got, data, who):
        lines = (buf + data).split(b"\r\n")
        rest = lines.pop()
        for ln in lines:
            m = line_re.match(ln)
            if not m:
                if ln.startswith(b"* disconnected"):
                    errors.append(f"{who} was dropped: {ln!r}")
                continue
            s = index.get(m.group(1).decode())
            if s is None:
                continue
            seq = int(m.group(2))
            if seq != got[s]:
                errors.append(f"{who}: from sender {s} got {seq}, expected {got[s]}")
            got[s] = seq + 1
        return rest

    def sender(i):
        s, nick = senders[i]
        out = b"".join(b"flood %d\r\n" % k for k in range(LINES))
        buf, got = b"", [0] * SENDERS
        while not stop.is_set():
            try:
                while True:
                    d = s.recv(1 << 16)
                    if not d:
                        errors.append(f"sender {i} ({nick}) was closed")
                        return
                    buf = check(buf, got, d, f"sender {i}")
            except BlockingIOError:
                pass
            except OSError as e:
                errors.append(f"sender {i} ({nick}): {e}")
                return
            if out:
                try:
                    out = out[s.send(out):]
                except BlockingIOError:
                    pass
            time.sleep(0.0005)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(SENDERS)]
    for t in threads:
        t.start()
    bufs = [b""] * READERS
    got = [[0] * SENDERS for _ in range(READERS)]
    t0 = time.time()
    while time.time() - t0 < 120 and not errors:
        if all(all(g == LINES for g in row) for row in got):
            break
        for r, (s, nick) in enumerate(readers):
            try:
                d = s.recv(1 << 20)
                if not d:
                    errors.append(f"reader {r} ({nick}) was closed")
                bufs[r] = check(bufs[r], got[r], d, f"reader {r}")
            except BlockingIOError:
                pass
        time.sleep(0.001)
    took = time.time() - t0
    stop.set()
    for t in threads:
        t.join()
    if errors:
        fail("; ".join(errors[:5]))
    short = sum(LINES - g for row in got for g in row)
    if short:
        fail(f"readers are {short} lines short after {took:.0f} s")

    with open(f"/proc/{srv.pid}/status") as st:
        hwm = next(int(l.split()[1]) * 1024 for l in st if l.startswith("VmHWM"))
    srv.send_signal(signal.SIGTERM)
    if srv.wait(30) != 0:
        log.seek(0)
        print(log.read()[-8000:])  # a sanitizer's report, say
        fail(f"tern-chat exited {srv.returncode}")
    log.seek(0)
    text = log.read()
    m = re.search(r"peak inbox (\d+) B \(max inbox (\d+) B\), speakers paused (\d+) times", text)
    if not m:
        fail("no backpressure line in tern-chat's log")
    peak, paused = int(m.group(1)), int(m.group(3))
    dropped = len(re.findall(r"is too slow", text))
    # Past --max-inbox a speaker is paused after one message more, so the
    # inbox holds at most one message per speaker beyond it. A member dropped
    # as too slow has its departure announced to the room: a notice that no
    # speaker sent, so nobody is paused for it; each may add one more.
    bound = MAX_INBOX + (SENDERS + dropped) * MSG_MAX
    print(f"{SENDERS * LINES} lines to {SENDERS + READERS} members in order in {took:.1f} s; "
          f"peak inbox {peak} B (bound {bound}), speakers paused {paused} times, "
          f"peak RSS {hwm >> 20} MiB (bound {RSS_BOUND >> 20}), {dropped} slow members dropped")
    if paused == 0:
        fail("no speaker was ever paused: the bound never bit")
    if peak > bound:
        fail(f"peak inbox {peak} B over its bound {bound} B")
    if hwm > RSS_BOUND:
        fail(f"peak RSS {hwm} B over its bound {RSS_BOUND} B")
    if dropped > SLOW:
        fail(f"{dropped} members dropped as too slow, only {SLOW} never read")
    for s in slow:
        s.close()
    print("ok")
finally:
    if srv.poll() is None:
        srv.kill()
        srv.wait()
    log.close()
    os.unlink(log.name)
