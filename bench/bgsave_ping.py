"""How long other clients wait while the server saves: the slowest PING during SAVE, and during BGSAVE.

    python bench/bgsave_ping.py                 # 1,000,000 keys, this server and redis-server
    python bench/bgsave_ping.py --keys 200000   # quicker

Each server gets --keys keys (16-byte values), then one client PINGs it
without pause from its own connection while another asks for a SAVE, then
for a BGSAVE. For each it prints how long the save took (until LASTSAVE
changed, for BGSAVE) and the PINGs answered meanwhile: how many, the median
and the slowest. SAVE writes from the event loop, so a PING waits for the whole
save; BGSAVE forks a child (chapter 7), so the parent answers at once, slowed
only by the fork itself. redis-server runs too, where it is installed, for
the same figures from Redis.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Connection:
    """A RESP connection small enough for PING, SET pipelines and integer replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.file = self.sock.makefile("rb")

    def call(self, *args: str) -> bytes:
        self.send([args])
        return self.read()

    def send(self, commands: list[tuple[str, ...]]) -> None:
        out = []
        for args in commands:
            out.append(b"*%d\r\n" % len(args))
            for arg in args:
                data = arg.encode()
                out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))

    def read(self) -> bytes:
        line = self.file.readline()
        if line.startswith(b"$"):
            length = int(line[1:])
            return self.file.read(length + 2)[:-2] if length >= 0 else b""
        return line.rstrip(b"\r\n")


def fill(port: int, keys: int) -> None:
    connection = Connection(port)
    batch = 1000
    for start in range(0, keys, batch):
        connection.send([("SET", f"key:{n:010d}", f"value-{n:010d}") for n in range(start, min(start + batch, keys))])
        for _ in range(min(batch, keys - start)):
            connection.read()


def watch_pings(port: int, stop: threading.Event, latencies: list[float]) -> None:
    connection = Connection(port)
    while not stop.is_set():
        started = time.perf_counter()
        assert connection.call("PING") == b"+PONG"
        latencies.append(time.perf_counter() - started)


def measure(port: int, command: str) -> tuple[float, list[float]]:
    """Run SAVE or BGSAVE while another client PINGs; the save's duration and the PING latencies meanwhile."""
    control = Connection(port)
    before = control.call("LASTSAVE")
    time.sleep(1.1)  # LASTSAVE counts seconds: let it be able to change
    stop, latencies = threading.Event(), []
    watcher = threading.Thread(target=watch_pings, args=(port, stop, latencies))
    watcher.start()
    time.sleep(0.2)
    latencies.clear()  # only those during the save
    started = time.perf_counter()
    reply = control.call(command)
    if command == "BGSAVE":
        assert reply == b"+Background saving started", reply
        while control.call("LASTSAVE") == before:
            time.sleep(0.01)
    elif reply != b"+OK":
        raise RuntimeError(f"SAVE answered {reply!r}")
    elapsed = time.perf_counter() - started
    stop.set()
    watcher.join()
    return elapsed, latencies


def report(name: str, port: int) -> None:
    for command in ("SAVE", "BGSAVE"):
        elapsed, latencies = measure(port, command)
        print(f"{name:14} {command:7} {elapsed:7.2f} s  {len(latencies):7d} PINGs  "
              f"median {statistics.median(latencies) * 1000:7.3f} ms  slowest {max(latencies) * 1000:9.1f} ms",
              flush=True)


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    options = parser.parse_args()
    servers = [("server.py", [sys.executable, str(ROOT / "server.py"), "--save", ""])]
    if shutil.which("redis-server"):
        servers.append(("redis-server", ["redis-server", "--save", "", "--appendonly", "no", "--daemonize", "no"]))
    print(f"{options.keys:,} keys; the slowest PING from another client during each kind of save")
    for name, command in servers:
        port = free_port()
        with tempfile.TemporaryDirectory() as directory:
            process = subprocess.Popen([*command, "--port", str(port), "--dir", directory],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_port(port)
                fill(port, options.keys)
                keys = Connection(port).call("DBSIZE")
                assert re.fullmatch(rb":\d+", keys) and int(keys[1:]) == options.keys, keys
                report(name, port)
            finally:
                process.terminate()
                process.wait(60)


if __name__ == "__main__":
    main()
