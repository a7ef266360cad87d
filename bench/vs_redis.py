"""Side-by-side benchmark: python server.py against a real redis-server, through redis-benchmark.

    python bench/vs_redis.py              # about three minutes
    python bench/vs_redis.py -n 200000    # more requests per test, steadier figures
    /usr/bin/python3 bench/vs_redis.py    # the servers run under the script's interpreter: here Debian's optimised one
    python bench/vs_redis.py --persistence    # only SET with the append-only file off, everysec, always

The servers run pinned to one core and redis-benchmark to another (taskset, where
available), with persistence off in Redis. The tests run interleaved, A B A B, for
--rounds rounds; each figure is the median. For every test it prints requests/s,
p50/p99 latency and server CPU time per request (from /proc/PID/stat) for both
servers, and the ratio this/redis. bench/bare_asyncio.py, the least an asyncio
server can do, joins the same rounds of the one-client and pipelined PING, SET
and GET tests, to show how much of the gap to Redis asyncio itself accounts
for. Then memory per key, snapshot save and load times, and startup time. The
last line is the geometric mean of the throughput ratios this/redis.

--persistence runs only the persistence tradeoff instead: SET at -c 50 -P 16 and
-c 50 against this server and redis-server with the append-only file off, fsynced
every second and fsynced before every reply, their files on the disk.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE, CLIENT_CORE = "0", "1"
TESTS = ["ping_inline", "ping_mbulk", "set", "get", "incr", "mset"]
# (label, redis-benchmark flags, tests, share of -n): unpipelined, pipelined, one client, 1 KiB values.
UNPIPELINED, PIPELINED = "-c 50", "-c 50 -P 16"
CONFIGS = [
    (UNPIPELINED, ["-c", "50"], TESTS, 1.0),
    (PIPELINED, ["-c", "50", "-P", "16"], TESTS, 4.0),
    ("-c 1", ["-c", "1"], ["ping_mbulk", "set", "get"], 0.6),
    ("-c 50 -d 1024", ["-c", "50", "-d", "1024"], ["set", "get"], 1.0),
]
# The tests bench/bare_asyncio.py also runs: the commands it knows, where asyncio's ceiling matters most.
BARE_TESTS, BARE_LABELS = {"ping_mbulk", "set", "get"}, {PIPELINED, "-c 1"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# --persistence: SET with the append-only file off, fsynced every second, fsynced before every reply.
AOF_MODES = [("no AOF", ["--appendonly", "no"]), ("everysec", ["--appendonly", "yes", "--appendfsync", "everysec"]),
             ("always", ["--appendonly", "yes", "--appendfsync", "always"])]
AOF_CONFIGS = [(PIPELINED, ["-c", "50", "-P", "16"], 4.0), (UNPIPELINED, ["-c", "50"], 1.0)]
THIS_NO_SAVE_RULES = ["--save", ""]  # no background saves during a benchmark, as redis-server is started


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if shutil.which("taskset") and os.cpu_count() > 1 else command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_pong(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                if sock.recv(16) == b"+PONG\r\n":
                    return
        except OSError:
            time.sleep(0.002)
    raise TimeoutError(f"no PONG from port {port}")


class Server:
    """A server process under test: ours, redis-server, or the bare asyncio one."""

    def __init__(self, name: str, command: list[str], port: int) -> None:
        self.name, self.port = name, port
        self.process = subprocess.Popen(pinned(SERVER_CORE, command), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for_pong(port)

    @classmethod
    def ours(cls, directory: str, port: int | None = None, flags: list[str] = ()) -> Server:
        port = port or free_port()
        return cls("this", [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--dir", directory,
                            "--loglevel", "warning", *THIS_NO_SAVE_RULES, *flags], port)

    @classmethod
    def redis(cls, directory: str, flags: list[str] = ()) -> Server:
        port = free_port()
        return cls("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", directory, *flags], port)

    @classmethod
    def bare(cls) -> Server:
        port = free_port()
        return cls("bare", [sys.executable, str(ROOT / "bench" / "bare_asyncio.py"), "--port", str(port)], port)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def call(self, *args: str) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args))
            data = b""
            while not data.endswith(b"\r\n") or (data[:1] == b"$" and data.count(b"\r\n") < 2):
                data += sock.recv(1 << 20)
            return data

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def run_benchmark(server: Server, flags: list[str], test: str, requests: int) -> dict[str, float]:
    """One redis-benchmark test: requests/s, p50 and p99 in ms, and server CPU microseconds per request."""
    server.call("FLUSHALL")
    cpu_before = server.cpu_seconds()
    output = subprocess.run(pinned(CLIENT_CORE, ["redis-benchmark", "-p", str(server.port), "-n", str(requests),
                                                 "-t", test, "--csv", *flags]),
                            capture_output=True, text=True, timeout=600, check=True).stdout
    cpu = server.cpu_seconds() - cpu_before
    row = next(csv.DictReader(io.StringIO(output)))
    return {"rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]), "p99": float(row["p99_latency_ms"]),
            "cpu_us": cpu / requests * 1e6}


def throughput(ours: Server, redis: Server, bare: Server, args: argparse.Namespace) -> list[float]:
    print(f"{'test':<28}{'this req/s':>12}{'redis req/s':>13}{'ratio':>7}{'p50 ms':>15}{'p99 ms':>15}"
          f"{'CPU us/req':>15}{'CPU ratio':>10}")
    ratios = []
    rps: dict[tuple[str, str], tuple[float, float]] = {}  # (test, label) -> (this, redis) requests/s
    ceiling = []  # (test name, bare, this, redis requests/s) for the tests the bare server joins
    for label, flags, tests, share in CONFIGS:
        for test in tests:
            if args.only and not any(word.lower() in f"{test} {label}".lower() for word in args.only):
                continue
            servers = (ours, redis, bare) if test in BARE_TESTS and label in BARE_LABELS else (ours, redis)
            results: dict[str, list[dict[str, float]]] = {server.name: [] for server in servers}
            for _ in range(args.rounds):
                for server in servers:  # interleaved: A B A B, or A B C A B C
                    results[server.name].append(run_benchmark(server, flags, test, int(args.requests * share)))
            medians = {name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
                       for name, runs in results.items()}
            this, theirs = medians["this"], medians["redis"]
            ratio = this["rps"] / theirs["rps"]
            ratios.append(ratio)
            rps[test, label] = this["rps"], theirs["rps"]
            if "bare" in medians:
                ceiling.append((f"{test.upper()} {label}", medians["bare"]["rps"], this["rps"], theirs["rps"]))
            # CPU time is counted in clock ticks (10 ms): a very short run may show none at all.
            cpu_ratio = f"{this['cpu_us'] / theirs['cpu_us']:>10.2f}" if theirs["cpu_us"] else f"{'n/a':>10}"
            print(f"{test.upper() + ' ' + label:<28}{this['rps']:>12,.0f}{theirs['rps']:>13,.0f}{ratio:>7.2f}"
                  f"{this['p50']:>7.3f}/{theirs['p50']:<7.3f}{this['p99']:>7.3f}/{theirs['p99']:<7.3f}"
                  f"{this['cpu_us']:>7.2f}/{theirs['cpu_us']:<7.2f}{cpu_ratio}",
                  flush=True)
    gains = [(test, rps[test, PIPELINED], rps[test, UNPIPELINED]) for test in TESTS
             if (test, PIPELINED) in rps and (test, UNPIPELINED) in rps]
    if gains:
        print(f"\nPipelining gain (req/s with {PIPELINED} over {UNPIPELINED}): this / redis")
        print("  " + "   ".join(f"{test.upper()} {piped[0] / plain[0]:.1f}x / {piped[1] / plain[1]:.1f}x"
                                for test, piped, plain in gains))
    if ceiling:
        print("\nasyncio's ceiling: bench/bare_asyncio.py (PING, SET and GET, no checks), in the same rounds")
        print(f"{'test':<28}{'bare req/s':>12}{'bare/redis':>12}{'this/bare':>11}")
        for name, bare_rps, this_rps, redis_rps in ceiling:
            print(f"{name:<28}{bare_rps:>12,.0f}{bare_rps / redis_rps:>12.2f}{this_rps / bare_rps:>11.2f}")
    return ratios


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load_keys(server: Server, count: int, ttl: bool) -> None:
    """SET key:N value:N (PX one hour if ttl) for N < count, pipelined in batches."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        batch = 10_000
        for start in range(0, count, batch):
            commands = []
            for n in range(start, min(start + batch, count)):
                key, value = b"key:%d" % n, b"value:%d" % n
                if ttl:
                    commands.append(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nPX\r\n$7\r\n3600000\r\n"
                                    % (len(key), key, len(value), value))
                else:
                    commands.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                                    % (len(key), key, len(value), value))
            sock.sendall(b"".join(commands))
            expected, received = len(commands) * 5, 0  # "+OK\r\n" each
            while received < expected:
                received += len(sock.recv(1 << 20))


