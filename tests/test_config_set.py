"""CONFIG SET of the runtime settings: Redis 7.0's replies and errors, and each setting taking effect at once."""

import socket

import pytest
from conftest import RawConnection, wait_until

# Each call on both servers (fresh processes, so nothing carries over to other tests); replies compared.
SCRIPT = [
    ["CONFIG", "SET", "hz", "0"], ["CONFIG", "GET", "hz"], ["CONFIG", "SET", "hz", "100000"], ["CONFIG", "GET", "hz"],
    ["CONFIG", "SET", "hz", "-1"], ["CONFIG", "SET", "hz", "20"], ["CONFIG", "GET", "hz"],
    ["CONFIG", "SET", "timeout", "-1"], ["CONFIG", "SET", "timeout", "abc"], ["CONFIG", "SET", "timeout", "007"],
    ["CONFIG", "SET", "timeout", "30"], ["CONFIG", "GET", "timeout"],
    ["CONFIG", "SET", "maxclients", "0"], ["CONFIG", "SET", "maxclients", "4294967296"],
    ["CONFIG", "SET", "maxclients", "100"], ["CONFIG", "GET", "maxclients"],
    ["CONFIG", "SET", "loglevel", "loud"], ["CONFIG", "SET", "loglevel", "WARNING"], ["CONFIG", "GET", "loglevel"],
    ["CONFIG", "SET", "protected-mode", "maybe"], ["CONFIG", "SET", "protected-mode", "no"],
    ["CONFIG", "GET", "protected-mode"],
    ["CONFIG", "SET", "dir", "/tmp"], ["CONFIG", "SET", "dbfilename", "other.rdb"],
    ["CONFIG", "SET", "databases", "2"], ["CONFIG", "SET", "no-such-setting", "1"],
    ["CONFIG", "SET", "timeout", "5", "hz", "abc"], ["CONFIG", "GET", "timeout"],
    ["CONFIG", "SET", "timeout", "5", "timeout", "6"], ["CONFIG", "SET", "timeout", "7", "hz", "30"],
    ["CONFIG", "GET", "timeout"], ["CONFIG", "GET", "hz"],
    ["CONFIG", "SET", "requirepass", "pw"], ["CONFIG", "GET", "requirepass"], ["PING"],
    ["CONFIG", "SET", "requirepass", ""], ["CONFIG", "GET", "requirepass"],
]


def test_config_set_replies_match_redis(pair):
    servers = pair()
    for args in SCRIPT:
        ours, theirs = servers.ours.call(*args), servers.theirs.call(*args)
        assert ours == theirs, f"{args}: we replied {ours!r}, redis replied {theirs!r}"


def test_port_and_bind_are_refused_with_a_clear_error(server):
    connection = RawConnection(server.port)
    for name, value in (("port", "7000"), ("bind", "127.0.0.2")):
        reply = connection.call("CONFIG", "SET", name, value)
        assert reply.startswith(f"-ERR CONFIG SET failed (possibly related to argument '{name}') - this server "
                                f"cannot listen elsewhere while running: restart it with --{name}".encode())
    assert connection.call("CONFIG", "GET", "port") == b"*2\r\n$4\r\nport\r\n$%d\r\n%d\r\n" % (
        len(str(server.port)), server.port)
    connection.close()


def test_config_get_takes_several_patterns(server):
    connection = RawConnection(server.port)
    reply = connection.call("CONFIG", "GET", "timeout", "max*", "hz")
    for name in (b"timeout", b"maxclients", b"maxmemory", b"hz"):
        assert b"\r\n" + name + b"\r\n" in reply
    connection.close()


def test_requirepass_at_runtime_locks_new_connections_only(start_server):
    process = start_server()
    admin = RawConnection(process.port)
    assert admin.call("CONFIG", "SET", "requirepass", "pw") == b"+OK\r\n"
    assert admin.call("PING") == b"+PONG\r\n"  # logged in when it connected, as in Redis
    newcomer = RawConnection(process.port)
    assert newcomer.call("PING") == b"-NOAUTH Authentication required.\r\n"
    assert newcomer.call("AUTH", "pw") == b"+OK\r\n"
    assert admin.call("CONFIG", "SET", "requirepass", "") == b"+OK\r\n"
    assert RawConnection(process.port).call("PING") == b"+PONG\r\n"


def test_timeout_at_runtime_closes_idle_clients(start_server):
    process = start_server()
    idle = RawConnection(process.port)
    idle.sock.settimeout(0.05)
    assert RawConnection(process.port).call("CONFIG", "SET", "timeout", "1") == b"+OK\r\n"
    assert wait_until(idle.is_closed_by_server, timeout=5)


def test_protected_mode_off_at_runtime_serves_other_addresses(start_server):
    process = start_server()
    assert RawConnection(process.port).call("CONFIG", "SET", "protected-mode", "no") == b"+OK\r\n"
    sock = socket.socket()
    sock.settimeout(5)
    sock.bind(("127.0.0.2", 0))
    sock.connect(("127.0.0.1", process.port))
    sock.sendall(b"PING\r\n")
    assert sock.recv(100) == b"+PONG\r\n"
    sock.close()


@pytest.mark.parametrize("level, shown", [("debug", True), ("warning", False)])
def test_loglevel_at_runtime(start_server, level, shown):
    process = start_server()
    connection = RawConnection(process.port)
    assert connection.call("CONFIG", "SET", "loglevel", level) == b"+OK\r\n"
    connection.send(b"*1\r\n:1\r\n")  # a protocol error, logged at debug level
    assert wait_until(connection.is_closed_by_server)
    if shown:
        assert wait_until(lambda: "Protocol error from client" in process.output())
    else:
        assert "Protocol error from client" not in process.output()


def test_a_normal_client_over_its_output_limit_is_closed(start_server):
    process = start_server("--client-output-buffer-limit", "normal 100kb 0 0")
    reader, hoarder = RawConnection(process.port), RawConnection(process.port)
    reader.call("SET", "big", "x" * 10_000)
    hoarder.send(b"GET big\r\n" * 50)  # 500 KB of replies in one read, over the hard limit of 100 KB
    assert wait_until(hoarder.is_closed_by_server)
    assert wait_until(lambda: "scheduled to be closed ASAP for overcoming of output buffer limits" in process.output())
    assert reader.call("GET", "big") == b"$10000\r\n" + b"x" * 10_000 + b"\r\n"
    assert reader.call("CONFIG", "GET", "client-output-buffer-limit") == (
        b"*2\r\n$26\r\nclient-output-buffer-limit\r\n$72\r\nnormal 102400 0 0 slave 268435456 67108864 60 "
        b"pubsub 33554432 8388608 60\r\n")
