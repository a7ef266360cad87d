"""Crash tests: clients write without pause, the server is killed with SIGKILL, and restarted on the same --dir.

Each writer thread owns one connection and sends, one at a time (no pipelining), a SET of a key of its
own and an INCR of a counter it shares with the others, and records exactly what was acknowledged, and
the one command it had sent but not seen answered when the server died (its write in flight). After the
restart:

- with the append-only file on, under every fsync policy, every acknowledged write is there; a counter
  holds at least the highest value an INCR of it was answered with, and at most its acknowledged INCRs
  plus the INCRs of it in flight; no key appears that no client sent. A process crash leaves what the
  server wrote to the file in the kernel's page cache, so `everysec` and `no` keep it too: only a power
  loss would tell the fsync policies apart, and no test here can cut the power.
- with snapshots only (appendonly no, no save rules), the data is exactly what the last SAVE wrote:
  the writes acknowledged after it are gone.

Every test runs against this server and against a real redis-server given the same flags (the `kind`
parameter), which is how the harness itself is checked.
"""

from __future__ import annotations

import collections
import pathlib
import shutil
import socket
import subprocess
import sys
import threading

import pytest
import redis
from conftest import START_TIMEOUT, RawConnection, ServerProcess, free_port, wait_until

WRITERS = 4  # connections writing at once
COUNTERS = 3  # counters shared by all the writers
ACKS_BEFORE_KILL = 300  # acknowledged SETs per writer before the kill: the kill lands mid-load
NO_SAVE_RULES = ["--save", ""]


