"""The examples in server.py's docstrings are true: the parser, the reply encoders, the keyspace."""

import doctest

import server


def test_docstring_examples():
    results = doctest.testmod(server)
    assert results.attempted >= 3
    assert results.failed == 0
