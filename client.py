"""A small redis-cli: the client half of the tutorial.

    python client.py                       an interactive prompt: 127.0.0.1:6379>
    python client.py SET name Alice        one command, then exit (status 1 on an error reply)
    echo "GET name" | python client.py     commands from standard input, one per line

It sends requests as arrays of bulk strings with server.py's encoders, reads
replies with the reply parser below, and prints replies exactly as redis-cli
7.0 does: quoted strings with escapes on a terminal, bare values when the
output is piped (or with --raw). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Iterable

from server import CRLF, REDIS_VERSION, ProtocolError, bulk_array, repr_bytes, split_inline_args

# --- Parsing replies -----------------------------------------------------------
#
# This client and the tests read replies with this parser. Replies nest (an
# array of arrays), so it is a small recursive reader over a byte buffer. Each
# RESP type maps to a Python type: bulk string -> bytes, integer -> int,
# null -> None, array -> list, boolean -> bool, and the marker classes below
# for the types that need telling apart from those.


class Status(bytes):
    """A simple string reply, such as OK."""


class ErrorReply(bytes):
    """An error reply, such as ERR syntax error."""


class Double(bytes):
    """A RESP3 double, kept as the text the server sent (",3.14")."""


class BigNumber(bytes):
    """A RESP3 big number ("(12345678901234567890")."""


class Verbatim(bytes):
    """A RESP3 verbatim string; the text after its "txt:" format prefix."""


class RespMap(list):
    """A RESP3 map, as a list of (key, value) pairs: keys need not be hashable."""


class RespSet(list):
    """A RESP3 set."""


class Push(list):
    """A RESP3 out-of-band push message."""


class IncompleteReply(Exception):
    """The buffer ends before the reply does."""


def parse_reply(buffer: bytes, pos: int = 0) -> tuple[object, int]:
    """Parse one reply starting at buffer[pos]; return it and the position after it.

    Raises IncompleteReply if more bytes are needed, ProtocolError if the bytes are not RESP.
    """
    end = buffer.find(CRLF, pos)
    if end < 0:
        raise IncompleteReply
    kind, line, pos = buffer[pos : pos + 1], buffer[pos + 1 : end], end + 2
    if kind == b"+":
        return Status(line), pos
    if kind == b"-":
        return ErrorReply(line), pos
    if kind == b":":
        return int(line), pos
    if kind == b"_":
        return None, pos
    if kind == b"#":
        return line == b"t", pos
    if kind == b",":
        return Double(line), pos
    if kind == b"(":
        return BigNumber(line), pos
    if kind in (b"$", b"=", b"!"):  # bulk string, verbatim string, bulk error
        length = int(line)
        if length < 0:
            return None, pos
        if len(buffer) < pos + length + 2:
            raise IncompleteReply
        payload = buffer[pos : pos + length]
        kinds = {b"$": bytes, b"=": lambda p: Verbatim(p[4:]), b"!": ErrorReply}
        return kinds[kind](payload), pos + length + 2
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count * 2 if kind in (b"%", b"|") else count):
            item, pos = parse_reply(buffer, pos)
            items.append(item)
        if kind == b"|":  # attributes describe the reply that follows: skip them
            return parse_reply(buffer, pos)
        if kind == b"%":
            return RespMap(zip(items[::2], items[1::2], strict=True)), pos
        return {b"*": list, b"~": RespSet, b">": Push}[kind](items), pos
    raise ProtocolError(f"unexpected reply type {kind!r}")


def encode_request(args: Iterable[bytes]) -> bytes:
    """A command as a client sends it: an array of bulk strings."""
    return bulk_array(args)


HISTORY_FILE = "~/.redis_clone_cli_history"
SLOW_COMMAND_SECONDS = 0.5  # redis-cli prints how long a command took from this long on


# --- Printing replies as redis-cli does ----------------------------------------


def format_tty(reply: object, prefix: bytes = b"") -> bytes:
    """Format a reply for a person at a terminal, like redis-cli's cliFormatReplyTTY()."""
    if isinstance(reply, ErrorReply):
        return b"(error) " + reply + b"\n"
    if isinstance(reply, Status):
        return reply + b"\n"
    if isinstance(reply, Double):
        return b"(double) " + reply + b"\n"
    if isinstance(reply, BigNumber):
        return b"(big number) " + reply + b"\n"
    if isinstance(reply, Verbatim):
        return reply + b"\n"
    if isinstance(reply, bytes):
        return repr_bytes(reply) + b"\n"  # in double quotes, escaped as C would (sdscatrepr)
    if reply is None:
        return b"(nil)\n"
    if isinstance(reply, bool):  # before int: True is an int too
        return b"(true)\n" if reply else b"(false)\n"
    if isinstance(reply, int):
        return b"(integer) %d\n" % reply
    return format_aggregate_tty(reply, prefix)