def used_memory(server: Server) -> int:
    info = server.call("INFO", "memory").decode()
    return int(info.split("used_memory:")[1].split("\r\n")[0])


def memory(args: argparse.Namespace) -> None:
    print(f"\nMemory for {args.keys:,} keys (key:N = value:N): bytes per key")
    for ttl in (False, True):
        with tempfile.TemporaryDirectory() as directory:
            ours, redis = Server.ours(directory), Server.redis(directory)
            ours_before, redis_before = rss_bytes(ours.process.pid), used_memory(redis)
            load_keys(ours, args.keys, ttl)
            load_keys(redis, args.keys, ttl)
            ours_per_key = (rss_bytes(ours.process.pid) - ours_before) / args.keys
            redis_per_key = (used_memory(redis) - redis_before) / args.keys
            ours.stop()
            redis.stop()
        label = "with a TTL" if ttl else "no TTL"
        print(f"  {label:<12} this (RSS growth) {ours_per_key:7.1f}   redis (used_memory growth) {redis_per_key:7.1f}"
              f"   ratio {ours_per_key / redis_per_key:.2f}")


def persistence(args: argparse.Namespace) -> None:
    print(f"\nSnapshot of {args.keys:,} keys")
    with tempfile.TemporaryDirectory() as directory:
        ours = Server.ours(directory)
        load_keys(ours, args.keys, ttl=False)
        started = time.perf_counter()
        assert ours.call("SAVE") == b"+OK\r\n"
        save_seconds = time.perf_counter() - started
        ours.stop()
        size = os.path.getsize(os.path.join(directory, "dump.json"))
        started = time.perf_counter()
        port = free_port()
        restarted = Server.ours(directory, port)
        load_seconds = time.perf_counter() - started
        keys = int(restarted.call("DBSIZE")[1:])
        restarted.stop()
    print(f"  save {save_seconds:.2f} s   load (start to first PONG) {load_seconds:.2f} s   {keys:,} keys loaded"
          f"   file {size / 1e6:.1f} MB")
    startups = []
    for _ in range(5):
        with tempfile.TemporaryDirectory() as directory:
            started = time.perf_counter()
            server = Server.ours(directory)
            startups.append(time.perf_counter() - started)
            server.stop()
    print(f"  startup to first PONG, no snapshot: {statistics.median(startups) * 1000:.0f} ms (median of 5)")


