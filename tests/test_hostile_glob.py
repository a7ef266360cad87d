"""Hostile glob patterns (KEYS, SCAN MATCH, CONFIG GET): bounded time, no memory left behind, Redis's answers.

The freezing patterns run against a server of the test's own (start_server), which is killed at the end:
a server that hangs fails its test within seconds and hangs nothing else.
"""

import pathlib
import random
import time

import pytest
from conftest import RawConnection, Responsiveness, replies_match

import server as srv

HOSTILE_TIMEOUT = 5.0  # seconds a hostile request may take before the test gives up on the server


def hostile_call(port: int, *args: bytes | str) -> bytes:
    """One request, while another client checks that its PINGs are still answered within a second."""
    with Responsiveness(port) as watcher:
        # The watcher's first PONG, before the request: a request answered at once leaves no time for one.
        deadline = time.monotonic() + HOSTILE_TIMEOUT
        while not watcher.latencies and watcher.failure is None and time.monotonic() < deadline:
            time.sleep(0.001)
        connection = RawConnection(port)
        connection.sock.settimeout(HOSTILE_TIMEOUT)
        try:
            return connection.call(*args)
        finally:
            connection.close()


def call_once(port: int, *args: bytes | str) -> bytes:
    connection = RawConnection(port)
    try:
        return connection.call(*args)
    finally:
        connection.close()


