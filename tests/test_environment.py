"""The environment a result records, and the part of it pytest-benchmark compares between runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure import environment
from bench.records import MUST_MATCH

REPO = Path(__file__).resolve().parent.parent


def test_machine_is_collect_without_the_per_run_fields():
    full, machine = environment.collect(), environment.machine()
    assert set(full) - set(machine) == set(environment.PER_RUN_FIELDS)
    assert set(MUST_MATCH) <= set(machine)


def test_machine_stays_the_same_when_the_command_and_the_clock_change(monkeypatch):
    first = environment.machine()
    monkeypatch.setattr(sys, "argv", ["elsewhere", "--other-flag"])

    class _Later(environment._dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return environment._dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(environment._dt, "datetime", _Later)
    assert environment.collect()["timestamp_utc"] == "2031-01-02T03:04:05Z"
    assert environment.machine() == first


@pytest.mark.slow
def test_pytest_benchmark_compare_of_two_runs_here_raises_no_machine_info_warning(tmp_path, child_env):
    """Two saved runs of the suite on one machine: --benchmark-compare must not call them different
    machines (it did while argv and the time were in machine_info)."""
    command = [
        sys.executable, "-m", "pytest", "tests/benchmarks", "-q", "-p", "no:cacheprovider",
        "-k", "train_step and numpy-reference-cpu",
        "--benchmark-enable", "--benchmark-only", "--benchmark-autosave",
        f"--benchmark-storage={tmp_path}", "-W", "always",
    ]  # fmt: skip
    env = {**child_env, "PYTHONWARNINGS": "always"}
    first = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run(
        [*command, "--benchmark-compare", "--benchmark-compare-fail=min:400%"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = second.stdout + second.stderr
    assert second.returncode == 0, output
    assert "Comparing against benchmarks from" in output or "0001_" in output, output
    assert "machine_info is different" not in output, output
