"""The README stays true: its command table lists every command the server has."""

import re

from conftest import ROOT

import server


def test_readme_lists_every_command():
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)`", readme, re.MULTILINE)
    expected = set()
    for entry in server.COMMANDS.values():
        if entry.handler is not None:
            expected.add(entry.name.upper())
        expected.update(sub.name.upper().replace("|", " ") for sub in entry.subcommands.values())
    missing = {name for name in expected if not any(row == name or row.startswith(name + " ") for row in rows)}
    assert not missing, f"README's command table lacks: {sorted(missing)}"


def test_readme_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "python server.py\n" in readme
    assert 'python -m pip install -e ".[test]" && python -m pytest' in readme
    assert 'python3 -m pip install -q -e ".[test]" && python3 -m pytest' in (ROOT / ".ci" / "run").read_text()