class RealRedisProcess:
    """A real redis-server on a free loopback port with the given flags, ready once it answers PING."""

    def __init__(self, directory: pathlib.Path, *flags: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
             "--daemonize", "no", "--loglevel", "warning", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # Redis accepts connections while it loads its files and answers -LOADING until it is done.
        assert wait_until(self._answers_ping, timeout=START_TIMEOUT), "redis-server did not start"

    def _answers_ping(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64) == b"+PONG\r\n"
        except OSError:
            return False

    def output(self) -> str:
        return "(redis-server's log is not collected)"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(params=["this", "redis"])
def kind(request) -> str:
    if request.param == "redis" and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    return request.param


@pytest.fixture
def launch(tmp_path):
    """launch(kind, flags): a server of that kind on tmp_path; all of them killed after the test."""
    started = []

    def start(kind: str, flags: list[str]) -> ServerProcess | RealRedisProcess:
        if kind == "this":
            process = ServerProcess(tmp_path, *flags)
            assert process.port, "this server exited before it was ready:\n" + process.output()
        else:
            process = RealRedisProcess(tmp_path, *flags)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


class Writer(threading.Thread):
    """One connection writing SET key:NAME:I and INCR counter:(I % COUNTERS), one command at a time.

    acked_sets: the I of every acknowledged SET; incrs: every acknowledged INCR as (counter, value);
    in_flight: the command sent but not answered when the connection broke. Between two commands the
    writer waits while `running` is clear, and says so in `paused`.
    """

    def __init__(self, port: int, name: str, running: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.name, self.running = port, name, running
        self.acked_sets: list[int] = []
        self.incrs: list[tuple[str, int]] = []
        self.in_flight: tuple[str, str] | None = None
        self.paused = threading.Event()
        self.error: BaseException | None = None  # what ended the writing: the kill, or a wrong reply

    def run(self) -> None:
        connection = RawConnection(self.port)
        try:
            for number in range(sys.maxsize):
                if not self.running.is_set():
                    self.paused.set()
                    self.running.wait()
                    self.paused.clear()
                key = f"key:{self.name}:{number}"
                self.in_flight = ("SET", key)
                reply = connection.call("SET", key, f"value:{self.name}:{number}")
                assert reply == b"+OK\r\n", f"SET answered {reply!r}"
                self.acked_sets.append(number)
                counter = f"counter:{number % COUNTERS}"
                self.in_flight = ("INCR", counter)
                reply = connection.call("INCR", counter)
                assert reply.startswith(b":"), f"INCR answered {reply!r}"
                self.incrs.append((counter, int(reply[1:])))
                self.in_flight = None
        except BaseException as error:  # the server's death ends the writing; the test checks which it was
            self.error = error
        finally:
            connection.close()


def start_writers(port: int, running: threading.Event) -> list[Writer]:
    running.set()
    writers = [Writer(port, str(n), running) for n in range(WRITERS)]
    for writer in writers:
        writer.start()
    return writers


def kill_mid_load(process: ServerProcess | RealRedisProcess, writers: list[Writer], at_least: int) -> None:
    """Wait until every writer has at_least acknowledged SETs, SIGKILL the server, and let the writers stop."""
    assert wait_until(lambda: all(len(writer.acked_sets) >= at_least or writer.error for writer in writers),
                      timeout=30), "the writers did not get going"
    for writer in writers:
        assert writer.error is None, f"writer {writer.name} failed before the kill: {writer.error!r}"
        assert writer.is_alive(), f"writer {writer.name} stopped before the kill"
    process.kill()
    for writer in writers:
        writer.join(10)
        assert not writer.is_alive(), f"writer {writer.name} still writing after the kill"
        # Only the server's death may end a writer: a closed or reset connection, never a wrong reply.
        assert isinstance(writer.error, (ConnectionError, OSError)), f"writer {writer.name}: {writer.error!r}"


def read_everything(port: int) -> dict[bytes, bytes]:
    client = redis.Redis(port=port, protocol=2)
    keys = client.keys("*")
    values = [value for start in range(0, len(keys), 1000) for value in client.mget(keys[start:start + 1000])]
    client.close()
    return dict(zip(keys, values, strict=True))


@pytest.mark.parametrize("fsync_policy", ["always", "everysec", "no"])
def test_aof_keeps_every_acknowledged_write_through_a_kill(kind, fsync_policy, launch):
    flags = ["--appendonly", "yes", "--appendfsync", fsync_policy, *NO_SAVE_RULES]
    process = launch(kind, flags)
    writers = start_writers(process.port, threading.Event())
    kill_mid_load(process, writers, ACKS_BEFORE_KILL)

    restarted = launch(kind, flags)
    data = read_everything(restarted.port)
    sent_keys = set()
    for writer in writers:
        for number in writer.acked_sets:
            key = f"key:{writer.name}:{number}".encode()
            assert data.get(key) == f"value:{writer.name}:{number}".encode(), \
                f"acknowledged {key!r} lost: {restarted.output()}"
            sent_keys.add(key)
        if writer.in_flight and writer.in_flight[0] == "SET":
            sent_keys.add(writer.in_flight[1].encode())  # may or may not have been logged before the kill
    stored_keys = {key for key in data if key.startswith(b"key:")}
    assert stored_keys <= sent_keys, f"keys no client sent: {sorted(stored_keys - sent_keys)[:5]}"

    for counter_number in range(COUNTERS):
        counter = f"counter:{counter_number}"
        answered = [value for writer in writers for name, value in writer.incrs if name == counter]
        in_flight = sum(writer.in_flight == ("INCR", counter) for writer in writers)
        restored = int(data.get(counter.encode(), b"0"))
        # An INCR's reply is the counter after it: the highest answered is a floor, the INCRs sent a ceiling.
        assert max(answered) <= restored <= len(answered) + in_flight, (counter, restored, max(answered),
                                                                         len(answered), in_flight)


def test_snapshot_only_loses_what_came_after_the_last_save(kind, launch):
    flags = ["--appendonly", "no", *NO_SAVE_RULES]
    process = launch(kind, flags)
    running = threading.Event()
    writers = start_writers(process.port, running)
    assert wait_until(lambda: all(len(writer.acked_sets) >= ACKS_BEFORE_KILL for writer in writers), timeout=30)

    # Pause the writers between commands, so that what the SAVE holds is exactly what they were told is done.
    running.clear()
    assert wait_until(lambda: all(writer.paused.is_set() for writer in writers), timeout=10)
    assert all(writer.in_flight is None and writer.error is None for writer in writers)
    saved_keys = {f"key:{writer.name}:{number}".encode(): f"value:{writer.name}:{number}".encode()
                  for writer in writers for number in writer.acked_sets}
    saved_counters = collections.Counter(counter.encode() for writer in writers for counter, _ in writer.incrs)
    connection = RawConnection(process.port)
    assert connection.call("SAVE") == b"+OK\r\n"
    connection.close()
    acks_at_save = min(len(writer.acked_sets) for writer in writers)

    running.set()  # more acknowledged writes, none of them saved
    kill_mid_load(process, writers, acks_at_save + ACKS_BEFORE_KILL)
    assert len(saved_keys) < sum(len(writer.acked_sets) for writer in writers)

    restarted = launch(kind, flags)
    expected = saved_keys | {counter: str(count).encode() for counter, count in saved_counters.items()}
    data = read_everything(restarted.port)
    assert data.keys() == expected.keys(), (f"{len(data)} keys after the restart, {len(expected)} saved: "
                                            f"{restarted.output()}")
    assert data == expected
