"""Background snapshots (chapter 7): BGSAVE in a forked child, save rules, MISCONF, SHUTDOWN's options, CONFIG SET.

Replies and error texts are compared with a real redis-server where they are Redis's; tests that need
one skip themselves where redis-server is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading

import pytest
import redis
from conftest import RawConnection, Responsiveness, ServerProcess, requires_redis_server, wait_until

import server as srv

MISCONF = (b"-MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. "
           b"Commands that may modify the data set are disabled, because this instance is configured to report "
           b"errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the "
           b"Redis logs for details about the RDB error.\r\n")


def info_field(connection: RawConnection, name: str) -> str:
    reply = connection.call("INFO", "persistence").decode()
    return re.search(rf"^{name}:(.*)\r$", reply, re.MULTILINE)[1]


def bgsave_finished(connection: RawConnection) -> bool:
    return info_field(connection, "rdb_bgsave_in_progress") == "0"


def wait_for_log(process, pattern: str) -> re.Match:
    """The first match of pattern in the server's log, once the line has arrived."""
    assert wait_until(lambda: re.search(pattern, process.output()) is not None), pattern
    return re.search(pattern, process.output())


def fill(port: int, keys: int) -> None:
    """key:0 = 0, key:1 = 1..., ten thousand to an MSET."""
    client = redis.Redis(port=port)
    for start in range(0, keys, 10_000):
        client.mset({f"key:{n}": n for n in range(start, min(start + 10_000, keys))})
    client.close()


def snapshot_entries(path) -> dict[str, str]:
    document = json.loads(path.read_text())
    return {key: value for _, key, value, _ in document["entries"]}



def same_replies(ours: RawConnection, theirs: RawConnection, *commands: list[str]) -> None:
    for command in commands:
        assert ours.call(*command) == theirs.call(*command), command


# --- BGSAVE, SAVE, LASTSAVE -----------------------------------------------------


@requires_redis_server
def test_bgsave_replies_match_redis(both):
    ours, theirs = both
    same_replies(ours, theirs, ["BGSAVE", "foo"], ["BGSAVE", "SCHEDULE", "x"], ["BGSAVE", "schedule", "now"])
    for connection in (ours, theirs):
        connection.call("SET", "k", "v")
    # The child is reaped only by the next cron tick: the commands of one pipeline all find it running.
    pipeline = [["BGSAVE"], ["BGSAVE"], ["BGSAVE", "SCHEDULE"], ["SAVE"]]
    replies = []
    for connection in (ours, theirs):
        connection.send(b"".join(srv.bulk_array([arg.encode() for arg in command]) for command in pipeline))
        replies.append([connection.read_reply() for _ in pipeline])
    assert replies[0] == replies[1] == [b"+Background saving started\r\n",
                                        b"-ERR Background save already in progress\r\n",
                                        b"-ERR Background save already in progress\r\n",
                                        b"-ERR Background save already in progress\r\n"]
    for connection in (ours, theirs):
        assert wait_until(lambda connection=connection: bgsave_finished(connection))
        assert info_field(connection, "rdb_last_bgsave_status") == "ok"
    # With no child running, BGSAVE SCHEDULE starts one at once.
    assert ours.call("BGSAVE", "SCHEDULE") == theirs.call("BGSAVE", "SCHEDULE") == b"+Background saving started\r\n"


def test_bgsave_updates_lastsave_info_and_the_file(start_server, tmp_path):
    process = start_server("--save", "")
    connection = RawConnection(process.port)
    connection.call("SET", "name", "Alice")
    assert info_field(connection, "rdb_last_bgsave_time_sec") == "-1"
    before = int(connection.call("LASTSAVE")[1:])
    assert connection.call("BGSAVE") == b"+Background saving started\r\n"
    assert wait_until(lambda: bgsave_finished(connection))
    assert int(connection.call("LASTSAVE")[1:]) >= before
    assert snapshot_entries(tmp_path / "dump.json") == {"name": "Alice"}
    assert info_field(connection, "rdb_changes_since_last_save") == "0"
    assert info_field(connection, "rdb_last_bgsave_status") == "ok"
    assert info_field(connection, "rdb_saves") == "1"
    assert info_field(connection, "rdb_last_bgsave_time_sec") in ("0", "1")  # whole seconds, as Redis counts
    child_pid = wait_for_log(process, r"Background saving started by pid (\d+)")[1]
    assert wait_for_log(process, f"{child_pid}:C .* DB saved on disk")  # the child's own line, marked as Redis does
    assert wait_for_log(process, "Background saving terminated with success")


