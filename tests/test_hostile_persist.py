"""Hostile numbers and snapshot files: huge INCRBYFLOAT values, corrupt snapshots, SAVE and load of large values.

INCRBYFLOAT results are compared with a real redis-server where one is installed. The memory tests read the
server's peak resident size (VmHWM) from /proc, so they run on Linux only.
"""

import json
import os
import pathlib
import random
import re

import pytest
import redis
from conftest import RawConnection, Responsiveness

import client as cli
import server as srv

# --- INCRBYFLOAT with numbers of thousands of digits ------------------------------------------------------------------

HUGE_EXPONENT_DIGITS = "0" * 4400  # a strtold exponent may have any number of leading zeros
FLOAT_ARGUMENTS = [
    "1e4300", "1e4900", "-1e4300", "1.5e-300", "1.18e4932", "-1.18e4932",
    "1.189731495357231765e4932",  # the largest long double, rounded: still in range
    "1.189731495357231766e4932",  # just beyond it
    "0x1.fffffffffffffffep16383", "0x1p16383", "3.6e-4951", "1e-4951", "1e-4950", "1e81920", "1e-81921",
    "1" * 4400, "-" + "9" * 5000,
    "1e" + HUGE_EXPONENT_DIGITS + "1", "1e-" + HUGE_EXPONENT_DIGITS + "1", "0x1p+" + HUGE_EXPONENT_DIGITS + "5",
    "1e" + "9" * 4400, "1e-" + "9" * 4400, "0e" + "9" * 4400, "0x1p" + "9" * 5000,
    # Long mantissas with exponents near the edges of the range
    "0." + "0" * 5000 + "1e9933", "0." + "0" * 5000 + "1e9934", "1" * 5000 + "e-9950", "9" * 5100 + "e-10050",
    "0x0." + "0" * 5000 + "1p36387", "0x0." + "0" * 5000 + "1p36388", "0x" + "f" * 5000 + "p-36445",
]


@pytest.mark.parametrize("argument", FLOAT_ARGUMENTS, ids=lambda argument: argument[:30])
def test_incrbyfloat_huge_and_tiny_numbers_like_redis(both, argument):
    ours, theirs = both
    negated = argument[1:] if argument.startswith("-") else "-" + argument
    for args in (["INCRBYFLOAT", "f", argument], ["INCRBYFLOAT", "f", argument], ["INCRBYFLOAT", "f", negated],
                 ["GET", "f"], ["SET", "g", argument], ["INCRBYFLOAT", "g", "1"]):
        expected = theirs.call(*args)
        assert ours.call(*args) == expected, f"{args[0]} {args[1]} {args[2:]!r:.60}"


def test_incrbyfloat_prints_a_result_of_4301_digits(raw):
    reply = raw.call("INCRBYFLOAT", "f", "1e4300")
    assert reply.startswith(b"$4301\r\n10000000000000000000363292426322313202093524323047")
    raw.call("SET", "stored", "7" * 4400)  # a stored value of more digits than Python's int() reads
    assert raw.call("INCRBYFLOAT", "stored", "1").startswith(b"$4400\r\n77777777777777777776909062248514868774")
    assert raw.call("INCRBYFLOAT", "ten", "1e" + HUGE_EXPONENT_DIGITS + "1") == b"$2\r\n10\r\n"


def test_incrbyfloat_far_out_of_range_is_refused_without_computing_it(server):
    # 10**81920 computed exactly takes a fifth of a second: a pipeline of them would stall every client.
    connection = RawConnection(server.port)
    with Responsiveness(server.port):
        connection.send(b"".join(cli.encode_request([b"INCRBYFLOAT", b"f", b"1e81920"]) for _ in range(20)))
        for _ in range(20):
            assert connection.read_reply() == b"-ERR value is not a valid float\r\n"
    connection.close()


# --- Snapshot files that must be refused ------------------------------------------------------------------------------

HEADER = '{"format": "educational-redis-clone", "version": 1, "fields": ["db", "key", "value", "expires_at_ms"], '


