#!/usr/bin/env python3
"""tern-kv through redis-cli: at a (pseudo-)terminal, with commands piped in,
RESP3 with -3, and the --scan, --bigkeys and --stat modes. Skips (77)
without redis-cli.

usage: test_redis_cli.py path/to/tern-kv
"""

import os
import pty
import select
import shutil
import subprocess
import sys
import time

from kvserver import KvServer, skip

if not shutil.which("redis-cli"):
    skip("redis-cli is not installed (Debian: apt-get install redis-tools)")

BIN = sys.argv[1]


def cli(port, *args, stdin=None, timeout=10, ok_codes=(0,)):
    # stdbuf: --stat prints line by line until it is killed; without it the
    # lines would sit in stdio's buffer and die with the process.
    p = subprocess.run(["timeout", str(timeout), "stdbuf", "-oL", "redis-cli", "-h", "127.0.0.1",
                        "-p", str(port), *args], input=stdin, capture_output=True, text=True)
    if p.returncode not in ok_codes:
        raise AssertionError(f"redis-cli {' '.join(args)} exited {p.returncode}:\n"
                             f"{p.stdout}{p.stderr}")
    return p.stdout


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def at_a_terminal(port, lines):
    """redis-cli on a pseudo-terminal, as a person runs it (its start asks
    COMMAND DOCS, which the separate check below looks at). Returns what it
    printed."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "dumb"
        os.execvp("redis-cli", ["redis-cli", "-h", "127.0.0.1", "-p", str(port)])
    out = b""

    def read_for(seconds):
        nonlocal out
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not select.select([fd], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            out += data
            if b"\x1b[6n" in data:  # linenoise asks where the cursor is
                os.write(fd, b"\x1b[1;1R")

    for line in lines:
        read_for(0.5)
        os.write(fd, line.encode() + b"\r")
    read_for(1)
    os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace")


def main():
    with KvServer(BIN) as s:
        port = s.port
        # Typed at its prompt (stdin not a terminal: one reply per line).
        out = cli(port, stdin="SET greeting hello\nGET greeting\nINCR n\nINCRBY n 4\n"
                             "SET t v EX 100\nTTL t\nHSET h f v\nHGETALL h\nRPUSH l a b\n"
                             "LRANGE l 0 -1\nTYPE l\nSELECT 0\nSELECT 3\nMULTI\nINCR n\n"
                             "EXEC\nNOSUCH\nDBSIZE\n")
        eq(out, "OK\nhello\n1\n5\nOK\n100\n1\nf\nv\n2\na\nb\nlist\nOK\n"
                "ERR DB index is out of range (tern-kv has only database 0)\n\n"
                "OK\nQUEUED\n6\nERR unknown command 'NOSUCH'\n\n5\n", "piped commands")
        out = at_a_terminal(port, ["get greeting", "help get", "quit"])
        for want in ('"hello"', "Get the value of a key", "group:"):
            if want not in out:
                raise AssertionError(f"redis-cli at a terminal lacks {want!r}:\n{out}")
        if "ERR" in out:
            raise AssertionError(f"redis-cli at a terminal met an error:\n{out}")
        # RESP3: the same replies, maps and nulls included.
        eq(cli(port, "-3", "HGETALL", "h"), "f v\n", "-3 hgetall (a map: one pair a line)")
        eq(cli(port, "-3", "GET", "nope"), "\n", "-3 null")
        # COMMAND DOCS answers, so an interactive start finds help for commands.
        out = cli(port, "COMMAND", "DOCS", "get")
        eq(out.split("\n")[:3], ["get", "summary", "Get the value of a key"], "command docs")
        # --scan walks every key, and --pattern filters them.
        cli(port, stdin="".join(f"SET key:{i} {i}\n" for i in range(1000)))
        keys = cli(port, "--scan").split()
        eq(len(keys), 1005, "--scan key count")
        eq(len(set(keys)), 1005, "--scan duplicates")
        eq(sorted(cli(port, "--scan", "--pattern", "key:99*").split()),
           sorted(["key:99"] + [f"key:99{i}" for i in range(10)]), "--scan --pattern")
        out = cli(port, "--bigkeys")
        for want in ("Sampled 1005 keys", "Biggest   list found '\"l\"' has 2 items",
                     "Biggest   hash found '\"h\"' has 1 fields", "1003 strings"):
            if want not in out:
                raise AssertionError(f"--bigkeys lacks {want!r}:\n{out}")
        # --stat runs until stopped: two seconds of it, killed by timeout (124).
        out = cli(port, "--stat", "-i", "0.5", timeout=2, ok_codes=(124,))
        lines = [l.split() for l in out.splitlines() if l[:1].isdigit()]
        if not lines or lines[0][0] != "1005":
            raise AssertionError(f"--stat shows no data line with 1005 keys:\n{out}")
    # Over --max-conns, redis-cli shows the reason the server gave.
    with KvServer(BIN, "--max-conns", "1") as s:
        import socket
        held = socket.create_connection(("127.0.0.1", s.port))
        held.sendall(b"PING\r\n")
        eq(held.recv(64), b"+PONG\r\n", "the one client allowed")
        out = cli(s.port, "PING", ok_codes=(0, 1))
        if "max number of clients reached" not in out:
            raise AssertionError(f"redis-cli over --max-conns said:\n{out}")
        held.close()
    print("all passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
