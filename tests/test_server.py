"""End-to-end tests: python server.py as a subprocess, driven through redis-py and raw sockets."""

import concurrent.futures
import socket
import subprocess
import sys
import time

import pytest
import redis
from conftest import ROOT, RawConnection, wait_until

from client import encode_request

# --- Running it ---------------------------------------------------------------


def test_help_documents_the_flags():
    result = subprocess.run([sys.executable, str(ROOT / "server.py"), "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0
    for flag in ("--port", "--bind", "--dir", "--dbfilename", "--save", "--stop-writes-on-bgsave-error", "--loglevel"):
        assert flag in result.stdout


def test_startup_line_names_version_pid_address_and_dump_file(start_server, tmp_path):
    process = start_server()
    line = next(line for line in process.output().splitlines() if "ready to accept connections" in line)
    assert "Educational Redis Clone" in line and "7.0.15" in line
    assert f"pid {process.process.pid}" in line
    assert str(tmp_path / "dump.json") in line
    assert f"127.0.0.1:{process.port}" in line


def test_port_zero_picks_a_free_port_and_config_reports_the_real_settings(start_server, tmp_path):
    process = start_server("--dbfilename", "data.json")
    assert process.port > 0
    client = redis.Redis(port=process.port)
    config = client.config_get("*")
    assert config["port"] == str(process.port)
    assert config["bind"] == "127.0.0.1"
    assert config["dir"] == str(tmp_path)
    assert config["dbfilename"] == "data.json"
    assert config["appendonly"] == "no"
    assert client.config_get("d*") == {"dir": str(tmp_path), "dbfilename": "data.json", "databases": "16"}


def test_sigterm_saves_and_exits_zero(start_server, tmp_path):
    process = start_server()
    redis.Redis(port=process.port).set("name", "Alice")
    assert process.stop() == 0
    assert '"name"' in (tmp_path / "dump.json").read_text()
    assert "ready to exit" in process.output()


def test_sigint_also_shuts_down_gracefully(start_server, tmp_path):
    import signal

    process = start_server()
    redis.Redis(port=process.port).set("k", "v")
    assert process.stop(signal.SIGINT) == 0
    assert (tmp_path / "dump.json").exists()


def test_shutdown_lets_a_pipelined_burst_finish(start_server):
    process = start_server()
    connection = RawConnection(process.port)
    connection.send(b"".join(b"*3\r\n$3\r\nSET\r\n$4\r\nk%03d\r\n$1\r\nv\r\n" % i for i in range(500)))
    replies = [connection.read_reply() for _ in range(500)]
    assert set(replies) == {b"+OK\r\n"}
    assert process.stop() == 0
    restarted = start_server()
    assert redis.Redis(port=restarted.port).dbsize() == 500


def test_shutdown_command(start_server, tmp_path):
    process = start_server()
    client = redis.Redis(port=process.port)
    client.set("k", "v")
    client.shutdown()  # redis-py expects the connection to just close, as Redis does
    assert process.wait() == 0
    assert (tmp_path / "dump.json").exists()


def test_busy_port_is_reported(server, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "server.py"), "--port", str(server.port), "--dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"Cannot listen on 127.0.0.1 port {server.port}" in result.stdout


# --- redis-py with its defaults (RESP3) and with RESP2 ---------------------------


@pytest.mark.parametrize("client_fixture", ["r", "r2"])
def test_everyday_commands(request, client_fixture):
    client = request.getfixturevalue(client_fixture)
    assert client.ping() is True
    assert client.set("name", "Alice") is True
    assert client.get("name") == b"Alice"
    assert client.get("missing") is None
    assert client.set("name", "Bob", nx=True) is None
    assert client.set("name", "Bob", xx=True, get=True) == b"Alice"
    assert client.expire("name", 60) is True
    assert 59 <= client.ttl("name") <= 60
    assert client.exists("name", "missing") == 1
    assert client.type("name") == b"string"
    assert client.keys("n*") == [b"name"]
    assert client.delete("name", "missing") == 1
    assert client.dbsize() == 0
    assert client.echo("hi") == b"hi"
    assert client.incr("counter", 5) == 5
    assert client.incrbyfloat("counter", 0.5) == 5.5
    assert client.mset({"a": 1, "b": 2}) is True
    assert client.mget("a", "b", "c") == [b"1", b"2", None]


def test_redis_py_handshake_works_with_client_name(server):
    client = redis.Redis(port=server.port, client_name="worker-1", db=3)
    assert client.client_getname() == "worker-1"  # redis-py decodes this one itself
    client.set("k", "v")
    assert redis.Redis(port=server.port, db=3).get("k") == b"v"
    assert redis.Redis(port=server.port, db=0).get("k") is None
    client.flushall()


def test_hello_switches_protocol_per_connection(raw):
    assert raw.call("GET", "missing") == b"$-1\r\n"
    hello = raw.call("HELLO", "3")
    assert hello.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n"
                            b"$5\r\nproto\r\n:3\r\n")
    assert raw.call("GET", "missing") == b"_\r\n"
    assert raw.call("HELLO", "4") == b"-NOPROTO unsupported protocol version\r\n"
    assert raw.call("HELLO", "2").startswith(b"*14\r\n")
    assert raw.call("GET", "missing") == b"$-1\r\n"


def test_client_setinfo_is_accepted_for_redis_py(raw):
    assert raw.call("CLIENT", "SETINFO", "LIB-NAME", "redis-py") == b"+OK\r\n"
    assert raw.call("CLIENT", "SETINFO", "LIB-VER", "8.1.0") == b"+OK\r\n"
    assert raw.call("CLIENT", "SETINFO", "FOO", "x").startswith(b"-ERR")
    assert b"lib-name=redis-py lib-ver=8.1.0" in raw.call("CLIENT", "INFO")


def test_info_has_the_fields_clients_read(r):
    r.set("a", 1)
    r.set("b", 2, ex=100)
    info = r.info("everything")
    assert info["redis_version"] == "7.0.15"
    assert info["redis_mode"] == "standalone"
    assert info["arch_bits"] == 64
    assert info["tcp_port"] == r.connection_pool.connection_kwargs["port"]
    assert info["uptime_in_seconds"] >= 0
    assert info["connected_clients"] >= 1
    assert info["used_memory"] > 1_000_000
    assert info["loading"] == 0
    assert info["role"] == "master"
    assert info["cluster_enabled"] == 0
    assert info["db0"]["keys"] == 2 and info["db0"]["expires"] == 1
    assert set(r.info("keyspace")) == {"db0"}


def test_command_docs_and_info_for_redis_cli(raw):
    docs = raw.call("COMMAND", "DOCS", "SET")
    assert b"summary" in docs and b"key value [NX|XX]" in docs
    info = raw.call("COMMAND", "INFO", "get")
    assert info.startswith(b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n")
    assert int(raw.call("COMMAND", "COUNT")[1:]) > 50


# --- The wire ---------------------------------------------------------------------


def test_pipelined_replies_come_back_in_order(r):
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"key:{i}", i)
        pipe.get(f"key:{i}")
    results = pipe.execute()
    assert results[1::2] == [str(i).encode() for i in range(1000)]


def test_replies_to_one_read_go_out_in_one_write(raw):
    raw.send(b"PING\r\nPING\r\nPING\r\n")
    data = raw.sock.recv(100)
    assert data == b"+PONG\r\n" * 3


def test_binary_keys_and_values_round_trip(r):
    key, value = bytes(range(256)), bytes(range(255, -1, -1)) * 10
    r.set(key, value)
    assert r.get(key) == value
    assert r.keys(b"\x00*") == [key]


def test_large_value(r):
    value = b"x" * (20 * 1024 * 1024)
    r.set("big", value)
    assert r.strlen("big") == len(value)
    assert r.get("big") == value


def test_many_concurrent_clients(server):
    def work(n: int) -> bool:
        client = redis.Redis(port=server.port)
        for i in range(50):
            client.set(f"c{n}:{i}", i)
        ok = all(client.get(f"c{n}:{i}") == str(i).encode() for i in range(50))
        client.close()
        return ok

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        assert all(pool.map(work, range(100)))


def test_protocol_error_closes_only_that_connection(server, raw):
    bad = RawConnection(server.port)
    bad.send(b"*1\r\n+PING\r\n")
    assert bad.is_closed_by_server()
    assert bad.buffer == b"-ERR Protocol error: expected '$', got '+'\r\n"
    assert raw.call("PING") == b"+PONG\r\n"


def test_abrupt_disconnect_mid_command_does_not_hurt(server, raw):
    for partial in (b"*3\r\n$3\r\nSET\r\n$1\r\nk", b"*2\r\n$3\r\nGET\r\n$100000\r\nabc", b"SET k \"abc"):
        bad = RawConnection(server.port)
        bad.send(partial)
        bad.close()
    assert raw.call("PING") == b"+PONG\r\n"
    assert raw.call("EXISTS", "k") == b":0\r\n"


def test_quit_replies_then_closes(raw):
    raw.send(b"QUIT\r\nPING\r\n")
    assert raw.is_closed_by_server()
    assert raw.buffer == b"+OK\r\n"


def test_error_replies_keep_the_connection_open(raw):
    assert raw.call("GET").startswith(b"-ERR wrong number")
    assert raw.call("NOPE").startswith(b"-ERR unknown command")
    assert raw.call("PING") == b"+PONG\r\n"


def test_command_names_are_case_insensitive(raw):
    assert raw.call("sEt", "k", "v") == b"+OK\r\n"
    assert raw.call("get", "k") == b"$1\r\nv\r\n"
    assert raw.call("CLIENT", "getNAME") == b"$-1\r\n"


# --- Expiry ---------------------------------------------------------------------------


def test_lazy_expiry_hides_an_expired_key_at_once(r):
    r.set("k", "v", px=50)
    assert wait_until(lambda: r.get("k") is None)
    assert r.exists("k") == 0 and r.ttl("k") == -2


def test_active_expiry_deletes_keys_nobody_reads(r):
    for i in range(200):
        r.set(f"k{i}", "v", px=30)
    r.set("keeper", "v")
    # DBSIZE counts keys without looking them up, so only the active cycle can shrink it.
    assert wait_until(lambda: r.dbsize() == 1)
    assert r.info("stats")["expired_keys"] >= 200


def test_expireat_in_the_past_deletes(r):
    r.set("k", "v")
    assert r.expireat("k", 1) is True
    assert r.exists("k") == 0


def test_ttl_rounds_like_redis(r):
    # (ms + 500) // 1000: rounds to the nearest second. Values far from a boundary keep a slow machine honest.
    for px, expected in ((1600, 2), (1400, 1), (2400, 2), (2700, 3)):
        r.set("k", "v", px=px)
        assert r.ttl("k") == expected


def test_scan_returns_every_key_present_throughout_despite_changes(r):
    stable = {f"stable:{i}".encode() for i in range(500)}
    r.mset({key: 1 for key in stable})
    seen, cursor, added = set(), 0, 0
    while True:
        cursor, keys = r.scan(cursor, count=37)
        seen.update(keys)
        r.set(f"new:{added}", 1)  # keys come and go between calls
        r.delete(f"new:{added - 1}")
        added += 1
        if cursor == 0:
            break
    assert stable <= seen


def test_scan_match_count_and_type(r):
    r.mset({f"user:{i}": i for i in range(30)} | {f"order:{i}": i for i in range(30)})
    assert set(r.scan_iter(match="user:*", count=7)) == {f"user:{i}".encode() for i in range(30)}
    assert set(r.scan_iter(_type="string")) == set(r.keys())
    assert list(r.scan_iter(_type="list")) == []


def test_select_keeps_sixteen_databases_apart(raw):
    for db in range(16):
        assert raw.call("SELECT", db) == b"+OK\r\n"
        raw.call("SET", "k", db)
    for db in range(16):
        raw.call("SELECT", db)
        assert raw.call("GET", "k") == b"$%d\r\n%d\r\n" % (len(str(db)), db)


def test_debug_set_active_expire_switches_the_cycle_off_and_on(r):
    r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    try:
        for i in range(50):
            r.set(f"k{i}", "v", px=10)
        time.sleep(0.3)  # waits for something NOT to happen: three active cycles would have run by now
        assert r.dbsize() == 50
    finally:
        r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")
    assert wait_until(lambda: r.dbsize() == 0)


def test_debug_sleep_and_unknown_debug_subcommands(raw):
    assert raw.call("DEBUG", "SLEEP", "0") == b"+OK\r\n"
    assert raw.call("DEBUG", "SLEEP", "x") == b"+OK\r\n"
    assert raw.call("DEBUG", "FOO") == (b"-ERR unknown subcommand or wrong number of arguments for 'FOO'. "
                                        b"Try DEBUG HELP.\r\n")


def test_bare_command_lists_every_command(raw):
    reply = raw.call("COMMAND")
    assert reply.startswith(b"*%d\r\n" % int(raw.call("COMMAND", "COUNT")[1:]))


@pytest.mark.parametrize("request_start", [
    b"*2\r\n$4\r\nECHO\r\n$1000000\r\n" + b"x" * 200_000,  # one large bulk string
    b"*100000000\r\n" + b"$1\r\na\r\n" * 20_000,  # a request that never ends: its parsed arguments count too
], ids=["one large bulk string", "a request that never ends"])
def test_client_over_the_query_buffer_limit_is_closed(start_server, request_start):
    process = start_server("--client-query-buffer-limit", "100000")
    hog = RawConnection(process.port)
    hog.send(request_start)
    assert hog.is_closed_by_server()
    assert RawConnection(process.port).call("PING") == b"+PONG\r\n"
    assert "query buffer limit" in process.output()


def test_debug_can_be_refused(start_server):
    process = start_server("--enable-debug-command", "no")
    reply = RawConnection(process.port).call("DEBUG", "SLEEP", "0")
    assert reply.startswith(b"-ERR DEBUG command not allowed.")


def test_a_client_that_reads_slowly_still_gets_every_reply(server, raw):
    value = bytes(range(256)) * 400  # 100 KiB
    raw.call("SET", "big", value)
    raw.send(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 300)  # 30 MiB of replies, not read yet
    other = RawConnection(server.port)
    assert other.call("PING") == b"+PONG\r\n"  # while everyone else is served
    expected = b"$%d\r\n%s\r\n" % (len(value), value)
    for _ in range(300):
        assert raw.read_reply() == expected


def test_parser_shortcut_can_be_switched_off(start_server):
    process = start_server("--parser-shortcut", "no")
    client = redis.Redis(port=process.port)
    pipe = client.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"k{i}", f"a\r\nb{i}")
        pipe.get(f"k{i}")
    assert pipe.execute()[1::2] == [f"a\r\nb{i}".encode() for i in range(100)]
    assert client.config_get("parser-shortcut") == {"parser-shortcut": "no"}