def refused(tmp_path, start_server, content: str) -> str:
    """Start a server on a dump holding content; check that it refuses to start and leaves the file alone."""
    dump = tmp_path / "dump.json"
    dump.write_text(content)
    process = start_server()
    assert process.port is None  # it never started listening
    assert process.wait() == 1
    log = process.output()
    assert f"Cannot load the snapshot {dump}" in log and "Traceback" not in log
    assert dump.read_text() == content
    return log


DEPTH = 100_000  # far beyond the JSON parser's recursion limit, whatever the Python version


@pytest.mark.parametrize("nesting", [
    "[" * DEPTH + "]" * DEPTH,
    HEADER + '"entries": [[0, "k", ' + "[" * DEPTH + "]" * DEPTH + ", null]]}",
    HEADER + '"entries": ' + '{"a": ' * DEPTH + "1" + "}" * DEPTH + "}",
], ids=["document", "value", "object"])
def test_deeply_nested_snapshot_is_refused(tmp_path, start_server, nesting):
    assert "nested too deeply" in refused(tmp_path, start_server, nesting)


@pytest.mark.parametrize("when", [10**30, 2**63, -(2**63) - 1, -(10**4000)], ids=["1e30", "2^63", "-2^63-1", "-1e4000"])
def test_expire_time_beyond_64_bits_is_refused(tmp_path, start_server, when):
    log = refused(tmp_path, start_server, HEADER + f'"entries": [[0, "ok", "v", null], [0, "k", "v", {when}]]}}')
    assert "entry 2" in log and "64-bit" in log


def test_expire_times_at_the_ends_of_64_bits_load(tmp_path, start_server):
    entries = [[0, "forever-ish", "v", 2**63 - 1], [0, "long-gone", "v", -(2**63)]]
    (tmp_path / "dump.json").write_text(HEADER + f'"entries": {json.dumps(entries)}}}')
    client = redis.Redis(port=start_server().port)
    assert client.keys() == [b"forever-ish"]  # a time before 1970 has passed: the key expired, as in Redis
    assert client.pexpiretime("forever-ish") == 2**63 - 1


def test_duplicated_key_is_refused(tmp_path, start_server):
    entries = [[0, "a", "1", None], [3, "dup", "first", None], [0, "dup", "0", None], [3, "dup", "second", None]]
    log = refused(tmp_path, start_server, HEADER + f'"entries": {json.dumps(entries)}}}')
    assert "entry 4" in log and "duplicated key in database 3" in log


def test_duplicate_of_an_expired_entry_loads_like_redis(tmp_path, start_server):
    # Redis drops an expired key while loading before it could see the duplicate; so does this server.
    entries = [[0, "k", "old", 1000], [0, "k", "new", None]]
    (tmp_path / "dump.json").write_text(HEADER + f'"entries": {json.dumps(entries)}}}')
    process = start_server()
    assert "DB loaded from disk: 1 keys" in process.output()
    assert redis.Redis(port=process.port).get("k") == b"new"


# --- SAVE of a large value --------------------------------------------------------------------------------------------

requires_proc = pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc")


def memory_figure(pid: int, name: str) -> int:
    """VmRSS (resident now) or VmHWM (peak resident) of a process, in bytes."""
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{name}:\s+(\d+) kB", status)[1]) * 1024


def reset_peak_memory(pid: int) -> None:
    pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from VmRSS


LARGE_VALUE_SIZE = 16 * 1024 * 1024


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)  # hardly any UTF-8: about 4 bytes of JSON per byte


@requires_proc
def test_save_of_a_large_value_costs_less_than_one_copy_of_it(start_server):
    process = start_server()
    connection = RawConnection(process.port)
    value = random_bytes(LARGE_VALUE_SIZE, seed=1)
    assert connection.call("SET", "big", value) == b"+OK\r\n"
    del value
    pid = process.process.pid
    resident = memory_figure(pid, "VmRSS")
    reset_peak_memory(pid)
    assert connection.call("SAVE") == b"+OK\r\n"
    growth = memory_figure(pid, "VmHWM") - resident
    assert growth < LARGE_VALUE_SIZE, f"SAVE took {growth / 2**20:.0f} MB more"
    connection.close()