def test_bgsave_writes_the_data_as_it_was_while_writers_go_on_and_pings_are_answered(start_server, tmp_path):
    process = start_server("--save", "")
    fill(process.port, 200_000)
    connection = RawConnection(process.port)
    stop = threading.Event()
    written = []

    def writer() -> None:
        client = redis.Redis(port=process.port)
        n = 0
        while not stop.is_set():
            client.set(f"key:{n % 1000}", "changed")  # overwrites keys the snapshot holds
            client.set(f"after:{n}", n)
            written.append(n)
            n += 1
        client.close()

    thread = threading.Thread(target=writer)
    with Responsiveness(process.port, max_latency=1.0):
        thread.start()
        assert wait_until(lambda: len(written) > 10)
        assert connection.call("BGSAVE") == b"+Background saving started\r\n"
        writes_at_fork = len(written)
        assert wait_until(lambda: bgsave_finished(connection), timeout=60)
        stop.set()
        thread.join()
    assert len(written) > writes_at_fork  # the server went on taking writes while the child saved
    assert info_field(connection, "rdb_last_bgsave_status") == "ok"
    entries = snapshot_entries(tmp_path / "dump.json")
    assert all(entries[f"key:{n}"] == str(n) for n in range(1000, 200_000))
    # The snapshot is the data at the fork: no write that came after it is in the file.
    after = sorted(int(key.split(":")[1]) for key in entries if key.startswith("after:"))
    assert after == list(range(len(after))) and len(after) <= writes_at_fork + 1
    assert not list(tmp_path.glob("temp-*"))

    restarted = start_server("--save", "", directory=tmp_path)  # and it loads
    assert redis.Redis(port=restarted.port).get("key:199999") == b"199999"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to see the child's files")
def test_a_client_closed_during_a_bgsave_sees_the_close_at_once(start_server):
    # The child closes the sockets it inherited: otherwise a connection the server closes would stay
    # open until the child exits.
    process = start_server("--save", "")
    fill(process.port, 100_000)
    connection = RawConnection(process.port)
    leaving = RawConnection(process.port)
    assert connection.call("BGSAVE") == b"+Background saving started\r\n"
    child_pid = int(wait_for_log(process, r"Background saving started by pid (\d+)")[1])
    # stdin, stdout, stderr and the file it writes: nothing else of the server's.
    assert wait_until(lambda: len(os.listdir(f"/proc/{child_pid}/fd")) <= 4)
    os.kill(child_pid, signal.SIGSTOP)  # so that it cannot finish before the client is gone
    try:
        assert leaving.call("QUIT") == b"+OK\r\n"
        leaving.sock.settimeout(2.0)
        assert leaving.sock.recv(1) == b""  # closed, while the child still runs
        assert info_field(connection, "rdb_bgsave_in_progress") == "1"
    finally:
        os.kill(child_pid, signal.SIGCONT)
    assert wait_until(lambda: bgsave_finished(connection), timeout=30)


def test_save_is_refused_while_a_bgsave_runs_and_allowed_after(start_server):
    process = start_server("--save", "")
    connection = RawConnection(process.port)
    connection.send(b"BGSAVE\r\nSAVE\r\n")
    assert connection.read_reply() == b"+Background saving started\r\n"
    assert connection.read_reply() == b"-ERR Background save already in progress\r\n"
    assert wait_until(lambda: bgsave_finished(connection))
    assert connection.call("SAVE") == b"+OK\r\n"
    assert info_field(connection, "rdb_saves") == "2"