def test_batch_writes_can_be_switched_off(start_server):
    process = start_server("--batch-writes", "no")
    clients = [redis.Redis(port=process.port) for _ in range(5)]
    pipes = [client.pipeline(transaction=False) for client in clients]
    for n, pipe in enumerate(pipes):
        for i in range(100):
            pipe.set(f"k{n}:{i}", i)
            pipe.incr(f"k{n}:{i}")
    expected = [reply for i in range(100) for reply in (True, i + 1)]
    assert all(pipe.execute() == expected for pipe in pipes)
    assert clients[0].config_get("batch-writes") == {"batch-writes": "no"}


def test_replies_held_for_the_end_of_a_loop_pass_are_all_sent(server):
    # While DEBUG SLEEP blocks the loop, three clients' requests wait in the
    # kernel; the next pass of the loop serves them together, so their replies
    # are queued and written by the beforeSleep hook, not one by one.
    sleeper = RawConnection(server.port)
    sleeper.send(encode_request([b"DEBUG", b"SLEEP", b"0.2"]))
    clients = [RawConnection(server.port) for _ in range(3)]
    for n, client in enumerate(clients):
        client.send(encode_request([b"SET", b"pass:%d" % n, b"%d" % n]) + encode_request([b"GET", b"pass:%d" % n]))
    assert sleeper.read_reply() == b"+OK\r\n"
    for n, client in enumerate(clients):
        assert client.read_reply() == b"+OK\r\n"
        assert client.read_reply() == b"$1\r\n%d\r\n" % n


