"""admin.prometheus: a real Prometheus server scrapes tern-echo's /metrics
every second; known traffic (N connections, M bytes each, echoed back) must
come back through Prometheus's query API as exactly that.

Prometheus runs on a free loopback port with its config and TSDB in a
temporary directory. Its own scrape connection is a keep-alive connection
to the same workers, so the test compares counters between a scrape taken
before the traffic and one taken after it: connections accepted and closed
rise by exactly N, bytes in and out by N*M plus the scrapes' own HTTP bytes
(bounded), and one connection, Prometheus's, is left open.

Usage: test_prometheus.py TERN_ECHO
Skips (77) when prometheus (the Debian package) is not installed.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from adminlib import Program, fail, skip

N, M = 7, 3000


def check(cond, why):
    if not cond:
        fail(why)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Prom:
    def __init__(self, target_port, tmp):
        self.port = free_port()
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: tern-echo\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n")
        self.logf = open(os.path.join(tmp, "prometheus.log"), "w+")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={cfg}",
             f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.logf, stderr=subprocess.STDOUT, cwd=tmp)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        fail("prometheus did not become ready:\n" + self.log())

    def log(self):
        self.logf.seek(0)
        return self.logf.read()

    def query(self, q):
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.load(r)
        check(doc.get("status") == "success", f"query {q!r}: {doc}")
        return doc["data"]["result"]

    def scalar(self, q):
        """The single sample of @q as (timestamp, value), or None."""
        res = self.query(q)
        if not res:
            return None
        check(len(res) == 1, f"query {q!r} gave {len(res)} series: {res}")
        ts, val = res[0]["value"]
        return float(ts), float(val)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


QUERIES = {
    "accepted": "sum(tern_connections_accepted_total)",
    "closed": "sum(tern_connections_closed_total)",
    "open": "sum(tern_connections_open)",
    "in": "sum(tern_bytes_in_total)",
    "out": "sum(tern_bytes_out_total)",
    "scrapes": "timestamp(tern_workers)",
}


def sample(prom):
    """The values of QUERIES as one scrape left them: the scrape's time is
    read before and after the queries, and must not have moved."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        t0 = prom.scalar(QUERIES["scrapes"])
        vals = {k: prom.scalar(q) for k, q in QUERIES.items()}
        t1 = prom.scalar(QUERIES["scrapes"])
        if t0 and t1 and t0[1] == t1[1] and None not in vals.values():
            return {k: v[1] for k, v in vals.items()}
        time.sleep(0.1)
    fail("could not read one consistent scrape")


def wait_scrape_after(prom, t, what):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        s = prom.scalar(QUERIES["scrapes"])
        if s and s[1] > t:
            return
        time.sleep(0.2)
    fail(f"no scrape after {what} within 20 s:\n{prom.log()[-3000:]}")


def main():
    if not shutil.which("prometheus"):
        skip("prometheus not installed (Debian package prometheus)")
    echo = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="tern-prom-")
    p = Program([echo, "--bind", "127.0.0.1", "--port", "0", "--workers", "2"])
    prom = None
    try:
        prom = Prom(p.admin_port, tmp)
        wait_scrape_after(prom, 0, "start")
        up = prom.scalar('up{job="tern-echo"}')
        check(up is not None and up[1] == 1, f"up = {up}; target health: "
              + json.dumps(prom.query("up")))
        w = prom.scalar("tern_workers")
        check(w and w[1] == 2, f"tern_workers = {w}")
        n = prom.query("tern_connections_accepted_total")
        check(len(n) == 2, f"{len(n)} worker series of accepted, want 2")
        info = prom.scalar('tern_build_info{program="tern-echo"}')
        check(info and info[1] == 1, f"tern_build_info = {info}")

        before = sample(prom)
        time.sleep(1.2)  # the baseline must predate the traffic
        t_before = time.time()
        socks = [socket.create_connection(("127.0.0.1", p.port), timeout=5) for _ in range(N)]
        for s in socks:
            s.sendall(b"a" * M)
        for s in socks:
            got = 0
            while got < M:
                got += len(s.recv(65536))
        for s in socks:
            s.close()
        time.sleep(0.3)  # let the server see the closes
        t_after = time.time()
        wait_scrape_after(prom, t_after + 0.2, "the traffic")
        after = sample(prom)
        print(f"before {before}\nafter  {after}")
        check(t_after > t_before, "clock")
        d = {k: after[k] - before[k] for k in before}
        check(d["accepted"] == N, f"accepted rose by {d['accepted']}, want {N}")
        check(d["closed"] == N, f"closed rose by {d['closed']}, want {N}")
        check(after["open"] == 1, f"open = {after['open']}, want 1 (Prometheus's)")
        for name, v in (("before", before), ("after", after)):
            check(v["accepted"] - v["closed"] == v["open"],
                  f"{name}: accepted {v['accepted']} - closed {v['closed']} != open {v['open']}")
        # The scrapes in between add their own HTTP bytes: ~100 in, a few KiB out each.
        scrapes = max(1, round(after["scrapes"] - before["scrapes"]))
        check(N * M <= d["in"] <= N * M + 1000 * scrapes,
              f"bytes in rose by {d['in']}, want {N * M} + at most {1000 * scrapes}")
        check(N * M <= d["out"] <= N * M + 20000 * scrapes,
              f"bytes out rose by {d['out']}, want {N * M} + at most {20000 * scrapes}")
        print(f"ok: Prometheus read back {N} connections, {N * M} bytes each way")
    finally:
        if prom:
            prom.stop()
        p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
