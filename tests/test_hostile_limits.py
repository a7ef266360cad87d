"""Hostile limits: more clients than file descriptors, HTTP requests from a browser, a disk that refuses the save."""

import resource
import shutil
import signal
import socket
import sys

import pytest
import redis
from conftest import RawConnection, Responsiveness, wait_until

MAX_CLIENTS_REACHED = b"-ERR max number of clients reached\r\n"
SECURITY_WARNING = "Possible SECURITY ATTACK detected"
SHUTDOWN_FAILED = b"-ERR Errors trying to SHUTDOWN. Check logs.\r\n"


def turned_away(port: int) -> bool:
    """Connect: True if the server says max clients reached and closes, False if it answers PING."""
    connection = RawConnection(port)
    try:
        connection.send(b"PING\r\n")
        reply = connection.read_reply()
        if reply == b"+PONG\r\n":
            return False
        assert reply == MAX_CLIENTS_REACHED
        assert connection.is_closed_by_server()
        return True
    finally:
        connection.close()


# --- maxclients ------------------------------------------------------------------


def test_a_client_over_maxclients_is_told_and_closed_and_the_others_still_work(start_server):
    process = start_server("--maxclients", "3")
    clients = [RawConnection(process.port) for _ in range(3)]
    for connection in clients:
        assert connection.call("PING") == b"+PONG\r\n"
    assert turned_away(process.port)
    for connection in clients:
        assert connection.call("PING") == b"+PONG\r\n"
    assert clients[0].call("CONFIG", "GET", "maxclients") == b"*2\r\n$10\r\nmaxclients\r\n$1\r\n3\r\n"

    clients.pop().close()  # a place frees up once the server has seen this one leave
    assert wait_until(lambda: not turned_away(process.port))
    for connection in clients:
        connection.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
def test_a_low_file_limit_lowers_maxclients_and_extra_clients_are_turned_away_quietly(start_server):
    process = start_server(limits={resource.RLIMIT_NOFILE: 64})
    client = redis.Redis(port=process.port)
    assert client.ping() is True
    with Responsiveness(process.port):  # one of the 32
        held = [RawConnection(process.port) for _ in range(30)]  # with redis-py's: 32 clients
        for connection in held:
            assert connection.call("PING") == b"+PONG\r\n"
        # A burst of 100 more at once: far more descriptors than the process may open.
        extra = [socket.create_connection(("127.0.0.1", process.port), timeout=5) for _ in range(100)]
        for sock in extra:
            received = b""
            while chunk := sock.recv(100):
                received += chunk
            assert received == MAX_CLIENTS_REACHED
            sock.close()
        for connection in held:
            assert connection.call("PING") == b"+PONG\r\n"
    for connection in held:
        connection.close()
    assert client.ping() is True

    log = process.output()
    assert "Traceback" not in log
    assert len(log.splitlines()) < 12, log  # startup lines, and at most one about accept() failing
    assert "You requested maxclients of 10000 requiring at least 10032 max file descriptors." in log
    assert ("Current maximum open files is 64. maxclients has been reduced to 32 to compensate for low ulimit."
            in log)
    assert client.config_get("maxclients") == {"maxclients": "32"}


# --- The listen backlog --------------------------------------------------------


def somaxconn() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as file:
            return int(file.read())
    except OSError:
        return 0


@pytest.mark.skipif(somaxconn() < 511, reason="Linux, with net.core.somaxconn allowing Redis's backlog of 511")
def test_connections_made_while_the_server_is_busy_wait_in_a_511_backlog(start_server):
    process = start_server()
    busy = RawConnection(process.port)
    busy.send(b"DEBUG SLEEP 2\r\n")
    # The kernel completes these handshakes while the server sleeps, up to the
    # backlog; past it, a connect stalls for a second or more.
    waiting = []
    for _ in range(400):
        sock = socket.socket()
        sock.settimeout(0.5)
        sock.connect(("127.0.0.1", process.port))
        waiting.append(sock)
    assert busy.read_reply() == b"+OK\r\n"
    for sock in (waiting[0], waiting[-1]):
        sock.settimeout(5)
        sock.sendall(b"PING\r\n")
        assert sock.recv(100) == b"+PONG\r\n"
    for sock in waiting:
        sock.close()
    assert busy.call("CONFIG", "GET", "tcp-backlog") == b"*2\r\n$11\r\ntcp-backlog\r\n$3\r\n511\r\n"
    busy.close()


def test_tcp_backlog_flag_is_reported(start_server):
    process = start_server("--tcp-backlog", "64")
    assert redis.Redis(port=process.port).config_get("tcp-backlog") == {"tcp-backlog": "64"}


# --- POST and Host: a web page talking to the server ---------------------------

