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


README = REPO / "README.md"
README_MAX_LINES = 200  # issue 18: a README for users; studies and rates live in docs/validation.md
REPORTS = ("bench/render/report.py", "bench/render/ddp_report.py")  # the reports the columns table explains


def _report_headers(path: Path) -> set[str]:
    """The column headers a report prints: the string values of its {column: header} dict literals."""
    headers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                is_column = (
                    isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.isidentifier()
                )
                if is_column and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    headers.add(value.value)
    return headers


def _readme_columns() -> set[str]:
    """Every `header` in the first cell of the README's columns table (the one headed | column |)."""
    lines = README.read_text().splitlines()
    start = lines.index("| column | meaning |")
    cells = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells.append(line.split("|")[1])
    return {name for cell in cells for name in re.findall(r"`([^`]+)`", cell)}


def test_the_readme_stays_short():
    assert len(README.read_text().splitlines()) <= README_MAX_LINES


def test_every_column_a_report_prints_is_explained_in_the_readme():
    printed = set().union(*(_report_headers(REPO / path) for path in REPORTS))
    assert {"step ms (median)", "x floor", "scaling efficiency"} <= printed  # the parser finds them
    assert sorted(printed - _readme_columns()) == []
