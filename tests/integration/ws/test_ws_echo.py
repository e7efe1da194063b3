#!/usr/bin/env python3
"""example-ws-echo driven by Python's websockets (Debian python3-websockets),
a client no one here wrote, and by raw sockets for what that client will not
send: text and binary echo, fragmented messages, ping/pong, the closing
handshake with a code, a message over 1 MiB (close 1009), text that is not
UTF-8 (1007), an unmasked frame (1002), frames in the same write as the
handshake, the RFC's sample key, an Origin allow-list (403), and 1001 on a
graceful stop.
usage: test_ws_echo.py EXAMPLE_WS_ECHO  (exits 77 without websockets)"""
import asyncio
import base64
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys

try:
    import websockets
    from websockets.exceptions import ConnectionClosedError, InvalidStatusCode
except ImportError:
    print("python3-websockets not installed: skipped")
    sys.exit(77)

ECHO = sys.argv[1]
FAILED = []


def check(cond, what):
    if not cond:
        FAILED.append(what)
        print(f"FAIL: {what}")


class Server:
    def __init__(self, *origins):
        self.p = subprocess.Popen([ECHO, "0", *origins], stdout=subprocess.PIPE, text=True)
        self.signalled = False
        line = self.p.stdout.readline()
        m = re.search(r"port (\d+)", line)
        if not m:
            self.p.kill()
            sys.exit(f"no port in {line!r}")
        self.port = int(m.group(1))
        self.url = f"ws://127.0.0.1:{self.port}/chat"

    def term(self):
        """SIGTERM once: a second one could land while the program exits
        (under ASan, during LeakSanitizer's check, which then hangs)."""
        if not self.signalled:
            self.signalled = True
            self.p.send_signal(signal.SIGTERM)

    def stop(self):
        self.term()
        try:
            rc = self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = "killed after 30 s"
        check(rc == 0, f"server exited {rc}")


