#!/usr/bin/env python3
"""A small interactive client for tern-chat.

    tools/chat-client.py [HOST] [PORT]          # default 127.0.0.1 7000

Type a line to say it to your room, or a command (/help lists them). Lines
from the server are printed as they arrive; your own typing is not echoed
twice, since the server sends your room lines back to you. Ctrl-D or /quit
leaves. --bots N starts N extra clients that say something every second,
handy to watch a room move.
"""

import argparse
import os
import random
import selectors
import socket
import sys
import threading
import time


def connect(host, port):
    try:
        return socket.create_connection((host, port), timeout=5)
    except OSError as e:
        sys.exit(f"chat-client: cannot connect to {host} port {port}: {e}")


def bot(host, port, n, stop):
    """A client that chats on its own until @stop is set."""
    try:
        s = socket.create_connection((host, port), timeout=5)
    except OSError:
        return
    s.settimeout(0.2)
    s.sendall(f"/nick bot{n}-{os.getpid() % 1000}\r\n".encode())
    words = ["hello", "anyone here?", "tern is fast", "brb", "lunch?", "ok"]
    while not stop.is_set():
        s.sendall((random.choice(words) + "\r\n").encode())
        end = time.monotonic() + 1.0
        while time.monotonic() < end and not stop.is_set():
            try:
                if not s.recv(65536):
                    return
            except socket.timeout:
                pass
            except OSError:
                return
    try:
        s.sendall(b"/quit\r\n")
    except OSError:
        pass
    s.close()


def main():
    ap = argparse.ArgumentParser(description="Interactive tern-chat client.")
    ap.add_argument("host", nargs="?", default="127.0.0.1")
    ap.add_argument("port", nargs="?", type=int, default=7000)
    ap.add_argument("--bots", type=int, default=0, metavar="N",
                    help="also start N chatty bot clients")
    args = ap.parse_args()

    stop = threading.Event()
    bots = [threading.Thread(target=bot, args=(args.host, args.port, i, stop), daemon=True)
            for i in range(args.bots)]
    for t in bots:
        t.start()

    s = connect(args.host, args.port)
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ, "net")
    sel.register(sys.stdin, selectors.EVENT_READ, "tty")
    pending = b""
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "net":
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        print("(connection closed)")
                        return
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        print(line.rstrip(b"\r").decode("utf-8", "replace"), flush=True)
                else:
                    line = sys.stdin.readline()
                    if not line:
                        s.sendall(b"/quit\r\n")
                        sel.unregister(sys.stdin)
                        continue
                    s.setblocking(True)
                    s.sendall(line.rstrip("\r\n").encode() + b"\r\n")
                    s.setblocking(False)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        s.close()


if __name__ == "__main__":
    main()