def vm_rss_kb(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


# --- Freezes ------------------------------------------------------------------


# Redis's own regression test ("pattern matching long nested loops", tests/unit/keyspace.tcl).
NESTED_STARS_KEY = b"a" * 120
NESTED_STARS = b"a*" * 60 + b"b"


def test_keys_with_nested_stars_is_answered_in_bounded_time(start_server):
    port = start_server().port
    call_once(port, "SET", NESTED_STARS_KEY, "1")
    assert hostile_call(port, "KEYS", NESTED_STARS) == b"*0\r\n"
    assert hostile_call(port, "KEYS", NESTED_STARS[:-1]) == b"*1\r\n$120\r\n" + NESTED_STARS_KEY + b"\r\n"


def test_scan_match_with_nested_stars_is_answered_in_bounded_time(start_server):
    port = start_server().port
    call_once(port, "SET", NESTED_STARS_KEY, "1")
    assert hostile_call(port, "SCAN", "0", "MATCH", NESTED_STARS, "COUNT", "1000") == b"*2\r\n$1\r\n0\r\n*0\r\n"
    assert hostile_call(port, "SCAN", "0", "MATCH", NESTED_STARS[:-1], "COUNT", "1000") == (
        b"*2\r\n$1\r\n0\r\n*1\r\n$120\r\n" + NESTED_STARS_KEY + b"\r\n")


def test_config_get_with_nested_stars_is_answered_in_bounded_time(start_server):
    port = start_server().port
    assert hostile_call(port, "CONFIG", "GET", b"*" * 30 + b"x") == b"*0\r\n"
    assert hostile_call(port, "CONFIG", "GET", b"*" * 30 + b"port") == b"*2\r\n$4\r\nport\r\n$%d\r\n%d\r\n" % (
        len(str(port)), port)


def test_more_than_1000_nested_stars_match_nothing(start_server):
    # Redis's regression test for CVE-2024-31228: stringmatchlen() gives up beyond 1000 nested stars.
    port = start_server().port
    call_once(port, "SET", b"a" * 50_000, "1")
    assert hostile_call(port, "KEYS", b"*?" * 50_000) == b"*0\r\n"
    assert hostile_call(port, "KEYS", b"*?" * 1001) == b"*0\r\n"
    the_key = b"*1\r\n$50000\r\n" + b"a" * 50_000 + b"\r\n"
    assert hostile_call(port, "KEYS", b"*?" * 1000) == the_key
    assert hostile_call(port, "KEYS", b"?*" * 1001) == the_key  # a star at the very end nests nothing


def test_a_megabyte_of_brackets_is_answered_fast(start_server):
    # An unclosed "[" takes the rest of the pattern as its set: this one is the set of "[" alone.
    port = start_server().port
    call_once(port, "MSET", "[", "1", "a", "2")
    started = time.monotonic()
    assert hostile_call(port, "KEYS", b"[" * 1_000_000) == b"*1\r\n$1\r\n[\r\n"
    assert time.monotonic() - started < 0.5  # Redis takes milliseconds


def test_megabyte_patterns_leave_no_memory_behind(start_server):
    process = start_server()
    connection = RawConnection(process.port)
    connection.sock.settimeout(HOSTILE_TIMEOUT)
    connection.call("MSET", "a" * 100, "1", "b", "2")

    def keys_with_a_megabyte_pattern(number: int) -> bytes:
        return connection.call("KEYS", b"*%d" % number + b"a" * 1_000_000 + b"*")

    keys_with_a_megabyte_pattern(-1)  # the first one grows the buffers that any 1 MB request needs
    rss_before = vm_rss_kb(process.process.pid)
    for i in range(30):  # each pattern different
        assert keys_with_a_megabyte_pattern(i) == b"*0\r\n"
        growth_mb = (vm_rss_kb(process.process.pid) - rss_before) / 1024
        assert growth_mb < 5, f"the server grew by {growth_mb:.0f} MB after {i + 1} patterns"


# --- Redis's answers ----------------------------------------------------------


# (pattern, key, whether Redis 7.0.15 matches them), each checked against redis-server.
TRICKY_CASES = [
    (b"", b"", True), (b"", b"a", False),
    (b"**", b"", False), (b"?", b"", False),  # an empty key matches the empty pattern only
    (b"a*", b"a", True), (b"a**", b"a", True), (b"a*?", b"a", False), (b"*a*b*", b"xaxbx", True),
    (b"*ab*ab", b"abab", True), (b"*ab*ab", b"aba", False), (b"a*b*a", b"aba", True), (b"?*?", b"a", False),
    (b"[]", b"a", False), (b"[]a", b"]a", False), (b"[]]", b"]", False), (b"[^]", b"\xff", True),
    (b"[abc", b"b", True), (b"[abc", b"[", False), (b"[^a", b"b", True), (b"[", b"[", False), (b"[^", b"x", True),
    (b"[a-", b"-", True), (b"[z-a]", b"m", True), (b"[a-]", b"^", True), (b"[a-]b]", b"b", True),
    (b"[a-]b]", b"]", True), (b"[a-\\]", b"\\", True), (b"[\\]]", b"]", True), (b"[\\", b"\\", True),
    (b"[\\-a]", b"b", False), (b"[\\-a]", b"-", True), (b"[--]", b"-", True),
    (b"\\", b"\\", True), (b"\\*", b"*", True), (b"\\*", b"a", False), (b"a\\", b"a\\", True),
    (b"*\\[*", b"a[b", True), (b"[*]", b"*", True), (b"[*]", b"a", False),
    # Range ends compare as signed C chars: \x80-\xff come before \x00.
    (b"[a-\xff]", b"\xff", True), (b"[a-\xff]", b"\x00", True), (b"[a-\xff]", b"\x80", False),
    (b"[\x80-\xfe]", b"\xa0", True), (b"[\x00-\xff]", b"a", False),
]


def test_glob_matcher_matches_as_redis_does():
    mismatches = [(pattern[:20], key[:20], expected) for pattern, key, expected in TRICKY_CASES
                  if srv.glob_matcher(pattern)(key) is not expected]
    assert mismatches == []


def test_glob_matcher_reads_a_pattern_only_as_far_as_the_key_needs():
    started = time.monotonic()
    matches = srv.glob_matcher(b"?a" * 500_000)
    assert not matches(b"ba")
    assert not matches(b"ba" * 10)
    assert time.monotonic() - started < 0.1
    assert srv.glob_matcher(b"?a" * 1000)(b"ba" * 1000)


def random_bytes(rng: random.Random, alphabet: bytes, longest: int) -> bytes:
    return bytes(rng.choice(alphabet) for _ in range(rng.randint(1, longest)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_keys_matches_as_real_redis_does(both, seed):
    rng = random.Random(seed)
    keys = {random_bytes(rng, b"ab[]^-\\*?\x00\x80\xff", 10) for _ in range(200)} | {b""}
    for connection in both:
        assert connection.call("MSET", *[part for key in keys for part in (key, b"1")]) == b"+OK\r\n"
    ours, theirs = both
    for _ in range(500):
        pattern = random_bytes(rng, b"aab**?[]^-\\\x80\xff", 12)
        assert replies_match(["KEYS", pattern], ours.call("KEYS", pattern), theirs.call("KEYS", pattern)), pattern