def format_aggregate_tty(reply: list, prefix: bytes) -> bytes:
    """Arrays, sets, pushes and maps: numbered entries, nested ones indented under their number."""
    if not reply:
        empty = {RespMap: b"hash", RespSet: b"set", Push: b"push"}.get(type(reply), b"array")
        return b"(empty " + empty + b")\n"
    separator = {RespMap: b"#", RespSet: b"~"}.get(type(reply), b")")
    width = len(str(len(reply)))
    nested_prefix = prefix + b" " * (width + 2)
    out = b""
    for number, element in enumerate(reply, 1):
        out += (b"" if number == 1 else prefix) + b"%*d%s " % (width, number, separator)
        if isinstance(reply, RespMap):
            key, value = element
            out += format_tty(key, nested_prefix)[:-1] + b" => "
            if is_multiline_tty(value):
                out += b"\n" + nested_prefix
            out += format_tty(value, nested_prefix)
        else:
            out += format_tty(element, nested_prefix)
    return out


def is_multiline_tty(reply: object) -> bool:
    if isinstance(reply, RespMap):
        return len(reply) > 1 or (len(reply) == 1 and is_multiline_tty(reply[0][1]))
    if isinstance(reply, list):
        return len(reply) > 1 or (len(reply) == 1 and is_multiline_tty(reply[0]))
    return False


def format_raw(reply: object) -> bytes:
    """Format a reply for a program reading our output, like redis-cli's cliFormatReplyRaw()."""
    if reply is None:
        return b""
    if isinstance(reply, bool):
        return b"(true)" if reply else b"(false)"
    if isinstance(reply, int):
        return b"%d" % reply
    if isinstance(reply, ErrorReply):
        return reply + b"\n"  # redis-cli ends an error with a newline of its own, before the usual one
    if isinstance(reply, bytes):  # strings of every kind print as they are
        return reply
    if isinstance(reply, RespMap):
        return b"\n".join(format_raw(key) + b" " + format_raw(value) for key, value in reply)
    return b"\n".join(format_raw(element) for element in reply)


def format_reply(reply: object, raw: bool) -> bytes:
    return format_raw(reply) + b"\n" if raw else format_tty(reply)


# --- Talking to the server -------------------------------------------------------


