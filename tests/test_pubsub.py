"""Pub/Sub, keyspace notifications, MONITOR, CLIENT KILL and CLIENT REPLY.

Scripts of requests over several connections run against this server and a real redis-server, and every
reply (pushed messages included) must be the same bytes. Then the clients people use: redis-py's pubsub
(threads, asyncio, RESP3), redis-cli's SUBSCRIBE and MONITOR; and a subscriber that never reads.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import redis
import redis.asyncio
from conftest import ROOT, RawConnection, Responsiveness, wait_until

import client as cli

# A script is a list of steps (connection name, replies to read, *command). A step with no command
# only reads: the messages pushed to that connection. A negative count reads that many replies without
# comparing them (HELLO's map holds the client id, which differs between the two servers).
Step = tuple


def run_script(port: int, steps: list[Step]) -> list[bytes]:
    connections: dict[str, RawConnection] = {}
    replies = []
    try:
        for name, count, *args in steps:
            connection = connections.get(name) or connections.setdefault(name, RawConnection(port))
            if args:
                connection.send(cli.encode_request([str(arg).encode() for arg in args]))
            reply = b"".join(connection.read_reply() for _ in range(abs(count)))
            replies.append(reply if count >= 0 else b"")
    finally:
        for connection in connections.values():
            connection.close()
    return replies


SCRIPTS: dict[str, list[Step]] = {
    "subscribe and publish in RESP2": [
        ("s", 1, "UNSUBSCRIBE"), ("s", 1, "PUNSUBSCRIBE"), ("s", 2, "UNSUBSCRIBE", "x", "y"),
        ("s", 1, "PUNSUBSCRIBE", "x*"), ("s", 3, "SUBSCRIBE", "a", "b", "a"), ("s", 1, "PSUBSCRIBE", "a*"),
        ("p", 1, "PUBLISH", "a", "hi"), ("s", 2), ("p", 1, "PUBLISH", "b", "x\r\ny"), ("s", 1),
        ("p", 1, "PUBLISH", "nobody", "x"), ("p", 1, "PUBLISH", "abc", ""), ("s", 1),
        ("p", 1, "PUBSUB", "NUMSUB", "a", "b", "c", "a"), ("p", 1, "PUBSUB", "NUMSUB"), ("p", 1, "PUBSUB", "NUMPAT"),
        ("p", 1, "PUBSUB", "CHANNELS", "a"), ("p", 1, "PUBSUB", "CHANNELS", "z*"),
        ("p", 1, "PUBSUB", "CHANNELS", "a", "b"),
        ("p", 1, "PUBSUB", "HELP"), ("p", 1, "PUBSUB", "HELP", "x"), ("p", 1, "PUBSUB"), ("p", 1, "PUBSUB", "FOO"),
        ("p", 1, "PUBSUB", "NUMPAT", "x"), ("p", 1, "PUBSUB", "SHARDCHANNELS"), ("p", 1, "PUBSUB", "SHARDNUMSUB", "a"),
        ("p", 1, "PUBLISH", "a"), ("p", 1, "SUBSCRIBE"), ("p", 1, "PSUBSCRIBE"),
        ("s", 1, "GET", "k"), ("s", 1, "PING"), ("s", 1, "PING", "x"), ("s", 1, "PING", "a", "b"),
        ("s", 1, "PUBSUB", "NUMPAT"), ("s", 1, "CLIENT", "ID", "x"), ("s", 1, "FOO"), ("s", 1, "SET", "k"),
        ("s", 1, "UNSUBSCRIBE", "a"), ("s", 1, "PUNSUBSCRIBE"), ("s", 1, "UNSUBSCRIBE"), ("s", 1, "GET", "k"),
        ("s", 1, "PING"), ("p", 1, "PUBLISH", "a", "nobody left"), ("p", 1, "PUBSUB", "NUMPAT"),
        ("s", 1, "QUIT"),
    ],
    "push frames in RESP3": [
        ("s", -1, "HELLO", "3"), ("s", 1, "UNSUBSCRIBE"), ("s", 1, "PUNSUBSCRIBE"), ("s", 1, "SUBSCRIBE", "a"),
        ("s", 1, "PSUBSCRIBE", "*"), ("s", 1, "PING"), ("s", 1, "GET", "k"), ("s", 1, "SET", "k", "v"),
        ("s", 3, "PUBLISH", "a", "to myself"), ("p", 1, "PUBLISH", "a", "m"), ("s", 2), ("s", 1, "GET", "k"),
        ("s", 1, "UNSUBSCRIBE"), ("p", 1, "PUBLISH", "a", "m2"), ("s", 1), ("s", 1, "PUNSUBSCRIBE", "x"),
        ("s", 1, "PUNSUBSCRIBE"), ("s", 1, "PING"),
    ],
    "a subscriber switching protocols": [
        ("s", -1, "HELLO", "3"), ("s", 1, "SUBSCRIBE", "a"), ("s", -1, "HELLO", "2"), ("s", 1, "GET", "k"),
        ("s", 1, "PING"), ("p", 1, "PUBLISH", "a", "m"), ("s", 1), ("s", 1, "UNSUBSCRIBE"), ("s", 1, "PING"),
    ],
    "pipelined requests and messages keep their order": [
        ("s", -1, "HELLO", "3"), ("s", 1, "SUBSCRIBE", "c"),
        ("s", 1, "SET", "k", "1"), ("s", 2, "PUBLISH", "c", "one"), ("s", 1, "INCR", "k"),
    ],
    "subscribing with replies off, and what subscribed mode refuses": [
        ("s", 0, "CLIENT", "REPLY", "OFF"), ("s", 1, "SUBSCRIBE", "a"), ("s", 0, "PING"), ("p", 1, "PUBLISH", "a", "m"),
        ("s", 1), ("s", 1, "UNSUBSCRIBE"), ("s", 1, "CLIENT", "REPLY", "ON"), ("s", 1, "SUBSCRIBE", "b"),
        ("s", 1, "HELLO", "3"), ("s", 1, "SELECT", "1"), ("s", 1, "CLIENT", "REPLY", "OFF"), ("s", 1, "MONITOR"),
        ("s", 1, "PUNSUBSCRIBE", "zz"), ("s", 2, "PSUBSCRIBE", "zz", "zz"), ("s", 1, "SUBSCRIBE", ""),
        ("p", 1, "PUBLISH", "", "empty"), ("s", 1), ("p", 1, "PUBSUB", "NUMSUB", ""), ("p", 1, "PUBLISH", "zz", "\0"),
        ("s", 1), ("s", 1, "PING"),
    ],
    "transactions and subscribed mode": [
        ("c", 1, "EXEC", "x"), ("c", 1, "MULTI"), ("c", 1, "EXEC", "x"), ("c", 1, "EXEC"), ("c", 1, "SUBSCRIBE", "s"),
        ("c", 1, "EXEC"), ("c", 1, "MULTI"), ("c", 1, "UNSUBSCRIBE"), ("c", 1, "MULTI"), ("c", 1, "SUBSCRIBE", "q"),
        # The message to itself sits inside EXEC's array, before PUBLISH's reply, as in Redis: so the array's
        # three items end before SET's +OK, which reads as a fourth reply.
        ("c", 1, "PUBLISH", "q", "to myself"), ("c", 1, "SET", "k", "v"), ("c", 2, "EXEC"), ("c", 1, "EXEC"),
        ("c", 1, "RESET"), ("c", 1, "PUBSUB", "NUMSUB", "q"),
        ("c", 0, "CLIENT", "REPLY", "OFF"), ("c", 0, "MULTI"), ("c", 0, "SET", "k", "v"), ("c", 0, "EXEC"),
        ("c", 1, "CLIENT", "REPLY", "ON"), ("c", 0, "CLIENT", "REPLY", "SKIP"), ("c", 0, "RESET"),
        ("c", 1, "PING", "x"),
        ("c", -1, "HELLO", "3"), ("c", 1, "SUBSCRIBE", "r"), ("c", 1, "CONFIG", "SET", "notify-keyspace-events", "KA"),
        ("c", 1, "PSUBSCRIBE", "__keyspace@0__:*"), ("c", 1, "MULTI"), ("c", 1, "SET", "k", "2"),
        ("c", 1, "PUBLISH", "r", "m"), ("c", 1, "EXEC"), ("c", 1, "RESET"),
        ("c", 1, "PING"), ("c", 1, "CONFIG", "SET", "notify-keyspace-events", ""),
    ],
    "client reply": [
        ("c", 1, "CLIENT", "REPLY"), ("c", 1, "CLIENT", "REPLY", "maybe"), ("c", 1, "CLIENT", "REPLY", "ON"),
        ("c", 0, "CLIENT", "REPLY", "SKIP"), ("c", 0, "SET", "k", "skipped"), ("c", 1, "GET", "k"),
        ("c", 0, "CLIENT", "REPLY", "SKIP"), ("c", 0, "FOO"), ("c", 1, "PING", "after"),
        ("c", 0, "CLIENT", "REPLY", "OFF"), ("c", 0, "PING"), ("c", 0, "CLIENT", "REPLY", "SKIP"), ("c", 0, "GET", "k"),
        ("c", 1, "CLIENT", "REPLY", "ON"), ("c", 1, "PING", "back"),
    ],
    "client kill errors": [
        ("c", 1, "CLIENT", "KILL"), ("c", 1, "CLIENT", "KILL", "ID"), ("c", 1, "CLIENT", "KILL", "ID", "x"),
        ("c", 1, "CLIENT", "KILL", "ID", "0"), ("c", 1, "CLIENT", "KILL", "ID", "-1"),
        ("c", 1, "CLIENT", "KILL", "ID", "99999"), ("c", 1, "CLIENT", "KILL", "1.2.3.4:5"),
        ("c", 1, "CLIENT", "KILL", "ADDR", "1.2.3.4:5"), ("c", 1, "CLIENT", "KILL", "LADDR", "1.2.3.4:5"),
        ("c", 1, "CLIENT", "KILL", "ADDR", "1.2.3.4:5", "SKIPME", "maybe"),
        ("c", 1, "CLIENT", "KILL", "TYPE", "bogus"), ("c", 1, "CLIENT", "KILL", "TYPE", "master"),
        ("c", 1, "CLIENT", "KILL", "TYPE", "pubsub"), ("c", 1, "CLIENT", "KILL", "USER", "bob"),
        ("c", 1, "CLIENT", "KILL", "FOO", "bar"), ("c", 1, "CLIENT", "KILL", "ID", "9", "ID", "x"),
        ("c", 1, "CLIENT", "KILL", "ID", "99999", "SKIPME"),
        ("c", 1, "CLIENT", "KILL", "USER", "default", "ID", "99999"),
        ("c", 1, "CLIENT", "LIST", "TYPE", "pubsub"),
    ],
    "config set": [
        ("c", 1, "CONFIG", "SET"), ("c", 1, "CONFIG", "SET", "a"), ("c", 1, "CONFIG", "SET", "notify-keyspace-events"),
        ("c", 1, "CONFIG", "SET", "notify-keyspace-events", "K", "x"), ("c", 1, "CONFIG", "SET", "nosuch", "1"),
        ("c", 1, "CONFIG", "SET", "notify-keyspace-events", "K", "notify-keyspace-events", "E"),
        ("c", 1, "CONFIG", "SET", "notify-keyspace-events", "K", "client-output-buffer-limit", "foo"),
        ("c", 1, "CONFIG", "GET", "notify-keyspace-events"), ("c", 1, "CONFIG", "SET", "NOTIFY-keyspace-events", "Q"),
        ("c", 1, "CONFIG", "SET", "notify-keyspace-events", "KEAmn"),
        ("c", 1, "CONFIG", "GET", "notify-keyspace-events"),
        ("c", 1, "CONFIG", "SET", "notify-keyspace-events", "g$xnE"),
        ("c", 1, "CONFIG", "GET", "notify-keyspace-events"),
        ("c", 1, "CONFIG", "SET", "notify-keyspace-events", "lshzetdm"), ("c", 1, "CONFIG", "GET", "notify-*"),
        ("c", 1, "CONFIG", "SET", "notify-keyspace-events", ""), ("c", 1, "CONFIG", "GET", "notify-keyspace-events"),
        ("c", 1, "CONFIG", "GET", "client-output-buffer-limit"),
        ("c", 1, "CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb 1mb"),
        ("c", 1, "CONFIG", "SET", "client-output-buffer-limit", "normal 1 2 3 pubsub 4k 5KB 6"),
        ("c", 1, "CONFIG", "GET", "client-output-buffer-limit"),
        ("c", 1, "CONFIG", "SET", "client-output-buffer-limit", "master 1 1 1"),
        ("c", 1, "CONFIG", "SET", "client-output-buffer-limit", "pubsub 1x 1 1"),
        ("c", 1, "CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 1 -1"),
        ("c", 1, "CONFIG", "SET", "client-output-buffer-limit", "replica 1g 2G 3 pubsub 1m 2M 0"),
        ("c", 1, "CONFIG", "GET", "client-output-buffer-limit"),
        ("c", 1, "CONFIG", "SET", "client-output-buffer-limit", ""),
        ("c", 1, "CONFIG", "SET", "client-output-buffer-limit",
         "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"),
        ("c", 1, "CONFIG", "GET", "client-output-buffer-limit"),
    ],
}

# Every event this server's commands send, with both classes of channel and the "n" (new key) events.
EVENTS_SCRIPT = [
    ["SET", "k", "v"], ["SET", "k", "v2"], ["SET", "k", "v", "NX"], ["SET", "k", "v3", "GET"], ["SETNX", "k2", "v"],
    ["SETEX", "k3", "100", "v"], ["PSETEX", "k4", "100000", "v"], ["GETSET", "k", "x"], ["MSET", "a", "1", "b", "2"],
    ["MSETNX", "c", "1", "d", "2"], ["INCR", "n"], ["INCRBY", "n", "5"], ["DECR", "n"], ["DECRBY", "n", "2"],
    ["INCRBYFLOAT", "f", "1.5"], ["APPEND", "k", "z"], ["APPEND", "new", "z"], ["SETRANGE", "k", "1", "qq"],
    ["SETRANGE", "sr", "2", "x"], ["SETRANGE", "k", "1", ""], ["DEL", "a", "b", "zz"], ["UNLINK", "c"],
    ["EXPIRE", "k", "100"], ["PEXPIRE", "k", "100000"], ["EXPIREAT", "k", "4102444800"], ["EXPIRE", "k", "0"],
    ["SET", "k", "v", "EX", "100"], ["SET", "k", "v", "KEEPTTL"], ["PERSIST", "k"], ["PERSIST", "k"],
    ["GETEX", "k", "EX", "50"], ["GETEX", "k", "PERSIST"], ["GETEX", "k", "PERSIST"], ["GETDEL", "d"],
    ["RENAME", "k", "r"], ["RENAMENX", "r", "r2"], ["RENAME", "r2", "r2"], ["SET", "t", "1"], ["RENAME", "t", "r2"],
    ["COPY", "r2", "cp"], ["COPY", "r2", "cp", "REPLACE"], ["COPY", "r2", "cp", "DB", "1"], ["MOVE", "cp", "2"],
    ["SWAPDB", "0", "1"], ["SWAPDB", "0", "1"], ["FLUSHDB"], ["SET", "u", "v"], ["EXPIRE", "u", "-1"],
    ["SET", "u2", "v"], ["PEXPIREAT", "u2", "1"], ["SET", "u3", "v"], ["GETEX", "u3", "EXAT", "1"],
    ["EXPIRE", "nokey", "10"], ["SELECT", "3"], ["SET", "k", "in db 3"], ["DEL", "k"], ["FLUSHALL"],
]


@pytest.fixture
def reset_settings(server, real_redis):
    """Puts notify-keyspace-events and the output limits back to their defaults on both servers afterwards."""
    yield
    for port in (server.port, real_redis.port):
        connection = RawConnection(port)
        connection.call("CONFIG", "SET", "notify-keyspace-events", "")
        connection.call("CONFIG", "SET", "client-output-buffer-limit",
                        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60")
        connection.close()


@pytest.mark.parametrize("name", SCRIPTS)
def test_same_replies_and_messages_as_redis(both, reset_settings, name):
    ours, theirs = both
    replies = [run_script(connection.sock.getpeername()[1], SCRIPTS[name]) for connection in (ours, theirs)]
    for step, our_reply, their_reply in zip(SCRIPTS[name], *replies, strict=True):
        assert our_reply == their_reply, f"{name}: {step}"


def event_messages(port: int, script: list[list[str]], flags: str) -> list[tuple[list[str], bytes, list]]:
    """Run script with notify-keyspace-events set to flags; for each command, its reply and the events it sent."""
    subscriber, writer = RawConnection(port), RawConnection(port)
    try:
        writer.call("CONFIG", "SET", "notify-keyspace-events", flags)
        subscriber.call("PSUBSCRIBE", "__key*__:*")
        subscriber.call("SUBSCRIBE", "end of events")
        results = []
        for args in script:
            reply = writer.call(*args)
            writer.call("PUBLISH", "end of events", "")  # follows every event of the command
            messages = []
            while (message := cli.parse_reply(subscriber.read_reply())[0])[0] != b"message":
                messages.append(message)
            results.append((args, reply, messages))
        return results
    finally:
        writer.call("CONFIG", "SET", "notify-keyspace-events", "")
        subscriber.close()
        writer.close()


@pytest.mark.parametrize("flags", ["KEA", "KEAn", "K$", "Eg", "Kx", "En"])
def test_same_keyspace_events_as_redis(both, reset_settings, flags):
    ours, theirs = both
    our_events = event_messages(ours.sock.getpeername()[1], EVENTS_SCRIPT, flags)
    their_events = event_messages(theirs.sock.getpeername()[1], EVENTS_SCRIPT, flags)
    for ours_step, theirs_step in zip(our_events, their_events, strict=True):
        assert ours_step == theirs_step


def test_set_over_an_expired_key_makes_a_new_key(both, reset_settings):
    events = []
    for connection in both:
        subscriber = RawConnection(connection.sock.getpeername()[1])
        connection.call("CONFIG", "SET", "notify-keyspace-events", "Exn")
        subscriber.call("PSUBSCRIBE", "__keyevent@0__:*")
        subscriber.call("SUBSCRIBE", "end")
        connection.call("SET", "k", "v", "PX", "1")
        time.sleep(0.01)  # expired: deleted by the next look at it, or by active expiry before that
        connection.call("SET", "k", "v2")
        connection.call("PUBLISH", "end", "")
        messages = []
        while (message := cli.parse_reply(subscriber.read_reply())[0])[0] == b"pmessage":
            messages.append(message[2])
        events.append(messages)
        subscriber.close()
    assert events[0] == events[1] == [b"__keyevent@0__:" + event for event in (b"new", b"expired", b"new")]


def test_expired_events_from_lazy_and_active_expiry(r, server):
    r.config_set("notify-keyspace-events", "Ex")
    pubsub = r.pubsub()
    pubsub.subscribe("__keyevent@0__:expired")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    try:
        # Active expiry: nobody reads the key, the background cycle deletes it and says so.
        r.set("active", "v", px=20)
        message = pubsub.get_message(timeout=5)
        assert message == {"type": "message", "pattern": None, "channel": b"__keyevent@0__:expired",
                           "data": b"active"}
        # Lazy expiry: with the cycle off, the GET that finds the key expired deletes it and says so.
        r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        r.set("lazy", "v", px=1)
        time.sleep(0.01)
        assert pubsub.get_message(timeout=0.1) is None  # nothing until someone looks
        assert r.get("lazy") is None
        assert pubsub.get_message(timeout=5)["data"] == b"lazy"
    finally:
        r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")
        r.config_set("notify-keyspace-events", "")
        pubsub.close()


MONITOR_LINE = re.compile(rb"\+\d{10}\.\d{6} \[(\d+) 127\.0\.0\.1:\d+\] (.*)\r\n")


def monitor_lines(port: int, commands: list[list[str]]) -> list[tuple[bytes, bytes]]:
    monitor, other = RawConnection(port), RawConnection(port)
    try:
        assert monitor.call("MONITOR") == b"+OK\r\n"
        for args in commands:
            other.call(*args)
        other.call("ECHO", "the end")
        lines = []
        while not lines or lines[-1][1] != b'"ECHO" "the end"':
            line = monitor.read_reply()
            match = MONITOR_LINE.fullmatch(line)
            assert match, line
            lines.append((match[1], match[2]))
        assert monitor.call("GET", "k") == b"-ERR Replica can't interact with the keyspace\r\n"
        assert monitor.call("PUBLISH", "c", "m") == b"-ERR Replica can't interact with the keyspace\r\n"
        assert monitor.call("PING") == b"+PONG\r\n"
        assert MONITOR_LINE.fullmatch(monitor.read_reply())[2] == b'"PING"'  # its own command, after its reply
        return lines
    finally:
        monitor.close()
        other.close()


MONITORED = [
    ["SET", "k", "v"], ["SET", "q", 'a b"\\\x01\xff\n\t\r\x07\x08 \u00e9'], ["GET", "k"], ["FOO"], ["GET"],
    ["SELECT", "1"], ["GET", "k"], ["INCR", "k"], ["AUTH", "x"], ["AUTH", "a", "b"], ["AUTH", "a", "b", "c"],
    ["ACL", "WHOAMI"], ["MULTI"], ["SET", "in", "multi"], ["GET", "in"], ["EXEC"], ["MULTI"], ["DISCARD"],
    ["HELLO", "3", "AUTH", "default", "pw"], ["HELLO", "2"], ["HELLO", "4", "AUTH", "a", "b"],
    ["HELLO", "3", "SETNAME", "n", "AUTH", "a", "b", "AUTH", "c"], ["HELLO", "3", "FOO", "AUTH", "a", "b"],
    ["HELLO", "2", "AUTH", "default", "x", "SETNAME", "n"], ["CONFIG", "GET", "port"], ["CLIENT", "LIST"],
    ["CLIENT", "KILL", "ID", "99999"], ["CLIENT", "ID"], ["CLIENT", "SETNAME", "x"], ["SAVE"], ["PING"],
    ["SET", "k", "v", "EX", "100"], ["PUBLISH", "c", "m"], ["SUBSCRIBE", "c"], ["GET", "x"], ["UNSUBSCRIBE"],
    ["SELECT", "0"], ["MONITOR"],
]


def test_monitor_shows_what_redis_shows(server, real_redis, tmp_path):
    ours = monitor_lines(server.port, MONITORED)
    theirs = monitor_lines(real_redis.port, MONITORED)
    assert ours == theirs
    assert (b"0", b'"SET" "k" "v"') in ours


def test_reset_ends_monitor_and_subscriptions(server):
    monitor, other = RawConnection(server.port), RawConnection(server.port)
    try:
        monitor.call("MONITOR")
        monitor.call("SUBSCRIBE", "c")  # a monitor may subscribe too
        assert monitor.read_reply().endswith(b'"SUBSCRIBE" "c"\r\n')  # its own command, after the reply
        assert monitor.call("RESET") == b"+RESET\r\n"
        other.call("SET", "k", "v")
        assert other.call("PUBLISH", "c", "m") == b":0\r\n"
        assert monitor.call("PING") == b"+PONG\r\n"  # no monitor line before it, and none after
        other.call("ECHO", "x")
        monitor.sock.settimeout(0.1)
        with pytest.raises((TimeoutError, socket.timeout)):
            monitor.read_reply()
    finally:
        monitor.close()
        other.close()


MONITOR_OWN_LINES = [
    ("c", 1, "MULTI"), ("c", 1, "MONITOR"), ("c", 1, "EXEC"), ("c", 1, "MONITOR"), ("c", 2, "MULTI"),
    ("c", 2, "EXEC"), ("c", 0, "CLIENT", "REPLY", "OFF"), ("c", 0, "PING"), ("c", 0, "CLIENT", "REPLY", "SKIP"),
    ("c", 0, "PING"), ("c", 2, "CLIENT", "REPLY", "ON"), ("c", 1, "CLIENT", "REPLY", "SKIP"), ("c", 0, "PING", "a"),
    ("c", 2, "PING", "b"), ("c", 1, "RESET"), ("c", 1, "PING"),
]


def test_a_monitors_own_lines_follow_its_replies_as_in_redis(server, real_redis):
    # MONITOR inside MULTI is refused at EXEC; a monitor's own command shows after its reply, and both are
    # dropped while its replies are off.
    def masked(replies: list[bytes]) -> list[bytes]:
        return [re.sub(rb"\+\d+\.\d+ \[\d+ [0-9.:]+\]", b"[line]", reply) for reply in replies]

    assert masked(run_script(server.port, MONITOR_OWN_LINES)) == masked(run_script(real_redis.port,
                                                                                    MONITOR_OWN_LINES))


def test_client_kill_by_id_address_and_type(server):
    killer, victim, subscriber = RawConnection(server.port), RawConnection(server.port), RawConnection(server.port)
    try:
        victim_id = int(victim.call("CLIENT", "ID")[1:])
        subscriber.call("SUBSCRIBE", "news")
        assert killer.call("CLIENT", "KILL", "ID", victim_id) == b":1\r\n"
        assert victim.is_closed_by_server()
        # SKIPME yes (the default) spares the caller; TYPE pubsub picks the subscriber.
        assert killer.call("CLIENT", "KILL", "TYPE", "pubsub") == b":1\r\n"
        assert subscriber.is_closed_by_server()
        assert wait_until(lambda: killer.call("PUBSUB", "NUMSUB", "news") == b"*2\r\n$4\r\nnews\r\n:0\r\n")
        # The old form takes ip:port and may kill the caller itself, after the reply.
        address = "{}:{}".format(*killer.sock.getsockname())
        assert killer.call("CLIENT", "KILL", address) == b"+OK\r\n"
        assert killer.is_closed_by_server()
    finally:
        for connection in (killer, victim, subscriber):
            connection.close()


def test_client_kill_skipme_no_kills_the_caller(server):
    connection = RawConnection(server.port)
    address = "{}:{}".format(*connection.sock.getsockname())
    assert connection.call("CLIENT", "KILL", "ADDR", address, "SKIPME", "yes") == b":0\r\n"
    assert connection.call("CLIENT", "KILL", "ADDR", address, "SKIPME", "no") == b":1\r\n"
    assert connection.is_closed_by_server()
    connection.close()


def test_a_disconnected_subscriber_leaves_its_channels(r):
    subscriber = RawConnection(r.connection_pool.connection_kwargs["port"])
    subscriber.call("SUBSCRIBE", "a")
    subscriber.call("PSUBSCRIBE", "p*")
    assert r.pubsub_numsub("a") == [(b"a", 1)] and r.pubsub_numpat() == 1
    subscriber.close()
    assert wait_until(lambda: r.pubsub_numsub("a") == [(b"a", 0)] and r.pubsub_numpat() == 0)
    assert r.pubsub_channels() == []
    assert r.publish("a", "anyone?") == 0


def test_client_list_shows_subscriptions(r2, server):
    subscriber = RawConnection(server.port)
    subscriber.call("SUBSCRIBE", "a", "b")
    subscriber.call("PSUBSCRIBE", "p*")
    try:
        [entry] = r2.client_list(_type="pubsub")
        assert (entry["flags"], entry["sub"], entry["psub"]) == ("P", "2", "1")
    finally:
        subscriber.close()


# --- redis-py -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_pubsub(server, protocol):
    r = redis.Redis(port=server.port, protocol=protocol)
    pubsub = r.pubsub()
    pubsub.subscribe("news")
    pubsub.psubscribe("chat:*")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    assert r.publish("news", "hello") == 1
    assert r.publish("chat:1", "hi") == 1
    assert r.publish("other", "nobody") == 0
    assert pubsub.get_message(timeout=5) == {"type": "message", "pattern": None, "channel": b"news",
                                             "data": b"hello"}
    assert pubsub.get_message(timeout=5) == {"type": "pmessage", "pattern": b"chat:*", "channel": b"chat:1",
                                             "data": b"hi"}
    assert pubsub.get_message(timeout=0.05) is None
    pubsub.ping()  # answered ["pong", ""] in RESP2, +PONG in RESP3: redis-py takes both
    assert pubsub.get_message(timeout=5)["type"] == "pong"
    assert r.pubsub_numsub("news") == [(b"news", 1)]
    pubsub.unsubscribe("news")
    pubsub.punsubscribe()
    assert pubsub.get_message(timeout=5)["type"] == "unsubscribe"
    assert pubsub.get_message(timeout=5)["type"] == "punsubscribe"
    pubsub.close()
    r.close()


def test_redis_py_run_in_thread(server):
    r = redis.Redis(port=server.port)
    received: list[bytes] = []
    pubsub = r.pubsub()
    pubsub.subscribe(**{"events": lambda message: received.append(message["data"])})
    worker = pubsub.run_in_thread(sleep_time=0.01, daemon=True)
    try:
        assert wait_until(lambda: r.pubsub_numsub("events") == [(b"events", 1)])
        for i in range(100):
            r.publish("events", f"event {i}")
        assert wait_until(lambda: len(received) == 100)
        assert received == [f"event {i}".encode() for i in range(100)]
    finally:
        worker.stop()
        worker.join(5)
        r.close()


def test_redis_py_asyncio_pubsub(server):
    async def scenario() -> list[dict]:
        r = redis.asyncio.Redis(port=server.port)
        pubsub = r.pubsub()
        await pubsub.subscribe("news")
        await pubsub.psubscribe("n*")
        messages = []
        await r.publish("news", "async hello")
        while len(messages) < 4:
            message = await pubsub.get_message(timeout=5)
            assert message is not None
            messages.append(message)
        await pubsub.aclose()
        await r.aclose()
        return messages

    messages = asyncio.run(scenario())
    assert [message["type"] for message in messages] == ["subscribe", "psubscribe", "message", "pmessage"]
    assert messages[2]["data"] == messages[3]["data"] == b"async hello"


def test_redis_py_resp3_push_handler(server):
    r = redis.Redis(port=server.port, protocol=3)
    pushed = []
    pubsub = r.pubsub(push_handler_func=pushed.append)
    pubsub.subscribe("news")
    pubsub.get_message(timeout=1)
    r.publish("news", "pushed")

    def handled() -> list:
        pubsub.get_message(timeout=0.01)  # reading the connection is what runs the push handler
        return pushed

    assert wait_until(handled)
    assert pushed[-1] == [b"message", b"news", b"pushed"]
    pubsub.close()
    r.close()


def test_keyspace_notifications_through_redis_py(r):
    r.config_set("notify-keyspace-events", "KEA")
    assert r.config_get("notify-keyspace-events") == {"notify-keyspace-events": "AKE"}
    pubsub = r.pubsub()
    pubsub.psubscribe("__keyspace@0__:user:*")
    pubsub.get_message(timeout=5)
    try:
        r.set("user:1", "Alice")
        r.expire("user:1", 100)
        r.delete("user:1")
        events = [pubsub.get_message(timeout=5) for _ in range(3)]
        assert [(event["channel"], event["data"]) for event in events] == [
            (b"__keyspace@0__:user:1", b"set"), (b"__keyspace@0__:user:1", b"expire"),
            (b"__keyspace@0__:user:1", b"del")]
    finally:
        r.config_set("notify-keyspace-events", "")
        pubsub.close()


# --- A subscriber that does not read --------------------------------------------------


@pytest.mark.parametrize("flags", [(), ("--batch-writes", "no", "--output-pause", "no")])
def test_a_subscriber_that_never_reads_is_disconnected_and_memory_stays_bounded(start_server, flags):
    process = start_server(*flags)
    before = process.memory()
    stuck = socket.create_connection(("127.0.0.1", process.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(cli.encode_request([b"SUBSCRIBE", b"feed"]))
    reader = RawConnection(process.port)
    reader.call("SUBSCRIBE", "feed")
    received = []

    def read_all() -> None:
        reader.sock.settimeout(30)
        while len(received) < count:
            received.append(cli.parse_reply(reader.read_reply())[0][2])

    payload = b"m" * 100_000
    count = 1000  # 100 MB of messages
    thread = threading.Thread(target=read_all, daemon=True)
    thread.start()
    publisher = RawConnection(process.port)
    peak = 0
    with Responsiveness(process.port):
        for i in range(count):
            publisher.call("PUBLISH", "feed", b"%d:" % i + payload[len(b"%d:" % i):])
            if i % 50 == 0:
                peak = max(peak, process.memory())
    thread.join(60)
    assert len(received) == count
    assert [message.split(b":")[0] for message in received] == [b"%d" % i for i in range(count)]
    assert max(peak, process.memory("VmHWM")) - before < 200 * 1024 * 1024
    assert process.memory("VmHWM") < 200 * 1024 * 1024
    assert "scheduled to be closed ASAP for overcoming of output buffer limits." in process.output()
    assert publisher.call("PUBSUB", "NUMSUB", "feed") == b"*2\r\n$4\r\nfeed\r\n:1\r\n"  # only the reader is left
    for connection in (reader, publisher):
        connection.close()
    stuck.close()


def test_a_large_message_to_many_subscribers_is_held_once(start_server):
    process = start_server()
    before = process.memory()
    subscribers = []
    for _ in range(50):
        subscriber = socket.create_connection(("127.0.0.1", process.port))
        subscriber.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        subscriber.sendall(cli.encode_request([b"SUBSCRIBE", b"feed"]))
        subscribers.append(subscriber)
    publisher = RawConnection(process.port)
    assert wait_until(lambda: publisher.call("PUBSUB", "NUMSUB", "feed").endswith(b":50\r\n"))
    for _ in range(20):  # 1 GB of messages waiting, 20 MB for each subscriber: under its limit
        assert publisher.call("PUBLISH", "feed", b"x" * 1_000_000) == b":50\r\n"
    assert process.memory() - before < 200 * 1024 * 1024
    publisher.close()
    for subscriber in subscribers:
        subscriber.close()


def test_the_soft_limit_disconnects_after_its_seconds(start_server):
    process = start_server()
    control = RawConnection(process.port)
    assert control.call("CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 100kb 1") == b"+OK\r\n"
    stuck = socket.create_connection(("127.0.0.1", process.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(cli.encode_request([b"SUBSCRIBE", b"feed"]))
    assert wait_until(lambda: control.call("PUBSUB", "NUMSUB", "feed") == b"*2\r\n$4\r\nfeed\r\n:1\r\n")
    started = time.monotonic()
    # Over the soft limit, the subscriber stays connected for its second, then goes at the next message.
    while control.call("PUBSUB", "NUMSUB", "feed") != b"*2\r\n$4\r\nfeed\r\n:0\r\n":
        control.call("PUBLISH", "feed", "x" * 10_000)
        time.sleep(0.01)
        assert time.monotonic() - started < 10
    assert time.monotonic() - started > 1
    control.close()
    stuck.close()


# --- redis-cli --------------------------------------------------------------------


requires_cli = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-tools is not installed")


@requires_cli
def test_redis_cli_subscribe_prints_messages_as_they_arrive(server):
    pexpect = pytest.importorskip("pexpect")
    session = pexpect.spawn("redis-cli", ["-p", str(server.port), "SUBSCRIBE", "news"], encoding="utf-8",
                            timeout=10, env=dict(os.environ, TERM="dumb"))
    try:
        session.expect_exact("Reading messages... (press Ctrl-C to quit)")
        r = redis.Redis(port=server.port)
        assert wait_until(lambda: r.pubsub_numsub("news") == [(b"news", 1)])
        r.publish("news", "first")
        session.expect_exact('"first"')
        r.publish("news", "second")
        session.expect_exact('"second"')
        r.close()
    finally:
        session.terminate(force=True)


@requires_cli
def test_redis_cli_monitor_shows_another_clients_commands(server):
    pexpect = pytest.importorskip("pexpect")
    session = pexpect.spawn("redis-cli", ["-p", str(server.port), "MONITOR"], encoding="utf-8", timeout=10,
                            env=dict(os.environ, TERM="dumb"))
    try:
        session.expect_exact("OK")
        r = redis.Redis(port=server.port, protocol=2)
        r.set("watched", "value")
        session.expect(r'\d+\.\d+ \[0 127\.0\.0\.1:\d+\] "SET" "watched" "value"')
        r.close()
    finally:
        session.terminate(force=True)


# --- client.py, the small redis-cli --------------------------------------------------


def test_client_py_subscribe_and_monitor_print_what_arrives(server):
    pexpect = pytest.importorskip("pexpect")
    script = str(cli.__file__)
    subscriber = pexpect.spawn(sys.executable, [script, "-p", str(server.port), "SUBSCRIBE", "news"],
                               encoding="utf-8", timeout=10)
    monitor = pexpect.spawn(sys.executable, [script, "-p", str(server.port), "--no-raw", "MONITOR"],
                            encoding="utf-8", timeout=10)
    try:
        subscriber.expect_exact("Reading messages... (press Ctrl-C to quit)")
        monitor.expect_exact("OK")
        r = redis.Redis(port=server.port, protocol=2)
        assert wait_until(lambda: r.pubsub_numsub("news") == [(b"news", 1)])
        r.publish("news", "first")
        subscriber.expect_exact('1) "message"\r\n2) "news"\r\n3) "first"')
        monitor.expect(r'\d+\.\d+ \[0 127\.0\.0\.1:\d+\] "PUBLISH" "news" "first"')
        r.close()
    finally:
        subscriber.terminate(force=True)
        monitor.terminate(force=True)


def test_an_idle_subscriber_is_not_closed_by_timeout(start_server):
    process = start_server("--timeout", "1")
    subscriber, idle = RawConnection(process.port), RawConnection(process.port)
    subscriber.call("SUBSCRIBE", "quiet")
    idle.call("PING")
    idle.sock.settimeout(0.05)
    assert wait_until(idle.is_closed_by_server, timeout=10)  # the plain idle client goes after a second
    publisher = RawConnection(process.port)
    assert publisher.call("PUBLISH", "quiet", "still here?") == b":1\r\n"
    assert cli.parse_reply(subscriber.read_reply())[0] == [b"message", b"quiet", b"still here?"]
    for connection in (subscriber, idle, publisher):
        connection.close()


def test_info_counts_channels_and_patterns(r, server):
    subscriber = RawConnection(server.port)
    subscriber.call("SUBSCRIBE", "a", "b")
    subscriber.call("PSUBSCRIBE", "p*")
    try:
        stats = r.info("stats")
        assert (stats["pubsub_channels"], stats["pubsub_patterns"], stats["pubsubshard_channels"]) == (2, 1, 0)
    finally:
        subscriber.close()


def test_settings_from_the_command_line(start_server, tmp_path):
    process = start_server("--notify-keyspace-events", "KEA", "--client-output-buffer-limit", "pubsub 1mb 512kb 5")
    r = redis.Redis(port=process.port)
    assert r.config_get("notify-keyspace-events") == {"notify-keyspace-events": "AKE"}
    assert r.config_get("client-output-buffer-limit") == {
        "client-output-buffer-limit": "normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 524288 5"}
    r.close()
    result = subprocess.run([sys.executable, str(ROOT / "server.py"), "--notify-keyspace-events", "KQ"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--notify-keyspace-events: Invalid event class character. Use 'Ag$lshzxeKEtmdn'." in result.stderr


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_command_streams_send_the_same_events_as_redis(both, reset_settings, seed):
    """test_against_redis.py's random streams, with every class of keyspace event on: the same events, in order."""
    from test_against_redis import Generator

    generator = Generator(seed)
    commands = [generator.command() for _ in range(500)]
    results = [event_messages(connection.sock.getpeername()[1], commands, "KEAn") for connection in both]
    for ours, theirs in zip(*results, strict=True):
        assert ours[2] == theirs[2], f"seed {seed}: events of {ours[0]!r}"


@pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None,
                    reason="redis-server and redis-benchmark are not installed")
def test_the_pubsub_benchmark_runs():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "pubsub.py"), "-n", "2000", "--rounds", "1",
                             "--subscribers", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["2", "-c", "50"] in [row[:3] for row in rows] and ["2", "-P", "16"] in [row[:3] for row in rows]
    assert "every subscriber received every message" in result.stdout
