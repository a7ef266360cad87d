"""The JSON snapshot: saved atomically on SAVE and shutdown, loaded on start, refused when corrupt."""

import json

import pytest
import redis

import server as srv


def test_restart_reloads_everything(start_server, tmp_path):
    process = start_server()
    client = redis.Redis(port=process.port)
    client.set("plain", "value")
    client.set("with-ttl", "value", ex=1000)
    client.select(5)
    client.set("in-db5", "five")
    assert process.stop() == 0

    restarted = start_server()
    assert "DB loaded from disk: 3 keys" in restarted.output()
    client = redis.Redis(port=restarted.port)
    assert client.get("plain") == b"value"
    assert 990 <= client.ttl("with-ttl") <= 1000
    assert redis.Redis(port=restarted.port, db=5).get("in-db5") == b"five"


def test_binary_and_unicode_round_trip_exactly(start_server, tmp_path):
    process = start_server()
    client = redis.Redis(port=process.port)
    pairs = {bytes(range(256)): b"\xff\xfe\x00\r\n", "café ☕".encode(): "日本".encode(), b"\xed\xa0\x80": b""}
    for key, value in pairs.items():
        client.set(key, value)
    client.save()
    text = (tmp_path / "dump.json").read_text(encoding="ascii")
    assert '"caf\\u00e9 \\u2615"' in text  # readable: UTF-8 stays text
    assert "\\udcff" in text  # bytes that are not UTF-8 are escaped
    process.stop()
    client = redis.Redis(port=start_server().port)
    for key, value in pairs.items():
        assert client.get(key) == value


def test_file_is_one_readable_line_per_key(start_server, tmp_path):
    process = start_server()
    client = redis.Redis(port=process.port)
    client.set("name", "Alice")
    client.set("session", "xyz", pxat=4102444800000)
    client.save()
    lines = (tmp_path / "dump.json").read_text().splitlines()
    assert lines[0].startswith('{"format": "educational-redis-clone", "version": 1')
    entries = {line.rstrip(",") for line in lines[2:-1]}
    assert entries == {'[0,"name","Alice",null]', '[0,"session","xyz",4102444800000]'}
    document = json.loads("\n".join(lines))
    assert document["fields"] == ["db", "key", "value", "expires_at_ms"]


def test_keys_expired_while_down_are_dropped(tmp_path, start_server):
    dump = {"format": "educational-redis-clone", "version": 1, "fields": srv.DUMP_FIELDS,
            "entries": [[0, "old", "v", 1000], [0, "fresh", "v", 4102444800000], [0, "forever", "v", None]]}
    (tmp_path / "dump.json").write_text(json.dumps(dump))
    client = redis.Redis(port=start_server().port)
    assert sorted(client.keys()) == [b"forever", b"fresh"]


@pytest.mark.parametrize(("content", "problem"), [
    ("{not json", "not valid JSON"),
    ('{"format": "something-else", "version": 1, "entries": []}', "not a snapshot of this server"),
    ('{"format": "educational-redis-clone", "version": 99, "entries": []}', "unsupported version 99"),
    ('{"format": "educational-redis-clone", "version": 1}', '"entries" is missing'),
    ('{"format": "educational-redis-clone", "version": 1, "entries": [[0, "k", "v"]]}', "entry 1"),
    ('{"format": "educational-redis-clone", "version": 1, "entries": [[16, "k", "v", null]]}', "database 16"),
    ('{"format": "educational-redis-clone", "version": 1, "entries": [[0, "k", 5, null]]}', "entry 1"),
    ('{"format": "educational-redis-clone", "version": 1, "entries": [[0, "k", "v", "soon"]]}', "expiry"),
    ('{"format": "educational-redis-clone", "version": 1, "entries": [[0, "\\ud800", "v", null]]}', "entry 1"),
    ("\xff\xfe garbage", "not valid JSON"),
])
def test_corrupt_dump_refuses_to_start_and_leaves_the_file_alone(tmp_path, start_server, content, problem):
    dump = tmp_path / "dump.json"
    dump.write_bytes(content.encode("latin-1"))
    before = dump.read_bytes()
    process = start_server()
    assert process.port is None  # it never started listening
    assert process.wait() == 1
    log = process.output()
    assert str(dump) in log and problem in log
    assert dump.read_bytes() == before


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "dump.json"
    path.write_text("previous snapshot")
    keyspace = srv.Keyspace()
    keyspace.databases[0].data[b"k"] = b"v"

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(srv.os, "replace", crash)
    with pytest.raises(OSError):
        srv.save_snapshot(keyspace, str(path))
    assert path.read_text() == "previous snapshot"
    assert [p.name for p in tmp_path.iterdir()] == ["dump.json"]  # no temporary file left behind


def test_save_then_load_round_trip_in_process(tmp_path):
    keyspace = srv.Keyspace()
    keyspace.databases[0].data.update({b"a": b"1", b"\x80": b"\x81"})
    keyspace.databases[3].data[b"b"] = b"2"
    keyspace.databases[3].expires[b"b"] = srv.now_ms() + 100_000
    srv.save_snapshot(keyspace, str(tmp_path / "d.json"))
    loaded = srv.Keyspace()
    assert srv.load_snapshot(loaded, str(tmp_path / "d.json")) == 3
    for before, after in zip(keyspace.databases, loaded.databases, strict=True):
        assert before.data == after.data and before.expires == after.expires


def test_save_command_failure_is_an_error_reply(start_server, tmp_path):
    process = start_server()
    client = redis.Redis(port=process.port)
    (tmp_path / "dump.json").mkdir()  # a directory where the file should go: rename fails
    with pytest.raises(redis.ResponseError):
        client.save()
    assert client.ping()


def test_a_crash_loses_what_came_after_the_last_snapshot_and_nothing_before(start_server):
    process = start_server()
    client = redis.Redis(port=process.port)
    client.set("saved", "1")
    client.save()
    client.set("unsaved", "2")
    process.kill()  # SIGKILL: no shutdown, no save
    client = redis.Redis(port=start_server().port)
    assert client.get("saved") == b"1"
    assert client.get("unsaved") is None
