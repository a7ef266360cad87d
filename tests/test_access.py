"""Access control: AUTH and requirepass, protected mode, idle timeouts, and CLIENT LIST's live fields.

Reply bytes are compared with a real redis-server started with the same flags (skipped without one).
"""

import shutil
import socket
import subprocess
import sys
import time

import pytest
import redis
from conftest import ROOT, RawConnection, RedisServerProcess, wait_until

PASSWORD = "s3cret-pw"

# Before and after AUTH, on a server with --requirepass: every reply compared with redis-server's.
WITH_PASSWORD = [
    ["PING"], ["GET", "k"], ["NOSUCHCOMMAND"], ["GET"], ["MULTI"], ["ACL", "WHOAMI"],
    ["AUTH", "wrong"], ["AUTH", "default", "wrong"], ["AUTH", "nobody", PASSWORD], ["AUTH", "a", "b", "c"],
    ["HELLO", "3"], ["HELLO", "3", "AUTH", "default", "wrong"], ["HELLO", "4"], ["PING"],
    ["AUTH", PASSWORD], ["PING"], ["ACL", "WHOAMI"], ["AUTH", "wrong"], ["PING"], ["SET", "k", "v"],
    ["RESET"], ["GET", "k"], ["AUTH", "default", PASSWORD], ["GET", "k"], ["ACL", "NOSUCH"], ["ACL"],
]

WITHOUT_PASSWORD = [
    ["AUTH", "anything"], ["AUTH", "default", "anything"], ["AUTH", "someone", "anything"], ["ACL", "WHOAMI"],
    ["HELLO", "2", "AUTH", "default", "anything", "SETNAME", "x"], ["CLIENT", "GETNAME"], ["RESET"], ["PING"],
]


@pytest.fixture
def redis_with_password(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    process = RedisServerProcess(tmp_path, "--requirepass", PASSWORD)
    yield process
    process.stop()


@pytest.fixture
def ours_with_password(start_server):
    return start_server("--requirepass", PASSWORD)


def replies(port: int, script: list[list[str]]) -> list[bytes]:
    connection = RawConnection(port)
    try:
        return [b"<HELLO map>" if reply.startswith(b"%") or reply.startswith(b"*14") else reply
                for reply in (connection.call(*args) for args in script)]
    finally:
        connection.close()


def test_auth_replies_match_redis(ours_with_password, redis_with_password):
    ours, theirs = replies(ours_with_password.port, WITH_PASSWORD), replies(redis_with_password.port, WITH_PASSWORD)
    for args, got, expected in zip(WITH_PASSWORD, ours, theirs, strict=True):
        assert got == expected, f"{args}: we replied {got!r}, redis replied {expected!r}"


def test_auth_without_a_password_matches_redis(server, real_redis):
    ours, theirs = replies(server.port, WITHOUT_PASSWORD), replies(real_redis.port, WITHOUT_PASSWORD)
    for args, got, expected in zip(WITHOUT_PASSWORD, ours, theirs, strict=True):
        assert got == expected, f"{args}: we replied {got!r}, redis replied {expected!r}"


def test_a_refused_command_inside_multi_dooms_the_transaction(ours_with_password):
    connection = RawConnection(ours_with_password.port)
    assert connection.call("MULTI").startswith(b"-NOAUTH")
    assert connection.call("AUTH", PASSWORD) == b"+OK\r\n"
    connection.call("MULTI")
    connection.call("SET", "k", "v")
    assert connection.call("EXEC") == b"*1\r\n+OK\r\n"
    connection.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_logs_in_with_password(ours_with_password, protocol):
    client = redis.Redis(port=ours_with_password.port, password=PASSWORD, protocol=protocol)
    assert client.set("k", "v") is True
    assert client.get("k") == b"v"
    client.close()
    # retry=None: redis-py would otherwise retry a failed login for seconds, against Redis too.
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        redis.Redis(port=ours_with_password.port, password="wrong", protocol=protocol, retry=None).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=ours_with_password.port, protocol=protocol, retry=None).ping()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_logs_in_with_a(ours_with_password):
    result = subprocess.run(["redis-cli", "-p", str(ours_with_password.port), "-a", PASSWORD, "--no-auth-warning",
                             "PING"], capture_output=True, text=True, timeout=10)
    assert result.stdout == "PONG\n"
    result = subprocess.run(["redis-cli", "-p", str(ours_with_password.port), "PING"], capture_output=True, text=True,
                            timeout=10)
    assert "NOAUTH Authentication required." in result.stdout