class Connection:
    """One TCP connection: send a command, read its reply."""

    def __init__(self, host: str, port: int, timeout: float | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def call(self, args: list[bytes]) -> object:
        self.sock.sendall(encode_request(args))
        return self.read_reply()

    def read_reply(self) -> object:
        """The next reply: the answer to a request, or a message the server pushed."""
        while True:
            try:
                reply, end = parse_reply(self.buffer)
            except IncompleteReply:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("Server closed the connection") from None
                self.buffer += chunk
                continue
            self.buffer = self.buffer[end:]
            return reply

    def close(self) -> None:
        self.sock.close()


STREAMING_COMMANDS = {b"subscribe", b"psubscribe", b"monitor"}  # their replies keep coming: redis-cli prints them all


class Cli:
    """The state of a redis-cli session: where to connect, the selected database, the output mode."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.host = options.host
        self.port = options.port
        self.db = options.db
        self.password = options.password
        self.resp3 = options.resp3
        self.raw = options.raw if options.raw is not None else not sys.stdout.isatty()
        self.connection: Connection | None = None

    @property
    def prompt(self) -> str:
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        if self.connection is None:
            return "not connected> "
        return f"{address}[{self.db}]> " if self.db else f"{address}> "

    def connect(self, quiet: bool = False) -> bool:
        """(Re)connect, then AUTH, SELECT and HELLO 3 as asked; False (with a message) if that fails."""
        self.disconnect()
        try:
            self.connection = Connection(self.host, self.port)
        except OSError as error:
            if not quiet:
                reason = error.strerror or str(error)
                print(f"Could not connect to Redis at {self.host}:{self.port}: {reason}", file=sys.stderr)
            return False
        setup = []
        if self.password is not None:
            setup.append([b"AUTH", self.password.encode()])
        if self.db:
            setup.append([b"SELECT", b"%d" % self.db])
        if self.resp3:
            setup.append([b"HELLO", b"3"])
        for args in setup:
            reply = self.connection.call(args)
            if isinstance(reply, ErrorReply):
                sys.stderr.write(f"{args[0].decode()} failed: {reply.decode(errors='replace')}\n")
        return True

    def disconnect(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def run(self, args: list[bytes], repeat: int = 1) -> bool:
        """Send a command (repeat times) and print the replies; False on an error reply or a lost connection."""
        if self.connection is None and not self.connect():
            return False
        if args[0].lower() in STREAMING_COMMANDS:
            return self.stream(args)
        ok = True
        for _ in range(repeat):
            try:
                reply = self.connection.call(args)
            except (OSError, ConnectionError, ProtocolError) as error:
                print(f"Error: {error}", file=sys.stderr)
                self.disconnect()
                return False
            sys.stdout.buffer.write(format_reply(reply, self.raw))
            sys.stdout.flush()
            if isinstance(reply, ErrorReply):
                ok = False
            elif args[0].lower() == b"select" and len(args) == 2:
                self.db = int(args[1])
        return ok

    def stream(self, args: list[bytes]) -> bool:
        """SUBSCRIBE, PSUBSCRIBE or MONITOR: print every reply as it arrives, as redis-cli does, until Ctrl-C.

        The connection then stays subscribed (or monitoring), so the next command gets a new one.
        """
        if args[0].lower() != b"monitor" and not self.raw:
            print("Reading messages... (press Ctrl-C to quit)", flush=True)
        try:
            self.connection.sock.sendall(encode_request(args))
            while True:
                reply = self.connection.read_reply()
                sys.stdout.buffer.write(format_reply(reply, self.raw))
                sys.stdout.flush()
                if isinstance(reply, ErrorReply):
                    return False
        except KeyboardInterrupt:
            self.disconnect()
            return True
        except (OSError, ConnectionError, ProtocolError) as error:
            print(f"Error: {error}", file=sys.stderr)
            self.disconnect()
            return False

    def help(self, topic: list[bytes]) -> None:
        """'help', 'help <command>' and 'help @<group>', from the server's COMMAND DOCS like redis-cli."""
        if not topic:
            print(f"redis-cli {REDIS_VERSION} (Educational Redis Clone client)\n"
                  'To get help about Redis commands type:\n'
                  '      "help @<group>" to get a list of commands in <group>\n'
                  '      "help <command>" for help on <command>\n'
                  '      "quit" to exit')
            return
        if self.connection is None and not self.connect():
            return
        docs = self.connection.call([b"COMMAND", b"DOCS"])
        entries = []
        for name, doc in pairs(docs):
            fields = dict(pairs(doc))
            entries.append((name.upper(), fields))
            for sub_name, sub_doc in pairs(fields.get(b"subcommands", [])):
                entries.append((sub_name.upper().replace(b"|", b" "), dict(pairs(sub_doc))))
        group = topic[0][1:].lower() if topic[0].startswith(b"@") else None
        out = []
        for name, fields in sorted(entries):
            words = name.split()
            if group is None and [w.upper() for w in topic] != words[: len(topic)]:
                continue
            if group is not None and fields.get(b"group", b"").lower() != group:
                continue
            usage = b" ".join(dict(pairs(argument)).get(b"name", b"") for argument in fields.get(b"arguments", []))
            out.append(b"\r\n  \x1b[1m%s\x1b[0m \x1b[90m%s\x1b[0m\r\n  \x1b[33msummary:\x1b[0m %s\r\n"
                       b"  \x1b[33msince:\x1b[0m %s\r\n" % (name, usage, fields.get(b"summary", b""),
                                                            fields.get(b"since", b"")))
            if group is None:
                out.append(b"  \x1b[33mgroup:\x1b[0m %s\r\n" % fields.get(b"group", b""))
        sys.stdout.buffer.write(b"".join(out) + b"\r\n")
        sys.stdout.flush()


def pairs(reply: object) -> list[tuple]:
    """Key/value pairs from a map reply, which RESP2 sends as a flat array."""
    if isinstance(reply, RespMap):
        return list(reply)
    return list(zip(reply[::2], reply[1::2], strict=True))


# --- The prompt ------------------------------------------------------------------


def parse_line(line: str) -> list[bytes] | None:
    """Split a typed line into arguments as redis-cli does (quotes, \\xHH escapes); None if unbalanced."""
    try:
        return split_inline_args(line.encode("utf-8", "surrogateescape"))
    except ProtocolError:
        return None


def repl(cli: Cli) -> int:
    """Read commands line by line: with a prompt and history on a terminal, silently from a pipe."""
    interactive = sys.stdin.isatty()
    history = os.path.expanduser(HISTORY_FILE)
    readline = None
    if interactive:
        try:
            import readline  # line editing and history, where Python has it (not on Windows)

            if os.path.exists(history):
                readline.read_history_file(history)
        except (ImportError, OSError):
            readline = None
    cli.connect()
    while True:
        try:
            line = input(cli.prompt) if interactive else sys.stdin.readline()
        except (EOFError, KeyboardInterrupt):
            break
        if not interactive and not line:
            break  # end of the piped input
        args = parse_line(line.rstrip("\r\n"))
        if interactive and readline is not None and line.strip():
            try:
                readline.write_history_file(history)
            except OSError:
                pass
        if args is None:
            print("Invalid argument(s)")
            continue
        if not args:
            continue
        repeat = 1
        if len(args) > 1 and args[0].isdigit():  # "3 PING" sends PING three times
            repeat, args = int(args[0]), args[1:]
        name = args[0].lower()
        if name in (b"quit", b"exit"):
            break
        if name in (b"help", b"?"):
            cli.help(args[1:])
            continue
        started = time.monotonic()
        cli.run(args, repeat)
        elapsed = time.monotonic() - started
        if elapsed >= SLOW_COMMAND_SECONDS and not cli.raw:
            print(f"({elapsed:.2f}s)")
    cli.disconnect()
    return 0


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="client.py", add_help=False,
        description="A small redis-cli. With no command: an interactive prompt, or commands read from a pipe.",
    )
    parser.add_argument("-h", dest="host", default="127.0.0.1", help="server hostname (default 127.0.0.1)")
    parser.add_argument("-p", dest="port", type=int, default=6379, help="server port (default 6379)")
    parser.add_argument("-n", dest="db", type=int, default=0, help="database number")
    parser.add_argument("-a", dest="password", help="password to AUTH with")
    parser.add_argument("-3", dest="resp3", action="store_true", help="start the session in RESP3 (HELLO 3)")
    parser.add_argument("--raw", dest="raw", action="store_const", const=True,
                        help="print values bare (the default when the output is not a terminal)")
    parser.add_argument("--no-raw", dest="raw", action="store_const", const=False,
                        help="print values quoted, as on a terminal, even into a pipe")
    parser.add_argument("-e", action="store_true", help="accepted for compatibility: errors always exit 1")
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="a command to run, such as SET name Alice")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    cli = Cli(options)
    try:
        if not options.command:
            return repl(cli)
        if not cli.connect():
            return 1
        args = [arg.encode("utf-8", "surrogateescape") for arg in options.command]
        return 0 if cli.run(args) else 1
    except BrokenPipeError:  # our reader went away (| head): stop quietly, as a C program would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
