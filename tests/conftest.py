"""Shared fixtures: this server and a real redis-server as subprocesses, and raw socket connections."""

from __future__ import annotations

import os
import pathlib
import queue
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest
import redis

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import client as cli  # noqa: E402  (its reply parser reads what the servers send)

READY_LINE = re.compile(r"ready to accept connections on [^,]+:(\d+)")
START_TIMEOUT = 10.0


class ServerProcess:
    """python server.py --port 0, running in a directory of its own; its log is collected as it runs."""

    def __init__(self, directory: pathlib.Path, *extra_args: str, limits: dict[int, int] | None = None) -> None:
        """limits: resource limits for the server process, such as {resource.RLIMIT_AS: 2**30}."""
        self.directory = directory
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), "--port", "0", "--dir", str(directory), *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=(lambda: [resource.setrlimit(which, (value, value)) for which, value in limits.items()])
            if limits else None,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        self._drain_waiting = False  # the drain thread waits for new output: all it has read is in self.lines
        self._drain_done = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        self.port = self._wait_for_port()

    def _drain(self) -> None:
        """Read the server's output as it comes, so that a busy log never fills the pipe and blocks it."""
        fd, unfinished = self.process.stdout.fileno(), b""
        try:
            while True:
                self._drain_waiting = True
                select.select([fd], [], [])
                self._drain_waiting = False  # before the read: until it is queued, output() must wait
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                *lines, unfinished = (unfinished + chunk).split(b"\n")
                for line in lines:
                    self.lines.put(line.decode(errors="replace") + "\n")
        finally:
            if unfinished:
                self.lines.put(unfinished.decode(errors="replace"))
            self.lines.put(None)
            self._drain_done.set()

    def _caught_up(self) -> bool:
        """Has the drain thread queued everything the server has written so far?"""
        if self._drain_done.is_set():
            return True
        readable, _, _ = select.select([self.process.stdout.fileno()], [], [], 0)
        return self._drain_waiting and not readable

    def _wait_for_port(self) -> int | None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if line is None:
                return None  # exited before it was ready
            self.log.append(line)
            if match := READY_LINE.search(line):
                return int(match[1])
        raise TimeoutError("server did not start:\n" + "".join(self.log))

    def output(self) -> str:
        """Everything the server has logged so far, including all it wrote before its last reply."""
        deadline = time.monotonic() + 5
        while not self._caught_up() and time.monotonic() < deadline:
            time.sleep(0.001)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return "".join(self.log)
            if line is not None:
                self.log.append(line)

    def memory(self, field: str = "VmRSS") -> int:
        """The server process's memory in bytes, from /proc: VmRSS now, or VmHWM, its peak so far."""
        status = pathlib.Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)[1]) * 1024

    def wait(self, timeout: float = 10.0) -> int:
        code = self.process.wait(timeout)
        time.sleep(0)  # let the drain thread see EOF
        return code

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServerProcess:
    """A real redis-server on a free loopback port, with persistence off unless extra_args turn it on."""

    def __init__(self, directory: pathlib.Path, *extra_args: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory), "--daemonize", "no", "--loglevel", "warning", "--enable-debug-command", "local",
             *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class RawConnection:
    """A plain socket to a server: send exact bytes, read exact reply bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_reply(self) -> bytes:
        """The raw bytes of the next complete reply."""
        while True:
            try:
                _, end = cli.parse_reply(self.buffer)
            except cli.IncompleteReply:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"connection closed; unparsed bytes: {self.buffer!r}") from None
                self.buffer += chunk
                continue
            reply, self.buffer = self.buffer[:end], self.buffer[end:]
            return reply

    def call(self, *args: bytes | str | int) -> bytes:
        self.send(cli.encode_request([a if isinstance(a, bytes) else str(a).encode() for a in args]))
        return self.read_reply()

    def is_closed_by_server(self) -> bool:
        """True once the server has closed the connection (after any replies still unread)."""
        try:
            while chunk := self.sock.recv(65536):
                self.buffer += chunk
        except ConnectionResetError:  # closed with our unread bytes still in its buffer
            return True
        except OSError:  # including the socket's timeout: still open
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def wait_until(condition, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll condition() until it is true; the way to wait for expiry without guessing a sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


class Responsiveness:
    """Another client that PINGs the server over its own connection while a test does something hostile.

        with Responsiveness(port) as watcher:
            ...hostile requests...
        # on leaving the block: every PING was answered, none took longer than max_latency seconds

    A frozen server fails the test within a few seconds instead of hanging it.
    """

    def __init__(self, port: int, max_latency: float = 1.0, interval: float = 0.01) -> None:
        self.port, self.max_latency, self.interval = port, max_latency, interval
        self.latencies: list[float] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            connection = RawConnection(self.port)
            connection.sock.settimeout(self.max_latency + 2)
            try:
                while not self._stop.is_set():
                    started = time.monotonic()
                    reply = connection.call("PING")
                    self.latencies.append(time.monotonic() - started)
                    if reply != b"+PONG\r\n":
                        raise AssertionError(f"PING answered {reply!r}")
                    self._stop.wait(self.interval)
            finally:
                connection.close()
        except BaseException as error:  # reported by __exit__, in the test's thread
            self.failure = error

    def __enter__(self) -> Responsiveness:
        self._thread.start()
        deadline = time.monotonic() + self.max_latency + 2
        while not self.latencies and self.failure is None and time.monotonic() < deadline:
            time.sleep(0.001)  # the first PING is answered before the hostile part begins
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(self.max_latency + 5)
        if exc_info[0] is not None:
            return  # the test's own failure comes first
        assert self.failure is None, f"another client's PING failed: {self.failure!r}"
        assert self.latencies, "no PING was answered"
        assert max(self.latencies) < self.max_latency, f"a PING took {max(self.latencies):.2f} s"


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("server"))
    yield process
    process.stop()


@pytest.fixture
def start_server(tmp_path):
    """Start servers of a test's own (for restarts, bad dump files...); all stopped afterwards."""
    started = []

    def start(*extra_args: str, directory: pathlib.Path = tmp_path, limits: dict[int, int] | None = None
              ) -> ServerProcess:
        process = ServerProcess(directory, *extra_args, limits=limits)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def r(server):
    """redis-py with its defaults (RESP3 via HELLO 3), on a flushed server."""
    client = redis.Redis(port=server.port)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def r2(server):
    """redis-py speaking RESP2."""
    client = redis.Redis(port=server.port, protocol=2)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def raw(server):
    connection = RawConnection(server.port)
    connection.call("FLUSHALL")
    yield connection
    connection.close()


