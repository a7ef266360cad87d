"""client.py: redis-cli's formatting, argument splitting, one-shot, piped and interactive modes."""

import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

import client
from client import Double, ErrorReply, RespMap, RespSet, Status

# What redis-cli 7.0.15 printed for these sessions against redis-server 7.0.15 (stdin-fed, with --no-raw
# for the terminal format and --raw for the piped one). The same session against this server, through
# client.py, must print the same text.
SESSION = """FLUSHALL
SET name Alice
GET name
SET bin "\\xff\\x00\\n\\"q\\\\"
GET bin
GET missing
INCR n
MGET name n missing
KEYS name
FOO bar
SET a 'unbalanced
CONFIG GET appendonly
CONFIG GET nothing
MGET
SCAN 0 COUNT 100 MATCH nam*
HELLO 3
GET missing
CONFIG GET appendonly
SET x y
SELECT 3
DBSIZE
"""
SESSION_TTY = "\n".join([
    'OK',
    'OK',
    '"Alice"',
    'OK',
    '"\\xff\\x00\\n\\"q\\\\"',
    '(nil)',
    '(integer) 1',
    '1) "Alice"',
    '2) "1"',
    '3) (nil)',
    '1) "name"',
    "(error) ERR unknown command 'FOO', with args beginning with: 'bar' ",
    'Invalid argument(s)',
    '1) "appendonly"',
    '2) "no"',
    '(empty array)',
    "(error) ERR wrong number of arguments for 'mget' command",
    '1) "0"',
    '2) 1) "name"',
    '1# "server" => "redis"',
    '2# "version" => "7.0.15"',
    '3# "proto" => (integer) 3',
    '4# "id" => (integer) ID',
    '5# "mode" => "standalone"',
    '6# "role" => "master"',
    '7# "modules" => (empty array)',
    '(nil)',
    '1# "appendonly" => "no"',
    'OK',
    'OK',
    '(integer) 0',
    "",
])
SESSION_RAW = "\n".join([
    'OK',
    'OK',
    'Alice',
    'OK',
    '\xff\x00',
    '"q\\',
    '',
    '1',
    'Alice',
    '1',
    '',
    'name',
    "ERR unknown command 'FOO', with args beginning with: 'bar' ",
    '',
    'Invalid argument(s)',
    'appendonly',
    'no',
    '',
    "ERR wrong number of arguments for 'mget' command",
    '',
    '0',
    'name',
    'server redis',
    'version 7.0.15',
    'proto 3',
    'id ID',
    'mode standalone',
    'role master',
    'modules ',
    '',
    'appendonly no',
    'OK',
    'OK',
    '0',
    "",
])


def run_client(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "client.py"), *args], input=stdin, capture_output=True,
                          timeout=30, env=env)


def without_client_id(output: bytes) -> bytes:
    import re

    return re.sub(rb"(\"id\" => \(integer\) |id )\d+", rb"\g<1>ID", output)


@pytest.mark.parametrize(("mode", "expected"), [("--no-raw", SESSION_TTY), ("--raw", SESSION_RAW)])
def test_session_prints_what_redis_cli_prints(server, mode, expected):
    result = run_client("-p", str(server.port), mode, stdin=SESSION.encode())
    assert without_client_id(result.stdout) == expected.encode("latin-1")


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
@pytest.mark.parametrize(("mode", "expected"), [("--no-raw", SESSION_TTY), ("--raw", SESSION_RAW)])
def test_captured_table_is_what_redis_cli_prints_today(real_redis, mode, expected):
    result = subprocess.run(["redis-cli", "-p", str(real_redis.port), mode], input=SESSION.encode(),
                            capture_output=True, timeout=30)
    assert without_client_id(result.stdout) == expected.encode("latin-1")


