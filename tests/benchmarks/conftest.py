"""Under the pytest-benchmark table, say what one of its samples is: a block of calls, not one."""

from __future__ import annotations

import pytest

from tests.benchmarks.test_pytest_benchmark import CALLS_PER_BLOCK


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own summary, the table
def pytest_terminal_summary(terminalreporter, config) -> None:
    if config.getoption("benchmark_enable") or not config.getoption("benchmark_disable"):
        terminalreporter.write_line(
            f"sumnet-bench: each time above is one block of {CALLS_PER_BLOCK} calls (training steps or "
            f"inference calls): divide by {CALLS_PER_BLOCK} for one call; bench compare and gate divide already"
        )
