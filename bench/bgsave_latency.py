"""How long another client waits while a server snapshots 1,000,000 keys: SAVE against BGSAVE.

    python bench/bgsave_latency.py                 # both servers, 1,000,000 keys
    python bench/bgsave_latency.py --keys 200000 --servers redis

For each server (this one and a real redis-server, both with no save rules and no AOF, their files in a
temporary directory on the disk): load the keys (SET key:N value:N, pipelined), then let a second
client PING one request at a time, with --interval between PINGs, first at rest, then while the
first client runs a foreground SAVE (which blocks every client until the file is written), then
while it runs a BGSAVE (a forked child writes the file; the first client polls INFO persistence until
rdb_bgsave_in_progress is 0 again). It prints how long each took, how many PINGs were answered
meanwhile, and the slowest and the median PING.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time

from fsync_proof import read_line_reply
from vs_redis import Server, describe_machine, filesystem_of, load_keys

SNAPSHOT_FILE = {"this": "dump.json", "redis": "dump.rdb"}  # each server's default --dbfilename


class PingWatcher:
    """A second client that PINGs over its own connection until stopped, timing every reply."""

    def __init__(self, port: int, interval: float) -> None:
        self.port, self.interval = port, interval
        self.latencies: list[float] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=120) as sock:
                while not self._stop.is_set():
                    started = time.perf_counter()
                    sock.sendall(b"PING\r\n")
                    reply = read_line_reply(sock)
                    self.latencies.append(time.perf_counter() - started)
                    if reply != b"+PONG\r\n":
                        raise AssertionError(f"PING answered {reply!r}")
                    self._stop.wait(self.interval)
        except BaseException as error:  # reported by stop()
            self.failure = error

    def __enter__(self) -> PingWatcher:
        self._thread.start()
        while not self.latencies and self.failure is None:  # the first PONG comes before the save starts
            time.sleep(0.001)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(120)
        if self.failure is not None:
            raise RuntimeError(f"the PING client failed: {self.failure!r}")

    def summary(self) -> str:
        return (f"{len(self.latencies):>7,}{max(self.latencies) * 1000:>17.1f}"
                f"{statistics.median(self.latencies) * 1000:>16.2f}")


def info_field(server: Server, section: str, field: str) -> str | None:
    match = re.search(rf"^{field}:(.*?)\r$", server.call("INFO", section).decode(), re.MULTILINE)
    return match[1] if match else None


def file_identity(path: str) -> tuple[int, int] | None:
    """The file's inode and modification time: a save replaces the file by renaming a new one over it."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns


def measure(server: Server, snapshot: str, args: argparse.Namespace) -> None:
    name = f"{server.name:<8}"
    with PingWatcher(server.port, args.interval) as watcher:
        rest_until = time.perf_counter() + args.rest
        while time.perf_counter() < rest_until:
            time.sleep(0.01)
    print(f"{name}{'at rest':<10}{args.rest:>12.2f}{watcher.summary()}", flush=True)

    with PingWatcher(server.port, args.interval) as watcher:
        started = time.perf_counter()
        reply = server.call("SAVE")
        duration = time.perf_counter() - started
    assert reply == b"+OK\r\n", reply
    print(f"{name}{'SAVE':<10}{duration:>12.2f}{watcher.summary()}", flush=True)

    saved_by_save = file_identity(snapshot)
    info_said_done_early = False
    with PingWatcher(server.port, args.interval) as watcher:
        started = time.perf_counter()
        reply = server.call("BGSAVE")
        answered = time.perf_counter() - started
        if reply.startswith(b"-"):
            print(f"{name}{'BGSAVE':<10}{'n/a':>12}   ({reply.decode().strip()})", flush=True)
            return
        # Done when INFO says so and the new file is in place; the second check keeps INFO honest.
        while (in_progress := info_field(server, "persistence", "rdb_bgsave_in_progress")) != "0" \
                or file_identity(snapshot) == saved_by_save:
            if in_progress is None:
                raise RuntimeError(f"{server.name}: INFO persistence has no rdb_bgsave_in_progress")
            info_said_done_early |= in_progress == "0"
            time.sleep(0.01)
        duration = time.perf_counter() - started
    status = info_field(server, "persistence", "rdb_last_bgsave_status")
    fork_usec = info_field(server, "stats", "latest_fork_usec")
    print(f"{name}{'BGSAVE':<10}{duration:>12.2f}{watcher.summary()}   BGSAVE answered in {answered * 1000:.1f} ms"
          f"{f', fork {int(fork_usec) / 1000:.1f} ms' if fork_usec else ''}, status {status}"
          f"{'; INFO said rdb_bgsave_in_progress:0 before the file was written' if info_said_done_early else ''}",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys loaded before the saves")
    parser.add_argument("--servers", nargs="*", default=["this", "redis"], choices=["this", "redis"])
    parser.add_argument("--interval", type=float, default=0.001, help="seconds between one PONG and the next PING")
    parser.add_argument("--rest", type=float, default=1.0, help="seconds of PINGs at rest, for comparison")
    parser.add_argument("--dir", default=None, help="where the temporary directory goes (default: the system's)")
    args = parser.parse_args()
    if "redis" in args.servers and shutil.which("redis-server") is None:
        print("redis-server is not installed (Debian: apt-get install redis-server)", file=sys.stderr)
        return 2
    print(describe_machine())
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        print(f"{args.keys:,} keys (key:N = value:N); files in {directory} ({filesystem_of(directory)}); "
              f"a second client PINGs, {args.interval * 1000:g} ms between a PONG and the next PING\n")
        print(f"{'server':<8}{'during':<10}{'seconds':>12}{'PINGs':>7}{'slowest PING ms':>17}{'median PING ms':>16}")
        for kind in args.servers:
            server = Server.ours(directory) if kind == "this" else Server.redis(directory)
            try:
                load_keys(server, args.keys, ttl=False)
                measure(server, os.path.join(directory, SNAPSHOT_FILE[kind]), args)
            finally:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