def test_client_py_logs_in_with_a(ours_with_password):
    result = subprocess.run([sys.executable, str(ROOT / "client.py"), "-p", str(ours_with_password.port), "-a",
                             PASSWORD, "PING"], capture_output=True, text=True, timeout=10)
    assert result.stdout == "PONG\n"


def test_passwords_are_never_logged(start_server):
    process = start_server("--requirepass", PASSWORD, "--loglevel", "debug")
    connection = RawConnection(process.port)
    connection.call("AUTH", "guess-one")
    connection.call("HELLO", "3", "AUTH", "default", "guess-two")
    assert connection.call("AUTH", PASSWORD) == b"+OK\r\n"
    assert PASSWORD.encode() not in connection.call("CLIENT", "LIST")
    connection.close()
    process.stop()
    output = process.output()
    for secret in (PASSWORD, "guess-one", "guess-two"):
        assert secret not in output


def connect_from(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.bind((address, 0))  # Linux routes all of 127/8 to loopback: a "remote" client on this machine
    sock.connect(("127.0.0.1", port))
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_protected_mode_turns_away_other_addresses_as_redis_does(server, real_redis):
    denied = []
    for port in (server.port, real_redis.port):
        sock = connect_from("127.0.0.2", port)  # sends nothing: unread bytes would make the close a reset
        denied.append(read_until_closed(sock))
        sock.close()
        local = RawConnection(port)  # from 127.0.0.1: served
        assert local.call("PING") == b"+PONG\r\n"
        assert b"rejected_connections:" in local.call("INFO", "stats")
        local.close()
    assert denied[0] == denied[1]
    assert denied[0].startswith(b"-DENIED Redis is running in protected mode")


@pytest.mark.parametrize("flags", [("--protected-mode", "no"), ("--requirepass", PASSWORD)])
def test_protected_mode_serves_everyone_when_off_or_with_a_password(start_server, flags):
    process = start_server(*flags)
    sock = connect_from("127.0.0.2", process.port)
    sock.sendall(b"PING\r\n")
    reply = sock.recv(100)
    assert reply == (b"+PONG\r\n" if "--protected-mode" in flags else b"-NOAUTH Authentication required.\r\n")
    sock.close()


def test_startup_warns_when_listening_beyond_loopback_without_password(start_server):
    process = start_server("--bind", "0.0.0.0")
    assert wait_until(lambda: "WARNING: listening on 0.0.0.0 with no password" in process.output())


def test_idle_clients_are_closed_after_timeout(start_server):
    process = start_server("--timeout", "1", "--loglevel", "verbose")
    idle = RawConnection(process.port)
    busy = RawConnection(process.port)
    assert idle.call("PING") == b"+PONG\r\n"
    idle.sock.settimeout(0.05)  # is_closed_by_server() waits this long for the close
    started = time.monotonic()
    while not idle.is_closed_by_server():
        assert busy.call("PING") == b"+PONG\r\n"  # a client that talks is never idle
        assert time.monotonic() - started < 5, "the idle client was not closed"
        time.sleep(0.2)
    assert time.monotonic() - started >= 1
    assert busy.call("PING") == b"+PONG\r\n"
    assert "Closing idle client" in process.output()


def field(line: bytes, name: bytes) -> bytes:
    return next(item.split(b"=", 1)[1] for item in line.split() if item.startswith(name + b"="))


def test_client_list_reports_live_values(server):
    watcher, other = RawConnection(server.port), RawConnection(server.port)
    other.call("CLIENT", "SETNAME", "other")
    other.call("SELECT", "3")
    other.call("MULTI")
    other.call("SET", "k", "v")
    other.call("INCR", "n")
    other.send(b"*2\r\n$3\r\nGET\r\n$5\r\nab")  # half a request: it waits in the query buffer
    line = next(line for line in watcher.call("CLIENT", "LIST").split(b"\n") if b"name=other" in line)
    assert field(line, b"flags") == b"x"
    assert field(line, b"multi") == b"2"
    assert field(line, b"db") == b"3"
    assert field(line, b"cmd") == b"incr"
    assert int(field(line, b"qbuf")) > 0
    assert field(line, b"omem") == b"0"
    assert field(watcher.call("CLIENT", "INFO"), b"cmd") == b"client|info"
    watcher.close()
    other.close()