# RESP3 types this server does not send yet, formatted as redis-cli printed them (from real Redis:
# ZSCORE, ZRANGE WITHSCORES, SMEMBERS, HGETALL and COMMAND DOCS ECHO under -3).
RESP3_SAMPLES = [
    (Double(b"1.5"), '(double) 1.5\n', "1.5\n"),
    ([[b"a", Double(b"1.5")], [b"b", Double(b"2")]],
     '1) 1) "a"\n   2) (double) 1.5\n2) 1) "b"\n   2) (double) 2\n', "a\n1.5\nb\n2\n"),
    (RespSet([b"y", b"x"]), '1~ "y"\n2~ "x"\n', "y\nx\n"),
    (RespMap([(b"f1", b"v1"), (b"f2", b"v2")]), '1# "f1" => "v1"\n2# "f2" => "v2"\n', "f1 v1\nf2 v2\n"),
    (RespMap([(b"echo", RespMap([(b"summary", b"Echo the given string"), (b"since", b"1.0.0"),
                                 (b"arguments", [RespMap([(b"name", b"message"), (b"type", b"string")])])]))]),
     '1# "echo" => \n   1# "summary" => "Echo the given string"\n   2# "since" => "1.0.0"\n'
     '   3# "arguments" => \n      1) 1# "name" => "message"\n         2# "type" => "string"\n',
     "echo summary Echo the given string\nsince 1.0.0\narguments name message\ntype string\n"),
    (RespSet([]), "(empty set)\n", "\n"),
    (RespMap([]), "(empty hash)\n", "\n"),
    (True, "(true)\n", "(true)\n"),
    (Status(b"OK"), "OK\n", "OK\n"),
    (ErrorReply(b"ERR x"), "(error) ERR x\n", "ERR x\n\n"),
    ([b"%d" % i for i in range(10)], "".join(f'{i + 1:2d}) "{i}"\n' for i in range(10)),
     "".join(f"{i}\n" for i in range(10))),
]


@pytest.mark.parametrize(("reply", "tty", "raw"), RESP3_SAMPLES)
def test_format_reply(reply, tty, raw):
    assert client.format_reply(reply, raw=False) == tty.encode()
    assert client.format_reply(reply, raw=True) == raw.encode()


@pytest.mark.parametrize(("line", "args"), [
    ('SET k "a b"', [b"SET", b"k", b"a b"]),
    ("SET k 'it\\'s'", [b"SET", b"k", b"it's"]),
    ('SET k "\\x41\\n"', [b"SET", b"k", b"A\n"]),
    ('SET k "open', None),
    ("SET k 'open", None),
    ("", []),
])
def test_arguments_split_like_redis_cli(line, args):
    assert client.parse_line(line) == args


def test_one_shot_and_exit_status(server):
    port = str(server.port)
    assert run_client("-p", port, "SET", "name", "Alice").stdout == b"OK\n"
    assert run_client("-p", port, "GET", "name").stdout == b"Alice\n"  # piped: raw
    assert run_client("-p", port, "--no-raw", "GET", "name").stdout == b'"Alice"\n'
    assert run_client("-p", port, "-n", "4", "SET", "db4", "x").returncode == 0
    assert run_client("-p", port, "-n", "4", "GET", "db4").stdout == b"x\n"
    failed = run_client("-p", port, "INCR", "name")
    assert failed.returncode == 1
    assert failed.stdout == b"ERR value is not an integer or out of range\n\n"
    assert run_client("-p", port, "-3", "--no-raw", "GET", "nothing").stdout == b"(nil)\n"


def test_connection_refused_message(tmp_path):
    from conftest import free_port

    port = free_port()
    result = run_client("-p", str(port), "PING")
    assert result.returncode == 1
    assert result.stderr.decode() == f"Could not connect to Redis at 127.0.0.1:{port}: Connection refused\n"


def spawn_repl(port: int, home):
    pexpect = pytest.importorskip("pexpect")
    env = dict(os.environ, HOME=str(home), TERM="dumb")
    return pexpect.spawn(sys.executable, [str(ROOT / "client.py"), "-p", str(port)], env=env, encoding="utf-8",
                         timeout=10), pexpect


