#!/usr/bin/env python3
"""redis-benchmark's default run (no -t) against tern-kv: it must finish
with exit 0 and report every one of its tests. Skips (77) without
redis-benchmark.

usage: test_redis_benchmark.py path/to/tern-kv
"""

import shutil
import subprocess
import sys

from kvserver import KvServer, skip

if not shutil.which("redis-benchmark"):
    skip("redis-benchmark is not installed (Debian: apt-get install redis-tools)")

BIN = sys.argv[1]
# What redis-benchmark 6 and 7 run without -t.
TESTS = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP", "RPOP",
         "SADD", "HSET", "SPOP", "ZADD", "ZPOPMIN", "LPUSH (needed to benchmark LRANGE)",
         "LRANGE_100", "LRANGE_300", "LRANGE_500", "LRANGE_600", "MSET"]


def main():
    with KvServer(BIN) as s:
        p = subprocess.run(["timeout", "120", "redis-benchmark", "-h", "127.0.0.1", "-p",
                            str(s.port), "-q", "-n", "2000", "--csv"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print(f"FAIL: redis-benchmark exited {p.returncode}:\n{p.stdout}{p.stderr}")
            sys.exit(1)
        done = [line.split(",")[0].strip('"') for line in p.stdout.splitlines()[1:]]
        missing = [t for t in TESTS if not any(d.startswith(t) for d in done)]
        if missing:
            print(f"FAIL: no result for {missing}:\n{p.stdout}{p.stderr}")
            sys.exit(1)
        print(p.stdout)
    print("all passed")


if __name__ == "__main__":
    main()
