"""The same requests sent to this server and to a real redis-server: the reply bytes must be identical.

Skipped where redis-server is not installed; .ci/run installs it, so CI always runs these.
"""

import pytest
from conftest import replies_match

# Each scenario is a list of commands run in order on a flushed database;
# every reply is compared. Commands are lists of arguments (sent as RESP arrays).
SCENARIOS = {
    "ping": [["PING"], ["PING", "hello"], ["PING", ""], ["PING", "a", "b"], ["ping"]],
    "echo": [["ECHO"], ["ECHO", "a", "b"], ["ECHO", "x\r\ny"], ["ECHO", ""]],
    "get": [["GET"], ["GET", "a", "b"], ["GET", "missing"], ["SET", "a", "1"], ["GET", "a"]],
    "set arity and syntax": [
        ["SET", "k"], ["SET", "k", "v", "EX"], ["SET", "k", "v", "EX", "abc"], ["SET", "k", "v", "EX", "1.5"],
        ["SET", "k", "v", "EX", "0"], ["SET", "k", "v", "EX", "-5"], ["SET", "k", "v", "PX", "0"],
        ["SET", "k", "v", "PX", "-1"], ["SET", "k", "v", "EXAT", "0"], ["SET", "k", "v", "EX", "9223372036854775"],
        ["SET", "k", "v", "PX", "9223372036854775807"], ["SET", "k", "v", "EX", "922337203685477"],
        ["SET", "k", "v", "EX", "10", "PX", "100"], ["SET", "k", "v", "NX", "XX"], ["SET", "k", "v", "FOO"],
        ["SET", "k", "v", "KEEPTTL", "EX", "5"], ["SET", "k", "v", "EX", "10", "KEEPTTL"],
        ["SET", "k", "v", "EX", "10", "EX", "20"], ["SET", "k", "v", "nx", "nx"], ["SET", "k", "v", "get", "get"],
        ["SET", "k", "v", "PXAT", "1"], ["EXISTS", "k"],
    ],
    "set nx xx get": [
        ["SET", "k", "1", "NX"], ["SET", "k", "2", "NX"], ["GET", "k"], ["SET", "m", "1", "XX"], ["GET", "m"],
        ["SET", "k", "3", "XX"], ["SET", "k", "4", "GET"], ["SET", "k", "5", "NX", "GET"], ["GET", "k"],
        ["SET", "n", "1", "NX", "GET"], ["SET", "n", "2", "XX", "GET"], ["SET", "q", "1", "XX", "GET"],
    ],
    "set ttl handling": [
        ["SET", "k", "v", "EX", "100"], ["TTL", "k"], ["SET", "k", "v2", "KEEPTTL"], ["TTL", "k"],
        ["SET", "k", "v3"], ["TTL", "k"], ["SET", "k", "v", "PX", "100000"], ["PTTL", "k"],
    ],
    "del and exists": [
        ["DEL"], ["DEL", "nokey"], ["MSET", "a", "1", "b", "2", "c", "3"], ["EXISTS", "a", "a", "x", "b"],
        ["DEL", "a", "b", "x", "a"], ["EXISTS", "a", "b", "c"], ["DBSIZE"],
    ],
    "expire options": [
        ["EXPIRE", "k"], ["SET", "k", "v"], ["EXPIRE", "k", "abc"], ["EXPIRE", "k", "10", "NX", "XX"],
        ["EXPIRE", "k", "10", "NX", "GT"], ["EXPIRE", "k", "10", "GT", "LT"], ["EXPIRE", "k", "10", "FOO"],
        ["EXPIRE", "k", "99999999999999999"], ["EXPIRE", "k", "-9223372036854775808"], ["EXPIRE", "nokey", "10"],
        ["EXPIRE", "k", "10", "GT"], ["EXPIRE", "k", "10", "XX"], ["EXPIRE", "k", "10", "LT"], ["TTL", "k"],
        ["EXPIRE", "k", "30", "NX"], ["EXPIRE", "k", "30", "GT"], ["TTL", "k"], ["EXPIRE", "k", "20", "GT"],
        ["EXPIRE", "k", "20", "LT"], ["TTL", "k"], ["EXPIRE", "k", "100", "lt"], ["EXPIRE", "k", "-1"],
        ["EXISTS", "k"], ["SET", "z", "v"], ["EXPIRE", "z", "0"], ["GET", "z"], ["SET", "p", "v"],
        ["PEXPIRE", "p", "-5"], ["EXISTS", "p"],
    ],
    "expire variants": [
        ["SET", "k", "v"], ["PEXPIRE", "k", "100000"], ["PTTL", "k"], ["EXPIREAT", "k", "4102444800"],
        ["EXPIRETIME", "k"], ["PEXPIRETIME", "k"], ["PEXPIREAT", "k", "4102444800123"], ["PEXPIRETIME", "k"],
        ["EXPIRETIME", "k"], ["PERSIST", "k"], ["PERSIST", "k"], ["TTL", "k"], ["EXPIRETIME", "k"],
        ["EXPIRETIME", "nokey"], ["PERSIST", "nokey"], ["EXPIREAT", "k", "1"], ["EXISTS", "k"],
        ["SET", "k", "v"], ["PEXPIREAT", "k", "9223372036854775807"], ["PEXPIRE", "k", "9223372036854775807"],
        ["EXPIREAT", "k", "9223372036854775"], ["EXPIREAT", "k", "9223372036854776"],
    ],
    "ttl": [["TTL"], ["TTL", "k", "x"], ["PTTL"], ["TTL", "nokey"], ["PTTL", "nokey"], ["SET", "k", "v"],
            ["TTL", "k"], ["PTTL", "k"]],
    "keys glob": [
        ["MSET", "hello", "1", "hallo", "2", "hxllo", "3", "hllo", "4", "heeeello", "5", "h*llo", "6", "h[llo", "7",
         "\\", "8", "h]llo", "9"],
        ["KEYS"], ["KEYS", "*", "x"], ["KEYS", "h?llo"], ["KEYS", "h*llo"], ["KEYS", "h[ae]llo"],
        ["KEYS", "h[^e]llo"], ["KEYS", "h[a-b]llo"], ["KEYS", "h[b-a]llo"], ["KEYS", "["], ["KEYS", "h["],
        ["KEYS", "\\"], ["KEYS", "h\\*llo"], ["KEYS", "h[\\[]llo"], ["KEYS", "h[]llo"], ["KEYS", "h[^]llo"],
        ["KEYS", "h[]]llo"], ["KEYS", "h[a"], ["KEYS", "h[^a"], ["KEYS", "*[*"], ["KEYS", "??"], ["KEYS", "h*l*"],
    ],
    "unknown command": [["FOOBAR"], ["FOOBAR", "a", "b"], ["foobar", *[f"x{i}" for i in range(30)]],
                        ["foobar", "y" * 200], ["FOO", "a\x00b"]],
    "select and databases": [
        ["SELECT", "abc"], ["SELECT", "2147483648"], ["SELECT", "-2147483649"], ["SELECT", "99999999999999999999"],
        ["SELECT", "99"], ["SELECT", "-1"], ["SET", "k", "0"], ["SELECT", "1"], ["GET", "k"],
        ["SET", "k", "1"], ["DBSIZE"], ["SELECT", "0"], ["GET", "k"], ["FLUSHDB", "x"], ["FLUSHDB", "ASYNC", "x"],
        ["FLUSHDB", "sync"], ["DBSIZE"], ["SELECT", "1"], ["DBSIZE"], ["FLUSHALL", "ASYNC"], ["DBSIZE"],
    ],
    "type": [["TYPE"], ["TYPE", "k"], ["SET", "k", "v"], ["TYPE", "k"]],
    "client": [["CLIENT"], ["CLIENT", "SETNAME", "my name"], ["CLIENT", "SETNAME", "ok-name"],
               ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME"], ["CLIENT", "FOO"], ["CLIENT", "getname", "x"],
               ["CLIENT", "LIST", "foo"], ["CLIENT", "LIST", "TYPE"], ["CLIENT", "LIST", "TYPE", "bogus"],
               ["CLIENT", "LIST", "type", "PUBSUB"], ["CLIENT", "LIST", "ID"], ["CLIENT", "LIST", "ID", "x"],
               ["CLIENT", "LIST", "ID", "0", "99999"]],
    "hello errors": [["HELLO", "4"], ["HELLO", "3", "X"], ["HELLO", "abc"]],
    "config": [["CONFIG"], ["CONFIG", "GET"], ["CONFIG", "FOO"], ["CONFIG", "GET", "appendonly"],
               ["CONFIG", "GET", "databases"], ["CONFIG", "GET", "nonexistent*"]],
    "quit": [["QUIT"]],
    # The string family (issue 3)
    "setnx setex psetex": [
        ["SETNX", "k", "1"], ["SETNX", "k", "2"], ["GET", "k"], ["SETEX", "k", "100", "v"], ["TTL", "k"],
        ["SETEX", "k", "0", "v"], ["SETEX", "k", "abc", "v"], ["PSETEX", "k", "100000", "w"], ["PTTL", "k"],
        ["PSETEX", "k", "-1", "w"], ["SETEX", "k", "10"], ["GET", "k"],
    ],
    "getset getdel getex": [
        ["GETSET", "k", "1"], ["GETSET", "k", "2"], ["GETDEL", "k"], ["GETDEL", "k"], ["SET", "k", "v", "EX", "100"],
        ["GETSET", "k", "w"], ["TTL", "k"], ["GETEX", "k", "EX", "100"], ["TTL", "k"], ["GETEX", "k", "PERSIST"],
        ["TTL", "k"], ["GETEX", "k", "PX", "100000"], ["PTTL", "k"], ["GETEX", "k", "EX", "0"],
        ["GETEX", "k", "EX", "10", "PX", "10"], ["GETEX", "k", "PERSIST", "EX", "10"], ["GETEX", "k", "KEEPTTL"],
        ["GETEX", "k", "NX"], ["GETEX", "k", "EXAT", "1"], ["EXISTS", "k"], ["GETEX", "nokey", "EX", "10"],
        ["GETEX", "nokey", "EX", "abc"], ["SET", "k", "v"], ["GETEX", "k", "EX", "abc"], ["GETEX", "k"],
    ],
    "mget mset msetnx": [
        ["MSET", "a"], ["MSET", "a", "1", "b"], ["MSET", "a", "1", "b", "2"], ["MGET", "a", "x", "b"],
        ["MSETNX", "a", "9", "c", "3"], ["MSETNX", "c", "3", "d", "4"], ["MGET", "a", "c", "d"], ["MSETNX", "e"],
        ["MSETNX", "c", "5", "c", "6"], ["GET", "c"],
    ],
    "incr decr": [
        ["INCR", "n"], ["INCRBY", "n", "10"], ["DECR", "n"], ["DECRBY", "n", "5"], ["INCRBY", "n", "abc"],
        ["SET", "s", "abc"], ["INCR", "s"], ["SET", "s", " 1"], ["INCR", "s"], ["SET", "s", "01"], ["INCR", "s"],
        ["SET", "n", "9223372036854775806"], ["INCR", "n"], ["INCR", "n"], ["SET", "n", "-9223372036854775807"],
        ["DECR", "n"], ["DECR", "n"], ["DECRBY", "n", "-9223372036854775808"], ["INCRBY", "n", "9223372036854775808"],
        ["SET", "e", "v", "EX", "100"], ["INCR", "e"], ["SET", "e", "5", "EX", "100"], ["INCR", "e"], ["TTL", "e"],
        ["SET", "big", "99999999999999999999"], ["INCR", "big"], ["SET", "neg0", "-0"], ["INCR", "neg0"],
    ],
    "incrbyfloat": [
        ["INCRBYFLOAT", "f", "0.1"], ["INCRBYFLOAT", "f", "0.2"], ["INCRBYFLOAT", "f", "1e3"],
        ["INCRBYFLOAT", "f", "-1000.3"], ["INCRBYFLOAT", "f", "abc"], ["INCRBYFLOAT", "f", "inf"],
        ["INCRBYFLOAT", "f", "nan"], ["INCRBYFLOAT", "f", "1e400"], ["INCRBYFLOAT", "g", "1e308"],
        ["INCRBYFLOAT", "g", "1e308"], ["INCRBYFLOAT", "h", "5.0e3"], ["INCRBYFLOAT", "h", "0x10"],
        ["INCRBYFLOAT", "h", " 1"], ["INCRBYFLOAT", "h", "1 "], ["INCRBYFLOAT", "h", "+1.5"],
        ["INCRBYFLOAT", "h", ".5"],
        ["INCRBYFLOAT", "h", "5."], ["INCRBYFLOAT", "i", "3.0"], ["INCRBYFLOAT", "i", "-3"],
        ["INCRBYFLOAT", "j", "1.23456789012345678901"], ["INCRBYFLOAT", "k", "1e-20"], ["INCRBYFLOAT", "l", "-1e-5"],
        ["SET", "m", "inf"], ["INCRBYFLOAT", "m", "1"], ["SET", "m", "1e-5000"], ["INCRBYFLOAT", "m", "1"],
        ["INCRBYFLOAT", "n", "1e4000"], ["INCRBYFLOAT", "o", "123456789.987654321"],
        ["INCRBYFLOAT", "p", "0.1"], ["INCRBYFLOAT", "p", "-0.1"], ["INCRBYFLOAT", "q", "-0"],
        ["SET", "t", "1", "EX", "100"], ["INCRBYFLOAT", "t", "1"], ["TTL", "t"],
    ],
    "append strlen": [
        ["APPEND", "k", "hello"], ["APPEND", "k", " world"], ["GET", "k"], ["STRLEN", "k"], ["STRLEN", "nokey"],
        ["SET", "t", "a", "EX", "100"], ["APPEND", "t", "b"], ["TTL", "t"], ["APPEND", "e", ""], ["EXISTS", "e"],
    ],
    "getrange": [
        ["SET", "k", "This is a string"], ["GETRANGE", "k", "0", "3"], ["GETRANGE", "k", "-3", "-1"],
        ["GETRANGE", "k", "0", "-1"], ["GETRANGE", "k", "10", "100"], ["GETRANGE", "k", "5", "3"],
        ["GETRANGE", "k", "-1", "-5"], ["GETRANGE", "k", "-100", "-50"], ["GETRANGE", "k", "-100", "2"],
        ["GETRANGE", "k", "100", "200"], ["GETRANGE", "nokey", "0", "1"], ["GETRANGE", "k", "a", "1"],
        ["SUBSTR", "k", "0", "3"], ["SET", "e", ""], ["GETRANGE", "e", "0", "-1"], ["GETRANGE", "e", "-1", "0"],
    ],
    "setrange": [
        ["SETRANGE", "k", "5", "hi"], ["GET", "k"], ["SETRANGE", "k", "0", "abc"], ["GET", "k"],
        ["SETRANGE", "k", "-1", "x"], ["SETRANGE", "k", "1", ""], ["SETRANGE", "n", "10", ""], ["EXISTS", "n"],
        ["SETRANGE", "k", "536870911", ""], ["SETRANGE", "k", "536870912", "x"], ["SETRANGE", "k", "abc", "x"],
        ["SET", "t", "aaa", "EX", "100"], ["SETRANGE", "t", "1", "b"], ["TTL", "t"], ["GET", "t"],
    ],
    "rename": [
        ["RENAME", "a", "b"], ["SET", "a", "1", "EX", "100"], ["RENAME", "a", "b"], ["TTL", "b"], ["EXISTS", "a"],
        ["RENAME", "b", "b"], ["RENAMENX", "b", "b"], ["SET", "c", "3"], ["RENAMENX", "b", "c"],
        ["RENAMENX", "b", "d"], ["GET", "d"], ["TTL", "d"], ["RENAME", "d", "c"], ["GET", "c"], ["TTL", "c"],
        ["RENAMENX", "nokey", "x"],
    ],
    "copy move": [
        ["SET", "a", "1", "EX", "100"], ["COPY", "a", "b"], ["TTL", "b"], ["COPY", "a", "b"],
        ["COPY", "a", "b", "REPLACE"], ["COPY", "a", "a"], ["COPY", "a", "b", "DB", "1"], ["COPY", "a", "a", "DB", "0"],
        ["COPY", "a", "x", "DB", "99"], ["COPY", "a", "x", "DB", "abc"], ["COPY", "a", "x", "FOO"],
        ["COPY", "a", "x", "DB", "99", "FOO"], ["COPY", "nokey", "x"], ["SELECT", "1"], ["TTL", "b"], ["GET", "b"],
        ["SELECT", "0"], ["MOVE", "a", "2147483648"], ["MOVE", "a", "0"], ["MOVE", "a", "99"], ["MOVE", "a", "abc"],
        ["MOVE", "a", "1"],
        ["SET", "a", "2"], ["MOVE", "a", "1"], ["MOVE", "nokey", "1"], ["SELECT", "1"], ["GET", "a"], ["TTL", "a"],
    ],
    "swapdb": [
        ["SET", "a", "0"], ["SELECT", "1"], ["SET", "a", "1"], ["SWAPDB", "0", "1"], ["GET", "a"], ["SELECT", "0"],
        ["GET", "a"], ["SWAPDB", "0", "99"], ["SWAPDB", "x", "1"], ["SWAPDB", "0", "x"], ["SWAPDB", "0", "0"],
    ],
    "touch unlink randomkey": [
        ["RANDOMKEY"], ["MSET", "a", "1", "b", "2"], ["TOUCH", "a", "b", "c"], ["UNLINK", "a", "c"],
        ["RANDOMKEY"], ["UNLINK"],
    ],
    "scan errors": [["SCAN"], ["SCAN", "abc"], ["SCAN", "-1"], ["SCAN", "0", "COUNT", "0"], ["SCAN", "0", "COUNT"],
                    ["SCAN", "0", "COUNT", "x"], ["SCAN", "0", "FOO", "1"], ["SCAN", "0", "MATCH"],
                    ["SET", "k", "v"], ["SCAN", "0"], ["SCAN", "0", "TYPE", "list"], ["SCAN", "0", "TYPE", "STRING"],
                    ["SCAN", "0" * 30], ["SCAN", ""], ["SCAN", "+"], ["SCAN", "-"], ["SCAN", "+0"],
                    ["SCAN", "-000"], ["SCAN", "18446744073709551616"],
                    ["SCAN", "1" * 5000], ["SCAN", " 1"], ["SCAN", "1 "]],
    "object encoding after edits": [
        ["SET", "a", "1"], ["INCRBYFLOAT", "a", "1"], ["OBJECT", "ENCODING", "a"], ["INCRBYFLOAT", "b", "1.5"],
        ["OBJECT", "ENCODING", "b"], ["APPEND", "c", "12"], ["OBJECT", "ENCODING", "c"], ["APPEND", "c", "3"],
        ["OBJECT", "ENCODING", "c"], ["SETRANGE", "d", "0", "5"], ["OBJECT", "ENCODING", "d"], ["SET", "e", "hello"],
        ["APPEND", "e", "x"], ["COPY", "e", "f"], ["OBJECT", "ENCODING", "f"], ["RENAME", "f", "g"],
        ["OBJECT", "ENCODING", "g"], ["GETSET", "g", "7"], ["OBJECT", "ENCODING", "g"], ["INCR", "a"],
        ["OBJECT", "ENCODING", "a"], ["SET", "n", " 12"], ["OBJECT", "ENCODING", "n"], ["SET", "o", "007"],
        ["OBJECT", "ENCODING", "o"], ["APPEND", "e", ""], ["OBJECT", "ENCODING", "e"],
    ],
    "object encoding": [["MSET", "i", "123", "e", "hello", "r", "x" * 45, "big", "99999999999999999999"],
                        ["OBJECT", "ENCODING", "i"], ["OBJECT", "ENCODING", "e"], ["OBJECT", "ENCODING", "r"],
                        ["OBJECT", "ENCODING", "big"], ["OBJECT", "ENCODING", "nokey"], ["INCR", "i"],
                        ["OBJECT", "ENCODING", "i"]],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_replies_as_redis(both, name):
    ours, theirs = both
    for args in SCENARIOS[name]:
        expected = theirs.call(*args)
        got = ours.call(*args)
        assert replies_match(args, got, expected), f"{args!r}: we replied {got!r}, redis replied {expected!r}"


@pytest.mark.parametrize("resp", [2, 3])
def test_same_nulls_and_maps_per_protocol(both, resp):
    ours, theirs = both
    for connection in (ours, theirs):
        assert connection.call("HELLO", resp).startswith(b"%7" if resp == 3 else b"*14")
    for args in (["GET", "missing"], ["CLIENT", "GETNAME"], ["MGET", "a", "b"], ["CONFIG", "GET", "appendonly"],
                 ["SET", "k", "v", "NX"], ["SET", "k", "w", "NX"], ["SET", "k", "v", "XX", "GET"],
                 ["CLIENT", "LIST", "TYPE", "pubsub"]):
        assert ours.call(*args) == theirs.call(*args), args
    text_type = b"=" if resp == 3 else b"$"  # text for people: a verbatim string in RESP3
    for args in (["INFO", "server"], ["CLIENT", "INFO"], ["CLIENT", "LIST"]):
        assert ours.call(*args)[:1] == theirs.call(*args)[:1] == text_type, args


RAW_INPUTS = [
    b"PING\r\n",
    b"ping\n",
    b"SET inl 'a b'\r\nGET inl\r\n",
    b'ECHO "x\\ny"\r\n',
    b"\r\n\r\nPING\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n",
    b"*0\r\n*-1\r\nPING\r\n",
    b"$3\r\nfoo\r\n",
    b"*1\r\n$2\r\nPING\r\n",
    b"*1\r\n$4\r\nPINGxy*1\r\n$4\r\nPING\r\n",
    b"*1\r\n$4\r\nPING\r\r",
    b"PING\n*1\r\n$4\r\nPING\r\n",
    b'ECHO "say \\"hi\\"" \'it\\\'s\' "\\x41\\xZZ\\q"\r\n',
    b"ECHO 'a\\\\b' \"\\\\\"\r\n",
    b"ECHO a\x0bb\r\n",  # (an inline line with a NUL byte hangs Redis: its strchr() never finds the "\n")
]


@pytest.mark.parametrize("data", RAW_INPUTS)
def test_same_replies_to_raw_input(both, data):
    replies = []
    for connection in both:
        connection.send(data)
        connection.send(b"ECHO end-marker\r\n")
        received = []
        while (reply := connection.read_reply()) != b"$10\r\nend-marker\r\n":
            received.append(reply)
        replies.append(received)
    assert replies[0] == replies[1]


@pytest.mark.parametrize("data", [
    b"*2\r\n$3\r\nGET\r\n$x\r\n",
    b"*abc\r\n",
    b"*1\r\n+PING\r\n",
    b"*1\r\n\xff\r\n",  # a byte that is not ASCII, quoted as it is
    b'GET "unbalanced\r\n',
    b"PING\r\n*1\r\n:1\r\n",
    b"a\n*1\nb\r\n",
    b"*1\rx\n$4\r\nPING\r\n",
    b"*1\r\n$-1\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870913\r\n",
])
def test_same_protocol_errors_and_connection_closed(both, data):
    outcomes = []
    for connection in both:
        connection.send(data)
        closed = connection.is_closed_by_server()
        outcomes.append((connection.buffer, closed))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1] is True


