"""A client that asks for replies and never reads them costs bounded memory, and cannot crash the server."""

import fcntl
import resource
import socket
import struct
import sys
import termios
import time

import pytest
from conftest import RawConnection, Responsiveness

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

MB = 1024 * 1024


def test_requests_read_in_one_packet_wait_while_their_replies_are_unread(start_server):
    # 300 GETs of a 1 MB value arrive in one 2 KB packet: all are parsed at
    # once, but the server runs them only as fast as the client reads.
    process = start_server()
    control = RawConnection(process.port)
    value = b"x" * MB
    control.call("SET", "big", value)
    before = process.memory()
    hog = socket.create_connection(("127.0.0.1", process.port))
    hog.sendall(b"GET big\r\n" * 300)
    with Responsiveness(process.port) as watcher:
        while len(watcher.latencies) < 30:  # about half a second of another client's PINGs
            assert process.memory() - before < 50 * MB  # not the 300 MB the replies would take
    hog.settimeout(10)
    expected = b"$1048576\r\n" + value + b"\r\n"
    received = bytearray()
    while len(received) < 300 * len(expected):
        received += hog.recv(4 * MB)
    assert received == expected * 300  # every reply arrives, in order, once the client reads
    assert process.memory("VmHWM") - before < 50 * MB
    hog.close()


def test_unread_replies_cannot_exhaust_a_capped_address_space(start_server):
    # The crash: under an address-space cap, 2000 unread 1 MB replies
    # made one join of all of them fail with MemoryError, and the server died.
    process = start_server(limits={resource.RLIMIT_AS: 1536 * MB})
    control = RawConnection(process.port)
    control.call("SET", "big", b"x" * MB)
    hog = socket.create_connection(("127.0.0.1", process.port))
    hog.sendall(b"GET big\r\n" * 2000)
    with Responsiveness(process.port) as watcher:
        while len(watcher.latencies) < 30:
            pass
    assert control.call("STRLEN", "big") == b":1048576\r\n"
    hog.close()
    assert "Traceback" not in process.output()


def test_a_request_too_large_for_memory_fails_alone(start_server):
    # MGET of four 100 MB values needs a copy of each for its reply, and more:
    # beyond the cap. That request fails; the data and everyone else are fine.
    process = start_server(limits={resource.RLIMIT_AS: 1024 * MB})
    client = RawConnection(process.port)
    keys = [f"k{n}" for n in range(4)]
    for key in keys:
        assert client.call("SETRANGE", key, 100 * MB - 1, "x") == b":104857600\r\n"
    with Responsiveness(process.port, max_latency=3.0):  # the MGET copies 300 MB before it fails: its own cost
        reply = client.call("MGET", *keys)
    assert reply == b"-ERR out of memory while running 'mget'\r\n"
    assert client.call("STRLEN", "k3") == b":104857600\r\n"
    assert client.call("GETRANGE", "k0", -2, -1) == b"$2\r\n\0x\r\n"
    assert "Traceback" not in process.output()


def wait_until_the_server_stops_sending(sock: socket.socket) -> None:
    """Wait until the bytes waiting in sock's receive buffer stop growing: the server has paused this client."""
    def waiting() -> int:
        return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]

    last = -1
    while waiting() != last:
        last = waiting()
        time.sleep(0.05)


def test_no_command_runs_after_the_final_save(start_server):
    # A client paused behind unread replies still has requests waiting when another client shuts the
    # server down: they must not run after the snapshot is saved, or their writes would be acknowledged
    # and lost.
    process = start_server()
    paused = socket.create_connection(("127.0.0.1", process.port))
    paused.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$200000\r\n" + b"x" * 200_000 + b"\r\n")
    assert paused.recv(10) == b"+OK\r\n"
    paused.sendall(b"GET big\r\n" * 200 + b"SET after-shutdown 1\r\n")  # 40 MB of replies: more than fits
    wait_until_the_server_stops_sending(paused)
    RawConnection(process.port).send(b"SHUTDOWN\r\n")
    paused.settimeout(10)
    received = bytearray()
    while chunk := paused.recv(1 << 20):
        received += chunk
    assert process.wait() == 0
    assert b"+OK" not in received  # the SET never ran
    assert "after-shutdown" not in (process.directory / "dump.json").read_text()


def test_a_client_that_quits_behind_unread_replies_closes_cleanly(start_server):
    # Closing a connection from inside asyncio's own write handler made it report the loss twice, with
    # a traceback in the log: the close must wait until that handler has returned.
    process = start_server()
    value = b"x" * 300_000
    for last_request in (b"QUIT\r\n", b"*1\r\n:x\r\n") * 5:  # QUIT, then a protocol error
        client = socket.create_connection(("127.0.0.1", process.port))
        client.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$300000\r\n" + value + b"\r\n")
        assert client.recv(10) == b"+OK\r\n"
        client.sendall(b"GET big\r\n" * 30 + last_request)
        wait_until_the_server_stops_sending(client)
        client.settimeout(10)
        received = 0
        while chunk := client.recv(1 << 20):
            received += len(chunk)
        assert received >= 30 * (len(value) + len(b"$300000\r\n\r\n"))
        client.close()
    assert RawConnection(process.port).call("PING") == b"+PONG\r\n"
    assert "Traceback" not in process.output() and "Exception in callback" not in process.output()
