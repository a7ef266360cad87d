"""Fuzzing with Hypothesis: random and mutated request streams, cut at random points, thrown at the request
parser and at a running server.

The streams start as well-formed traffic, pipelines of RESP multibulk requests and inline lines, and are
then mutated the way a broken or hostile client would send them: bytes flipped, inserted or deleted, header
counts and lengths replaced by wrong, huge or negative numbers, lone CRs, quotes, backslashes and NULs. Each
stream is fed whole and in pieces cut at random points, as TCP may deliver it.

The parser must never raise (a broken request comes back as a ProtocolError), must give the same commands
and the same error however the stream is cut and with its shortcut on or off, and an error is final: bytes
after it change nothing. The server must answer every complete command, close the connection after a
protocol error, log no traceback, and keep answering PING on another connection.

In the test suite the examples are few and derandomized (the "default" profile), so the file runs in seconds
and a new random example never makes CI flaky. For a long campaign by hand, the "campaign" profile draws fresh
random examples on each run, FUZZ_EXAMPLES per property (default 40,000). Hypothesis keeps a record of every
example it ran (about 8 KB each), so a longer campaign is a loop of such runs; on one core, without the
pytest-timeout limit, the parser properties (about 1,000,000 inputs) and then the server property:

    for run in $(seq 9); do HYPOTHESIS_PROFILE=campaign FUZZ_EXAMPLES=40000 taskset -c 1 python -m pytest \\
        tests/test_fuzz.py -k parser -p no:randomly -o timeout=0 --hypothesis-show-statistics; done
    HYPOTHESIS_PROFILE=campaign FUZZ_EXAMPLES=15000 taskset -c 1 python -m pytest \\
        tests/test_fuzz.py -k server -p no:randomly -o timeout=0 --hypothesis-show-statistics

A failure is shrunk to a minimal example and printed; the campaign keeps it in .hypothesis/ and replays it
first on its next run.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from itertools import pairwise

import pytest
from conftest import RawConnection, ServerProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import client as cli
import server as srv

# 300 examples: Hypothesis starts with small streams and grows them, and the server property needs a few
# hundred to see, for instance, commands and a protocol error arrive in the same read.
settings.register_profile("default", max_examples=300, deadline=None, derandomize=True, database=None,
                          print_blob=True)
settings.register_profile("campaign", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40000")), deadline=None,
                          derandomize=False, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# Streams stay well below PROTO_INLINE_MAX_SIZE. Past it, whether "no line end yet" is "too big" depends on
# where the stream was cut, in Redis too; test_parser.py checks those limits on their own.
MAX_STREAM = 32 * 1024
assert MAX_STREAM < srv.PROTO_INLINE_MAX_SIZE

# --- Well-formed traffic --------------------------------------------------------
#
# Commands the server really has, so that mutations reach argument parsing as well as the protocol; nothing
# that stops or blocks the server on purpose (SHUTDOWN, DEBUG) or writes files (SAVE).

COMMAND_NAMES = [
    b"PING", b"ping", b"ECHO", b"SET", b"GET", b"DEL", b"EXISTS", b"INCR", b"INCRBYFLOAT", b"APPEND", b"MGET",
    b"MSET", b"GETRANGE", b"SETRANGE", b"EXPIRE", b"TTL", b"TYPE", b"HELLO", b"SELECT", b"CLIENT", b"CONFIG",
    b"COMMAND", b"OBJECT", b"SCAN", b"KEYS", b"DBSIZE", b"FLUSHDB", b"QUIT", b"NOSUCHCOMMAND",
]
ARGUMENT_TOKENS = [
    b"k", b"fuzz:a", b"fuzz:b", b"", b"0", b"1", b"-1", b"2", b"3", b"10", b"9223372036854775807", b"1e400",
    b"inf", b"3.5", b"EX", b"PX", b"NX", b"GET", b"KEEPTTL", b"SETNAME", b"GETNAME", b"INFO", b"ENCODING",
    b"MATCH", b"COUNT", b"*", b"[a-", b"\x00\r\n", b"*1", b"$3", b'"', b"'",
]
# The shortcut's table of "$N" headers ends at 4096 bytes. Integers first, so that a failing example
# shrinks to a short payload.
big_payload_sizes = st.one_of(st.integers(0, 9000), st.sampled_from([4095, 4096, 4097]))

arguments = st.one_of(st.sampled_from(ARGUMENT_TOKENS), st.binary(max_size=24))
commands = st.builds(lambda name, args: [name, *args], st.sampled_from(COMMAND_NAMES), st.lists(arguments, max_size=5))
big_commands = big_payload_sizes.map(lambda size: [b"SET", b"fuzz:big", b"v" * size])

# What needs no quoting in an inline request: no whitespace, quotes or NUL, and printable (or non-ASCII).
BARE_WORD = re.compile(rb"[!#-&(-~\x80-\xff]+")
SINGLE_QUOTABLE = re.compile(rb"[ !#-&(-\[\]-~]*")  # printable, but no "'" and no "\"
PLAIN_BYTE = re.compile(rb"[A-Za-z0-9:_.-]")


def double_quoted(word: bytes) -> bytes:
    """A word in double quotes, every byte but the plainest as a \\xHH escape."""
    return b'"' + b"".join(bytes([b]) if PLAIN_BYTE.fullmatch(bytes([b])) else b"\\x%02x" % b for b in word) + b'"'


@st.composite
def inline_word(draw: st.DrawFn, word: bytes) -> bytes:
    styles = ["double"]
    if BARE_WORD.fullmatch(word):
        styles.append("bare")
    if SINGLE_QUOTABLE.fullmatch(word):
        styles.append("single")
    style = draw(st.sampled_from(styles))
    if style == "bare":
        return word
    return b"'" + word + b"'" if style == "single" else double_quoted(word)


request_kinds = st.sampled_from(["multibulk"] * 3 + ["inline"] * 2 + ["big", "empty"])  # mostly with a command
empty_requests = st.sampled_from([b"\r\n", b"\n", b"  \t\r\n", b"*0\r\n", b"*-1\r\n"])
inline_indents = st.sampled_from([b"", b" "])
inline_separators = st.sampled_from([b" ", b"\t", b"   "])
inline_line_ends = st.sampled_from([b"\r\n", b"\n"])


@st.composite
def request(draw: st.DrawFn) -> tuple[bytes, list[list[bytes]]]:
    """One request in one of its encodings, with the commands it stands for (none for an empty request)."""
    kind = draw(request_kinds)
    if kind == "empty":
        return draw(empty_requests), []
    args = draw(big_commands if kind == "big" else commands)
    if kind in ("multibulk", "big"):
        return cli.encode_request(args), [args]
    indent, separator = draw(inline_indents), draw(inline_separators)
    words = [draw(inline_word(arg)) for arg in args]
    return indent + separator.join(words) + draw(inline_line_ends), [args]


@st.composite
def well_formed_streams(draw: st.DrawFn) -> tuple[bytes, list[list[bytes]]]:
    """A pipeline of requests, and the commands it must parse to."""
    requests = draw(st.lists(request(), min_size=1, max_size=8))
    return b"".join(data for data, _ in requests), [args for _, expected in requests for args in expected]


# --- Mutations ----------------------------------------------------------------------

TRICKY_BYTES = [b"\r", b"\n", b"\r\n", b"\x00", b'"', b"'", b"\\", b"\\x", b"*", b"$", b"-", b" ", b"\t", b"\v",
                b"0", b"9", b"\xff", b"*1\r\n", b"$-1\r\n", b"*3\r\n$3\r\nSET\r\n"]
WEIRD_NUMBERS = [b"", b"-", b"-1", b"-2", b"0", b"00", b"01", b"-0", b"+1", b" 1", b"1 ", b"x", b"1x",
                 b"1023", b"1024", b"4096", b"2147483647", b"2147483648", b"536870912", b"536870913",
                 b"9223372036854775807", b"9223372036854775808", b"-9223372036854775809", b"1" * 30]
HEADER_NUMBER = re.compile(rb"[*$](-?[0-9]*)")
inserted_bytes = st.one_of(st.sampled_from(TRICKY_BYTES), st.binary(min_size=1, max_size=8))
weird_numbers = st.sampled_from(WEIRD_NUMBERS)


def flip_byte(draw: st.DrawFn, data: bytes) -> bytes:
    if not data:
        return data
    pos = draw(st.integers(0, len(data) - 1))
    return data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1 :]


def insert_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    pos = draw(st.integers(0, len(data)))
    return data[:pos] + draw(inserted_bytes) + data[pos:]


def delete_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    start = draw(st.integers(0, len(data)))
    return data[:start] + data[draw(st.integers(start, min(start + 16, len(data)))) :]


def truncate(draw: st.DrawFn, data: bytes) -> bytes:
    return data[: draw(st.integers(0, len(data)))]


def repeat_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    start = draw(st.integers(0, len(data)))
    end = draw(st.integers(start, min(start + 64, len(data))))
    return data[:end] + data[start:end] * draw(st.integers(1, 3)) + data[end:]


def renumber_header(draw: st.DrawFn, data: bytes) -> bytes:
    """Give a "*N" or "$N" header a wrong, huge, negative or malformed number."""
    headers = list(HEADER_NUMBER.finditer(data))
    if not headers:
        return data
    header = headers[draw(st.integers(0, len(headers) - 1))]
    old = int(header[1]) if header[1] not in (b"", b"-") else 0
    off_by_a_little = st.integers(-2, 2).map(lambda delta: b"%d" % (old + delta))
    number = draw(st.one_of(weird_numbers, off_by_a_little))
    return data[: header.start(1)] + number + data[header.end(1) :]


mutations = st.sampled_from([flip_byte, insert_bytes, delete_bytes, truncate, repeat_bytes, renumber_header])


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    data, _ = draw(well_formed_streams())
    for _ in range(draw(st.integers(0, 3))):  # none: clean traffic, which reaches the commands themselves
        data = draw(mutations)(draw, data)
    return data[:MAX_STREAM]


random_streams = st.lists(st.one_of(st.sampled_from(TRICKY_BYTES), st.binary(min_size=1, max_size=4)),
                          max_size=40).map(b"".join)
any_streams = st.one_of(mutated_streams(), random_streams)


LINE_BREAK = re.compile(rb"[\r\n]")


@st.composite
def in_pieces(draw: st.DrawFn, stream: bytes) -> list[bytes]:
    """stream cut at random points into pieces of at least one byte. Half the cuts fall within a few bytes of a
    CR or LF: where a header, a payload or its CRLF ends, and a read that ends there leaves the most to get right.
    """
    if not stream:
        return [b""]
    line_breaks = [match.start() for match in LINE_BREAK.finditer(stream)]
    cuts = []
    for _ in range(draw(st.integers(0, 8))):
        if line_breaks and draw(st.booleans()):
            cuts.append(line_breaks[draw(st.integers(0, len(line_breaks) - 1))] + draw(st.integers(-3, 3)))
        else:
            cuts.append(draw(st.integers(1, max(len(stream) - 1, 1))))
    bounds = [0, *sorted({cut for cut in cuts if 0 < cut < len(stream)}), len(stream)]
    return [stream[start:end] for start, end in pairwise(bounds)]


# --- The parser -----------------------------------------------------------------


def parse(pieces: list[bytes], shortcut: bool) -> tuple[list[list[bytes]], str | None, int]:
    """Feed the pieces as a connection does, up to the first protocol error (then the server closes it).

    Returns the commands, the error message if any, and how many bytes wait for the rest of a request.
    """
    parser = (srv.FastRequestParser if shortcut else srv.RequestParser)()
    found = []
    for piece in pieces:
        more, error = parser.feed(piece)
        assert all(args and all(type(arg) is bytes for arg in args) for args in more), more
        found += more
        if error is not None:
            assert isinstance(error, srv.ProtocolError) and str(error).startswith("Protocol error: "), repr(error)
            assert parser.pending_size == 0  # an error ends the stream: nothing is kept for later
            return found, str(error), 0
    return found, None, parser.pending_size


@given(st.data())
def test_parser_well_formed_streams_give_their_commands_however_cut(data):
    stream, expected = data.draw(well_formed_streams())
    pieces = data.draw(in_pieces(stream))
    for shortcut in (True, False):
        assert parse([stream], shortcut) == (expected, None, 0)
        assert parse(pieces, shortcut) == (expected, None, 0)


@given(st.data())
def test_parser_mangled_streams_parse_the_same_however_cut(data):
    stream = data.draw(any_streams)
    pieces = data.draw(in_pieces(stream))
    reference = parse([stream], shortcut=False)
    for shortcut in (True, False):
        assert parse([stream], shortcut) == reference, f"shortcut={shortcut}, whole"
        assert parse(pieces, shortcut) == reference, f"shortcut={shortcut}, in pieces"


@given(any_streams, st.binary(min_size=1, max_size=64))
def test_parser_later_bytes_change_nothing_before_them(stream, more):
    """The commands parsed so far stay as they are whatever comes next; after an error, nothing more counts."""
    found, error, _ = parse([stream], shortcut=False)
    for shortcut in (True, False):
        found_with_more, error_with_more, pending_with_more = parse([stream + more], shortcut)
        if error is not None:
            assert (found_with_more, error_with_more, pending_with_more) == (found, error, 0), f"shortcut={shortcut}"
        else:
            assert found_with_more[: len(found)] == found, f"shortcut={shortcut}"


# --- The server -----------------------------------------------------------------

REPLY_TIMEOUT = 5.0  # a reply or a close slower than this is a hang
PING_TIMEOUT = 1.0
PIECE_PAUSE = 0.001  # between pieces, so that the server mostly reads each piece on its own


@pytest.fixture(scope="module")
def fuzz_servers(tmp_path_factory):
    """One server per parser path; DEBUG off, so that no mutation can make DEBUG SLEEP block everyone."""
    servers = {
        shortcut: ServerProcess(tmp_path_factory.mktemp("fuzz"), "--parser-shortcut", "yes" if shortcut else "no",
                                "--enable-debug-command", "no")
        for shortcut in (True, False)
    }
    yield servers
    for process in servers.values():
        process.kill()


def shortest_prefix(stream: bytes, shortcut: bool, reached: Callable[[list, srv.ProtocolError | None], bool]) -> int:
    """The length of the shortest prefix of stream whose parse (commands, error) satisfies reached.

    Binary search: parsing is monotonic in the prefix, as the parser properties above check.
    """
    low, high = 0, len(stream)
    while low < high:
        middle = (low + high) // 2
        if reached(*(srv.FastRequestParser if shortcut else srv.RequestParser)().feed(stream[:middle])):
            high = middle
        else:
            low = middle + 1
    return low


def expected_exchange(stream: bytes, shortcut: bool) -> tuple[int, int, bool, bytes | None]:
    """What the server must do with stream: (how many bytes of it to send, how many replies come back,
    whether it then closes the connection, and the protocol error reply that comes last, if any).

    Only the bytes up to the end of a QUIT or of a protocol error are sent: the server closes the connection
    there, and bytes arriving after that would make its kernel reset the connection instead.
    """
    found, error = (srv.FastRequestParser if shortcut else srv.RequestParser)().feed(stream)
    quit_at = next((i for i, args in enumerate(found) if args[0].lower() == b"quit"), None)
    if quit_at is not None:
        return shortest_prefix(stream, shortcut, lambda more, _: len(more) > quit_at), quit_at + 1, True, None
    if error is not None:
        sent = shortest_prefix(stream, shortcut, lambda _, prefix_error: prefix_error is not None)
        return sent, len(found) + 1, True, srv.error_reply(f"ERR {error}")
    return len(stream), len(found), False, None


def send_in_pieces(connection: RawConnection, pieces: list[bytes]) -> None:
    for piece in pieces:
        connection.send(piece)
        time.sleep(PIECE_PAUSE)


def assert_still_serving(process: ServerProcess, log_start: int) -> None:
    """Another connection's PING is answered at once, and the server logged no traceback since log_start."""
    started = time.monotonic()
    probe = RawConnection(process.port)
    probe.sock.settimeout(PING_TIMEOUT)
    try:
        assert probe.call("PING") == b"+PONG\r\n"
    finally:
        probe.close()
    assert time.monotonic() - started < PING_TIMEOUT, "PING on another connection was slow"
    log = process.output()[log_start:]
    assert "Traceback" not in log and "internal error" not in log, log


@settings(suppress_health_check=[HealthCheck.too_slow])  # two connections and a few round trips per example
@given(st.data(), st.booleans())
def test_server_survives_mangled_streams(fuzz_servers, data, shortcut):
    process = fuzz_servers[shortcut]
    log_start = len(process.output())
    stream = data.draw(any_streams)
    sent, reply_count, closes, error_reply = expected_exchange(stream, shortcut)
    pieces = data.draw(in_pieces(stream[:sent]))
    connection = RawConnection(process.port)
    connection.sock.settimeout(REPLY_TIMEOUT)
    try:
        send_in_pieces(connection, pieces)
        replies = [connection.read_reply() for _ in range(reply_count)]
        assert not any(reply.startswith(b"-ERR internal error") for reply in replies), replies
        if error_reply is not None:
            assert replies[-1] == error_reply
        if closes:
            assert connection.is_closed_by_server(), "the connection stayed open"
        assert connection.buffer == b"", "more replies than complete commands"
    finally:
        connection.close()
    assert_still_serving(process, log_start)
