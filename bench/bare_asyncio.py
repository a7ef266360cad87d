"""The least an asyncio server can do per request: the ceiling server.py is measured against.

It answers PING, SET, GET, FLUSHALL and the CONFIG GET that redis-benchmark
sends first, and nothing else. It trusts every request to be a well-formed
RESP array whose arguments hold no "\\r\\n", and has no expiry, no errors
worth the name, no persistence, and one write per read. bench/vs_redis.py
runs it in the same rounds as server.py and redis-server, so each run shows
two gaps: from this server to Redis, the cost of asyncio and the interpreter
(no Python server can close it); from server.py to this one, the cost of
everything server.py does right.

    python bench/bare_asyncio.py --port 6380
"""

from __future__ import annotations

import argparse
import asyncio


class BareConnection(asyncio.Protocol):
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data
        self.unparsed = b""  # the start of a request whose end has not arrived yet

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, received: bytes) -> None:
        lines = (self.unparsed + received).split(b"\r\n")
        last = len(lines) - 1  # lines[last] has no "\r\n" after it yet
        replies = []
        i = 0
        while i < last:
            end = i + 1 + 2 * int(lines[i][1:])  # "*N", then N pairs of "$len" and argument lines
            if end > last:
                break
            replies.append(self.execute(lines[i + 2 : end : 2]))
            i = end
        self.unparsed = b"\r\n".join(lines[i:])
        self.transport.write(b"".join(replies))

    def execute(self, args: list[bytes]) -> bytes:
        name = args[0].upper()
        if name == b"GET":
            value = self.data.get(args[1])
            return b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)
        if name == b"SET":
            self.data[args[1]] = args[2]
            return b"+OK\r\n"
        if name == b"PING":
            return b"+PONG\r\n"
        if name == b"FLUSHALL":
            self.data.clear()
            return b"+OK\r\n"
        if name == b"CONFIG":  # redis-benchmark asks for "save" and "appendonly": both empty here
            parameter = args[-1]
            return b"*2\r\n$%d\r\n%s\r\n$0\r\n\r\n" % (len(parameter), parameter)
        return b"-ERR unknown command\r\n"


async def serve(port: int) -> None:
    data: dict[bytes, bytes] = {}
    server = await asyncio.get_running_loop().create_server(lambda: BareConnection(data), "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=6380)
    asyncio.run(serve(parser.parse_args().port))