def test_bgsave_from_a_server_running_in_a_thread(tmp_path):
    # server.running() serves from a thread of the test's process: the child is a copy of all of it.
    with srv.running(0, str(tmp_path)) as (host, port):
        client = redis.Redis(host=host, port=port)
        client.set("k", "v")
        assert client.bgsave() is True
        assert wait_until(lambda: client.info("persistence")["rdb_bgsave_in_progress"] == 0)
        assert client.info("persistence")["rdb_last_bgsave_status"] == "ok"
        assert snapshot_entries(tmp_path / "dump.json") == {"k": "v"}
        client.close()


def test_without_fork_bgsave_runs_in_the_foreground(tmp_path, monkeypatch, caplog):
    monkeypatch.delattr(os, "fork")
    with srv.running(0, str(tmp_path)) as (host, port):
        client = redis.Redis(host=host, port=port)
        client.set("k", "v")
        assert client.bgsave() is True
        assert snapshot_entries(tmp_path / "dump.json") == {"k": "v"}  # already written: it ran in the foreground
        assert client.info("persistence")["rdb_last_bgsave_status"] == "ok"
        assert client.info("persistence")["rdb_changes_since_last_save"] == 0
    assert "No fork() on this system" in caplog.text


# --- A failed background save: MISCONF --------------------------------------------


@requires_redis_server
def test_a_failed_bgsave_refuses_writes_and_ping_until_a_save_succeeds_as_redis(pair):
    servers = pair("--save", "3600 1")
    ours, theirs = servers.ours, servers.theirs
    for connection in (ours, theirs):
        connection.call("SET", "kept", "1")
    # The snapshot's name is taken by a directory: the rename that ends every save fails, as it would
    # on a full disk (chmod would not do: the tests may run as root).
    (servers.ours_dir / "dump.json" / "blocker").mkdir(parents=True)
    (servers.theirs_dir / "dump.rdb" / "blocker").mkdir(parents=True)
    for connection in (ours, theirs):
        assert connection.call("BGSAVE") == b"+Background saving started\r\n"
        assert wait_until(lambda connection=connection: info_field(connection, "rdb_last_bgsave_status") == "err")
    refused = [["SET", "k", "v"], ["DEL", "kept"], ["INCR", "n"], ["FLUSHALL"], ["PING"], ["EXPIRE", "kept", "5"]]
    for command in refused:
        assert ours.call(*command) == theirs.call(*command) == MISCONF, command
    same_replies(ours, theirs, ["GET", "kept"], ["EXISTS", "kept"], ["DBSIZE"], ["SET", "k"],  # arity comes first
                 ["CONFIG", "GET", "stop-writes-on-bgsave-error"],
                 ["CONFIG", "SET", "stop-writes-on-bgsave-error", "no"], ["SET", "k", "1"], ["PING"],
                 ["CONFIG", "SET", "stop-writes-on-bgsave-error", "yes"], ["SET", "k", "2"],
                 ["CONFIG", "SET", "save", ""], ["SET", "k", "3"],  # no save rules: no MISCONF
                 ["CONFIG", "SET", "save", "3600 1"], ["SET", "k", "4"],
                 ["SAVE"])  # fails too: "-ERR"
    assert info_field(ours, "rdb_last_bgsave_status") == info_field(theirs, "rdb_last_bgsave_status") == "err"
    shutil.rmtree(servers.ours_dir / "dump.json")
    shutil.rmtree(servers.theirs_dir / "dump.rdb")
    same_replies(ours, theirs, ["SAVE"], ["SET", "k", "5"], ["GET", "k"], ["PING"])
    assert info_field(ours, "rdb_last_bgsave_status") == "ok"


