"""The append-only file: what is logged and in what form, replay, damaged files, rewrites, and real Redis."""

from __future__ import annotations

import io
import pathlib
import resource
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest
import redis
from conftest import ROOT, RawConnection, RedisServerProcess, cli, wait_until

import server as srv


def logged(path: pathlib.Path) -> list[list[bytes]]:
    """The commands in an append-only file, as lists of arguments."""
    with open(path, "rb") as file:
        return [args for _offset, args in srv.read_aof_commands(file)]


def encode(*commands: list[bytes | str]) -> bytes:
    return b"".join(srv.bulk_array([arg if isinstance(arg, bytes) else arg.encode() for arg in args])
                    for args in commands)


def dataset(port: int) -> dict[tuple[int, bytes], tuple[bytes, int]]:
    """Every key of every database: its value and its absolute expire time (-1: none)."""
    data = {}
    for index in range(16):
        client = redis.Redis(port=port, db=index)
        for key in client.keys():
            data[index, key] = (client.get(key), client.pexpiretime(key))
    return data


@pytest.fixture
def aof_server(start_server, tmp_path):
    """A server with appendonly yes, active expiry off, and a raw connection to it."""
    process = start_server("--appendonly", "yes")
    connection = RawConnection(process.port)
    connection.call("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    yield process, connection, tmp_path / "appendonly.aof"
    connection.close()


def test_relative_times_become_absolute_and_some_commands_change_form(aof_server):
    process, connection, path = aof_server
    before = srv.now_ms()
    for command in (["SET", "a", "1", "EX", "100"], ["SET", "b", "2", "NX", "PX", "100000", "GET"],
                    ["SETEX", "c", "100", "v"], ["PSETEX", "d", "100000", "v"], ["SET", "a", "3", "GET"],
                    ["EXPIRE", "a", "100", "LT"], ["PEXPIRE", "a", "100000"], ["EXPIREAT", "a", "4102444800"],
                    ["GETEX", "c", "PX", "100000"], ["GETEX", "c", "PERSIST"], ["EXPIRE", "d", "-1"],
                    ["INCRBYFLOAT", "f", "1.5"], ["GETSET", "f", "3"], ["GETDEL", "f"], ["GETEX", "b", "EXAT", "1"]):
        assert not connection.call(*command).startswith(b"-"), command
    after = srv.now_ms()
    commands = logged(path)
    times = []  # the absolute times, replaced by "<ms>" in the commands
    for args in commands:
        position = {b"SET": 4, b"PEXPIREAT": 2}.get(args[0])
        if position is not None and len(args) > position and (args[0] != b"SET" or args[3] == b"PXAT"):
            times.append(int(args[position]))
            args[position] = b"<ms>"
    assert commands == [
        [b"SELECT", b"0"],
        [b"SET", b"a", b"1", b"PXAT", b"<ms>"],
        [b"SET", b"b", b"2", b"PXAT", b"<ms>"],
        [b"SET", b"c", b"v", b"PXAT", b"<ms>"],
        [b"SET", b"d", b"v", b"PXAT", b"<ms>"],
        [b"SET", b"a", b"3"],
        [b"PEXPIREAT", b"a", b"<ms>", b"LT"],
        [b"PEXPIREAT", b"a", b"<ms>"],
        [b"PEXPIREAT", b"a", b"<ms>"],
        [b"PEXPIREAT", b"c", b"<ms>"],
        [b"PERSIST", b"c"],
        [b"DEL", b"d"],
        [b"SET", b"f", b"1.5", b"KEEPTTL"],
        [b"SET", b"f", b"3"],
        [b"DEL", b"f"],
        [b"DEL", b"b"],
    ]
    assert times[6] == 4102444800000  # EXPIREAT's seconds, in ms
    for when in times[:6] + times[7:]:  # now plus 100 seconds, when the command ran
        assert before + 100_000 <= when <= after + 100_000


def test_commands_that_change_nothing_are_not_logged_and_select_marks_a_database_change(aof_server):
    process, connection, path = aof_server
    connection.call("SET", "k", "v")
    for command in (["SETNX", "k", "w"], ["DEL", "missing"], ["EXPIRE", "missing", "10"], ["PERSIST", "k"],
                    ["SET", "k", "x", "NX"], ["GET", "k"], ["GETEX", "k"], ["SETRANGE", "k", "0", ""],
                    ["RENAMENX", "k", "k"], ["MSETNX", "k", "1", "j", "2"], ["INCR", "k"]):
        connection.call(*command)
    connection.call("SELECT", "3")
    connection.call("SET", "k", "three")
    connection.call("DEL", "k")
    connection.call("SELECT", "0")
    connection.call("APPEND", "k", "!")
    assert logged(path) == [[b"SELECT", b"0"], [b"SET", b"k", b"v"], [b"SELECT", b"3"], [b"SET", b"k", b"three"],
                            [b"DEL", b"k"], [b"SELECT", b"0"], [b"APPEND", b"k", b"!"]]


def test_keys_that_expiry_removes_are_logged_as_del(aof_server):
    process, connection, path = aof_server
    connection.call("SET", "read", "1", "PX", "1")
    connection.call("SET", "written", "1", "PX", "1")
    time.sleep(0.01)
    assert connection.call("GET", "read") == b"$-1\r\n"  # lazy expiry in a read: a DEL alone
    assert connection.call("SET", "written", "2", "NX") == b"+OK\r\n"  # in a write: DEL and the write, as one
    assert logged(path)[3:] == [[b"DEL", b"read"], [b"MULTI"], [b"DEL", b"written"],
                                [b"SET", b"written", b"2", b"NX"], [b"EXEC"]]
    connection.call("SET", "active", "1", "PX", "1")
    connection.call("DEBUG", "SET-ACTIVE-EXPIRE", "1")
    assert wait_until(lambda: logged(path)[-1] == [b"DEL", b"active"])


def test_replay_gives_the_same_data_and_ttls(start_server, tmp_path):
    process = start_server("--appendonly", "yes", "--appendfsync", "always")
    client = redis.Redis(port=process.port)
    client.set("plain", "value")
    client.set("binary\r\n\x00", bytes(range(256)), ex=1000)
    client.execute_command("SETEX", "setex", 500, "v")
    client.incrbyfloat("float", "0.1")
    client.incrbyfloat("float", "0.2")
    client.set("counter", 10, px=900_000)
    client.incr("counter")
    client.append("counter", "0")
    client.setrange("counter", 0, "9")
    client.expire("plain", 800)
    client.persist("plain")
    client.rename("setex", "renamed")
    client.mset({"m1": "1", "m2": "2"})
    client.delete("m1")
    client.move("m2", 4)
    client.copy("counter", "copied", destination_db=7)
    redis.Redis(port=process.port, db=2).set("db2", "two", pxat=4102444800000)
    client.swapdb(2, 3)
    before = dataset(process.port)
    assert process.stop() == 0
    (tmp_path / "dump.json").unlink()  # the data must come from the log alone

    restarted = start_server("--appendonly", "yes")
    assert "DB loaded from append only file" in restarted.output()
    assert dataset(restarted.port) == before
    assert before[0, b"float"] == (b"0.3", -1)


def test_with_the_log_present_the_snapshot_is_not_read(start_server, tmp_path):
    process = start_server()
    redis.Redis(port=process.port).set("from-snapshot", "1")
    process.stop()  # saves dump.json
    (tmp_path / "appendonly.aof").write_bytes(encode(["SET", "from-log", "1"]))
    client = redis.Redis(port=start_server("--appendonly", "yes").port)
    assert client.keys() == [b"from-log"]


def test_without_the_log_the_snapshot_is_loaded_and_the_log_written_from_it(start_server, tmp_path):
    process = start_server()
    redis.Redis(port=process.port).set("kept", "1", pxat=4102444800000)
    process.stop()
    process = start_server("--appendonly", "yes")
    assert "Creating the AOF file" in process.output()
    assert logged(tmp_path / "appendonly.aof") == [[b"SELECT", b"0"],
                                                   [b"SET", b"kept", b"1", b"PXAT", b"4102444800000"]]


def test_a_last_command_cut_short_is_dropped_with_a_warning_and_the_file_truncated(start_server, tmp_path):
    path = tmp_path / "appendonly.aof"
    whole = encode(["SELECT", "0"], ["SET", "a", "1"], ["MULTI"], ["SET", "b", "2"], ["EXEC"])
    for tail in (encode(["SET", "c", "3"])[:-3], b"*3\r\n$3\r\nSET", b"*", encode(["MULTI"], ["SET", "c", "3"])):
        path.write_bytes(whole + tail)
        process = start_server("--appendonly", "yes")
        assert f"Truncating the AOF {tmp_path}/appendonly.aof at offset {len(whole)}" in process.output()
        assert "loaded anyway because aof-load-truncated is enabled" in process.output()
        assert sorted(redis.Redis(port=process.port).keys()) == [b"a", b"b"]
        process.kill()
        assert path.read_bytes() == whole


@pytest.mark.parametrize(("garbage", "problem"), [
    (b"+OK\r\n", "expected a '*' line"),
    (b"*1\r\n:1\r\n", "expected a '$' line"),
    (b"*1\r\n$4\r\nPINGxx", "not followed by \\r\\n"),
    (b"*x\r\n", "expected a '*' line"),
    (encode(["NOSUCHCOMMAND"]), "'NOSUCHCOMMAND' is not a write command"),
    (encode(["SHUTDOWN"]), "'SHUTDOWN' is not a write command"),
    (encode(["INCR", "a"]), "INCR failed: ERR value is not an integer"),
    (encode(["SET", "a"]), "SET failed: ERR wrong number of arguments"),
])
def test_a_corrupt_middle_refuses_to_start_names_the_offset_and_leaves_the_file(start_server, tmp_path, garbage,
                                                                               problem):
    path = tmp_path / "appendonly.aof"
    good = encode(["SELECT", "0"], ["SET", "a", "x"])
    content = good + garbage + encode(["SET", "b", "2"])
    path.write_bytes(content)
    process = start_server("--appendonly", "yes")
    assert process.port is None and process.wait() == 1
    assert f"at offset {len(good)}, " in process.output()
    assert problem in process.output()
    assert path.read_bytes() == content
    assert not (tmp_path / "dump.json").exists()


def check_aof(*args: str, answer: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "server.py"), "--check-aof", *args], input=answer,
                          capture_output=True, text=True, timeout=30)