requires_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None,
                                            reason="redis-server is not installed")
requires_redis_cli = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")


@pytest.fixture(scope="session")
def real_redis(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    process = RedisServerProcess(tmp_path_factory.mktemp("redis"))
    yield process
    process.stop()


@pytest.fixture
def both(server, real_redis):
    """Raw connections to this server and to real Redis, both flushed: (ours, theirs)."""
    ours, theirs = RawConnection(server.port), RawConnection(real_redis.port)
    for connection in (ours, theirs):
        connection.call("FLUSHALL")
    yield ours, theirs
    ours.close()
    theirs.close()



# Commands whose integer replies are clock readings: two servers answer some ms apart, more on a busy machine.
CLOCK_TOLERANCE = {b"TTL": 1, b"PTTL": 1000, b"EXPIRETIME": 1, b"PEXPIRETIME": 1000}


# Commands that reply with keys in hash table order, which differs between any two servers.
UNORDERED = {b"KEYS"}


def replies_match(args: list, ours: bytes, theirs: bytes) -> bool:
    """Byte-equal replies, except that TTL readings may differ by a clock tick and KEYS may come in any order."""
    if ours == theirs:
        return True
    name = (args[0] if isinstance(args[0], bytes) else str(args[0]).encode()).upper()
    if name in UNORDERED and ours.startswith(b"*") and theirs.startswith(b"*"):
        return sorted(cli.parse_reply(ours)[0]) == sorted(cli.parse_reply(theirs)[0])
    tolerance = CLOCK_TOLERANCE.get(name)
    if tolerance is None or not (ours.startswith(b":") and theirs.startswith(b":")):
        return False
    ours_value, theirs_value = int(ours[1:]), int(theirs[1:])
    return ours_value >= 0 and theirs_value >= 0 and abs(ours_value - theirs_value) <= tolerance


def pytest_addoption(parser):
    parser.addoption("--ops", type=int, default=4000, help="operations per differential run (test_against_redis.py)")
    parser.addoption("--seed", type=int, action="append", default=None,
                     help="seed of a differential run; repeat for several (default: three fixed seeds)")


@dataclass
class Pair:
    """This server and a real redis-server, started with the same flags, each in a folder of its own."""

    ours: RawConnection
    theirs: RawConnection
    ours_dir: pathlib.Path
    theirs_dir: pathlib.Path


@pytest.fixture
def pair(start_server, tmp_path):
    """start(*flags) -> Pair; skipped where redis-server is not installed."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    started = []

    def start(*flags: str) -> Pair:
        ours_dir, theirs_dir = tmp_path / f"ours{len(started)}", tmp_path / f"theirs{len(started)}"
        ours_dir.mkdir()
        theirs_dir.mkdir()
        ours = start_server(*flags, directory=ours_dir)
        theirs = RedisServerProcess(theirs_dir, *flags)
        started.append(theirs)
        return Pair(RawConnection(ours.port), RawConnection(theirs.port), ours_dir, theirs_dir)

    yield start
    for process in started:
        process.process.kill()
        process.process.wait()
