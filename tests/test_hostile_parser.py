"""Requests that arrive slowly or hugely cost work linear in their bytes, and memory of about their size."""

import os
import random
import sys

import pytest
from conftest import RawConnection, Responsiveness

import server
from client import encode_request
from server import FastRequestParser, RequestParser

MB = 1024 * 1024
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far, user and system, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_array_fed_a_byte_at_a_time_has_each_header_parsed_once(monkeypatch):
    # Work linear in the bytes received: whatever the reads, each "*N" and "$N"
    # line is parsed once. A parser that starts the request over on every read
    # parses the first headers again with every byte.
    original, parsed = server.parse_integer, []

    def counting_parse_integer(text: bytes) -> int | None:
        parsed.append(bytes(text))
        return original(text)

    monkeypatch.setattr(server, "parse_integer", counting_parse_integer)
    args = [b"DEL"] + [b"key:%d" % n for n in range(300)] + [b"x" * 5000, b"a\r\nb"]
    data = encode_request(args)
    parser, commands = RequestParser(), []
    for i in range(len(data)):
        more, error = parser.feed(data[i : i + 1])
        assert error is None
        commands += more
    assert commands == [args]
    assert len(parsed) == 1 + len(args)


def test_a_half_parsed_request_counts_all_its_bytes_as_pending():
    # client-query-buffer-limit must see the arguments held for a request that
    # has not ended, not just the unparsed bytes after them.
    parser = RequestParser()
    sent = b"*1000000\r\n" + b"$1\r\na\r\n" * 1000 + b"$5\r\nab"
    for i in range(0, len(sent), 100):
        assert parser.feed(sent[i : i + 100]) == ([], None)
        assert parser.pending_size == min(i + 100, len(sent))


@pytest.mark.parametrize("shortcut", [True, False])
def test_any_split_of_a_stream_gives_the_same_commands(shortcut):
    # Reads may end anywhere (in a header, a payload, the "\r\n" after it) and
    # a half-parsed request carries over many of them: the commands are the same.
    rng = random.Random(7)
    requests = []
    for n in range(300):
        kind = rng.randrange(5)
        if kind == 0:
            requests.append((b"PING %d\r\n" % n, [[b"PING", b"%d" % n]]))  # inline
        elif kind == 1:
            requests.append((b"*0\r\n", []))  # empty: skipped
        else:
            size = rng.choice([0, 1, 5, 100, 5000, 70000])
            args = [b"SET", b"k%d" % n, bytes(rng.choices(b"ab\r\n", k=size))]
            requests.append((encode_request(args), [args]))
    stream = b"".join(data for data, _ in requests)
    expected = [command for _, commands in requests for command in commands]
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 400)))
        parser, commands = (FastRequestParser if shortcut else RequestParser)(), []
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            more, error = parser.feed(stream[start:end])
            assert error is None
            commands += more
        assert commands == expected
        assert parser.pending_size == 0


@linux_only
def test_a_huge_array_sent_an_argument_at_a_time_costs_linear_work(start_server):
    # The attack: "*N", then a million and a half small arguments in
    # many writes, then one more at a time. Each read must cost its own bytes
    # only; re-parsing the whole request per read took the server's CPU and
    # made other clients wait seconds for a PING.
    process = start_server()
    hog, other = RawConnection(process.port), RawConnection(process.port)
    arguments, trickled = 1_500_000, 20
    cpu_before = cpu_seconds(process.process.pid)
    with Responsiveness(process.port):
        hog.send(b"*%d\r\n$3\r\nDEL\r\n" % (1 + arguments + trickled))
        for _ in range(arguments // 1000):
            hog.send(b"$1\r\na\r\n" * 1000)
        for _ in range(trickled):
            hog.send(b"$1\r\nb\r\n")
            # The PONG leaves in the same pass of the event loop that reads the argument, sent before
            # the PING: so each argument arrives in a read of its own, as in the issue.
            assert other.call("PING") == b"+PONG\r\n"
        assert hog.read_reply() == b":0\r\n"  # the request was whole and right: DEL of keys that do not exist
    cpu_used = cpu_seconds(process.process.pid) - cpu_before
    assert cpu_used < 2.5, f"the server used {cpu_used:.1f} s of CPU"  # under 1 s here; re-parsing: over 6 s
    assert hog.call("PING") == b"+PONG\r\n"


@linux_only
def test_a_large_value_costs_about_twice_its_size_at_peak(start_server):
    # SET of a 64 MB value sent in 64 KB writes: the server holds the bytes
    # received, then the value made of them, so its memory peaks at twice the
    # value's size on top of what it used before (it was three times).
    process = start_server()
    size = 64 * MB
    client = RawConnection(process.port)
    assert client.call("PING") == b"+PONG\r\n"
    before = process.memory("VmHWM")
    value = b"v" * size
    client.send(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n" % size)
    for start in range(0, size, 64 * 1024):
        client.send(value[start : start + 64 * 1024])
    client.send(b"\r\n")
    assert client.read_reply() == b"+OK\r\n"
    assert client.call("STRLEN", "big") == b":%d\r\n" % size
    growth = process.memory("VmHWM") - before
    assert growth < 2.5 * size, f"peak memory grew by {growth / size:.2f} times the value"