HTTP_REQUESTS = [
    # What curl --data-binary $'SET pwned 1\r\n' http://127.0.0.1:6379/ sends, as a web page's fetch() would.
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1:6379\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nContent-Length: 13\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n\r\nSET pwned 1\r\n",
    # Even the replies to the commands before are dropped, as Redis does.
    b"GET a\r\nHost: x\r\nSET pwned 1\r\n",
    b"*2\r\n$5\r\nhOsT:\r\n$1\r\nx\r\n*3\r\n$3\r\nSET\r\n$5\r\npwned\r\n$1\r\n1\r\n",
    b"post\r\nSET pwned 1\r\n",
]


def test_http_requests_are_dropped_unanswered_and_their_body_never_runs(start_server):
    process = start_server()
    for request in HTTP_REQUESTS:
        connection = RawConnection(process.port)
        connection.sock.settimeout(2)
        connection.send(request)
        assert connection.is_closed_by_server(), request
        assert connection.buffer == b"", request
        connection.close()
    client = redis.Redis(port=process.port)
    assert client.get("pwned") is None
    assert client.ping() is True
    assert process.output().count(SECURITY_WARNING) == 1  # at most once a minute: attackers can repeat at will


# --- A failed save at shutdown ---------------------------------------------------


@pytest.fixture
def doomed_server(start_server, tmp_path):
    """A server with a few keys whose --dir is then removed, so that every save fails; and that directory."""
    directory = tmp_path / "data"
    directory.mkdir()
    process = start_server(directory=directory)
    redis.Redis(port=process.port).mset({f"key:{n}": n for n in range(100)})
    shutil.rmtree(directory)
    return process, directory


def still_serving(process) -> bool:
    client = redis.Redis(port=process.port)
    try:
        return client.dbsize() == 100
    finally:
        client.close()


def test_shutdown_refuses_to_lose_the_data_when_the_save_fails(doomed_server):
    process, directory = doomed_server
    connection = RawConnection(process.port)
    assert connection.call("SHUTDOWN") == SHUTDOWN_FAILED
    assert connection.call("GET", "key:7") == b"$1\r\n7\r\n"  # the same connection goes on
    assert still_serving(process)  # and new ones are accepted
    log = process.output()
    assert "No such file or directory" in log  # the real cause
    assert "Error trying to save the DB, can't exit." in log
    assert "Cannot listen" not in log

    directory.mkdir()  # the disk is fixed: now SHUTDOWN saves and exits
    connection.send(b"SHUTDOWN\r\n")
    assert connection.is_closed_by_server()
    assert process.wait() == 0
    assert '"key:99"' in (directory / "dump.json").read_text()


def test_sigterm_keeps_serving_when_the_save_fails_and_a_second_one_exits(doomed_server):
    process, _ = doomed_server
    connection = RawConnection(process.port)
    process.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: "Errors trying to shut down the server" in process.output())
    assert connection.call("GET", "key:7") == b"$1\r\n7\r\n"
    assert still_serving(process)
    log = process.output()
    for line in ("Received SIGTERM scheduling shutdown...", "User requested shutdown...",
                 "Saving the final snapshot before exiting.", "No such file or directory",
                 "Error trying to save the DB, can't exit."):
        assert line in log

    assert process.stop(signal.SIGTERM) == 1  # asked twice: tries once more, then exits anyway
    log = process.output()
    assert "every change since the last successful save is lost" in log
    assert "Cannot listen" not in log


def test_shutdown_nosave_still_exits_after_a_failed_save(doomed_server):
    process, _ = doomed_server
    connection = RawConnection(process.port)
    assert connection.call("SHUTDOWN") == SHUTDOWN_FAILED
    connection.send(b"SHUTDOWN NOSAVE\r\n")
    assert connection.is_closed_by_server()
    assert process.wait() == 0
    assert "Cannot listen" not in process.output()


def test_idle_connections_keep_nothing_of_the_pipelines_they_sent(start_server):
    # Each connection once kept its last pipeline (bytes and parsed requests, for the append-only file's
    # shortcut) until its next read, with the log off too: 0.65 MB for each idle connection here.
    process = start_server()
    pipeline = b"*1\r\n$4\r\nPING\r\n" * 4500  # 63 kB of requests in one read
    connections = []

    def send_pipeline() -> None:
        sock = socket.create_connection(("127.0.0.1", process.port), timeout=5)
        sock.sendall(pipeline)
        received = 0
        while received < len(b"+PONG\r\n") * 4500:
            received += len(sock.recv(1 << 20))
        connections.append(sock)

    send_pipeline()  # one-time allocations
    before = process.memory()
    for _ in range(200):
        send_pipeline()
    growth = process.memory() - before
    for sock in connections:
        sock.close()
    assert growth < 30_000_000, f"200 idle connections took {growth / 1e6:.0f} MB"
