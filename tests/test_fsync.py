"""appendfsync always fsyncs before it replies: strace counts the fsyncs behind N acknowledged SETs.

The tracing and the reading of the trace live in bench/fsync_proof.py, which also prints the counts
for every policy. Here, for `always`: N SETs sent one at a time over one connection, and every one of
the N replies is written to the socket after its SET was written to the append-only file and an fsync
(or fdatasync) of that file returned, so at least N fsyncs. Checked against real redis-server too.
"""

import shutil

import pytest

from bench import fsync_proof

SETS = 100
STRACE_PROBLEM = fsync_proof.strace_unusable()


@pytest.mark.skipif(STRACE_PROBLEM is not None, reason=str(STRACE_PROBLEM))
@pytest.mark.parametrize("kind", ["this", "redis"])
def test_appendfsync_always_fsyncs_before_every_reply(kind, tmp_path):
    if kind == "redis" and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    proof = fsync_proof.traced_run(kind, "always", SETS, str(tmp_path))
    assert proof.replies_traced == SETS, proof
    assert proof.replies_after_their_fsync == SETS, proof
    assert proof.fsyncs >= SETS, proof


def test_the_trace_reader_tells_a_reply_before_its_fsync_from_one_after():
    aof, socket = "3</d/appendonly.aof>", "5<TCP:[127.0.0.1:6379->127.0.0.1:5000]>"
    key = fsync_proof.KEY.format
    trace = "\n".join([
        f'7 10:00:00.000001 write({aof}, "*3\\r\\n$3\\r\\nSET\\r\\n$18\\r\\n{key(0)}\\r\\n$1\\r\\nv\\r\\n", 45) = 45',
        f"8 10:00:00.000002 fdatasync({aof} <unfinished ...>",
        f'7 10:00:00.000003 sendto({socket}, "+OK\\r\\n", 5, 0, NULL, 0) = 5',  # before the fsync returned
        "8 10:00:00.000004 <... fdatasync resumed>) = 0",
        f'7 10:00:00.000005 write({aof}, "*3\\r\\n$3\\r\\nSET\\r\\n$18\\r\\n{key(1)}\\r\\n$1\\r\\nv\\r\\n", 45) = 45',
        f"7 10:00:00.000006 fsync({aof}) = 0",
        f'7 10:00:00.000007 write({socket}, "+OK\\r\\n", 5) = 5',  # after its fsync
    ])
    proof = fsync_proof.read_trace(trace, 2, 0.0)
    assert (proof.replies_traced, proof.fsyncs, proof.replies_after_their_fsync) == (2, 2, 1)