def filesystem_of(directory: str) -> str:
    """The type of the filesystem holding directory, from /proc/mounts (the longest mount point above it)."""
    path, best, kind = os.path.realpath(directory), "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount_point, fs_type = line.split()[:3]
            inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, kind = mount_point, fs_type
    except OSError:
        pass
    return kind


def persistence_tradeoff(args: argparse.Namespace) -> None:
    """SET throughput with the AOF off, everysec and always, this server beside redis-server, same flags."""
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        fs_type = filesystem_of(directory)
        print(f"Persistence tradeoff: redis-benchmark -t set; both servers keep their files in {directory} "
              f"({fs_type}{', in memory: fsync costs nothing there' if fs_type == 'tmpfs' else ', on the disk'})")
        servers: dict[tuple[str, str], Server] = {}
        try:
            for mode, flags in AOF_MODES:
                for kind in ("this", "redis"):
                    home = os.path.join(directory, f"{kind}-{mode.replace(' ', '-')}")
                    os.mkdir(home)
                    if kind == "redis":
                        servers[kind, mode] = Server.redis(home, flags)
                    else:
                        servers[kind, mode] = Server.ours(home, flags=flags)
            rps: dict[tuple[str, str, str], float] = {}  # (kind, mode, label) -> median requests/s
            print(f"{'test':<20}{'appendonly':<12}{'this req/s':>12}{'redis req/s':>13}{'this/redis':>12}")
            for label, flags, share in AOF_CONFIGS:
                results: dict[tuple[str, str], list[float]] = {key: [] for key in servers}
                for _ in range(args.rounds):
                    for key, server in servers.items():  # interleaved, every mode and server in each round
                        results[key].append(run_benchmark(server, flags, "set", int(args.requests * share))["rps"])
                for mode, _ in AOF_MODES:
                    for kind in ("this", "redis"):
                        if (kind, mode) in results:
                            rps[kind, mode, label] = statistics.median(results[kind, mode])
                    this, theirs = rps.get(("this", mode, label)), rps["redis", mode, label]
                    print(f"{'SET ' + label:<20}{mode:<12}{f'{this:,.0f}' if this else 'n/a':>12}{theirs:>13,.0f}"
                          f"{f'{this / theirs:.2f}' if this else 'n/a':>12}", flush=True)
        finally:
            for server in servers.values():
                server.stop()

    def ratio(numerator: float | None, denominator: float | None) -> str:
        return f"{numerator / denominator:.2f}" if numerator and denominator else "n/a"

    labels = [label for label, _, _ in AOF_CONFIGS]
    print("\nthis everysec / this no AOF (target >= 0.8): "
          + "   ".join(f"{label} {ratio(rps.get(('this', 'everysec', label)), rps.get(('this', 'no AOF', label)))}"
                       for label in labels))
    print("this always / redis always (target >= 0.8):  "
          + "   ".join(f"{label} {ratio(rps.get(('this', 'always', label)), rps[('redis', 'always', label)])}"
                       for label in labels))
    print("redis everysec / redis no AOF, for scale:    "
          + "   ".join(f"{label} {ratio(rps[('redis', 'everysec', label)], rps[('redis', 'no AOF', label)])}"
                       for label in labels))


