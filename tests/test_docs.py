"""docs/bad-inputs.md names, for each bad input or fault, the test that holds it: every test it
names must exist, so the table cannot point at a test that was renamed or deleted."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TABLE = REPO / "docs" / "bad-inputs.md"


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def _cited(text: str) -> list[tuple[str, str]]:
    """(file, test) for each `file.py::test_x` in the table, and for each bare `test_y` after it in
    the same cell (the table writes `f.py::test_a`, `test_b` for two tests of one file)."""
    cited = []
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cell = line.rstrip("|").split("|")[-1]
        current = None
        for match in re.finditer(r"`(?:(\w+\.py)::)?(test_\w+)`", cell):
            current = match.group(1) or current
            if current is not None:
                cited.append((current, match.group(2)))
    return cited


def test_every_test_the_bad_input_table_names_exists():
    cited = _cited(TABLE.read_text())
    assert len(cited) >= 25  # the table cites its tests; a parsing slip would find none
    missing = [f"{f}::{t}" for f, t in cited if t not in _test_names(REPO / "tests" / f)]
    assert missing == []


def test_the_citation_parser_reads_both_forms():
    row = "| x | y | `a.py::test_one`, `test_two`; `b.py::test_three` |"
    assert _cited(row) == [("a.py", "test_one"), ("a.py", "test_two"), ("b.py", "test_three")]
