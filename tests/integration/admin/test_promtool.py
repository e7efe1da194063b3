"""admin.promtool: `promtool check metrics` on /metrics of tern-echo, tern-kv,
tern-proxy and tern-chat, after some traffic, and the values each program's
own families must show.

Usage: test_promtool.py TERN_ECHO TERN_KV TERN_PROXY TERN_CHAT
Skips (77) when promtool (Debian package prometheus) is not installed.
"""

import shutil
import socket
import subprocess
import sys
import time

from adminlib import Program, fail, get, metrics_dict, skip, sum_metric


def check(cond, why):
    if not cond:
        fail(why)


def promtool_check(name, body):
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    out = (r.stdout + r.stderr).decode(errors="replace")
    check(r.returncode == 0, f"promtool check metrics on {name}'s /metrics failed:\n{out}")
    print(f"{name}: promtool check metrics ok")


def scrape(p):
    st, hd, body = get(p.admin_port, "/metrics")
    check(st == 200, f"{p.name} /metrics: {st}")
    check(hd.get("content-type", "").startswith("text/plain; version=0.0.4"),
          f"{p.name} Content-Type {hd.get('content-type')!r}")
    return body


def check_histogram(p, m, name, workers):
    """Per worker: 15 cumulative buckets ending in +Inf == _count, a _sum;
    some worker has observed iterations (it served the traffic)."""
    seen = 0
    for w in range(workers):
        buckets = [(k, v) for k, v in m.items()
                   if k.startswith(f'{name}_bucket{{worker="{w}",le="')]
        check(len(buckets) == 15, f"{p.name}: {name} worker {w}: {len(buckets)} buckets")
        vals = [v for _, v in buckets]
        check(vals == sorted(vals), f"{p.name}: {name} worker {w} not cumulative: {vals}")
        check(buckets[-1][0].endswith('le="+Inf"}'), f"{p.name}: {name}: last is {buckets[-1][0]}")
        count = m.get(f'{name}_count{{worker="{w}"}}')
        check(count == vals[-1], f"{p.name}: {name} worker {w}: _count {count} != +Inf {vals[-1]}")
        total = m.get(f'{name}_sum{{worker="{w}"}}')
        check(total is not None and total >= 0, f"{p.name}: {name} worker {w}: _sum {total}")
        seen += count
    check(seen > 0, f"{p.name}: {name}: no observations on any worker")


def common(p, m, workers):
    for name in ("tern_connections_accepted_total", "tern_bytes_in_total",
                 "tern_connections_open", "tern_loop_iterations_total"):
        n = sum(1 for k in m if k.startswith(name + "{worker="))
        check(n == workers, f"{p.name}: {name} has {n} worker series, want {workers}")
    check(m.get("tern_workers") == workers, f"{p.name}: tern_workers {m.get('tern_workers')}")
    info = [k for k in m if k.startswith("tern_build_info{")]
    check(len(info) == 1 and f'program="{p.name}"' in info[0], f"{p.name}: build_info {info}")
    for name in ("tern_loop_iteration_seconds", "tern_loop_dispatch_delay_seconds"):
        check_histogram(p, m, name, workers)
    for name in ("tern_acceptor_rejected_total", "tern_acceptor_accept_errors_total",
                 "tern_live_connections", "tern_live_buffers", "tern_live_buffer_bytes",
                 "tern_timers_armed", "process_start_time_seconds"):
        check(name in m, f"{p.name}: {name} missing")


def resp(sock, *args):
    msg = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    sock.sendall(msg.encode())
    return sock.recv(65536)


def read_until(sock, needle, timeout=5):
    """Reads from @sock until @needle has arrived; returns all that did."""
    sock.settimeout(timeout)
    got = b""
    while needle not in got:
        chunk = sock.recv(65536)
        if not chunk:
            fail(f"chat closed before {needle!r}; got {got!r}")
        got += chunk
    return got


def check_chat(chat):
    """Two clients in the lobby (one per worker); one says a line, both get it."""
    p = Program([chat, "--bind", "127.0.0.1", "--port", "0", "--workers", "2"])
    a = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    read_until(a, b"* welcome ")
    b = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    nick = read_until(b, b"\r\n").split(b"* welcome ", 1)[1].split(b"\r\n", 1)[0]
    # a sees b's arrival: both are members of the lobby now.
    read_until(a, b"* " + nick + b" joined")
    m0 = metrics_dict(scrape(p).decode())
    a.sendall(b"hello from a\r\n")
    read_until(a, b"hello from a")
    read_until(b, b"hello from a")
    body = scrape(p)
    promtool_check("tern-chat", body)
    m = metrics_dict(body.decode())
    common(p, m, 2)
    said = sum_metric(m, "tern_chat_messages_in_total") - sum_metric(m0, "tern_chat_messages_in_total")
    check(said == 1, f"tern_chat_messages_in_total rose by {said} over one line, want 1")
    got = sum_metric(m, "tern_chat_deliveries_total") - sum_metric(m0, "tern_chat_deliveries_total")
    check(got == 2, f"tern_chat_deliveries_total rose by {got} for a line to 2 members, want 2")
    # The two members sit on different workers (round robin): the line
    # crossed from one to the other once, and its latency was recorded.
    crossed = (sum_metric(m, "tern_chat_delivery_latency_seconds_count")
               - sum_metric(m0, "tern_chat_delivery_latency_seconds_count"))
    check(crossed == 1, f"tern_chat_delivery_latency_seconds_count rose by {crossed}, want 1")
    check(m.get("tern_chat_clients") == 2, f"tern_chat_clients {m.get('tern_chat_clients')}")
    check(m.get("tern_chat_rooms", 0) >= 1, f"tern_chat_rooms {m.get('tern_chat_rooms')}")
    check(sum_metric(m, "tern_chat_slow_consumer_drops_total") == 0, "slow drops without any")
    for name in ("tern_chat_speaker_pauses_total", "tern_chat_inbox_bytes", "tern_chat_nicks",
                 "tern_chat_peak_queued_bytes", "tern_chat_peak_inbox_bytes"):
        check(sum(1 for k in m if k == name or k.startswith(name + "{")) > 0,
              f"tern-chat: {name} missing")
    a.close()
    b.close()
    p.stop()


