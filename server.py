"""Educational Redis Clone: a Redis-compatible server in one readable file.

Run it with ``python server.py`` and talk to it with redis-cli, redis-py or
redis-benchmark. Read it as a book about how Redis works inside.

Part I, how Redis works, is the core, in the order a request travels: bytes
arrive on a connection, the parser turns them into a command, the command
table finds the function that runs it, the function reads and changes the
keyspace, and the reply goes back the way the request came. The commands come
after the keyspace they work on, and the snapshot after them. Then the ideas
built on them: saving in the background, the append-only file, transactions,
Pub/Sub (where the server speaks without being asked) and access control; the
server's start and stop close the part. Chapters 1 to 6 and 12 are the core,
to read in one sitting; each of chapters 7 to 11 adds one capability and can
be read on its own afterwards.

    1. The event loop and a connection   one thread serves every client
    2. RESP                               requests in, replies out
    3. The command table                  find the command, check it, run it
    4. The keyspace                       databases, values, lazy and active expiry
    5. The core commands                  PING, SET, GET, EXPIRE, INCR, KEYS...
    6. The snapshot                       saved atomically, loaded strictly
    7. Durability                         snapshots in a forked child, save rules
    8. The append-only file               every change logged before the reply
    9. Transactions                       MULTI, EXEC, and WATCH without locks
   10. Pub/Sub                            messages nobody asked for, pushed
   11. Access control                     passwords, protected mode, idle clients
   12. Startup and shutdown               in Redis's order

Part II, the fine print, is what makes this server Redis to the letter, and
fast: a first reading can skip it, and each appendix says what it adds.

    A. More commands                      the rest of each command family
    B. Redis to the letter                integers, globs, quoting, long doubles
    C. Introspection                      HELLO, CLIENT, COMMAND, INFO, CONFIG
    D. Performance                        the parser's shortcut, batched writes
    E. Limits                             what one client may cost the others
    F. A server inside your tests         running(), a server in a thread

Runtime: Python 3.10+ and its standard library only, on a POSIX system.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import codecs
import collections
import contextlib
import functools
import gc
import hashlib
import hmac
import itertools
import json
import logging
import os
import platform
import random
import re
import resource
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import BinaryIO

REDIS_VERSION = "7.0.15"  # the Redis release whose behaviour this server mirrors
SERVER_VERSION = "0.1.0"  # this project's own version

log = logging.getLogger("redis-clone")


# #############################################################################
# PART I: HOW REDIS WORKS
# #############################################################################
#
# Part I shows the plain version of each piece; by default a faster or safer
# one from Part II takes its place (each behind a switch, so that its gain can
# be measured), and each place where that happens says so. Part I also calls a
# few of Part II's helpers by name (parse_integer, glob_matcher, text,
# ReplyBuffer...) and marks where they live: read them as black boxes that do
# what they say.


# =============================================================================
# Chapter 1. The event loop and a connection
# =============================================================================
#
# Redis serves thousands of clients from one thread. It never waits on a
# socket: the operating system tells its event loop which sockets have bytes
# to read, and it handles each in turn. A command runs from start to finish
# without interruption, so no locks are needed and every command is atomic,
# but a slow command (KEYS on a huge database) makes every client wait.
#
# asyncio gives Python the same design: for each connection it creates one
# ClientConnection (an asyncio.Protocol) and calls data_received() with
# whatever bytes arrived. That is the whole journey of a request:
#
#   1. The connection's parser (chapter 2) returns every complete command in
#      the bytes: one read may hold half a command, or sixteen (pipelining).
#   2. execute() (chapter 3) runs each: it finds the command's function
#      (chapter 5), which works on the keyspace (chapter 4) and returns its
#      reply encoded in RESP.
#   3. The replies are queued, and the server's writer sends them.
#
# Nothing in this path awaits, so commands never interleave.


class Client:
    """The state of one connection that commands can read and change; later chapters keep theirs here too."""

    def __init__(self, server: Server, client_id: int, address: str, transport: asyncio.Transport) -> None:
        self.server = server
        self.transport = transport
        self.connection: ClientConnection | None = None  # its connection, with its buffers
        self.id = client_id
        self.address = address
        self.db = server.keyspace.databases[0]  # the database it SELECTed (chapter 5)
        self.protocol = 2  # RESP2 until HELLO 3
        self.null = RESP2_NULL
        self.close_after_reply = False  # close the connection once the replies so far are sent
        self.created = self.last_interaction = time.monotonic()  # last: when it last sent or was sent bytes
        self.propagated: list[bytes] | None = None  # what the append-only file logs for this command (chapter 8)
        # Transactions (chapter 9)
        self.transaction: Transaction | None = None  # the commands queued since MULTI
        self.running_transaction: Transaction | None = None  # the queue EXEC is running
        self.watched: dict[tuple[int, bytes], WatchedKey] = {}  # (db index, key) -> what WATCH noted of the key
        self.watched_key_touched = False  # one of them changed since WATCH: EXEC will fail (CLIENT_DIRTY_CAS)
        # Pub/Sub (chapter 10): the channels and patterns it listens to, in order (dicts as ordered sets)
        self.channels: dict[bytes, None] = {}
        self.patterns: dict[bytes, None] = {}
        self.pushed: list[bytes] = []  # messages pushed to it while it ran a command: they precede its reply
        self.authenticated = server.password_digest is None  # logged in (chapter 11): with no password, everyone is
        # Part II: CLIENT and MONITOR (Appendix C), client-output-buffer-limit (Appendix E)
        self.name = b""
        self.library: dict[bytes, bytes] = {}  # CLIENT SETINFO lib-name / lib-ver
        self.last_command = "NULL"  # the name of the last command it ran, for CLIENT LIST
        self.reply_mode = REPLY_ON  # CLIENT REPLY ON, OFF or SKIP
        self.monitoring = False  # MONITOR: every command run is streamed to it
        self.soft_limit_since = 0.0  # when its output first went over the soft limit, 0 if under it

    def propagate(self, args: list[bytes]) -> None:
        """Have the append-only file log args in place of the running command's own (chapter 8)."""
        if self.server.aof is not None:
            self.propagated = args

    def set_protocol(self, version: int) -> None:
        self.protocol = version
        self.null = RESP3_NULL if version == 3 else RESP2_NULL


class ClientConnection(asyncio.Protocol):
    """Bytes in, commands run, replies out: the life of one TCP connection.

    This plain version runs every request as soon as it has arrived. By default Appendix E's
    PausingConnection takes its place, which stops running a client's requests while it does not read.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        # RequestParser (chapter 2), or by default its faster subclass (Appendix D).
        self.parser = FastRequestParser() if server.options.parser_shortcut == "yes" else RequestParser()
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.requests: list[list[bytes]] = []  # parsed, not yet run
        self.closing_reply: bytes | None = None  # after the requests: a reply that ends the connection (b"": none)
        self.replies = ReplyBuffer()  # encoded replies not yet handed to the socket: a list of bytes (Appendix E)
        self.transport_full = False  # the socket's buffer is full (only PausingConnection notices)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if turned_away(self.server, transport, peer):  # over maxclients, or protected mode (chapter 11)
            return
        address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.client = self.server.client_connected(address, transport)
        self.client.connection = self
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):  # send small replies at once,
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # not waiting to fill a packet (Nagle)

    def data_received(self, data: bytes) -> None:
        client = self.client
        client.last_interaction = time.monotonic()
        # 1. Parse: every complete request in the bytes received so far.
        commands, protocol_error = self.parser.feed(data)
        self.requests += commands  # after any that still wait for the client to read (Appendix E)
        if protocol_error is not None:  # the requests before it run; then the error, and the connection closes
            log.debug("Protocol error from client %d (%s): %s", client.id, client.address, protocol_error)
            self.closing_reply = error_reply(f"ERR {protocol_error}")
        elif over_query_buffer_limit(self):  # a request that never ends (Appendix E)
            self.closing_reply = b""
        # 2. Execute them, and 3. queue their replies.
        self.run_requests()

    def run_requests(self) -> None:
        """Run the parsed requests in order, and hand their replies to the server's writer."""
        client = self.client
        if self.server.stopping:  # after the final save no command may run: its change would not be saved
            self.requests.clear()
        self.server.running_client = client  # a message it pushes to itself joins its replies in order (chapter 10)
        try:
            if self.parser.pipeline_as_received is not None:  # the log may take a pipeline's own bytes (Appendix D)
                execute_logging_as_received(self)
            else:
                self.execute_requests()
        except ConnectionAborted:  # a browser's request (execute, Appendix E): nothing more is run or sent
            self.requests.clear()
            self.replies.clear()
            self.transport.abort()
            return
        finally:
            self.server.running_client = None
        if self.requests and not client.close_after_reply:
            return  # some wait until the client has read its replies (PausingConnection)
        if self.closing_reply is not None and not client.close_after_reply:
            self.replies.append(self.closing_reply)
            client.close_after_reply = True
        if self.server.normal_output_limited and over_output_limit(self):  # client-output-buffer-limit (Appendix E)
            return
        if self.replies.size or client.close_after_reply:  # else only part of a request arrived
            self.server.writer.queue(self)

    def execute_requests(self) -> None:
        """Run the parsed requests and queue their replies, until one asks to close the connection."""
        client = self.client
        replies = []
        for args in self.requests:
            replies.append(execute(client, args))
            if client.close_after_reply:
                break
        del self.requests[: len(replies)]
        self.replies.extend(replies)
        self.server.stats.commands_processed += len(replies)

    def write_replies(self) -> None:
        """Hand queued replies to the socket while it takes them; close the connection if the client is done."""
        aof = self.server.aof
        if aof is not None and (aof.commands or aof.buffer):
            aof.flush()  # the log first: a reply must not promise a write the file has not got (chapter 8)
        closing = self.client.close_after_reply
        while self.replies.size and (closing or not self.transport_full):
            self.transport.write(self.replies.take())
        if closing:
            self.transport.close()  # sends what is buffered first

    def connection_lost(self, exc: Exception | None) -> None:
        self.requests.clear()
        self.replies.clear()
        if self.client is not None:  # None: turned away by connection_made
            self.server.client_disconnected(self.client)


class WriteAtOnce:
    """How replies leave: each connection's as soon as the requests of its read have run.

    By default Appendix D's BeforeSleepSelector takes its place, and writes them as Redis does: just before
    the event loop sleeps, the replies of all the clients served in its pass together.
    """

    def queue(self, connection: ClientConnection) -> None:
        connection.write_replies()

    queue_push = queue  # a message pushed to a client that sent nothing (chapter 10): sent at once too

    def flush(self) -> None:
        """Write whatever waits to be written: nothing, here."""


# =============================================================================
# Chapter 2. RESP: requests in, replies out
# =============================================================================
#
# A client sends each command as an array of bulk strings:
#
#     *3\r\n $3\r\nSET\r\n $4\r\nname\r\n $5\r\nAlice\r\n      (spaces added for reading)
#
# "*3" announces three arguments; each "$N" announces N bytes of payload. The
# lengths make the format binary-safe: a payload may itself contain "\r\n".
# For humans typing into telnet, Redis also accepts "inline" commands: one line
# of words separated by spaces ("SET name 'Alice Smith'"; Appendix B).
#
# TCP delivers a stream of bytes, not messages. One read may hold half a
# command, or sixteen commands at once (pipelining), so each connection owns a
# streaming parser: it keeps its place in whatever it could not finish and
# returns every complete command it finds.
#
# Replies use the same type prefixes: "+OK" (simple string), "-ERR ..." (error),
# ":42" (integer), "$5\r\nAlice" (bulk string), "*2" (array). RESP3, switched on
# per connection with HELLO 3, adds types of its own; the ones this server uses
# are "_" (null), "%" (map) and ">" (a push, chapter 10). Like Redis's addReply*() family, each command
# writes its reply in RESP directly with the helpers at the end of this chapter.


CRLF = b"\r\n"
PROTO_INLINE_MAX_SIZE = 64 * 1024  # longest inline request or "*N"/"$N" header line
PROTO_MAX_BULK_LEN = 512 * 1024 * 1024  # proto-max-bulk-len: the largest bulk string
PROTO_MAX_MULTIBULK_LEN = 2**31 - 1  # Redis rejects "*N" above INT_MAX


class ProtocolError(Exception):
    """A request that breaks RESP. Redis replies with the error, then closes the connection."""


