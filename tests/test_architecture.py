"""The layout's rules: no import cycle, no late import of our own modules, the layers' direction.

Every module of bench/ and sumnet/ is imported on its own: one interpreter loads the third-party
libraries once, then forks a child per module with none of ours loaded, so a cycle that only a
particular import order hides shows up. The import graph is read from the source (ast).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.optional import require

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "sumnet")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """(modules of ours imported at module level, ours imported inside a function)."""
    tree = ast.parse(path.read_text())
    top, late = set(), []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        names = [n for n in names if _ours(n) and n in MODULES]
        if not names:
            continue
        if node in tree.body or any(
            node in getattr(b, "body", []) for b in tree.body if isinstance(b, ast.If)
        ):
            top.update(names)
        else:
            late.extend(names)
    return top, late


GRAPH = {name: _imports(path)[0] for name, path in MODULES.items()}


# Late imports allowed, each for a stated reason (never to dodge a cycle): an optional dependency,
# start-up time of the history's commands, which read a database and need no torch, or an entry
# point that installs its signal handling before torch's import.
OPTIONAL = {
    "bench.modes.fused": {"bench.modes", "bench.modes.fused_kernel"},  # fused_kernel imports triton
    "bench.modes": {"bench.modes", "bench.modes.numba_reference"},  # numba: only when the mode is used
    "bench.history": {"bench.history.ingest"},  # `history trend` does not load the ingest path
    "bench.history.cli": {
        "bench.history.db",
        "bench.history.ingest",
        "bench.history.trend",
        "bench.commands.gate",
    },  # each command loads only what it runs
    "bench.commands.gate": {"bench.history.db", "bench.history.ingest"},  # sqlalchemy: --history only
    "sumnet.__main__": {"sumnet.demo"},  # the entry point: signals first, then torch
    "bench.crosscheck": {"bench.commands.crosscheck"},  # the entry point: signals first, then torch
}


def test_no_module_imports_one_of_ours_late():
    late = {name: set(_imports(path)[1]) - OPTIONAL.get(name, set()) for name, path in MODULES.items()}
    assert {k: sorted(v) for k, v in late.items() if v} == {}


def test_the_import_graph_has_no_cycle():
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for dep in sorted(GRAPH.get(name, ())):
            dep_pkg = dep if dep in GRAPH else dep.rsplit(".", 1)[0]
            if dep_pkg == name or name.startswith(dep_pkg + "."):
                continue  # a package's own submodules, or a module importing its parent package
            if state.get(dep_pkg) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack, name, dep_pkg]))
            if dep_pkg not in state:
                visit(dep_pkg, [*stack, name])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])


def _layer_violations(source_prefixes: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{name} imports {dep}"
        for name, deps in GRAPH.items()
        if name.startswith(source_prefixes)
        for dep in deps
        if dep.startswith(forbidden)
    ]


def test_the_layers_point_one_way():
    assert _layer_violations(("sumnet",), ("bench",)) == []  # the article's code never needs the harness
    below = ("bench.analysis", "bench.measure", "bench.modes", "bench.store", "bench.records", "bench.errors")
    assert _layer_violations(below, ("bench.commands", "bench.render")) == []
    assert _layer_violations(("bench.render",), ("bench.commands",)) == []


@pytest.mark.slow
def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    script = textwrap.dedent(
        """
        import os, sys, traceback
        import importlib
        for lib in ("numpy", "pandas", "scipy.stats", "torch", "torch.utils.flop_counter", "torch._dynamo",
                    "torch.fx.experimental.proxy_tensor", "tqdm", "tabulate", "matplotlib.figure",
                    "matplotlib.backends.backend_agg", "numba", "triton", "sqlalchemy"):
            try:  # third-party, loaded once; ours are not
                importlib.import_module(lib)
            except ImportError:
                pass
        failures, running = [], {}
        names = sys.argv[1:]
        while names or running:
            while names and len(running) < (os.cpu_count() or 1):  # a child per core at a time
                name = names.pop(0)
                pid = os.fork()
                if pid == 0:
                    try:
                        __import__(name)
                    except ModuleNotFoundError as err:  # a third-party package absent here: 3
                        ours = (err.name or "bench").split(".")[0] in ("bench", "sumnet")
                        traceback.print_exc()
                        os._exit(1 if ours else 3)
                    except BaseException:
                        traceback.print_exc()
                        os._exit(1)
                    os._exit(0)
                running[pid] = name
            pid, status = os.wait()
            if status != 0 and not (os.WEXITSTATUS(status) == 3 and os.environ.get("CI") != "true"):
                failures.append(running[pid])  # an absent package only passes outside CI
            del running[pid]
        print("FAILED", *failures) if failures else print("ALL OK")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, *sorted(MODULES)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert proc.stdout.strip() == "ALL OK", proc.stdout + proc.stderr[-3000:]


def test_the_entry_points_and_the_history_commands_start_without_torch():
    """`python -m bench`, `python -m sumnet` and `python -m bench.crosscheck` load their modules
    before they install the signal handling, so those must not import torch (seconds on a loaded
    machine, when a Ctrl-C would be a traceback); `history` and `dashboard` never need it."""
    require("sqlalchemy", "the results history's database")
    code = (
        "import sys, bench.__main__, bench.crosscheck, sumnet.__main__\n"
        "import bench.history.cli, bench.history.trend, bench.history.dashboard\n"
        "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


READERS = ("bench.commands.compare", "bench.commands.gate", "bench.history.ingest", "bench.history.dashboard")


def test_readers_of_runs_get_records_not_rows():
    """compare, gate and the history read a run as records (bench.store.load.Run.records): no reader
    re-parses rows (ConfigKey.from_row), walks a DataFrame's rows or reads the table of a loaded run."""
    found = []
    for name in READERS:
        if name not in MODULES:
            continue
        text = MODULES[name].read_text()
        found += [
            f"{name}: {pattern}"
            for pattern in ("from_row(", ".iterrows(", ".frame", "LoadedRun")
            if pattern in text
        ]
    assert found == []
