"""Count the fsyncs behind acknowledged writes: strace a server while clients send SETs one at a time.

    python bench/fsync_proof.py            # 200 SETs per run, every fsync policy, both servers
    python bench/fsync_proof.py -n 1000 --policy always --clients 8

Each server runs under `strace -f -yy -tt -e trace=read,recvfrom,write,...,fsync,fdatasync`, with
--appendonly yes and the --appendfsync policy under test, in a temporary directory on the disk.
Clients (one by default) send N SETs of distinct keys in all, each client over its own connection and
each SET after the reply to its last one (no pipelining). The trace, read in the order strace saw the
calls, shows for every SET whether its reply was written to the client's socket after the SET was
written to the append-only file and an fsync or fdatasync of that file, started after that write, had
returned. (An fsync may run in another thread than the replies: the trace is read across threads.)
Under `always` that must hold for all N replies; with one client that also means at least N fsyncs,
since each SET arrives only after the previous reply went out, while several clients share them.
tests/test_fsync.py asserts it for `always` on both servers; this script prints the counts for all
three policies.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACED_CALLS = "read,recvfrom,write,writev,pwrite64,sendto,sendmsg,fsync,fdatasync"
# "PID HH:MM:SS.micro call(FD<path>..." as strace -f -yy -tt -o FILE writes it; a TCP socket's path is
# TCP:[a:p->b:p], so the path ends at the '>' that is followed by ',' or ')' or ' <unfinished ...>'.
CALL_LINE = re.compile(r"^(?P<pid>\d+) +(?P<time>[\d:.]+) (?P<call>\w+)\((?P<fd>\d+)<(?P<path>.*?)>(?=[,)]| <unf)")
RESUMED_LINE = re.compile(r"^(?P<pid>\d+) +(?P<time>[\d:.]+) <\.\.\. (?P<call>\w+) resumed>")
KEY = "fsync-proof:{:06d}"
KEY_IN_TRACE = re.compile(r"fsync-proof:(\d{6})")
SYNC_CALLS = {"fsync", "fdatasync"}
READ_CALLS = {"read", "recvfrom"}


def strace_unusable() -> str | None:
    """Why strace cannot trace a child process here, or None when it can."""
    if shutil.which("strace") is None:
        return "strace is not installed"
    result = subprocess.run(["strace", "-f", "-e", "trace=none", "-o", os.devnull, "true"],
                            capture_output=True, text=True, timeout=30)
    return None if result.returncode == 0 else f"strace cannot trace here: {result.stderr.strip()}"


def server_command(kind: str, port: int, directory: str, policy: str, *extra: str) -> list[str]:
    aof = ["--appendonly", "yes", "--appendfsync", policy]
    if kind == "this":
        return [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--dir", directory, *aof, *extra]
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory, "--save", "",
            "--daemonize", "no", *aof]


@dataclass
class Proof:
    """What one traced run showed."""

    sets: int  # SETs acknowledged to the client
    seconds: float  # how long the SETs took, under strace
    replies_traced: int  # +OK replies seen written to a TCP socket
    fsyncs: int  # fsync/fdatasync calls on the append-only file while the SETs ran
    replies_after_their_fsync: int  # replies written after their SET was written to the file and fsynced
    excerpt: list[str]  # the trace lines of the first two SETs


def send_sets(port: int, count: int, clients: int = 1) -> None:
    """count SETs of distinct keys from clients connections at once, each SET sent after the reply to the last."""
    senders = [threading.Thread(target=send_sets_of_one_client, args=(port, range(first, count, clients)))
               for first in range(clients)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()


def send_sets_of_one_client(port: int, numbers: range) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for number in numbers:
            key = KEY.format(number).encode()
            sock.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(key), key))
            reply = read_line_reply(sock)
            if reply != b"+OK\r\n":
                raise AssertionError(f"SET answered {reply!r}")


def read_line_reply(sock: socket.socket) -> bytes:
    """A one-line reply (+OK, +PONG, -ERR...), whole: the bytes up to its "\\r\\n"."""
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(64)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        reply += chunk
    return reply


def wait_for_pong(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16) == b"+PONG\r\n":
                    return
        except OSError:
            pass
        time.sleep(0.01)
    raise TimeoutError(f"no PONG from port {port}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def traced_run(kind: str, policy: str, count: int, directory: str, clients: int = 1, *extra: str) -> Proof:
    """Start the server (with extra flags) under strace in directory, send count SETs, stop it, read the trace."""
    port, trace = free_port(), os.path.join(directory, "strace.txt")
    process = subprocess.Popen(["strace", "-f", "-yy", "-tt", "-s", "4096", "-e", f"trace={TRACED_CALLS}",
                                "-o", trace, *server_command(kind, port, directory, policy, *extra)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_pong(port, process)
        started = time.perf_counter()
        send_sets(port, count, clients)
        seconds = time.perf_counter() - started
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"SHUTDOWN NOSAVE\r\n")
            sock.recv(64)  # the connection closes as the server exits
        process.wait(30)  # strace exits with the server, its trace complete
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return read_trace(Path(trace).read_text(errors="replace"), count, seconds)


def read_trace(text: str, count: int, seconds: float) -> Proof:
    """Walk the trace in strace's order: requests read, file writes, fsyncs of the file, replies to the clients."""
    pending_syncs: dict[str, tuple[str, set[int]]] = {}  # pid -> (path, SETs written) of the fsync it runs
    pending_reads: dict[str, str] = {}  # pid -> socket of the read it runs: the data shows when it resumes
    written: set[int] = set()  # SETs written to the append-only file
    synced: set[int] = set()  # ... and fsynced by an fsync that started after that
    awaiting_reply: dict[str, int] = {}  # socket -> the SET read from it and not answered yet
    replies = fsyncs = proven = 0
    excerpt: list[str] = []
    for line in text.splitlines():
        sync, relevant, first_two = None, False, replies < 2
        if match := RESUMED_LINE.match(line):
            if match["call"] in SYNC_CALLS:
                sync = pending_syncs.pop(match["pid"], None)
            elif match["call"] in READ_CALLS and (path := pending_reads.pop(match["pid"], None)):
                if numbers := KEY_IN_TRACE.findall(line):
                    awaiting_reply[path] = int(numbers[-1])
        elif match := CALL_LINE.match(line):
            call, path = match["call"], match["path"]
            if call in SYNC_CALLS:
                if "<unfinished" in line:  # what it covers is what was written before it started
                    pending_syncs[match["pid"]] = (path, set(written))
                else:
                    sync = (path, written)
            elif call in READ_CALLS:
                if path.startswith("TCP:") and "<unfinished" in line:
                    pending_reads[match["pid"]] = path
                elif path.startswith("TCP:") and (numbers := KEY_IN_TRACE.findall(line)):
                    awaiting_reply[path] = int(numbers[-1])
            elif path.endswith(".aof"):
                written.update(int(number) for number in KEY_IN_TRACE.findall(line))
                relevant = True
            elif path.startswith("TCP:") and '"+OK' in line:
                proven += awaiting_reply.pop(path, -1) in synced
                replies += 1
                relevant = True
        if sync is not None and sync[0].endswith(".aof") and sync[1] and replies < count:
            fsyncs += 1
            synced |= sync[1]
            relevant = True
        if relevant and written and first_two:
            excerpt.append(line)
    return Proof(count, seconds, replies, fsyncs, proven, excerpt)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--sets", type=int, default=200, help="SETs per traced run")
    parser.add_argument("--policy", nargs="*", default=["always", "everysec", "no"],
                        choices=["always", "everysec", "no"])
    parser.add_argument("--clients", type=int, default=1, help="connections sending the SETs at once")
    args = parser.parse_args()
    if reason := strace_unusable():
        print(reason, file=sys.stderr)
        return 2
    kinds = [kind for kind, present in (("this", True), ("redis", shutil.which("redis-server")))
             if present]
    print(f"{args.sets} SETs over {args.clients} connection(s), one at a time; --appendonly yes; directory on the disk "
          f"({tempfile.gettempdir()})\n")
    print(f"{'server':<8}{'appendfsync':<13}{'seconds':>8}{'replies':>8}{'AOF fsyncs':>12}"
          f"{'replies after their fsync':>27}")
    excerpts = []
    for kind in kinds:
        for policy in args.policy:
            with tempfile.TemporaryDirectory() as directory:
                proof = traced_run(kind, policy, args.sets, directory, args.clients)
            print(f"{kind:<8}{policy:<13}{proof.seconds:>8.2f}{proof.replies_traced:>8}{proof.fsyncs:>12}"
                  f"{proof.replies_after_their_fsync:>27}", flush=True)
            if policy == "always":
                excerpts.append((kind, proof.excerpt))
    if "this" not in kinds:
        print("this    (no --appendonly yet: not run)")
    for kind, excerpt in excerpts:
        print(f"\n{kind}, always: the trace of the first two SETs")
        print("\n".join("  " + line for line in excerpt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
