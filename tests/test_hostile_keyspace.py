"""Keyspace costs a client must not be able to abuse: string edits, RANDOMKEY and SCAN.

APPEND and SETRANGE edit a string in place (a bytearray, Redis's "raw" encoding), so each
costs the bytes it writes, not the whole value. RANDOMKEY and SCAN read the database's key
list, so each call costs O(1) and O(COUNT), not O(keys), and an open SCAN holds no memory.
"""

from __future__ import annotations

import time

import pytest
from conftest import RawConnection, Responsiveness, ServerProcess, requires_redis_server

from client import encode_request, parse_reply
from server import bulk

HUGE_OFFSET = 64 * 1024 * 1024 - 1  # SETRANGE here makes a 64 MiB string
MANY_KEYS = 300_000
# How long a hostile client waits for its replies: long enough for a server that freezes to answer late,
# so that the test reports the freeze as Responsiveness measured it.
HOSTILE_REPLY_TIMEOUT = 60.0


def request(*args: bytes | str | int) -> bytes:
    return encode_request([a if isinstance(a, bytes) else str(a).encode() for a in args])


def hostile_connection(port: int) -> RawConnection:
    connection = RawConnection(port)
    connection.sock.settimeout(HOSTILE_REPLY_TIMEOUT)
    return connection


def watching(watcher: Responsiveness) -> None:
    """Wait until the watcher has had a PING answered: a hostile pipeline that ends sooner proves nothing."""
    deadline = time.monotonic() + 5
    while not watcher.latencies:
        assert time.monotonic() < deadline, "the watching client never had a PING answered"
        time.sleep(0.001)


def pipeline(connection: RawConnection, requests: list[bytes]) -> list[object]:
    """Send all requests in one write, then read and parse every reply."""
    connection.send(b"".join(requests))
    return [parse_reply(connection.read_reply())[0] for _ in requests]


def mset_requests(keys: list[bytes] | list[str], keys_per_request: int = 1000) -> list[bytes]:
    """MSETs that set every key, each to its position in keys."""
    return [request("MSET", *[arg for n in range(start, min(start + keys_per_request, len(keys)))
                              for arg in (keys[n], n)])
            for start in range(0, len(keys), keys_per_request)]


def full_scan(connection: RawConnection, count: int = 100) -> list[bytes]:
    """Every key one complete SCAN iteration returns, repeats included."""
    keys, cursor = [], b"0"
    while True:
        cursor, batch = parse_reply(connection.call("SCAN", cursor, "COUNT", count))[0]
        keys += batch
        if cursor == b"0":
            return keys


def expired_keys_left_in_memory(connection: RawConnection, names: list[str]) -> None:
    """Give each name a 1 ms TTL and wait until it has passed; active expiry must be off (DEBUG)."""
    pipeline(connection, [request("SET", name, "v", "PX", 1) for name in names])
    time.sleep(0.005)  # 1 ms TTLs: a few ms later every one has passed


def add_many_keys(port: int) -> None:
    """SET k:0 ... k:299999 (MANY_KEYS keys), by MSETs of 1000 keys."""
    connection = RawConnection(port)
    assert set(pipeline(connection, mset_requests([f"k:{n}" for n in range(MANY_KEYS)]))) == {b"OK"}
    connection.close()


@pytest.fixture(scope="module")
def many_keys(tmp_path_factory):
    """A server of this module's own, holding MANY_KEYS keys."""
    process = ServerProcess(tmp_path_factory.mktemp("many-keys"))
    add_many_keys(process.port)
    yield process
    process.stop()


# --- Item 3: APPEND and SETRANGE cost what they write ----------------------------


@pytest.mark.parametrize("edit", ["APPEND", "SETRANGE"])
def test_editing_a_huge_string_does_not_copy_it(start_server, edit):
    # Before, each edit built a new 64 MiB bytes object: 100 pipelined edits froze every client for seconds.
    process = start_server()
    hostile = hostile_connection(process.port)
    assert hostile.call("SETRANGE", "big", HUGE_OFFSET, "x") == b":%d\r\n" % (HUGE_OFFSET + 1)
    if edit == "APPEND":
        edits = [request("APPEND", "big", "z") for _ in range(100)]
    else:
        edits = [request("SETRANGE", "big", HUGE_OFFSET + n, "y") for n in range(1, 101)]
    with Responsiveness(process.port) as watcher:
        watching(watcher)
        replies = pipeline(hostile, edits)
    assert replies == list(range(HUGE_OFFSET + 2, HUGE_OFFSET + 102))
    expected_tail = b"x" + (b"z" if edit == "APPEND" else b"y") * 100
    assert hostile.call("GETRANGE", "big", -101, -1) == bulk(expected_tail)
    assert hostile.call("GETRANGE", "big", 0, 3) == bulk(b"\0\0\0\0")
    hostile.close()


