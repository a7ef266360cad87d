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
    if kind == "this" and not fsync_proof.this_server_has_aof():
        pytest.skip("this server has no --appendonly yet (issue 13, branch `aof`); the lead removes this skip")
    proof = fsync_proof.traced_run(kind, "always", SETS, str(tmp_path))
    assert proof.replies_traced == SETS, proof
    assert proof.replies_after_their_fsync == SETS, proof
    assert proof.fsyncs >= SETS, proof
