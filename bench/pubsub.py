"""Pub/Sub fan-out: python server.py against a real redis-server, PUBLISH to subscribers that read everything.

    python bench/pubsub.py                       # 1, 10 and 50 subscribers, unpipelined and -P 16
    python bench/pubsub.py -n 200000 --subscribers 1 100

For each number of subscribers, each server gets that many subscribers (raw sockets, one
reader thread counting the messages each receives), then redis-benchmark sends
PUBLISH with 50 clients, unpipelined and 16 a pipeline. It reports PUBLISH requests/s,
messages delivered/s (PUBLISH rate times subscribers) and the server's CPU time per
message, medians of interleaved rounds, and checks that every subscriber received every
message. Servers pinned to core 0, redis-benchmark and the reader to core 1, as in vs_redis.py.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vs_redis import CLIENT_CORE, Server, describe_machine, pinned  # noqa: E402

CHANNEL = "bench"
PAYLOAD_BYTES = 32  # redis-benchmark's default -d for the value of a command given on its command line


class Subscribers:
    """count subscribed sockets, and one thread counting the messages each receives (pinned off the server's core)."""

    MARKER = b"$7\r\nmessage\r\n"  # every message carries it once

    def __init__(self, port: int, count: int) -> None:
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        self.received = dict.fromkeys(self.sockets, 0)
        self.tails = dict.fromkeys(self.sockets, b"")  # the last bytes of each read: a marker may be cut in two
        self.selector = selectors.DefaultSelector()
        for sock in self.sockets:
            sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(CHANNEL), CHANNEL.encode()))
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while self.running:
            for key, _ in self.selector.select(0.1):
                sock = key.fileobj
                with contextlib.suppress(BlockingIOError):
                    data = self.tails[sock] + sock.recv(1 << 20)
                    self.received[sock] += data.count(self.MARKER)
                    self.tails[sock] = data[-(len(self.MARKER) - 1):]

    def fewest(self) -> int:
        return min(self.received.values())

    def close(self) -> None:
        self.running = False
        self.thread.join()
        for sock in self.sockets:
            sock.close()


def publish_rate(server: Server, flags: list[str], requests: int) -> tuple[float, float]:
    """PUBLISH requests/s through redis-benchmark, and the server's CPU microseconds per PUBLISH."""
    cpu_before = server.cpu_seconds()
    output = subprocess.run(pinned(CLIENT_CORE, ["redis-benchmark", "-p", str(server.port), "-n", str(requests),
                                                 "-c", "50", "--csv", *flags, "PUBLISH", CHANNEL, "x" * PAYLOAD_BYTES]),
                            capture_output=True, text=True, timeout=600, check=True).stdout
    cpu = server.cpu_seconds() - cpu_before
    row = next(csv.DictReader(io.StringIO(output)))
    return float(row["rps"]), cpu / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=50_000, help="PUBLISH requests per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median taken)")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 10, 50])
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and os.cpu_count() > 1:  # the subscribers' reader beside redis-benchmark
        os.sched_setaffinity(0, {int(CLIENT_CORE)})
    print(describe_machine())
    print(f"PUBLISH of {PAYLOAD_BYTES} bytes by redis-benchmark -c 50; median of {args.rounds} interleaved rounds\n")
    print(f"{'subscribers':<12}{'flags':<10}{'this PUBLISH/s':>15}{'redis PUBLISH/s':>16}{'ratio':>7}"
          f"{'this msgs/s':>13}{'CPU us/msg this/redis':>24}")
    lost_any = False
    with tempfile.TemporaryDirectory() as directory:
        servers = [Server.ours(directory), Server.redis(directory)]
        try:
            for count in args.subscribers:
                subscribers = {server.name: Subscribers(server.port, count) for server in servers}
                for server in servers:  # every subscription is in place before the first PUBLISH
                    while f":{count}\r\n".encode() not in server.call("PUBSUB", "NUMSUB", CHANNEL):
                        time.sleep(0.01)
                for label, flags in (("-c 50", []), ("-P 16", ["-P", "16"])):
                    results: dict[str, list[tuple[float, float]]] = {server.name: [] for server in servers}
                    for _ in range(args.rounds):
                        for server in servers:
                            results[server.name].append(publish_rate(server, flags, args.requests))
                    rate = {name: statistics.median(r for r, _ in runs) for name, runs in results.items()}
                    cpu = {name: statistics.median(c for _, c in runs) / count for name, runs in results.items()}
                    print(f"{count:<12}{label:<10}{rate['this']:>15,.0f}{rate['redis']:>16,.0f}"
                          f"{rate['this'] / rate['redis']:>7.2f}{rate['this'] * count:>13,.0f}"
                          f"{cpu['this']:>12.2f}/{cpu['redis']:.2f}")
                expected = args.requests * args.rounds * 2
                for server in servers:
                    deadline = time.monotonic() + 60
                    while subscribers[server.name].fewest() < expected and time.monotonic() < deadline:
                        time.sleep(0.05)
                    if subscribers[server.name].fewest() < expected:
                        print(f"  {server.name}: messages missing", file=sys.stderr)
                        lost_any = True
                    subscribers[server.name].close()
        finally:
            for server in servers:
                server.stop()
    print("every subscriber received every message" if not lost_any else "messages were lost")
    return 1 if lost_any else 0


if __name__ == "__main__":
    sys.exit(main())