def test_a_copy_does_not_share_the_buffer_edits_change(raw):
    raw.call("SETRANGE", "source", 0, "abc")  # an edited string: a bytearray inside
    assert raw.call("COPY", "source", "copy") == b":1\r\n"
    assert raw.call("COPY", "source", "other-db", "DB", 1) == b":1\r\n"
    raw.call("APPEND", "copy", "X")
    raw.call("SETRANGE", "source", 0, "Z")
    assert raw.call("GET", "source") == bulk(b"Zbc")
    assert raw.call("GET", "copy") == bulk(b"abcX")
    raw.call("SELECT", 1)
    assert raw.call("GET", "other-db") == bulk(b"abc")


def test_edited_strings_are_read_by_every_string_command(raw):
    raw.call("SET", "n", "1")
    raw.call("APPEND", "n", "0")  # "10", edited
    assert raw.call("INCRBY", "n", 5) == b":15\r\n"
    raw.call("APPEND", "f", "1.")
    raw.call("APPEND", "f", "5")
    assert raw.call("INCRBYFLOAT", "f", "1") == bulk(b"2.5")
    raw.call("SETRANGE", "s", 2, "cd")
    assert raw.call("MGET", "s", "missing") == b"*2\r\n$4\r\n\0\0cd\r\n$-1\r\n"
    assert raw.call("GETRANGE", "s", 1, 2) == bulk(b"\0c")
    assert raw.call("STRLEN", "s") == b":4\r\n"
    assert raw.call("SET", "s", "new", "GET") == bulk(b"\0\0cd")
    raw.call("APPEND", "s", "er")
    assert raw.call("GETDEL", "s") == bulk(b"newer")


def test_an_edited_value_survives_a_snapshot(start_server):
    process = start_server()
    connection = RawConnection(process.port)
    connection.call("SET", "k", "head")
    connection.call("APPEND", "k", b"\xff\x00tail")
    connection.call("SETRANGE", "padded", 3, "x")
    assert connection.call("SAVE") == b"+OK\r\n"
    connection.close()
    assert process.stop() == 0
    restarted = start_server()
    connection = RawConnection(restarted.port)
    assert connection.call("GET", "k") == bulk(b"head\xff\x00tail")
    assert connection.call("GET", "padded") == bulk(b"\0\0\0x")
    assert sorted(full_scan(connection)) == [b"k", b"padded"]  # loading fills the key list too
    assert connection.call("RANDOMKEY") in (bulk(b"k"), bulk(b"padded"))
    connection.close()


@requires_redis_server
def test_encodings_and_edits_match_redis(both):
    ours, theirs = both
    commands = [
        ["SET", "a", "12"], ["OBJECT", "ENCODING", "a"], ["APPEND", "a", "3"], ["OBJECT", "ENCODING", "a"],
        ["INCR", "a"], ["OBJECT", "ENCODING", "a"],
        ["SET", "b", "hello"], ["APPEND", "b", ""], ["OBJECT", "ENCODING", "b"],
        ["APPEND", "c", "7"], ["OBJECT", "ENCODING", "c"],
        ["SETRANGE", "d", "0", "x"], ["OBJECT", "ENCODING", "d"], ["SETRANGE", "e", "3", ""], ["EXISTS", "e"],
        ["SET", "g", "abc"], ["SETRANGE", "g", "5", "z"], ["GET", "g"], ["OBJECT", "ENCODING", "g"],
        ["SETRANGE", "g", "1", "XY"], ["GET", "g"], ["SETRANGE", "g", "0", ""], ["STRLEN", "g"],
        ["INCRBYFLOAT", "f", "1.5"], ["OBJECT", "ENCODING", "f"], ["APPEND", "f", "0"], ["OBJECT", "ENCODING", "f"],
        ["SET", "h", "x"], ["APPEND", "h", "y"], ["SET", "h", "short"], ["OBJECT", "ENCODING", "h"],
        ["COPY", "b", "b2"], ["OBJECT", "ENCODING", "b2"], ["APPEND", "b2", "!"], ["GET", "b"], ["GET", "b2"],
        ["COPY", "h", "h2"], ["OBJECT", "ENCODING", "h2"],
        ["RENAME", "b2", "b3"], ["OBJECT", "ENCODING", "b3"], ["EXISTS", "b2"],
        ["MOVE", "b3", "1"], ["SELECT", "1"], ["OBJECT", "ENCODING", "b3"], ["GET", "b3"], ["SELECT", "0"],
        ["SET", "t", "v", "EX", "100"], ["APPEND", "t", "w"], ["TTL", "t"], ["SETRANGE", "t", "0", "V"], ["TTL", "t"],
        ["MGET", "a", "b", "d", "g", "nokey"],
    ]
    for command in commands:
        assert ours.call(*command) == theirs.call(*command), command