# --- The snapshot's text is exactly what it was before it was written in pieces ---------------------------------------

def whole_json_string(data: bytes) -> str:
    """How SAVE encoded a key or value before it learned to do it in pieces."""
    return json.encoder.encode_basestring_ascii(data.decode("utf-8", "surrogateescape"))


# Bytes that make UTF-8 sequences valid, invalid, cut short and overlong, to be cut anywhere by the pieces' ends.
UTF8_PIECES = [b"a", b"\x00", b'"', b"\\", b"\n", "é".encode(), "☕".encode(), "😀".encode(), b"\x80", b"\xbf",
               b"\xc0\xaf", b"\xc2", b"\xe0\x80", b"\xe2\x98", b"\xed\xa0\x80", b"\xf0\x9f", b"\xf4\x90\x80\x80",
               b"\xf8", b"\xff", b"\x7f"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 7])
def test_json_string_in_pieces_is_the_whole_string(monkeypatch, chunk):
    monkeypatch.setattr(srv, "SAVE_CHUNK", chunk)
    rng = random.Random(chunk)
    for _ in range(2000):
        data = b"".join(rng.choice(UTF8_PIECES) for _ in range(rng.randrange(40)))
        assert "".join(srv.json_string_pieces(data)) == whole_json_string(data), data


def test_snapshot_file_is_byte_identical_to_the_whole_line_format(monkeypatch, tmp_path):
    monkeypatch.setattr(srv, "SAVE_CHUNK", 16)  # so that many keys and values take the way in pieces
    rng = random.Random(7)
    keyspace = srv.Keyspace()
    lines = []
    for number in range(300):
        db = keyspace.databases[rng.randrange(srv.DATABASES)]
        key = b"%d:" % number + b"".join(rng.choice(UTF8_PIECES) for _ in range(rng.randrange(12)))
        value = b"".join(rng.choice(UTF8_PIECES) for _ in range(rng.randrange(30)))
        db.data[key] = value
        if rng.random() < 0.3:
            db.expires[key] = srv.now_ms() + 100_000
    for db in keyspace.databases:
        for key, value in db.data.items():
            when = db.expires.get(key)
            lines.append(f"[{db.index},{whole_json_string(key)},{whole_json_string(value)},"
                         f"{'null' if when is None else when}]")
    srv.save_snapshot(keyspace, str(tmp_path / "dump.json"))
    header = json.dumps({"format": srv.DUMP_FORMAT, "version": srv.DUMP_VERSION, "fields": srv.DUMP_FIELDS})
    expected = header[:-1] + ',\n"entries": [\n' + ",\n".join(lines) + "\n]}\n"
    assert (tmp_path / "dump.json").read_text(encoding="ascii") == expected
    loaded = srv.Keyspace()
    assert srv.load_snapshot(loaded, str(tmp_path / "dump.json")) == 300
    assert [db.data for db in loaded.databases] == [db.data for db in keyspace.databases]


# --- Loading a large value --------------------------------------------------------------------------------------------

@requires_proc
def test_load_of_a_large_value_does_not_keep_the_file_bytes(start_server, tmp_path):
    value = random_bytes(LARGE_VALUE_SIZE, seed=2)
    keyspace = srv.Keyspace()
    keyspace.databases[0].data[b"big"] = value
    srv.save_snapshot(keyspace, str(tmp_path / "dump.json"))
    del keyspace
    file_size = (tmp_path / "dump.json").stat().st_size
    process = start_server()
    peak = memory_figure(process.process.pid, "VmHWM")
    resident = memory_figure(process.process.pid, "VmRSS")  # the server, with the value loaded
    # While parsing: the file's text, and the value as a str of 4 bytes a character, less the value's bytes that
    # stay; holding the file's bytes as well would add file_size more.
    assert peak - resident < file_size + 5 * LARGE_VALUE_SIZE, f"{(peak - resident) / 2**20:.0f} MB"
    assert RawConnection(process.port).call("STRLEN", "big") == b":%d\r\n" % LARGE_VALUE_SIZE