def test_check_aof_reports_the_first_bad_offset_and_fix_truncates_there_after_asking(tmp_path):
    path = tmp_path / "appendonly.aof"
    good = encode(["SELECT", "0"], ["SET", "a", "1"])  # 50 bytes
    cut = b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$2\r\n1"  # 25 bytes
    path.write_bytes(good + cut)
    result = check_aof(str(path))
    assert result.returncode == 1
    assert f"AOF analyzed: filename={path}, size=75, ok_up_to=50, ok_up_to_line=19, diff=25" in result.stdout
    assert "is not valid. Use the --fix option to try fixing it." in result.stdout

    result = check_aof(str(path), "--fix", answer="n\n")
    assert result.returncode == 1 and "Continue? [y/N]: Aborting..." in result.stdout
    assert path.read_bytes() == good + cut

    result = check_aof(str(path), "--fix", answer="y\n")
    assert result.returncode == 0
    assert f"This will shrink the AOF {path} from 75 bytes, with 25 bytes, to 50 bytes" in result.stdout
    assert f"Successfully truncated AOF {path}" in result.stdout
    assert path.read_bytes() == good
    result = check_aof(str(path))
    assert result.returncode == 0 and f"AOF {path} is valid" in result.stdout


@pytest.mark.skipif(shutil.which("redis-check-aof") is None, reason="redis-check-aof is not installed")
@pytest.mark.parametrize("tail", [b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$2\r\n1", b"X3\r\n$3\r\nSET\r\n", b""])
def test_check_aof_analyses_as_redis_check_aof_does(tmp_path, tail):
    path = tmp_path / "appendonly.aof"
    path.write_bytes(encode(["SELECT", "0"], ["SET", "a", "1"]) + tail)
    ours = check_aof(str(path))
    theirs = subprocess.run(["redis-check-aof", str(path)], capture_output=True, text=True, timeout=30)
    assert ours.returncode == theirs.returncode
    analysed = [line for line in theirs.stdout.splitlines() if line.startswith("AOF ")][-2:]
    assert ours.stdout.splitlines()[-2:] == analysed


def test_bgrewriteaof_shrinks_100000_overwrites_of_10_keys_to_10_commands(start_server, tmp_path):
    process = start_server("--appendonly", "yes", "--appendfsync", "no")
    client = redis.Redis(port=process.port)
    pipe = client.pipeline(transaction=False)
    for i in range(100_000):
        pipe.set(f"key:{i % 10}", i)
        if i % 10_000 == 9_999:
            pipe.execute()
    path = tmp_path / "appendonly.aof"
    assert len(logged(path)) == 100_001  # and a SELECT
    assert client.bgrewriteaof() is True
    assert wait_until(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, timeout=30)
    assert client.info("persistence")["aof_last_bgrewrite_status"] == "ok"
    commands = logged(path)
    assert commands[0] == [b"SELECT", b"0"]
    assert sorted(commands[1:]) == sorted([b"SET", b"key:%d" % k, b"%d" % (99_990 + k)] for k in range(10))
    assert client.info("persistence")["aof_base_size"] == path.stat().st_size


def fill(client: redis.Redis, count: int, value: bytes = b"x" * 100) -> None:
    """count keys, set a batch at a time."""
    for start in range(0, count, 10_000):
        client.mset({f"filler:{i}": value for i in range(start, min(start + 10_000, count))})


def test_bgrewriteaof_under_write_load_loses_nothing(start_server, tmp_path):
    process = start_server("--appendonly", "yes")
    client = redis.Redis(port=process.port)
    fill(client, 200_000)  # enough that the child takes a while
    acknowledged: dict[bytes, int] = {}
    stop = threading.Event()

    def write(name: bytes) -> None:
        connection = redis.Redis(port=process.port)
        while not stop.is_set():
            acknowledged[name] = connection.incr(name)
        connection.close()

    writers = [threading.Thread(target=write, args=(b"counter:%d" % n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    assert wait_until(lambda: len(acknowledged) == 4)
    at_start = dict(acknowledged)
    assert client.bgrewriteaof() is True
    assert wait_until(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, timeout=60)
    at_end = dict(acknowledged)
    assert wait_until(lambda: all(acknowledged[name] > at_end[name] + 100 for name in at_end))  # into the new file
    stop.set()
    for thread in writers:
        thread.join()
    assert client.info("persistence")["aof_rewrites"] == 1
    assert sum(at_end.values()) > sum(at_start.values())  # the writes went on during the rewrite
    process.kill()  # SIGKILL: no shutdown, no snapshot; what was acknowledged is in the log
    restarted = redis.Redis(port=start_server("--appendonly", "yes").port)
    assert restarted.dbsize() == 200_004
    assert {name: int(restarted.get(name)) for name in acknowledged} == acknowledged


def test_bgrewriteaof_waits_for_a_bgsave_and_works_with_appendonly_off(start_server, tmp_path):
    process = start_server()
    client = redis.Redis(port=process.port)
    fill(client, 200_000)
    assert client.bgsave()
    assert RawConnection(process.port).call("BGREWRITEAOF") == b"+Background append only file rewriting scheduled\r\n"
    assert client.info("persistence")["aof_rewrite_scheduled"] == 1
    assert wait_until(lambda: client.info("persistence")["aof_rewrites"] == 1, timeout=60)
    assert client.info("persistence")["aof_last_bgrewrite_status"] == "ok"
    assert len(logged(tmp_path / "appendonly.aof")) == 200_001


def test_shutdown_fsyncs_the_log(start_server):
    process = start_server("--appendonly", "yes")
    redis.Redis(port=process.port).set("k", "v")
    assert process.stop() == 0
    assert "Calling fsync() on the AOF file." in process.output()


def test_config_get_shows_the_aof_settings(start_server):
    process = start_server("--appendonly", "yes", "--appendfsync", "always", "--appendfilename", "log.aof",
                           "--auto-aof-rewrite-min-size", "1mb")
    client = redis.Redis(port=process.port)
    assert client.config_get("append*") == {"appendonly": "yes", "appendfsync": "always", "appendfilename": "log.aof"}
    assert client.config_get("auto-aof-*") == {"auto-aof-rewrite-percentage": "100",
                                               "auto-aof-rewrite-min-size": str(1024 * 1024)}
    assert client.info("persistence")["aof_enabled"] == 1


def test_info_persistence_has_the_aof_fields(start_server, tmp_path):
    process = start_server("--appendonly", "yes")
    client = redis.Redis(port=process.port)
    client.set("k", "v")
    info = client.info("persistence")
    for field in ("aof_enabled", "aof_rewrite_in_progress", "aof_rewrite_scheduled", "aof_last_rewrite_time_sec",
                  "aof_current_rewrite_time_sec", "aof_last_bgrewrite_status", "aof_rewrites",
                  "aof_last_write_status", "aof_current_size", "aof_base_size", "aof_buffer_length"):
        assert field in info, field
    assert info["aof_current_size"] == (tmp_path / "appendonly.aof").stat().st_size
    assert info["aof_last_write_status"] == "ok"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_real_redis_loads_our_log_with_the_same_keys_values_and_ttls(start_server, tmp_path):
    process = start_server("--appendonly", "yes")
    client = redis.Redis(port=process.port)
    client.set("plain", "value")
    client.set(b"binary\r\n\x00\xff", bytes(range(256)), px=3_600_000)
    client.incrbyfloat("float", "10.5")
    client.expire("float", 7200)
    client.set("gone", "soon")
    client.delete("gone")
    redis.Redis(port=process.port, db=9).set("nine", "9", exat=4102444800)
    expected = dataset(process.port)
    process.stop()
    (tmp_path / "dump.json").unlink()
    real = RedisServerProcess(tmp_path, "--appendonly", "yes")
    try:
        assert dataset(real.port) == expected
    finally:
        real.stop()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_we_load_the_incr_aof_redis_7_writes(start_server, tmp_path):
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    real = RedisServerProcess(redis_dir, "--appendonly", "yes", "--appendfsync", "always",
                              "--enable-debug-command", "local")
    try:
        client = redis.Redis(port=real.port)
        client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        client.set("a", "1", ex=1000)
        client.incrbyfloat("f", "2.5")
        client.set("expiring", "1", px=1)
        time.sleep(0.01)
        client.set("expiring", "2", nx=True)  # Redis logs MULTI, DEL, SET, EXEC
        redis.Redis(port=real.port, db=3).set("three", "3")
        client.getset("a", "2")
        client.expire("a", 500)
        expected = dataset(real.port)
    finally:
        real.stop()
    incr = next((redis_dir / "appendonlydir").glob("*.incr.aof"))
    assert b"MULTI" in incr.read_bytes()
    shutil.copy(incr, tmp_path / "appendonly.aof")
    process = start_server("--appendonly", "yes")
    assert dataset(process.port) == expected


def test_loader_reads_a_stream_of_commands_and_reports_where_it_stops():
    commands = encode(["SET", "a", "1"], ["DEL", "a"])
    assert [offset for offset, _ in srv.read_aof_commands(io.BytesIO(commands))] == [0, 27]
    with pytest.raises(srv.AofError) as failure:
        list(srv.read_aof_commands(io.BytesIO(commands + b"*2\r\n$3\r\nDEL\r\n")))
    assert failure.value.offset == len(commands) and failure.value.truncated


def test_config_set_appendonly_yes_writes_the_whole_data_first_then_logs(start_server, tmp_path):
    process = start_server("--save", "")
    client = redis.Redis(port=process.port)
    client.set("plain", "1")
    client.set("ttl", "2", pxat=4102444800000)
    redis.Redis(port=process.port, db=5).set("five", "5")
    path = tmp_path / "appendonly.aof"
    assert not path.exists()
    assert client.config_set("appendonly", "yes")
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    client.set("during", "3")  # while the first rewrite runs, or after: it is in the file either way
    assert wait_until(lambda: client.info("persistence")["aof_rewrites"] == 1, timeout=30)
    client.set("after", "4")
    commands = logged(path)
    assert commands[:4] in ([[b"SELECT", b"0"], [b"SET", b"plain", b"1"], [b"SET", b"ttl", b"2", b"PXAT",
                             b"4102444800000"], [b"SET", b"during", b"3"]],
                            [[b"SELECT", b"0"], [b"SET", b"plain", b"1"], [b"SET", b"ttl", b"2", b"PXAT",
                             b"4102444800000"], [b"SELECT", b"5"]])
    assert [b"SET", b"five", b"5"] in commands and commands[-1] == [b"SET", b"after", b"4"]
    expected = dataset(process.port)
    process.kill()
    assert dataset(start_server("--appendonly", "yes").port) == expected


def test_config_set_appendonly_no_stops_logging(start_server, tmp_path):
    process = start_server("--appendonly", "yes")
    client = redis.Redis(port=process.port)
    client.set("logged", "1")
    assert client.config_set("appendonly", "no")
    assert client.info("persistence")["aof_enabled"] == 0
    client.set("not-logged", "1")
    assert logged(tmp_path / "appendonly.aof") == [[b"SELECT", b"0"], [b"SET", b"logged", b"1"]]


def test_config_set_appendfsync_and_rewrite_settings_reply_as_redis_does(both):
    for command in (["CONFIG", "SET", "appendfsync", "sometimes"], ["CONFIG", "SET", "appendfsync", "ALWAYS"],
                    ["CONFIG", "GET", "appendfsync"], ["CONFIG", "SET", "appendfsync", "everysec"],
                    ["CONFIG", "SET", "auto-aof-rewrite-percentage", "abc"],
                    ["CONFIG", "SET", "auto-aof-rewrite-percentage", "3000000000"],
                    ["CONFIG", "SET", "auto-aof-rewrite-percentage", "-1"],
                    ["CONFIG", "SET", "auto-aof-rewrite-min-size", "-1"],
                    ["CONFIG", "SET", "auto-aof-rewrite-min-size", "1GB"], ["CONFIG", "GET", "auto-aof-*"],
                    ["CONFIG", "SET", "auto-aof-rewrite-min-size", "64mb"],
                    ["CONFIG", "SET", "appendonly", "maybe"], ["CONFIG", "SET", "appendfilename", "other.aof"],
                    ["CONFIG", "GET", "appendonly"], ["CONFIG", "GET", "appendfilename"]):
        ours, theirs = (connection.call(*command) for connection in both)
        if command[1] == "GET":  # Redis lists matching settings in its hash table's order
            ours, theirs = (sorted(cli.parse_reply(reply)[0]) for reply in (ours, theirs))
        assert ours == theirs, command


def test_bgrewriteaof_replies_as_redis_does(both):
    for connection in both:  # no child of an earlier test may still run on either server
        assert wait_until(lambda c=connection: b"aof_rewrite_in_progress:0" in c.call("INFO", "persistence")
                          and b"rdb_bgsave_in_progress:0" in c.call("INFO", "persistence"), timeout=30)
    for command in (["BGREWRITEAOF"], ["BGREWRITEAOF", "now"]):
        ours, theirs = (connection.call(*command) for connection in both)
        assert ours == theirs, command


def test_an_automatic_rewrite_starts_once_the_log_has_doubled(start_server, tmp_path):
    process = start_server("--appendonly", "yes", "--auto-aof-rewrite-min-size", "10kb")
    client = redis.Redis(port=process.port)
    pipe = client.pipeline(transaction=False)
    for i in range(2_000):
        pipe.set("key", i)
    pipe.execute()
    assert wait_until(lambda: client.info("persistence")["aof_rewrites"] == 1, timeout=30)
    assert "Starting automatic rewriting of AOF on" in process.output()
    assert logged(tmp_path / "appendonly.aof")[:2] == [[b"SELECT", b"0"], [b"SET", b"key", b"1999"]]


def test_a_log_the_disk_refuses_stops_writes_with_misconf_and_reads_go_on(start_server):
    limits = {resource.RLIMIT_FSIZE: 100_000}  # writes past 100 kB fail with EFBIG ("File too large")
    process = start_server("--appendonly", "yes", "--save", "", limits=limits)
    connection = RawConnection(process.port)
    assert connection.call("SET", "small", "1") == b"+OK\r\n"
    assert connection.call("SET", "big", "x" * 200_000) == b"+OK\r\n"  # its reply was due: the failure comes after
    assert connection.call("SET", "more", "1") == b"-MISCONF Errors writing to the AOF file: File too large\r\n"
    assert connection.call("GET", "small") == b"$1\r\n1\r\n"
    assert b"aof_last_write_status:err" in connection.call("INFO", "persistence")
    assert "Error writing to the AOF file" in process.output()


def test_with_appendfsync_always_a_log_the_disk_refuses_stops_the_server(start_server):
    limits = {resource.RLIMIT_FSIZE: 100_000}
    process = start_server("--appendonly", "yes", "--appendfsync", "always", "--save", "", limits=limits)
    connection = RawConnection(process.port)
    assert connection.call("SET", "small", "1") == b"+OK\r\n"
    connection.send(srv.bulk_array([b"SET", b"big", b"x" * 200_000]))
    assert connection.is_closed_by_server() or wait_until(connection.is_closed_by_server)
    assert connection.buffer == b""  # no reply promised what the disk did not take
    assert process.wait() == 1
    assert "Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting..." in process.output()


def test_a_flushall_replayed_from_a_log_that_then_fails_saves_nothing(start_server, tmp_path):
    process = start_server()
    redis.Redis(port=process.port).set("in-snapshot", "1")
    process.stop()
    snapshot = (tmp_path / "dump.json").read_bytes()
    (tmp_path / "appendonly.aof").write_bytes(encode(["SET", "a", "1"], ["FLUSHALL"]) + b"garbage\r\n")
    failed = start_server("--appendonly", "yes")  # save rules on: a FLUSHALL saves, except while loading
    assert failed.wait() == 1
    assert (tmp_path / "dump.json").read_bytes() == snapshot


def test_a_failed_rewrite_keeps_the_old_log_and_says_so(start_server, tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    process = start_server("--appendonly", "yes", "--save", "", directory=directory)
    client = redis.Redis(port=process.port)
    client.set("k", "v")
    shutil.rmtree(directory)  # the child cannot create its file; the open log goes on, unlinked
    assert client.bgrewriteaof() is True
    assert wait_until(lambda: client.info("persistence")["aof_rewrites"] == 1, timeout=30)
    info = client.info("persistence")
    assert info["aof_last_bgrewrite_status"] == "err" and info["aof_rewrites_consecutive_failures"] == 1
    assert "Background AOF rewrite terminated with error" in process.output()
    assert client.set("still", "logging") is True
    assert client.info("persistence")["aof_last_write_status"] == "ok"


def test_a_huge_length_at_the_end_of_the_log_reads_nothing_more(tmp_path):
    path = tmp_path / "appendonly.aof"
    path.write_bytes(b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$536870000\r\nxx")  # a 512 MB value, cut after 2 bytes
    tracemalloc.start()
    try:
        with open(path, "rb") as file, pytest.raises(srv.AofError) as failure:
            list(srv.read_aof_commands(file))
        assert tracemalloc.get_traced_memory()[1] < 1024 * 1024
    finally:
        tracemalloc.stop()
    assert failure.value.truncated and failure.value.offset == 0


def test_a_transaction_is_logged_as_one_block_and_replayed(start_server, tmp_path):
    process = start_server("--appendonly", "yes")
    connection = RawConnection(process.port)
    for command in (["MULTI"], ["SET", "a", "1"], ["INCR", "n"], ["GET", "a"], ["SELECT", "2"], ["SET", "b", "2"],
                    ["EXEC"], ["SELECT", "0"], ["MULTI"], ["SET", "single", "1"], ["GET", "single"], ["EXEC"],
                    ["WATCH", "a"], ["SET", "a", "changed"], ["MULTI"], ["SET", "never", "1"], ["EXEC"]):
        connection.call(*command)
    path = tmp_path / "appendonly.aof"
    # Two writes: MULTI/EXEC around them; one write alone: no wrapping, as Redis 7.0 does; a failed EXEC: nothing.
    assert logged(path) == [[b"SELECT", b"0"], [b"MULTI"], [b"SET", b"a", b"1"], [b"INCR", b"n"],
                            [b"SELECT", b"2"], [b"SET", b"b", b"2"], [b"EXEC"], [b"SELECT", b"0"],
                            [b"SET", b"single", b"1"], [b"SET", b"a", b"changed"]]
    before = dataset(process.port)
    connection.close()
    process.kill()
    restarted = start_server("--appendonly", "yes")
    assert dataset(restarted.port) == before


def test_bgsave_and_bgrewriteaof_inside_exec_are_scheduled_and_the_rewrite_logs_the_transaction_once(pair):
    # Forked in the middle of EXEC, a child would save half a transaction, and the rewrite's copy of what
    # is logged meanwhile would get the transaction's writes its data already holds. Redis schedules both.
    servers = pair("--appendonly", "yes", "--save", "")
    replies = []
    for connection in (servers.ours, servers.theirs):
        replies.append([connection.call(*command) for command in
                        (["INCR", "n"], ["MULTI"], ["INCR", "n"], ["BGSAVE"], ["BGREWRITEAOF"], ["EXEC"])])
        assert wait_until(lambda c=connection: b"aof_rewrites:1" in c.call("INFO", "persistence")
                          and b"rdb_saves:1" in c.call("INFO", "persistence"), timeout=30)
    assert replies[0] == replies[1]
    assert replies[0][-1] == (b"*3\r\n:2\r\n+Background saving scheduled\r\n"
                              b"+Background append only file rewriting scheduled\r\n")
    assert [args for args in logged(servers.ours_dir / "appendonly.aof") if args[0] != b"SELECT"] == [
        [b"SET", b"n", b"2"]]  # the rewrite, after the transaction: no INCR replayed on top of it


def test_aof_buffer_length_counts_what_the_file_will_get(tmp_path):
    ready = srv.AppendOnlyFile(str(tmp_path / "ready.aof"), "everysec")
    waiting = srv.AppendOnlyFile(str(tmp_path / "waiting.aof"), "everysec", file_ready=False)  # the first rewrite
    for aof in (ready, waiting):  # has yet to make it: what is logged goes to that rewrite's copy only
        aof.feed(0, [b"SET", b"k", b"v"])
    assert srv.aof_buffer_length(ready) == len(srv.bulk_array([b"SELECT", b"0"]) + srv.bulk_array([b"SET", b"k", b"v"]))
    assert srv.aof_buffer_length(waiting) == 0
    ready.close()


def pipeline(*commands: list[str | bytes]) -> bytes:
    return encode(*commands)


PIPELINES = [
    [["SET", "a", "1"], ["SET", "b", "2"], ["INCR", "n"], ["APPEND", "a", "x"]],  # logged as they came
    [["set", "lower", "1"], ["SeT", "mixed", "2"]],  # logged as sent, whatever the case
    [["SELECT", "1"], ["SET", "a", "1"], ["SET", "b", "2"]],  # a SELECT goes in first
    [["SET", "c", "1"], ["SET", "d", "2"]],  # in database 1: no SELECT in the log
    [["SELECT", "0"], ["SET", "a", "1"], ["GET", "a"], ["SET", "b", "2"]],  # a read among them
    [["SETNX", "a", "1"], ["SET", "z", "9"]],  # one that changes nothing
    [["MULTI"], ["SET", "a", "1"], ["SET", "b", "2"], ["EXEC"]],  # logged as one block
    [["MULTI"], ["SET", "a", "1"], ["EXEC"], ["SET", "e", "1", "PXAT", "1"]],  # PXAT in the past: a DEL
    [["INCRBYFLOAT", "f", "1.5"], ["SET", "g", "1"]],  # logged in another form
    [["SET", "h", "3", "PXAT", "4102444800000"], ["GETSET", "i", "4"]],  # GETSET is logged as SET
    [["SET", "crlf", "a\r\nb"], ["SET", "j", "1"]],  # a payload the shortcut leaves to the careful parser
    [["SET", "big", "x" * 5000], ["SET", "k", "1"]],  # past the shortcut's tables
    [["SET", "gone", "v", "PXAT", "<soon>"]],
    [["SET", "l", "1"], ["APPEND", "gone", "w"]],  # the key expired: its DEL and the APPEND as one block
    [["DEL", "a", "b"], ["FLUSHDB"], ["SET", "a", "after"]],
]


def test_pipelines_logged_as_they_came_give_the_same_file_as_encoding_them(start_server, tmp_path):
    """Appendix D's shortcut logs a pipeline's own bytes: the file must be the one encoding gives, byte for byte."""
    (tmp_path / "plain").mkdir()
    servers = [start_server("--appendonly", "yes"),
               start_server("--appendonly", "yes", "--parser-shortcut", "no", directory=tmp_path / "plain")]
    connections = [RawConnection(process.port) for process in servers]
    for connection in connections:
        connection.call("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    soon = srv.now_ms() + 500  # when "gone" expires: the same absolute time for both servers
    for commands in PIPELINES:
        commands = [[str(soon) if arg == "<soon>" else arg for arg in args] for args in commands]
        data = pipeline(*commands)
        for connection in connections:
            middle = len(encode(commands[0])) + 3  # a read ends inside the second request
            connection.send(data[:middle])
            time.sleep(0.01)
            connection.send(data[middle:])
            assert not any(connection.read_reply().startswith(b"-") for _ in commands)
        for connection in connections:
            connection.send(data * 2)  # and the same again, in one read
            assert not any(connection.read_reply().startswith(b"-") for _ in range(2 * len(commands)))
        if commands[0][1:2] == ["gone"]:
            time.sleep(max(soon - srv.now_ms() + 10, 0) / 1000)
    data = pipeline(["SET", "m", "1"], ["SET", "n", "2"]) + b"SET o 3\r\n"  # an inline request after it
    for connection in connections:
        connection.send(data)
        assert [connection.read_reply() for _ in range(3)] == [b"+OK\r\n"] * 3
    for connection in connections:
        connection.close()
    for process in servers:
        assert process.stop() == 0
    ours, plain = (tmp_path / "appendonly.aof").read_bytes(), (tmp_path / "plain" / "appendonly.aof").read_bytes()
    assert ours == plain
    assert [b"APPEND", b"l", b"w"] not in logged(tmp_path / "appendonly.aof")
    assert [b"DEL", b"gone"] in logged(tmp_path / "appendonly.aof")