def raw_handshake(port, extra=b""):
    """A handshake by hand (RFC 6455 section 1.3's sample key); returns the
    socket, the response head and what followed it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    s.sendall(("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + key + "\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode() + extra)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return s, head.decode(), rest


def frame(op, payload, fin=True, mask=b"\x11\x22\x33\x44"):
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    if n < 126:
        h = struct.pack("!BB", b0, n | (0x80 if mask else 0))
    elif n < 65536:
        h = struct.pack("!BBH", b0, 126 | (0x80 if mask else 0), n)
    else:
        h = struct.pack("!BBQ", b0, 127 | (0x80 if mask else 0), n)
    if not mask:
        return h + payload
    return h + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def read_frame(s, have=b""):
    def need(n):
        nonlocal have
        while len(have) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError
            have += chunk
    need(2)
    op, n = have[0] & 0x0F, have[1] & 0x7F
    off = 2
    if n == 126:
        need(4)
        n, off = struct.unpack("!H", have[2:4])[0], 4
    elif n == 127:
        need(10)
        n, off = struct.unpack("!Q", have[2:10])[0], 10
    need(off + n)
    return op, have[off:off + n], have[off + n:]


def close_code_of(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def raw_expect_close(port, frames, want, what):
    s, head, rest = raw_handshake(port)
    check(head.startswith("HTTP/1.1 101"), f"{what}: handshake {head!r}")
    s.sendall(frames)
    try:
        op, payload, rest = read_frame(s, rest)
        check(op == 8 and close_code_of(payload) == want,
              f"{what}: got opcode {op} code {close_code_of(payload)}, want close {want}")
        check(s.recv(1) == b"", f"{what}: the server did not close the connection")
    except (EOFError, OSError) as e:
        check(False, f"{what}: no close frame ({e})")
    s.close()
    print(f"ok: {what} -> close {want}")


async def client_tests(url):
    async with websockets.connect(url, max_size=4 << 20) as ws:
        # websockets offers permessage-deflate by default; the 101 accepts none.
        check(ws.extensions == [], f"extensions negotiated: {ws.extensions}")
        await ws.send("héllo, wörld")
        check(await ws.recv() == "héllo, wörld", "text echo")
        blob = bytes(range(256)) * 300
        await ws.send(blob)
        check(await ws.recv() == blob, "binary echo (76800 bytes, 16-bit length)")
        big = os.urandom(200000)
        await ws.send(big)
        check(await ws.recv() == big, "binary echo (200000 bytes, 64-bit length)")
        await ws.send(["frag", "mented ", "tëxt"])
        check(await ws.recv() == "fragmented tëxt", "fragmented text echo")
        await ws.send([b"\x00", b"", b"\xff" * 1000])
        check(await ws.recv() == b"\x00" + b"\xff" * 1000, "fragmented binary echo")
        await ws.send("")
        check(await ws.recv() == "", "empty text echo")
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        await ws.close(code=4001, reason="done here")
        check(ws.close_code == 4001, f"close handshake echoes 4001, got {ws.close_code}")
    print("ok: text, binary, fragmented, empty, ping/pong, close 4001 with websockets")

    # A ping in the middle of a fragmented message, frame by frame.
    async with websockets.connect(url) as ws:
        await ws.write_frame(False, websockets.frames.Opcode.TEXT, b"one ")
        pong = await ws.ping(b"mid")
        await ws.write_frame(True, websockets.frames.Opcode.CONT, b"two")
        await asyncio.wait_for(pong, 5)
        check(await ws.recv() == "one two", "ping between fragments")
    print("ok: a ping between the fragments of a message is answered")

    # Over max_message (1 MiB): 1009. The server closes while most of the
    # message is still unread in its socket, so its kernel answers the rest
    # with a RST; should the RST overtake the close frame on the client's
    # side, websockets reports 1006 (no close frame). Only that is retried.
    for attempt in range(3):
        async with websockets.connect(url) as ws:
            await ws.send(b"x" * ((1 << 20) + 1))
            try:
                await asyncio.wait_for(ws.recv(), 5)
                check(False, "oversize message: echoed")
            except ConnectionClosedError:
                pass
        if ws.close_code != 1006:
            break
        print(f"note: oversize attempt {attempt + 1}: RST before the close frame, again")
    check(ws.close_code == 1009, f"oversize message: close {ws.close_code}, want 1009")
    # Exactly 1 MiB is fine.
    async with websockets.connect(url, max_size=2 << 20) as ws:
        await ws.send(b"y" * (1 << 20))
        check(len(await ws.recv()) == 1 << 20, "a message of exactly 1 MiB")
    print("ok: 1 MiB echoed, 1 MiB + 1 closed with 1009")

    # Invalid UTF-8 in a text frame: 1007.
    async with websockets.connect(url) as ws:
        await ws.write_frame(True, websockets.frames.Opcode.TEXT, b"ok \xc3\x28")
        try:
            await asyncio.wait_for(ws.recv(), 5)
            check(False, "invalid UTF-8: echoed")
        except ConnectionClosedError:
            pass
        check(ws.close_code == 1007, f"invalid UTF-8: close {ws.close_code}, want 1007")
    print("ok: text that is not UTF-8 closed with 1007")


async def origin_tests(url):
    async with websockets.connect(url, origin="https://good.example") as ws:
        await ws.send("hi")
        check(await ws.recv() == "hi", "allowed Origin echoes")
    for origin in ("https://evil.example", None):
        try:
            async with websockets.connect(url, origin=origin):
                check(False, f"Origin {origin} accepted")
        except InvalidStatusCode as e:
            check(e.status_code == 403, f"Origin {origin}: status {e.status_code}, want 403")
    print("ok: Origin allow-list: allowed one accepted, others and none refused with 403")


srv = Server()
try:
    asyncio.run(client_tests(srv.url))

    # The RFC's sample: key dGhlIHNhbXBsZSBub25jZQ== -> s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
    s, head, rest = raw_handshake(srv.port, extra=frame(1, b"same write") + frame(9, b"p"))
    want = base64.b64encode(hashlib.sha1(b"dGhlIHNhbXBsZSBub25jZQ=="
                                         b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    check("Sec-WebSocket-Accept: " + want.decode() in head, f"accept key: {head!r}")
    check(want == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "the RFC's sample accept value")
    op, payload, rest = read_frame(s, rest)
    check(op == 1 and payload == b"same write", "a frame in the handshake's write is echoed")
    op, payload, rest = read_frame(s, rest)
    check(op == 10 and payload == b"p", "a ping in the handshake's write gets its pong")
    s.sendall(frame(8, struct.pack("!H", 1000) + b"bye"))
    op, payload, rest = read_frame(s, rest)
    check(op == 8 and close_code_of(payload) == 1000, "raw close 1000 answered")
    check(s.recv(1) == b"", "server closes TCP after the closing handshake")
    s.close()
    print("ok: raw handshake (RFC sample key), frames behind it, close 1000")

    # The header of a frame over 1 MiB is enough: 1009 before any payload.
    raw_expect_close(srv.port, b"\x82\xff" + struct.pack("!Q", (1 << 20) + 1) + b"\0\0\0\0",
                     1009, "a frame header announcing 1 MiB + 1")
    raw_expect_close(srv.port, frame(1, b"plain", mask=None), 1002, "unmasked frame")
    raw_expect_close(srv.port, bytes([0xC1, 0x80]) + b"\0\0\0\0",
                     1002, "RSV1 without an extension")
    raw_expect_close(srv.port, frame(3, b"x"), 1002, "reserved opcode 3")
    raw_expect_close(srv.port, frame(9, b"p", fin=False), 1002, "fragmented ping")
    raw_expect_close(srv.port, frame(0, b"x"), 1002, "continuation without a message")
    raw_expect_close(srv.port, frame(8, b"\x03\xed"), 1002, "close code 1005 on the wire")

    # Not a handshake: 400; wrong version: 426 naming 13.
    for req, want in ((b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400"),
                      (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade"
                       b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       b"Sec-WebSocket-Version: 8\r\n\r\n", b"HTTP/1.1 426")):
        c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        c.sendall(req)
        got = b""
        while True:
            chunk = c.recv(4096)
            if not chunk:
                break
            got += chunk
        c.close()
        check(got.startswith(want), f"refused handshake: {got[:60]!r}, want {want!r}")
        if want.endswith(b"426"):
            check(b"Sec-WebSocket-Version: 13" in got, "426 names version 13")
    print("ok: plain GET refused with 400, version 8 with 426 naming 13")
finally:
    srv.stop()

srv = Server("https://good.example", "https://also.example")
try:
    asyncio.run(origin_tests(srv.url))
finally:
    srv.stop()


async def going_away(srv):
    async with websockets.connect(srv.url) as ws:
        await ws.send("still here")
        check(await ws.recv() == "still here", "echo before the stop")
        srv.term()
        try:
            await asyncio.wait_for(ws.recv(), 5)
            check(False, "a message instead of the close on stop")
        except websockets.exceptions.ConnectionClosed:
            pass
        check(ws.close_code == 1001, f"graceful stop: close {ws.close_code}, want 1001")
    print("ok: a graceful stop closes WebSocket connections with 1001")


srv = Server()
try:
    asyncio.run(going_away(srv))
finally:
    srv.stop()

if FAILED:
    print(f"{len(FAILED)} check(s) failed")
    sys.exit(1)
print("all ok")
