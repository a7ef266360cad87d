"""Unit tests of the streaming RESP request parser and the reply parser, without a server."""

import pytest

from client import BigNumber, Double, ErrorReply, IncompleteReply, RespMap, Status, encode_request, parse_reply
from server import PROTO_INLINE_MAX_SIZE, FastRequestParser, ProtocolError, RequestParser, bulk_array, split_inline_args


def parse_all(data: bytes) -> list[list[bytes]]:
    commands, error = FastRequestParser().feed(data)
    assert error is None
    assert RequestParser().feed(data) == (commands, None)  # the careful parser agrees
    return commands


def parse_in_chunks(data: bytes, size: int) -> list[list[bytes]]:
    """Feed size bytes at a time, as TCP may deliver them; size 1 is the worst case."""
    parser = FastRequestParser()
    commands = []
    for i in range(0, len(data), size):
        more, error = parser.feed(data[i : i + size])
        assert error is None
        commands += more
    return commands


def protocol_error(data: bytes) -> tuple[list[list[bytes]], str]:
    commands, error = FastRequestParser().feed(data)
    assert isinstance(error, ProtocolError), f"expected a protocol error for {data!r}"
    careful_commands, careful_error = RequestParser().feed(data)
    assert (careful_commands, str(careful_error)) == (commands, str(error))
    return commands, str(error)