def test_mangled_byte_streams_get_the_same_treatment(server, real_redis):
    """Fuzz: pieces of requests, stray CRLFs, quotes and digits. Each stream goes to both servers on a fresh
    connection, followed by padding and an ECHO marker; everything sent back (and whether the connection was
    closed, or is still waiting for a bulk string to end) must be the same."""
    import random
    import socket

    from client import encode_request

    marker, marker_reply = encode_request([b"ECHO", b"end-fuzz!"]), b"$9\r\nend-fuzz!\r\n"

    def outcome(port: int, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(0.3)
            sock.sendall(data + b"\r\n" * 64 + marker)
            received = b""
            try:
                while marker_reply not in received:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return received + b"<closed>"
                    received += chunk
            except TimeoutError:
                return received + b"<waiting>"
            except ConnectionResetError:
                return received + b"<closed>"
            return received

    rng = random.Random(7)
    fragments = [b"*", b"$", b"\r", b"\n", b"\r\n", b"0", b"1", b"3", b"-", b"x", b" ", b'"', b"'", b"\\"]
    for _ in range(1000):
        pieces = []
        for _ in range(rng.randint(1, 5)):
            if rng.random() < 0.5:
                args = [bytes(rng.choices(b"abc\r\n$*\"' \\", k=rng.randint(0, 5))) for _ in range(rng.randint(1, 3))]
                pieces.append(encode_request(args))
            else:
                pieces.append(b"".join(rng.choices(fragments, k=rng.randint(1, 10))))
        data = b"".join(pieces)
        assert outcome(server.port, data) == outcome(real_redis.port, data), data
