"""Shared pytest configuration.

Without a GPU, Triton kernels run in Triton's interpreter: TRITON_INTERPRET must be set before
anything imports triton (torch.utils.flop_counter does), so it is set here, first. OpenBLAS reads
OPENBLAS_NUM_THREADS once, when numpy first loads (torch imports numpy): one BLAS thread keeps the
numpy-reference timings of the pytest-benchmark suite from jumping 2x between processes on a busy
2-core machine (its A/A rate is in tests/benchmarks/test_pytest_benchmark.py).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from bench.measure import environment  # noqa: E402


def pytest_benchmark_update_machine_info(config, machine_info):
    """Put bench.measure.environment's machine fields (torch, GPU, CUDA...) into saved benchmark JSON,
    so `python -m bench gate` can check that two saved runs come from the same setup. The per-run
    fields (time, argv, commit) stay out: pytest-benchmark's --benchmark-compare warns on any
    machine_info difference, and it records the commit and time itself."""
    machine_info.update(environment.machine())
    cpu = machine_info.get("cpu")
    if isinstance(cpu, dict):  # py-cpuinfo's current clock: it moves between runs where the CPU scales
        for field in ("hz_actual", "hz_actual_friendly"):
            cpu.pop(field, None)


@pytest.fixture
def child_env() -> dict[str, str]:
    """This process's environment without pytest-xdist's worker variables, for a child pytest run:
    pytest-benchmark reads PYTEST_XDIST_WORKER as "xdist is on" and disables itself there."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with the most slow tests first, each file's tests in their order. nox -s tests hands
    whole files to pytest-xdist's workers in this order (--no-loadscope-reorder): the long files
    start at once and the short ones fill in behind them, instead of one worker running a long file
    alone at the end."""
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])  # stable: files stay whole, tests in order
