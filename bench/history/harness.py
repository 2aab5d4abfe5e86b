"""Everything the history package takes from the rest of the harness, imported here and nowhere else.

Reading a run folder imports torch (the run-folder reader derives values with it), so `load_run`
is imported on first use: `history trend` and `dashboard`, which only read the database, start
without torch. Everything else is light and imported at the top.

    python -c "from bench.history.harness import load_run; print(load_run('results/reference/h200-quick').env['gpu_name'])"
"""

from __future__ import annotations

from bench.analysis.significance import RegressionCheck, compare_samples
from bench.errors import UsageError, first_line
from bench.records import MUST_MATCH, ConfigKey, timing_metric_for

__all__ = [
    "MUST_MATCH",
    "UsageError",
    "compare_samples",
    "config_key_of",
    "first_line",
    "load_run",
    "regression_check",
    "timing_metric_for",
]


def load_run(path):
    """A run folder, its results.csv / run.json, or a pytest-benchmark JSON file -> LoadedRun
    (`.env` dict, `.frame` one row per configuration, `.samples` raw samples by configuration)."""
    from bench.store.load import load_run as _load_run  # torch: only when a run is read

    return _load_run(path)


def config_key_of(row) -> ConfigKey:
    """The frozen configuration key of a results row (missing world_size / backend -> 1 / "")."""
    return ConfigKey.from_row(row)


def regression_check(max_slowdown: float) -> RegressionCheck:
    """The one-baseline gate's rule: fails when the median is more than `max_slowdown` slower and
    the 95% bootstrap interval of the ratio says so."""
    return RegressionCheck(max_slowdown=max_slowdown)
