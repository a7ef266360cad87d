"""The server runs inside a Python process too: server.running() for tests, serve() on any event loop."""

import asyncio
import socket
import threading

import redis

import server


def test_running_serves_in_a_thread_and_stops_cleanly(tmp_path):
    with server.running(dir=str(tmp_path)) as (host, port):
        client = redis.Redis(host=host, port=port)
        assert client.set("greeting", "hello") is True
        assert client.get("greeting") == b"hello"
        pipe = client.pipeline(transaction=False)
        for _ in range(100):
            pipe.incr("counter")
        assert pipe.execute()[-1] == 100
        client.close()
    assert not any(thread.name == "redis-clone" for thread in threading.enumerate())
    assert not (tmp_path / "dump.json").exists()  # stopped without saving


def test_two_servers_run_side_by_side_with_batched_and_plain_writes(tmp_path):
    with server.running(0, str(tmp_path)) as first, server.running(0, str(tmp_path), "--batch-writes", "no") as second:
        assert first[1] != second[1]
        for host, port in (first, second):
            client = redis.Redis(host=host, port=port)
            assert client.mset({"a": 1, "b": 2}) is True
            assert client.mget("a", "b") == [b"1", b"2"]
            client.close()


def test_serve_works_on_an_ordinary_event_loop(tmp_path):
    # Replies must not depend on the server's own selector: asyncio.run() builds a loop of its own.
    options = server.parse_options(["--port", "0", "--dir", str(tmp_path)])
    instance = server.Server(options)

    async def main() -> list:
        task = asyncio.create_task(server.serve(instance))
        while not instance.port:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", instance.port)
        writer.write(b"SET k v\r\nGET k\r\n")
        replies = [await reader.readline(), await reader.readline(), await reader.readline()]
        writer.close()
        instance.shutdown(save=False)
        assert await task == 0
        return replies

    assert asyncio.run(main()) == [b"+OK\r\n", b"$1\r\n", b"v\r\n"]


def test_part_one_alone_serves_pipelines_quit_and_protocol_errors(tmp_path):
    # Every switch off: the plain ClientConnection, RequestParser and WriteAtOnce of Part I.
    plain = ("--output-pause", "no", "--parser-shortcut", "no", "--batch-writes", "no")
    with server.running(0, str(tmp_path), *plain) as (host, port):
        client = redis.Redis(host=host, port=port)
        client.set("big", b"x" * 10_000)
        pipe = client.pipeline(transaction=False)
        for _ in range(300):  # 3 MB of replies in one read: more than PausingConnection would queue
            pipe.get("big")
        assert pipe.execute() == [b"x" * 10_000] * 300
        client.close()
        with socket.create_connection((host, port)) as connection:
            connection.sendall(b"PING\r\nQUIT\r\nPING\r\n")
            assert read_until_closed(connection) == b"+PONG\r\n+OK\r\n"
        with socket.create_connection((host, port)) as connection:
            connection.sendall(b"PING\r\n*1\r\n:1\r\n")
            assert read_until_closed(connection) == b"+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n"


def read_until_closed(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received
