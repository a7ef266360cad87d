"""The everyday tools against this server: redis-cli (one-shot, piped, interactive) and redis-benchmark.

Skipped where redis-tools is not installed; .ci/run installs it.
"""

import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-tools is not installed")

SESSION = ["SET name Alice", "GET name", "EXPIRE name 60", "TTL name", "GET missing", "INCR n", "MGET name n x",
           "KEYS na*", "SET k v EX 0", "FOO bar", "DEL name", "SELECT 1", "DBSIZE"]


def redis_cli(port: int, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin, capture_output=True, text=True,
                          timeout=30)


def test_one_shot(server):
    redis_cli(server.port, "FLUSHALL")
    assert redis_cli(server.port, "SET", "name", "Alice").stdout == "OK\n"
    assert redis_cli(server.port, "GET", "name").stdout == "Alice\n"
    assert redis_cli(server.port, "PING").stdout == "PONG\n"


def test_piped_commands(server):
    redis_cli(server.port, "FLUSHALL")
    result = redis_cli(server.port, stdin="SET a 1\nINCR a\nGET a\n")
    assert result.stdout == "OK\n2\n2\n"
    assert result.stderr == ""


def test_same_output_as_with_real_redis(server, real_redis):
    outputs = []
    for port in (server.port, real_redis.port):
        redis_cli(port, "FLUSHALL")
        piped = redis_cli(port, stdin="\n".join(SESSION) + "\n").stdout
        one_shot = [redis_cli(port, *line.split()).stdout for line in SESSION]
        outputs.append((piped, one_shot))
    assert outputs[0] == outputs[1]


def test_interactive_session(server):
    pexpect = pytest.importorskip("pexpect")
    redis_cli(server.port, "FLUSHALL")
    # TERM=dumb turns off redis-cli's line editing escapes, so the screen is plain text.
    cli = pexpect.spawn("redis-cli", ["-p", str(server.port)], encoding="utf-8", timeout=10,
                        env=dict(os.environ, TERM="dumb"))
    prompt = f"127.0.0.1:{server.port}> "
    cli.expect_exact(prompt)
    cli.sendline("SET name Alice")
    cli.expect_exact(prompt)
    assert "OK" in cli.before
    cli.sendline("GET name")
    cli.expect_exact(prompt)
    assert '"Alice"' in cli.before
    cli.sendline("help SET")  # help comes from our COMMAND DOCS
    cli.expect_exact(prompt)
    assert "key value [NX|XX]" in cli.before and "Set the string value of a key" in cli.before
    cli.sendline("SELECT 2")
    cli.expect_exact(f"127.0.0.1:{server.port}[2]> ")
    cli.sendline("quit")
    cli.expect(pexpect.EOF)


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="redis-benchmark is not installed")
def test_redis_benchmark_runs_without_warnings(server):
    result = subprocess.run(["redis-benchmark", "-p", str(server.port), "-t", "ping,set,get,incr,mset", "-n", "2000",
                             "-q"], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0
    assert "WARNING" not in output and "ERR" not in output
    for test in ("PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET"):
        assert f"{test}" in output
