"""The validation knobs: SUMNET_BENCH_SLOWDOWN slows a CPU step by its own CPU time, whatever the load.

python -m pytest tests/test_knobs.py -q
"""

from __future__ import annotations

import time

import torch

from bench.modes import _with_slowdown


def _burn(ns: int) -> None:
    end = time.thread_time_ns() + ns
    while time.thread_time_ns() < end:
        pass


def test_a_cpu_step_spins_for_its_factor_of_its_own_cpu_time():
    slowed = _with_slowdown(lambda: _burn(20_000_000), 0.5, torch.device("cpu"))
    start = time.thread_time_ns()
    slowed()
    spent = time.thread_time_ns() - start
    assert 29_000_000 <= spent <= 33_000_000  # 20 ms of work + 10 ms of spin, CPU time


def test_time_the_step_spent_off_the_cpu_is_not_multiplied():
    """A step preempted or waiting (here: sleeping 100 ms) must not spin 10% of its wall time: under
    load that made a '10% slower' step 1.5x to 4.3x slower. Only its 10 ms of CPU work count."""

    def step() -> None:
        time.sleep(0.1)
        _burn(10_000_000)

    slowed = _with_slowdown(step, 0.1, torch.device("cpu"))
    start = time.thread_time_ns()
    slowed()
    spin_ns = time.thread_time_ns() - start - 10_000_000
    assert 500_000 <= spin_ns <= 3_000_000  # 1 ms asked; a wall-clock spin would burn 11 ms