class RequestParser:
    """A streaming RESP request parser: feed it bytes, get back complete commands.

    It walks the bytes as Redis's processMultibulkBuffer() does, with its
    checks and error messages. Bytes may arrive in any pieces:

    >>> parser = RequestParser()
    >>> parser.feed(b"*2\\r\\n$3\\r\\nGET\\r\\n$1\\r")
    ([], None)
    >>> parser.feed(b"\\nk\\r\\nPING\\r\\n")
    ([[b'GET', b'k'], [b'PING']], None)
    >>> parser.feed(b"*1\\r\\n:1\\r\\n")
    ([], ProtocolError("Protocol error: expected '$', got ':'"))

    Like Redis, it keeps the arguments of a request that has not all arrived,
    so each read parses just the bytes it brought: starting over on every read
    would let a client that sends a huge array an argument at a time keep the
    server re-parsing it.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()  # received bytes not parsed yet: the end of the last read (Redis's querybuf)
        self._args: list[bytes] = []  # the arguments read so far of a "*N" request still arriving (argv)
        self._args_missing = 0  # how many more arguments it needs (multibulklen); 0 between requests
        self._bulk_length = -1  # the length of the bulk string whose "$N" line was read, else -1 (bulklen)
        self._args_size = 0  # how many received bytes the request still arriving used for its arguments so far
        self.pipeline_as_received: tuple[list[list[bytes]], bytes] | None = None  # only FastRequestParser's (App. D)

    @property
    def pending_size(self) -> int:
        """The received bytes that wait for the rest of their request, parsed into arguments or not (Appendix E)."""
        return len(self._buffer) + self._args_size

    def feed(self, data: bytes) -> tuple[list[list[bytes]], ProtocolError | None]:
        """Add bytes from the socket; return the complete commands, and the protocol error that ended them if any."""
        commands: list[list[bytes]] = []
        try:
            if self._buffer or self._args_missing:  # the last read stopped inside a request: finish that one first
                self._buffer += data
                if self._bulk_length >= 0 and len(self._buffer) < self._bulk_length + 2:
                    return commands, None  # the buffer starts with a bulk string's payload: wait for all of it
                data = bytes(self._buffer)
                self._buffer.clear()  # before any payload is copied out of data: a value is at most twice in memory
                pos = self._parse_carefully(data, 0, commands, just_one=True)
                if self._args_missing:  # still unfinished: keep the bytes after its last whole argument
                    self._buffer += memoryview(data)[pos:]
                    return commands, None
                data = data[pos:]  # the rest of the read: whole requests, perhaps
            pos = self._parse_requests(data, commands)
            if pos < len(data):
                self._buffer += memoryview(data)[pos:]
        except ProtocolError as error:
            self._buffer, self._args, self._args_missing, self._bulk_length, self._args_size = bytearray(), [], 0, -1, 0
            return commands, error
        return commands, None

    def _parse_requests(self, data: bytes, commands: list[list[bytes]]) -> int:
        """Parse the requests at the start of data; return where the bytes stop making one (Appendix D overrides it)."""
        return self._parse_carefully(data, 0, commands)

    def _parse_carefully(self, data: bytes, pos: int, commands: list[list[bytes]], just_one: bool = False) -> int:
        """Parse data[pos:] request by request (just_one: one only); return where the bytes stop making a request."""
        end = len(data)
        request_start = 0  # where the "*N" request being parsed starts in data; 0 if it started in an earlier read
        while pos < end:
            if self._args_missing:  # inside a "*N" request: its "$N" bulk strings
                pos = self._read_arguments(data, pos)
                if self._args_missing:
                    break  # the rest of the request has not arrived yet
                commands.append(self._args)
                self._args, self._args_size = [], 0
                if just_one:
                    break
            elif data[pos] != 42:  # not "*": an inline command, one line of words (Appendix B)
                inline = read_inline_command(data, pos)
                if inline is None:
                    break  # the rest of its line has not arrived yet
                args, pos = inline
                if args:  # an empty line is no command
                    commands.append(args)
                if just_one:
                    break
            else:  # "*N": Redis reads the number up to the "\r" and steps over the "\n" after it unseen
                request_start = pos
                newline = data.find(b"\r", pos)
                if newline < 0 or newline + 2 > end:
                    if newline < 0 and end - pos > PROTO_INLINE_MAX_SIZE:
                        raise ProtocolError("Protocol error: too big mbulk count string")
                    break
                count = parse_integer(data[pos + 1 : newline])  # strict, as Redis's string2ll (Appendix B)
                if count is None or count > PROTO_MAX_MULTIBULK_LEN:
                    raise ProtocolError("Protocol error: invalid multibulk length")
                pos = newline + 2
                self._args_missing = max(count, 0)  # "*0" and "*-1" are empty requests: Redis skips them
        if self._args_missing:  # its bytes parsed so far count for the query buffer limit (Appendix E)
            self._args_size += pos - request_start
        return pos

    def _read_arguments(self, data: bytes, pos: int) -> int:
        """Read the bulk strings of the current "*N" request that have arrived; return where they end."""
        end = len(data)
        args, missing, length = self._args, self._args_missing, self._bulk_length
        while missing:
            if length < 0:  # the "$N" line comes first
                newline = data.find(b"\r", pos)
                if newline < 0 or newline + 2 > end:
                    if newline < 0 and end - pos > PROTO_INLINE_MAX_SIZE:
                        raise ProtocolError("Protocol error: too big bulk count string")
                    break
                if data[pos] != 36:  # "$"
                    raise ProtocolError(f"Protocol error: expected '$', got '{text(data[pos : pos + 1])}'")
                length = parse_integer(data[pos + 1 : newline])
                if length is None or not 0 <= length <= PROTO_MAX_BULK_LEN:
                    raise ProtocolError("Protocol error: invalid bulk length")
                pos = newline + 2
            if pos + length + 2 > end:  # the payload and its "\r\n" have not all arrived
                break
            args.append(data[pos : pos + length])
            pos += length + 2  # like Redis, step over the two bytes after the payload unseen
            length = -1
            missing -= 1
        self._args_missing, self._bulk_length = missing, length
        return pos


# --- Encoding replies -----------------------------------------------------------

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
ZERO = b":0\r\n"
ONE = b":1\r\n"
EMPTY_BULK = b"$0\r\n\r\n"
EMPTY_ARRAY = b"*0\r\n"
RESP2_NULL = b"$-1\r\n"  # RESP2 has no null type: it uses a bulk string of length -1
RESP3_NULL = b"_\r\n"


def simple_string(text: str) -> bytes:
    """A short status line.

    >>> simple_string("OK")
    b'+OK\\r\\n'
    """
    return b"+%s\r\n" % text.encode()


def error_reply(message: str) -> bytes:
    """An error. It must fit on one line: Redis turns any newline into a space.

    >>> error_reply("ERR syntax error")
    b'-ERR syntax error\\r\\n'
    """
    return b"-%s\r\n" % message.replace("\r", " ").replace("\n", " ").encode("utf-8", "surrogateescape")


def integer(value: int) -> bytes:
    """A signed integer.

    >>> integer(42)
    b':42\\r\\n'
    """
    return b":%d\r\n" % value


def bulk(value: bytes) -> bytes:
    """A binary-safe string: its length, then its bytes, which may hold anything, "\\r\\n" included.

    >>> bulk(b"a\\r\\nb")
    b'$4\\r\\na\\r\\nb\\r\\n'
    """
    return b"$%d\r\n%s\r\n" % (len(value), value)


def array(encoded_items: list[bytes]) -> bytes:
    """An array of replies that are already encoded: arrays nest.

    >>> array([integer(-2), bulk(b"two"), array([])])
    b'*3\\r\\n:-2\\r\\n$3\\r\\ntwo\\r\\n*0\\r\\n'
    """
    return b"*%d\r\n%s" % (len(encoded_items), b"".join(encoded_items))


def bulk_array(values: Iterable[bytes]) -> bytes:
    """An array of bulk strings, as KEYS replies.

    >>> bulk_array([b"a", b"bc"])
    b'*2\\r\\n$1\\r\\na\\r\\n$2\\r\\nbc\\r\\n'
    """
    return array([bulk(value) for value in values])


# =============================================================================
# Chapter 3. The command table: find the command, check it, run it
# =============================================================================
#
# Redis finds a command by name in a table that also records its arity (how
# many arguments it takes: N means exactly N counting the name, -N means at
# least N) and its flags. The server checks the name and the arity before the
# command runs, so each command function can trust the shape of its
# arguments. Commands with subcommands (CLIENT SETNAME, CONFIG GET...) are
# "containers": their subcommands have table entries of their own. What
# COMMAND DOCS says of each command is a table of its own, in Appendix C.
#
# Every command is a function (client, args) -> reply bytes, where args[0] is
# the command name as the client sent it. It reaches the data through
# client.db, the database the connection has SELECTed, and fails by raising
# CommandError, which becomes an error reply.


class CommandError(Exception):
    """An error reply ("-ERR ..."). Unlike a ProtocolError, the connection stays open."""


SYNTAX_ERROR = "ERR syntax error"
NOT_AN_INTEGER = "ERR value is not an integer or out of range"

CommandHandler = Callable[["Client", list], bytes]


@dataclass(slots=True)
class Command:
    """One row of the command table: how to run a command. (What COMMAND DOCS says of it: COMMAND_DOCS.)"""

    name: str  # lower case; "client|setname" for a subcommand
    handler: CommandHandler | None  # None for a container such as CLIENT
    arity: int  # N: exactly N arguments, counting the name; -N: at least N
    flags: tuple[str, ...]  # "write", "readonly", "fast"...: COMMAND reports them, refusals read them
    subcommands: dict[bytes, Command] = field(default_factory=dict)
    writes: bool = False  # flagged "write": what it changes goes to the append-only file (chapter 8)


COMMANDS: dict[bytes, Command] = {}


def command(name: str, arity: int, flags: str) -> Callable[[CommandHandler], CommandHandler]:
    """Register the decorated function in the command table; "parent|sub" registers a subcommand."""

    def register(handler: CommandHandler | None) -> CommandHandler | None:
        entry = Command(name, handler, arity, tuple(flags.split()), writes="write" in flags.split())
        parent, _, sub = name.partition("|")
        if sub:
            COMMANDS[parent.encode()].subcommands[sub.encode()] = entry
        else:
            COMMANDS[name.encode()] = entry
        return handler

    return register


def container(name: str) -> None:
    """Register a command that only groups subcommands, such as CLIENT or CONFIG: alone, it is an arity error."""
    command(name, -2, "")(None)


def execute(client: Client, args: list[bytes]) -> bytes:
    """Look the command (or subcommand) up, check it, run it, and return its reply.

    A request refused before it runs gets its error from refuse() (chapter 9:
    inside MULTI, that dooms the transaction too).
    """
    # 1. Find it in the table. (CLIENT LIST shows the last command's name.)
    entry = COMMANDS.get(args[0].lower())
    client.last_command = "NULL" if entry is None else entry.name
    if entry is None:
        abort_if_http(client, args)  # a browser's request drops the connection (Appendix E)
        return refuse(client, unknown_command_error(args))  # its exact text: Appendix B
    if entry.subcommands and len(args) > 1:
        sub = entry.subcommands.get(args[1].lower())
        if sub is None:
            client.last_command = "NULL"
            return refuse(client,  # c_string: the argument quoted as Redis quotes it (Appendix B)
                          f"ERR unknown subcommand '{c_string(args[1])[:128]}'. Try {entry.name.upper()} HELP.")
        entry = sub
        client.last_command = entry.name
    # 2. Check it: the number of arguments, then whether this client may run it now (chapter 11).
    arity = entry.arity
    if (len(args) != arity) if arity > 0 else (len(args) < -arity):
        return refuse(client, f"ERR wrong number of arguments for '{entry.name}' command", entry)
    refusal = command_refusal(client, entry)
    if refusal is not None:
        return refuse(client, refusal, entry)
    if client.transaction is not None and entry.name not in RUN_INSIDE_MULTI:
        return silenced(client, queue_command(client, entry, args))  # after MULTI, EXEC runs it (chapter 9)
    # 3. Run it.
    try:
        if entry.writes and client.server.aof is not None:
            reply = call_and_propagate(client, entry, args)  # the append-only file logs what it changed (chapter 8)
        else:
            reply = entry.handler(client, args)
    except CommandError as error:
        reply = error_reply(str(error))
    except Exception as error:  # out of memory, or a bug: the request fails alone (Appendix E)
        reply = failure_reply(client, entry, args, error)
    # 4. Rarely, more to it: what it pushed to itself, MONITOR's line, or CLIENT REPLY OFF (chapter 10).
    if client.server.monitors or client.pushed or client.reply_mode:
        reply = reply_as_sent(client, entry, args, reply)
    return reply


def parse_int_arg(value: bytes, message: str = NOT_AN_INTEGER) -> int:
    number = parse_integer(value)
    if number is None:
        raise CommandError(message)
    return number


# =============================================================================
# Chapter 4. The keyspace: databases, values and expiry
# =============================================================================
#
# Redis keeps each database as a hash table from key to value, plus a second
# hash table from key to expire time for the keys that have one. This server
# does the same with two Python dicts, so a key without a TTL costs nothing
# extra and "which keys can expire?" is just the second dict. Expire times are
# absolute Unix times in milliseconds, so they survive a restart unchanged.
# Only the database classes touch their dicts: commands go through methods.
#
# An expired key must never be seen, but deleting it the very millisecond it
# expires would need a timer per key. Redis combines two cheaper strategies:
#
#   * Lazy expiry: every command that looks a key up first checks its expire
#     time and deletes the key if it has passed (BasicDatabase.lookup).
#   * Active expiry: ten times a second, a background cycle samples keys that
#     have a TTL and deletes the expired ones, so keys that nobody reads again
#     do not sit in memory forever (BasicDatabase.active_expire).
#
# Values are strings: bytes, or a bytearray once APPEND has edited one in
# place (Appendix A). String commands read them through lookup_string(), the
# one place that would answer WRONGTYPE once other types share the dicts.

DATABASES = 16  # Redis's default "databases" setting
CONFIG_DEFAULT_HZ = 10  # default "hz": how many times a second background jobs (active expiry) run
CONFIG_MIN_HZ, CONFIG_MAX_HZ = 1, 500  # the range hz is kept in
ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP = 20  # keys sampled per round of the active expiry cycle
ACTIVE_EXPIRE_CYCLE_ACCEPTABLE_STALE = 10  # % expired in a sample above which the cycle goes on
ACTIVE_EXPIRE_CYCLE_SLOW_TIME_PERC = 25  # % of each 1/hz period the cycle may use at most

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
STRING_TYPES = (bytes, bytearray)  # the Python types a string value can have


def now_ms() -> int:
    """The wall clock in Unix milliseconds: the unit of every expire time."""
    return time.time_ns() // 1_000_000


def has_expired(when_ms: int, now: int) -> bool:
    """Redis's rule (keyIsExpired): a key lives through its expire time's millisecond, and is gone after it."""
    return now > when_ms


class BasicDatabase:
    """One numbered database: keys to values, keys to absolute expire times (Unix ms), and the keys' order.

    The keyspace makes its subclass Database (Appendix A), with what Part II and WATCH need.
    The clock is a parameter, so that expiry can be watched without waiting:

    >>> clock = [1_000]
    >>> db = BasicDatabase(0, clock=lambda: clock[0])
    >>> db.set(b"session", b"xyz")
    >>> db.set_expire(b"session", 1_500)
    >>> clock[0] = 1_500; db.lookup(b"session")
    b'xyz'
    >>> clock[0] = 1_501; db.lookup(b"session") is None
    True
    """

    def __init__(self, index: int, clock: Callable[[], int] = now_ms, pubsub: PubSub | None = None) -> None:
        self.index = index
        self.clock = clock  # now, in Unix ms
        self.pubsub = pubsub if pubsub is not None else PubSub()  # where its keyspace events go (chapter 10)
        self.changes = 0  # writes that changed this database: INFO's rdb_changes_since_last_save counts them
        self.data: dict[bytes, bytes | bytearray] = {}
        self.expires: dict[bytes, int] = {}
        self.key_list = KeyList()  # the keys in the order they were added, for RANDOMKEY and SCAN (Appendix A)
        self.watched_keys: dict[bytes, dict[Client, WatchedKey]] = {}  # key -> the clients that WATCH it (chapter 9)
        self.expired_count = 0  # keys this database deleted because their TTL passed
        self.avg_ttl = 0  # running estimate of the average TTL in ms, kept by active expiry
        self._expire_scan: list[bytes] = []  # the keys the active expiry cycle is walking through
        self._expire_scan_pos = 0
        # Told of each key expiry deletes, so that the append-only file logs a DEL (chapter 8).
        self.on_expired: Callable[[Database, bytes], None] | None = None

    def lookup(self, key: bytes) -> bytes | bytearray | None:
        """Return the value of key, deleting it first if it has expired (lazy expiry)."""
        if key in self.expires and has_expired(self.expires[key], self.clock()):
            self._expire(key)
            return None
        return self.data.get(key)

    def lookup_string(self, key: bytes) -> bytes | bytearray | None:
        """Like lookup(), but fail with WRONGTYPE if the value is not a string."""
        value = self.lookup(key)
        if value is not None and not isinstance(value, STRING_TYPES):
            raise CommandError(WRONGTYPE)
        return value

    def exists(self, key: bytes) -> bool:
        return self.lookup(key) is not None

    def set(self, key: bytes, value: bytes | bytearray, keep_ttl: bool = False) -> None:
        """Store value under key. A new value forgets the old TTL unless keep_ttl (SET ... KEEPTTL)."""
        if self.expires and key in self.expires and has_expired(self.expires[key], self.clock()):
            self._expire(key)  # lazy expiry: the expired key goes first ("expired"), the value is a new key
        if key not in self.data:
            self.key_list.append(key)
            if self.pubsub.notify_flags & NOTIFY_NEW:
                self.pubsub.keyspace_event("new", key, self.index)
        self.data[key] = value
        self.changes += 1
        if not keep_ttl and self.expires:
            self.expires.pop(key, None)
        if key in self.watched_keys:  # some client WATCHes it (chapter 9)
            touch_watched_key(self, key)

    def delete(self, key: bytes) -> bool:
        """Remove key; return whether it existed (an expired key did not)."""
        if self.lookup(key) is None:
            return False
        self._remove(key)
        self.changes += 1
        return True

    def get_expire(self, key: bytes) -> int | None:
        """The key's absolute expire time in ms, or None if it has none. The key must exist."""
        return self.expires.get(key)

    def set_expire(self, key: bytes, when_ms: int) -> None:
        """Give an existing key an absolute expire time (a past one makes it expire at its next lookup)."""
        self.expires[key] = when_ms
        self.changes += 1
        if key in self.watched_keys:  # some client WATCHes it (chapter 9)
            touch_watched_key(self, key)

    def expire_or_delete(self, key: bytes, when_ms: int) -> bool:
        """What EXPIRE and GETEX do: set the expire time (True), or delete the key now (False) if it is not later.

        Redis's checkAlreadyExpired(): a time of now already deletes, where a
        stored one would still live through this millisecond.
        """
        if when_ms <= self.clock():
            self.delete(key)
            return False
        self.set_expire(key, when_ms)
        return True

    def flush(self) -> None:
        if self.watched_keys:
            touch_all_watched_keys(self, None)
        self.changes += len(self.data)
        self.data.clear()
        self.expires.clear()
        self.key_list.compact(self.data)
        self._expire_scan = []
        self.avg_ttl = 0

    def add_loaded(self, key: bytes, value: bytes, when_ms: int | None) -> bool:
        """Add a key read from the snapshot, with its expire time; False if the database has it already."""
        if key in self.data:
            return False
        self.data[key] = value
        self.key_list.append(key)
        if when_ms is not None:
            self.expires[key] = when_ms
        return True

    def key_count(self) -> int:
        """DBSIZE: how many keys there are, counting expired ones not deleted yet, as Redis does."""
        return len(self.data)

    def matching_keys(self, matches: Callable[[bytes], bool]) -> list[bytes]:
        """KEYS: every live key that matches. O(n), like Redis's: it reads the whole table."""
        now = self.clock()
        expires = self.expires
        return [key for key in self.data if matches(key) and not (key in expires and has_expired(expires[key], now))]

    def entries(self) -> Iterator[tuple[bytes, bytes | bytearray, int | None]]:
        """Every key, its value and its expire time (None for no TTL): what the snapshot saves."""
        expires = self.expires
        for key, value in self.data.items():
            yield key, value, expires.get(key)

    def active_expire(self, deadline: float) -> None:
        """One database's share of the active expiry cycle; returns when done or past deadline.

        Scanning every key with a TTL would be slow with millions of them, so
        Redis samples ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP keys, deletes the expired
        ones, and samples again while time lasts and more than
        ACTIVE_EXPIRE_CYCLE_ACCEPTABLE_STALE percent of the sample had expired
        (so there are probably many more). Redis walks its hash table with a
        cursor, so that every key is visited in time; a Python dict has no
        cursor that survives inserts and deletes, so we walk a copy of the keys
        with a TTL, and copy them again at its end.
        """
        while self.expires and time.perf_counter() < deadline:
            if self._expire_scan_pos >= len(self._expire_scan):
                self._expire_scan = list(self.expires)
                self._expire_scan_pos = 0
            start = self._expire_scan_pos
            sample = self._expire_scan[start : start + ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP]
            self._expire_scan_pos += len(sample)
            now = self.clock()
            expired = ttl_sum = ttl_count = 0
            for key in sample:
                when = self.expires.get(key)
                if when is None:
                    continue  # deleted or persisted since the copy
                if has_expired(when, now):
                    self._expire(key)
                    expired += 1
                else:
                    ttl_sum += when - now
                    ttl_count += 1
            if ttl_count:  # INFO's avg_ttl, as Redis keeps it: each sample moves it 2% towards what it saw
                sample_avg = ttl_sum // ttl_count
                self.avg_ttl = sample_avg if self.avg_ttl == 0 else (self.avg_ttl // 50) * 49 + sample_avg // 50
            if expired * 100 <= len(sample) * ACTIVE_EXPIRE_CYCLE_ACCEPTABLE_STALE:
                return

    def _expire(self, key: bytes) -> None:
        self._remove(key)
        self.expired_count += 1
        if self.on_expired is not None:
            self.on_expired(self, key)
        notify_keyspace_event(self, NOTIFY_EXPIRED, "expired", key)  # lazy and active expiry both come here

    def _remove(self, key: bytes) -> None:
        """Take key out of the dicts; its entry in the key list goes stale."""
        del self.data[key]
        self.expires.pop(key, None)
        self.key_list.removed(self.data)
        if key in self.watched_keys:  # some client WATCHes it (chapter 9)
            touch_watched_key(self, key)


class Keyspace:
    """All the databases of one server."""

    def __init__(self, clock: Callable[[], int] = now_ms, pubsub: PubSub | None = None) -> None:
        self.pubsub = pubsub if pubsub is not None else PubSub()  # where keyspace events go (chapter 10)
        self.databases = [Database(index, clock, self.pubsub) for index in range(DATABASES)]

    def active_expire_cycle(self, hz: int) -> None:
        """Delete expired keys no client is reading; runs hz times a second."""
        budget = ACTIVE_EXPIRE_CYCLE_SLOW_TIME_PERC / 100 / hz
        deadline = time.perf_counter() + budget
        for db in self.databases:
            db.active_expire(deadline)

    def key_count(self) -> int:
        return sum(db.key_count() for db in self.databases)

    def expired_count(self) -> int:
        return sum(db.expired_count for db in self.databases)

    def changes(self) -> int:
        """How many writes have changed the data since the server started (Redis's server.dirty)."""
        return sum(db.changes for db in self.databases)


# =============================================================================
# Chapter 5. The core commands
# =============================================================================
#
# One function per command, named after it, as in Redis's t_string.c, db.c and
# expire.c: the ones a first reading needs. Each checks its options, reads or
# changes the keyspace, and returns its reply encoded in RESP. The rest of each
# family (QUIT, SHUTDOWN, DBSIZE, FLUSHALL, PTTL, PERSIST, APPEND, SCAN...) is
# in Appendix A, the letter of their option rules in Appendix B, and the
# introspection commands (HELLO, CLIENT, INFO...) in Appendix C.
#
# Two kinds of lines serve later chapters and can be read past for now: each
# write announces itself with notify_keyspace_event() (Pub/Sub's keyspace
# events, chapter 10), and a few tell the append-only file how to log them
# with client.propagate() (chapter 8).


# --- Connection -------------------------------------------------------------

@command("ping", -1, "fast")
def ping_command(client: Client, args: list[bytes]) -> bytes:
    # PING [message]: +PONG, or the message back as a bulk string.
    if len(args) > 2:
        raise CommandError("ERR wrong number of arguments for 'ping' command")
    if client.protocol == 2 and (client.channels or client.patterns):  # subscribed mode: shaped as a message
        return array([bulk(b"pong"), bulk(args[1] if len(args) == 2 else b"")])
    if len(args) == 2:
        message = args[1]
        return bulk(message)
    return PONG


@command("select", 2, "fast")
def select_command(client: Client, args: list[bytes]) -> bytes:
    index = args[1]
    client.db = client.server.database(index)  # from now on this connection's commands use that database
    return OK


# --- Keys -----------------------------------------------------------------------

@command("del", -2, "write")
def del_command(client: Client, args: list[bytes]) -> bytes:
    keys = args[1:]
    db = client.db
    deleted = 0
    for key in keys:
        if db.delete(key):
            deleted += 1
            notify_keyspace_event(db, NOTIFY_GENERIC, "del", key)
    return integer(deleted)  # how many existed


@command("keys", 2, "readonly")
def keys_command(client: Client, args: list[bytes]) -> bytes:
    # KEYS reads every key: O(n), as in Redis, where it blocks every client too. SCAN is the gentle way.
    pattern = args[1]
    return bulk_array(client.db.matching_keys(glob_matcher(pattern)))


@command("flushdb", -1, "write")
def flushdb_command(client: Client, args: list[bytes]) -> bytes:
    parse_flush_mode(args)  # ASYNC or SYNC, both flush at once (Appendix B)
    client.db.flush()
    return OK


# --- Expiry ---------------------------------------------------------------------

UNIT_SECONDS, UNIT_MILLISECONDS = 1000, 1  # milliseconds per unit


def expire_generic(client: Client, args: list[bytes], base_ms: int, unit: int) -> bytes:
    """EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT: set a TTL, subject to NX, XX, GT or LT."""
    key, amount = args[1], args[2]
    # 1. The options: NX (only if the key has no TTL), XX (only if it has one), GT or LT (only if later or
    #    earlier); and the absolute expire time in ms. Appendix B checks them as strictly as Redis does.
    options = parse_expire_options(args[3:])
    when = expire_time_ms(args[0], amount, base_ms, unit)
    # 2. Only an existing key gets a TTL, and only if the options agree with its current one.
    db = client.db
    if not db.exists(key):
        return ZERO
    current = db.get_expire(key)  # None: no TTL, which counts as infinite for GT and LT
    if (b"NX" in options and current is not None) or (b"XX" in options and current is None):
        return ZERO
    if b"GT" in options and (current is None or when <= current):
        return ZERO
    if b"LT" in options and current is not None and when >= current:
        return ZERO
    # 3. A time already past deletes the key at once. The log gets an absolute time, valid whenever it is replayed.
    if db.expire_or_delete(key, when):
        client.propagate([b"PEXPIREAT", key, b"%d" % when, *args[3:]])
        notify_keyspace_event(db, NOTIFY_GENERIC, "expire", key)
    else:
        client.propagate([b"DEL", key])
        notify_keyspace_event(db, NOTIFY_GENERIC, "del", key)
    return ONE


@command("expire", -3, "write fast")
def expire_command(client: Client, args: list[bytes]) -> bytes:
    return expire_generic(client, args, now_ms(), UNIT_SECONDS)


@command("pexpire", -3, "write fast")
def pexpire_command(client: Client, args: list[bytes]) -> bytes:
    return expire_generic(client, args, now_ms(), UNIT_MILLISECONDS)


@command("expireat", -3, "write fast")
def expireat_command(client: Client, args: list[bytes]) -> bytes:
    return expire_generic(client, args, 0, UNIT_SECONDS)


@command("pexpireat", -3, "write fast")
def pexpireat_command(client: Client, args: list[bytes]) -> bytes:
    return expire_generic(client, args, 0, UNIT_MILLISECONDS)


def ttl_generic(client: Client, key: bytes, in_ms: bool, absolute: bool) -> bytes:
    """TTL, PTTL, EXPIRETIME and PEXPIRETIME: -2 for no key, -1 for no TTL."""
    db = client.db
    if not db.exists(key):
        return integer(-2)
    when = db.get_expire(key)
    if when is None:
        return integer(-1)
    remaining = max(when if absolute else when - now_ms(), 0)
    return integer(remaining if in_ms else (remaining + 500) // 1000)  # Redis rounds to the nearest second


@command("ttl", 2, "readonly fast")
def ttl_command(client: Client, args: list[bytes]) -> bytes:
    key = args[1]
    return ttl_generic(client, key, in_ms=False, absolute=False)


# --- Strings: any bytes, up to proto-max-bulk-len of them ----------------------

@command("set", -3, "write")
def set_command(client: Client, args: list[bytes]) -> bytes:
    key, value = args[1], args[2]
    db = client.db
    if len(args) == 3:  # the common case, kept short: SET key value
        db.set(key, value)
        notify_keyspace_event(db, NOTIFY_STRING, "set", key)
        return OK
    # 1. The options: NX/XX (only if absent/present), GET (reply with the old value), and an expiry.
    #    Which of them exclude which, and what an expiry may be, Appendix B checks as Redis does.
    flags, expire_option, expire_arg = parse_set_options(
        args, 3, {b"NX", b"XX", b"GET", b"KEEPTTL", b"EX", b"PX", b"EXAT", b"PXAT"})
    when = expire_at_ms(expire_option, expire_arg, "set") if expire_option else None
    # 2. The old value, which NX, XX and GET need (GET refuses a value that is not a string).
    old = db.lookup_string(key) if b"GET" in flags else db.lookup(key)
    if (b"NX" in flags and old is not None) or (b"XX" in flags and old is None):
        return (bulk(old) if old is not None else client.null) if b"GET" in flags else client.null
    # 3. Store it. A new value forgets the old TTL, unless KEEPTTL; EX, PX, EXAT or PXAT sets a new one.
    db.set(key, value, keep_ttl=b"KEEPTTL" in flags)
    notify_keyspace_event(db, NOTIFY_STRING, "set", key)
    if when is not None:
        db.set_expire(key, when)
        client.propagate([b"SET", key, value, b"PXAT", b"%d" % when])  # an absolute time for the log
        notify_keyspace_event(db, NOTIFY_GENERIC, "expire", key)
    elif b"GET" in flags:  # the log needs no GET: replaying it replies to nobody
        client.propagate(args[:3] + [arg for arg in args[3:] if arg.upper() != b"GET"])
    if b"GET" in flags:
        return bulk(old) if old is not None else client.null
    return OK


@command("get", 2, "readonly fast")
def get_command(client: Client, args: list[bytes]) -> bytes:
    key = args[1]
    value = client.db.lookup_string(key)  # None if missing or expired (lazy expiry deletes it on the way)
    # bulk(value), written out: GET is the most frequent command, and a call costs more than the format
    return client.null if value is None else b"$%d\r\n%s\r\n" % (len(value), value)


@command("mget", -2, "readonly fast")
def mget_command(client: Client, args: list[bytes]) -> bytes:
    keys = args[1:]
    lookup, null = client.db.lookup, client.null
    replies = []
    for key in keys:
        value = lookup(key)
        replies.append(bulk(value) if isinstance(value, STRING_TYPES) else null)  # other types read as nil
    return array(replies)


@command("mset", -3, "write")
def mset_command(client: Client, args: list[bytes]) -> bytes:
    keys_and_values = args[1:]
    if len(keys_and_values) % 2:
        raise CommandError("ERR wrong number of arguments for 'mset' command")
    client.db.set_many(keys_and_values)  # each pair stored as SET stores it, with its event (Appendix A)
    return OK


def increment(client: Client, key: bytes, amount: int) -> bytes:
    """INCR, DECR, INCRBY and DECRBY: add amount to the integer stored at key (missing counts as 0)."""
    # Redis stores numbers as strings: read it as a 64-bit integer, add, check, store it as text again.
    db = client.db
    old = db.lookup_string(key)
    value = 0 if old is None else parse_int_arg(old)
    value += amount
    if not LLONG_MIN <= value <= LLONG_MAX:
        raise CommandError("ERR increment or decrement would overflow")
    db.set(key, b"%d" % value, keep_ttl=True)  # a counter keeps its TTL
    notify_keyspace_event(db, NOTIFY_STRING, "incrby", key)
    return integer(value)


@command("incr", 2, "write fast")
def incr_command(client: Client, args: list[bytes]) -> bytes:
    key = args[1]
    return increment(client, key, 1)


# =============================================================================
# Chapter 6. The snapshot: saved atomically, loaded strictly
# =============================================================================
#
# Redis persists in two ways: a snapshot of the whole dataset now and then
# (compact and quick to load, but a crash loses what changed since), and a
# log of every write (chapter 8). Here a snapshot is JSON, so that `cat
# dump.json` shows exactly what is stored. SAVE and shutdown write it
# atomically, as Redis does: a temporary file in the same directory, flushed
# to the disk (fsync), then renamed over the old file. A rename within one
# file system is atomic, so a crash at any moment leaves either the old
# snapshot or the new one, never half of one.
#
# The file: a header, then one line per key: [db, key, value, expires_at_ms],
# where expires_at_ms is an absolute Unix time in ms or null. Keys and values
# are bytes but JSON strings are text, so each byte string is decoded as UTF-8
# with Python's "surrogateescape" error handler: valid UTF-8 reads as itself,
# and each byte that is not valid UTF-8 becomes the code point U+DC80 + byte,
# which JSON writes as an escape such as "\udcff". Loading reverses it exactly.
#
# SAVE writes each line as soon as it is made, so that saving costs little
# memory beyond the data itself. Loading is strict, as Redis's is: an entry
# that no snapshot could hold (a value that is not a string, an expire time
# beyond 64 bits, a key seen twice) stops the server from starting, rather
# than have it guess, then save its guess.


DUMP_FORMAT = "educational-redis-clone"
DUMP_VERSION = 1
DUMP_FIELDS = ["db", "key", "value", "expires_at_ms"]
DUMP_ENCODING = "utf-8"
DUMP_ERRORS = "surrogateescape"  # how bytes that are not UTF-8 survive; see above
quote_json = json.encoder.encode_basestring_ascii  # a str as a JSON string literal in ASCII (in C)


class DumpError(Exception):
    """The snapshot file exists but cannot be loaded."""


def save_snapshot(keyspace: Keyspace, path: str) -> None:
    """Write every key to path atomically: temporary file, fsync, rename."""
    header = json.dumps({"format": DUMP_FORMAT, "version": DUMP_VERSION, "fields": DUMP_FIELDS})
    temporary = temporary_snapshot_path(path, os.getpid())
    try:
        with open(temporary, "w", encoding="ascii") as file:
            file.write(header[:-1] + ',\n"entries": [\n')
            file.writelines(entry_lines(keyspace))
            file.write("\n]}\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    fsync_directory(path)  # so that the rename itself is on the disk too (chapter 7)


def temporary_snapshot_path(path: str, pid: int) -> str:
    """Where process pid writes the snapshot before renaming it to path, as Redis's temp-<pid>.rdb."""
    return os.path.join(os.path.dirname(os.path.abspath(path)), f"temp-{pid}.json")


def entry_lines(keyspace: Keyspace) -> Iterator[str]:
    """The entries as text, a line per key, made one at a time so that the file's buffer is the only batch."""
    separator = ""
    for db in keyspace.databases:
        for key, value, when in db.entries():
            expiry = "null" if when is None else when
            if len(key) + len(value) <= SAVE_CHUNK:  # nearly always: the whole line in one piece
                yield (f"{separator}[{db.index},{quote_json(key.decode(DUMP_ENCODING, DUMP_ERRORS))},"
                       f"{quote_json(value.decode(DUMP_ENCODING, DUMP_ERRORS))},{expiry}]")
            else:  # a large key or value is encoded a piece at a time (Appendix E)
                yield from large_entry_pieces(f"{separator}[{db.index},", key, value, f",{expiry}]")
            separator = ",\n"


def load_snapshot(keyspace: Keyspace, path: str) -> int:
    """Load a snapshot into an empty keyspace; return how many keys were loaded.

    Anything wrong with the file raises DumpError: the server must not start
    empty and later overwrite data it failed to read.
    """
    document_text = read_snapshot_text(path)  # decoded in pieces, to spare memory (Appendix E)
    # A million small lists would set off the cyclic garbage collector again and
    # again, for nothing: none of them can be part of a cycle.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_entries(keyspace, document_text)
    finally:
        if gc_was_enabled:
            gc.enable()


def _load_entries(keyspace: Keyspace, document_text: str) -> int:
    try:
        document = json.loads(document_text)
    except ValueError as error:
        raise DumpError(f"not valid JSON: {error}") from error
    except RecursionError as error:  # the parser recurses once per level; a snapshot has three
        raise DumpError("JSON nested too deeply to be a snapshot") from error
    if not isinstance(document, dict) or document.get("format") != DUMP_FORMAT:
        raise DumpError(f'not a snapshot of this server (expected "format": "{DUMP_FORMAT}")')
    if document.get("version") != DUMP_VERSION:
        raise DumpError(f"unsupported version {document.get('version')!r} (this server reads {DUMP_VERSION})")
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise DumpError('"entries" is missing or not a list')
    now = now_ms()
    loaded = 0
    for number, entry in enumerate(entries, 1):
        try:
            index, key, value, when = entry
            if type(index) is not int or not 0 <= index < DATABASES:
                raise ValueError(f"database {index!r} is not between 0 and {DATABASES - 1}")
            if not (when is None or type(when) is int):
                raise ValueError(f"expiry {when!r} is not an integer or null")
            if when is not None and not LLONG_MIN <= when <= LLONG_MAX:  # an RDB file stores a long long
                raise ValueError(f"expiry {when} is outside the 64-bit range of Redis's expire times")
            key_bytes = key.encode(DUMP_ENCODING, DUMP_ERRORS)
            value_bytes = value.encode(DUMP_ENCODING, DUMP_ERRORS)
        except (TypeError, ValueError, AttributeError, UnicodeEncodeError) as error:
            raise DumpError(f"entry {number} ({str(entry)[:80]}): {error}") from error
        if when is not None and has_expired(when, now):
            continue  # expired while the server was down
        if not keyspace.databases[index].add_loaded(key_bytes, value_bytes, when):
            # Which of the two is the data? Redis refuses such an RDB file too.
            raise DumpError(f"entry {number} ({str(entry)[:80]}): duplicated key in database {index}")
        loaded += 1
    return loaded


@command("save", 1, "admin noscript no_async_loading no_multi")
def save_command(client: Client, args: list[bytes]) -> bytes:
    # SAVE blocks every client while it writes the snapshot, as it does in Redis. save_now (chapter 7) also
    # notes the time and the changes saved, for the save rules.
    if client.server.child.kind == "rdb":  # two writers of one file: BGSAVE's child is already at it
        raise CommandError("ERR Background save already in progress")
    client.server.stats.rdb_saves += 1
    try:
        save_now(client.server)
    except OSError as error:
        log.warning("SAVE failed: %s", error)
        raise CommandError("ERR") from error
    return OK


# =============================================================================
# Chapter 7. Durability: snapshots in the background
# =============================================================================
#
# SAVE writes the snapshot from the event loop, so every client waits for it:
# most of a second for a million keys. Redis makes the snapshot without stopping by
# asking the operating system for a copy of the whole server: fork(). The
# child process starts with the parent's memory as it was at that instant, the
# same keys and values, and writes them to the file at leisure, while the
# parent goes back to its clients at once. The copy costs almost nothing up
# front: parent and child share every page of memory until one of them writes
# to it, and only then does the kernel copy that page (copy-on-write). So the
# snapshot is the data as it was at the fork, however much the parent changes
# meanwhile, and it costs memory only for the pages that change during it.
# (Python pays more than C here: reading an object changes its reference
# count, so the child copies every page it reads, 60% of the server's memory
# in a save of a million keys. The parent still never waits; the child just
# needs more memory.)
#
# The parent never blocks on the child. Ten times a second its cron (Redis's
# serverCron: persistence_cron, chapter 8) asks the kernel, without waiting,
# whether the child has exited (waitpid with WNOHANG), and if so whether it
# exited 0 (success) or not. Only one child runs at a time, as in Redis: two
# would double the memory copy-on-write can cost. A background rewrite of the
# append-only file uses the same machinery (BackgroundChild).
#
# The child must do its one job and vanish. It never runs the event loop
# (its sockets are the parent's clients), and it leaves with os._exit(), not
# sys.exit(): exit handlers, and buffers flushed twice, belong to the parent.
# It first closes every file it inherited but stdin, stdout and stderr: a
# socket stays open while any process holds it, so a client the parent
# disconnects would otherwise wait for the child to finish to see it closed,
# and a restarted server could not listen on the port. Where fork() does not
# exist, the job runs in the foreground, and every client waits, as with SAVE.
#
# When to save? Redis's answer is a list of save rules, "save <seconds>
# <changes>": take a snapshot when at least <changes> writes have been made
# and more than <seconds> have passed since the last save. The default,
# "3600 1 300 100 60 10000", saves within an hour after any change, within
# five minutes after 100, and within a minute after 10,000: the busier the
# data, the less of it a crash can cost. The cron checks the rules ten times
# a second (save_if_due). A background save that fails is retried no
# sooner than CONFIG_BGSAVE_RETRY_DELAY seconds later, not ten times a second.
# --save "" turns the rules off: then the server saves only on SAVE, BGSAVE
# and, if asked, SHUTDOWN SAVE.
#
# A failed background save (a full disk, a folder gone) is a silent danger:
# clients go on writing data that will never reach the disk. So Redis, with
# save rules on and stop-writes-on-bgsave-error yes (the default), refuses
# every write command, and PING, with a -MISCONF error until a save succeeds;
# reads go on. Whoever runs the server notices at once, not after a crash.


class ChildStopped(BaseException):
    """Raised in a child process by SIGUSR1 (BackgroundChild.kill) or SIGTERM: stop, cleaning up on the way."""


def stop_child(signum: int, frame: object) -> None:
    raise ChildStopped


def run_job(work: Callable[[], None]) -> bool:
    """Run a background job's work(); if it fails, log why and return False."""
    try:
        work()
        return True
    except OSError as error:  # the disk is full, the folder is gone...: the error says it all
        log.warning("Background job failed: %s", error)
    except Exception:
        log.exception("Background job failed")
    return False


class BackgroundChild:
    """The one child process a server may run at a time, for BGSAVE or BGREWRITEAOF (Redis's server.child_pid).

    start(kind, work, on_done) forks; the child runs work() and exits 0, or 1
    if work() raised. The parent's cron calls poll(), which notices the exit
    and calls on_done(success), with kind back to None and pid still the
    child's. kill() ends a running child (at shutdown).
    """

    def __init__(self) -> None:
        self.kind: str | None = None  # what the running child does ("rdb", "aof"), None while there is none
        self.pid = 0
        self.started = 0.0  # time.time() of the fork
        self.on_done: Callable[[bool], None] = lambda success: None
        self.forks = 0  # INFO's total_forks
        self.last_fork_usec = 0  # how long the last fork() blocked the server (INFO's latest_fork_usec)

    def start(self, kind: str, work: Callable[[], None], on_done: Callable[[bool], None]) -> None:
        """Run work() in a forked child; on_done(success) runs in the parent once it exits. Raises OSError."""
        assert self.kind is None, "one child at a time: check BackgroundChild.kind first"
        if not hasattr(os, "fork"):
            log.warning("No fork() on this system: running the %s job in the foreground; clients wait", kind)
            on_done(run_job(work))
            return
        sys.stdout.flush()  # or the child would write the parent's buffered output a second time
        sys.stderr.flush()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            self._run_in_child(work)
        self.last_fork_usec = int((time.perf_counter() - started) * 1_000_000)  # copying the page tables
        self.forks += 1
        self.kind, self.pid, self.started, self.on_done = kind, pid, time.time(), on_done

    def _run_in_child(self, work: Callable[[], None]) -> None:
        exit_code = 1
        try:
            with contextlib.suppress(ValueError):  # ValueError: only the main thread may; it is, after fork()
                signal.set_wakeup_fd(-1)  # the parent's event loop reads that pipe: a signal here must not wake it
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole process group: the parent
                # decides, and stops this child if it exits. SIGUSR1 is kill()'s; SIGTERM, an administrator's.
                # Either unwinds the child through work(), which removes its temporary files on the way.
                signal.signal(signal.SIGUSR1, stop_child)
                signal.signal(signal.SIGTERM, stop_child)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the clients' sockets too: see the chapter's opening
            for handler in logging.getLogger().handlers:
                handler.setFormatter(log_formatter("C"))
            gc.disable()  # the collector would write to every container's header: copy-on-write for nothing
            exit_code = 0 if run_job(work) else 1
        finally:  # whatever happened, ChildStopped included: nothing of the parent's may run here
            os._exit(exit_code)

    def poll(self) -> None:
        """Called by the cron: if the child has exited, reap it and call on_done(success)."""
        if self.kind is None:
            return
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return  # still running
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code < 0:
            log.warning("Background %s child %d terminated by signal %d", self.kind, self.pid, -exit_code)
        on_done = self.on_done
        self.kind = None
        on_done(exit_code == 0)

    def kill(self, only: str | None = None) -> None:
        """End the running child (of that kind only, if given) and wait for it: on_done is not called.

        The child removes its temporary files on its way out (ChildStopped
        unwinds through work()), so the caller has nothing to clean up.
        """
        if self.kind is None or only not in (None, self.kind):
            return
        log.warning("There is a child %s process (pid %d). Killing it!", self.kind, self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGUSR1)  # Redis's signal for "stop, this is no error"
        os.waitpid(self.pid, 0)
        self.kind = None


CONFIG_BGSAVE_RETRY_DELAY = 5  # seconds between the save rules' tries after a failed background save


class SaveRules:
    """The save rules, (seconds, changes) pairs in the order given, and which one is due (save_if_due).

    The cron asks ten times a second. One CONFIG SET can give a million rules,
    and a loop over them would take longer than the cron's tick, so the rules
    are also kept sorted by seconds, each with the rule of fewest changes among
    it and those before it: a binary search finds the easiest rule old enough.

    >>> rules = SaveRules([(3600, 1), (300, 100), (60, 10000)])
    >>> rules.due(seconds_since_save=301, changes=150)
    (300, 100)
    >>> rules.due(seconds_since_save=301, changes=50) is None
    True
    """

    def __init__(self, rules: list[tuple[int, int]]) -> None:
        self.rules = rules
        by_seconds = sorted(rules)
        self.seconds = [seconds for seconds, _ in by_seconds]
        self.easiest = list(itertools.accumulate(by_seconds, lambda best, rule: rule if rule[1] < best[1] else best))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __str__(self) -> str:
        return " ".join(f"{seconds} {changes}" for seconds, changes in self.rules)

    def due(self, seconds_since_save: int, changes: int) -> tuple[int, int] | None:
        """A rule that asks for a save now: more seconds than it says have passed, and as many changes been made."""
        old_enough = bisect.bisect_left(self.seconds, seconds_since_save)  # the rules of fewer seconds than that
        if old_enough and self.easiest[old_enough - 1][1] <= changes:
            return self.easiest[old_enough - 1]
        return None


class SnapshotState:
    """The server's state for snapshots and the background child; Server (chapter 12) inherits it."""

    def __init__(self, started: float) -> None:
        self.last_save = int(started)  # Unix time of the last successful save, or of the start (LASTSAVE)
        self.changes_at_last_save = 0  # keyspace.changes() when the last snapshot was saved or loaded
        self.child = BackgroundChild()  # the BGSAVE (or BGREWRITEAOF) child process, when one runs
        self.last_bgsave_ok = True  # did the last background save succeed? (INFO's rdb_last_bgsave_status)
        self.last_bgsave_try = 0  # Unix time of the last BGSAVE's fork
        self.disk_error: str | None = None  # why write commands are refused (MISCONF), if they are: check_disk()
        self.bgsave_scheduled = False  # BGSAVE SCHEDULE: start one as soon as no child runs


MISCONF_RDB = (
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. "
    "Commands that may modify the data set are disabled, because this instance is configured to report errors "
    "during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs "
    "for details about the RDB error.")


@command("bgsave", -1, "admin noscript")
def bgsave_command(client: Client, args: list[bytes]) -> bytes:
    # BGSAVE [SCHEDULE]: SCHEDULE waits for another child (an AOF rewrite) to finish instead of failing.
    if len(args) > 2 or (len(args) == 2 and args[1].lower() != b"schedule"):
        raise CommandError(SYNTAX_ERROR)
    server = client.server
    if server.child.kind == "rdb":
        raise CommandError("ERR Background save already in progress")
    in_exec = client.running_transaction is not None  # a fork now would save half of the transaction
    if server.child.kind is not None or in_exec:
        if len(args) == 1 and not in_exec:
            raise CommandError("ERR Another child process is active (AOF?): can't BGSAVE right now. "
                               "Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.")
        server.bgsave_scheduled = True
        return simple_string("Background saving scheduled")
    try:
        background_save(server)
    except OSError as error:
        raise CommandError("ERR") from error
    return simple_string("Background saving started")


def load_snapshot_at_startup(server: Server) -> None:
    """Load the snapshot, if there is one; loading is no change that needs saving. Raises DumpError."""
    if not os.path.exists(server.dump_path):
        log.info("No snapshot at %s: starting with an empty dataset", server.dump_path)
        return
    started = time.perf_counter()
    count = load_snapshot(server.keyspace, server.dump_path)
    server.stats.keys_loaded = count
    server.changes_at_last_save = server.keyspace.changes()
    log.info("DB loaded from disk: %d keys in %.3f seconds (%s)", count, time.perf_counter() - started,
             server.dump_path)


def save_now(server: Server) -> None:
    """Write the snapshot in the foreground, as SAVE and shutdown do: every client waits. Raises OSError."""
    changes = server.keyspace.changes()
    write_snapshot(server)
    snapshot_saved(server, changes)


def final_save(server: Server, save: bool | None, force: bool) -> int | None:
    """Shutdown's snapshot (chapter 12): the exit code, or None if the save failed and the server must go on serving.

    If the save fails (a full disk, a directory gone), exiting would throw
    away every change since the last save. So, like Redis, the server logs
    why, answers SHUTDOWN with an error, and keeps serving: free the disk and
    shut down again, or use SHUTDOWN NOSAVE to give the changes up. Redis
    retries on every signal; here a second SIGTERM or Ctrl+C after a failed
    save tries once more and then exits anyway, with exit code 1: whoever
    asks twice wants the process gone, and the log says exactly what was lost.

    save: True (SHUTDOWN SAVE), False (NOSAVE), None if there are save rules (SHUTDOWN, SIGTERM). force (SHUTDOWN
    FORCE, a second signal) exits even if the save fails, with exit code 1.
    """
    server.child.kill()  # its snapshot would race the final one, and would be older
    if not (save or (save is None and server.options.save)):
        return 0
    log.info("Saving the final snapshot before exiting.")
    try:
        save_now(server)
    except OSError as error:
        log.warning("Failed saving the snapshot %s: %s", server.dump_path, error)
        if not force:
            log.warning("Error trying to save the DB, can't exit.")
            log.warning("Errors trying to shut down the server. Check the logs for more information.")
            return None
        log.warning("Exiting anyway: every change since the last successful save is lost.")
        return 1
    return 0


def write_snapshot(server: Server) -> None:
    """Write the snapshot and log it: in the server for SAVE, in the child for BGSAVE."""
    started = time.perf_counter()
    save_snapshot(server.keyspace, server.dump_path)
    log.info("DB saved on disk: %d keys in %.3f seconds (%s)", server.keyspace.key_count(),
             time.perf_counter() - started, server.dump_path)


def snapshot_saved(server: Server, changes: int) -> None:
    """A snapshot holding the first `changes` changes is on disk: they need no saving any more."""
    server.changes_at_last_save = changes
    server.last_save = int(time.time())
    server.last_bgsave_ok = True  # as in Redis, a good SAVE also ends the MISCONF refusal of writes
    check_disk(server)


def check_disk(server: Server) -> None:
    """Set disk_error, which execute() answers write commands with (Redis's writeCommandsDeniedByDiskError).

    Call it after anything it depends on changes: the last background
    save's outcome, the save rules, stop-writes-on-bgsave-error, the
    append-only file's last write.
    """
    stop_writes = server.options.stop_writes_on_bgsave_error == "yes"
    refuse = not server.last_bgsave_ok and bool(server.options.save) and stop_writes
    aof_error = server.aof.write_error if server.aof is not None else None
    if refuse:
        server.disk_error = MISCONF_RDB
    elif aof_error is not None:  # the append-only file (chapter 8) cannot be written
        server.disk_error = f"MISCONF Errors writing to the AOF file: {aof_error}"
    else:
        server.disk_error = None


def background_save(server: Server) -> None:
    """Redis's rdbSaveBackground: fork a child that writes the snapshot; the cron hears how it went.

    Raises OSError if the fork fails. The caller checks that no child runs.
    """
    server.stats.rdb_saves += 1
    server.last_bgsave_try = int(time.time())
    on_done = functools.partial(background_save_done, server, server.keyspace.changes(), server.last_bgsave_try)
    try:
        server.child.start("rdb", functools.partial(write_snapshot, server), on_done)
    except OSError as error:
        server.last_bgsave_ok = False
        check_disk(server)
        log.warning("Can't save in background: fork: %s", error.strerror or error)
        raise
    if server.child.kind == "rdb":  # else there is no fork(), and the save has already run
        log.info("Background saving started by pid %d", server.child.pid)


def background_save_done(server: Server, changes: int, started: int, success: bool) -> None:
    """The BGSAVE child has exited (Redis's backgroundSaveDoneHandler)."""
    if success:
        log.info("Background saving terminated with success")
        snapshot_saved(server, changes)  # the changes made since the fork are still unsaved
    else:
        log.warning("Background saving error")
        server.last_bgsave_ok = False
        check_disk(server)
        with contextlib.suppress(OSError):  # a child killed by a signal could not remove its unfinished file
            os.unlink(temporary_snapshot_path(server.dump_path, server.child.pid))
    server.stats.last_bgsave_seconds = int(time.time()) - started


def may_try_bgsave(server: Server, now: int) -> bool:
    """After a failed background save, the next try waits CONFIG_BGSAVE_RETRY_DELAY seconds."""
    return server.last_bgsave_ok or now - server.last_bgsave_try > CONFIG_BGSAVE_RETRY_DELAY


def save_after_flushall(server: Server) -> None:
    """What FLUSHALL asks of the snapshot, as in Redis.

    A background save in progress is stopped (it would write the old data back), and with save rules on,
    the empty dataset is saved at once: a restart cannot bring the keys back.
    """
    server.child.kill(only="rdb")
    if server.options.save and not server.loading:  # replaying the log (chapter 8) saves nothing
        try:
            save_now(server)
        except OSError as error:  # FLUSHALL itself has succeeded
            log.warning("Failed saving the snapshot after FLUSHALL: %s", error)


def save_if_due(server: Server, now: int) -> None:
    """Start a background save if a save rule says so (Redis's serverCron; chapter 7 explains the rules)."""
    rule = server.options.save.due(now - server.last_save, server.keyspace.changes() - server.changes_at_last_save)
    if rule is not None and may_try_bgsave(server, now):
        seconds, changes = rule
        log.info("%d changes in %d seconds. Saving...", changes, seconds)
        with contextlib.suppress(OSError):  # logged, and tried again after the retry delay
            background_save(server)


def fsync_directory(path: str) -> None:
    """Flush the directory of path, where the OS allows it: a rename is written there, not in the file.

    The snapshot's rename (chapter 6) and the append-only file's (chapter 8)
    survive a power cut only once the directory is on the disk too.
    """
    with contextlib.suppress(OSError):
        directory_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)


# =============================================================================
# Chapter 8. The append-only file: every change, logged before the reply
# =============================================================================
#
# A snapshot loses whatever changed since it was made. An append-only file
# (AOF) loses little or nothing: every command that changed the data is
# appended to a file, in RESP, before its client hears "OK". After a crash
# the server replays the file command by command and ends with the data it
# had. Three questions shape it.
#
# What goes in the log? A command, after it ran, and only if it changed the
# data. Each database counts its changes (Database.changes; Redis counts them
# in server.dirty): execute() (chapter 3) hands each write command to
# call_and_propagate(), which compares the count of the client's database
# before and after, as Redis's call() does before it calls propagate() and
# feedAppendOnlyFile(). A command that changed nothing (SETNX on a taken key,
# DEL of a missing one) leaves no trace. The log is replayed later, perhaps
# days later, so what it holds must mean the same then. Most commands are
# logged as they came; a few name another form with client.propagate(), as
# Redis's commands rewrite their argv (the few that change other databases
# than the client's, FLUSHALL, SWAPDB and COPY ... DB, name their own):
#
#   EXPIRE k 60, SET k v EX 60   ->  PEXPIREAT k <ms>, SET k v PXAT <ms>:
#                                    a relative time becomes an absolute one
#   EXPIRE k -1                  ->  DEL k: a time already past deleted it
#   INCRBYFLOAT k 0.1            ->  SET k <result> KEEPTTL: no float arithmetic to redo
#   GETSET, GETDEL, GETEX        ->  SET, DEL, PEXPIREAT or PERSIST
#
# A key that expiry deletes, lazily (a lookup finds it expired) or actively
# (the cycle of chapter 4), is logged as DEL k (Database.on_expired): the
# replay must not depend on the clock it runs at. When a write command's own
# lookup deletes an expired key, the DEL and the command are wrapped in
# MULTI/EXEC, as Redis wraps everything one command propagates. A SELECT goes
# in whenever a command is for another database than the one before it.
#
# When is it on disk? Commands are encoded into a buffer in memory (Redis's
# aof_buf), and the buffer goes to the file with one write() just before any
# reply leaves (ClientConnection.write_replies, chapter 1, whichever writer
# sends it): a client that has its reply knows the operating system has its
# write, and it survives a crash of this process. Whether it survives a power
# loss depends on fsync(), which waits until the disk has the bytes, and on
# how often the server calls it (appendfsync):
#
#   always    after every write, before the replies go: nothing acknowledged
#             is lost. One write and one fsync per pass of the event loop,
#             shared by the writes of every client served in that pass.
#   everysec  about once a second, in a thread, so that the event loop never
#             waits for the disk (Redis's background "bio" thread does the
#             same): a power loss costs about the last second. The default.
#   no        never: the OS writes its cache out when it likes.
#
# How does it stop growing? A counter incremented a million times is a
# million commands in the log but one key in memory. Rewriting the log
# (BGREWRITEAOF, or automatically once it has doubled since the last
# rewrite) writes the data as it is now: one SET per key, with PXAT if it
# has a TTL. A forked child writes it (chapter 7's BackgroundChild), while
# the parent goes on serving and keeps a copy of what it logs meanwhile;
# when the child is done, the parent appends that copy to the new file,
# renames it over the old one (atomically, as a snapshot is saved) and logs
# into the new file from then on. Turning the log on while the server runs
# (CONFIG SET appendonly yes) starts with such a rewrite, since the file must
# begin with the data as it is; until it is done, what is logged waits in
# the rewrite's copy only (Redis's AOF_WAIT_REWRITE). And a disk that refuses
# the log (full, gone) makes the server refuse writes, as a failed
# background save does (MISCONF, chapter 7), until it takes them again.
#
# At startup, with appendonly yes and the file present, the data comes from
# the log, not the snapshot: the log is the more recent of the two. Each
# command is replayed through the command table, as Redis does with a "fake
# client", with the clock stopped, so that no key expires halfway through (a
# later command may still change it, as it did the first time). A crash in
# the middle of a write leaves the last command cut short: it is dropped
# with a warning, and the file cut back to the last whole command (Redis's
# aof-load-truncated yes). Anything else malformed stops the server from
# starting, naming the offset, and leaves the file as it is:
# `python server.py --check-aof FILE --fix` cuts it at the first bad command
# once a person has decided to lose what follows.


APPENDFSYNC_POLICIES = ("always", "everysec", "no")
AOF_FSYNC_INTERVAL = 1.0  # seconds between two fsyncs with appendfsync everysec
AOF_REWRITE_RETRY_DELAY = 60  # seconds before an automatic rewrite is tried again after one failed
# Redis's redis_fsync(): fdatasync where there is one (Linux), which flushes the data and the file's size but
# not its times, one disk write fewer than fsync.
sync_file_data = getattr(os, "fdatasync", os.fsync)


class AppendOnlyState:
    """The server's state for the append-only file; Server (chapter 12) inherits it."""

    def __init__(self) -> None:
        self.aof: AppendOnlyFile | None = None  # the open log, while appendonly is on
        self.loading = False  # replaying the log: commands run, but nothing may be saved from a half-loaded dataset
        self.aof_rewrite_scheduled = False  # BGREWRITEAOF while a BGSAVE ran: the cron starts it once that is done
        self.aof_rewrite_failures = 0  # in a row
        self.aof_rewrite_ended = 0.0  # time.time() when the last rewrite ended


def call_and_propagate(client: Client, entry: Command, args: list[bytes]) -> bytes:
    """Run a write command, then log it if it changed the data (Redis's call() and propagate())."""
    aof, db = client.server.aof, client.db
    changes = db.changes
    aof.command_running = True  # keys its lookups find expired wait in aof.expired, to go in before it
    try:
        return entry.handler(client, args)
    finally:
        aof.command_running = False
        propagated, client.propagated = client.propagated, None
        if propagated is None and db.changes != changes:
            propagated = args
        if aof.expired:
            aof.feed_with_expired(db.index, propagated)
        elif propagated is not None:
            aof.feed(db.index, propagated)


class AppendOnlyFile:
    """The open log: commands buffered in RESP, written before replies leave, fsynced as appendfsync says."""

    def __init__(self, path: str, fsync_policy: str, file_ready: bool = True,
                 on_write_status: Callable[[], None] = lambda: None) -> None:
        """file_ready False: the file is not written yet (appendonly turned on at runtime); a rewrite will write it.

        on_write_status() is called when writing starts or stops failing (write_error).
        """
        self.path = path
        self.on_write_status = on_write_status
        self.fsync_policy = fsync_policy  # "always", "everysec" or "no"
        # None until the first rewrite has written the file: meanwhile commands go to the rewrite's buffer only.
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if file_ready else None
        self.size = os.fstat(self.fd).st_size if file_ready else 0  # bytes in the file (INFO's aof_current_size)
        self.base_size = self.size  # its size after the last rewrite: automatic rewrites measure growth from it
        self.commands: list[list[bytes]] = []  # logged since the last write, with their SELECTs, not yet in RESP
        self.buffer = bytearray()  # in RESP, not written yet (Redis's aof_buf): what a refused write left, mostly
        self.selected_db = -1  # the database the log's last SELECT chose (-1: none yet)
        self.command_running = False  # a write command runs (call_and_propagate)
        self.expired: list[tuple[int, bytes]] = []  # (database, key) that expiry deleted during it
        self.rewrite_buffer: bytearray | None = None  # while a rewrite runs: what is logged meanwhile
        self.transaction: list[tuple[int, list[bytes]]] | None = None  # during EXEC: what it logs, to wrap
        self.write_error: str | None = None  # why the last write or fsync failed: writes are refused meanwhile
        self.fsynced_size = self.size  # how much of the file the last fsync covered
        self.last_fsync = time.monotonic()
        self.fsync_thread: threading.Thread | None = None  # everysec's fsync, while it runs

    def feed(self, db_index: int, args: list[bytes]) -> None:
        """Log one command, after a SELECT if it is for another database than the last one."""
        if self.transaction is not None:  # inside EXEC: kept until its end, to go in as one block
            self.transaction.append((db_index, args))
            return
        if db_index != self.selected_db:
            self.commands.append([b"SELECT", b"%d" % db_index])
            self.selected_db = db_index
        self.commands.append(args)  # encoded with the others at the next write: one join for them all

    def encode_commands(self) -> None:
        """Move the logged commands, in RESP, into the buffer (and the rewrite's copy of what is logged)."""
        if self.commands:
            encoded = encode_commands(self.commands)  # b"".join(map(bulk_array, commands)), faster (Appendix D)
            self.commands = []
            self.add_encoded(encoded)

    def add_encoded(self, encoded: bytes) -> None:
        """Add commands already in RESP to what the file gets next, and to the rewrite's copy."""
        if self.fd is not None:
            self.buffer += encoded
        if self.rewrite_buffer is not None:
            self.rewrite_buffer += encoded

    def log_as_received(self, logged_before: int, requests: list[list[bytes]], as_received: bytes) -> None:
        """If the commands logged since logged_before are these requests, unchanged, log their bytes instead.

        as_received is the requests as their client sent them (Appendix D's
        shortcut): the same bytes encoding them would give.
        """
        if self.commands[logged_before:] == requests:  # the same lists, mostly: == sees that first, in C
            del self.commands[logged_before:]
            self.encode_commands()  # those logged before them go first
            self.add_encoded(as_received)

    def feed_with_expired(self, db_index: int, args: list[bytes] | None) -> None:
        """Add the DELs of the keys a command found expired, then the command (if it changed anything).

        More than one command is wrapped in MULTI/EXEC, as Redis wraps all
        that one command propagates: a reader of the log sees one step.
        """
        commands = [(index, [b"DEL", key]) for index, key in self.expired]
        self.expired = []
        if args is not None:
            commands.append((db_index, args))
        if len(commands) > 1 and self.transaction is None:  # inside EXEC, EXEC's own MULTI wraps them
            commands = [(commands[0][0], [b"MULTI"]), *commands, (commands[-1][0], [b"EXEC"])]
        for index, command_args in commands:
            self.feed(index, command_args)

    def begin_transaction(self) -> None:
        """EXEC starts: keep what its commands log."""
        self.transaction = []

    def end_transaction(self) -> None:
        """EXEC ends: log what its commands changed, wrapped in MULTI/EXEC if more than one, as Redis does."""
        commands, self.transaction = self.transaction, None
        if len(commands) > 1:
            commands = [(commands[0][0], [b"MULTI"]), *commands, (commands[-1][0], [b"EXEC"])]
        for index, command_args in commands:
            self.feed(index, command_args)

    def key_expired(self, db: Database, key: bytes) -> None:
        """Database.on_expired: log the deletion as a DEL, with the command that found it if one is running."""
        if self.command_running:
            self.expired.append((db.index, key))
        else:
            self.feed(db.index, [b"DEL", key])

    def flush(self) -> None:
        """Write what is logged to the file, then fsync now (always) or soon in a thread (everysec)."""
        self.encode_commands()
        if self.buffer and self.write_buffer() and self.fsync_policy == "always":
            self.fsync_now()
        if self.fsync_policy == "everysec" and self.fsynced_size != self.size:
            self.fsync_in_background()

    def write_buffer(self) -> bool:
        """Write the whole buffer, or as much as the disk takes; False (and write_error set) if it failed."""
        written = 0
        try:
            with memoryview(self.buffer) as unwritten:
                while written < len(unwritten):
                    written += os.write(self.fd, unwritten[written:])
        except OSError as error:
            self.write_failed(error)
            return False
        finally:
            del self.buffer[:written]  # what did not go stays, to be written after it
            self.size += written
        if self.write_error is not None:
            log.warning("AOF write error looks solved, Redis can write again.")
            self.write_error = None
            self.on_write_status()
        return True

    def fsync_now(self) -> None:
        size = self.size  # what this fsync covers: more may be written meanwhile, from the event loop
        try:
            sync_file_data(self.fd)
        except OSError as error:
            self.write_failed(error)
            return
        self.fsynced_size = size

    def fsync_in_background(self) -> None:
        """everysec: start an fsync in a thread if the last one is a second old and done (Redis's bio thread)."""
        if time.monotonic() - self.last_fsync < AOF_FSYNC_INTERVAL:
            return
        if self.fsync_thread is not None and self.fsync_thread.is_alive():
            return  # the disk is slow: the next one waits, the event loop does not
        self.last_fsync = time.monotonic()
        self.fsync_thread = threading.Thread(target=self.fsync_now, name="aof-fsync", daemon=True)
        self.fsync_thread.start()

    def write_failed(self, error: OSError) -> None:
        """The disk refused a write or an fsync (full, gone): refuse writes until it takes them again, as Redis does.

        What did not go stays in the buffer, to be written after what did, so
        the file never holds a command twice or half of one for good; and the
        cron retries ten times a second. Meanwhile write commands get
        "-MISCONF Errors writing to the AOF file" (check_disk), and
        reads go on. With appendfsync always, replies are about to promise
        writes that are not on disk: like Redis, the server stops instead.
        """
        if self.write_error is None:
            log.warning("Error writing to the AOF file %s: %s", self.path, error.strerror or error)
        if self.fsync_policy == "always":
            log.warning("Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting...")
            logging.shutdown()
            os._exit(1)
        self.write_error = error.strerror or str(error)
        self.on_write_status()

    def close(self) -> None:
        """Write what is buffered, fsync it and close the file: at shutdown, or when appendonly goes off."""
        if self.fd is None:
            return
        log.info("Calling fsync() on the AOF file.")
        self.flush()
        if self.fsync_thread is not None:
            self.fsync_thread.join()
        self.fsync_now()
        os.close(self.fd)

    def start_rewrite(self) -> None:
        """Keep a copy of what is logged from now on, for the end of the rewritten file."""
        self.encode_commands()  # those ran before the fork: the child's data has them already
        self.rewrite_buffer = bytearray()
        self.selected_db = -1  # so that the copy starts with a SELECT of its own

    def finish_rewrite(self, new_path: str) -> None:
        """The rewritten file is at new_path: append what was logged meanwhile, rename it over the log, log into it."""
        self.encode_commands()
        if self.fd is not None:
            self.flush()  # the old file gets everything, in case the rest fails
        with open(new_path, "ab") as new_file:
            new_file.write(self.rewrite_buffer)
            new_file.flush()
            os.fsync(new_file.fileno())
        new_fd = os.open(new_path, os.O_WRONLY | os.O_APPEND)
        os.replace(new_path, self.path)  # atomic: the log is the old file or the new one, never half of one
        fsync_directory(self.path)
        if self.fsync_thread is not None:
            self.fsync_thread.join()  # it may be fsyncing the old file's descriptor
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.rewrite_buffer = new_fd, None
        self.size = self.base_size = self.fsynced_size = os.fstat(new_fd).st_size
        self.selected_db = -1  # the new file ends in whatever database its last SELECT chose


def aof_rewrite_commands(keyspace: Keyspace) -> Iterator[bytes]:
    """The data as commands: a SELECT per database that has keys, then a SET per key (with PXAT if it has a TTL)."""
    now = now_ms()
    for db in keyspace.databases:
        if not db.key_count():
            continue
        yield bulk_array([b"SELECT", b"%d" % db.index])
        for key, value, when in db.entries():
            if when is None:
                yield bulk_array([b"SET", key, value])
            elif not has_expired(when, now):  # a key that has expired is left out, as Redis does
                yield bulk_array([b"SET", key, value, b"PXAT", b"%d" % when])


def write_aof_rewrite(keyspace: Keyspace, path: str) -> None:
    """Write the compact log of the data to path and fsync it (a rewrite's child does this); remove it if that fails."""
    try:
        with open(path, "wb") as file:
            file.writelines(aof_rewrite_commands(keyspace))
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


@command("bgrewriteaof", 1, "admin noscript")
def bgrewriteaof_command(client: Client, args: list[bytes]) -> bytes:
    server = client.server
    if server.child.kind == "aof":
        raise CommandError("ERR Background append only file rewriting already in progress")
    # A BGSAVE runs (one child at a time), or an EXEC, whose writes the log gets at its end: after a fork
    # now they would go both into the new file's data and into the copy appended to it. The cron starts it.
    if server.child.kind is not None or client.running_transaction is not None:
        server.aof_rewrite_scheduled = True
        return simple_string("Background append only file rewriting scheduled")
    try:
        background_rewrite_aof(server)
    except OSError as error:
        raise CommandError("ERR Can't execute an AOF background rewriting. "
                           "Please check the server logs for more information.") from error
    return simple_string("Background append only file rewriting started")


# --- Loading ----------------------------------------------------------------------

AOF_HEADER_MAX = 64  # longest "*N" or "$N" line that can be right, "\r\n" included


class AofError(Exception):
    """The log cannot be replayed: offset is where the first command that cannot be starts."""

    def __init__(self, offset: int, message: str, truncated: bool = False, position: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.truncated = truncated  # the file just ends inside that command: a crash cut the last write short
        self.position = offset if position is None else position  # where the problem is, in or after that command


def read_aof_commands(file: BinaryIO) -> Iterator[tuple[int, list[bytes]]]:
    """Each command of a log, with the offset where it starts; AofError at the first one that is not whole and right."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    offset = 0
    while True:
        start = offset
        line = file.readline(AOF_HEADER_MAX)
        if not line:
            return  # the end, between two commands
        count = aof_number(line, b"*", start, offset)
        offset += len(line)
        args = []
        for _ in range(count):
            line = file.readline(AOF_HEADER_MAX)
            length = aof_number(line, b"$", start, offset)
            if offset + len(line) + length + 2 > size:  # checked first: read() sets aside all it is asked for
                raise AofError(start, "the file ends inside a command", True, size)
            payload = file.read(length + 2)
            if not payload.endswith(CRLF):
                raise AofError(start, f"a bulk string of {length} bytes is not followed by \\r\\n", False, offset)
            args.append(payload[:-2])
            offset += len(line) + length + 2
        yield start, args


def aof_number(line: bytes, prefix: bytes, start: int, position: int) -> int:
    """The number of a "*N" or "$N" line read at position, N at least 1 for "*"; AofError for anything else."""
    if not line.endswith(b"\n"):
        if len(line) < AOF_HEADER_MAX:
            raise AofError(start, "the file ends inside a command", True, position + len(line))
        raise AofError(start, f"a line starting {line[:16]!r} is too long", False, position)
    number = parse_integer(line[1:-2]) if line.endswith(CRLF) else None
    if line[:1] != prefix or number is None or number < (1 if prefix == b"*" else 0):
        raise AofError(start, f"expected a '{prefix.decode()}' line, got {line[:32]!r}", False, position)
    if number > (PROTO_MAX_MULTIBULK_LEN if prefix == b"*" else PROTO_MAX_BULK_LEN):
        raise AofError(start, f"{line[:32]!r} is out of range", False, position)
    return number


def load_append_only_file(server: Server, path: str) -> int:
    """Replay the log into the keyspace through the command table; return how many commands ran.

    Raises AofError at the first command that is cut short (truncated: the
    commands before it have run), malformed, unknown, or fails.
    """
    client = Client(server, 0, "append-only file", None)  # Redis's fake client: nobody reads its replies
    transaction: list[tuple[int, list[bytes]]] | None = None  # the commands since a MULTI
    transaction_start = 0
    replayed = 0
    with open(path, "rb") as file, expiry_stopped(server.keyspace):
        try:
            for offset, args in read_aof_commands(file):
                name = args[0].lower()
                if name == b"multi" and transaction is None:
                    transaction, transaction_start = [], offset
                elif name == b"exec" and transaction is not None:
                    for queued_offset, queued in transaction:  # all at once: no MULTI without its EXEC runs
                        replay(client, queued_offset, queued)
                    replayed += len(transaction)
                    transaction = None
                elif transaction is not None:
                    transaction.append((offset, args))
                else:
                    replay(client, offset, args)
                    replayed += 1
        except AofError as error:
            if error.truncated and transaction is not None:
                error.offset = transaction_start  # drop the whole unfinished transaction, as Redis does
            raise
    if transaction is not None:
        raise AofError(transaction_start, "the file ends inside a MULTI/EXEC transaction", truncated=True)
    return replayed


def replay(client: Client, offset: int, args: list[bytes]) -> None:
    """Run one command of the log; AofError if it is no write command or fails."""
    entry = COMMANDS.get(args[0].lower())
    if entry is None or not (entry.writes or entry.name == "select"):
        raise AofError(offset, f"'{text(args[0])[:64]}' is not a write command this server knows")
    reply = execute(client, args)
    if reply.startswith(b"-"):
        raise AofError(offset, f"{text(args[0])[:64]} failed: {text(reply[1:-2])}")


@contextlib.contextmanager
def expiry_stopped(keyspace: Keyspace) -> Iterator[None]:
    """No key expires inside the block: Redis's keyIsExpired() says no while loading."""
    clocks = [db.clock for db in keyspace.databases]
    for db in keyspace.databases:
        db.clock = lambda: LLONG_MIN
    try:
        yield
    finally:
        for db, clock in zip(keyspace.databases, clocks, strict=True):
            db.clock = clock


def load_aof(server: Server) -> None:
    """Replay the log; a last command cut short is dropped and the file cut back to the commands before it."""
    started = time.perf_counter()
    path = server.aof_path
    server.loading = True
    try:
        load_append_only_file(server, path)
    except AofError as error:
        if not error.truncated:
            raise
        log.warning("!!! Warning: short read while loading the AOF file %s!!!", path)
        log.warning("!!! Truncating the AOF %s at offset %d !!!", path, error.offset)
        os.truncate(path, error.offset)
        log.warning("AOF %s loaded anyway because aof-load-truncated is enabled", path)
    finally:
        server.loading = False
    server.changes_at_last_save = server.keyspace.changes()  # replaying is no change to save
    log.info("DB loaded from append only file: %d keys in %.3f seconds (%s)", server.keyspace.key_count(),
             time.perf_counter() - started, path)


def write_full_aof(server: Server) -> None:
    """Write the append-only file from the data in memory, atomically: a temporary file, fsync, rename."""
    temporary = os.path.join(os.path.dirname(os.path.abspath(server.aof_path)), f"temp-rewriteaof-{os.getpid()}.aof")
    try:
        write_aof_rewrite(server.keyspace, temporary)
        os.replace(temporary, server.aof_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_directory(server.aof_path)


def open_aof(server: Server, file_ready: bool = True) -> None:
    """Start logging into the append-only file: every change from now on goes in."""
    server.aof = AppendOnlyFile(server.aof_path, server.options.appendfsync, file_ready,
                                functools.partial(check_disk, server))
    for db in server.keyspace.databases:
        db.on_expired = server.aof.key_expired


def open_aof_at_startup(server: Server) -> None:
    """With appendonly yes, load the data from the log; with no log yet, from the snapshot, and write the log from it.

    Raises AofError (or DumpError) if what it loads is unreadable. The log is open for writing when it returns.
    """
    if os.path.exists(server.aof_path):
        load_aof(server)
    else:
        load_snapshot_at_startup(server)
        log.info("Creating the AOF file %s on server start, with the data loaded", server.aof_path)
        write_full_aof(server)
    open_aof(server)


def apply_appendonly(server: Server) -> None:
    """CONFIG SET appendonly: start the log (through a first rewrite), or stop it."""
    if server.options.appendonly == "yes" and server.aof is None:
        try:
            start_aof(server)
        except OSError:
            raise ConfigError("Unable to turn on AOF. Check server logs.") from None
    elif server.options.appendonly == "no" and server.aof is not None:
        close_aof(server)


def apply_appendfsync(server: Server) -> None:
    if server.aof is not None:
        server.aof.fsync_policy = server.options.appendfsync


def start_aof(server: Server) -> None:
    """appendonly turned on at runtime (Redis's startAppendOnly): a rewrite writes the file, then it is the log.

    Raises OSError if the rewrite cannot start; appendonly stays off then.
    """
    open_aof(server, file_ready=False)
    if server.child.kind is not None:
        server.aof_rewrite_scheduled = True
        return
    try:
        background_rewrite_aof(server)
    except OSError:
        close_aof(server)
        raise


def background_rewrite_aof(server: Server) -> None:
    """Redis's rewriteAppendOnlyFileBackground: a child writes the compact log, the parent logs on meanwhile.

    Raises OSError if the fork fails. The caller checks that no child runs.
    """
    server.aof_rewrite_scheduled = False
    directory = os.path.dirname(os.path.abspath(server.aof_path))
    temporary = os.path.join(directory, f"temp-rewriteaof-bg-{os.getpid()}.aof")
    if server.aof is not None:
        server.aof.start_rewrite()
    on_done = functools.partial(background_rewrite_done, server, temporary, time.time())
    try:
        server.child.start("aof", functools.partial(write_aof_rewrite, server.keyspace, temporary), on_done)
    except OSError as error:
        if server.aof is not None:
            server.aof.rewrite_buffer = None
        log.warning("Can't rewrite append only file in background: fork: %s", error.strerror or error)
        raise
    if server.child.kind == "aof":  # else there is no fork(), and the rewrite has already run
        log.info("Background append only file rewriting started by pid %d", server.child.pid)


def background_rewrite_done(server: Server, temporary: str, started: float, success: bool) -> None:
    """The rewrite's child has exited (Redis's backgroundRewriteDoneHandler): the new file becomes the log."""
    server.stats.aof_last_rewrite_seconds = int(time.time() - started)
    server.aof_rewrite_ended = time.time()
    server.stats.aof_rewrites += 1
    if success:
        log.info("Background AOF rewrite terminated with success")
        try:
            if server.aof is not None:
                server.aof.finish_rewrite(temporary)
            else:  # BGREWRITEAOF with appendonly off writes the file all the same, as Redis does
                os.replace(temporary, server.aof_path)
        except OSError as error:
            log.warning("Error trying to rename the temporary AOF file %s into %s: %s", temporary,
                        server.aof_path, error.strerror or error)
            success = False
        else:
            log.info("Background AOF rewrite finished successfully")
    else:
        log.warning("Background AOF rewrite terminated with error")
    server.stats.aof_last_rewrite_ok = success
    server.aof_rewrite_failures = 0 if success else server.aof_rewrite_failures + 1
    if success:
        return
    with contextlib.suppress(OSError):
        os.unlink(temporary)
    if server.aof is not None and server.aof.fd is None:  # it was to write the first log: appendonly stays off
        log.warning("The append-only file could not be written: appendonly is off again")
        close_aof(server)
        server.options.appendonly = "no"
    elif server.aof is not None:
        server.aof.rewrite_buffer = None  # the old file goes on as the log


def aof_rewrite_due(server: Server) -> bool:
    """Automatic rewrite: the log has grown by auto-aof-rewrite-percentage since the last one, and is big enough."""
    percentage, aof = server.options.auto_aof_rewrite_percentage, server.aof
    if not percentage or aof.fd is None or aof.size <= server.options.auto_aof_rewrite_min_size:
        return False
    if server.aof_rewrite_failures and time.time() < server.aof_rewrite_ended + AOF_REWRITE_RETRY_DELAY:
        return False  # a full disk would otherwise have a child forked ten times a second
    growth = aof.size * 100 // max(aof.base_size, 1) - 100
    if growth < percentage:
        return False
    log.info("Starting automatic rewriting of AOF on %d%% growth", growth)
    return True


def close_aof(server: Server) -> None:
    """Stop logging: write and fsync what is buffered, and close the file; a rewrite under way is dropped."""
    if server.child.kind == "aof":
        server.child.kill()
    server.aof_rewrite_scheduled = False
    for db in server.keyspace.databases:
        db.on_expired = None
    server.aof.close()
    server.aof = None
    check_disk(server)


def persistence_cron(server: Server) -> None:
    """The cron's part for chapters 7 and 8: flush the log, reap a finished child, start a save or rewrite if due."""
    if server.aof is not None:
        server.aof.flush()  # the DELs of expired keys, and everysec's fsync when no reply has called for it
    now = int(time.time())
    if server.child.kind is not None:
        server.child.poll()
    else:
        save_if_due(server, now)
    if server.bgsave_scheduled and server.child.kind is None and may_try_bgsave(server, now):
        with contextlib.suppress(OSError):  # logged; BGSAVE SCHEDULE was answered long ago
            background_save(server)
            server.bgsave_scheduled = False
    elif server.child.kind is None and (server.aof_rewrite_scheduled or
                                        (server.aof is not None and aof_rewrite_due(server))):
        with contextlib.suppress(OSError):  # logged
            background_rewrite_aof(server)


def add_aof_options(parser: argparse.ArgumentParser) -> None:
    """The append-only file's command-line flags, for parse_options() (Appendix C)."""
    parser.add_argument("--appendonly", choices=["yes", "no"], default="no",
                        help="log every change to the append-only file, and load the data from it (default no)")
    parser.add_argument("--appendfilename", default="appendonly.aof",
                        help="the append-only file's name, in --dir (default appendonly.aof)")
    parser.add_argument("--appendfsync", choices=APPENDFSYNC_POLICIES, default="everysec",
                        help="when the log is flushed to the disk: after every write, every second or when the OS "
                             "likes (default everysec)")
    parser.add_argument("--auto-aof-rewrite-percentage", type=int, default=100, metavar="PERCENT",
                        help="rewrite the log once it has grown by this much since the last rewrite; 0: never "
                             "(default 100)")
    parser.add_argument("--auto-aof-rewrite-min-size", type=memory_size, default=64 * 1024 * 1024, metavar="BYTES",
                        help="but not while it is smaller than this; units such as 64mb are understood (default 64mb)")
    parser.add_argument("--check-aof", metavar="FILE",
                        help="check an append-only file, report its first bad command, and exit (redis-check-aof)")
    parser.add_argument("--fix", action="store_true", help="with --check-aof: cut the file there, after asking")


# =============================================================================
# Chapter 9. Transactions: MULTI, EXEC and WATCH
# =============================================================================
#
# A Redis transaction is a list of commands that run one after the other with
# nothing in between. MULTI starts it; each command after it is checked (does
# it exist? the right number of arguments?) and queued, answered +QUEUED; EXEC
# runs the queue and replies with an array of the replies. On one thread that
# is all it takes: EXEC runs the whole queue inside one request, and no other
# client's command can run before it returns. There is no rollback: a command
# that fails at EXEC time (INCR of a word) puts its error in the array and the
# others still run. But a command refused while queueing dooms the whole
# transaction: EXEC then runs nothing and answers EXECABORT.
#
# A transaction cannot read a value and decide what to write, because nothing
# runs until EXEC. WATCH fills that gap with optimistic locking: WATCH a key,
# read it, compute, then MULTI ... EXEC. If any client changed the key after
# WATCH, EXEC runs nothing and answers a null, and the client tries again. No
# lock is held while the client thinks: Redis only remembers, per database,
# which clients watch which key (watched_keys), and every change to a key (a
# write, a delete, an expiry, FLUSHDB, SWAPDB) marks its watchers, in
# Database's methods, through touch_watched_key(). A key that had already
# expired when it was WATCHed counts as absent: deleting it changes nothing.


RUN_INSIDE_MULTI = {"exec", "discard", "multi", "watch", "quit", "reset"}  # run at once, never queued
QUEUED = b"+QUEUED\r\n"
RESP2_NULL_ARRAY = b"*-1\r\n"  # what EXEC answers when a WATCHed key changed; RESP3 has its one null

# EXEC answers all its commands in one reply, which the output pause (Appendix E) cannot split: a few bytes
# of MULTI and GETs of a large value would ask for gigabytes. Past this size the commands still all run,
# but the client is disconnected instead of answered. This server's own limit; Redis has none.
TRANSACTION_REPLY_LIMIT = 64 * 1024 * 1024


@dataclass(slots=True)
class Transaction:
    """The commands one client queued between MULTI and EXEC."""

    commands: list[list[bytes]] = field(default_factory=list)
    size: int = 0  # the memory the queued commands hold: counted against client-query-buffer-limit
    refused: bool = False  # a command was refused while queueing: EXEC runs nothing (CLIENT_DIRTY_EXEC)


def refuse(client: Client, message: str, entry: Command | None = None) -> bytes:
    """The error reply to a request refused before it could run; inside MULTI it dooms the transaction too.

    A refused EXEC ends the transaction, saying why (Redis's execCommandAbort()).
    Under CLIENT REPLY OFF or SKIP the error is dropped, like any reply (Appendix C).
    """
    if entry is not None and entry.name == "exec":
        client.transaction = None
        unwatch_all(client)
        message = "EXECABORT Transaction discarded because of: " + message.removeprefix("ERR ")
    elif client.transaction is not None:
        client.transaction.refused = True  # EXEC will run none of it (Redis's flagTransaction)
    return silenced(client, error_reply(message))


def silenced(client: Client, reply: bytes) -> bytes:
    """The reply of a command that did not run, as the client gets it: nothing under CLIENT REPLY OFF or SKIP."""
    return outgoing_reply(client, reply) if client.reply_mode else reply


@dataclass(slots=True, eq=False)
class WatchedKey:
    """One key one client WATCHes."""

    client: Client
    db: Database
    key: bytes
    expired: bool  # it had expired when WATCHed, so it counted as absent: its deletion is no change


def queue_command(client: Client, entry: Command, args: list[bytes]) -> bytes:
    """Queue a command for EXEC, or refuse it (then EXEC will run nothing)."""
    if "no_multi" in entry.flags:  # SAVE, SHUTDOWN: they must not wait inside a transaction
        return refuse(client, "ERR Command not allowed inside a transaction")
    transaction = client.transaction
    transaction.size += sys.getsizeof(args) + sum(map(sys.getsizeof, args))  # the memory it holds, not just its bytes
    if transaction.size > client.server.options.client_query_buffer_limit:  # memory per client stays bounded
        log.warning("Closing client %d (%s): its transaction reached the query buffer limit", client.id,
                    client.address)
        client.close_after_reply = True
        return b""
    transaction.commands.append(args)
    return QUEUED


@command("multi", 1, "noscript loading stale fast allow_busy")
def multi_command(client: Client, args: list[bytes]) -> bytes:
    if client.transaction is not None:
        raise CommandError("ERR MULTI calls can not be nested")
    client.transaction = Transaction()
    return OK


@command("exec", 1, "noscript loading stale skip_slowlog")
def exec_command(client: Client, args: list[bytes]) -> bytes:
    transaction = client.transaction
    if transaction is None:
        raise CommandError("ERR EXEC without MULTI")
    # 1. Leave MULTI first, so that the queued commands run instead of queueing again.
    client.transaction = None
    touched = client.watched_key_touched or watched_key_expired(client)
    unwatch_all(client)
    # 2. A refused command, or a change to a WATCHed key, and nothing runs.
    if transaction.refused:
        return error_reply("EXECABORT Transaction discarded because of previous errors.")
    if touched:
        return RESP3_NULL if client.protocol == 3 else RESP2_NULL_ARRAY
    # 3. Run the queue. Each command's error takes its place in the array; the others still run. The
    #    append-only file logs what they change as one block, so a replay cannot stop halfway (chapter 8).
    #    CLIENT REPLY silences EXEC's reply as a whole, and a command that was checked when it was
    #    queued is not refused now because the transaction subscribed (chapter 10).
    aof = client.server.aof
    if aof is not None:
        aof.begin_transaction()
    reply_mode, client.reply_mode, client.running_transaction = client.reply_mode, REPLY_ON, transaction
    replies, size = [], 0
    try:
        for args in transaction.commands:
            reply = execute(client, args)
            size += len(reply)
            if size <= TRANSACTION_REPLY_LIMIT:
                replies.append(reply)
    finally:
        client.reply_mode, client.running_transaction = reply_mode, None
        if aof is not None:
            aof.end_transaction()
    client.last_command = "exec"
    if size > TRANSACTION_REPLY_LIMIT:  # every command ran, but the client is not sent a reply this big
        log.warning("Closing client %d (%s): the replies of its transaction passed %d bytes", client.id,
                    client.address, TRANSACTION_REPLY_LIMIT)
        client.close_after_reply = True
        return b""
    return b"*%d\r\n%s" % (len(transaction.commands), b"".join(replies))


@command("discard", 1, "noscript loading stale fast allow_busy")
def discard_command(client: Client, args: list[bytes]) -> bytes:
    if client.transaction is None:
        raise CommandError("ERR DISCARD without MULTI")
    client.transaction = None
    unwatch_all(client)
    return OK


@command("watch", -2, "noscript loading stale fast allow_busy")
def watch_command(client: Client, args: list[bytes]) -> bytes:
    keys = args[1:]
    if client.transaction is not None:
        raise CommandError("ERR WATCH inside MULTI is not allowed")
    if client.watched_key_touched:
        return OK  # EXEC will fail anyway: no need to watch more
    db = client.db
    for key in keys:
        if (db.index, key) not in client.watched:
            watched = WatchedKey(client, db, key, expired=db.is_expired(key))
            client.watched[db.index, key] = watched
            db.watched_keys.setdefault(key, {})[client] = watched
    return OK


@command("unwatch", 1, "noscript loading stale fast allow_busy")
def unwatch_command(client: Client, args: list[bytes]) -> bytes:
    unwatch_all(client)
    return OK


def unwatch_all(client: Client) -> None:
    """Forget every key the client WATCHes, and that one of them changed."""
    for watched in client.watched.values():
        watchers = watched.db.watched_keys[watched.key]
        del watchers[client]
        if not watchers:
            del watched.db.watched_keys[watched.key]
    client.watched = {}
    client.watched_key_touched = False


def touch_watched_key(db: Database, key: bytes) -> None:
    """key changed in db: the EXEC of every client that WATCHes it will fail (Redis's touchWatchedKey)."""
    for watched in list(db.watched_keys[key].values()):
        if watched.expired and not db.is_stored(key):
            watched.expired = False  # an expired key is gone at last: it was absent, it still is
            continue
        unwatch_all(watched.client)  # no need to keep watching: EXEC will fail
        watched.client.watched_key_touched = True


def touch_all_watched_keys(emptied: Database, replaced_with: Database | None) -> None:
    """FLUSHDB (replaced_with None) or SWAPDB is about to empty a database: touch the WATCHed keys that change.

    A WATCHed key changes if it is there now, or if the database that takes
    this one's place has it. Expired keys count as absent, as in Redis's
    touchAllWatchedKeysInDb().
    """
    for key, watchers in list(emptied.watched_keys.items()):
        in_emptied = emptied.is_stored(key)
        in_replacement = replaced_with is not None and replaced_with.is_stored(key)
        if not (in_emptied or in_replacement):
            continue
        for watched in list(watchers.values()):
            if watched.expired:
                if not in_replacement:
                    watched.expired = False  # the expired key is deleted: no change
                    continue
                if replaced_with.is_expired(key):
                    continue  # an expired key replaced by another: still absent
            elif not in_emptied and replaced_with.is_expired(key):
                watched.expired = True  # no key replaced by an expired one: still absent
                continue
            watched.client.watched_key_touched = True


def watched_key_expired(client: Client) -> bool:
    """Whether a key that was there at WATCH has expired since, though nothing deleted it yet."""
    return any(not watched.expired and watched.db.is_expired(watched.key) for watched in client.watched.values())


# =============================================================================
# Chapter 10. Pub/Sub: messages nobody asked for
# =============================================================================
#
# Everything so far is request and reply: a client asks, the server answers,
# and a reply only ever goes to the client that asked. Publish/subscribe turns
# that around. A client SUBSCRIBEs to a channel (any name: "news", "chat:42")
# and from then on the server sends it every message that any other client
# PUBLISHes to that channel, whenever that happens, without being asked. The
# publisher never learns who listens, only how many received its message.
# PSUBSCRIBE subscribes to a glob pattern ("chat:*") instead of one name.
#
# Redis keeps two dicts on the server, channel -> subscribed clients and
# pattern -> subscribed clients, and each client keeps the channels and
# patterns it listens to, so that it can leave them all when it disconnects.
# PUBLISH looks the channel up in the first dict (O(1) plus one send per
# subscriber) and matches the channel against every pattern of the second
# (O(number of patterns)). Nothing is stored: a message reaches whoever
# listens at that moment, and is gone. PubSub below holds both dicts.
#
# A message is "pushed": it goes into the subscriber's queue of replies, and
# the server's writer sends it (chapter 1) even though that client sent
# nothing in this pass of the loop. How the client tells a push from the
# reply to its own request depends on the protocol:
#
#   * RESP2 has no way to mark a push. A message is an ordinary array
#     ["message", channel, payload], and so the client cannot tell it from a
#     reply. So Redis puts a RESP2 subscriber into "subscribed mode": it may
#     only (un)subscribe, PING, QUIT or RESET until it has unsubscribed from
#     everything, and its PING is answered ["pong", ""], in the same shape as
#     a message. Every array that arrives is then known to be a message or a
#     subscription change.
#   * RESP3 gives pushes a type of their own: ">3" where RESP2 says "*3". A
#     client can tell them apart from replies wherever they arrive, so a RESP3
#     subscriber may run any command on the same connection.
#
# Keyspace notifications are Pub/Sub messages the server publishes itself:
# with notify-keyspace-events set (it is "" by default: they cost a little on
# every write), each change of a key is published on "__keyspace@0__:<key>"
# (the message is the event, "set", "del", "expired"...) and on
# "__keyevent@0__:<event>" (the message is the key). Commands report their
# changes through notify_keyspace_event(), Redis's notifyKeyspaceEvent();
# the keyspace reports the two it makes itself, a key created ("new") and a
# key expired, lazily or actively ("expired").
#
# A subscriber that does not read its messages makes them pile up in the
# server's memory; Appendix E's client-output-buffer-limit disconnects it
# before it can hurt the others.


# Keyspace event classes: the letters of notify-keyspace-events (Appendix B reads and writes them).
NOTIFY_KEYSPACE = 1 << 0  # K: publish on __keyspace@<db>__:<key>
NOTIFY_KEYEVENT = 1 << 1  # E: publish on __keyevent@<db>__:<event>
NOTIFY_GENERIC = 1 << 2  # g: DEL, EXPIRE, RENAME... (commands of every type)
NOTIFY_STRING = 1 << 3  # $: string commands
NOTIFY_LIST = 1 << 4  # l
NOTIFY_SET = 1 << 5  # s
NOTIFY_HASH = 1 << 6  # h
NOTIFY_ZSET = 1 << 7  # z
NOTIFY_EXPIRED = 1 << 8  # x: a key expired
NOTIFY_EVICTED = 1 << 9  # e: a key was evicted (maxmemory)
NOTIFY_STREAM = 1 << 10  # t
NOTIFY_KEY_MISS = 1 << 11  # m: a read found no key (not part of A)
NOTIFY_MODULE = 1 << 13  # d
NOTIFY_NEW = 1 << 14  # n: a key was created (not part of A)
NOTIFY_ALL = (NOTIFY_GENERIC | NOTIFY_STRING | NOTIFY_LIST | NOTIFY_SET | NOTIFY_HASH | NOTIFY_ZSET | NOTIFY_EXPIRED
              | NOTIFY_EVICTED | NOTIFY_STREAM | NOTIFY_MODULE)  # A


class PubSub:
    """Who listens to what: channel -> subscribers, pattern -> subscribers, as Redis's server.pubsub_* dicts.

    Each set of subscribers is a dict used as an ordered set: O(1) to add and
    remove a client, and messages reach subscribers in the order they came.
    """

    def __init__(self) -> None:
        self.channels: dict[bytes, dict[Client, None]] = {}
        self.patterns: dict[bytes, dict[Client, None]] = {}
        self.pattern_matchers: dict[bytes, Callable[[bytes], bool]] = {}  # each pattern, ready to match (Appendix B)
        self.notify_flags = 0  # notify-keyspace-events, as NOTIFY_* bits: 0 sends no keyspace events

    def subscribe(self, client: Client, channel: bytes) -> None:
        if channel not in client.channels:
            client.channels[channel] = None
            self.channels.setdefault(channel, {})[client] = None

    def unsubscribe(self, client: Client, channel: bytes) -> None:
        if channel in client.channels:
            del client.channels[channel]
            subscribers = self.channels[channel]
            del subscribers[client]
            if not subscribers:  # a channel nobody listens to is forgotten
                del self.channels[channel]

    def psubscribe(self, client: Client, pattern: bytes) -> None:
        if pattern not in client.patterns:
            client.patterns[pattern] = None
            if pattern not in self.patterns:
                self.patterns[pattern] = {}
                self.pattern_matchers[pattern] = glob_matcher(pattern)
            self.patterns[pattern][client] = None

    def punsubscribe(self, client: Client, pattern: bytes) -> None:
        if pattern in client.patterns:
            del client.patterns[pattern]
            subscribers = self.patterns[pattern]
            del subscribers[client]
            if not subscribers:
                del self.patterns[pattern], self.pattern_matchers[pattern]

    def unsubscribe_all(self, client: Client) -> None:
        """A client leaves every channel and pattern: it disconnected, or sent RESET."""
        for channel in list(client.channels):
            self.unsubscribe(client, channel)
        for pattern in list(client.patterns):
            self.punsubscribe(client, pattern)

    def publish(self, channel: bytes, message: bytes) -> int:
        """Push message to the channel's subscribers, then to those of each matching pattern; return how many."""
        receivers = 0
        subscribers = self.channels.get(channel)
        if subscribers:
            push_to_all(subscribers, [b"message", channel, message])
            receivers += len(subscribers)
        for pattern, matches in self.pattern_matchers.items():
            if matches(channel):
                push_to_all(self.patterns[pattern], [b"pmessage", pattern, channel, message])
                receivers += len(self.patterns[pattern])
        return receivers

    def keyspace_event(self, event: str, key: bytes, db_index: int) -> None:
        """Publish one keyspace event, on the key's channel and on the event's, as notify-keyspace-events asks.

        Callers check first that the event's class is on (notify_keyspace_event
        below): with notifications off, as by default, a write pays one test.
        """
        if self.notify_flags & NOTIFY_KEYSPACE:
            self.publish(b"__keyspace@%d__:%s" % (db_index, key), event.encode())
        if self.notify_flags & NOTIFY_KEYEVENT:
            self.publish(b"__keyevent@%d__:%s" % (db_index, event.encode()), key)


def notify_keyspace_event(db: Database, event_class: int, event: str, key: bytes) -> None:
    """Report a change a command made to key, if notify-keyspace-events asks for its class (notifyKeyspaceEvent)."""
    if db.pubsub.notify_flags & event_class:
        db.pubsub.keyspace_event(event, key, db.index)


def push(client: Client, message: bytes) -> None:
    """Send a client a message it did not ask for: queue it on its connection, for the server's writer.

    If the client is the one whose command is running (it published to itself,
    or its own write made a keyspace event it listens to), the message joins
    that command's reply, before it, as in Redis: execute() puts it there.
    """
    if client is client.server.running_client:
        client.pushed.append(message)
        return
    connection = client.connection
    if connection.transport.is_closing():  # disconnected, or being disconnected: nobody to send it to
        return
    connection.replies.append(message)
    if over_output_limit(connection):  # Appendix E: a subscriber that does not read is disconnected
        return
    client.server.writer.queue_push(connection)


def reply_as_sent(client: Client, entry: Command, args: list[bytes], reply: bytes) -> bytes:
    """A command's reply as its client gets it, where execute() ends.

    The messages pushed to it while the command ran come first, and its own
    MONITOR line last if it monitors (Appendix C); under CLIENT REPLY OFF or
    SKIP the reply and the MONITOR line are dropped, not the messages.
    """
    if client.server.monitors:
        reply += feed_monitors(client, entry, args)  # every monitor is shown the command that ran
    if client.pushed or client.reply_mode:
        reply = outgoing_reply(client, reply)
    return reply


def stop_listening(client: Client) -> None:
    """Leave every channel and pattern, and MONITOR: what a disconnect does, and RESET (with no replies)."""
    client.server.pubsub.unsubscribe_all(client)
    if client.monitoring:
        client.monitoring = False
        client.server.monitors.remove(client)


def push_to_all(subscribers: dict[Client, None], items: list[bytes]) -> None:
    """Push one message, an array of bulk strings, to each subscriber.

    It is encoded once per protocol (only the first byte differs), and every
    subscriber's queue holds the same bytes object, as Redis shares one: a
    large message sent to many subscribers costs its size once, not once each.
    """
    body = b"".join(bulk(item) for item in items)
    frames: dict[int, bytes] = {}
    for client in subscribers:
        if client.protocol not in frames:
            frames[client.protocol] = push_header(client, len(items)) + body
        push(client, frames[client.protocol])


def push_header(client: Client, length: int) -> bytes:
    """The start of a push of length items: ">" in RESP3, an ordinary array "*" in RESP2."""
    return b"%s%d\r\n" % (b">" if client.protocol == 3 else b"*", length)


def subscription_reply(client: Client, kind: bytes, name: bytes | None) -> bytes:
    """[kind, channel or pattern, how many the client now listens to]: what (un)subscribing answers, per name."""
    count = len(client.channels) + len(client.patterns)
    return push_header(client, 3) + bulk(kind) + (client.null if name is None else bulk(name)) + integer(count)


# In RESP2 a subscribed client may send only these (Redis's processCommand()).
SUBSCRIBED_MODE_COMMANDS = {"ping", "subscribe", "ssubscribe", "unsubscribe", "sunsubscribe", "psubscribe",
                            "punsubscribe", "quit", "reset"}


def refuse_in_context(client: Client, entry: Command) -> str | None:
    """Why this client may not run the command in its mode (subscribed, or MONITOR), or None if it may."""
    if client.monitoring and {"write", "readonly", "may_replicate"} & set(entry.flags):
        return "ERR Replica can't interact with the keyspace"  # a monitor counts as a replica
    if client.protocol == 2 and (client.channels or client.patterns) and entry.name not in SUBSCRIBED_MODE_COMMANDS:
        return (f"ERR Can't execute '{entry.name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
                "are allowed in this context")
    return None


# The replies of the four (un)subscribe commands are pushes, one per name,
# even in RESP2 (where they look like any array): like messages, they reach
# the client even under CLIENT REPLY OFF, as in Redis.


@command("subscribe", -2, "pubsub noscript loading stale")
def subscribe_command(client: Client, args: list[bytes]) -> bytes:
    channels = args[1:]
    return join(client, b"subscribe", channels, client.server.pubsub.subscribe)


@command("unsubscribe", -1, "pubsub noscript loading stale")
def unsubscribe_command(client: Client, args: list[bytes]) -> bytes:
    channels = args[1:] or list(client.channels)  # none named: every channel
    return leave(client, b"unsubscribe", channels, client.server.pubsub.unsubscribe)


@command("psubscribe", -2, "pubsub noscript loading stale")
def psubscribe_command(client: Client, args: list[bytes]) -> bytes:
    patterns = args[1:]
    return join(client, b"psubscribe", patterns, client.server.pubsub.psubscribe)


@command("punsubscribe", -1, "pubsub noscript loading stale")
def punsubscribe_command(client: Client, args: list[bytes]) -> bytes:
    patterns = args[1:] or list(client.patterns)  # none named: every pattern
    return leave(client, b"punsubscribe", patterns, client.server.pubsub.punsubscribe)


def join(client: Client, kind: bytes, names: list[bytes], subscribe: Callable[[Client, bytes], None]) -> bytes:
    """SUBSCRIBE and PSUBSCRIBE: listen to each channel or pattern, with a reply pushed for each, even a repeat."""
    for name in names:
        subscribe(client, name)
        push(client, subscription_reply(client, kind, name))
    return b""


def leave(client: Client, kind: bytes, names: list[bytes], unsubscribe: Callable[[Client, bytes], None]) -> bytes:
    """UNSUBSCRIBE and PUNSUBSCRIBE: leave each channel or pattern, with a reply pushed for each."""
    if not names:  # nothing to leave: one reply all the same, with a null name
        push(client, subscription_reply(client, kind, None))
    for name in names:
        unsubscribe(client, name)
        push(client, subscription_reply(client, kind, name))
    return b""


@command("publish", 3, "pubsub loading stale fast may_replicate")
def publish_command(client: Client, args: list[bytes]) -> bytes:
    channel, message = args[1], args[2]
    return integer(client.server.pubsub.publish(channel, message))  # how many clients it reached



# =============================================================================
# Chapter 11. Access control: passwords, protected mode, idle clients
# =============================================================================
#
# Whoever reaches the port can run any command, FLUSHALL included, so Redis
# guards the door twice. Protected mode, on by default: while there is no
# password, only clients on this machine (127.0.0.1 and ::1) are served, and
# anyone else gets one -DENIED line saying what to do, then is disconnected.
# And a password (requirepass): a new connection may only AUTH, HELLO ... AUTH,
# QUIT or RESET until it has given it; every other command gets -NOAUTH (from
# command_refusal(), where execute() asks whether a client may run a command
# now). Since Redis 6 these are ACL users; requirepass is the password of
# "default", the user every connection starts as, and the only user this
# server has.
#
# A password check must not leak the password through its timing: a comparison
# that stops at the first differing byte answers sooner the fewer leading bytes
# are right, which lets an attacker guess a byte at a time. Like Redis, this
# server compares SHA-256 digests in time that does not depend on where they
# differ (hmac.compare_digest). Passwords are never logged, and CLIENT LIST
# shows only the name of the last command.
#
# The last guard is against clients that connect and go quiet: each holds a
# file descriptor and its buffers. With --timeout N, the server's cron closes
# any client idle for more than N seconds, as Redis's clientsCron does.


WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."


def password_digest(password: str) -> bytes | None:
    """What the server keeps of a password: its SHA-256 digest, or None for no password ("")."""
    return hashlib.sha256(password.encode("utf-8", "surrogateescape")).digest() if password else None


class AccessState:
    """The server's state for access control; Server (chapter 12) inherits it."""

    def __init__(self, password: str) -> None:
        self.password_digest = password_digest(password)  # the default user's; None: no password
        self.idle_check_position = 0  # where in the clients list the next look for idle clients starts


def authenticate(client: Client, username: bytes, password: bytes) -> None:
    """Log the client in as username, or fail with WRONGPASS (Redis's ACLAuthenticateUser, for one user)."""
    expected = client.server.password_digest
    # With no password, "default" accepts any (Redis's nopass). Either way, compare in constant time.
    if username != b"default" or not (expected is None or hmac.compare_digest(hashlib.sha256(password).digest(),
                                                                              expected)):
        raise CommandError(WRONGPASS)
    client.authenticated = True


@command("auth", -2, "noscript loading stale fast no_auth allow_busy")
def auth_command(client: Client, args: list[bytes]) -> bytes:
    # AUTH password, or AUTH username password (Redis 6+).
    if len(args) > 3:
        raise CommandError(SYNTAX_ERROR)
    if len(args) == 2:
        if client.server.password_digest is None:
            raise CommandError("ERR AUTH <password> called without any password configured for the default user. "
                               "Are you sure your configuration is correct?")
        username, password = b"default", args[1]
    else:
        username, password = args[1], args[2]
    authenticate(client, username, password)
    return OK


def turned_away(server: Server, transport: asyncio.BaseTransport, peer: object) -> bool:
    """Tell a new connection why it may not connect, and close it; False if it may.

    It may not when there are too many clients (Appendix E), or by protected mode.
    """
    if len(server.clients) >= server.options.maxclients:
        refusal = MAX_CLIENTS_REACHED
    elif protected_mode_refuses(server, peer[0] if isinstance(peer, tuple) else ""):
        refusal = PROTECTED_MODE_DENIED
    else:
        return False
    server.stats.rejected_connections += 1
    transport.write(refusal)
    transport.close()
    return True


def command_refusal(client: Client, entry: Command) -> str | None:
    """Why the client may not run this command now, or None if it may: execute()'s checks after the arity.

    In Redis's order (processCommand()): a client must log in first, a failed
    background save stops writes and PING (chapter 7), and a subscriber or a
    monitor may run only some commands (chapter 10).
    """
    if not client.authenticated and client.server.password_digest is not None and "no_auth" not in entry.flags:
        return "NOAUTH Authentication required."
    disk_error = client.server.disk_error
    if disk_error is not None and ("write" in entry.flags or entry.name == "ping"):
        return disk_error
    if (client.channels or client.patterns or client.monitoring) and not client.running_transaction:
        return refuse_in_context(client, entry)
    return None


def protected_mode_refuses(server: Server, host: str) -> bool:
    """Whether protected mode turns this client away: no password, and not on this machine."""
    return server.options.protected_mode == "yes" and server.password_digest is None and host not in LOCAL_HOSTS


LOCAL_HOSTS = ("127.0.0.1", "::1")  # Redis's islocalClient(): all of 127/8 is loopback, but only these count


def warn_if_exposed(server: Server) -> None:
    """At startup: say so when clients from other machines can connect and no password is set."""
    exposed = [sock.getsockname()[0] for sock in server.listener.sockets if sock.getsockname()[0] not in LOCAL_HOSTS]
    if not exposed or server.password_digest is not None:
        return
    if server.options.protected_mode == "yes":
        log.warning("WARNING: listening on %s with no password: protected mode turns away every client that is not "
                    "on this machine. Set --requirepass to serve them.", ", ".join(exposed))
    else:
        log.warning("WARNING: listening on %s with no password and protected mode off: anyone who can reach this "
                    "port can read and change every key. Set --requirepass.", ", ".join(exposed))


def close_idle_clients(server: Server) -> None:
    """Close the clients idle for longer than --timeout seconds (0: never), from the server's cron.

    Like Redis's clientsCron, each call looks at its share of the clients,
    so that each is seen about once a second whatever hz is: the cron's work
    stays in proportion to the clients, not to clients times hz.
    """
    timeout, clients = server.options.timeout, server.clients
    if not timeout or not clients:
        return
    now = time.monotonic()
    share = -(-len(clients) // server.options.hz)  # rounded up
    start = server.idle_check_position % len(clients)
    for client in clients[start : start + share]:
        if client.channels or client.patterns or client.monitoring:
            continue  # it waits for the server to speak, not the other way round: Redis spares it too (chapter 10)
        if now - client.last_interaction > timeout and not client.transport.is_closing():
            log.info("Closing idle client %d (%s)", client.id, client.address)
            client.transport.abort()  # at once: close() would wait to send what a client that reads nothing left
    server.idle_check_position = start + share


# =============================================================================
# Chapter 12. Startup and shutdown
# =============================================================================
#
# Startup happens in Redis's order: read the configuration (flags with
# redis-server's names, parse_options in Appendix C), make sure the process
# may open a file descriptor for every client it will accept (Appendix E),
# load the data (from the append-only file if it is on, else from the
# snapshot; and refuse to go on if it is unreadable), only then listen, and
# log one line saying where. From then on the cron (Redis's serverCron) runs
# hz times a second between the clients' requests: active expiry, idle
# clients, the log, save rules and the background child.
#
# Shutdown (SIGTERM, Ctrl+C or SHUTDOWN) saves the snapshot first, while the
# server still runs, and writes and fsyncs what the append-only file has
# buffered; only once the data is safely on disk does it stop accepting
# connections, let each client's queued replies go out, and exit 0. If the
# save fails, exiting would throw away every change since the last save: so,
# like Redis, the server says why and keeps serving (final_save, chapter 7).


SHUTDOWN_FLUSH_TIMEOUT = 2.0  # seconds to let replies in flight reach their clients
LOG_FORMAT = "%(process)d:{role} %(asctime)s.%(msecs)03d * %(message)s"  # Redis's: pid, role, time, message
LOG_LEVELS = {"debug": logging.DEBUG, "verbose": logging.INFO, "notice": logging.INFO, "warning": logging.WARNING}


def log_formatter(role: str) -> logging.Formatter:
    """Log lines as Redis writes them; role is M for the server, C for a child process (chapter 7)."""
    return logging.Formatter(LOG_FORMAT.format(role=role), datefmt="%d %b %Y %H:%M:%S")


class Server(SnapshotState, AppendOnlyState, AccessState):
    """The server's shared state: configuration, keyspace and clients; chapters 7, 8, 11 add theirs as base classes."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.start_time = time.time()
        SnapshotState.__init__(self, self.start_time)  # chapter 7: the last save, the background child, MISCONF
        AppendOnlyState.__init__(self)  # chapter 8: the log
        AccessState.__init__(self, options.requirepass)  # chapter 11: the password
        self.pubsub = PubSub()  # channels, patterns and who listens to them (chapter 10)
        self.keyspace = Keyspace(pubsub=self.pubsub)
        self.running_client: Client | None = None  # the client whose requests are running, if any
        self.monitors: list[Client] = []  # the clients that sent MONITOR (Appendix C)
        self.output_limits = dict(CLIENT_OUTPUT_BUFFER_LIMITS)  # client-output-buffer-limit (Appendix E)
        update_keyspace_events(self)  # --notify-keyspace-events
        update_output_limits(self)  # --client-output-buffer-limit
        self.clients: list[Client] = []
        self.client_ids = itertools.count(1)
        self.port = options.port
        self.address = ""
        self.stats = Statistics()  # what the server counts only to report it (INFO, Appendix C)
        self.listener: asyncio.Server | None = None  # serve() opens it
        self.exit_code: asyncio.Future[int] | None = None  # set by shutdown() once the server may exit
        self.stopping = False  # shutdown() has saved (or was told not to): no command may run any more
        self.signal_shutdown_failed = False  # a second SIGTERM or SIGINT then exits even if the save fails
        self.accept_error_log = RateLimitedLog(ACCEPT_ERROR_LOG_INTERVAL)
        self.security_warning_log = RateLimitedLog(SECURITY_WARNING_INTERVAL)
        # new_event_loop() replaces it with BeforeSleepSelector, unless --batch-writes no.
        self.writer: WriteAtOnce | BeforeSleepSelector = WriteAtOnce()
        self.active_expiry_enabled = True  # DEBUG SET-ACTIVE-EXPIRE 0 turns it off

    @property
    def dump_path(self) -> str:
        return os.path.join(self.options.dir, self.options.dbfilename)

    @property
    def aof_path(self) -> str:
        return os.path.join(self.options.dir, self.options.appendfilename)

    def client_connected(self, address: str, transport: asyncio.Transport) -> Client:
        client = Client(self, next(self.client_ids), address, transport)
        self.clients.append(client)
        self.stats.connections_received += 1
        return client

    def client_disconnected(self, client: Client) -> None:
        self.clients.remove(client)
        unwatch_all(client)
        stop_listening(client)

    def database(self, index_arg: bytes) -> Database:
        """The database named by a SELECT/MOVE/COPY argument, with Redis's errors."""
        index = parse_integer(index_arg)
        if index is None:
            raise CommandError(NOT_AN_INTEGER)
        if not -(2**31) <= index < 2**31:  # Redis reads it as a C int: a long long first, then a range check
            raise CommandError("ERR value is out of range, value must between -2147483648 and 2147483647")
        if not 0 <= index < DATABASES:
            raise CommandError("ERR DB index is out of range")
        return self.keyspace.databases[index]

    def load(self) -> None:
        """Load the data: from the log if appendonly is on (chapter 8), else from the snapshot (chapters 6, 7).

        A snapshot that fails to load raises DumpError, a log AofError.
        """
        if self.options.appendonly == "yes":
            open_aof_at_startup(self)
        else:
            load_snapshot_at_startup(self)

    def shutdown(self, save: bool | None = None, force: bool = False) -> bool:
        """Save the final snapshot, then stop serving; if the save fails, log why and return False, still serving.

        Redis's prepareForShutdown() order: save while everything still runs, so that a failed save leaves the
        server as it was, then close every connection, so that no command runs after the save. save and force
        are SHUTDOWN's options (final_save, chapter 7).
        """
        if self.exit_code.done():
            return True  # already on the way out
        log.warning("User requested shutdown...")
        exit_code = final_save(self, save, force)
        if exit_code is None:
            return False
        if self.aof is not None:
            close_aof(self)  # what the log has buffered, written and fsynced (chapter 8)
        log.info("No new connections; closing %d client(s)", len(self.clients))
        self.stopping = True
        self.listener.close()
        self.writer.flush()
        for client in self.clients:
            client.transport.close()  # sends the replies already written, then closes
        self.exit_code.set_result(exit_code)
        return True

    def signal_received(self, name: str) -> None:
        """SIGTERM or Ctrl+C: shut down; after a failed save, the next one exits anyway (final_save, chapter 7)."""
        log.warning("Received %s scheduling shutdown...", name)
        if not self.shutdown(force=self.signal_shutdown_failed):
            self.signal_shutdown_failed = True

    def cron(self, loop: asyncio.AbstractEventLoop) -> None:
        """Redis's serverCron, hz times a second: active expiry, idle clients, the log, the background child."""
        if self.stopping:
            return  # shut down: a save rule must not start a child that would outlive the server
        loop.call_later(1 / self.options.hz, self.cron, loop)  # first, so that no error below can stop the cron
        if self.active_expiry_enabled:
            self.keyspace.active_expire_cycle(self.options.hz)
        close_idle_clients(self)  # chapter 11
        persistence_cron(self)  # chapters 7 and 8: the log flushed, save rules, the background child


async def serve(server: Server, ready: Callable[[], None] = lambda: None) -> int:
    """Listen, call ready(), serve until Server.shutdown() succeeds, and return the exit code."""
    loop = asyncio.get_running_loop()
    options = server.options
    loop.set_exception_handler(functools.partial(log_loop_error, server))  # a failed callback logged once (App. E)
    server.exit_code = loop.create_future()
    connection_class = PausingConnection if options.output_pause == "yes" else ClientConnection
    try:
        server.listener = await loop.create_server(lambda: connection_class(server), host=options.bind,
                                                   port=options.port, reuse_address=True, backlog=options.tcp_backlog)
    except OSError as error:
        log.error("Cannot listen on %s port %d: %s", " ".join(options.bind), options.port, error.strerror or error)
        return 1
    server.port = server.listener.sockets[0].getsockname()[1]
    server.address = f"{options.bind[0]}:{server.port}"
    if threading.current_thread() is threading.main_thread():  # only there can a process handle signals
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.signal_received, signal.Signals(signum).name)
    loop.call_later(1 / options.hz, server.cron, loop)
    addresses = ", ".join(f"{sock.getsockname()[0]}:{sock.getsockname()[1]}" for sock in server.listener.sockets)
    log.info("Educational Redis Clone %s (Redis %s compatible), pid %d, ready to accept connections on %s, "
             "persisting to %s", SERVER_VERSION, REDIS_VERSION, os.getpid(), addresses,
             os.path.abspath(server.dump_path) + (f" and {os.path.abspath(server.aof_path)}" if server.aof else ""))
    warn_if_exposed(server)
    ready()

    exit_code = await server.exit_code
    deadline = loop.time() + SHUTDOWN_FLUSH_TIMEOUT
    while server.clients and loop.time() < deadline:
        await asyncio.sleep(0.01)
    log.info("Redis clone is now ready to exit, bye bye...")
    return exit_code


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)  # redis-server's flags, by their names (Appendix C)
    if options.check_aof:
        return check_append_only_file(options.check_aof, options.fix)  # redis-check-aof (Appendix B)
    logging.basicConfig(level=LOG_LEVELS[options.loglevel], stream=sys.stdout)
    logging.getLogger().handlers[0].setFormatter(log_formatter("M"))
    options.maxclients = adjust_open_files_limit(options.maxclients)
    if options.maxclients < 1:
        return 1
    server = Server(options)
    try:
        server.load()
    except DumpError as error:
        log.error("Cannot load the snapshot %s: %s", os.path.abspath(server.dump_path), error)
        log.error("Refusing to start, so that the file is not overwritten. Fix or move it, then start again.")
        return 1
    except AofError as error:
        log.error("Cannot load the append only file %s: at offset %d, %s", os.path.abspath(server.aof_path),
                  error.offset, error)
        log.error("Refusing to start, and leaving the file as it is. Make a backup of it, then check it with "
                  "'python server.py --check-aof %s' (--fix cuts it at that offset).", server.aof_path)
        return 1
    loop = new_event_loop(server)  # on BeforeSleepSelector, unless --batch-writes no (Appendix D)
    try:
        return loop.run_until_complete(serve(server))
    finally:
        loop.close()


# #############################################################################
# PART II: THE FINE PRINT
# #############################################################################
#
# A first reading can stop here. Each appendix adds one kind of detail to the
# core of Part I: more commands, Redis's exact behaviour, introspection,
# speed, and limits.


# =============================================================================
# Appendix A. More commands
# =============================================================================
#
# A first reading can skip this appendix: it adds the rest of each command
# family of Part I, and the KeyList that lets RANDOMKEY and SCAN find keys by
# position.


NO_SUCH_KEY = "ERR no such key"
NOT_A_FLOAT = "ERR value is not a valid float"
STRING_TOO_LONG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
RANDOMKEY_MAX_TRIES = 100  # dbRandomKey()'s maxtries: expired picks before RANDOMKEY gives up


# --- Connection and server -----------------------------------------------------

@command("echo", 2, "fast")
def echo_command(client: Client, args: list[bytes]) -> bytes:
    message = args[1]
    return bulk(message)


@command("quit", -1, "noscript loading stale fast no_auth allow_busy")
def quit_command(client: Client, args: list[bytes]) -> bytes:
    client.close_after_reply = True  # the connection writes +OK, then closes
    return OK


@command("lastsave", 1, "fast")
def lastsave_command(client: Client, args: list[bytes]) -> bytes:
    return integer(client.server.last_save)


@command("time", 1, "fast")
def time_command(client: Client, args: list[bytes]) -> bytes:
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    return bulk_array([b"%d" % seconds, b"%d" % micros])


@command("shutdown", -1, "admin noscript loading stale no_multi allow_busy")
def shutdown_command(client: Client, args: list[bytes]) -> bytes:
    # SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]: save or not (Server.shutdown, chapter 12), then close.
    save, force = parse_shutdown_options(args)  # Appendix B
    if not client.server.shutdown(save, force=force):
        raise CommandError("ERR Errors trying to SHUTDOWN. Check logs.")  # the save failed: still serving
    client.close_after_reply = True  # run nothing more: a write now would miss the final snapshot
    return b""  # like Redis, the connection just closes


def debug_allowed(client: Client) -> bool:
    """DEBUG can stop the server for everyone: like Redis, allow it by --enable-debug-command."""
    setting = client.server.options.enable_debug_command
    return setting == "yes" or (setting == "local" and client.address.startswith(("127.", "::1", "[::1]")))


@command("debug", -2, "admin noscript")
def debug_command(client: Client, args: list[bytes]) -> bytes:
    # Two of Redis's DEBUG switches, kept because they let you watch a design choice at work:
    #   DEBUG SET-ACTIVE-EXPIRE 0  stops the active expiry cycle: expired keys then stay in
    #                              memory (DBSIZE, INFO memory) until something looks them up.
    #   DEBUG SLEEP 2              blocks the event loop, and so every client, for two seconds.
    if not debug_allowed(client):
        raise CommandError(
            'ERR DEBUG command not allowed. If the enable-debug-command option is set to "local", you can run it '
            "from a local connection, otherwise you need to set this option in the configuration file, and then "
            "restart the server.")
    subcommand = args[1].upper()
    if subcommand == b"SET-ACTIVE-EXPIRE" and len(args) == 3:
        client.server.active_expiry_enabled = args[2] != b"0"
        return OK
    if subcommand == b"SLEEP" and len(args) == 3:
        seconds = parse_long_double(args[2])  # like C's atof(), anything unreadable counts as 0
        with contextlib.suppress(OverflowError):  # beyond the clock's range: Redis's microsecond count overflows
            time.sleep(float(seconds) if isinstance(seconds, Fraction) and seconds > 0 else 0)  # and it does not sleep
        return OK
    raise CommandError(f"ERR unknown subcommand or wrong number of arguments for '{c_string(args[1])}'. "
                       "Try DEBUG HELP.")


# --- Keys -----------------------------------------------------------------------

@command("exists", -2, "readonly fast")
def exists_command(client: Client, args: list[bytes]) -> bytes:
    keys = args[1:]
    exists = client.db.exists
    return integer(sum(exists(key) for key in keys))  # a key named twice counts twice, as in Redis


@command("dbsize", 1, "readonly fast")
def dbsize_command(client: Client, args: list[bytes]) -> bytes:
    return integer(client.db.key_count())


@command("flushall", -1, "write")
def flushall_command(client: Client, args: list[bytes]) -> bytes:
    parse_flush_mode(args)
    server = client.server
    for db in server.keyspace.databases:
        db.flush()
    client.propagate(args)  # logged always, as in Redis: it changes databases other than the client's (chapter 8)
    save_after_flushall(server)  # chapter 7: so that a restart cannot bring the keys back
    return OK


@command("unlink", -2, "write fast")
def unlink_command(client: Client, args: list[bytes]) -> bytes:
    # Redis frees big values in a background thread; here freeing is Python's job, so UNLINK is DEL.
    return del_command(client, args)


@command("touch", -2, "readonly fast")
def touch_command(client: Client, args: list[bytes]) -> bytes:
    return exists_command(client, args)  # no LRU clock to update: touching is checking


@command("type", 2, "readonly fast")
def type_command(client: Client, args: list[bytes]) -> bytes:
    return b"+string\r\n" if client.db.exists(args[1]) else b"+none\r\n"


@command("randomkey", 1, "readonly")
def randomkey_command(client: Client, args: list[bytes]) -> bytes:
    key = random_key(client.db)
    return client.null if key is None else bulk(key)


def string_to_edit(db: Database, key: bytes) -> bytearray:
    """The string at key as a bytearray that APPEND and SETRANGE change in place; the key must exist.

    Redis's dbUnshareStringValue(): the first edit copies the value into a
    growable buffer (a bytearray here, an sds string with spare room in
    Redis), and later edits find it there and cost only the bytes they add.
    """
    value = db.lookup_string(key)
    if type(value) is not bytearray:
        value = bytearray(value)
    db.set(key, value, keep_ttl=True)  # stored (again) before the edit: the edit counts as a change
    return value


def copy_key(source: Database, key: bytes, target: Database, new_key: bytes, move: bool = False) -> None:
    """Store key's value and expire time as new_key in target (COPY); move deletes key in source (RENAME, MOVE).

    key must exist. A copy gets a bytearray of its own, as Redis's
    dupStringObject() gives it its own buffer: sharing it, an APPEND to one
    key would change the other. A move hands the value over as it is.
    """
    value, when = source.lookup(key), source.get_expire(key)
    if move:
        source.delete(key)
    elif type(value) is bytearray:
        value = bytearray(value)
    target.delete(new_key)  # a key it replaces is deleted first, so the copy is a "new" key, as in Redis
    target.set(new_key, value)
    if when is not None:
        target.set_expire(new_key, when)


@command("rename", 3, "write")
def rename_command(client: Client, args: list[bytes]) -> bytes:
    rename(client.db, args[1], args[2], replace=True)
    return OK


@command("renamenx", 3, "write fast")
def renamenx_command(client: Client, args: list[bytes]) -> bytes:
    return ONE if rename(client.db, args[1], args[2], replace=False) else ZERO


def rename(db: Database, old: bytes, new: bytes, replace: bool) -> bool:
    """Move a value and its TTL to a new name; False if not replace and the new name is taken."""
    if not db.exists(old):
        raise CommandError(NO_SUCH_KEY)
    if old == new:
        return replace
    if db.exists(new) and not replace:
        return False
    copy_key(db, old, db, new, move=True)
    notify_keyspace_event(db, NOTIFY_GENERIC, "rename_from", old)
    notify_keyspace_event(db, NOTIFY_GENERIC, "rename_to", new)
    return True


@command("copy", -3, "write")
def copy_command(client: Client, args: list[bytes]) -> bytes:
    source = target = client.db
    replace = False
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option == b"REPLACE":
            replace = True
            i += 1
        elif option == b"DB" and i + 1 < len(args):
            target = client.server.database(args[i + 1])
            i += 2
        else:
            raise CommandError(SYNTAX_ERROR)
    if source is target and args[1] == args[2]:
        raise CommandError("ERR source and destination objects are the same")
    if not source.exists(args[1]) or (target.exists(args[2]) and not replace):
        return ZERO
    copy_key(source, args[1], target, args[2])
    client.propagate(args)  # the target may be another database than the client's (chapter 8)
    notify_keyspace_event(target, NOTIFY_GENERIC, "copy_to", args[2])
    return ONE


@command("move", 3, "write fast")
def move_command(client: Client, args: list[bytes]) -> bytes:
    source = client.db
    target = client.server.database(args[2])
    if source is target:
        raise CommandError("ERR source and destination objects are the same")
    if not source.exists(args[1]) or target.exists(args[1]):
        return ZERO
    copy_key(source, args[1], target, args[1], move=True)
    notify_keyspace_event(source, NOTIFY_GENERIC, "move_from", args[1])
    notify_keyspace_event(target, NOTIFY_GENERIC, "move_to", args[1])
    return ONE


@command("swapdb", 3, "write fast")
def swapdb_command(client: Client, args: list[bytes]) -> bytes:
    databases = client.server.keyspace.databases
    first = parse_int_arg(args[1], "ERR invalid first DB index")
    second = parse_int_arg(args[2], "ERR invalid second DB index")
    if not (0 <= first < DATABASES and 0 <= second < DATABASES):
        raise CommandError("ERR DB index is out of range")
    if first != second:  # a database swapped with itself changes nothing, not even a WATCH (as in Redis)
        databases[first].swap_contents(databases[second])
    client.propagate(args)  # other databases than the client's changed: the log is told so (chapter 8)
    return OK


class Database(BasicDatabase):
    """A database with what Part II's commands and WATCH (chapter 9) need besides chapter 4's core."""

    def set_many(self, keys_and_values: list[bytes]) -> None:
        """MSET: store key, value, key, value..., forgetting the keys' TTLs; in one dict update when it can."""
        # One iterator zipped with itself yields the items two at a time: (key, value), (key, value)...
        # Not zip(strict=True): MSET checked the count, and any keyword argument makes zip() slower.
        items = iter(keys_and_values)
        pairs = zip(items, items)  # noqa: B905
        if self.expires or self.watched_keys or self.pubsub.notify_flags & (NOTIFY_NEW | NOTIFY_STRING):
            for key, value in pairs:  # one key at a time, each with its keyspace event, as in Redis
                self.set(key, value)
                notify_keyspace_event(self, NOTIFY_STRING, "set", key)
            return
        data = self.data
        size = len(data)
        data.update(pairs)  # all in one C-level dict update
        self.changes += len(keys_and_values) // 2
        added = len(data) - size
        if added:  # the keys update() added are the dict's last ones: take them from the end
            new_keys = list(itertools.islice(reversed(data), added))
            new_keys.reverse()
            self.key_list.extend(new_keys)

    def key_count_with_ttl(self) -> int:
        return len(self.expires)

    def remove_expire(self, key: bytes) -> bool:
        """PERSIST: forget key's TTL; False if it had none."""
        if self.expires.pop(key, None) is None:
            return False
        self.changes += 1
        if key in self.watched_keys:  # some client WATCHes it (chapter 9)
            touch_watched_key(self, key)
        return True

    def is_expired(self, key: bytes) -> bool:
        """Whether key is stored but its time has passed: lazy expiry will delete it (Redis's keyIsExpired)."""
        return key in self.expires and has_expired(self.expires[key], self.clock())

    def is_stored(self, key: bytes) -> bool:
        """Whether key is in the dicts, expired or not: a KeyList entry is stale if not."""
        return key in self.data

    def swap_contents(self, other: Database) -> None:
        """SWAPDB: exchange keys, expire times and their bookkeeping, but not the index: clients keep "db 0"."""
        touch_all_watched_keys(self, other)  # WATCHes stay with the database index, as clients do
        touch_all_watched_keys(other, self)
        self.changes += 1
        self.data, other.data = other.data, self.data
        self.expires, other.expires = other.expires, self.expires
        self.key_list, other.key_list = other.key_list, self.key_list
        self._expire_scan, other._expire_scan = other._expire_scan, self._expire_scan
        self._expire_scan_pos, other._expire_scan_pos = other._expire_scan_pos, self._expire_scan_pos
        self.avg_ttl, other.avg_ttl = other.avg_ttl, self.avg_ttl


class KeyList:
    """A database's keys in the order they were added, so that RANDOMKEY and SCAN find keys by position.

    A hash table finds a key by its name in O(1), but RANDOMKEY and SCAN need
    keys by position. Redis reads positions straight off its table: RANDOMKEY
    picks a random bucket, and a SCAN cursor is a bucket number. A Python dict
    shows no buckets, so each Database also keeps a list of its keys in the
    order they were added (the same key objects: 8 bytes a key). Deleting a key
    leaves its entry in the list, stale, because taking it out would shift every
    entry after it. Once stale entries outnumber live ones, the list is rebuilt
    from the dict, which keeps its keys in the order they were added too: that
    "compaction" costs O(n), but only after n deletes, so O(1) a delete on
    average. Then:

      * RANDOMKEY picks random positions until one holds a live key. At least
        half of the entries are live, so that takes under two tries on average.
      * A SCAN cursor is a position in the list, and each call reads the COUNT
        entries from there. Redis promises that a key present for the whole
        scan is returned at least once. A compaction moves each entry down by
        at most the number of entries it removes, so a cursor also counts the
        entries removed so far ("virtual position" = position + removed), and
        a call resumes at cursor - removed now: perhaps before keys it already
        returned, never after one it has not. Redis allows the rest: a key
        added or deleted during the scan may be returned or not, and any key
        may be returned twice (here, one the scan stepped back over, or one
        deleted and added again, whose stale entry reads as live too).
    """

    def __init__(self) -> None:
        self._entries: list[bytes] = []  # every key in the order it was added, and stale entries
        self._removed = 0  # how many entries compactions have ever removed: a cursor counts them too

    def append(self, key: bytes) -> None:
        self._entries.append(key)

    def extend(self, keys: list[bytes]) -> None:
        self._entries += keys

    def removed(self, data: dict[bytes, bytes | bytearray]) -> None:
        """A key was taken out of data: its entry is stale now. Compact once stale entries outnumber live ones."""
        if len(self._entries) > 2 * len(data):
            self.compact(data)

    def compact(self, data: dict[bytes, bytes | bytearray]) -> None:
        """Rebuild the list from data, which keeps its keys in the order they were added too."""
        self._removed += len(self._entries) - len(data)
        self._entries = list(data)

    def random_entry(self) -> bytes:
        """An entry picked at random: a live key, or (less than half the time) a stale one. The list is not empty."""
        return random.choice(self._entries)

    def entries_from(self, cursor: int, count: int) -> tuple[int, dict[bytes, None]]:
        """SCAN's window: the next cursor (0 at the end), and count entries from the cursor's position on.

        A key deleted and added again has two entries: like Redis, one reply
        names a key once, so the entries come as the keys of a dict (which
        keeps the first of each).
        """
        start = max(cursor - self._removed, 0)
        end = start + count
        next_cursor = end + self._removed if end < len(self._entries) else 0
        return next_cursor, dict.fromkeys(self._entries[start:end])


def random_key(db: Database) -> bytes | None:
    """RANDOMKEY: a key of db picked at random, or None if the database is empty.

    Like Redis's dbRandomKey(), an expired pick is deleted (lazy expiry)
    and another drawn, so each try either answers or removes a key. If
    every key has a TTL they may all have expired: then, after
    RANDOMKEY_MAX_TRIES expired picks, it returns the last pick as it is.
    Redis does that only on a replica, which must not delete keys; here
    it keeps one call short. Otherwise a key without a TTL ends the
    search, and the expired keys deleted on the way are work active
    expiry would have done anyway.
    """
    all_volatile = db.key_count_with_ttl() == db.key_count()
    expired_picks = 0
    while db.key_count():
        key = db.key_list.random_entry()
        if not db.is_stored(key):
            continue  # a stale entry: fewer than half are
        when = db.get_expire(key)
        if when is None or not has_expired(when, db.clock()):
            return key
        expired_picks += 1
        if all_volatile and expired_picks == RANDOMKEY_MAX_TRIES:
            return key
        db.lookup(key)  # deletes it: lazy expiry
    return None


def scan_keys(db: Database, cursor: int, count: int, matches: Callable[[bytes], bool]) -> tuple[int, list[bytes]]:
    """One SCAN call: the next cursor (0 when done), and the live keys that match among count entries."""
    # The cursor is taken before exists() deletes expired keys, which may compact the list.
    next_cursor, entries = db.key_list.entries_from(cursor, count)
    return next_cursor, [key for key in entries if matches(key) and db.exists(key)]


# SCAN's promise: a key present for the whole scan is returned at least once.
# A cursor is a position in the database's list of keys: KeyList says how
# it survives inserts and deletes. Each call costs O(COUNT),
# whatever the size of the database, and an open scan costs the server nothing.


@command("scan", -2, "readonly")
def scan_command(client: Client, args: list[bytes]) -> bytes:
    cursor = parse_scan_cursor(args[1])
    count, matches, type_name = 10, glob_matcher(b"*"), None
    i = 2
    while i < len(args):
        option = args[i].lower()
        if option == b"count" and i + 1 < len(args):
            count = parse_int_arg(args[i + 1])
            if count < 1:
                raise CommandError(SYNTAX_ERROR)
        elif option == b"match" and i + 1 < len(args):
            matches = glob_matcher(args[i + 1])
        elif option == b"type" and i + 1 < len(args):
            type_name = args[i + 1].lower()
        else:
            raise CommandError(SYNTAX_ERROR)
        i += 2
    next_cursor, keys = scan_keys(client.db, cursor, count, matches)
    return array([bulk(b"%d" % next_cursor), bulk_array(keys if type_name in (None, b"string") else [])])


# --- Expiry ---------------------------------------------------------------------

@command("pttl", 2, "readonly fast")
def pttl_command(client: Client, args: list[bytes]) -> bytes:
    key = args[1]
    return ttl_generic(client, key, in_ms=True, absolute=False)


@command("persist", 2, "write fast")
def persist_command(client: Client, args: list[bytes]) -> bytes:
    key = args[1]
    db = client.db
    if not (db.exists(key) and db.remove_expire(key)):
        return ZERO  # 1 only if there was a TTL to remove
    notify_keyspace_event(db, NOTIFY_GENERIC, "persist", key)
    return ONE


@command("expiretime", 2, "readonly fast")
def expiretime_command(client: Client, args: list[bytes]) -> bytes:
    return ttl_generic(client, args[1], in_ms=False, absolute=True)


@command("pexpiretime", 2, "readonly fast")
def pexpiretime_command(client: Client, args: list[bytes]) -> bytes:
    return ttl_generic(client, args[1], in_ms=True, absolute=True)


# --- Strings --------------------------------------------------------------------

@command("setnx", 3, "write fast")
def setnx_command(client: Client, args: list[bytes]) -> bytes:
    db = client.db
    if db.exists(args[1]):
        return ZERO
    db.set(args[1], args[2])
    notify_keyspace_event(db, NOTIFY_STRING, "set", args[1])
    return ONE


def set_with_expire(client: Client, args: list[bytes], option: bytes) -> bytes:
    when = expire_at_ms(option, args[2], text(args[0]).lower())
    client.db.set(args[1], args[3])
    notify_keyspace_event(client.db, NOTIFY_STRING, "set", args[1])
    client.db.set_expire(args[1], when)
    client.propagate([b"SET", args[1], args[3], b"PXAT", b"%d" % when])
    notify_keyspace_event(client.db, NOTIFY_GENERIC, "expire", args[1])
    return OK


@command("setex", 4, "write")
def setex_command(client: Client, args: list[bytes]) -> bytes:
    return set_with_expire(client, args, b"EX")


@command("psetex", 4, "write")
def psetex_command(client: Client, args: list[bytes]) -> bytes:
    return set_with_expire(client, args, b"PX")


@command("getset", 3, "write fast")
def getset_command(client: Client, args: list[bytes]) -> bytes:
    old = client.db.lookup_string(args[1])
    client.db.set(args[1], args[2])
    client.propagate([b"SET", args[1], args[2]])
    notify_keyspace_event(client.db, NOTIFY_STRING, "set", args[1])
    return client.null if old is None else bulk(old)


@command("getdel", 2, "write fast")
def getdel_command(client: Client, args: list[bytes]) -> bytes:
    value = client.db.lookup_string(args[1])
    if value is None:
        return client.null
    client.db.delete(args[1])
    client.propagate([b"DEL", args[1]])
    notify_keyspace_event(client.db, NOTIFY_GENERIC, "del", args[1])
    return bulk(value)


@command("getex", -2, "write fast")
def getex_command(client: Client, args: list[bytes]) -> bytes:
    db = client.db
    flags, expire_option, expire_arg = parse_set_options(args, 2, {b"PERSIST", b"EX", b"PX", b"EXAT", b"PXAT"})
    value = db.lookup_string(args[1])
    if value is None:
        return client.null
    if expire_option:
        when = expire_at_ms(expire_option, expire_arg, "getex")
        set_expire = db.expire_or_delete(args[1], when)
        client.propagate([b"PEXPIREAT", args[1], b"%d" % when] if set_expire else [b"DEL", args[1]])
        notify_keyspace_event(db, NOTIFY_GENERIC, "expire" if set_expire else "del", args[1])
    elif b"PERSIST" in flags and db.remove_expire(args[1]):
        client.propagate([b"PERSIST", args[1]])
        notify_keyspace_event(db, NOTIFY_GENERIC, "persist", args[1])
    return bulk(value)


@command("msetnx", -3, "write")
def msetnx_command(client: Client, args: list[bytes]) -> bytes:
    if len(args) % 2 == 0:
        raise CommandError("ERR wrong number of arguments for 'msetnx' command")
    if any(client.db.exists(args[i]) for i in range(1, len(args), 2)):
        return ZERO
    mset_command(client, args)
    return ONE


@command("decr", 2, "write fast")
def decr_command(client: Client, args: list[bytes]) -> bytes:
    key = args[1]
    return increment(client, key, -1)


@command("incrby", 3, "write fast")
def incrby_command(client: Client, args: list[bytes]) -> bytes:
    key, amount = args[1], args[2]
    return increment(client, key, parse_int_arg(amount))


@command("decrby", 3, "write fast")
def decrby_command(client: Client, args: list[bytes]) -> bytes:
    key, amount = args[1], parse_int_arg(args[2])
    if amount == LLONG_MIN:  # its negation does not fit in 64 bits
        raise CommandError("ERR decrement would overflow")
    return increment(client, key, -amount)


@command("incrbyfloat", 3, "write fast")
def incrbyfloat_command(client: Client, args: list[bytes]) -> bytes:
    db = client.db
    old = db.lookup_string(args[1])
    value = Fraction(0) if old is None else parse_long_double(old)
    increment_by = parse_long_double(args[2])
    if value is None or increment_by is None:
        raise CommandError(NOT_A_FLOAT)
    if isinstance(value, str) or isinstance(increment_by, str):  # infinities
        raise CommandError("ERR increment would produce NaN or Infinity")
    result = round_to_long_double(value + increment_by)
    if result == INFINITY:
        raise CommandError("ERR increment would produce NaN or Infinity")
    formatted = FloatString(format_long_double(result))
    db.set(args[1], formatted, keep_ttl=True)
    client.propagate([b"SET", args[1], formatted, b"KEEPTTL"])  # replayed, the same digits: no float arithmetic
    notify_keyspace_event(db, NOTIFY_STRING, "incrbyfloat", args[1])
    return bulk(formatted)


def check_string_length(length: int) -> None:
    if length > PROTO_MAX_BULK_LEN:
        raise CommandError(STRING_TOO_LONG)


@command("append", 3, "write")
def append_command(client: Client, args: list[bytes]) -> bytes:
    db = client.db
    old = db.lookup_string(args[1])
    if old is None:
        db.set(args[1], args[2])
        notify_keyspace_event(db, NOTIFY_STRING, "append", args[1])
        return integer(len(args[2]))
    check_string_length(len(old) + len(args[2]))
    value = string_to_edit(db, args[1])
    value += args[2]  # in place: a bytearray keeps spare room at its end, so an append costs what it adds
    notify_keyspace_event(db, NOTIFY_STRING, "append", args[1])
    return integer(len(value))


@command("strlen", 2, "readonly fast")
def strlen_command(client: Client, args: list[bytes]) -> bytes:
    value = client.db.lookup_string(args[1])
    return integer(0 if value is None else len(value))


@command("getrange", 4, "readonly")
def getrange_command(client: Client, args: list[bytes]) -> bytes:
    start, end = parse_int_arg(args[2]), parse_int_arg(args[3])
    value = client.db.lookup_string(args[1])
    if value is None or (start < 0 and end < 0 and start > end):
        return EMPTY_BULK
    length = len(value)
    # Negative offsets count from the end; the range is inclusive and clipped.
    start = max(start + length if start < 0 else start, 0)
    end = min(max(end + length if end < 0 else end, 0), length - 1)
    return EMPTY_BULK if start > end or length == 0 else bulk(value[start : end + 1])


@command("substr", 4, "readonly")
def substr_command(client: Client, args: list[bytes]) -> bytes:
    return getrange_command(client, args)


@command("setrange", 4, "write")
def setrange_command(client: Client, args: list[bytes]) -> bytes:
    offset = parse_int_arg(args[2])
    if offset < 0:
        raise CommandError("ERR offset is out of range")
    patch = args[3]
    db = client.db
    old = db.lookup_string(args[1])
    if not patch:  # nothing to write: report the length, create nothing
        return integer(0 if old is None else len(old))
    check_string_length(offset + len(patch))
    if old is None:
        db.set(args[1], bytearray())  # Redis creates the new string raw, whatever its length
    value = string_to_edit(db, args[1])
    if offset > len(value):
        value += bytes(offset - len(value))  # writing past the end pads the gap with zero bytes
    value[offset : offset + len(patch)] = patch  # in place: only the patch's bytes are copied
    notify_keyspace_event(db, NOTIFY_STRING, "setrange", args[1])
    return integer(len(value))


# =============================================================================
# Appendix B. Redis to the letter
# =============================================================================
#
# A first reading can skip this appendix: it makes replies byte for byte
# Redis's where C and Python differ. Inline commands are split with Redis's
# quoting rules; error messages quote arguments as C strings; glob patterns
# match as Redis's stringmatchlen() does, in bounded time; INCRBYFLOAT
# computes in C's long double; SCAN reads its cursor as strtoul() does;
# OBJECT ENCODING tells the encodings Redis would have chosen; MONITOR quotes
# arguments as sdscatrepr() does; notify-keyspace-events' letters read as
# Redis reads them; and the append-only file is written as Redis 7.0 writes
# it and checked as redis-check-aof checks it.


# --- Integers ------------------------------------------------------------------

LLONG_MAX = 2**63 - 1  # the range of Redis's 64-bit integers (long long)
LLONG_MIN = -(2**63)

# Redis's string2ll() accepts only canonical decimal integers: no "+", no
# spaces, no leading zeros, no "-0", and at most 20 characters.
STRICT_INTEGER = re.compile(rb"0|-?[1-9][0-9]{0,19}")


def parse_integer(text: bytes) -> int | None:
    """Parse a 64-bit signed integer exactly as Redis's string2ll() does, or return None."""
    if text.isdigit() and len(text) < 19 and (text[0] != 48 or len(text) == 1):
        return int(text)  # the common case, a small non-negative number, without the regex
    if STRICT_INTEGER.fullmatch(text) is None:
        return None
    value = int(text)
    return value if LLONG_MIN <= value <= LLONG_MAX else None


# --- Inline commands ---------------------------------------------------------


def read_inline_command(data: bytes, pos: int) -> tuple[list[bytes], int] | None:
    """The words of the inline command at data[pos:], and where the next request starts; None until its line ends.

    As Redis's processInlineBuffer(): the line ends at "\n", with or without a "\r" before it.
    """
    newline = data.find(b"\n", pos)
    if newline < 0:
        if len(data) - pos > PROTO_INLINE_MAX_SIZE:
            raise ProtocolError("Protocol error: too big inline request")
        return None
    line = data[pos : newline - 1 if newline > pos and data[newline - 1] == 13 else newline]
    return split_inline_args(line), newline + 1


def split_inline_args(line: bytes) -> list[bytes]:
    """Split an inline request into words the way Redis's sdssplitargs() does.

    Words are separated by whitespace. "double quotes" understand the escapes
    \\n \\r \\t \\b \\a and \\xHH; 'single quotes' only understand \\'. A closing
    quote must be followed by whitespace or the end of the line.
    """
    if INLINE_NEEDS_CAREFUL_SPLIT.search(line) is None:
        return line.split()  # no quotes, no odd characters: plain whitespace splitting is the same
    line = line.split(b"\0", 1)[0]  # Redis reads the line as a C string
    words = []
    pos, end = 0, len(line)
    while True:
        while pos < end and line[pos] in b" \t\n\r\v\f":
            pos += 1
        if pos == end:
            return words
        word = bytearray()
        quote = None  # b'"' or b"'" while inside quotes
        while True:
            char = line[pos : pos + 1]
            if quote is not None:
                # In double quotes a backslash escapes any byte (\n, \xHH... mean what they mean
                # in C); in single quotes it only escapes a single quote.
                escapes = pos + 1 < end if quote == b'"' else line[pos + 1 : pos + 2] == b"'"
                hex_digits = line[pos + 2 : pos + 4]
                if quote == b'"' and char == b"\\" and line[pos + 1 : pos + 2] == b"x" and _is_hex(hex_digits):
                    word.append(int(hex_digits, 16))
                    pos += 3
                elif char == b"\\" and escapes:
                    pos += 1
                    escaped = line[pos : pos + 1]
                    word += INLINE_ESCAPES.get(escaped, escaped) if quote == b'"' else escaped
                elif char == quote:  # the closing quote
                    if pos + 1 < end and line[pos + 1] not in b" \t\n\r\v\f":
                        raise ProtocolError("Protocol error: unbalanced quotes in request")
                    pos += 1
                    break
                elif not char:
                    raise ProtocolError("Protocol error: unbalanced quotes in request")
                else:
                    word += char
            elif not char or char in b" \n\r\t":
                break
            elif char in b"\"'":
                quote = char
            else:
                word += char
            pos += 1
        words.append(bytes(word))


INLINE_NEEDS_CAREFUL_SPLIT = re.compile(rb"[\"'\v\f\0]")  # what bytes.split() would treat differently
INLINE_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"a": b"\a"}


def _is_hex(text: bytes) -> bool:
    return len(text) == 2 and all(c in b"0123456789abcdefABCDEF" for c in text)


# --- Options: SET's, EXPIRE's and SHUTDOWN's, and their combinations ----------------


def parse_set_options(
    args: list[bytes], start: int, allowed: set[bytes]
) -> tuple[set[bytes], bytes | None, bytes | None]:
    """Parse the options shared by SET and GETEX, exactly as Redis's parseExtendedStringArgumentsOrReply().

    Returns (flags, expire option, expire argument). Options that exclude each
    other (NX and XX, two different expire units, KEEPTTL with an expire...)
    are a syntax error; repeating the same option is allowed.
    """
    flags: set[bytes] = set()
    expire_option = expire_arg = None
    excludes = {
        b"NX": {b"XX"}, b"XX": {b"NX"}, b"GET": set(),
        b"KEEPTTL": {b"PERSIST", b"EX", b"PX", b"EXAT", b"PXAT"},
        b"PERSIST": {b"KEEPTTL", b"EX", b"PX", b"EXAT", b"PXAT"},
    }
    i = start
    while i < len(args):
        option = args[i].upper()
        if option in (b"EX", b"PX", b"EXAT", b"PXAT") and option in allowed:
            others = {b"EX", b"PX", b"EXAT", b"PXAT", b"KEEPTTL", b"PERSIST"} - {option}
            if flags & others or i + 1 == len(args):
                raise CommandError(SYNTAX_ERROR)
            expire_option, expire_arg = option, args[i + 1]
            i += 1
        elif option in excludes and option in allowed and not flags & excludes[option]:
            pass
        else:
            raise CommandError(SYNTAX_ERROR)
        flags.add(option)
        i += 1
    return flags, expire_option, expire_arg


def expire_at_ms(option: bytes, argument: bytes, command_name: str) -> int:
    """Turn EX/PX/EXAT/PXAT and its argument into an absolute time in ms (Redis's getExpireMillisecondsOrReply)."""
    amount = parse_int_arg(argument)
    invalid = CommandError(f"ERR invalid expire time in '{command_name}' command")
    if amount <= 0 or (option in (b"EX", b"EXAT") and amount > LLONG_MAX // 1000):
        raise invalid
    if option in (b"EX", b"EXAT"):
        amount *= 1000
    if option in (b"EX", b"PX"):
        amount += now_ms()
    if amount > LLONG_MAX:
        raise invalid
    return amount


def parse_expire_options(arguments: list[bytes]) -> set[bytes]:
    """EXPIRE's NX, XX, GT and LT, refusing the combinations Redis refuses."""
    options = set()
    for arg in arguments:
        option = arg.upper()
        if option not in (b"NX", b"XX", b"GT", b"LT"):
            raise CommandError(f"ERR Unsupported option {c_string(arg)}")
        options.add(option)
    if b"NX" in options and len(options) > 1:
        raise CommandError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if {b"GT", b"LT"} <= options:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    return options


def expire_time_ms(command_name: bytes, amount: bytes, base_ms: int, unit: int) -> int:
    """EXPIRE's amount as an absolute time in ms, which must fit Redis's 64 bits (expireGenericCommand)."""
    when = parse_int_arg(amount)
    if unit == UNIT_SECONDS and abs(when) > LLONG_MAX // 1000:  # C's LLONG_MIN / 1000 truncates toward 0
        raise CommandError(f"ERR invalid expire time in '{text(command_name).lower()}' command")
    when = when * unit + base_ms
    if when > LLONG_MAX:
        raise CommandError(f"ERR invalid expire time in '{text(command_name).lower()}' command")
    return when


def parse_shutdown_options(args: list[bytes]) -> tuple[bool | None, bool]:
    """SHUTDOWN's options as (save, force): save is True for SAVE, False for NOSAVE, None for neither.

    Without save rules, only SAVE saves. FORCE exits even if the save fails. NOW skips the wait for replicas
    to catch up, and ABORT cancels that wait: with no replicas here there is never a wait, so NOW changes
    nothing and ABORT finds no shutdown to cancel.
    """
    options = {arg.upper() for arg in args[1:]}
    if (not options <= {b"NOSAVE", b"SAVE", b"NOW", b"FORCE", b"ABORT"} or {b"NOSAVE", b"SAVE"} <= options
            or (b"ABORT" in options and len(options) > 1)):
        raise CommandError(SYNTAX_ERROR)
    if b"ABORT" in options:
        raise CommandError("ERR No shutdown in progress.")
    save = True if b"SAVE" in options else False if b"NOSAVE" in options else None
    return save, b"FORCE" in options


# --- Error messages -------------------------------------------------------------

# What protected mode (chapter 11) tells a client from another machine, word for word, typos included.
PROTECTED_MODE_DENIED = (
    b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the "
    b"default user. In this mode connections are only accepted from the loopback interface. If you want to connect "
    b"from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode "
    b"sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the "
    b"same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. "
    b"Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by "
    b"editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the "
    b"server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' "
    b"option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above "
    b"things in order for the server to start accepting connections from the outside.\r\n"
)


def unknown_command_error(args: list[bytes]) -> str:
    # Redis quotes the arguments as C strings (up to a NUL byte), ~128 chars in all.
    quoted = ""
    for arg in args[1:]:
        if len(quoted) >= 128:
            break
        quoted += "'" + c_string(arg)[: 128 - len(quoted)] + "' "
    name = c_string(args[0])[:128]
    return f"ERR unknown command '{name}', with args beginning with: {quoted}"


def text(value: bytes) -> str:
    """Bytes as str for messages and logs; bytes that are not UTF-8 survive the round trip."""
    return value.decode("utf-8", "surrogateescape")


def c_string(value: bytes) -> str:
    """An argument as Redis's C code prints it in an error message: it ends at the first NUL byte."""
    return text(value.split(b"\0", 1)[0])


# --- Quoting, as Redis's sdscatrepr() -------------------------------------------

def repr_bytes(value: bytes) -> bytes:
    """Bytes in double quotes, escaped as C would write them: how MONITOR (and redis-cli) show an argument.

    A backslash or a quote is escaped, the five control bytes C has names for
    are \\n, \\r, \\t, \\a and \\b, printable ASCII stays itself, and any other byte
    becomes \\xHH, as Redis's sdscatrepr() writes them.

    >>> print(repr_bytes(b'say "hi"\\n\\x07\\x00\\xff').decode())
    "say \\"hi\\"\\n\\a\\x00\\xff"
    """
    # Python's unicode_escape codec writes all of that but \a, \b and \", in C: each byte read as
    # the character of the same number (latin-1) comes out as Redis writes it. A MB at a time, so a
    # large value costs its escaped copy, and not several more on the way.
    pieces = [b'"']
    for start in range(0, len(value), REPR_CHUNK):
        escaped = value[start : start + REPR_CHUNK].decode("latin-1").encode("unicode_escape")
        pieces.append(C_ESCAPES.sub(lambda match: C_NAMED_ESCAPES.get(match[0], match[0]), escaped))
    pieces.append(b'"')
    return b"".join(pieces)


REPR_CHUNK = 1024 * 1024
# In unicode_escape's output: an escaped backslash (skipped over whole, so that \\x07 is a backslash
# and "x07"), the two control bytes C names but Python does not, and the quote Python leaves bare.
C_ESCAPES = re.compile(rb'\\\\|\\x0[78]|"')
C_NAMED_ESCAPES = {b"\\x07": b"\\a", b"\\x08": b"\\b", b'"': b'\\"'}


# --- Settings in Redis's notation ---------------------------------------------

def parse_memory(value: bytes) -> int | None:
    """A size as Redis's memtoull() reads it: digits, then b, k, kb, m, mb, g or gb (any case); None if not one.

    >>> parse_memory(b"32mb"), parse_memory(b"1k"), parse_memory(b"7"), parse_memory(b"-1")
    (33554432, 1000, 7, None)
    """
    match = MEMORY_SIZE.fullmatch(value)
    if match is None:
        return None
    return int(match[1] or b"0") * MEMORY_UNITS[match[2].lower()]


MEMORY_SIZE = re.compile(rb"([0-9]*)(|[bB]|[kKmMgG][bB]?)")
MEMORY_UNITS = {b"": 1, b"b": 1, b"k": 1000, b"kb": 1024, b"m": 1000**2, b"mb": 1024**2, b"g": 1000**3,
                b"gb": 1024**3}

# notify-keyspace-events: one letter per class of events (keyspaceEventsStringToFlags() in notify.c).
KEYSPACE_EVENT_LETTERS = {"A": NOTIFY_ALL, "g": NOTIFY_GENERIC, "$": NOTIFY_STRING, "l": NOTIFY_LIST,
                          "s": NOTIFY_SET, "h": NOTIFY_HASH, "z": NOTIFY_ZSET, "x": NOTIFY_EXPIRED,
                          "e": NOTIFY_EVICTED, "K": NOTIFY_KEYSPACE, "E": NOTIFY_KEYEVENT, "t": NOTIFY_STREAM,
                          "m": NOTIFY_KEY_MISS, "d": NOTIFY_MODULE, "n": NOTIFY_NEW}


def parse_keyspace_events(value: bytes) -> int | None:
    """notify-keyspace-events' letters as NOTIFY_* bits, or None if one is not a class letter.

    >>> parse_keyspace_events(b"KEA") == NOTIFY_KEYSPACE | NOTIFY_KEYEVENT | NOTIFY_ALL
    True
    """
    flags = 0
    for letter in value.decode("latin-1"):
        if letter not in KEYSPACE_EVENT_LETTERS:
            return None
        flags |= KEYSPACE_EVENT_LETTERS[letter]
    return flags


def keyspace_events_text(flags: int) -> str:
    """NOTIFY_* bits as CONFIG GET shows them (keyspaceEventsFlagsToString()): "A" for all, then K, E and m.

    Like Redis, "A" replaces the classes it covers, and hides "n" if that was set too.

    >>> keyspace_events_text(parse_keyspace_events(b"EKA")), keyspace_events_text(parse_keyspace_events(b"nx$E"))
    ('AKE', '$xnE')
    """
    if flags & NOTIFY_ALL == NOTIFY_ALL:
        letters = "A"
    else:
        letters = "".join(letter for letter in "g$lshzxetdn" if flags & KEYSPACE_EVENT_LETTERS[letter])
    return letters + "".join(letter for letter in "KEm" if flags & KEYSPACE_EVENT_LETTERS[letter])


# --- Glob patterns: KEYS, SCAN MATCH, CONFIG GET -------------------------------
#
# Redis matches a key against a glob pattern with stringmatchlen() (util.c). It
# walks the pattern and the key together and, at a "*", tries the rest of the
# pattern at every later position of the key, recursively. That backtracking
# takes exponential time on patterns like "a*a*a*...b", so Redis 7.0.9 added a
# rule (CVE-2022-36021): once the rest of the pattern after a "*" has failed at
# every position, the earlier stars stop trying longer matches.
#
# We get the same answers in bounded time without backtracking. Every token but
# "*" matches exactly one byte ("x", "?", "[a-z]"), so the stars cut the pattern
# into fixed-length segments. The first segment must match at the start of the
# key, the last one at its end, and each one in between at its leftmost place
# after the one before it: matching earlier never hurts, because it leaves more
# of the key for the segments that follow. That is at most len(key) tries per
# segment, O(len(key) * len(pattern)) in all, as in Redis; a segment of plain
# bytes is found by bytes.find(), which runs in C.
#
# The pattern is read with precompiled regular expressions, never compiled into
# one of its own: Python's re module would keep it in its cache. And it is read
# only as far as the keys need: a segment needs as many bytes of a key as it
# has tokens, so a pattern that needs more bytes than a key has cannot match it.
# As in Redis, a 1 MB pattern costs next to nothing against short keys.

GLOB_TOKEN = re.compile(rb"\*+|\?+|\[\^?|[^*?[\\]+|\\.?", re.DOTALL)

# stars | question marks | the start of a set | plain bytes | "\x", the byte x (a lone "\" at the end is itself)
SET_ITEM = re.compile(rb"\\(.)|([^\]\\])-(.)|(\])|(.)", re.DOTALL)

# in a set: "\x" | a range "a-z" | the closing "]" | one byte (a lone "\" at the end is itself)
PLAIN_PREFIX_GLOB = re.compile(rb"([^*?[\\]+)\*+")  # "user:*": plain bytes, then stars
ALL_BYTES = bytes(range(256))

# Redis compares range ends as C chars, which are signed on x86-64: bytes 0x80-0xff
# come before 0x00, so "[a-\xff]" runs from \xff (-1) up to "a".
C_CHAR_ORDER = bytes(range(0x80, 0x100)) + bytes(range(0x80))

# Redis 7.2.6 made stringmatchlen() give up (no match) when it has to nest more than
# 1000 stars deep (CVE-2024-31228), and Debian's 7.0.15 carries that fix: a pattern
# with more than 1000 stars that have more pattern after them matches nothing.
GLOB_MAX_STARS = 1000


def glob_matcher(pattern: bytes) -> Callable[[bytes], bool]:
    """A predicate for keys matching a Redis glob pattern ("*" and "prefix*" are matched cheaply)."""
    if pattern == b"*":
        return lambda key: True  # Redis skips matching here too, and so lists even the empty key
    if plain_prefix := PLAIN_PREFIX_GLOB.fullmatch(pattern):  # the most common pattern after "*"
        prefix = plain_prefix[1]
        return lambda key: key.startswith(prefix)
    return GlobPattern(pattern).matches


class GlobPattern:
    """A glob pattern cut at its stars into segments, read only as far as the keys need it."""

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self.read_to = 0  # the pattern up to here is in self.segments
        self.segments = [GlobSegment()]
        self.shortest_key = 0  # the bytes of a key that the segments read so far need
        self.read_whole = False
        # Once it is read whole: the longest key it can match, and how to find each segment in a key.
        self.longest_key = 0
        self.first = self.last = (bytes.find, b"", 0)
        self.middle: list[tuple[Callable[..., int], bytes | GlobSegment, int]] = []

    def matches(self, key: bytes) -> bool:
        """Whether the key matches: each segment in its place, as the comment above explains."""
        if not self.read_whole and not self.read_for(len(key)):
            return False
        if not self.shortest_key <= len(key) <= self.longest_key:
            return False
        (find_first, first, first_length), (find_last, last, last_length) = self.first, self.last
        end = len(key) - last_length
        if first_length and find_first(key, first, 0, first_length) != 0:
            return False
        if last_length and find_last(key, last, end, len(key)) != end:
            return False
        position = first_length
        for find, segment, length in self.middle:
            position = find(key, segment, position, end)
            if position < 0:
                return False
            position += length
        return True

    def read_for(self, key_length: int) -> bool:
        """Read on to the end of the pattern (True), unless it needs more than key_length bytes first."""
        pattern = self.pattern
        while self.read_to < len(pattern):
            if self.shortest_key > key_length:
                return False
            token = GLOB_TOKEN.match(pattern, self.read_to)  # one of its choices takes any byte
            text, self.read_to = token[0], token.end()
            kind, segment = text[:1], self.segments[-1]
            if kind == b"*":
                self.segments.append(GlobSegment())
                continue
            if len(self.segments) > GLOB_MAX_STARS + 1:
                self.read_whole, self.longest_key = True, -1  # so that it matches no key at all
                return True
            offset = segment.length
            if kind == b"?":
                segment.length += len(text)
            elif kind == b"[":
                members, self.read_to = read_set(pattern, self.read_to)
                segment.sets.append((offset, set_bytes(members, negate=text == b"[^")))
                segment.length += 1
            else:
                literal = text[-1:] if kind == b"\\" else text
                segment.literals.append((offset, literal))
                segment.length += len(literal)
            self.shortest_key += segment.length - offset
        finders = [segment.finder() for segment in self.segments]
        if len(finders) == 1:  # no star: the segment is the whole key
            self.first, self.longest_key = finders[0], self.shortest_key
        else:
            self.first, *self.middle, self.last = finders
            # stringmatchlen() matches the empty key to the empty pattern only.
            self.shortest_key, self.longest_key = max(self.shortest_key, 1), sys.maxsize
        self.read_whole = True
        return True


class GlobSegment:
    """A stretch of a glob pattern between two stars: tokens that each match exactly one byte."""

    __slots__ = ("length", "literals", "sets")

    def __init__(self) -> None:
        self.length = 0  # how many bytes of a key it covers
        self.literals: list[tuple[int, bytes]] = []  # (offset, bytes that must be there); "?" adds none
        self.sets: list[tuple[int, bytes]] = []  # (offset, the bytes allowed there)

    def finder(self) -> tuple[Callable[..., int], bytes | GlobSegment, int]:
        """How to find the segment in a key: (function, what it looks for, how many bytes that covers)."""
        if not self.sets and sum(len(text) for _, text in self.literals) == self.length:
            return bytes.find, b"".join(text for _, text in self.literals), self.length  # plain bytes
        return find_segment, self, self.length

    def matches_at(self, key: bytes, position: int) -> bool:
        """Whether key[position : position + self.length] matches; the caller makes sure that it fits."""
        for offset, text in self.literals:
            if not key.startswith(text, position + offset):
                return False
        for offset, allowed in self.sets:
            if key[position + offset] not in allowed:
                return False
        return True


def find_segment(key: bytes, segment: GlobSegment, start: int, end: int) -> int:
    """Like bytes.find(): the leftmost place in key[start:end] where the segment matches, or -1."""
    last_start = end - segment.length
    position = start
    while position <= last_start:
        if segment.literals:  # jump, at C speed, to the next place where its first literal bytes are
            offset, text = segment.literals[0]
            found = key.find(text, position + offset, last_start + offset + len(text))
            if found < 0:
                return -1
            position = found - offset
        if segment.matches_at(key, position):
            return position
        position += 1
    return -1


def read_set(pattern: bytes, start: int) -> tuple[bytes, int]:
    """The members of the set whose body starts at start, and the offset after the set.

    Its body holds bytes, "\\x" escapes and "a-z" ranges up to a "]"; an unclosed set takes the rest
    of the pattern. A body with no escape and no range is its own list of members.
    """
    close = pattern.find(b"]", start)
    if close < 0:
        close = len(pattern)
    body = pattern[start:close]
    if b"\\" not in body and b"-" not in body:
        return body, min(close + 1, len(pattern))
    members: set[int] = set()
    items_seen: set[bytes] = set()  # a long set repeats its items: expand each one once
    for item in SET_ITEM.finditer(pattern, start):
        if item[0] in items_seen:
            continue
        items_seen.add(item[0])
        escaped, first, last, closing, single = item.groups()
        if closing:
            return bytes(members), item.end()
        members.update(byte_range(first[0], last[0]) if first else escaped or single)
    return bytes(members), len(pattern)


def set_bytes(members: bytes, negate: bool) -> bytes:
    """The distinct bytes a set accepts: at most 256, so that `in` is quick."""
    outside = ALL_BYTES.translate(None, members)  # every byte that is not a member
    return outside if negate else ALL_BYTES.translate(None, outside)


def byte_range(first: int, last: int) -> bytes:
    """The bytes of the range "a-z" in a set; "z-a" is the same range."""
    low, high = sorted((C_CHAR_ORDER.index(first), C_CHAR_ORDER.index(last)))
    return C_CHAR_ORDER[low : high + 1]


# --- INCRBYFLOAT's long double --------------------------------------------------

# INCRBYFLOAT does its arithmetic in C's "long double", on x86 an 80-bit float
# with a 64-bit mantissa, and prints the result with "%.17Lf", trailing zeros
# removed. Python's float has only 53 bits, which would print 0.1 + 0.2 as
# 0.30000000000000004 where Redis prints 0.3. So we compute exactly with
# Fraction and round every result to the long double grid ourselves.
LDBL_MANT_DIG = 64  # bits of mantissa
LDBL_MIN_EXP = -16381  # 2**(LDBL_MIN_EXP - 1) is the smallest normal number
LDBL_MAX_EXP = 16384  # numbers must stay below 2**LDBL_MAX_EXP
MAX_LONG_DOUBLE_CHARS = 5 * 1024  # Redis refuses longer numeric strings
DECIMAL_FLOAT = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)(?:[eE]([+-]?\d+))?")
HEX_FLOAT = re.compile(rb"[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP]([+-]?\d+))?")

# A number whose exponent is beyond these is out of range whatever its mantissa,
# which has fewer than MAX_LONG_DOUBLE_CHARS digits: long doubles span about
# 10**±4951 (2**±16445), and a hex digit is 4 bits. Refusing it early spares
# computing a power such as 10**81920 exactly, which takes a fifth of a second.
EXPONENT_LIMITS = {10: MAX_LONG_DOUBLE_CHARS + 5000, 2: 4 * MAX_LONG_DOUBLE_CHARS + 16500}  # by base
INFINITY_TEXT = re.compile(rb"[+-]?(inf|infinity)", re.IGNORECASE)
INFINITY = "inf"  # stands for a long double infinity of either sign


def round_to_long_double(exact: Fraction) -> Fraction | str:
    """Round an exact number to the nearest long double (ties to even); INFINITY if it overflows."""
    if exact == 0:
        return exact
    magnitude = abs(exact)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1  # now 2**exponent <= magnitude < 2**(exponent + 1)
    step_exponent = max(exponent, LDBL_MIN_EXP - 1) - (LDBL_MANT_DIG - 1)  # the spacing of the grid here
    steps = round(magnitude / Fraction(2) ** step_exponent)
    rounded = steps * Fraction(2) ** step_exponent
    if rounded >= Fraction(2) ** LDBL_MAX_EXP:
        return INFINITY
    return rounded if exact > 0 else -rounded


def parse_long_double(value: bytes) -> Fraction | str | None:
    """Parse a number as Redis's string2ld() does (strtold, then checks); None if it is not a valid float."""
    if not value or len(value) >= MAX_LONG_DOUBLE_CHARS or value[:1].isspace():
        return None
    if INFINITY_TEXT.fullmatch(value):
        return INFINITY
    if match := HEX_FLOAT.fullmatch(value):
        whole, _, fraction = match[1].partition(b".")
        mantissa = Fraction(int(whole + fraction or b"0", 16), 16 ** len(fraction))
        base, exponent = 2, parse_exponent(match[2])
    elif match := DECIMAL_FLOAT.fullmatch(value):
        mantissa = Fraction(Decimal(match[1].decode()))
        base, exponent = 10, parse_exponent(match[2])
    else:
        return None  # including "nan", which Redis refuses
    if mantissa == 0:
        return Fraction(0)
    if abs(exponent) > EXPONENT_LIMITS[base]:
        return None  # beyond the range either way, and slow to compute exactly
    rounded = round_to_long_double(mantissa * Fraction(base) ** exponent)
    if rounded == INFINITY or rounded == 0:  # overflow or underflow: strtold reports ERANGE
        return None
    return -rounded if value[:1] == b"-" else rounded


def parse_exponent(text: bytes | None) -> int:
    """The exponent of a float literal: strtold reads as many digits as there are, leading zeros included.

    Python's int() refuses to read more than 4300 digits (a guard against slow
    conversions, sys.get_int_max_str_digits), so an exponent of more than nine
    significant digits is not converted but read as 10**9: like the exponent
    itself, far beyond EXPONENT_LIMITS.
    """
    if text is None:
        return 0
    sign = -1 if text.startswith(b"-") else 1
    digits = text.lstrip(b"+-").lstrip(b"0")
    if len(digits) > 9:
        return sign * 10**9
    return sign * int(digits or b"0")


def format_long_double(value: Fraction) -> bytes:
    """Print like C's printf("%.17Lf") with trailing zeros (and a trailing ".") removed."""
    scaled = round(value * 10**17)
    # Up to 4950 digits: str() of an int refuses more than 4300 (see parse_exponent); Decimal has no such limit.
    digits = str(Decimal(abs(scaled))).rjust(18, "0")
    number = f"{'-' if value < 0 else ''}{digits[:-17]}.{digits[-17:]}".rstrip("0").rstrip(".")
    return b"0" if number == "-0" else number.encode()


# --- SCAN cursors ---------------------------------------------------------------

def parse_scan_cursor(value: bytes) -> int:
    # Redis reads the cursor with C's strtoul(): a sign and leading zeros are allowed, "-1" wraps around.
    match = SCAN_CURSOR.fullmatch(value)
    if match is None or int(match[2] or b"0") >= 2**64:
        raise CommandError("ERR invalid cursor")
    return -int(match[2] or b"0") % 2**64 if match[1] == b"-" else int(match[2] or b"0")


SCAN_CURSOR = re.compile(rb"([+-]?)(?=[0-9])0*([0-9]{0,20})|")  # 2**64 has 20 digits; "" reads as 0, "+" not


# --- OBJECT ENCODING ------------------------------------------------------------

container("object")

# Redis stores a string in one of three encodings: a 64-bit integer in place of
# a pointer ("int"), a short string in the same allocation as its header
# ("embstr"), or a separate, growable buffer ("raw"). SET tries them in that
# order; APPEND and SETRANGE edit strings in place, so they leave them raw; and
# INCRBYFLOAT stores its result without trying "int". This server keeps a string
# as bytes until APPEND or SETRANGE edits it, and from then on as a bytearray,
# its growable buffer: so "raw" means a bytearray, or bytes too long for embstr.
OBJ_ENCODING_EMBSTR_SIZE_LIMIT = 44


class FloatString(bytes):
    """A string value INCRBYFLOAT wrote: Redis does not try the "int" encoding for it."""


@command("object|encoding", 3, "readonly")
def object_encoding_command(client: Client, args: list[bytes]) -> bytes:
    value = client.db.lookup(args[2])
    if value is None:
        return client.null
    if type(value) is bytearray or len(value) > OBJ_ENCODING_EMBSTR_SIZE_LIMIT:
        return bulk(b"raw")
    if type(value) is not FloatString and len(value) <= 20 and parse_integer(value) is not None:
        return bulk(b"int")
    return bulk(b"embstr")


# --- The append-only file to the letter --------------------------------------
#
# What Redis 7.0.15 logs, command by command, was read from the file it
# writes, and chapter 8's forms are its forms: the command name as the client
# spelled it ("set", "SET"), except where Redis writes its own (SET, DEL,
# PEXPIREAT, PERSIST); SET drops a GET option, and with any of EX, PX, EXAT
# or PXAT it becomes "SET key value PXAT ms", NX or XX dropped (they were
# decided already); EXPIRE and its family keep their NX, XX, GT or LT after the
# PEXPIREAT; an expired key is logged as DEL, not UNLINK
# (lazyfree-lazy-expire no). Redis also logs FLUSHDB of an empty database,
# which counts a change whatever happens; here it changes nothing, and is
# not logged: the data replays the same. And a plain "SET key value" over an expired key
# is logged by Redis as MULTI, DEL, SET, EXEC, since its lookup deletes the
# key first; this server's SET does not look the key up, and logs the SET.
#
# Redis 7 keeps the log as a folder (appendonlydir) of a base file, written by
# the last rewrite (an RDB snapshot by default: aof-use-rdb-preamble yes),
# incremental ".incr.aof" files of commands, and a manifest naming them. This
# server keeps Redis 6's single file, and Redis 6's way of rewriting it: the
# parent keeps the commands logged during the rewrite in memory and appends
# them to the new file (Redis 7 starts a new incremental file instead). Redis
# 7 converts a single file it finds into its layout when it starts ("Successfully
# migrated an old-style AOF file"), and its incremental files are plain
# commands, which this server replays; the RDB base it cannot read. Redis
# rewrites a key with a TTL as SET, then PEXPIREAT; here as one SET ... PXAT.
#
# Loading is stricter than Redis's in three ways. Redis does not check the
# "\r\n" after a bulk string's bytes; this server does. Redis ignores the
# replies of its fake client; here a command that fails (an error reply)
# stops the start: a log that does not replay is not the data. And only write
# commands, SELECT, MULTI and EXEC may be in the log, so that a stray SHUTDOWN
# or DEBUG cannot run at startup. With appendonly yes and no log, Redis 7.0
# starts empty even beside a dump.rdb; this server loads the snapshot and
# writes the log from it, rather than set a trap for whoever turns the log on.
#
# Like redis-check-aof, --check-aof checks the format only (unknown commands
# are the loader's business) and reports where reading stopped: ok_up_to, the
# offset of the first command that is not whole and right, and the line it
# stopped on; --fix cuts the file at ok_up_to once you answer "y".


def check_append_only_file(path: str, fix: bool) -> int:
    """python server.py --check-aof FILE [--fix]: report the first bad command; with --fix, cut the file there.

    Prints what redis-check-aof prints; returns its exit status.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            good_up_to, error = 0, None
            try:
                for _offset, _args in read_aof_commands(file):
                    good_up_to = file.tell()
            except AofError as failure:
                good_up_to, error = failure.offset, failure
            file.seek(0)
            # The line where reading stopped, counted from 1, as redis-check-aof does.
            lines = file.read(good_up_to if error is None else error.position).count(b"\n") + 1
    except OSError as error:
        print(f"Cannot check {path}: {error.strerror}")
        return 1
    if error is not None:
        print(f"0x{error.position:16x}: {error}")
    print(f"AOF analyzed: filename={path}, size={size}, ok_up_to={good_up_to}, ok_up_to_line={lines}, "
          f"diff={size - good_up_to}")
    if error is None:
        print(f"AOF {path} is valid")
        return 0
    if not fix:
        print(f"AOF {path} is not valid. Use the --fix option to try fixing it.")
        return 1
    print(f"This will shrink the AOF {path} from {size} bytes, with {size - good_up_to} bytes, to {good_up_to} bytes")
    if input("Continue? [y/N]: ").strip().lower() not in ("y", "yes"):
        print("Aborting...")
        return 1
    os.truncate(path, good_up_to)
    print(f"Successfully truncated AOF {path}")
    return 0


# --- FLUSHDB's and FLUSHALL's option --------------------------------------------

def parse_flush_mode(args: list[bytes]) -> None:
    """FLUSHDB's and FLUSHALL's one option, ASYNC or SYNC: Redis may free the memory later; here both flush now."""
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        raise CommandError(SYNTAX_ERROR)


# =============================================================================
# Appendix C. Introspection
# =============================================================================
#
# A first reading can skip this appendix: it adds what clients and tools ask
# the server about itself. HELLO switches a connection to RESP3 and names the
# server; CLIENT names, lists and kills connections, and turns replies off;
# MONITOR streams every command as it runs; PUBSUB says who listens to what;
# COMMAND and COMMAND DOCS describe every command (redis-cli's hints and help
# come from there); INFO reports statistics; CONFIG GET shows the settings
# under Redis's names, and CONFIG SET changes those that can change while the
# server runs.


# --- HELLO and CLIENT ----------------------------------------------------------


def map_reply(client: Client, pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A map of bulk-string keys to encoded values: "%" in RESP3, a flat array in RESP2."""
    body = b"".join(bulk(key) + value for key, value in pairs)
    return b"%s%d\r\n%s" % (b"%" if client.protocol == 3 else b"*", len(pairs) * (1 if client.protocol == 3 else 2),
                            body)


@command("reset", 1, "noscript loading stale fast no_auth allow_busy")
def reset_command(client: Client, args: list[bytes]) -> bytes:
    # Back to the state of a new connection, as Redis's clearClientConnectionState(): out of MULTI,
    # nothing WATCHed, database 0, RESP2, no name, no subscriptions, replies on.
    client.transaction = None
    unwatch_all(client)
    client.db = client.server.keyspace.databases[0]
    client.set_protocol(2)
    client.name = b""
    client.authenticated = client.server.password_digest is None
    stop_listening(client)  # no channel, no pattern, no MONITOR (chapter 10)
    if client.reply_mode != REPLY_SKIP:  # CLIENT REPLY OFF ends; a SKIP still skips this reply
        client.reply_mode = REPLY_ON
    return simple_string("RESET")


@command("hello", -1, "noscript loading stale fast no_auth allow_busy")
def hello_command(client: Client, args: list[bytes]) -> bytes:
    protocol = client.protocol
    if len(args) > 1:
        protocol = parse_integer(args[1])
        if protocol is None:
            raise CommandError("ERR Protocol version is not an integer or out of range")
        if protocol not in (2, 3):
            raise CommandError("NOPROTO unsupported protocol version")
    name = None
    i = 2
    while i < len(args):
        option = args[i].upper()
        if option == b"AUTH" and i + 2 < len(args):
            username, password = args[i + 1], args[i + 2]
            authenticate(client, username, password)
            i += 3
        elif option == b"SETNAME" and i + 1 < len(args):
            name = check_client_name(args[i + 1])
            i += 2
        else:
            raise CommandError(f"ERR Syntax error in HELLO option '{c_string(args[i])}'")
    if not client.authenticated and client.server.password_digest is not None:
        raise CommandError("NOAUTH HELLO must be called with the client already authenticated, otherwise the "
                           "HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
                           "the RESP protocol version at the same time")
    if name is not None:
        client.name = name
    client.set_protocol(protocol)
    return map_reply(client, [
        (b"server", bulk(b"redis")),
        (b"version", bulk(REDIS_VERSION.encode())),
        (b"proto", integer(protocol)),
        (b"id", integer(client.id)),
        (b"mode", bulk(b"standalone")),
        (b"role", bulk(b"master")),
        (b"modules", EMPTY_ARRAY),
    ])


container("client")


def check_client_name(name: bytes) -> bytes:
    if any(c < 0x21 or c > 0x7E for c in name):
        raise CommandError("ERR Client names cannot contain spaces, newlines or special characters.")
    return name


@command("client|setname", 3, "")
def client_setname_command(client: Client, args: list[bytes]) -> bytes:
    client.name = check_client_name(args[2])
    return OK


@command("client|getname", 2, "")
def client_getname_command(client: Client, args: list[bytes]) -> bytes:
    return bulk(client.name) if client.name else client.null


@command("client|id", 2, "")
def client_id_command(client: Client, args: list[bytes]) -> bytes:
    return integer(client.id)


@command("client|setinfo", 4, "")
def client_setinfo_command(client: Client, args: list[bytes]) -> bytes:
    # Added in Redis 7.2; redis-py sends it on every connection, so we accept it.
    attribute = args[2].lower()
    if attribute not in (b"lib-name", b"lib-ver"):
        raise CommandError(f"ERR Unrecognized option '{c_string(args[2])}'")
    client.library[attribute] = check_client_name(args[3])
    return OK


def text_reply(client: Client, text: bytes) -> bytes:
    """Text for a person to read (INFO, CLIENT LIST): in RESP3 a verbatim string, "=" and the format "txt:"."""
    if client.protocol == 3:
        return b"=%d\r\ntxt:%s\r\n" % (len(text) + 4, text)
    return bulk(text)


def client_list_line(client: Client) -> bytes:
    """One line of CLIENT LIST and CLIENT INFO, with Redis 7.0's fields (0 for those this server does not track)."""
    now = time.monotonic()
    connection = client.connection
    query_buffer = connection.parser.pending_size if connection else 0  # received, not parsed into a command yet
    output = connection.replies.size + client.transport.get_write_buffer_size() if connection else 0  # unsent
    transaction = client.transaction or client.running_transaction  # queued, or being run by EXEC
    queued, queued_size = (-1, 0) if transaction is None else (len(transaction.commands), transaction.size)
    command_name = "exec" if client.running_transaction else client.last_command  # as Redis shows it in EXEC
    return (f"id={client.id} addr={client.address} laddr={client.server.address} fd=0 name={text(client.name)} "
            f"age={int(now - client.created)} idle={int(now - client.last_interaction)} flags={client_flags(client)} "
            f"db={client.db.index} sub={len(client.channels)} psub={len(client.patterns)} ssub=0 multi={queued} "
            f"qbuf={query_buffer} qbuf-free=0 argv-mem=0 multi-mem={queued_size} "
            f"obl=0 oll=0 omem={output} tot-mem={query_buffer + output} events=r cmd={command_name} "
            f"user=default redir=-1 resp={client.protocol} lib-name={text(client.library.get(b'lib-name', b''))} "
            f"lib-ver={text(client.library.get(b'lib-ver', b''))}").encode()


def client_flags(client: Client) -> str:
    """CLIENT LIST's flags, in Redis's order: O a monitor, P a subscriber, x inside MULTI; N for none of them."""
    flags = ("O" if client.monitoring else "") + ("P" if client.channels or client.patterns else "")
    in_multi = client.transaction is not None or client.running_transaction is not None
    return flags + ("x" if in_multi else "") or "N"


@command("client|info", 2, "")
def client_info_command(client: Client, args: list[bytes]) -> bytes:
    return text_reply(client, client_list_line(client) + b"\n")


CLIENT_TYPES = (b"normal", b"slave", b"replica", b"master", b"pubsub")  # getClientTypeByName()'s names


@command("client|list", -2, "admin noscript loading stale")
def client_list_command(client: Client, args: list[bytes]) -> bytes:
    # CLIENT LIST [TYPE type] [ID id ...]: every client here is of type "normal".
    clients = client.server.clients
    if len(args) == 4 and args[2].lower() == b"type":
        if args[3].lower() not in CLIENT_TYPES:
            raise CommandError(f"ERR Unknown client type '{c_string(args[3])}'")
        clients = [other for other in clients if client_type_name(other) == args[3].lower()]
    elif len(args) > 3 and args[2].lower() == b"id":
        ids = {parse_int_arg(arg, "ERR Invalid client ID") for arg in args[3:]}
        clients = [other for other in clients if other.id in ids]
    elif len(args) != 2:
        raise CommandError(SYNTAX_ERROR)
    return text_reply(client, b"".join(client_list_line(other) + b"\n" for other in clients))


# --- CLIENT KILL and CLIENT REPLY --------------------------------------------------

@command("client|kill", -3, "admin noscript loading stale")
def client_kill_command(client: Client, args: list[bytes]) -> bytes:
    # CLIENT KILL ip:port (the old form, which may kill the caller itself), or
    # CLIENT KILL filter value [filter value ...]: ID, ADDR, LADDR, TYPE, USER, and SKIPME (yes: spare the caller).
    address = local_address = client_id = client_type = None  # None: any
    skip_me = len(args) > 3
    if len(args) == 3:
        address = text(args[2])
    for i in range(2, len(args) if len(args) > 3 else 2, 2):
        option = args[i].lower()
        if i + 1 == len(args):
            raise CommandError(SYNTAX_ERROR)
        value = args[i + 1]
        if option == b"id":
            client_id = parse_integer(value)
            if client_id is None or not 1 <= client_id <= LLONG_MAX:
                raise CommandError("ERR client-id should be greater than 0")
        elif option == b"type":
            client_type = value.lower()
            if client_type not in CLIENT_TYPES:
                raise CommandError(f"ERR Unknown client type '{c_string(value)}'")
        elif option == b"addr":
            address = text(value)
        elif option == b"laddr":
            local_address = text(value)
        elif option == b"user":
            if value != b"default":  # the only user there is
                raise CommandError(f"ERR No such user '{c_string(value)}'")
        elif option == b"skipme" and value.lower() in (b"yes", b"no"):
            skip_me = value.lower() == b"yes"
        else:
            raise CommandError(SYNTAX_ERROR)
    killed = 0
    for other in list(client.server.clients):
        if ((address is not None and other.address != address)
                or (local_address is not None and other.server.address != local_address)
                or (client_id is not None and other.id != client_id)
                or (client_type is not None and client_type_name(other) != client_type)
                or (skip_me and other is client)):
            continue
        killed += 1
        if other is client:
            client.close_after_reply = True  # after this reply
        else:
            other.connection.requests.clear()
            other.connection.replies.clear()
            other.transport.abort()
    if len(args) == 3:
        if not killed:
            raise CommandError("ERR No such client")
        return OK
    return integer(killed)


def client_type_name(client: Client) -> bytes:
    """The class of a client, as CLIENT LIST TYPE and CLIENT KILL TYPE name it: subscribed ones are "pubsub"."""
    return b"pubsub" if client.channels or client.patterns else b"normal"


REPLY_ON, REPLY_OFF, REPLY_SKIP_NEXT, REPLY_SKIP = 0, 1, 2, 3  # Client.reply_mode: CLIENT REPLY and its states


@command("client|reply", 3, "noscript loading stale")
def client_reply_command(client: Client, args: list[bytes]) -> bytes:
    mode = args[2].lower()
    if mode == b"on":
        client.reply_mode = REPLY_ON
        return OK
    if mode == b"off":
        client.reply_mode = REPLY_OFF
    elif mode == b"skip":
        if client.reply_mode != REPLY_OFF:
            client.reply_mode = REPLY_SKIP_NEXT  # the next command's reply is skipped, not this one's
    else:
        raise CommandError(SYNTAX_ERROR)
    return b""  # OFF and SKIP answer nothing


def outgoing_reply(client: Client, reply: bytes) -> bytes:
    """What the client is sent for a command: the messages pushed to it meanwhile, then the reply unless silenced.

    Pushed messages are sent even with replies off, as in Redis.
    """
    pushed = b"".join(client.pushed)
    client.pushed.clear()
    mode = client.reply_mode
    if mode == REPLY_SKIP_NEXT:  # CLIENT REPLY SKIP just ran: skip the next reply
        client.reply_mode = REPLY_SKIP
    elif mode == REPLY_SKIP:  # this reply is the one skipped
        client.reply_mode = REPLY_ON
        return pushed
    elif mode == REPLY_OFF:
        return pushed
    return pushed + reply


# --- MONITOR ----------------------------------------------------------------------
#
# MONITOR turns a connection into a live log of the server: every command any
# client runs, as it runs, one line each. It is the best way to watch the
# server work (and to see what a client library really sends). A line holds
# the time, the database and the client's address, and the arguments quoted:
#
#     +1700000000.123456 [0 127.0.0.1:50000] "SET" "k" "v"
#
# As in Redis, a command is shown after it has run (an error reply included),
# never one refused before it could run (unknown, wrong arity, not allowed in
# subscribed mode); administrative commands (CONFIG, DEBUG, SAVE, CLIENT KILL...)
# are not shown, and passwords are: AUTH's arguments and HELLO's AUTH pair read
# "(redacted)". A transaction's commands are shown when EXEC runs them, each as
# it runs, then EXEC: feed_monitors() is called from run_command(), which EXEC
# goes through for each of them.


@command("monitor", 1, "admin noscript loading stale")
def monitor_command(client: Client, args: list[bytes]) -> bytes:
    if client.running_transaction:  # inside EXEC a client expects one reply per command, not a stream
        raise CommandError("ERR MONITOR isn't allowed for DENY BLOCKING client")
    if not client.monitoring:  # a second MONITOR changes nothing
        client.monitoring = True
        client.server.monitors.append(client)
    return OK


def feed_monitors(client: Client, entry: Command, args: list[bytes]) -> bytes:
    """Push the command that ran to every monitor; return the line if the client is a monitor itself.

    Its own line follows its reply (execute() adds it there, and drops both
    under CLIENT REPLY OFF), where the others get theirs through push().
    """
    if "admin" in entry.flags:  # too dangerous to show, Redis says
        return b""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    shown = [repr_bytes(arg) for arg in redacted_arguments(entry, args)]
    line = b"+%d.%06d [%d %s] %s\r\n" % (seconds, micros, client.db.index, client.address.encode(), b" ".join(shown))
    own_line = b""
    for monitor in client.server.monitors:
        if monitor is client:
            own_line = line
        else:
            push(monitor, line)
    return own_line


def redacted_arguments(entry: Command, args: list[bytes]) -> list[bytes]:
    """The arguments MONITOR may show: the passwords AUTH and HELLO read become "(redacted)".

    As in Redis, only those the command got as far as reading: not the
    arguments of an AUTH with too many, nor any after HELLO's first mistake.
    """
    if entry.name == "auth" and len(args) <= 3:
        return args[:1] + [b"(redacted)"] * (len(args) - 1)
    if entry.name == "hello" and len(args) > 1 and args[1] in (b"2", b"3"):
        args = list(args)
        i = 2
        while i < len(args):
            option, more = args[i].lower(), len(args) - 1 - i
            if option == b"auth" and more >= 2:
                args[i + 1] = args[i + 2] = b"(redacted)"
                i += 3
            elif option == b"setname" and more >= 1:
                i += 2
            else:
                break
    return args


# --- PUBSUB: who listens to what ----------------------------------------------------

container("pubsub")


@command("pubsub|channels", -2, "pubsub loading stale")
def pubsub_channels_command(client: Client, args: list[bytes]) -> bytes:
    if len(args) > 3:
        raise CommandError(f"ERR unknown subcommand or wrong number of arguments for '{c_string(args[1])}'. "
                           "Try PUBSUB HELP.")
    matches = glob_matcher(args[2]) if len(args) == 3 else None
    return bulk_array([channel for channel in client.server.pubsub.channels if matches is None or matches(channel)])


@command("pubsub|numsub", -2, "pubsub loading stale")
def pubsub_numsub_command(client: Client, args: list[bytes]) -> bytes:
    channels = client.server.pubsub.channels
    counts = [(channel, len(channels.get(channel, ()))) for channel in args[2:]]
    return array([reply for channel, count in counts for reply in (bulk(channel), integer(count))])


@command("pubsub|numpat", 2, "pubsub loading stale")
def pubsub_numpat_command(client: Client, args: list[bytes]) -> bytes:
    return integer(len(client.server.pubsub.patterns))  # patterns with a subscriber, not subscriptions


@command("pubsub|shardchannels", -2, "pubsub loading stale")
def pubsub_shardchannels_command(client: Client, args: list[bytes]) -> bytes:
    if len(args) > 3:
        raise CommandError(f"ERR unknown subcommand or wrong number of arguments for '{c_string(args[1])}'. "
                           "Try PUBSUB HELP.")
    return EMPTY_ARRAY  # no shard channels: SSUBSCRIBE is not implemented


@command("pubsub|shardnumsub", -2, "pubsub loading stale")
def pubsub_shardnumsub_command(client: Client, args: list[bytes]) -> bytes:
    return array([reply for channel in args[2:] for reply in (bulk(channel), ZERO)])


@command("pubsub|help", 2, "loading stale")
def pubsub_help_command(client: Client, args: list[bytes]) -> bytes:
    return array([simple_string(line) for line in PUBSUB_HELP])


PUBSUB_HELP = [
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
]


container("acl")


@command("acl|whoami", 2, "noscript loading stale")
def acl_whoami_command(client: Client, args: list[bytes]) -> bytes:
    return bulk(b"default")  # the one user this server has (chapter 11)


# --- INFO and CONFIG ------------------------------------------------------------

@dataclass(slots=True)
class Statistics:
    """What the server counts only to report it in INFO: Server.stats."""

    commands_processed: int = 0
    connections_received: int = 0
    rejected_connections: int = 0  # turned away: over maxclients, or by protected mode
    keys_loaded: int = 0  # from the snapshot, at startup
    rdb_saves: int = 0  # SAVE and BGSAVE runs since startup
    last_bgsave_seconds: int = -1  # how long the last background save took
    aof_rewrites: int = 0
    aof_last_rewrite_ok: bool = True
    aof_last_rewrite_seconds: int = -1


def info_text(server: Server, sections: set[str]) -> str:
    """The text of INFO: "# Section" headers followed by field:value lines."""
    uptime = int(time.time() - server.start_time)
    memory = resident_memory_bytes()
    fields = {
        "server": {
            "redis_version": REDIS_VERSION,
            "redis_mode": "standalone",
            "server_name": "educational-redis-clone",
            "server_version": SERVER_VERSION,
            "os": f"{platform.system()} {platform.release()} {platform.machine()}",
            "arch_bits": "64" if sys.maxsize > 2**32 else "32",
            "multiplexing_api": "asyncio",
            "python_version": platform.python_version(),
            "process_id": str(os.getpid()),
            "tcp_port": str(server.port),
            "uptime_in_seconds": str(uptime),
            "uptime_in_days": str(uptime // 86400),
            "hz": str(server.options.hz),
            "executable": os.path.abspath(__file__),
        },
        "clients": {"connected_clients": str(len(server.clients)), "blocked_clients": "0"},
        "memory": {"used_memory": str(memory), "used_memory_rss": str(memory), "maxmemory": "0"},
        "persistence": persistence_info(server),
        "stats": {
            "total_connections_received": str(server.stats.connections_received),
            "total_commands_processed": str(server.stats.commands_processed),
            "rejected_connections": str(server.stats.rejected_connections),
            "expired_keys": str(server.keyspace.expired_count()),
            "latest_fork_usec": str(server.child.last_fork_usec),
            "total_forks": str(server.child.forks),
            "pubsub_channels": str(len(server.pubsub.channels)),  # channels with a subscriber
            "pubsub_patterns": str(len(server.pubsub.patterns)),
            "pubsubshard_channels": "0",
        },
        "replication": {"role": "master", "connected_slaves": "0"},
        "cluster": {"cluster_enabled": "0"},
        "keyspace": {
            f"db{db.index}": f"keys={db.key_count()},expires={db.key_count_with_ttl()},avg_ttl={db.avg_ttl}"
            for db in server.keyspace.databases if db.key_count()
        },
    }
    if not sections or sections & {"all", "everything", "default"}:
        sections = set(fields)
    return "\r\n".join(
        f"# {name.capitalize()}\r\n" + "".join(f"{key}:{value}\r\n" for key, value in values.items())
        for name, values in fields.items() if name in sections
    )


def persistence_info(server: Server) -> dict[str, str]:
    """INFO's persistence section, with Redis 7.0's fields in its order (0 or -1 for what is not tracked)."""
    saving = server.child.kind == "rdb"
    return {
        "loading": "0",  # the snapshot is loaded before the server listens: no client ever sees it loading
        "async_loading": "0",
        "current_cow_peak": "0",
        "current_cow_size": "0",
        "current_cow_size_age": "0",
        "current_fork_perc": "0.00",
        "current_save_keys_processed": "0",
        "current_save_keys_total": "0",
        "rdb_changes_since_last_save": str(server.keyspace.changes() - server.changes_at_last_save),
        "rdb_bgsave_in_progress": "1" if saving else "0",
        "rdb_last_save_time": str(server.last_save),
        "rdb_last_bgsave_status": "ok" if server.last_bgsave_ok else "err",
        "rdb_last_bgsave_time_sec": str(server.stats.last_bgsave_seconds),
        "rdb_current_bgsave_time_sec": str(int(time.time()) - int(server.child.started)) if saving else "-1",
        "rdb_saves": str(server.stats.rdb_saves),
        "rdb_last_cow_size": "0",
        "rdb_last_load_keys_expired": "0",
        "rdb_last_load_keys_loaded": str(server.stats.keys_loaded),
        **aof_info(server),
    }


def aof_buffer_length(aof: AppendOnlyFile) -> int:
    """Bytes logged but not yet written to the file; none while the first rewrite has yet to make the file."""
    return len(aof.buffer) + len(encode_commands(aof.commands)) if aof.fd is not None else 0


def aof_info(server: Server) -> dict[str, str]:
    """INFO persistence's aof_* fields, in Redis 7.0's order (0 for what is not tracked), module_fork_* among them."""
    aof, child = server.aof, server.child
    fields = {
        "aof_enabled": "1" if aof is not None else "0",
        "aof_rewrite_in_progress": "1" if child.kind == "aof" else "0",
        "aof_rewrite_scheduled": "1" if server.aof_rewrite_scheduled else "0",
        "aof_last_rewrite_time_sec": str(server.stats.aof_last_rewrite_seconds),
        "aof_current_rewrite_time_sec": str(int(time.time() - child.started)) if child.kind == "aof" else "-1",
        "aof_last_bgrewrite_status": "ok" if server.stats.aof_last_rewrite_ok else "err",
        "aof_rewrites": str(server.stats.aof_rewrites),
        "aof_rewrites_consecutive_failures": str(server.aof_rewrite_failures),
        "aof_last_write_status": "ok" if aof is None or aof.write_error is None else "err",
        "aof_last_cow_size": "0",
        "module_fork_in_progress": "0",
        "module_fork_last_cow_size": "0",
    }
    if aof is not None:
        fields.update({
            "aof_current_size": str(aof.size),
            "aof_base_size": str(aof.base_size),
            "aof_pending_rewrite": "1" if server.aof_rewrite_scheduled else "0",
            "aof_buffer_length": str(aof_buffer_length(aof)),
            "aof_pending_bio_fsync": "1" if aof.fsync_thread is not None and aof.fsync_thread.is_alive() else "0",
            "aof_delayed_fsync": "0",
        })
    return fields


def resident_memory_bytes() -> int:
    """This process's resident memory, from /proc where there is one (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@command("info", -1, "")
def info_command(client: Client, args: list[bytes]) -> bytes:
    sections = {arg.lower().decode("latin-1") for arg in args[1:]}
    return text_reply(client, info_text(client.server, sections).encode())


container("config")


def config_values(server: Server) -> dict[str, str]:
    """The settings CONFIG GET reports: the server's real values, under Redis's names."""
    return {
        "port": str(server.port),
        "bind": " ".join(server.options.bind),
        "dir": os.path.abspath(server.options.dir),
        "dbfilename": server.options.dbfilename,
        "loglevel": server.options.loglevel,
        "databases": str(DATABASES),
        "hz": str(server.options.hz),
        "save": str(server.options.save),
        "stop-writes-on-bgsave-error": server.options.stop_writes_on_bgsave_error,
        "appendonly": server.options.appendonly,
        "appendfilename": server.options.appendfilename,
        "appendfsync": server.options.appendfsync,
        "aof-load-truncated": "yes",
        "auto-aof-rewrite-percentage": str(server.options.auto_aof_rewrite_percentage),
        "auto-aof-rewrite-min-size": str(server.options.auto_aof_rewrite_min_size),
        "proto-max-bulk-len": str(PROTO_MAX_BULK_LEN),
        "maxmemory": "0",
        "maxclients": str(server.options.maxclients),
        "tcp-backlog": str(server.options.tcp_backlog),
        "timeout": str(server.options.timeout),
        "requirepass": server.options.requirepass,
        "protected-mode": server.options.protected_mode,
        "enable-debug-command": server.options.enable_debug_command,
        "client-query-buffer-limit": str(server.options.client_query_buffer_limit),
        "notify-keyspace-events": keyspace_events_text(server.pubsub.notify_flags),
        "client-output-buffer-limit": " ".join(f"{name} {hard} {soft} {seconds}"
                                               for name, (hard, soft, seconds) in server.output_limits.items()),
        "parser-shortcut": server.options.parser_shortcut,  # this server's own settings
        "batch-writes": server.options.batch_writes,
    }


def reset_stats(server: Server) -> None:
    server.stats.commands_processed = 0
    server.stats.connections_received = 0
    server.child.forks = server.child.last_fork_usec = 0
    for db in server.keyspace.databases:
        db.expired_count = 0


@command("config|get", -3, "admin noscript")
def config_get_command(client: Client, args: list[bytes]) -> bytes:
    settings = config_values(client.server)
    matchers = [glob_matcher(pattern.lower()) for pattern in args[2:]]
    pairs = [(name.encode(), bulk(value.encode())) for name, value in settings.items()
             if any(match(name.encode()) for match in matchers)]
    return map_reply(client, pairs)


@command("config|resetstat", 2, "admin noscript")
def config_resetstat_command(client: Client, args: list[bytes]) -> bytes:
    reset_stats(client.server)
    return OK

# CONFIG SET name value [name value ...] changes settings while the server
# runs, all of them or none, as Redis 7 does: every name is checked first (an
# unknown one, one CONFIG SET cannot change, or one given twice fails the
# whole call, the first such error reported), then every value is read, then
# they are all set, then each changed setting's apply function makes it take
# effect. A value that does not read, or an apply function that fails, leaves
# every setting as it was.


class ConfigError(Exception):
    """Why a setting refuses a value, in Redis's words ("argument must be 'yes' or 'no'")."""


@dataclass(frozen=True, slots=True)
class Parameter:
    """A setting CONFIG SET can change: where its value lives, how its text is read, and what applies it."""

    attribute: str  # the attribute of server.options that holds the value
    parse: Callable[[bytes], object]  # the value as server.options holds it; raises ConfigError
    apply: Callable[[Server], None] | None = None  # runs after a change; a ConfigError from it undoes the call


def parse_yes_no(value: bytes) -> str:
    """A yes/no setting, in any case (Redis's yesnotoi)."""
    if value.lower() not in (b"yes", b"no"):
        raise ConfigError("argument must be 'yes' or 'no'")
    return value.lower().decode()


def parse_save_rules(value: bytes) -> SaveRules:
    """ "3600 1 300 100" as the rules [(3600, 1), (300, 100)], read as Redis 7.0's setConfigSaveOption does.

    Redis splits the text at every single space and reads each piece with
    strtoll(): so "" is no rules, an empty piece reads as 0 (which a count of
    changes may be, a number of seconds may not), and a number too large
    stops at the largest a long long holds. The count of changes is then kept
    in a C int, which keeps its low 32 bits.
    """
    pieces = value.split(b" ") if value else []
    numbers = [int(piece) if piece.isdigit() and len(piece) < 19 else c_strtoll(piece) for piece in pieces]
    if len(pieces) % 2 or None in numbers:
        raise ConfigError("Invalid save parameters")
    seconds, changes = numbers[0::2], numbers[1::2]
    if min(seconds, default=1) < 1 or min(changes, default=0) < 0:
        raise ConfigError("Invalid save parameters")
    rules = [(second, (change + 2**31) % 2**32 - 2**31) for second, change in zip(seconds, changes, strict=True)]
    return SaveRules(rules)


C_STRTOLL = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)?")  # what strtoll() reads: spaces, a sign, digits


def c_strtoll(piece: bytes) -> int | None:
    """A number as C's strtoll() reads it, clamped to a long long; None if anything follows it."""
    match = C_STRTOLL.fullmatch(piece)
    return None if match is None else max(LLONG_MIN, min(LLONG_MAX, int(match[1] or b"0")))


def integer_between(low: int, high: int) -> Callable[[bytes], int]:
    """A reader of integer settings in [low, high], with Redis's errors."""

    def parse(value: bytes) -> int:
        number = parse_integer(value)
        if number is None:
            raise ConfigError("argument couldn't be parsed into an integer")
        if not low <= number <= high:
            raise ConfigError(f"argument must be between {low} and {high} inclusive")
        return number

    return parse


def one_of(*choices: str) -> Callable[[bytes], str]:
    """A reader of settings that take one of a few words (Redis's enum configs)."""

    def parse(value: bytes) -> str:
        if text(value).lower() not in choices:
            raise ConfigError(f"argument(s) must be one of the following: {', '.join(choices)}")
        return text(value).lower()

    return parse


def parse_hz(value: bytes) -> int:
    """hz takes any int, and works within 1 to 500 (Redis's CONFIG_MIN_HZ and CONFIG_MAX_HZ)."""
    return min(max(integer_between(0, INT_MAX)(value), CONFIG_MIN_HZ), CONFIG_MAX_HZ)


def update_password(server: Server) -> None:
    server.password_digest = password_digest(server.options.requirepass)  # clients logged in stay so, as in Redis


def update_maxclients(server: Server) -> None:
    possible = adjust_open_files_limit(server.options.maxclients)
    if possible < server.options.maxclients:
        raise ConfigError(f"The operating system is not able to handle the specified number of clients, "
                          f"try with {possible}")


def update_log_level(server: Server) -> None:
    logging.getLogger().setLevel(LOG_LEVELS[server.options.loglevel])


def read_notify_keyspace_events(value: bytes) -> int:
    """notify-keyspace-events' letters as NOTIFY_* bits (chapter 10)."""
    flags = parse_keyspace_events(value)
    if flags is None:
        raise ConfigError("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
    return flags


def update_keyspace_events(server: Server) -> None:
    server.pubsub.notify_flags = server.options.notify_keyspace_events


def read_client_output_buffer_limit(value: bytes) -> dict[str, tuple[int, int, int]]:
    """Groups of four, <class> <hard limit> <soft limit> <soft seconds>: the classes named, and their limits."""
    words = value.split()
    if len(words) % 4:
        raise ConfigError("Wrong number of arguments in buffer limit configuration.")
    limits = {}
    for i in range(0, len(words), 4):
        name = words[i].lower()
        if name not in CLIENT_TYPES or name == b"master":
            raise ConfigError("Invalid client class specified in buffer limit configuration.")
        hard, soft, seconds = parse_memory(words[i + 1]), parse_memory(words[i + 2]), parse_integer(words[i + 3])
        if hard is None or soft is None or seconds is None or seconds < 0:
            raise ConfigError("Error in hard, soft or soft_seconds setting in buffer limit configuration.")
        limits["slave" if name == b"replica" else name.decode()] = (hard, soft, seconds)
    return limits


def update_output_limits(server: Server) -> None:
    server.output_limits.update(server.options.client_output_buffer_limit)  # the classes not named stay (Appendix E)
    server.normal_output_limited = any(server.output_limits["normal"][:2])  # a normal client's replies are checked


INT_MAX = 2**31 - 1  # C's int and unsigned int: the ranges of Redis's integer settings
UINT_MAX = 2**32 - 1


def parse_memory_value(value: bytes) -> int:
    try:
        return memory_size(value.decode("latin-1"))
    except ValueError:
        raise ConfigError("argument must be a memory value") from None

SETTABLE_PARAMETERS: dict[str, Parameter] = {
    "save": Parameter("save", parse_save_rules, apply=check_disk),
    "stop-writes-on-bgsave-error": Parameter("stop_writes_on_bgsave_error", parse_yes_no, apply=check_disk),
    "requirepass": Parameter("requirepass", text, apply=update_password),
    "protected-mode": Parameter("protected_mode", parse_yes_no),
    "timeout": Parameter("timeout", integer_between(0, INT_MAX)),
    "maxclients": Parameter("maxclients", integer_between(1, UINT_MAX), apply=update_maxclients),
    "hz": Parameter("hz", parse_hz),
    "loglevel": Parameter("loglevel", one_of(*LOG_LEVELS), apply=update_log_level),
    "appendonly": Parameter("appendonly", parse_yes_no, apply=apply_appendonly),
    "appendfsync": Parameter("appendfsync", one_of("everysec", "always", "no"), apply=apply_appendfsync),
    "auto-aof-rewrite-percentage": Parameter("auto_aof_rewrite_percentage", integer_between(0, INT_MAX)),
    "auto-aof-rewrite-min-size": Parameter("auto_aof_rewrite_min_size", parse_memory_value),
    "notify-keyspace-events": Parameter("notify_keyspace_events", read_notify_keyspace_events,
                                        apply=update_keyspace_events),
    "client-output-buffer-limit": Parameter("client_output_buffer_limit", read_client_output_buffer_limit,
                                            apply=update_output_limits),
}

# Settings CONFIG SET refuses though Redis changes them: dir and dbfilename because Redis 7 protects them
# by default (a client must not point the snapshot at another file), port and bind because this server
# listens where it started.
REFUSED_PARAMETERS = {
    "dir": "can't set protected config",
    "dbfilename": "can't set protected config",
    "port": "this server cannot listen elsewhere while running: restart it with --port",
    "bind": "this server cannot listen elsewhere while running: restart it with --bind",
}


@command("config|set", -4, "admin noscript")
def config_set_command(client: Client, args: list[bytes]) -> bytes:
    if len(args) % 2:
        raise CommandError(SYNTAX_ERROR)
    server = client.server
    readable = config_values(server)
    chosen: dict[str, tuple[Parameter, bytes]] = {}
    for name_arg, value in zip(args[2::2], args[3::2], strict=True):
        name = text(name_arg).lower()
        if name not in SETTABLE_PARAMETERS and name not in readable:
            raise CommandError(f"ERR Unknown option or number of arguments for CONFIG SET - '{c_string(name_arg)}'")
        if name not in SETTABLE_PARAMETERS:  # CONFIG GET shows it, but this server cannot change it while running
            reason = REFUSED_PARAMETERS.get(name, "can't set immutable config")
            raise CommandError(f"ERR CONFIG SET failed (possibly related to argument '{c_string(name_arg)}') - "
                               f"{reason}")
        if name in chosen:
            raise CommandError(f"ERR CONFIG SET failed (possibly related to argument '{c_string(name_arg)}') - "
                               "duplicate parameter")
        chosen[name] = (SETTABLE_PARAMETERS[name], value)
    new_values = {}
    for name, (parameter, value) in chosen.items():
        try:
            new_values[name] = parameter.parse(value)
        except ConfigError as error:
            raise CommandError(f"ERR CONFIG SET failed (possibly related to argument '{name}') - {error}") from None
    old_values = {name: getattr(server.options, parameter.attribute) for name, (parameter, _) in chosen.items()}
    set_parameters(server, {name: parameter for name, (parameter, _) in chosen.items()}, new_values, old_values)
    return OK


def set_parameters(server: Server, parameters: dict[str, Parameter], new_values: dict[str, object],
                   old_values: dict[str, object]) -> None:
    """Set the new values and apply them; if an apply function fails, restore and re-apply the old values."""
    for name, parameter in parameters.items():
        setattr(server.options, parameter.attribute, new_values[name])
    applied = []
    for name, parameter in parameters.items():
        if parameter.apply is None or parameter.apply in applied:
            continue  # each apply function runs once, however many of its settings changed
        try:
            parameter.apply(server)
        except ConfigError as error:
            log.warning("Failed applying new configuration. Possibly related to new %s setting. "
                        "Restoring previous settings.", name)
            for other_name, other in parameters.items():
                setattr(server.options, other.attribute, old_values[other_name])
            for done in applied:
                done(server)
            raise CommandError(f"ERR CONFIG SET failed (possibly related to argument '{name}') - {error}") from None
        applied.append(parameter.apply)


# --- Command-line flags ---------------------------------------------------------


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Educational Redis Clone: a Redis-compatible server in one readable Python file.",
        epilog="Flags use redis-server's names where Redis has the setting. "
               "Example: python server.py --port 6380 --dir /tmp",
    )
    parser.add_argument("--port", type=int, default=6379,
                        help="TCP port to listen on; 0 picks a free one and logs it (default 6379)")
    parser.add_argument("--bind", nargs="+", default=["127.0.0.1"], metavar="ADDRESS",
                        help="addresses to listen on (default 127.0.0.1; use 0.0.0.0 to listen on every interface)")
    parser.add_argument("--dir", default=".",
                        help="directory of the snapshot and append-only files (default: current directory)")
    parser.add_argument("--dbfilename", default="dump.json", help="snapshot file name (default dump.json)")
    parser.add_argument("--save", nargs="+", default=["3600 1 300 100 60 10000"], metavar="SECONDS CHANGES",
                        help='save rules: a background save after CHANGES writes and SECONDS seconds, '
                             'pairs as in Redis (default "3600 1 300 100 60 10000"; "" for none)')
    parser.add_argument("--hz", type=int, default=CONFIG_DEFAULT_HZ, metavar="N",
                        help="how many times a second the cron runs: active expiry, idle clients, save rules "
                             "(default 10; 1 to 500)")
    parser.add_argument("--loglevel", choices=list(LOG_LEVELS), default="notice", help="log verbosity (default notice)")
    add_fine_print_options(parser)  # passwords, limits, speed-ups...: Appendix C
    parser.add_argument("--tcp-backlog", type=int, default=CONFIG_DEFAULT_TCP_BACKLOG, metavar="N",
                        help="connections the kernel queues until the server accepts them (default 511)")
    add_aof_options(parser)  # --appendonly, --appendfsync...: chapter 8
    parser.add_argument("--notify-keyspace-events", default="", metavar="CLASSES",
                        help="keyspace events to publish, in Redis's letters, such as KEA (default: none)")
    options = parser.parse_args(argv)  # then the checks argparse cannot make; parser.error() exits
    if os.path.basename(options.appendfilename) != options.appendfilename:
        parser.error("appendfilename can't be a path, just a filename")
    if options.maxclients < 1:
        parser.error("--maxclients must be at least 1")
    if options.timeout < 0:
        parser.error("--timeout must be at least 0")
    options.hz = min(max(options.hz, CONFIG_MIN_HZ), CONFIG_MAX_HZ)  # as Redis keeps it
    for name, read in (("save", parse_save_rules), ("notify-keyspace-events", read_notify_keyspace_events),
                       ("client-output-buffer-limit", read_client_output_buffer_limit)):  # Redis's notations
        attribute = name.replace("-", "_")
        value = getattr(options, attribute)
        try:
            setattr(options, attribute, read((" ".join(value) if name == "save" else value).encode()))
        except ConfigError as error:
            parser.error(f"--{name}: {error}")
    return options


def add_fine_print_options(parser: argparse.ArgumentParser) -> None:
    """The flags besides the core ones above: access, limits, speed-ups, events."""
    parser.add_argument("--requirepass", default="", metavar="PASSWORD",
                        help="the password every client must give (AUTH) before any other command (default: none)")
    parser.add_argument("--protected-mode", choices=["yes", "no"], default="yes",
                        help="while there is no password, serve only clients on this machine (default yes)")
    parser.add_argument("--timeout", type=int, default=0, metavar="SECONDS",
                        help="close a client idle for this long (default 0: never)")
    parser.add_argument("--stop-writes-on-bgsave-error", choices=["yes", "no"], default="yes",
                        help="refuse writes with -MISCONF while the last background save failed (default yes)")
    parser.add_argument("--enable-debug-command", choices=["no", "yes", "local"], default="local",
                        help="who may use DEBUG, which can block the server: local connections only by default")
    parser.add_argument("--parser-shortcut", choices=["yes", "no"], default="yes",
                        help="take well-formed pipelines the fast way (FastRequestParser); no, to measure the gain")
    parser.add_argument("--batch-writes", choices=["yes", "no"], default="yes",
                        help="write the replies of one event-loop pass together, as Redis does "
                             "(BeforeSleepSelector); no, to write each read's replies at once and measure the gain")
    parser.add_argument("--output-pause", choices=["yes", "no"], default="yes",
                        help="stop running a client's requests while it leaves 1 MB of replies unread "
                             "(PausingConnection); no, to buffer them without bound as Redis does by default")
    parser.add_argument("--client-query-buffer-limit", type=int, default=CLIENT_QUERY_BUFFER_LIMIT, metavar="BYTES",
                        help="close a client whose unparsed input grows past this (default 1 GiB)")
    parser.add_argument("--maxclients", type=int, default=CONFIG_DEFAULT_MAX_CLIENTS, metavar="N",
                        help="most clients connected at once, lowered at startup if 'ulimit -n' is too low for it "
                             "(default 10000)")
    parser.add_argument("--client-output-buffer-limit", default="", metavar="LIMITS",
                        help="disconnect a subscriber over these limits of unsent output (default: "
                             "'pubsub 32mb 8mb 60': 32 MB, or 8 MB for 60 seconds)")


def memory_size(value: str) -> int:
    """A size flag such as --auto-aof-rewrite-min-size 64mb, read as Redis's memtoull() reads it (parse_memory)."""
    size = parse_memory(value.encode("latin-1"))
    if size is None:
        raise ValueError(f"not a memory size: {value!r}")
    return size


# --- COMMAND, and every command's documentation ---------------------------------

@command("command", -1, "")
def command_command(client: Client, args: list[bytes]) -> bytes:
    return array([command_info(entry) for entry in COMMANDS.values()])


def command_info(entry: Command) -> bytes:
    docs = COMMAND_DOCS[entry.name]
    flags = array([simple_string(flag) for flag in entry.flags])
    categories = array([simple_string("@" + category) for category in entry.flags + (docs.group,)
                        if category in ("read", "write", "fast", "admin", "connection", "server", "string", "pubsub",
                                        "keyspace", "generic")])
    first_key, last_key, key_step = docs.keys
    return array([bulk(entry.name.encode()), integer(entry.arity), flags, integer(first_key), integer(last_key),
                  integer(key_step), categories, EMPTY_ARRAY, EMPTY_ARRAY,
                  array([command_info(sub) for sub in entry.subcommands.values()])])


def command_docs(client: Client, entry: Command) -> bytes:
    docs = COMMAND_DOCS[entry.name]
    reply = [(b"summary", bulk(docs.summary.encode())), (b"since", bulk(docs.since.encode())),
             (b"group", bulk(docs.group.encode()))]
    if docs.usage:
        # One argument holding the whole usage line: that is all redis-cli needs for its hints.
        reply.append((b"arguments", array([map_reply(client, [(b"name", bulk(docs.usage.encode())),
                                                             (b"type", bulk(b"string"))])])))
    if entry.subcommands:
        subcommands = [(sub.name.encode(), command_docs(client, sub)) for sub in entry.subcommands.values()]
        reply.append((b"subcommands", map_reply(client, subcommands)))
    return map_reply(client, reply)


@dataclass(frozen=True, slots=True)
class CommandDocs:
    """What COMMAND INFO and COMMAND DOCS say of a command, and what redis-cli's help shows."""

    group: str  # "string", "keyspace", "server"...
    since: str  # the Redis version that added it
    summary: str
    usage: str = ""  # its arguments, as redis-cli's help shows them
    keys: tuple[int, int, int] = (0, 0, 0)  # where its keys are: first argument, last (-1: the end), step


COMMAND_DOCS: dict[str, CommandDocs] = {
    "acl": CommandDocs("server", "6.0.0", "A container for Access List Control commands "),
    "acl|whoami": CommandDocs("server", "6.0.0", "Return the name of the user associated to the current connection"),
    "append": CommandDocs("string", "2.0.0", "Append a value to a key", "key value", keys=(1, 1, 1)),
    "auth": CommandDocs("connection", "1.0.0", "Authenticate to the server", "[username] password"),
    "bgrewriteaof": CommandDocs("server", "1.0.0", "Asynchronously rewrite the append-only file"),
    "bgsave": CommandDocs("server", "1.0.0", "Asynchronously save the dataset to disk", "[SCHEDULE]"),
    "client": CommandDocs("connection", "2.4.0", "A container for client connection commands"),
    "client|getname": CommandDocs("connection", "2.6.9", "Get the current connection name"),
    "client|id": CommandDocs("connection", "5.0.0", "Returns the client ID for the current connection"),
    "client|kill": CommandDocs("connection", "2.4.0", "Kill the connection of a client",
        "ip:port|[ID client-id] [TYPE NORMAL|MASTER|SLAVE|REPLICA|PUBSUB] [USER username] [ADDR ip:port] "
        "[LADDR ip:port] [SKIPME yes/no]"),
    "client|info": CommandDocs("connection", "6.2.0", "Returns information about the current client connection"),
    "client|list": CommandDocs("connection", "2.4.0", "Get the list of client connections",
        "[TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID client-id [client-id ...]]"),
    "client|reply": CommandDocs("connection", "3.2.0", "Instruct the server whether to reply to commands",
        "ON|OFF|SKIP"),
    "client|setinfo": CommandDocs("connection", "7.2.0", "Set client or connection specific info",
        "LIB-NAME libname|LIB-VER libver"),
    "client|setname": CommandDocs("connection", "2.6.9", "Set the current connection name", "connection-name"),
    "command": CommandDocs("server", "2.8.13", "Get array of Redis command details"),
    "command|count": CommandDocs("server", "2.8.13", "Get total number of Redis commands"),
    "command|docs": CommandDocs("server", "7.0.0", "Get array of specific Redis command documentation",
        "[command-name [command-name ...]]"),
    "command|info": CommandDocs("server", "2.8.13",
        "Get array of specific Redis command details, or all when no argument is given",
        "[command-name [command-name ...]]"),
    "command|list": CommandDocs("server", "7.0.0", "Get an array of Redis command names"),
    "config": CommandDocs("server", "2.0.0", "A container for server configuration commands"),
    "config|get": CommandDocs("server", "1.0.0", "Get the values of configuration parameters",
        "parameter [parameter ...]"),
    "config|set": CommandDocs("server", "2.0.0", "Set configuration parameters to the given values",
        "parameter value [parameter value ...]"),
    "config|resetstat": CommandDocs("server", "1.0.0", "Reset the stats returned by INFO"),
    "copy": CommandDocs("keyspace", "6.2.0", "Copy a key",
        "source destination [DB destination-db] [REPLACE]", keys=(1, 2, 1)),
    "dbsize": CommandDocs("server", "1.0.0", "Return the number of keys in the selected database"),
    "debug": CommandDocs("server", "1.0.0", "Debugging switches: turn active expiry off or on, block the server",
        "SET-ACTIVE-EXPIRE 0|1|SLEEP seconds"),
    "decr": CommandDocs("string", "1.0.0", "Decrement the integer value of a key by one", "key", keys=(1, 1, 1)),
    "decrby": CommandDocs("string", "1.0.0", "Decrement the integer value of a key by the given number",
        "key decrement", keys=(1, 1, 1)),
    "del": CommandDocs("keyspace", "1.0.0", "Delete a key", "key [key ...]", keys=(1, -1, 1)),
    "discard": CommandDocs("transactions", "2.0.0", "Discard all commands issued after MULTI"),
    "echo": CommandDocs("connection", "1.0.0", "Echo the given string", "message"),
    "exec": CommandDocs("transactions", "1.2.0", "Execute all commands issued after MULTI"),
    "exists": CommandDocs("keyspace", "1.0.0", "Determine if a key exists", "key [key ...]", keys=(1, -1, 1)),
    "expire": CommandDocs("keyspace", "1.0.0", "Set a key's time to live in seconds",
        "key seconds [NX|XX|GT|LT]", keys=(1, 1, 1)),
    "expireat": CommandDocs("keyspace", "1.2.0", "Set the expiration for a key as a UNIX timestamp",
        "key unix-time-seconds [NX|XX|GT|LT]", keys=(1, 1, 1)),
    "expiretime": CommandDocs("keyspace", "7.0.0", "Get the expiration Unix timestamp for a key",
        "key", keys=(1, 1, 1)),
    "flushall": CommandDocs("server", "1.0.0", "Remove all keys from all databases", "[ASYNC|SYNC]"),
    "flushdb": CommandDocs("server", "1.0.0", "Remove all keys from the current database", "[ASYNC|SYNC]"),
    "get": CommandDocs("string", "1.0.0", "Get the value of a key", "key", keys=(1, 1, 1)),
    "getdel": CommandDocs("string", "6.2.0", "Get the value of a key and delete the key", "key", keys=(1, 1, 1)),
    "getex": CommandDocs("string", "6.2.0", "Get the value of a key and optionally set its expiration",
        "key [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|PERSIST]", keys=(1, 1, 1)),
    "getrange": CommandDocs("string", "2.4.0", "Get a substring of the string stored at a key",
        "key start end", keys=(1, 1, 1)),
    "getset": CommandDocs("string", "1.0.0", "Set the string value of a key and return its old value",
        "key value", keys=(1, 1, 1)),
    "hello": CommandDocs("connection", "6.0.0", "Handshake with Redis",
        "[protover [AUTH username password] [SETNAME clientname]]"),
    "incr": CommandDocs("string", "1.0.0", "Increment the integer value of a key by one", "key", keys=(1, 1, 1)),
    "incrby": CommandDocs("string", "1.0.0", "Increment the integer value of a key by the given amount",
        "key increment", keys=(1, 1, 1)),
    "incrbyfloat": CommandDocs("string", "2.6.0", "Increment the float value of a key by the given amount",
        "key increment", keys=(1, 1, 1)),
    "info": CommandDocs("server", "1.0.0", "Get information and statistics about the server",
        "[section [section ...]]"),
    "keys": CommandDocs("keyspace", "1.0.0", "Find all keys matching the given pattern", "pattern"),
    "lastsave": CommandDocs("server", "1.0.0", "Get the UNIX time stamp of the last successful save to disk"),
    "mget": CommandDocs("string", "1.0.0", "Get the values of all the given keys", "key [key ...]", keys=(1, -1, 1)),
    "monitor": CommandDocs("server", "1.0.0", "Listen for all requests received by the server in real time"),
    "move": CommandDocs("keyspace", "1.0.0", "Move a key to another database", "key db", keys=(1, 1, 1)),
    "mset": CommandDocs("string", "1.0.1", "Set multiple keys to multiple values",
        "key value [key value ...]", keys=(1, -1, 2)),
    "msetnx": CommandDocs("string", "1.0.1", "Set multiple keys to multiple values, only if none of the keys exist",
        "key value [key value ...]", keys=(1, -1, 2)),
    "multi": CommandDocs("transactions", "1.2.0", "Mark the start of a transaction block"),
    "object": CommandDocs("keyspace", "2.2.3", "A container for object introspection commands"),
    "object|encoding": CommandDocs("keyspace", "1.0.0", "Inspect the internal encoding of a Redis object",
        "key", keys=(2, 2, 1)),
    "persist": CommandDocs("keyspace", "2.2.0", "Remove the expiration from a key", "key", keys=(1, 1, 1)),
    "pexpire": CommandDocs("keyspace", "2.6.0", "Set a key's time to live in milliseconds",
        "key milliseconds [NX|XX|GT|LT]", keys=(1, 1, 1)),
    "pexpireat": CommandDocs("keyspace", "2.6.0",
        "Set the expiration for a key as a UNIX timestamp specified in milliseconds",
        "key unix-time-milliseconds [NX|XX|GT|LT]", keys=(1, 1, 1)),
    "pexpiretime": CommandDocs("keyspace", "7.0.0", "Get the expiration Unix timestamp for a key in milliseconds",
        "key", keys=(1, 1, 1)),
    "ping": CommandDocs("connection", "1.0.0", "Ping the server", "[message]"),
    "psubscribe": CommandDocs("pubsub", "2.0.0",
        "Listen for messages published to channels matching the given patterns", "pattern [pattern ...]"),
    "psetex": CommandDocs("string", "2.6.0", "Set the value and expiration in milliseconds of a key",
        "key milliseconds value", keys=(1, 1, 1)),
    "pttl": CommandDocs("keyspace", "2.6.0", "Get the time to live for a key in milliseconds", "key", keys=(1, 1, 1)),
    "publish": CommandDocs("pubsub", "2.0.0", "Post a message to a channel", "channel message"),
    "pubsub": CommandDocs("pubsub", "2.8.0", "A container for Pub/Sub commands"),
    "pubsub|channels": CommandDocs("pubsub", "2.8.0", "List active channels", "[pattern]"),
    "pubsub|help": CommandDocs("pubsub", "6.2.0", "Show helpful text about the different subcommands"),
    "pubsub|numpat": CommandDocs("pubsub", "2.8.0", "Get the count of unique patterns pattern subscriptions"),
    "pubsub|numsub": CommandDocs("pubsub", "2.8.0", "Get the count of subscribers for channels",
        "[channel [channel ...]]"),
    "pubsub|shardchannels": CommandDocs("pubsub", "7.0.0", "List active shard channels", "[pattern]"),
    "pubsub|shardnumsub": CommandDocs("pubsub", "7.0.0", "Get the count of subscribers for shard channels",
        "[shardchannel [shardchannel ...]]"),
    "punsubscribe": CommandDocs("pubsub", "2.0.0",
        "Stop listening for messages posted to channels matching the given patterns", "[pattern [pattern ...]]"),
    "quit": CommandDocs("connection", "1.0.0", "Close the connection"),
    "randomkey": CommandDocs("keyspace", "1.0.0", "Return a random key from the keyspace"),
    "rename": CommandDocs("keyspace", "1.0.0", "Rename a key", "key newkey", keys=(1, 2, 1)),
    "renamenx": CommandDocs("keyspace", "1.0.0", "Rename a key, only if the new key does not exist",
        "key newkey", keys=(1, 2, 1)),
    "reset": CommandDocs("connection", "6.2.0", "Reset the connection"),
    "save": CommandDocs("server", "1.0.0", "Synchronously save the dataset to disk"),
    "scan": CommandDocs("keyspace", "2.8.0", "Incrementally iterate the keys space",
        "cursor [MATCH pattern] [COUNT count] [TYPE type]"),
    "select": CommandDocs("connection", "1.0.0", "Change the selected database for the current connection", "index"),
    "set": CommandDocs("string", "1.0.0", "Set the string value of a key",
        "key value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds"
        "|KEEPTTL]", keys=(1, 1, 1)),
    "setex": CommandDocs("string", "2.0.0", "Set the value and expiration of a key",
        "key seconds value", keys=(1, 1, 1)),
    "setnx": CommandDocs("string", "1.0.0", "Set the value of a key, only if the key does not exist",
        "key value", keys=(1, 1, 1)),
    "setrange": CommandDocs("string", "2.2.0", "Overwrite part of a string at key starting at the specified offset",
        "key offset value", keys=(1, 1, 1)),
    "shutdown": CommandDocs("server", "1.0.0", "Synchronously save the dataset to disk and then shut down the server",
        "[NOSAVE|SAVE] [NOW] [FORCE] [ABORT]"),
    "strlen": CommandDocs("string", "2.2.0", "Get the length of the value stored in a key", "key", keys=(1, 1, 1)),
    "substr": CommandDocs("string", "1.0.0", "Get a substring of the string stored at a key",
        "key start end", keys=(1, 1, 1)),
    "subscribe": CommandDocs("pubsub", "2.0.0", "Listen for messages published to the given channels",
        "channel [channel ...]"),
    "swapdb": CommandDocs("server", "4.0.0", "Swaps two Redis databases", "index1 index2"),
    "time": CommandDocs("server", "2.6.0", "Return the current server time"),
    "touch": CommandDocs("keyspace", "3.2.1",
        "Alters the last access time of a key(s). Returns the number of existing keys specified.",
        "key [key ...]", keys=(1, -1, 1)),
    "ttl": CommandDocs("keyspace", "1.0.0", "Get the time to live for a key in seconds", "key", keys=(1, 1, 1)),
    "type": CommandDocs("keyspace", "1.0.0", "Determine the type stored at key", "key", keys=(1, 1, 1)),
    "unsubscribe": CommandDocs("pubsub", "2.0.0", "Stop listening for messages posted to the given channels",
        "[channel [channel ...]]"),
    "unlink": CommandDocs("keyspace", "4.0.0", "Delete a key asynchronously in another thread",
        "key [key ...]", keys=(1, -1, 1)),
    "unwatch": CommandDocs("transactions", "2.2.0", "Forget about all watched keys"),
    "watch": CommandDocs("transactions", "2.2.0", "Watch the given keys to determine execution of the MULTI/EXEC block",
        "key [key ...]", keys=(1, -1, 1)),
}


@command("command|count", 2, "")
def command_count_command(client: Client, args: list[bytes]) -> bytes:
    return integer(len(COMMANDS))


@command("command|info", -2, "")
def command_info_command(client: Client, args: list[bytes]) -> bytes:
    names = args[2:] or list(COMMANDS)
    return array([command_info(COMMANDS[name.lower()]) if name.lower() in COMMANDS else client.null
                  for name in names])


@command("command|docs", -2, "")
def command_docs_command(client: Client, args: list[bytes]) -> bytes:
    names = [name.lower() for name in args[2:]] or list(COMMANDS)
    return map_reply(client, [(name, command_docs(client, COMMANDS[name])) for name in names if name in COMMANDS])


@command("command|list", -2, "")
def command_list_command(client: Client, args: list[bytes]) -> bytes:
    return bulk_array(COMMANDS)


# =============================================================================
# Appendix D. Performance
# =============================================================================
#
# A first reading can skip this appendix: it adds two speed-ups, each an
# alternative to a plain piece of Part I, chosen by a flag so that its gain
# can be measured (bench/README.md has the figures).
#
# FastRequestParser (--parser-shortcut yes, the default) replaces
# RequestParser for pipelines of well-formed requests, and its tables of the
# usual header lines replace parsing them. The same tables make the
# append-only file's encoder (encode_commands, chapter 8) twice as fast as
# formatting each header. And when the append-only file logs a whole pipeline
# of writes as they came, it takes the pipeline's own bytes rather than
# encode the commands again (execute_logging_as_received).
#
# BeforeSleepSelector (--batch-writes yes, the default) replaces WriteAtOnce.
# Replies are not sent the moment they are ready. Like Redis, which queues
# them and writes them all in beforeSleep() (handleClientsWithPendingWrites),
# just before its event loop waits for new events, the server collects the
# replies of every client served in one pass of the loop and then writes
# them back to back, one write per client. With pipelining, one read carries
# many commands, so that is one system call per read instead of per reply;
# and with many busy clients, writing them together is cheaper than
# interleaving each write with the next client's work: the receiving
# processes are woken once in a burst rather than one at a time. asyncio has
# no beforeSleep hook, so BeforeSleepSelector adds one where the loop is
# about to wait: in the selector's select(). When a pass of the loop serves a
# single client, there is nothing to batch with, and its replies go at once
# rather than wait behind the loop's own bookkeeping. --batch-writes no sends
# each read's replies at once, to measure the difference.


# The header lines that nearly every request uses, precomputed: a table lookup
# is several times cheaper than slicing out the number and parsing it.
MULTIBULK_COUNTS = {b"*%d" % n: n for n in range(1, 1024)}  # b"*3" -> 3
MULTIBULK_HEADERS = [b"*%d" % n for n in range(1024)]  # 3 -> b"*3"
BULK_HEADERS = [b"$%d" % n for n in range(4096)]  # 3 -> b"$3"
SHORTCUT_MAX_BUFFER = 1024 * 1024  # larger buffers (a big value arriving) are parsed without splitting them


class FastRequestParser(RequestParser):
    """RequestParser with a shortcut for the common case: pipelines of well-formed "*N" requests.

    The careful parser costs a handful of Python operations per argument. This
    one splits the bytes on "\\r\\n" in one call (the splitting happens in C)
    and takes each request's arguments as every second line, since a request
    is N "$len" header lines alternating with N payload lines. That is only
    right if no payload contains "\\r\\n" itself, so it checks every header
    against its payload in one go afterwards, and hands all the bytes to the
    careful parser if any pair disagrees. It starts only between requests,
    and skips reads over SHORTCUT_MAX_BUFFER (a big value arriving), so no one
    can make it split a huge payload into millions of lines.
    --parser-shortcut no chooses the plain RequestParser, to measure the gain.

    >>> FastRequestParser().feed(b"*3\\r\\n$3\\r\\nSET\\r\\n$1\\r\\nk\\r\\n$1\\r\\nv\\r\\n*1\\r\\n$4\\r\\nPING\\r\\n")
    ([[b'SET', b'k', b'v'], [b'PING']], None)
    """

    def feed(self, data: bytes) -> tuple[list[list[bytes]], ProtocolError | None]:
        self.pipeline_as_received = None  # set again if this read is a pipeline the shortcut takes whole
        return super().feed(data)

    def _parse_requests(self, data: bytes, commands: list[list[bytes]]) -> int:
        already = len(commands)  # one, if the read started by finishing a request
        pos = self._take_whole_requests(data, commands) if len(data) <= SHORTCUT_MAX_BUFFER else 0
        taken = len(commands)
        end = self._parse_carefully(data, pos, commands) if pos < len(data) else pos
        if already == 0 and len(commands) == taken > 1:  # a pipeline, all taken here: its bytes are its requests
            self.pipeline_as_received = (commands, data if pos == len(data) else data[:pos])  # as bulk_array() does
        return end

    @staticmethod
    def _take_whole_requests(data: bytes, commands: list[list[bytes]]) -> int:
        """Take complete "*N" requests from the start of data the fast way; return how many bytes they used."""
        lines = data.split(CRLF)
        last = len(lines) - 1  # lines[last] has no "\r\n" after it yet: it is incomplete
        already = len(commands)
        headers, payloads = [], []
        i = 0
        while i < last:
            count = MULTIBULK_COUNTS.get(lines[i])  # b"*3" -> 3, for the usual small counts
            end = i + 1 + 2 * count if count is not None else last + 1
            if end > last:
                break
            args = lines[i + 2 : end : 2]
            headers += lines[i + 1 : end : 2]
            payloads += args
            commands.append(args)
            i = end
        try:
            consistent = headers == [BULK_HEADERS[len(payload)] for payload in payloads]
        except IndexError:  # a payload too long for the table: rare, and slow to move anyway
            consistent = False
        if not consistent:  # a payload held "\r\n", or a header was odd: leave it all to the careful parser
            del commands[already:]
            return 0
        if i == last:  # the usual case: everything up to the unfinished last line was taken
            return len(data) - len(lines[last])
        return sum(map(len, lines[:i])) + 2 * i


# A write command that the log keeps as it came (most do: chapter 8) is, in
# RESP, the very bytes its client sent: a request has one way to be written,
# and the shortcut has checked every "$N" header it took against its payload.
# So when the requests of a pipeline, taken whole the fast way, are all logged
# unchanged, one after the other with nothing between them (no SELECT, no DEL
# of a key found expired, no read among them), the log takes the bytes the
# client sent instead of encoding the commands again, which was about a third
# of what logging a pipelined SET cost. Whether that holds is seen afterwards,
# by comparing what was logged with the requests: the same arguments give the
# same bytes (and no command changes its arguments in place, so the requests
# are still what arrived). Anything else is logged the usual way. A single
# request is not worth the comparison: encoded with the others of its pass,
# it costs less.


def execute_logging_as_received(connection: ClientConnection) -> None:
    """Run the connection's requests; if the log took a pipeline unchanged, give it the bytes the client sent."""
    (requests, as_received), connection.parser.pipeline_as_received = connection.parser.pipeline_as_received, None
    aof = connection.server.aof
    if aof is None:  # nothing to log: the pipeline's bytes are dropped all the same, not kept with the connection
        connection.execute_requests()
        return
    logged_before = len(aof.commands)
    connection.execute_requests()
    aof.log_as_received(logged_before, requests, as_received)


def encode_commands(commands: list[list[bytes]]) -> bytes:
    """Commands as requests in RESP, for the append-only file: b"".join(map(bulk_array, commands)), faster.

    The header lines come from the tables above, and one join puts them
    between all the arguments of all the commands; bulk_array() formats each
    bulk string on its own and joins once per command. Commands with a long
    argument (or very many) take bulk_array()'s way.

    >>> encode_commands([[b"SET", b"k", b"v"], [b"INCR", b"n"]])
    b'*3\\r\\n$3\\r\\nSET\\r\\n$1\\r\\nk\\r\\n$1\\r\\nv\\r\\n*2\\r\\n$4\\r\\nINCR\\r\\n$1\\r\\nn\\r\\n'
    """
    parts = []
    try:
        for args in commands:
            parts.append(MULTIBULK_HEADERS[len(args)])
            for arg in args:
                parts += (BULK_HEADERS[len(arg)], arg)
    except IndexError:  # past the tables: rare, and the time goes into moving the long argument anyway
        return b"".join(map(bulk_array, commands))
    parts.append(b"")
    return CRLF.join(parts)


class BeforeSleepSelector(selectors.DefaultSelector):
    """The event loop's selector (epoll on Linux), which writes queued replies just before the loop sleeps.

    A replacement for WriteAtOnce: main() builds the event loop on it. asyncio's
    loop calls select() once per pass, to wait for the next events, so the
    start of select() is the moment Redis runs beforeSleep(): every handler of
    this pass has run, and the loop is about to sleep. There it writes every
    queued reply, one write per connection (Redis's
    handleClientsWithPendingWrites()).
    """

    def __init__(self) -> None:
        super().__init__()
        self.ready_count = 0  # how many sockets the last wait reported ready
        # The connections with replies to write before the loop sleeps, each once: a dict as an ordered set.
        self._pending: dict[ClientConnection, None] = {}

    def queue(self, connection: ClientConnection) -> None:
        """Write a connection's replies before the loop sleeps, or at once when there is nothing to batch them with."""
        self._pending[connection] = None
        alone = self.ready_count == 1  # the only client in this pass: nothing to batch with
        # Nothing in select() may close a connection: closing schedules a callback
        # (connection_lost), and the loop chose its timeout before it existed.
        # So a client that is closing has its replies written at once instead.
        if alone or connection.client.close_after_reply:
            self.flush()

    def queue_push(self, connection: ClientConnection) -> None:
        """A message pushed to a client (chapter 10): always written before the loop sleeps, with the others.

        The client that published is still running its requests, so there is
        always something to batch with; one PUBLISH pipeline of a thousand
        messages costs each subscriber one write, not a thousand.
        """
        self._pending[connection] = None

    def flush(self) -> None:
        for connection in self._pending:
            connection.write_replies()
        self._pending.clear()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.flush()
        events = super().select(timeout)
        self.ready_count = len(events)
        return events


def new_event_loop(server: Server) -> asyncio.AbstractEventLoop:
    """An event loop for the server: built on BeforeSleepSelector to batch writes, unless --batch-writes no."""
    if server.options.batch_writes == "no":
        return asyncio.new_event_loop()
    server.writer = BeforeSleepSelector()
    return asyncio.SelectorEventLoop(server.writer)



# =============================================================================
# Appendix E. Limits: what one client may cost the others
# =============================================================================
#
# A first reading can skip this appendix: it adds the protections that keep
# one client from hurting the others. A request that never ends is cut short
# (client-query-buffer-limit), and one that fails unexpectedly fails alone
# (failure_reply). A client's unsent replies are bounded
# (PausingConnection, ReplyBuffer), and a subscriber that does not read its
# messages is disconnected (client-output-buffer-limit); a web page that
# points a browser at the server is turned away (POST and Host:); the number
# of clients fits the file descriptors the process may open (maxclients); and
# failures that can repeat as fast as a client or the OS likes are logged at
# most once a minute.
#
# Each connection holds a file descriptor, and the OS caps how many a process
# may have open ("ulimit -n", often 1024). Past the cap, accept() fails and new
# clients wait unanswered. So Redis caps its clients first: at most maxclients
# (10000) at once, plus 32 descriptors kept for itself (the listening sockets,
# the snapshot file...). At startup it raises the process's limit to fit, and
# if the OS does not allow that, it lowers maxclients and says so. A client over
# maxclients is accepted just long enough to be told why, then disconnected.
# Connections not accepted yet wait in the kernel's backlog queue, tcp-backlog
# (511) of them: a burst of connects must not find it full.


CLIENT_QUERY_BUFFER_LIMIT = 1024 * 1024 * 1024  # default client-query-buffer-limit: unparsed bytes per client


def over_query_buffer_limit(connection: ClientConnection) -> bool:
    """Whether the request still arriving is over client-query-buffer-limit: the connection is then closed.

    Redis counts only its query buffer. Counting the arguments parsed so far too
    (RequestParser.pending_size) keeps a request that never ends from growing without bound.
    """
    if connection.parser.pending_size <= connection.server.options.client_query_buffer_limit:
        return False
    client = connection.client
    log.warning("Closing client %d (%s): it reached the query buffer limit", client.id, client.address)
    return True


def failure_reply(client: Client, entry: Command, args: list[bytes], error: Exception) -> bytes:
    """The reply to a command that failed unexpectedly, called from execute()'s except clause.

    Out of memory, or a bug: either way this request fails alone, and neither
    its client nor any other loses its connection.
    """
    if isinstance(error, MemoryError):  # this request needed more memory than there is
        log.warning("Out of memory while running '%s' for client %d", entry.name, client.id)
        return error_reply(f"ERR out of memory while running '{entry.name}'")
    log.exception("Command %s failed", text(args[0]))
    return error_reply(f"ERR internal error while running '{entry.name}'")

# How much unsent output one client may have before the server stops running its
# commands. A client that pipelines requests but never reads the replies would
# otherwise make the server produce replies without end (Redis's own answer is
# client-output-buffer-limit, which disconnects such a client). This server
# pauses instead: it stops running the client's commands and reading its
# socket until the client has read enough, so nobody is disconnected and the
# memory a client holds stays bounded by this limit plus one reply.
OUTPUT_PAUSE_BYTES = 1024 * 1024  # this server's own setting; Redis has no such pause


class PausingConnection(ClientConnection):
    """A connection that runs its requests only while its client reads the replies (--output-pause yes).

    Before each request it checks the room left under OUTPUT_PAUSE_BYTES,
    counting the replies queued here and those in asyncio's own buffer. Past
    it, it hands the replies to the socket and stops: it pauses reading too,
    until asyncio's resume_writing() says the client has read enough. It
    also survives a MemoryError of its own by dropping just this client.
    """

    reading_paused = False  # while requests wait for the client to read its replies

    def data_received(self, data: bytes) -> None:
        try:
            super().data_received(data)
        except MemoryError:
            self.out_of_memory()

    def execute_requests(self) -> None:
        client = self.client
        while True:
            # The room left under OUTPUT_PAUSE_BYTES. The transport's own buffer does not change
            # while replies are only queued here, so it is read once per round.
            room = OUTPUT_PAUSE_BYTES - self.transport.get_write_buffer_size() - self.replies.size
            replies = []
            if room >= 0:
                for args in self.requests:
                    reply = execute(client, args)
                    replies.append(reply)
                    room -= len(reply)
                    if room < 0 or client.close_after_reply:
                        break
                del self.requests[: len(replies)]
                self.replies.extend(replies)
                self.server.stats.commands_processed += len(replies)
            if not self.requests or client.close_after_reply or self.transport_full:
                break
            self.write_replies()  # over the limit: hand the replies to the socket now, go on if it took them
        if self.requests and not client.close_after_reply:
            self.transport.pause_reading()  # until the client reads: resume_writing() carries on
            self.reading_paused = True
        elif self.reading_paused:
            self.transport.resume_reading()
            self.reading_paused = False

    # asyncio calls these two when the transport's own write buffer passes its
    # high and low water marks: the client is not reading as fast as we write.
    def pause_writing(self) -> None:
        self.transport_full = True

    def resume_writing(self) -> None:
        self.transport_full = False
        # Carry on once asyncio's own write handler, which calls this, has returned: closing
        # the connection from inside it would make asyncio report the connection lost twice.
        asyncio.get_running_loop().call_soon(self.carry_on)

    def carry_on(self) -> None:
        """Send more of the queued replies, then run the requests that waited for the client to read."""
        if self.transport.is_closing():
            return
        try:
            self.write_replies()
            if not self.transport_full:
                self.run_requests()
        except MemoryError:
            self.out_of_memory()

    def out_of_memory(self) -> None:
        """Drop one client that needed more memory than the machine has, rather than crash everyone."""
        log.warning("Closing client %d (%s): out of memory while serving it", self.client.id, self.client.address)
        self.requests.clear()
        self.replies.clear()
        self.transport.abort()


# A subscriber is not paused: the messages pushed to it are not its requests,
# and pausing its reading would not stop other clients from publishing. A
# subscriber that does not read would make the server buffer messages without
# end, so Redis disconnects it instead, by client-output-buffer-limit: for
# the "pubsub" class (any client subscribed to something) it is "32mb 8mb 60",
# a hard limit of 32 MB of unsent output and a soft limit of 8 MB held for
# 60 seconds. The other subscribers are not affected: each has its own
# queue. This server counts a client's queued replies and asyncio's buffer
# for its socket, and applies the same limits to MONITOR clients, which
# Redis leaves unlimited: no client's memory may grow without bound here.
PROTO_REPLY_CHUNK_BYTES = 16 * 1024  # a client's reply buffer in Redis; only output beyond it counts for the limits
CLIENT_OUTPUT_BUFFER_LIMITS = {  # class -> (hard limit, soft limit in bytes, seconds over the soft limit)
    "normal": (0, 0, 0),  # 0: none; PausingConnection bounds a normal client's replies. Set, it applies too
    "slave": (256 * 1024 * 1024, 64 * 1024 * 1024, 60),  # replicas (no replication here: CONFIG GET shows it)
    "pubsub": (32 * 1024 * 1024, 8 * 1024 * 1024, 60),
}


def over_output_limit(connection: ClientConnection) -> bool:
    """Disconnect a client whose unsent output is over the limits of its class; True if it was.

    Redis's checkClientOutputBufferLimits(): over the hard limit at once, over
    the soft limit once it has stayed there for the given seconds.
    """
    client = connection.client
    client_class = "pubsub" if client.channels or client.patterns or client.monitoring else "normal"
    hard, soft, seconds = client.server.output_limits[client_class]
    if not (hard or soft):
        return False  # no limit: "normal 0 0 0", the default, leaves a normal client to PausingConnection
    # Redis counts only what overflows a client's first reply buffer (PROTO_REPLY_CHUNK_BYTES) into its list.
    used = connection.replies.size + connection.transport.get_write_buffer_size() - PROTO_REPLY_CHUNK_BYTES
    over = bool(hard) and used >= hard
    if soft and used >= soft:
        now = time.monotonic()
        if not client.soft_limit_since:
            client.soft_limit_since = now  # the first time it is seen over the soft limit
        elif now - client.soft_limit_since > seconds:
            over = True
    else:
        client.soft_limit_since = 0.0
    if over:
        log.warning("Client %s scheduled to be closed ASAP for overcoming of output buffer limits.",
                    text(client_list_line(client)))
        connection.replies.clear()  # its memory is freed now, not when the socket is gone
        connection.transport.abort()
    return over


# Large values in the snapshot: SAVE encodes a large key or value SAVE_CHUNK
# bytes at a time, and loading lets go of the file's bytes before it parses
# them, so that neither costs much more memory than the data itself.


SAVE_CHUNK = 64 * 1024  # bytes of a larger key or value encoded at a time, to keep SAVE's memory small


def json_string_pieces(data: bytes) -> Iterator[str]:
    """Bytes as a JSON string literal, as entry_lines() makes it, SAVE_CHUNK bytes of data at a time.

    Decoded whole, a value of N bytes that are not UTF-8 would take 4N bytes as
    a str of N surrogates, then 6N as JSON escapes ("\\udcff" per byte). In
    pieces it takes only a few times SAVE_CHUNK. The incremental decoder keeps
    a UTF-8 sequence cut in two by a piece's end until the next piece completes
    it, so the text is the same as decoding data whole.
    """
    decoder = codecs.getincrementaldecoder(DUMP_ENCODING)(DUMP_ERRORS)
    yield '"'
    for start in range(0, len(data), SAVE_CHUNK):
        end = start + SAVE_CHUNK
        yield quote_json(decoder.decode(data[start:end], final=end >= len(data)))[1:-1]  # without its quotes
    yield '"'


def large_entry_pieces(start: str, key: bytes, value: bytes, end: str) -> Iterator[str]:
    """One snapshot line, as entry_lines() makes it, with its key and value encoded SAVE_CHUNK bytes at a time."""
    yield start
    yield from json_string_pieces(key)
    yield ","
    yield from json_string_pieces(value)
    yield end


def read_snapshot_text(path: str) -> str:
    """The file as text, decoded as json.loads() would decode its bytes.

    Decoding here, not in json.loads(), lets the bytes go before parsing
    starts: a file of large values then costs its text and the values parsed
    from it, rather than its bytes as well.
    """
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as error:
        raise DumpError(f"cannot read: {error.strerror}") from error
    try:
        return raw.decode(json.detect_encoding(raw), "surrogatepass")
    except UnicodeDecodeError as error:
        raise DumpError(f"not valid JSON: {error}") from error


NET_MAX_WRITES_PER_EVENT = 64 * 1024  # Redis writes at most this much to one client per event


class ReplyBuffer:
    """One connection's replies that are not yet handed to the socket (Redis's per-client reply list).

    Small replies leave together, in one write. A large reply leaves a slice
    at a time, as the client reads it, so that the server never holds more
    than the one copy of it that the reply itself is.

    >>> replies = ReplyBuffer()
    >>> replies.append(b"+OK\\r\\n"); replies.append(b":1\\r\\n")
    >>> replies.size, replies.take()
    (9, b'+OK\\r\\n:1\\r\\n')
    >>> replies.append(b"x" * 100_000)
    >>> len(replies.take()), replies.size
    (65536, 34464)
    """

    def __init__(self) -> None:
        self._replies: collections.deque[bytes] = collections.deque()
        self._offset = 0  # how much of the first reply was already taken
        self.size = 0  # bytes not yet taken

    def append(self, reply: bytes) -> None:
        self._replies.append(reply)
        self.size += len(reply)

    def extend(self, replies: list[bytes]) -> None:
        self._replies += replies
        self.size += sum(map(len, replies))

    def take(self, limit: int = NET_MAX_WRITES_PER_EVENT) -> bytes | memoryview:
        """Remove and return the next bytes to write: whole replies up to about limit bytes, or a slice of one."""
        if self.size <= limit and not self._offset:  # the usual case: everything, in one piece
            data = b"".join(self._replies)
            self._replies.clear()
        elif len(self._replies[0]) - self._offset > limit:  # a large reply: its next slice, without copying it
            data = memoryview(self._replies[0])[self._offset : self._offset + limit]
            self._offset += limit
        else:  # the rest of the first reply, and as many whole replies after it as fit
            pieces = [memoryview(self._replies.popleft())[self._offset :]]
            self._offset = 0
            taken = len(pieces[0])
            while self._replies and taken + len(self._replies[0]) <= limit:
                taken += len(self._replies[0])
                pieces.append(self._replies.popleft())
            data = b"".join(pieces)
        self.size -= len(data)
        return data

    def clear(self) -> None:
        self._replies.clear()
        self._offset = self.size = 0


# A web page cannot open a TCP connection of its own, but it can make the
# browser send an HTTP request anywhere, 127.0.0.1:6379 included: a line
# "POST / HTTP/1.1", header lines such as "Host: 127.0.0.1:6379", then a body
# the page chooses. Read as inline commands, that body would run: SET, FLUSHALL,
# anything ("cross protocol scripting"). Neither "POST" nor "Host:" is a Redis
# command, so Redis takes either one, as the first word of a request, as proof
# of an attack: it drops the connection at once, runs nothing more that the
# client sent and answers nothing, not even the commands before it, and logs a
# warning at most once a minute (an attacker can repeat the request at will).
HTTP_REQUEST_WORDS = {b"post", b"host:"}
SECURITY_WARNING = ("Possible SECURITY ATTACK detected. It looks like somebody is sending POST or Host: commands to "
                    "Redis. This is likely due to an attacker attempting to use Cross Protocol Scripting to "
                    "compromise your Redis instance. Connection aborted.")
SECURITY_WARNING_INTERVAL = 60  # seconds between two such log lines


class ConnectionAborted(Exception):
    """Drop the client now: none of its pending commands run, none of its replies is sent (CLIENT_CLOSE_ASAP)."""


def abort_if_http(client: Client, args: list[bytes]) -> None:
    """Drop the connection of a request that starts like HTTP's, as above; execute() asks of each unknown command."""
    if args[0].lower() in HTTP_REQUEST_WORDS:
        client.server.security_warning_log.warning(SECURITY_WARNING)
        raise ConnectionAborted


class RateLimitedLog:
    """A warning logged at most once per interval, for events that can repeat as fast as a client or the OS likes.

    Redis keeps a static timestamp beside such log calls, for the same reason:
    one line per event would let anybody fill the disk.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.next_time = 0.0  # time.monotonic() from which the next warning may be logged

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now >= self.next_time:
            self.next_time = now + self.interval
            log.warning(message, *args)


ACCEPT_ERROR_LOG_INTERVAL = 60  # seconds between two log lines about accept() failing


def log_loop_error(server: Server, loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """The event loop's exception handler: asyncio's own, except that accept() failures are logged once a minute.

    Out of file descriptors, accept() fails. asyncio then logs a traceback,
    leaves the connection waiting in the backlog and retries a second
    later; but it goes on trying the other waiting connections in the same
    pass (CPython issue gh-151615), and each failure schedules a retry of
    its own, so the tracebacks multiply: gigabytes of log, a busy CPU.
    With maxclients fitting the file limit this is rare and brief (a burst
    of connects); the clients already connected are not affected, and the
    waiting ones are accepted once a descriptor is free. One line a minute
    says all there is to say, and costs little enough to keep retrying.
    """
    error = context.get("exception")
    if isinstance(error, OSError) and context.get("message", "").startswith("socket.accept()"):
        server.accept_error_log.warning("Accepting client connection: %s (logged at most once a minute)", error)
    else:
        loop.default_exception_handler(context)


CONFIG_DEFAULT_MAX_CLIENTS = 10000
CONFIG_MIN_RESERVED_FDS = 32  # descriptors kept for the server's own files and sockets
CONFIG_DEFAULT_TCP_BACKLOG = 511
MAX_CLIENTS_REACHED = b"-ERR max number of clients reached\r\n"


def adjust_open_files_limit(maxclients: int) -> int:
    """Raise the open files limit to fit maxclients; return the maxclients that fits (0: not even one).

    Redis's adjustOpenFilesLimit(). Only the soft limit is raised, up to the
    hard limit ("ulimit -Hn"): raising that one takes privileges.
    """
    needed = maxclients + CONFIG_MIN_RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return maxclients
    limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    reason = f"the hard limit ('ulimit -Hn') is {hard}"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    except (OSError, ValueError) as error:
        limit, reason = soft, f"of OS error: {error}"
    if limit >= needed:
        log.info("Increased maximum number of open files to %d (it was originally set to %d).", needed, soft)
        return maxclients
    if limit <= CONFIG_MIN_RESERVED_FDS:
        log.error("Your current 'ulimit -n' of %d is not enough for the server to start. Please increase your open "
                  "file limit to at least %d. Exiting.", soft, needed)
        return 0
    log.warning("You requested maxclients of %d requiring at least %d max file descriptors.", maxclients, needed)
    log.warning("Server can't set maximum open files to %d because %s.", needed, reason)
    log.warning("Current maximum open files is %d. maxclients has been reduced to %d to compensate for low ulimit. "
                "If you need higher maxclients increase 'ulimit -n'.", limit, limit - CONFIG_MIN_RESERVED_FDS)
    return limit - CONFIG_MIN_RESERVED_FDS


# =============================================================================
# Appendix F. A server inside your tests
# =============================================================================
#
# A first reading can skip this appendix: it runs the whole server of Part I
# in a thread of another Python program, so a test suite can start a real
# server on a free port and stop it cleanly, with no subprocess to manage.


@contextlib.contextmanager
def running(port: int = 0, dir: str = ".", *flags: str) -> Iterator[tuple[str, int]]:
    """Run a server in a thread of this process, for tests: yield its (host, port), stop it on leaving.

    The server listens on a free port (port=0), keeps its snapshot in dir,
    takes any other command-line flags, and stops without saving.

    >>> import socket, tempfile
    >>> with running(dir=tempfile.mkdtemp()) as (host, port):
    ...     with socket.create_connection((host, port)) as connection:
    ...         connection.sendall(b"PING\\r\\n")
    ...         connection.recv(100)
    b'+PONG\\r\\n'
    """
    server = Server(parse_options(["--port", str(port), "--dir", dir, *flags]))
    server.load()
    loop = new_event_loop(server)
    started = threading.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(server, ready=started.set),),
                              name="redis-clone", daemon=True)
    thread.start()
    while not started.wait(0.01):
        if not thread.is_alive():  # serve() returned without listening: the log says why
            raise OSError(f"the server could not listen on port {port}")
    try:
        yield server.options.bind[0], server.port
    finally:
        loop.call_soon_threadsafe(server.shutdown, False)
        thread.join()
        loop.close()


# The last line: run the server when this file is run as a program.
if __name__ == "__main__":
    sys.exit(main())