def describe_machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    return (f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()} ({sys.executable}); redis-server {redis_version}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=50_000, help="requests per unpipelined test")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per test (median taken)")
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys for the memory and snapshot figures")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "memory", "persistence"])
    parser.add_argument("--only", nargs="*", default=[], metavar="WORD",
                        help='run only the throughput tests whose name contains a word: --only mset "-P 16"')
    parser.add_argument("--persistence", action="store_true",
                        help="run only the persistence tradeoff: SET with appendonly off, everysec and always")
    parser.add_argument("--dir", default=None,
                        help="where --persistence makes its temporary directory (default: the system's, "
                             "which should be on a disk, not tmpfs)")
    args = parser.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (Debian: apt-get install redis-server redis-tools)", file=sys.stderr)
            return 2
    print(describe_machine())
    print(f"servers pinned to core {SERVER_CORE}, redis-benchmark to core {CLIENT_CORE}; "
          f"median of {args.rounds} interleaved rounds\n")
    if args.persistence:
        persistence_tradeoff(args)
        return 0
    ratios = []
    if "throughput" not in args.skip:
        with tempfile.TemporaryDirectory() as directory:
            ours, redis, bare = Server.ours(directory), Server.redis(directory), Server.bare()
            try:
                ratios = throughput(ours, redis, bare, args)
            finally:
                for server in (ours, redis, bare):
                    server.stop()
    if "memory" not in args.skip:
        memory(args)
    if "persistence" not in args.skip:
        persistence(args)
    if ratios:
        print(f"\ngeometric mean ratio this/redis (requests/s): {statistics.geometric_mean(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