# Every frame shape, each with the commands it must produce.
FRAMES = [
    (b"*1\r\n$4\r\nPING\r\n", [[b"PING"]]),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n", [[b"SET", b"k", b"value"]]),
    (b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", [[b"ECHO", b""]]),  # empty bulk string
    (b"*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n", [[b"ECHO", b"a\r\nb"]]),  # payload containing CRLF
    (b"*2\r\n$4\r\nECHO\r\n$6\r\n\r\n\r\n\r\n\r\n", [[b"ECHO", b"\r\n\r\n\r\n"]]),  # payload of only CRLFs
    (b"*2\r\n$4\r\nECHO\r\n$3\r\n\x00\xff\n\r\n", [[b"ECHO", b"\x00\xff\n"]]),  # binary payload
    (b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", [[b"PING"]]),  # empty requests are skipped
    (b"PING\r\n", [[b"PING"]]),  # inline
    (b"ping\n", [[b"ping"]]),  # inline with a bare LF
    (b"\r\n\n  \r\nPING\r\n", [[b"PING"]]),  # empty lines are ignored
    (b"SET k 'a b'\r\n", [[b"SET", b"k", b"a b"]]),
    (b'ECHO "x\\ny\\x41\\t"\r\n', [[b"ECHO", b"x\ny\x41\t"]]),
    (b"a\nb\r\nc\n", [[b"a"], [b"b"], [b"c"]]),
    (b"PING\n*1\r\n$4\r\nPING\r\n", [[b"PING"], [b"PING"]]),  # inline, then an array after a bare LF
    # Like Redis, the two bytes after a payload are skipped unseen, whatever they are:
    (b"*1\r\n$2\r\nPING\r\n", [[b"PI"]]),  # "NG" skipped, then "\r\n" is an empty inline line
    (b"*1\r\n$4\r\nPINGxy*1\r\n$4\r\nPING\r\n", [[b"PING"], [b"PING"]]),
    (b"*1\r\n$4\r\nPING\r\r", [[b"PING"]]),
    # pipelining: three commands of different shapes in one read
    (b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\nGET a\r\n*1\r\n$4\r\nPING\r\n",
     [[b"SET", b"a", b"1"], [b"GET", b"a"], [b"PING"]]),
]


@pytest.mark.parametrize(("data", "expected"), FRAMES)
def test_frame_in_one_read(data, expected):
    assert parse_all(data) == expected


@pytest.mark.parametrize(("data", "expected"), FRAMES)
def test_frame_one_byte_at_a_time(data, expected):
    assert parse_in_chunks(data, 1) == expected


@pytest.mark.parametrize(("data", "expected"), FRAMES)
def test_frame_split_at_every_position(data, expected):
    for split in range(1, len(data)):
        parser = FastRequestParser()
        first, error1 = parser.feed(data[:split])
        second, error2 = parser.feed(data[split:])
        assert (error1, error2) == (None, None)
        assert first + second == expected, f"split at {split}"


def test_partial_command_waits_for_the_rest():
    parser = FastRequestParser()
    assert parser.feed(b"*2\r\n$4\r\nECHO\r\n$5\r\nhel") == ([], None)
    assert parser.feed(b"lo") == ([], None)  # payload complete, its CRLF not yet
    assert parser.feed(b"\r\n") == ([[b"ECHO", b"hello"]], None)


def test_large_bulk_string_in_many_chunks():
    payload = bytes(range(256)) * 4096  # 1 MiB with every byte value, CRLFs included
    data = encode_request([b"SET", b"big", payload])
    assert parse_in_chunks(data, 1000) == [[b"SET", b"big", payload]]


def test_many_pipelined_commands():
    data = b"".join(encode_request([b"SET", b"key:%d" % i, b"v" * i]) for i in range(1000))
    assert parse_all(data) == [[b"SET", b"key:%d" % i, b"v" * i] for i in range(1000)]


@pytest.mark.parametrize(("data", "message"), [
    (b"*abc\r\n", "Protocol error: invalid multibulk length"),
    (b"*2147483648\r\n", "Protocol error: invalid multibulk length"),
    (b"*01\r\n", "Protocol error: invalid multibulk length"),
    (b"*1\r\n+PING\r\n", "Protocol error: expected '$', got '+'"),
    (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
    (b"*2\r\n$3\r\nGET\r\n$x\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$536870913\r\n", "Protocol error: invalid bulk length"),  # over proto-max-bulk-len
    (b"*1\r\n$ 4\r\nPING\r\n", "Protocol error: invalid bulk length"),
    (b"*1\rx\n$4\r\nPING\r\n", "Protocol error: expected '$', got '\n'"),  # the 2 bytes after "\r" go unseen
    (b"a\n*1\nb\r\n", "Protocol error: invalid multibulk length"),
    (b'GET "unbalanced\r\n', "Protocol error: unbalanced quotes in request"),
    (b"GET 'unbalanced\r\n", "Protocol error: unbalanced quotes in request"),
    (b'GET "a"b\r\n', "Protocol error: unbalanced quotes in request"),
    (b"x" * (PROTO_INLINE_MAX_SIZE + 1), "Protocol error: too big inline request"),
    (b"*" + b"1" * PROTO_INLINE_MAX_SIZE, "Protocol error: too big mbulk count string"),
    (b"*1\r\n$" + b"1" * PROTO_INLINE_MAX_SIZE, "Protocol error: too big bulk count string"),
])
def test_protocol_errors(data, message):
    assert protocol_error(data)[1] == message


def test_commands_before_a_protocol_error_are_returned():
    commands, message = protocol_error(b"PING\r\n*1\r\n$4\r\nECHO\r\n*x\r\n")
    assert commands == [[b"PING"], [b"ECHO"]]
    assert message == "Protocol error: invalid multibulk length"


def test_incomplete_header_is_not_an_error_yet():
    # Redis judges a header line only once its CRLF has arrived.
    parser = FastRequestParser()
    assert parser.feed(b"*1\r\n+PI") == ([], None)
    assert str(parser.feed(b"NG\r\n")[1]) == "Protocol error: expected '$', got '+'"


@pytest.mark.parametrize(("line", "words"), [
    (b"SET a b", [b"SET", b"a", b"b"]),
    (b"  SET   a\tb  ", [b"SET", b"a", b"b"]),
    (b'SET "a b" c', [b"SET", b"a b", b"c"]),
    (b"SET 'it\\'s' x", [b"SET", b"it's", b"x"]),
    (b"SET 'a\\nb' x", [b"SET", b"a\\nb", b"x"]),  # single quotes keep backslashes
    (b'ECHO "\\x41\\x4a\\xzz"', [b"ECHO", b"AJxzz"]),
    (b'ECHO "\\a\\b\\r\\n\\t\\q"', [b"ECHO", b"\a\b\r\n\tq"]),
    (b'ECHO ""', [b"ECHO", b""]),
    (b'ECHO ab"cd"', [b"ECHO", b"abcd"]),  # a quote inside a word opens a quoted part
    (b"ECHO a\x00b c", [b"ECHO", b"a"]),  # Redis stops at a NUL byte
    (b"ECHO a\vb", [b"ECHO", b"a\vb"]),  # \v separates nothing inside a word
    (b"", []),
])
def test_split_inline_args(line, words):
    assert split_inline_args(line) == words


@pytest.mark.parametrize(("data", "expected"), [
    (b"+OK\r\n", Status(b"OK")),
    (b"-ERR bad\r\n", ErrorReply(b"ERR bad")),
    (b":-42\r\n", -42),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$2\r\n\r\n\r\n", b"\r\n"),
    (b"$-1\r\n", None),
    (b"_\r\n", None),
    (b"*-1\r\n", None),
    (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", [b"a", [1]]),
    (b"%1\r\n$1\r\nk\r\n:1\r\n", RespMap([(b"k", 1)])),
    (b"#t\r\n", True),
    (b",3.5\r\n", Double(b"3.5")),
    (b"(123456789012345678901234\r\n", BigNumber(b"123456789012345678901234")),
    (b"|1\r\n+ttl\r\n:3\r\n:7\r\n", 7),  # attributes are skipped
])
def test_parse_reply(data, expected):
    reply, end = parse_reply(data)
    assert reply == expected and type(reply) is type(expected)
    assert end == len(data)
    for split in range(len(data)):
        with pytest.raises(IncompleteReply):
            parse_reply(data[:split])


def test_payload_made_of_line_breaks_in_many_chunks():
    payload = b"\r\n" * (3 * 1024 * 1024)  # 6 MiB of nothing but "\r\n": no splitting it into lines
    data = encode_request([b"SET", b"k", payload]) + b"PING\r\n"
    assert parse_in_chunks(data, 65536) == [[b"SET", b"k", payload], [b"PING"]]


@pytest.mark.parametrize(("line", "words"), [
    (b'ECHO "say \\"hi\\""', [b"ECHO", b'say "hi"']),
    (b"ECHO 'a\\\\b'", [b"ECHO", b"a\\\\b"]),
    (b'ECHO "\\\\"', [b"ECHO", b"\\"]),
    (b'ECHO "a" "b"', [b"ECHO", b"a", b"b"]),
    (b"ECHO '' x", [b"ECHO", b"", b"x"]),
])
def test_split_inline_args_escapes(line, words):
    assert split_inline_args(line) == words


def test_random_bytes_never_break_the_parser():
    """Fuzz: mangled requests in random pieces give commands or a ProtocolError, never another exception,
    and the shortcut and the careful parser always agree."""
    import random

    rng = random.Random(42)
    alphabet = [b"*", b"$", b"\r", b"\n", b"\r\n", b"0", b"1", b"3", b"-", b"x", b" ", b'"', b"'", b"\\", b"\x00"]
    for _ in range(3000):
        pieces = []
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.5:
                args = [bytes(rng.choices(range(256), k=rng.randint(0, 6))) for _ in range(rng.randint(1, 3))]
                pieces.append(encode_request(args))
            else:
                pieces.append(b"".join(rng.choices(alphabet, k=rng.randint(1, 12))))
        data = b"".join(pieces)
        outcomes = []
        for shortcut in (True, False):
            parser, commands, error = (FastRequestParser if shortcut else RequestParser)(), [], None
            cut = rng.randint(0, len(data))
            for chunk in (data[:cut], data[cut:]):
                more, error = parser.feed(chunk)
                commands += more
                if error is not None:
                    break
            outcomes.append((commands, str(error) if error else None))
        assert outcomes[0] == outcomes[1], data


def test_a_pipeline_taken_whole_keeps_its_own_bytes_for_the_log():
    pipeline = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n"
    parser = FastRequestParser()
    commands, _ = parser.feed(pipeline + b"*2\r\n$3\r\nGET")  # and the start of a third request
    assert commands == [[b"SET", b"k", b"v"], [b"INCR", b"n"]]
    requests, as_received = parser.pipeline_as_received
    assert requests is commands  # the very lists the connection runs
    assert as_received == pipeline == b"".join(map(bulk_array, commands))
    parser.feed(b"\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n")  # it starts by finishing a request: taken carefully
    assert parser.pipeline_as_received is None


@pytest.mark.parametrize("data", [
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",  # one request: not worth it
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n*1\r\n$4\r\nPING\r\n",  # a payload holding "\r\n"
    b"*2\r\n$4\r\nECHO\r\n$5000\r\n" + b"x" * 5000 + b"\r\n*1\r\n$4\r\nPING\r\n",  # past the shortcut's tables
    b"PING\r\nPING\r\n",  # inline commands
])
def test_other_reads_keep_no_bytes_for_the_log(data):
    parser = FastRequestParser()
    commands, error = parser.feed(data)
    assert commands and error is None
    assert parser.pipeline_as_received is None
    plain = RequestParser()
    plain.feed(data + data)
    assert plain.pipeline_as_received is None
