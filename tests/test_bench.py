"""The benchmark stays runnable: a tiny run end to end. It asserts the report's shape, never a timing."""

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None,
                    reason="redis-server and redis-benchmark are not installed")
def test_benchmark_runs_and_reports_every_figure():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "vs_redis.py"), "-n", "2000", "--rounds", "1",
                             "--keys", "2000", "--only", "SET", "GET"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = result.stdout
    for line in ("SET -c 50 ", "GET -c 50 -P 16", "SET -c 1 ", "GET -c 50 -d 1024", "bytes per key", "with a TTL",
                 "save", "load", "startup to first PONG", "Pipelining gain", "geometric mean ratio this/redis"):
        assert line in report, f"missing {line!r} in:\n{report}"
    assert f"({sys.executable})" in report.splitlines()[0], report  # the interpreter the figures depend on
    ceiling = report.split("asyncio's ceiling")[1].split("\n\n")[0]  # the bare server's section
    assert "GET -c 50 -P 16" in ceiling and "SET -c 1" in ceiling and "-d 1024" not in ceiling, report


@pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None,
                    reason="redis-server and redis-benchmark are not installed")
def test_persistence_mode_reports_every_row_and_ratio():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "vs_redis.py"), "--persistence", "-n", "2000",
                             "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = result.stdout
    for mode in ("no AOF", "everysec", "always"):
        for label in ("SET -c 50 -P 16", "SET -c 50 "):
            assert any(line.startswith(label) and mode in line for line in report.splitlines()), report
    for line in ("this everysec / this no AOF (target >= 0.8)", "this always / redis always (target >= 0.8)",
                 "both servers keep their files in"):
        assert line in report, f"missing {line!r} in:\n{report}"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_bgsave_latency_reports_both_saves():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bgsave_latency.py"), "--keys", "2000",
                             "--rest", "0.05"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    for server in ("this", "redis"):
        for during in ("at rest", "SAVE", "BGSAVE"):
            assert any(row.split()[:2] == [server, during.split()[0]] for row in rows), result.stdout
    assert "status ok" in result.stdout, result.stdout
