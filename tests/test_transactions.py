"""MULTI, EXEC, DISCARD, WATCH and UNWATCH: the same reply bytes as a real redis-server, and redis-py's defaults.

Each scenario runs on this server and on redis-server with two connections, A and B (B plays "another
client"), and every reply is compared. Skipped where redis-server is not installed.
"""

import threading
import time

import pytest
import redis
from conftest import RawConnection, Responsiveness, wait_until

import server as srv

# A step is (connection, args); ("wait", ms) lets a key's millisecond TTL pass.
SCENARIOS = {
    "basics": [
        ("A", ["MULTI"]), ("A", ["SET", "a", "1"]), ("A", ["INCR", "a"]), ("A", ["GET", "a"]), ("A", ["EXEC"]),
        ("A", ["MULTI"]), ("A", ["EXEC"]), ("A", ["GET", "a"]),
    ],
    "errors outside and inside MULTI": [
        ("A", ["EXEC"]), ("A", ["DISCARD"]), ("A", ["MULTI", "x"]), ("A", ["MULTI"]), ("A", ["MULTI"]),
        ("A", ["WATCH", "k"]), ("A", ["SET", "k", "v"]), ("A", ["EXEC"]), ("A", ["GET", "k"]),
    ],
    "an error at EXEC time takes its place, the rest runs": [
        ("A", ["SET", "w", "word"]), ("A", ["MULTI"]), ("A", ["INCR", "w"]), ("A", ["SET", "n", "1"]),
        ("A", ["INCR", "n"]), ("A", ["EXEC"]),
    ],
    "unknown command while queueing: EXECABORT, nothing runs": [
        ("A", ["MULTI"]), ("A", ["SET", "x", "1"]), ("A", ["NOSUCH", "a"]), ("A", ["SET", "y", "2"]), ("A", ["EXEC"]),
        ("A", ["EXISTS", "x", "y"]), ("A", ["PING"]),
    ],
    "wrong arity and unknown subcommand while queueing": [
        ("A", ["MULTI"]), ("A", ["GET"]), ("A", ["EXEC"]), ("A", ["MULTI"]), ("A", ["CLIENT", "NOSUCH"]),
        ("A", ["EXEC"]),
    ],
    "commands not allowed inside a transaction": [
        ("A", ["MULTI"]), ("A", ["SAVE"]), ("A", ["SET", "k", "v"]), ("A", ["EXEC"]), ("A", ["MULTI"]),
        ("A", ["SHUTDOWN"]), ("A", ["DISCARD"]), ("A", ["EXISTS", "k"]),
    ],
    "DISCARD": [
        ("A", ["SET", "k", "1"]), ("A", ["MULTI"]), ("A", ["DEL", "k"]), ("A", ["DISCARD"]), ("A", ["GET", "k"]),
        ("A", ["DISCARD"]),
    ],
    "SELECT inside a transaction": [
        ("A", ["MULTI"]), ("A", ["SELECT", "3"]), ("A", ["SET", "k", "3"]), ("A", ["SELECT", "0"]),
        ("A", ["EXEC"]), ("A", ["GET", "k"]), ("A", ["SELECT", "3"]), ("A", ["GET", "k"]), ("A", ["FLUSHALL"]),
    ],
    "UNWATCH is queued inside MULTI": [
        ("A", ["WATCH", "k"]), ("B", ["SET", "k", "1"]), ("A", ["MULTI"]), ("A", ["UNWATCH"]), ("A", ["EXEC"]),
    ],
    "WATCH, unchanged: EXEC runs": [
        ("A", ["WATCH", "x", "y", "z"]), ("A", ["WATCH", "k"]), ("B", ["GET", "x"]), ("A", ["MULTI"]),
        ("A", ["PING"]), ("A", ["EXEC"]),
    ],
    "WATCH, changed by another client: EXEC answers null": [
        ("A", ["SET", "x", "30"]), ("A", ["WATCH", "a", "b", "x", "k", "z"]), ("B", ["SET", "x", "40"]),
        ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]), ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
    ],
    "WATCH, changed by the same client": [
        ("A", ["WATCH", "x"]), ("A", ["SET", "x", "1"]), ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
    ],
    "It is possible to UNWATCH": [
        ("A", ["SET", "x", "30"]), ("A", ["WATCH", "x"]), ("B", ["SET", "x", "40"]), ("A", ["UNWATCH"]),
        ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]), ("A", ["UNWATCH"]),
    ],
    "DISCARD unwatches and clears the dirty flag": [
        ("A", ["WATCH", "x"]), ("B", ["SET", "x", "10"]), ("A", ["MULTI"]), ("A", ["DISCARD"]), ("A", ["MULTI"]),
        ("A", ["INCR", "x"]), ("A", ["EXEC"]),
    ],
    "writes that change nothing do not touch": [
        ("A", ["SET", "x", "1"]), ("A", ["WATCH", "x", "missing"]), ("B", ["SET", "x", "2", "NX"]),
        ("B", ["DEL", "missing"]), ("B", ["EXPIRE", "missing", "10"]), ("B", ["PERSIST", "x"]),
        ("B", ["GETEX", "x"]), ("B", ["MSETNX", "x", "3", "y", "3"]), ("B", ["GET", "x"]), ("A", ["MULTI"]),
        ("A", ["PING"]), ("A", ["EXEC"]),
    ],
    "WATCH remembers the database of a key": [
        ("A", ["SELECT", "5"]), ("A", ["SET", "x", "30"]), ("A", ["WATCH", "x"]), ("B", ["SELECT", "1"]),
        ("B", ["SET", "x", "10"]), ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]), ("A", ["FLUSHALL"]),
    ],
    "FLUSHALL and FLUSHDB touch watched keys that exist, only those": [
        ("A", ["SET", "x", "30"]), ("A", ["WATCH", "x"]), ("B", ["FLUSHALL"]), ("A", ["MULTI"]), ("A", ["PING"]),
        ("A", ["EXEC"]), ("A", ["WATCH", "x"]), ("B", ["FLUSHALL"]), ("A", ["MULTI"]), ("A", ["PING"]),
        ("A", ["EXEC"]), ("A", ["SET", "x", "30"]), ("A", ["WATCH", "x"]), ("B", ["FLUSHDB"]), ("A", ["MULTI"]),
        ("A", ["PING"]), ("A", ["EXEC"]), ("A", ["WATCH", "x"]), ("B", ["FLUSHDB"]), ("A", ["MULTI"]),
        ("A", ["PING"]), ("A", ["EXEC"]),
    ],
    "SWAPDB touches watched keys that exist on either side": [
        ("A", ["SET", "x", "30"]), ("A", ["WATCH", "x"]), ("B", ["SWAPDB", "0", "1"]), ("A", ["MULTI"]),
        ("A", ["PING"]), ("A", ["EXEC"]), ("B", ["FLUSHALL"]), ("B", ["SELECT", "1"]), ("B", ["SET", "y", "1"]),
        ("A", ["WATCH", "y"]), ("B", ["SWAPDB", "0", "1"]), ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
        ("A", ["WATCH", "z"]), ("B", ["SWAPDB", "0", "1"]), ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
        ("A", ["FLUSHALL"]),
    ],
    "every kind of write touches": [
        (c, args)
        for write in (["DEL", "k"], ["UNLINK", "k"], ["EXPIRE", "k", "100"], ["PEXPIREAT", "k", "99999999999999"],
                      ["APPEND", "k", "x"], ["SETRANGE", "k", "0", "x"], ["INCR", "n"], ["DECRBY", "n", "2"],
                      ["INCRBYFLOAT", "n", "1.5"], ["MSET", "a", "1", "k", "2"], ["GETSET", "k", "z"],
                      ["GETDEL", "k"], ["GETEX", "k", "PX", "100000"], ["SETEX", "k", "100", "v"],
                      ["RENAME", "k", "r"], ["RENAME", "r0", "k"], ["MOVE", "k", "2"], ["COPY", "r0", "k"],
                      ["SET", "k", "v", "KEEPTTL"], ["PERSIST", "t"])
        for c, args in [
            ("A", ["FLUSHALL"]), ("A", ["MSET", "k", "1", "n", "5", "r0", "x", "t", "1"]),
            ("A", ["EXPIRE", "t", "100"]),
            ("A", ["WATCH", "k", "n", "r", "t"]), ("B", write), ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
        ]
    ],
    "WATCH of a key already expired: its deletion is no change": [
        ("A", ["DEBUG", "SET-ACTIVE-EXPIRE", "0"]), ("A", ["SET", "x", "foo", "PX", "1"]), ("wait", 3),
        ("A", ["WATCH", "x"]), ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
        ("A", ["SET", "x", "foo", "PX", "1"]), ("wait", 3), ("A", ["WATCH", "x"]), ("B", ["EXISTS", "x"]),
        ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
        ("A", ["SET", "x", "foo", "PX", "1"]), ("wait", 3), ("A", ["WATCH", "x"]), ("B", ["FLUSHDB"]),
        ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
        ("A", ["SET", "x", "foo", "PX", "1"]), ("wait", 3), ("A", ["WATCH", "x"]), ("B", ["SET", "x", "new"]),
        ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
        ("A", ["DEBUG", "SET-ACTIVE-EXPIRE", "1"]),
    ],
    "SWAPDB and stale keys": [
        ("A", ["DEBUG", "SET-ACTIVE-EXPIRE", "0"]),
        # An expired key replaced with no key: no change.
        ("A", ["FLUSHALL"]), ("A", ["SELECT", "1"]), ("A", ["SET", "x", "foo", "PX", "1"]), ("wait", 3),
        ("A", ["WATCH", "x"]), ("B", ["SWAPDB", "0", "1"]), ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
        # No key replaced with an expired key: no change.
        ("A", ["FLUSHALL"]), ("A", ["SELECT", "0"]), ("A", ["SET", "x", "foo", "PX", "1"]), ("wait", 3),
        ("A", ["SELECT", "1"]), ("A", ["WATCH", "x"]), ("B", ["SWAPDB", "0", "1"]), ("A", ["MULTI"]),
        ("A", ["PING"]), ("A", ["EXEC"]),
        # An expired key replaced with another expired key: no change.
        ("A", ["FLUSHALL"]), ("A", ["SELECT", "1"]), ("A", ["SET", "x", "foo", "PX", "1"]), ("A", ["SELECT", "0"]),
        ("A", ["SET", "x", "bar", "PX", "1"]), ("wait", 3), ("A", ["SELECT", "1"]), ("A", ["WATCH", "x"]),
        ("B", ["SWAPDB", "0", "1"]), ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
        # An expired key replaced with a live one: a change.
        ("A", ["FLUSHALL"]), ("A", ["SET", "x", "foo", "PX", "1"]), ("wait", 3), ("A", ["WATCH", "x"]),
        ("B", ["SELECT", "1"]), ("B", ["SET", "x", "live"]), ("B", ["SWAPDB", "0", "1"]), ("A", ["MULTI"]),
        ("A", ["PING"]), ("A", ["EXEC"]),
        ("A", ["SELECT", "0"]), ("A", ["FLUSHALL"]), ("A", ["DEBUG", "SET-ACTIVE-EXPIRE", "1"]),
    ],
    "a key that expires after WATCH fails EXEC, though nothing deleted it yet": [
        ("A", ["DEBUG", "SET-ACTIVE-EXPIRE", "0"]), ("A", ["SET", "key", "1", "PX", "20"]), ("A", ["WATCH", "key"]),
        ("wait", 25), ("A", ["MULTI"]), ("A", ["INCR", "key"]), ("A", ["EXEC"]),
        ("A", ["DEBUG", "SET-ACTIVE-EXPIRE", "1"]),
    ],
    "SWAPDB of a database with itself touches nothing": [
        ("A", ["SET", "k", "v"]), ("A", ["WATCH", "k"]), ("B", ["SWAPDB", "0", "0"]), ("A", ["MULTI"]),
        ("A", ["PING"]), ("A", ["EXEC"]),
    ],
    "a refused EXEC ends the transaction": [
        ("A", ["MULTI"]), ("A", ["EXEC", "x"]), ("A", ["EXEC"]), ("A", ["WATCH", "k"]), ("A", ["EXEC", "x"]),
        ("B", ["SET", "k", "1"]), ("A", ["MULTI"]), ("A", ["PING"]), ("A", ["EXEC"]),
    ],
    "RESET leaves MULTI and unwatches": [
        ("A", ["WATCH", "x"]), ("B", ["SET", "x", "1"]), ("A", ["MULTI"]), ("A", ["SET", "y", "1"]),
        ("A", ["RESET"]), ("A", ["EXISTS", "y"]), ("A", ["EXEC"]), ("A", ["MULTI"]), ("A", ["PING"]),
        ("A", ["EXEC"]),
    ],
}