# --- Item 4: RANDOMKEY and SCAN cost O(1) and O(COUNT) --------------------------


@pytest.mark.parametrize("command", [["RANDOMKEY"], ["SCAN", "0"]])
def test_randomkey_and_scan_do_not_read_the_whole_keyspace(many_keys, command):
    # Before, each call copied every key name out of the dict: 1000 pipelined calls froze every client.
    hostile = hostile_connection(many_keys.port)
    with Responsiveness(many_keys.port) as watcher:
        watching(watcher)
        replies = pipeline(hostile, [request(*command)] * 1000)
    if command == ["RANDOMKEY"]:
        assert all(reply.startswith(b"k:") and int(reply[2:]) < MANY_KEYS for reply in replies)
        assert len(set(replies)) > 900  # random picks: 1000 of 300,000 keys rarely repeat
    else:
        assert replies[0] == [b"10", [b"k:%d" % n for n in range(10)]]
        assert all(reply == replies[0] for reply in replies)
    hostile.close()


def info_used_memory(connection: RawConnection) -> int:
    info = parse_reply(connection.call("INFO", "memory"))[0]
    return int(info.split(b"used_memory:")[1].split(b"\r\n")[0])


def test_open_scans_hold_no_memory(start_server):
    # Before, each SCAN 0 kept a copy of every key name (the last 64 of them): 2.4 MB each here.
    process = start_server()  # not the module's server: scans other tests left open would hide the growth
    add_many_keys(process.port)
    connection = hostile_connection(process.port)
    pipeline(connection, [request("SCAN", "0", "COUNT", 1000)] * 10)  # any one-time allocation happens here
    before = info_used_memory(connection)
    replies = pipeline(connection, [request("SCAN", "0", "COUNT", 1000)] * 200)
    assert all(cursor != b"0" for cursor, _ in replies)  # 200 scans, all left open
    growth = info_used_memory(connection) - before
    assert growth < 10_000_000, f"200 open scans took {growth / 1e6:.0f} MB"
    connection.close()


def test_scan_returns_every_key_present_throughout_while_the_key_list_is_compacted(raw):
    # Insertion order interleaves keys that stay with keys deleted during the scan, so that each
    # compaction of the key list (once stale entries outnumber live ones) moves the staying keys.
    keys = [b"key:%d" % n for n in range(9000)]
    staying, leaving = keys[::3], [key for n, key in enumerate(keys) if n % 3]
    pipeline(raw, mset_requests(keys))
    seen, cursor, step = [], b"0", 0
    while True:
        cursor, batch = parse_reply(raw.call("SCAN", cursor, "COUNT", 300))[0]
        seen += batch
        churn = [request("DEL", *leaving[step * 600 : step * 600 + 600])] if step * 600 < len(leaving) else []
        churn += mset_requests([b"new:%d:%d" % (step, n) for n in range(100)])
        if step:
            churn.append(request("DEL", *[b"new:%d:%d" % (step - 1, n) for n in range(100)]))
        pipeline(raw, churn)
        step += 1
        if cursor == b"0":
            break
        assert step < 200, "the scan does not end"
    assert set(staying) <= set(seen)
    assert set(seen) <= set(staying) | set(leaving) | {b"new:%d:%d" % (s, n) for s in range(step) for n in range(100)}


