"""Hostile numbers and snapshot files: huge INCRBYFLOAT values, corrupt snapshots, SAVE and load of large values.

INCRBYFLOAT results are compared with a real redis-server where one is installed. The memory tests read the
server's peak resident size (VmHWM) from /proc, so they run on Linux only.
"""

import pytest

# --- INCRBYFLOAT with numbers of thousands of digits ------------------------------------------------------------------

HUGE_EXPONENT_DIGITS = "0" * 4400  # a strtold exponent may have any number of leading zeros
FLOAT_ARGUMENTS = [
    "1e4300", "1e4900", "-1e4300", "1.5e-300", "1.18e4932", "-1.18e4932",
    "1.189731495357231765e4932",  # the largest long double, rounded: still in range
    "1.189731495357231766e4932",  # just beyond it
    "0x1.fffffffffffffffep16383", "0x1p16383", "3.6e-4951", "1e-4951", "1e-4950", "1e81920", "1e-81921",
    "1" * 4400, "-" + "9" * 5000,
    "1e" + HUGE_EXPONENT_DIGITS + "1", "1e-" + HUGE_EXPONENT_DIGITS + "1", "0x1p+" + HUGE_EXPONENT_DIGITS + "5",
    "1e" + "9" * 4400, "1e-" + "9" * 4400, "0e" + "9" * 4400, "0x1p" + "9" * 5000,
]


@pytest.mark.parametrize("argument", FLOAT_ARGUMENTS, ids=lambda argument: argument[:30])
def test_incrbyfloat_huge_and_tiny_numbers_like_redis(both, argument):
    ours, theirs = both
    negated = argument[1:] if argument.startswith("-") else "-" + argument
    for args in (["INCRBYFLOAT", "f", argument], ["INCRBYFLOAT", "f", argument], ["INCRBYFLOAT", "f", negated],
                 ["GET", "f"], ["SET", "g", argument], ["INCRBYFLOAT", "g", "1"]):
        expected = theirs.call(*args)
        assert ours.call(*args) == expected, f"{args[0]} {args[1]} {args[2:]!r:.60}"


def test_incrbyfloat_prints_a_result_of_4301_digits(raw):
    reply = raw.call("INCRBYFLOAT", "f", "1e4300")
    assert reply.startswith(b"$4301\r\n10000000000000000000363292426322313202093524323047")
    raw.call("SET", "stored", "7" * 4400)  # a stored value of more digits than Python's int() reads
    assert raw.call("INCRBYFLOAT", "stored", "1").startswith(b"$4400\r\n77777777777777777776909062248514868774")
    assert raw.call("INCRBYFLOAT", "ten", "1e" + HUGE_EXPONENT_DIGITS + "1") == b"$2\r\n10\r\n"