def test_a_closing_connection_closes_at_once_not_at_the_next_timer_tick(server):
    # A connection closed while replies are written just before the event loop
    # sleeps must not wait for the next timer (active expiry, every 100 ms) to
    # be torn down. 20 closes that each waited for a tick would take ~1 s.
    started = time.monotonic()
    for request in [b"QUIT\r\n", b"*1\r\n$4\r\nQUIT\r\n", b"*x\r\n", b"*1\r\n$x\r\n"] * 5:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(request)
            while sock.recv(4096):  # read until the server closes the connection
                pass
    assert time.monotonic() - started < 0.5


def test_replies_to_a_client_that_does_not_read_do_not_pile_up_in_memory(start_server):
    process = start_server()
    control = RawConnection(process.port)
    control.call("SET", "big", "x" * 1_000_000)
    baseline = int(control.call("INFO", "memory").split(b"used_memory:")[1].split(b"\r\n")[0])
    hog = RawConnection(process.port)
    for _ in range(200):  # 200 MB of replies asked for, one request at a time, none read
        hog.send(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
    deadline = time.monotonic() + 1.0  # a bounded look for something that must NOT happen
    while time.monotonic() < deadline:
        used = int(control.call("INFO", "memory").split(b"used_memory:")[1].split(b"\r\n")[0])
        assert used - baseline < 50_000_000  # the server stopped reading the hog, not buffering for it
    expected = b"$1000000\r\n" + b"x" * 1_000_000 + b"\r\n"
    assert all(hog.read_reply() == expected for _ in range(200))


def test_debug_sleep_beyond_the_clock_answers_at_once(raw):
    # Redis counts the time in 64-bit microseconds, which such a number overflows: it does not sleep.
    for seconds in ("1e300", "1e4000"):
        assert raw.call("DEBUG", "SLEEP", seconds) == b"+OK\r\n"


def test_info_counts_the_changes_since_the_last_save(raw):
    def changes() -> int:
        return int(raw.call("INFO", "persistence").split(b"rdb_changes_since_last_save:")[1].split(b"\r\n")[0])

    raw.call("SAVE")
    assert changes() == 0
    raw.call("SET", "a", "1")
    raw.call("MSET", "b", "2", "c", "3")
    raw.call("SET", "a", "1", "NX")  # changes nothing
    raw.call("DEL", "a", "nokey")
    assert changes() == 4
    raw.call("SAVE")
    assert changes() == 0


def test_client_list_filters_by_type_and_id(r2):
    own_id = r2.client_id()
    assert [entry["id"] for entry in r2.client_list(client_id=[own_id])] == [str(own_id)]
    assert any(entry["id"] == str(own_id) for entry in r2.client_list(_type="normal"))
    assert r2.client_list(_type="pubsub") == []
