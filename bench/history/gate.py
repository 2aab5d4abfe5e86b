"""Gate a run against its recent history instead of one baseline run.

For each configuration of the current run, the last `window` runs of the same configuration on the
same machine fingerprint (ok, made no later than the current run, the current run itself excluded)
are pooled: their raw samples together are the baseline. The rule is the one-baseline gate's
(bench.analysis.significance.RegressionCheck, reused): a failure when the current median is more
than `max_slowdown` slower AND the lower end of the 95% bootstrap interval of the ratio is above
that limit too. Pooling N runs spreads the baseline over N runs' worth of machine states, so one
unlucky baseline run no longer decides. A configuration that ran ok in the window and fails now is
a failure too.

    python -m bench history gate --current results/latest --window 10
    python -c "from bench.history.gate import gate_on_history as g; print(g(None, 'results/latest'))"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.analysis.significance import RegressionCheck, compare_samples
from bench.errors import UsageError
from bench.history import DEFAULT_WINDOW
from bench.history.db import History, open_history
from bench.history.ingest import entry_from_run, entry_of
from bench.history.model import RunEntry

DEFAULT_MAX_SLOWDOWN = 0.10
# The training step only, as the one-baseline gate: inference rows are 7 blocks of 10 ms whose
# latency swings several-fold between runs on a busy 2-core machine (docs/ci-gate.md).
DEFAULT_METRICS = ("step_ms",)


@dataclass(frozen=True)
class HistoryCheck:
    """One configuration and metric of the current run against its history."""

    config_key: str
    metric: str
    runs: int  # history runs pooled
    commits: str  # oldest..newest commit of those runs
    comparison: object | None  # bench.analysis.significance.SampleComparison; None for a status check
    failure: str | None  # why it fails, or None


def _current_entry(current_run: object) -> RunEntry:
    if isinstance(current_run, RunEntry):
        return current_run
    if isinstance(current_run, (str, Path)):
        return entry_of(current_run)
    return entry_from_run(current_run)  # a LoadedRun from the harness's loader


def _as_history(db: History | str | Path | None) -> tuple[History, bool]:
    if isinstance(db, History):
        return db, False
    return open_history(db, create=False), True


def check_against_history(
    history: History,
    current_run: object,
    window: int = DEFAULT_WINDOW,
    max_slowdown: float = DEFAULT_MAX_SLOWDOWN,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> list[HistoryCheck]:
    """Every comparable configuration of `current_run` (a path, LoadedRun or RunEntry) against the last
    `window` comparable runs; UsageError when nothing in it has any history."""
    if window < 1:
        raise UsageError(f"the history window must be at least 1 run, got {window}")
    current = _current_entry(current_run)
    check = RegressionCheck(max_slowdown=max_slowdown)
    fp = current.machine.fingerprint
    checks = []
    for record in current.records:
        recent = history.recent_runs(
            fp, str(record.config), window, before=current.time_utc, exclude_run=current.run_id
        )
        if not recent:
            continue
        commits = _commit_range([commit for _, commit, _ in reversed(recent)])
        key = str(record.config)
        if record.status == "failed":
            reason = record.reason or "no reason recorded"
            failure = f"{key}: ran ok in the last {len(recent)} comparable runs, fails now: {reason}"
            checks.append(HistoryCheck(key, "status", len(recent), commits, None, failure))
            continue
        for metric in metrics:
            now = _numbers(record.samples.get(metric))
            if record.status != "ok" or not now:
                continue
            pooled = history.samples_of(key, metric, [run_id for run_id, _, _ in recent])
            baseline = [v for run_id, _, _ in recent for v in pooled.get(run_id, [])]
            if not baseline:
                continue
            result = compare_samples(now, baseline, check.q)
            message = check.failure(result)
            failure = (
                f"{key} {metric}: {message}; baseline: {len(pooled)} runs of history ({commits})"
                if message
                else None
            )
            checks.append(HistoryCheck(key, metric, len(pooled), commits, result, failure))
    if not checks:
        raise UsageError(
            f"no comparable history for {current.source}: machine {fp} ({current.machine.label}) has no "
            f"earlier ok run of its configurations in {history.where}"
        )
    return checks


def gate_on_history(
    db: History | str | Path | None,
    current_run: object,
    window: int = DEFAULT_WINDOW,
    max_slowdown: float = DEFAULT_MAX_SLOWDOWN,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> list[str]:
    """The failures of `current_run` against the last `window` comparable runs in `db` ([] passes).

    `db`: an open History, or a SQLite path / database URL (None: results/history.db).
    """
    history, opened = _as_history(db)
    try:
        checks = check_against_history(history, current_run, window, max_slowdown, metrics)
    finally:
        if opened:
            history.close()
    return [c.failure for c in checks if c.failure]


def _numbers(values: object) -> list[float]:
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if isinstance(v, (int, float)) and v == v]


def _commit_range(commits: Sequence[str]) -> str:
    named = [c[:12] for c in commits if c]
    if not named:
        return "no commits recorded"
    return named[0] if named[0] == named[-1] else f"{named[0]}..{named[-1]}"
