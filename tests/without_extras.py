"""Run a module as `python -m MODULE` in an interpreter where the packages beyond torch and the
scientific stack cannot be imported: what the project's GPU machine has (torch, numpy, pandas,
scipy, matplotlib, tabulate, pytest, pytest-benchmark; no tqdm, sqlalchemy, numba, ruptures,
psycopg or PyYAML; no triton on a CPU-only torch).

    python tests/without_extras.py bench run --device cpu --preset quick
    python tests/without_extras.py pytest -q -m cuda tests --co
    python tests/without_extras.py -c "import tqdm"            # ModuleNotFoundError

The packages stay installed: an import finder answers first and makes each import of them fail as
a missing module does, and `importlib.util.find_spec` (how torch and the modes probe for triton
or numba) answers None for them, as for a package that is absent.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import runpy
import sys

ABSENT = ("tqdm", "sqlalchemy", "numba", "ruptures", "psycopg", "yaml", "triton")


class _Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            return importlib.machinery.ModuleSpec(name, self)  # origin None: torch's probes skip it
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)

    def exec_module(self, module):  # never reached: create_module raised
        raise AssertionError(module)


_find_spec = importlib.util.find_spec


def _find_spec_absent(name, package=None):
    if name.split(".")[0] in ABSENT:
        return None
    return _find_spec(name, package)


if __name__ == "__main__":
    sys.meta_path.insert(0, _Absent())
    importlib.util.find_spec = _find_spec_absent
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    if sys.argv[1] == "-c":
        exec(compile(sys.argv[2], "<-c>", "exec"), {"__name__": "__main__"})
    else:
        module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