def run(connections: dict[str, RawConnection], steps: list) -> list[bytes]:
    replies = []
    for who, args in steps:
        if who == "wait":
            time.sleep(args / 1000)  # the key's TTL is a few ms: time itself is the condition
            continue
        replies.append(connections[who].call(*args))
    return replies


@pytest.mark.parametrize("name", SCENARIOS)
def test_same_replies_as_redis(server, real_redis, name):
    results = []
    for port in (server.port, real_redis.port):
        connections = {"A": RawConnection(port), "B": RawConnection(port)}
        connections["A"].call("FLUSHALL")
        try:
            results.append(run(connections, SCENARIOS[name]))
        finally:
            for connection in connections.values():
                connection.close()
    ours, theirs = results
    steps = [step for step in SCENARIOS[name] if step[0] != "wait"]
    for step, got, expected in zip(steps, ours, theirs, strict=True):
        assert got == expected, f"{step}: we replied {got!r}, redis replied {expected!r}"


@pytest.mark.parametrize("resp", [2, 3])
def test_a_failed_watch_answers_the_null_of_the_protocol(both, resp):
    expected = b"*-1\r\n" if resp == 2 else b"_\r\n"
    for connection in both:
        connection.call("HELLO", resp)
        connection.call("WATCH", "k")
        connection.call("SET", "k", "changed")
        connection.call("MULTI")
        connection.call("PING")
        assert connection.call("EXEC") == expected