def test_a_scan_of_a_database_nobody_changes_returns_each_key_once(raw):
    raw.call("MSET", "dup", 1, "a", 1, "dup", 2, "b", 1)  # MSET adds each new key to the key list once
    pipeline(raw, mset_requests([f"k:{n}" for n in range(3000)], keys_per_request=500))
    raw.call("SET", "a", 2)  # overwriting keeps a key where it is
    keys = full_scan(raw, count=7)
    assert len(keys) == len(set(keys)) == 3003


def test_randomkey_never_returns_an_expired_key(start_server):
    process = start_server()
    connection = RawConnection(process.port)
    assert connection.call("DEBUG", "SET-ACTIVE-EXPIRE", "0") == b"+OK\r\n"
    pipeline(connection, [request("SET", f"live:{n}", "v") for n in range(20)])
    expired_keys_left_in_memory(connection, [f"gone:{n}" for n in range(500)])
    picks = pipeline(connection, [request("RANDOMKEY")] * 200)
    assert {pick[:5] for pick in picks} == {b"live:"}
    assert connection.call("DBSIZE") != b":520\r\n"  # the expired picks were deleted on the way
    connection.close()


def test_randomkey_on_a_database_whose_keys_have_all_expired(start_server):
    process = start_server()
    connection = RawConnection(process.port)
    assert connection.call("DEBUG", "SET-ACTIVE-EXPIRE", "0") == b"+OK\r\n"
    expired_keys_left_in_memory(connection, [f"gone:{n}" for n in range(20)])
    assert connection.call("RANDOMKEY") == b"$-1\r\n"  # as Redis: every pick deleted, then nothing is left
    assert connection.call("DBSIZE") == b":0\r\n"
    # More expired keys than RANDOMKEY_MAX_TRIES: it gives up, as Redis does on a replica, and names one.
    names = [f"gone:{n}" for n in range(3000)]
    expired_keys_left_in_memory(connection, names)
    with Responsiveness(process.port) as watcher:
        watching(watcher)
        picks = pipeline(connection, [request("RANDOMKEY")] * 20)
    assert all(pick is None or pick.decode() in names for pick in picks)
    connection.close()


def test_key_list_follows_rename_move_swapdb_and_flushdb(raw):
    raw.call("MSET", "a", 1, "b", 2)
    raw.call("RENAME", "a", "renamed")
    raw.call("MOVE", "b", 1)
    assert full_scan(raw) == [b"renamed"]
    assert raw.call("RANDOMKEY") == bulk(b"renamed")
    raw.call("SWAPDB", 0, 1)
    assert full_scan(raw) == [b"b"]
    assert raw.call("RANDOMKEY") == bulk(b"b")
    pipeline(raw, [request("SET", f"k:{n}", n) for n in range(100)])
    cursor, _ = parse_reply(raw.call("SCAN", 0))[0]
    raw.call("FLUSHDB")
    raw.call("SET", "after", 1)
    keys = []
    while cursor != b"0":  # a cursor from before FLUSHDB goes on harmlessly, and ends
        cursor, batch = parse_reply(raw.call("SCAN", cursor))[0]
        keys += batch
    assert set(keys) <= {b"after"}
    raw.call("SELECT", 1)
    assert full_scan(raw) == [b"renamed"]


@requires_redis_server
def test_scan_and_randomkey_replies_match_redis_where_they_are_deterministic(both):
    ours, theirs = both
    commands = [
        ["SCAN", "0"], ["RANDOMKEY"], ["SET", "k", "v"], ["SCAN", "0"],
        ["SCAN", "0", "MATCH", "x*"], ["SCAN", "0", "TYPE", "string"], ["SCAN", "0", "TYPE", "hash"],
        ["RANDOMKEY"], ["DEL", "k"], ["SET", "k", "w"], ["SCAN", "0"], ["RANDOMKEY"], ["DEL", "k"], ["SCAN", "0"],
        ["RANDOMKEY"], ["SCAN", "18446744073709551615"], ["SCAN", "-1"], ["SCAN", "18446744073709551616"],
        ["SCAN", "0", "COUNT", "0"], ["SCAN", "x"], ["RANDOMKEY", "extra"],
    ]
    for command in commands:
        assert ours.call(*command) == theirs.call(*command), command
