#!/usr/bin/env python3
"""tern-kv through redis-py (Debian's python3-redis), the calls a typical
cache user makes: the ones that failed before expiry and transactions
existed (incr, the default pipeline, set ex, db=1, client_name) and the rest
of docs/kv.md's list. Skips (77) without redis-py.

usage: test_redis_py.py path/to/tern-kv
"""

import re
import socket
import sys
import threading
import time

from kvserver import KvServer, skip

try:
    import redis
except ImportError:
    skip("redis-py is not installed (Debian: apt-get install python3-redis)")

BIN = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def eq(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def test_the_calls_that_failed(port):
    r = redis.Redis(port=port, decode_responses=True, client_name="cache-1")
    eq(r.incr("a"), 1, "incr")
    eq(r.incr("a", 5), 6, "incrby")
    eq(r.decr("a"), 5, "decr")
    eq(r.decr("a", 3), 2, "decrby")
    # The default pipeline is transactional: MULTI ... EXEC.
    p = r.pipeline()
    p.set("x", 1).incr("x").get("x").incr("a")
    eq(p.execute(), [True, 2, "2", 3], "pipeline")
    p = r.pipeline(transaction=False)
    p.set("y", 1).get("y")
    eq(p.execute(), [True, "1"], "plain pipeline")
    eq(r.set("e", "1", ex=5), True, "set ex")
    check(4 <= r.ttl("e") <= 5, "ttl after set ex")
    eq(r.client_getname(), "cache-1", "client_name")
    eq(redis.Redis(port=port, db=0).ping(), True, "db=0")
    try:
        redis.Redis(port=port, db=1).ping()
        raise AssertionError("db=1 was accepted")
    except redis.ResponseError as e:
        check("only database 0" in str(e), f"db=1 error: {e}")


def test_expiry(port):
    r = redis.Redis(port=port, decode_responses=True)
    r.set("px", "v", px=100)
    r.setex("sx", 1, "v")
    r.psetex("psx", 100, "v")
    r.set("keep", "v", ex=100)
    r.set("keep", "w", keepttl=True)
    check(r.ttl("keep") > 90, "KEEPTTL kept the TTL")
    r.set("gone", "v", exat=int(time.time()) - 1)
    eq(r.get("gone"), None, "EXAT in the past")
    eq(r.set("nx", "1", nx=True, ex=10), True, "set nx ex")
    eq(r.set("nx", "2", nx=True), None, "set nx on an existing key")
    eq(r.set("nx", "3", xx=True, get=True), "1", "set xx get")
    time.sleep(0.25)
    eq(r.get("px"), None, "px expired")
    eq(r.get("psx"), None, "psetex expired")
    eq(r.exists("px"), 0, "exists after expiry")
    r.set("k", "v")
    eq(r.ttl("k"), -1, "ttl without one")
    eq(r.ttl("absent"), -2, "ttl of an absent key")
    eq(r.expire("k", 100), True, "expire")
    eq(r.expire("k", 50, nx=True), False, "expire nx with a ttl")
    eq(r.expire("k", 50, gt=True), False, "expire gt with a shorter one")
    eq(r.expire("k", 200, gt=True), True, "expire gt with a longer one")
    eq(r.expire("k", 20, lt=True), True, "expire lt")
    check(0 < r.pttl("k") <= 20000, "pttl")
    eq(r.persist("k"), True, "persist")
    eq(r.ttl("k"), -1, "ttl after persist")
    eq(r.pexpire("k", 50), True, "pexpire")
    eq(r.expireat("k2", int(time.time()) + 10), False, "expireat of an absent key")
    r.set("k2", "v")
    eq(r.pexpireat("k2", int(time.time() * 1000) + 10000), True, "pexpireat")
    eq(r.getex("k2", persist=True), "v", "getex persist")
    eq(r.ttl("k2"), -1, "ttl after getex persist")
    eq(r.getex("k2", px=50), "v", "getex px")
    eq(r.expire("k2", -1), True, "a negative expire deletes")
    eq(r.exists("k2"), 0, "deleted by a negative expire")
    time.sleep(0.1)
    eq(r.get("k"), None, "pexpire expired")


def test_active_expiry_gives_memory_back(port):
    """Keys nobody reads again still go: the workers' timers sample them."""
    r = redis.Redis(port=port, decode_responses=True)
    r.flushdb()
    before = r.info("memory")["used_memory"]
    p = r.pipeline(transaction=False)
    for i in range(2000):
        p.set(f"tmp:{i}", "x" * 200, px=200)
    p.execute()
    r.set("stays", "1")
    eq(r.dbsize(), 2001, "dbsize before expiry")
    full = r.info("memory")["used_memory"]
    check(full > before + 2000 * 200, f"memory grew: {before} -> {full}")
    deadline = time.time() + 10
    while r.dbsize() > 1 and time.time() < deadline:
        time.sleep(0.1)
    eq(r.dbsize(), 1, "dbsize once the TTLs passed, with no reads")
    after = r.info("memory")["used_memory"]
    # Bucket and TTL arrays keep their size; the keys and values are gone.
    check(after - before < (full - before) / 8, f"memory given back: {before} -> {full} -> {after}")
    check(r.info("stats")["expired_keys"] >= 2000, "expired_keys counts them")


def test_strings_and_keys(port):
    r = redis.Redis(port=port, decode_responses=True)
    r.flushdb()
    eq(r.incrbyfloat("f", 10.5), 10.5, "incrbyfloat")
    eq(r.incrbyfloat("f", 0.1), 10.6, "incrbyfloat again")
    eq(r.append("s", "ab"), 2, "append")
    eq(r.append("s", "cd"), 4, "append again")
    eq(r.strlen("s"), 4, "strlen")
    eq(r.getset("s", "new"), "abcd", "getset")
    eq(r.getdel("s"), "new", "getdel")
    eq(r.get("s"), None, "after getdel")
    eq(r.setnx("n", "1"), True, "setnx")
    eq(r.setnx("n", "2"), False, "setnx again")
    eq(r.msetnx({"m1": "1", "m2": "2"}), True, "msetnx")
    eq(r.msetnx({"m2": "x", "m3": "3"}), False, "msetnx with one existing")
    eq(r.exists("m3"), 0, "msetnx is all or nothing")
    eq(r.mget("m1", "m2", "nope"), ["1", "2", None], "mget")
    eq(r.type("m1"), "string", "type")
    eq(r.type("nope"), "none", "type of nothing")
    r.expire("m1", 100)
    eq(r.rename("m1", "r1"), True, "rename")
    check(r.ttl("r1") > 90, "rename keeps the TTL")
    eq(r.renamenx("r1", "m2"), False, "renamenx onto an existing key")
    try:
        r.rename("nope", "x")
        raise AssertionError("rename of an absent key")
    except redis.ResponseError as e:
        check("no such key" in str(e), str(e))
    eq(r.unlink("r1", "m2", "nope"), 2, "unlink")
    eq(sorted(r.keys("*")), ["f", "n"], "keys")
    eq(r.keys("n*"), ["n"], "keys with a pattern")
    for i in range(500):
        r.set(f"scan:{i}", i)
    eq(len(set(r.scan_iter(match="scan:*", count=50))), 500, "scan_iter")
    eq(len(set(r.scan_iter(_type="string"))), 502, "scan_iter type")
    eq(r.dbsize(), 502, "dbsize")
    eq(r.flushdb(), True, "flushdb")
    eq(r.dbsize(), 0, "dbsize after flushdb")


def test_wrongtype(port):
    r = redis.Redis(port=port, decode_responses=True)
    r.set("str", "v")
    r.rpush("lst", "a")
    for call in (lambda: r.lpush("str", "x"), lambda: r.hget("str", "f"),
                 lambda: r.get("lst"), lambda: r.incr("lst"), lambda: r.sadd("lst", "m")):
        try:
            call()
            raise AssertionError("no WRONGTYPE")
        except redis.ResponseError as e:
            check(str(e).startswith("WRONGTYPE Operation against a key holding the wrong kind"),
                  str(e))


def test_hashes_lists_sets(port):
    r = redis.Redis(port=port, decode_responses=True)
    r.flushdb()
    eq(r.hset("h", mapping={"a": "1", "b": "2"}), 2, "hset")
    eq(r.hset("h", "a", "3"), 0, "hset of an existing field")
    eq(r.hget("h", "a"), "3", "hget")
    eq(r.hgetall("h"), {"a": "3", "b": "2"}, "hgetall")
    eq(r.hincrby("h", "b", 5), 7, "hincrby")
    eq(r.hexists("h", "a"), True, "hexists")
    eq(r.hlen("h"), 2, "hlen")
    eq(r.hmget("h", "a", "zz"), ["3", None], "hmget")
    eq(sorted(r.hkeys("h")), ["a", "b"], "hkeys")
    eq(r.hdel("h", "a", "zz"), 1, "hdel")
    eq(r.hdel("h", "b"), 1, "hdel the last field")
    eq(r.exists("h"), 0, "an emptied hash is gone")
    eq(r.rpush("l", 1, 2, 3), 3, "rpush")
    eq(r.lpush("l", 0), 4, "lpush")
    eq(r.lrange("l", 0, -1), ["0", "1", "2", "3"], "lrange")
    eq(r.lrange("l", -2, 100), ["2", "3"], "lrange negative")
    eq(r.lpop("l"), "0", "lpop")
    eq(r.rpop("l"), "3", "rpop")
    eq(r.lpop("l", 5), ["1", "2"], "lpop count")
    eq(r.llen("l"), 0, "llen")
    eq(r.lpop("l"), None, "lpop of nothing")
    eq(r.sadd("s", "a", "b", "a"), 2, "sadd")
    eq(r.scard("s"), 2, "scard")
    eq(r.sismember("s", "a"), True, "sismember")
    eq(r.smembers("s"), {"a", "b"}, "smembers")
    check(r.spop("s") in ("a", "b"), "spop")
    eq(r.zadd("z", {"a": 2, "b": 1}), 2, "zadd")
    eq(r.zscore("z", "a"), 2.0, "zscore")
    eq(r.zpopmin("z"), [("b", 1.0)], "zpopmin")
    eq(r.zcard("z"), 1, "zcard")


def test_transactions(port):
    r = redis.Redis(port=port, decode_responses=True)
    other = redis.Redis(port=port, decode_responses=True)
    r.set("bal", 10)
    # A WATCHed key changed by another client: EXEC fails.
    with r.pipeline() as p:
        p.watch("bal")
        v = int(p.get("bal"))
        other.set("bal", 100)
        p.multi()
        p.set("bal", v + 1)
        try:
            p.execute()
            raise AssertionError("EXEC ran despite the WATCH conflict")
        except redis.WatchError:
            pass
    eq(r.get("bal"), "100", "the conflicting write stands")
    # No conflict: it runs.
    with r.pipeline() as p:
        p.watch("bal")
        v = int(p.get("bal"))
        p.multi()
        p.set("bal", v + 1)
        eq(p.execute(), [True], "exec without a conflict")
    eq(r.get("bal"), "101", "the transaction's write")
    # A queued command with the wrong arity aborts the whole transaction.
    conn = socket.create_connection(("127.0.0.1", port))
    conn.sendall(b"MULTI\r\nSET a\r\nSET b 1\r\nEXEC\r\nGET b\r\n")
    want = (b"+OK\r\n-ERR wrong number of arguments for 'set' command\r\n+QUEUED\r\n"
            b"-EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n")
    got = b""
    while len(got) < len(want):
        data = conn.recv(4096)
        if not data:
            break
        got += data
    eq(got, want, "EXECABORT")
    conn.close()


def test_transactions_are_atomic_across_workers(port):
    """Transfers between two keys in MULTI/EXEC on several connections (two
    workers) while readers read both in one transaction: the sum never
    moves; WATCH-guarded increments from several threads lose nothing."""
    r = redis.Redis(port=port, decode_responses=True)
    r.mset({"acct:a": 1000, "acct:b": 1000, "ctr": 0})
    torn = []
    stop = threading.Event()

    def mover():
        c = redis.Redis(port=port, decode_responses=True)
        for _ in range(300):
            p = c.pipeline()
            p.decrby("acct:a", 1).incrby("acct:b", 1)
            p.execute()

    def reader():
        c = redis.Redis(port=port, decode_responses=True)
        while not stop.is_set():
            p = c.pipeline()
            p.get("acct:a").get("acct:b")
            a, b = p.execute()
            if int(a) + int(b) != 2000:
                torn.append((a, b))

    def counter():
        c = redis.Redis(port=port, decode_responses=True)
        done = 0
        while done < 100:
            with c.pipeline() as p:
                try:
                    p.watch("ctr")
                    v = int(p.get("ctr"))
                    p.multi()
                    p.set("ctr", v + 1)
                    p.execute()
                    done += 1
                except redis.WatchError:
                    continue

    threads = [threading.Thread(target=f) for f in (mover, mover, counter, counter, counter)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    eq(torn, [], "torn reads")
    eq(r.get("acct:a"), "400", "transfers")
    eq(r.get("ctr"), "300", "WATCH-guarded increments")


def test_connection_and_server(port):
    r = redis.Redis(port=port, decode_responses=True)
    check(r.client_id() > 0, "client id")
    eq(r.client_setname("named"), True, "client setname")
    eq(r.client_getname(), "named", "client getname")
    names = [c["name"] for c in r.client_list()]
    check("named" in names, f"client list: {names}")
    info = r.info()
    for k in ("redis_version", "connected_clients", "used_memory", "total_commands_processed",
              "keyspace_hits", "maxmemory_policy"):
        check(k in info, f"INFO has {k}")
    check(info["connected_clients"] >= 1, "connected_clients")
    eq(r.config_get("maxmemory"), {"maxmemory": "0"}, "config get")
    check(r.ping(), "ping")
    try:
        r.client_setname("a name")
        raise AssertionError("a name with a space was accepted")
    except redis.ResponseError:
        pass


def test_auth(binary):
    with KvServer(binary, "--requirepass", "s3cret") as s:
        try:
            redis.Redis(port=s.port).set("a", 1)
            raise AssertionError("a command ran without AUTH")
        except redis.AuthenticationError as e:
            check("NOAUTH" in str(e) or "Authentication required" in str(e), str(e))
        try:
            redis.Redis(port=s.port, password="wrong").ping()
            raise AssertionError("a wrong password was accepted")
        except (redis.AuthenticationError, redis.ResponseError) as e:
            check("WRONGPASS" in str(e) or "invalid" in str(e), str(e))
        r = redis.Redis(port=s.port, password="s3cret", decode_responses=True)
        eq(r.set("a", 1), True, "after AUTH")
        eq(redis.Redis(port=s.port, username="default", password="s3cret").get("a"), b"1",
           "AUTH default")


def test_hostile_input_names_the_peer(binary):
    with KvServer(binary, "--max-bulk", "1k") as s:
        c = socket.create_connection(("127.0.0.1", s.port))
        c.sendall(b"*1\r\n$99999\r\n")
        eq(c.recv(4096), b"-ERR Protocol error: bulk length over the limit\r\n", "reply")
        eq(c.recv(4096), b"", "closed")
        peer = "127.0.0.1:%d" % c.getsockname()[1]
        c.close()
        r = redis.Redis(port=s.port)
        check(r.ping(), "others carry on")
        try:
            r.append("k", "x" * 1000)
            r.append("k", "x" * 100)
            raise AssertionError("APPEND grew a value past --max-bulk")
        except redis.ResponseError as e:
            check("exceeds maximum allowed size" in str(e), str(e))
        # A transaction cannot queue more than one request may carry.
        p = r.pipeline()
        for _ in range(20000):
            p.set("k", "v" * 500)
        try:
            p.execute()
        except redis.ResponseError:
            pass
        else:
            raise AssertionError("a 10 MB transaction was queued")
        time.sleep(0.1)
        log = s.read_log()
        check(f"client {peer}" in log, f"log names {peer}:\n{log}")


def test_maxmemory(binary):
    with KvServer(binary, "--maxmemory", "1m", "--maxmemory-policy", "allkeys-lru") as s:
        r = redis.Redis(port=s.port, decode_responses=True)
        p = r.pipeline(transaction=False)
        for i in range(5000):
            p.set(f"k{i}", "x" * 1000)
        p.execute()
        info = r.info()
        check(info["evicted_keys"] > 0, "evicted_keys")
        check(r.dbsize() < 5000, "some keys were evicted")
        check(info["used_memory"] < 1.2 * 1024 * 1024, f"used_memory {info['used_memory']}")
        eq(r.get("k4999"), "x" * 1000, "the newest key stays")
    with KvServer(binary, "--maxmemory", "1m", "--maxmemory-policy", "volatile-ttl") as s:
        r = redis.Redis(port=s.port, decode_responses=True)
        for i in range(300):
            r.set(f"keep{i}", "x" * 1000)
        for i in range(3000):
            try:
                r.set(f"tmp{i}", "x" * 1000, ex=1000 + i)
            except redis.ResponseError as e:
                check(str(e).startswith("OOM"), str(e))
        eq(len(r.keys("keep*")), 300, "keys without a TTL are never evicted")
        check(r.info()["evicted_keys"] > 0, "keys with a TTL were")
    with KvServer(binary, "--maxmemory", "200k") as s:
        r = redis.Redis(port=s.port)
        try:
            for i in range(1000):
                r.set(f"k{i}", "x" * 1000)
            raise AssertionError("noeviction never refused a write")
        except redis.ResponseError as e:
            check(str(e).startswith("OOM command not allowed"), str(e))
        eq(r.delete("k1"), 1, "deletes still work")


def test_max_conns(binary):
    with KvServer(binary, "--max-conns", "2") as s:
        a = redis.Redis(port=s.port)
        b = redis.Redis(port=s.port)
        check(a.ping() and b.ping(), "two clients within the limit")
        # The third is told why, in Redis's words, then closed.
        for _ in range(2):
            c = socket.create_connection(("127.0.0.1", s.port))
            eq(c.recv(4096), b"-ERR max number of clients reached\r\n", "refusal")
            eq(c.recv(4096), b"", "closed after it")
            c.close()
        # redis-py turns that into a ConnectionError carrying the reason. When
        # the line is already there as its pool hands the new connection out,
        # this redis-py (4.3) says "Connection not ready" instead (it finds
        # unread data), so it gets a few tries.
        told = 0
        for _ in range(8):
            try:
                redis.Redis(port=s.port).ping()
                raise AssertionError("a third client was served with --max-conns 2")
            except redis.ConnectionError as e:
                if "Connection not ready" in str(e):
                    continue
                check("max number of clients reached" in str(e), str(e))
                told += 1
        check(told > 0, "redis-py never showed the reason")
        check(a.info()["rejected_connections"] >= 2 + told, "INFO rejected_connections")
        b.connection_pool.disconnect()  # close() keeps the pooled socket open
        # The slot comes back once tern-kv has seen the close.
        deadline = time.monotonic() + 5
        while True:
            try:
                check(redis.Redis(port=s.port).ping(), "a freed slot")
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        time.sleep(0.1)
        log = s.read_log()
        # Logged on the 1st, 2nd, 4th, 8th... refusal only: a storm costs log2 lines.
        counts = [int(m) for m in
                  re.findall(r"over --max-conns \(2\): refused \S+ \((\d+) refused", log)]
        check(len(counts) >= 2 and counts == [1 << i for i in range(len(counts))],
              f"rate-limited log: {counts}\n{log}")


def main():
    with KvServer(BIN) as s:
        for t in (test_the_calls_that_failed, test_expiry, test_active_expiry_gives_memory_back,
                  test_strings_and_keys, test_wrongtype, test_hashes_lists_sets,
                  test_transactions, test_transactions_are_atomic_across_workers,
                  test_connection_and_server):
            run(t, s.port)
    for t in (test_auth, test_hostile_input_names_the_peer, test_maxmemory, test_max_conns):
        run(t, BIN)
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}")
        sys.exit(1)
    print("all passed")


def run(t, arg):
    try:
        t(arg)
        print(f"ok   {t.__name__}")
    except Exception as e:  # report every failure, not just the first
        print(f"FAIL {t.__name__}: {type(e).__name__}: {e}")
        failures.append(t.__name__)


if __name__ == "__main__":
    main()