def test_active_expiry_of_a_watched_key_fails_exec(server, real_redis):
    for port in (server.port, real_redis.port):
        connection = RawConnection(port)
        connection.call("FLUSHALL")
        connection.call("SET", "x", "foo", "PX", "50")
        connection.call("WATCH", "x")
        assert wait_until(lambda connection=connection: connection.call("DBSIZE") == b":0\r\n")  # active expiry
        connection.call("MULTI")
        connection.call("PING")
        assert connection.call("EXEC") == b"*-1\r\n", port
        connection.close()


def test_redis_py_pipeline_is_a_transaction_by_default(r):
    pipe = r.pipeline()
    pipe.set("a", 1).incr("a").get("a").incr("not-a-number-yet")
    pipe.set("w", "word").incr("w")
    results = pipe.execute(raise_on_error=False)
    assert results[:5] == [True, 2, b"2", 1, True]
    assert isinstance(results[5], redis.ResponseError)


def test_redis_py_transaction_retries_under_contention(server):
    # 8 threads each add 1 to a counter 250 times with WATCH / GET / MULTI / SET / EXEC: no update is lost.
    clients = [redis.Redis(port=server.port) for _ in range(8)]
    clients[0].delete("counter")

    def add_one(pipe: redis.client.Pipeline) -> None:
        value = int(pipe.get("counter") or 0)
        pipe.multi()
        pipe.set("counter", value + 1)

    def work(client: redis.Redis) -> None:
        for _ in range(250):
            client.transaction(add_one, "counter")

    threads = [threading.Thread(target=work, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clients[0].get("counter") == b"2000"
    for client in clients:
        client.close()


def test_a_transaction_cannot_queue_without_bound(start_server):
    process = start_server("--client-query-buffer-limit", "100000")
    hostile = RawConnection(process.port)
    hostile.call("MULTI")
    with Responsiveness(process.port):
        queued = b"".join(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\n" + b"v" * 1000 + b"\r\n" for _ in range(200))
        hostile.send(queued)
        assert wait_until(hostile.is_closed_by_server)
    assert "its transaction reached the query buffer limit" in process.output()
    hostile.close()


def test_watches_are_forgotten_when_the_client_goes(tmp_path):
    instance = srv.Server(srv.parse_options(["--dir", str(tmp_path)]))
    watcher, writer = (instance.client_connected("127.0.0.1:1", None) for _ in range(2))
    assert srv.execute(watcher, [b"WATCH", b"a", b"b"]) == b"+OK\r\n"
    database = instance.keyspace.databases[0]
    assert set(database.watched_keys) == {b"a", b"b"}
    instance.client_disconnected(watcher)
    assert database.watched_keys == {}
    assert srv.execute(writer, [b"SET", b"a", b"1"]) == b"+OK\r\n"


def test_a_transaction_of_large_replies_cannot_hold_the_server_s_memory(start_server):
    # A few KB of MULTI and GETs of a 1 MB value ask for 300 MB in one EXEC reply: the commands run, the
    # client is disconnected instead of answered, and the server's memory and other clients are fine.
    process = start_server()
    hostile = RawConnection(process.port)
    hostile.call("SET", "big", "x" * 1024 * 1024)
    rss_before = process.memory()
    with Responsiveness(process.port, max_latency=3.0):
        hostile.send(b"MULTI\r\n" + b"GET big\r\n" * 300 + b"INCR ran\r\nEXEC\r\n")
        assert wait_until(hostile.is_closed_by_server, timeout=10)
    assert process.memory("VmHWM") - rss_before < 150 * 1024 * 1024  # the peak: about the limit, 64 MB
    assert "the replies of its transaction passed" in process.output()
    assert RawConnection(process.port).call("GET", "ran") == b"$1\r\n1\r\n"  # EXEC ran every command


def test_queued_commands_count_the_memory_they_hold(start_server):
    # A million one-byte PINGs hold far more than a million bytes: the limit counts what they hold.
    process = start_server("--client-query-buffer-limit", "5000000")
    hostile = RawConnection(process.port)
    hostile.call("MULTI")
    hostile.send(b"PING\r\n" * 100_000)  # 600 KB on the wire, several MB once queued
    assert wait_until(hostile.is_closed_by_server, timeout=10)
    assert "its transaction reached the query buffer limit" in process.output()


def test_client_info_inside_exec_shows_the_transaction_as_redis_does(both):
    for connection in both:
        connection.call("MULTI")
        connection.call("SET", "a", "1")
        connection.call("CLIENT", "INFO")
        info = connection.call("EXEC").split(b"\r\n")[3]
        fields = dict(item.split(b"=", 1) for item in info.split())
        assert (fields[b"flags"], fields[b"multi"], fields[b"cmd"]) == (b"x", b"2", b"exec")