def test_a_bgsave_into_a_removed_folder_gives_misconf_and_a_good_bgsave_clears_it(start_server, tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    process = start_server(directory=directory)
    client = redis.Redis(port=process.port)
    client.set("kept", "1")
    shutil.rmtree(directory)
    connection = RawConnection(process.port)
    assert connection.call("BGSAVE") == b"+Background saving started\r\n"
    assert wait_until(lambda: info_field(connection, "rdb_last_bgsave_status") == "err")
    assert connection.call("SET", "k", "v") == MISCONF
    assert connection.call("GET", "kept") == b"$1\r\n1\r\n"  # reads go on
    assert wait_for_log(process, "Background saving error")
    assert "No such file or directory" in process.output()  # the child's line, which came first
    directory.mkdir()
    assert connection.call("BGSAVE") == b"+Background saving started\r\n"
    assert wait_until(lambda: info_field(connection, "rdb_last_bgsave_status") == "ok")
    assert connection.call("SET", "k", "v") == b"+OK\r\n"
    assert snapshot_entries(directory / "dump.json") == {"kept": "1"}


def start_long_bgsave(start_server) -> tuple[ServerProcess, RawConnection, int]:
    """A server with 200,000 keys that has started a BGSAVE: it, a connection, and the child's pid."""
    process = start_server()
    fill(process.port, 200_000)
    connection = RawConnection(process.port)
    assert connection.call("BGSAVE") == b"+Background saving started\r\n"
    return process, connection, int(wait_for_log(process, r"Background saving started by pid (\d+)")[1])


def test_a_bgsave_child_killed_by_a_signal_is_a_failed_save(start_server, tmp_path):
    process, connection, child_pid = start_long_bgsave(start_server)
    os.kill(child_pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    assert wait_until(lambda: info_field(connection, "rdb_last_bgsave_status") == "err")
    assert connection.call("SET", "k", "v") == MISCONF
    assert wait_for_log(process, f"Background rdb child {child_pid} terminated by signal 9")
    assert not list(tmp_path.glob("temp-*"))  # the server removed what the child left


def test_a_bgsave_child_stopped_by_sigterm_removes_its_unfinished_file(start_server, tmp_path):
    process, connection, child_pid = start_long_bgsave(start_server)
    assert wait_until(lambda: (tmp_path / f"temp-{child_pid}.json").exists())
    os.kill(child_pid, signal.SIGTERM)
    assert wait_until(lambda: info_field(connection, "rdb_last_bgsave_status") == "err")
    assert not (tmp_path / f"temp-{child_pid}.json").exists()
    assert "Traceback" not in process.output()


def test_a_failed_fork_is_a_failed_save(tmp_path, monkeypatch):
    def no_memory() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_memory)
    with srv.running(0, str(tmp_path)) as (host, port):
        connection = RawConnection(port)
        assert connection.call("BGSAVE") == b"-ERR\r\n"  # Redis's bare "-ERR"
        assert info_field(connection, "rdb_last_bgsave_status") == "err"
        assert connection.call("SET", "k", "v") == MISCONF
        assert connection.call("SAVE") == b"+OK\r\n"  # a good save ends it
        assert connection.call("SET", "k", "v") == b"+OK\r\n"
        connection.close()


# --- Save rules -------------------------------------------------------------------


def test_a_save_rule_fires_from_the_cron(start_server, tmp_path):
    process = start_server("--save", "1", "1")  # redis-server's way: the pairs as separate arguments
    connection = RawConnection(process.port)
    assert connection.call("CONFIG", "GET", "save") == b"*2\r\n$4\r\nsave\r\n$3\r\n1 1\r\n"
    before = connection.call("LASTSAVE")
    connection.call("SET", "k", "v")
    assert wait_until(lambda: connection.call("LASTSAVE") != before, timeout=10)
    assert wait_for_log(process, r"1 changes in 1 seconds\. Saving\.\.\.")
    assert wait_until(lambda: bgsave_finished(connection))
    assert snapshot_entries(tmp_path / "dump.json") == {"k": "v"}


def test_config_set_save_turns_the_rules_on_at_runtime(start_server, tmp_path):
    process = start_server("--save", "")
    connection = RawConnection(process.port)
    connection.call("SET", "k", "v")
    before = connection.call("LASTSAVE")
    assert connection.call("CONFIG", "SET", "save", "1 1") == b"+OK\r\n"
    assert wait_until(lambda: connection.call("LASTSAVE") != before, timeout=10)
    assert wait_until(lambda: (tmp_path / "dump.json").exists())


def test_a_failed_background_save_is_retried_after_the_delay_not_at_every_tick(tmp_path, monkeypatch):
    server = srv.Server(srv.parse_options(["--dir", str(tmp_path), "--save", "1 1"]))
    started = []
    monkeypatch.setattr(srv, "background_save", lambda server: started.append(True))
    server.keyspace.databases[0].set(b"k", b"v")
    server.last_save = server.last_bgsave_try = 1_000
    server.last_bgsave_ok = False
    srv.save_if_due(server, 1_000 + srv.CONFIG_BGSAVE_RETRY_DELAY)
    assert started == []  # the rule is due, but the last try failed too recently
    srv.save_if_due(server, 1_000 + srv.CONFIG_BGSAVE_RETRY_DELAY + 1)
    assert started == [True]
    server.last_bgsave_ok, started[:] = True, []
    server.last_save = 2_000
    srv.save_if_due(server, 2_001)  # one second is not *more* than one second
    assert started == []
    srv.save_if_due(server, 2_002)
    assert started == [True]


@pytest.mark.parametrize("value", ["1", "a b", "0 1", "-1 5", "1 -5", " 3 4 ", "5  3", "3 4 5", "+ 1", "1x 1"])
def test_bad_save_flags_refuse_to_start(tmp_path, value):
    with pytest.raises(SystemExit):
        srv.parse_options(["--save", value])


@pytest.mark.parametrize("flags, error", [(["--maxclients", "0", "--save", "bogus"], "--maxclients must be at least 1"),
                                          (["--timeout", "-1", "--save", "1"], "--timeout must be at least 0"),
                                          (["--save", "1", "--notify-keyspace-events", "Z"], "--save: Invalid")])
def test_bad_flags_are_reported_in_a_fixed_order(capsys, flags, error):
    with pytest.raises(SystemExit):
        srv.parse_options(flags)
    assert error in capsys.readouterr().err


def test_save_rules_parse_as_redis_reads_them():
    assert srv.parse_save_rules(b"").rules == []
    assert srv.parse_save_rules(b"3600 1 300 100").rules == [(3600, 1), (300, 100)]
    assert srv.parse_save_rules(b"5 ").rules == [(5, 0)]  # an empty piece reads as 0, which a count may be
    assert srv.parse_save_rules(b"5 +3").rules == [(5, 3)]
    assert srv.parse_save_rules(b"5 \t7").rules == [(5, 7)]
    assert srv.parse_save_rules(b"5 4294967297").rules == [(5, 1)]  # kept in a C int
    assert srv.parse_save_rules(b"99999999999999999999 1").rules == [(srv.LLONG_MAX, 1)]


def test_the_due_save_rule_is_the_one_redis_would_find():
    rules = srv.parse_save_rules(b"3600 1 300 100 60 10000")
    assert rules.due(seconds_since_save=60, changes=10**6) is None  # "more than 60 seconds"
    assert rules.due(seconds_since_save=61, changes=10_000) == (60, 10000)
    assert rules.due(seconds_since_save=61, changes=9_999) is None
    assert rules.due(seconds_since_save=301, changes=100) == (300, 100)
    assert rules.due(seconds_since_save=3601, changes=1) == (3600, 1)
    assert rules.due(seconds_since_save=10**9, changes=0) is None
    assert srv.SaveRules([]).due(10**9, 10**9) is None


def test_many_save_rules_are_checked_as_one(start_server):
    process = start_server("--save", "")
    connection = RawConnection(process.port)
    connection.call("SET", "k", "v")
    with Responsiveness(process.port):
        assert connection.call("CONFIG", "SET", "save", "100 1 " * 200_000 + "1 1") == b"+OK\r\n"
        assert wait_until(lambda: "1 changes in 1 seconds. Saving..." in process.output(), timeout=10)


# --- CONFIG SET -------------------------------------------------------------------


@requires_redis_server
def test_config_set_replies_match_redis(pair):
    servers = pair("--save", "")
    same_replies(
        servers.ours, servers.theirs,
        ["CONFIG", "SET"], ["CONFIG", "SET", "save"], ["CONFIG", "SET", "save", "1 2", "foo"],
        ["CONFIG", "SET", "nosuch", "1"], ["CONFIG", "SET", "save", "1 1", "nosuch", "1"],
        ["CONFIG", "SET", "nosuch", "1", "databases", "3"], ["CONFIG", "SET", "databases", "3"],
        ["CONFIG", "SET", "save", "1"], ["CONFIG", "SET", "save", "a b"], ["CONFIG", "SET", "save", "-1 5"],
        ["CONFIG", "SET", "save", "1 -5"], ["CONFIG", "SET", "save", "0 0"], ["CONFIG", "SET", "save", " 3 4 "],
        ["CONFIG", "SET", "save", "3 4 5"], ["CONFIG", "SET", "save", "5  3"], ["CONFIG", "GET", "save"],
        ["CONFIG", "SET", "save", "10 1", "save", "20 2"], ["CONFIG", "SET", "SAVE", "10 1", "Save", "20 2"],
        ["CONFIG", "SET", "stop-writes-on-bgsave-error", "maybe"],
        ["CONFIG", "SET", "save", "7 7", "stop-writes-on-bgsave-error", "maybe"],  # all or nothing
        ["CONFIG", "GET", "save"], ["CONFIG", "GET", "stop-writes-on-bgsave-error"],
        ["CONFIG", "SET", "save", "100 1 50 10", "stop-writes-on-bgsave-error", "NO"],
        ["CONFIG", "GET", "save"], ["CONFIG", "GET", "stop-writes-on-bgsave-error"],
        ["CONFIG", "SET", "SAVE", "5 "], ["CONFIG", "GET", "save"], ["CONFIG", "SET", "save", "5 4294967297"],
        ["CONFIG", "GET", "save"], ["CONFIG", "SET", "save", ""], ["CONFIG", "GET", "save"],
        ["CONFIG", "SET", "save", "3600 1 300 100 60 10000"], ["CONFIG", "GET", "save"],
    )


def test_config_set_undoes_every_change_when_an_apply_function_fails(tmp_path, monkeypatch):
    def refuse(server: srv.Server) -> None:
        raise srv.ConfigError("Unable to apply")

    monkeypatch.setitem(srv.SETTABLE_PARAMETERS, "stop-writes-on-bgsave-error",
                        srv.Parameter("stop_writes_on_bgsave_error", srv.parse_yes_no, apply=refuse))
    with srv.running(0, str(tmp_path)) as (host, port):
        connection = RawConnection(port)
        reply = connection.call("CONFIG", "SET", "save", "7 7", "stop-writes-on-bgsave-error", "no")
        assert reply == (b"-ERR CONFIG SET failed (possibly related to argument 'stop-writes-on-bgsave-error') - "
                         b"Unable to apply\r\n")
        assert connection.call("CONFIG", "GET", "save") == b"*2\r\n$4\r\nsave\r\n$23\r\n3600 1 300 100 60 10000\r\n"
        assert connection.call("CONFIG", "GET", "stop-writes-on-bgsave-error").endswith(b"$3\r\nyes\r\n")
        connection.close()


# --- SHUTDOWN ---------------------------------------------------------------------


@requires_redis_server
def test_shutdown_syntax_matches_redis(pair):
    servers = pair("--save", "")
    same_replies(servers.ours, servers.theirs, ["SHUTDOWN", "ABORT"], ["SHUTDOWN", "abort", "abort"],
                 ["SHUTDOWN", "ABORT", "NOW"], ["SHUTDOWN", "ABORT", "NOSAVE"], ["SHUTDOWN", "SAVE", "NOSAVE"],
                 ["SHUTDOWN", "foo"], ["SHUTDOWN", "NOW", "FORCE", "bar"], ["PING"])


@pytest.mark.parametrize(("flags", "command", "saved"), [
    (["--save", ""], ["SHUTDOWN"], False),  # no save rules: a plain SHUTDOWN does not save
    (["--save", ""], ["SHUTDOWN", "SAVE"], True),
    ([], ["SHUTDOWN", "NOSAVE"], False),
    ([], ["SHUTDOWN", "NOW"], True),
    ([], ["SHUTDOWN", "now", "force", "save"], True),
])
def test_shutdown_saves_as_its_options_say(start_server, tmp_path, flags, command, saved):
    process = start_server(*flags)
    connection = RawConnection(process.port)
    connection.call("SET", "k", "v")
    connection.send(srv.bulk_array([arg.encode() for arg in command]))
    assert connection.is_closed_by_server()
    assert process.wait() == 0
    assert (tmp_path / "dump.json").exists() == saved


def test_sigterm_without_save_rules_exits_without_saving(start_server, tmp_path):
    process = start_server("--save", "")
    redis.Redis(port=process.port).set("k", "v")
    assert process.stop(signal.SIGTERM) == 0
    assert not (tmp_path / "dump.json").exists()


def test_shutdown_force_exits_even_when_the_save_fails(start_server, tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    process = start_server(directory=directory)
    connection = RawConnection(process.port)
    connection.call("SET", "k", "v")
    shutil.rmtree(directory)
    assert connection.call("SHUTDOWN") == b"-ERR Errors trying to SHUTDOWN. Check logs.\r\n"
    connection.send(b"SHUTDOWN FORCE\r\n")
    assert connection.is_closed_by_server()
    assert process.wait() == 1  # the exit code says that the changes were lost
    assert "every change since the last successful save is lost" in process.output()


def test_shutdown_kills_a_running_bgsave_child(start_server, tmp_path):
    process = start_server("--save", "")
    fill(process.port, 200_000)
    connection = RawConnection(process.port)
    # One read, so one pass of the event loop: the child is surely still running at the SHUTDOWN. (As in
    # Redis, the server exits before it writes the BGSAVE's reply.)
    connection.send(b"BGSAVE\r\nSHUTDOWN NOSAVE\r\n")
    assert connection.is_closed_by_server()
    assert process.wait() == 0
    log = process.output()
    child_pid = int(wait_for_log(process, r"Background saving started by pid (\d+)")[1])
    assert f"There is a child rdb process (pid {child_pid}). Killing it!" in log
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)  # gone, and reaped
    assert not list(tmp_path.glob("temp-*"))  # the child removed its unfinished file
    assert not (tmp_path / "dump.json").exists()


# --- FLUSHALL and INFO --------------------------------------------------------------


@requires_redis_server
def test_flushall_with_save_rules_saves_the_empty_dataset_as_redis(pair):
    servers = pair("--save", "3600 1")
    for connection in (servers.ours, servers.theirs):
        connection.call("SET", "k", "v")
        assert info_field(connection, "rdb_changes_since_last_save") == "1"
        assert connection.call("FLUSHALL") == b"+OK\r\n"
        assert info_field(connection, "rdb_changes_since_last_save") == "0"
    assert snapshot_entries(servers.ours_dir / "dump.json") == {}
    assert (servers.theirs_dir / "dump.rdb").exists()


@requires_redis_server
def test_info_persistence_has_redis_fields_in_redis_order(both):
    ours, theirs = both

    def names(connection: RawConnection) -> list[str]:
        lines = connection.call("INFO", "persistence").decode().split("\r\n")[2:]
        return [line.split(":")[0] for line in lines if ":" in line]

    assert names(ours) == names(theirs)