def main():
    if not shutil.which("promtool"):
        skip("promtool not installed (Debian package prometheus)")
    echo, kv, proxy, chat = sys.argv[1:5]

    p = Program([echo, "--bind", "127.0.0.1", "--port", "0", "--workers", "2"])
    c = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    c.sendall(b"x" * 1000)
    got = b""
    while len(got) < 1000:
        got += c.recv(65536)
    # The worker counts its write just after send() returns, so the echo can
    # reach us a moment before the counter does: scrape until it shows.
    deadline = time.monotonic() + 5
    while True:
        body = scrape(p)
        m = metrics_dict(body.decode())
        if sum_metric(m, "tern_bytes_out_total") >= 1000 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    promtool_check("tern-echo", body)
    common(p, m, 2)
    # The echo connection and the scrape's own are both open.
    check(sum_metric(m, "tern_connections_open") == 2,
          f"tern-echo: open {sum_metric(m, 'tern_connections_open')}, want 2")
    check(sum_metric(m, "tern_bytes_out_total") >= 1000, "tern-echo: bytes_out below 1000")
    c.close()
    p.stop()

    p = Program([kv, "--bind", "127.0.0.1", "--port", "0", "--workers", "2"])
    c = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    for i in range(5):
        check(resp(c, "SET", f"k{i}", "v") == b"+OK\r\n", "kv SET")
    # Whether a write counts as a lookup is the store's business: compare
    # the counters around two reads only.
    m0 = metrics_dict(scrape(p).decode())
    check(resp(c, "GET", "k1") == b"$1\r\nv\r\n", "kv GET hit")
    check(resp(c, "GET", "nokey") == b"$-1\r\n", "kv GET miss")
    body = scrape(p)
    promtool_check("tern-kv", body)
    m = metrics_dict(body.decode())
    common(p, m, 2)
    check(m.get("tern_kv_keys") == 5, f"tern_kv_keys {m.get('tern_kv_keys')}, want 5")
    for name in ("tern_kv_keyspace_hits_total", "tern_kv_keyspace_misses_total"):
        d = m.get(name, -1) - m0.get(name, -1)
        check(d == 1, f"{name} rose by {d} over one GET, want 1")
    check(m.get("tern_kv_memory_bytes", 0) > 0, "tern_kv_memory_bytes is 0 with 5 keys")
    check(m.get("tern_kv_connections_received_total") == 1,
          f"connections_received {m.get('tern_kv_connections_received_total')}")
    for name in ("tern_kv_keys_with_ttl", "tern_kv_max_memory_bytes",
                 "tern_kv_expired_keys_total", "tern_kv_evicted_keys_total"):
        check(name in m, f"tern-kv: {name} missing")
    c.close()
    p.stop()

    # tern-proxy in front of a tern-echo; then one pair to a closed port.
    e = Program([echo, "--bind", "127.0.0.1", "--port", "0", "--workers", "1"], admin=False)
    p = Program([proxy, "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{e.port}",
                 "--workers", "2"])
    c = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    c.sendall(b"ping")
    check(c.recv(4) == b"ping", "proxy did not pass bytes")
    body = scrape(p)
    promtool_check("tern-proxy", body)
    m = metrics_dict(body.decode())
    common(p, m, 2)
    check(m.get("tern_proxy_pairs") == 1, f"tern_proxy_pairs {m.get('tern_proxy_pairs')}")
    check(m.get("tern_proxy_connect_failures_total") == 0, "connect failures before any")
    check(sum_metric(m, "tern_connects_total") == 1, "tern_connects_total != 1")
    c.close()
    p.stop()
    e.stop()

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, never listening: connects are refused
    p = Program([proxy, "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{port}",
                 "--workers", "1"])
    c = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    c.settimeout(5)
    check(c.recv(1) == b"", "proxy kept a source whose destination refused")
    m = metrics_dict(scrape(p).decode())
    check(m.get("tern_proxy_connect_failures_total") == 1,
          f"connect failures {m.get('tern_proxy_connect_failures_total')}, want 1")
    check(sum_metric(m, "tern_connect_errors_total") == 1, "tern_connect_errors_total != 1")
    c.close()
    p.stop()
    closed.close()
    check_chat(chat)
    print("ok: promtool on echo, kv, proxy, chat and their values")


if __name__ == "__main__":
    main()