def test_interactive_prompt_select_history_and_exit(server, tmp_path):
    repl, pexpect = spawn_repl(server.port, tmp_path)
    prompt = f"127.0.0.1:{server.port}> "
    repl.expect_exact(prompt)
    repl.sendline("SET greeting 'hello world'")
    repl.expect_exact(prompt)
    assert "OK" in repl.before
    repl.sendline("GET greeting")
    repl.expect_exact(prompt)
    assert '"hello world"' in repl.before
    repl.sendline("SELECT 2")
    repl.expect_exact(f"127.0.0.1:{server.port}[2]> ")
    repl.sendline('GET "unbalanced')
    repl.expect_exact(f"127.0.0.1:{server.port}[2]> ")
    assert "Invalid argument(s)" in repl.before
    repl.sendline("help GET")
    repl.expect_exact(f"127.0.0.1:{server.port}[2]> ")
    assert "Get the value of a key" in repl.before
    repl.sendline("exit")
    repl.expect(pexpect.EOF)
    history = (tmp_path / ".redis_clone_cli_history").read_text()
    assert "SELECT 2" in history and "GET greeting" in history


def test_repl_reconnects_when_the_server_comes_back(start_server, tmp_path):
    process = start_server()
    port = process.port
    repl, pexpect = spawn_repl(port, tmp_path)
    prompt = f"127.0.0.1:{port}> "
    repl.expect_exact(prompt)
    process.stop(signal.SIGTERM)
    repl.sendline("PING")
    repl.expect_exact("not connected> ")
    repl.sendline("PING")
    repl.expect_exact("not connected> ")
    assert f"Could not connect to Redis at 127.0.0.1:{port}: Connection refused" in repl.before
    start_server("--port", str(port))
    repl.sendline("PING")
    repl.expect_exact(prompt)
    assert "PONG" in repl.before
    repl.sendline("quit")
    repl.expect(pexpect.EOF)


INTERACTIVE_SESSION = ["FLUSHALL", "SET name Alice", "GET name", "MGET name x", "HELLO 3", "GET x", "SELECT 2", "FOO",
                       'SET a "b', "CONFIG GET appendonly", "SET bin '\\x00\\n'", 'GET bin', "HELLO 2"]


def interactive_transcript(command: str, args: list[str]) -> list[str]:
    """What a person sees after each line of INTERACTIVE_SESSION, typed at a prompt (client ids masked)."""
    import re

    pexpect = pytest.importorskip("pexpect")
    repl = pexpect.spawn(command, args, encoding="utf-8", timeout=10, env=dict(os.environ, TERM="dumb"))
    prompt = r"127\.0\.0\.1:\d+(\[\d+\])?> "
    repl.expect(prompt)
    transcript = []
    for line in INTERACTIVE_SESSION:
        repl.sendline(line)
        repl.expect(prompt)
        transcript.append(re.sub(r'"id" => \(integer\) \d+|\d+\) \(integer\) \d+\r\n( \d+\) "mode")',
                                 "ID", repl.before))
    repl.sendline("quit")
    repl.expect(pexpect.EOF)
    return transcript


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_interactive_session_looks_like_redis_cli_with_real_redis(server, real_redis):
    ours = interactive_transcript(sys.executable, [str(ROOT / "client.py"), "-p", str(server.port)])
    theirs = interactive_transcript("redis-cli", ["-p", str(real_redis.port)])
    assert ours == theirs


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
@pytest.mark.parametrize("mode", ["--raw", "--no-raw"])
def test_one_shot_output_is_redis_cli_output(server, real_redis, mode):
    for line in ["FLUSHALL", "SET k v", "GET k", "MGET k nokey", "INCR k", "EXPIRE k 100", "TTL k", "GET nokey"]:
        args = line.split()
        ours = run_client("-p", str(server.port), mode, *args)
        theirs = subprocess.run(["redis-cli", "-p", str(real_redis.port), mode, *args], capture_output=True,
                                timeout=30)
        assert ours.stdout == theirs.stdout, line
