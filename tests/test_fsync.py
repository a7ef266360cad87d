"""appendfsync always fsyncs before it replies: strace counts the fsyncs behind N acknowledged SETs.

The tracing and the reading of the trace live in bench/fsync_proof.py, which also prints the counts
for every policy. Here, for `always`: N SETs sent one at a time over one connection, and every one of
the N replies is written to the socket after its SET was written to the append-only file and an fsync
(or fdatasync) of that file, started after that write, returned, so at least N fsyncs. Checked against
real redis-server too. Then the same with several clients at once, who share fsyncs.
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


@pytest.mark.skipif(STRACE_PROBLEM is not None, reason=str(STRACE_PROBLEM))
@pytest.mark.parametrize("flags", [(), ("--batch-writes", "no")])
def test_several_clients_get_no_reply_before_the_fsync_of_their_write(flags, tmp_path):
    proof = fsync_proof.traced_run("this", "always", SETS * 2, str(tmp_path), 8, *flags)
    assert proof.replies_traced == SETS * 2, proof
    assert proof.replies_after_their_fsync == SETS * 2, proof


def test_the_trace_reader_tells_a_reply_before_its_fsync_from_one_after():
    aof, socket = "3</d/appendonly.aof>", "5<TCP:[127.0.0.1:6379->127.0.0.1:5000]>"
    key = fsync_proof.KEY.format
    request = "*3\\r\\n$3\\r\\nSET\\r\\n$18\\r\\n{}\\r\\n$1\\r\\nv\\r\\n".format
    trace = "\n".join([
        f'7 10:00:00.000000 recvfrom({socket}, "{request(key(0))}", 65536, 0, NULL, NULL) = 45',
        f'7 10:00:00.000001 write({aof}, "{request(key(0))}", 45) = 45',
        f"8 10:00:00.000002 fdatasync({aof} <unfinished ...>",
        f'7 10:00:00.000003 sendto({socket}, "+OK\\r\\n", 5, 0, NULL, 0) = 5',  # before the fsync returned
        "8 10:00:00.000004 <... fdatasync resumed>) = 0",
        f'7 10:00:00.000005 read({socket}, "{request(key(1))}", 65536) = 45',
        f'7 10:00:00.000006 write({aof}, "{request(key(1))}", 45) = 45',
        f"7 10:00:00.000007 fsync({aof}) = 0",
        f'7 10:00:00.000008 write({socket}, "+OK\\r\\n", 5) = 5',  # after its fsync
        f'7 10:00:00.000009 read({socket}, "{request(key(2))}", 65536) = 45',
        f"8 10:00:00.000010 fdatasync({aof} <unfinished ...>",  # starts before the SET is written
        f'7 10:00:00.000011 write({aof}, "{request(key(2))}", 45) = 45',
        "8 10:00:00.000012 <... fdatasync resumed>) = 0",
        f'7 10:00:00.000013 write({socket}, "+OK\\r\\n", 5) = 5',  # so this reply is not covered
    ])
    proof = fsync_proof.read_trace(trace, 3, 0.0)
    assert (proof.replies_traced, proof.fsyncs, proof.replies_after_their_fsync) == (3, 3, 1)
