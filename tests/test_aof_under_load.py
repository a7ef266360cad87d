"""appendfsync always under load from several clients at once: every reply arrives, nothing acknowledged is lost.

tests/test_fsync.py proves with strace that no reply leaves before the fsync of its write. Here the
replies still all arrive: for writers, for a subscriber whose messages keep coming, for a client whose
pipeline outgrows the output pause, and across CONFIG SET changes of the log's settings; and what was
acknowledged survives a SIGKILL.
"""

from __future__ import annotations

import threading

import pytest
import redis
from conftest import RawConnection, Responsiveness, wait_until

import server as srv

ALWAYS = ("--appendonly", "yes", "--appendfsync", "always", "--save", "")


def write_counters(port: int, name: str, count: int, acknowledged: dict[str, int]) -> None:
    connection = redis.Redis(port=port, socket_timeout=10)
    for _ in range(count):
        acknowledged[name] = connection.incr(name)
    connection.close()


def run_writers(port: int, writers: int, count: int) -> dict[str, int]:
    acknowledged: dict[str, int] = {}
    threads = [threading.Thread(target=write_counters, args=(port, f"counter:{n}", count, acknowledged))
               for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acknowledged


@pytest.mark.parametrize("flags", [(), ("--output-pause", "no", "--batch-writes", "no")])
def test_writers_get_every_reply_and_a_sigkill_loses_none_of_them(start_server, flags):
    process = start_server(*ALWAYS, *flags)
    acknowledged = run_writers(process.port, 8, 300)
    assert acknowledged == {f"counter:{n}": 300 for n in range(8)}
    process.kill()
    restarted = redis.Redis(port=start_server("--appendonly", "yes").port)
    assert {name: int(restarted.get(name)) for name in acknowledged} == acknowledged


def test_a_subscriber_gets_every_notification_while_writes_go_on(start_server):
    process = start_server(*ALWAYS, "--notify-keyspace-events", "K$")
    subscriber = RawConnection(process.port)
    subscriber.send(srv.bulk_array([b"PSUBSCRIBE", b"__keyspace@0__:counter:*"]))
    assert subscriber.read_reply().startswith(b"*3\r\n$10\r\npsubscribe\r\n")
    with Responsiveness(process.port, max_latency=5):
        acknowledged = run_writers(process.port, 4, 500)
    messages = [subscriber.read_reply() for _ in range(sum(acknowledged.values()))]
    assert all(message.startswith(b"*4\r\n$8\r\npmessage\r\n") for message in messages)


def test_a_pipeline_past_the_output_pause_gets_all_its_replies(start_server):
    process = start_server(*ALWAYS)
    client = RawConnection(process.port)
    client.call("SET", "big", "x" * 100_000)
    requests = [srv.bulk_array([b"INCR", b"n"]) + srv.bulk_array([b"GET", b"big"]) for _ in range(100)]
    with Responsiveness(process.port, max_latency=5):
        client.send(b"".join(requests))  # 10 MB of replies: the server pauses the client's requests
        replies = [client.read_reply() for _ in range(200)]
    assert replies[::2] == [b":%d\r\n" % n for n in range(1, 101)]
    assert set(replies[1::2]) == {b"$100000\r\n" + b"x" * 100_000 + b"\r\n"}


def test_changing_the_log_settings_while_replies_wait_loses_none(start_server):
    process = start_server(*ALWAYS)
    admin = redis.Redis(port=process.port)
    stop = threading.Event()

    def change_settings() -> None:
        while not stop.is_set():
            for name, value in (("appendfsync", "everysec"), ("appendfsync", "always"), ("appendonly", "no"),
                                ("appendonly", "yes")):
                admin.config_set(name, value)
            wait_until(lambda: admin.info("persistence")["aof_rewrite_in_progress"] == 0)

    changer = threading.Thread(target=change_settings)
    changer.start()
    try:
        acknowledged = run_writers(process.port, 4, 500)
    finally:
        stop.set()
        changer.join()
    assert acknowledged == {f"counter:{n}": 500 for n in range(4)}
    assert wait_until(lambda: admin.info("persistence")["aof_rewrite_in_progress"] == 0)
    admin.bgrewriteaof()
    assert wait_until(lambda: admin.info("persistence")["aof_rewrite_in_progress"] == 0)
    process.kill()
    restarted = redis.Redis(port=start_server("--appendonly", "yes").port)
    assert {name: int(restarted.get(name)) for name in acknowledged} == acknowledged
