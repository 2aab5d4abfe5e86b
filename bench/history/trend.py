"""Trends: per machine and configuration, the run medians by time (each with its commit) and their
change points (bench.history.changepoints), as data and as the text `history trend` prints.

    python -m bench history trend --config 'train/cpu/*' --last 10
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

from bench.errors import UsageError
from bench.history.changepoints import METHOD, MIN_RUNS, Change, detect, with_interval
from bench.history.db import History, Machine, Point
from bench.records import ConfigKey

SHOWN_KEYS = 8  # an unknown --config lists this many known ones


@dataclass(eq=False)  # hashed by identity: the dashboard maps each series to its page
class Series:
    """One configuration on one machine, oldest run first."""

    machine: Machine
    config: ConfigKey
    metric: str  # step_ms | latency_ms
    points: list[Point]
    changes: list[Change]

    def recent_change(self, runs: int) -> Change | None:
        """The newest change whose first run is among the last `runs` runs, if any."""
        recent = [c for c in self.changes if c.last >= len(self.points) - runs]
        return recent[-1] if recent else None


def commit_label(point: Point, missing: str = "(no commit)") -> str:
    """The run's commit, 12 characters, `+dirty` when the tree had edits; `missing` when none was recorded."""
    if not point.git_commit:
        return missing
    return point.git_commit[:12] + ("+dirty" if point.git_dirty else "")


def select_configs(known: Sequence[str], patterns: Sequence[str] | None) -> list[str] | None:
    """The configuration keys matching any pattern (exact text or a glob such as `train/cpu/*`);
    None for no patterns (all). UsageError naming a pattern that matches nothing."""
    if not patterns:
        return None
    chosen: list[str] = []
    for pattern in patterns:
        hits = [k for k in known if k == pattern or fnmatch.fnmatchcase(k, pattern)]
        if not hits:
            listed = ", ".join(sorted(known)[:SHOWN_KEYS])
            more = f" and {len(known) - SHOWN_KEYS} more" if len(known) > SHOWN_KEYS else ""
            raise UsageError(f"unknown configuration {pattern!r}: the history holds {listed or 'none'}{more}")
        chosen += [k for k in hits if k not in chosen]
    return chosen


def select_machines(machines: dict[str, Machine], pattern: str | None) -> set[str] | None:
    """Fingerprints whose fingerprint starts with `pattern` or whose label contains it (case-blind)."""
    if not pattern:
        return None
    low = pattern.lower()
    hits = {fp for fp, m in machines.items() if fp.startswith(low) or low in m.label.lower()}
    if not hits:
        raise UsageError(
            f"unknown machine {pattern!r}: the history holds {', '.join(f'{fp} ({m.label})' for fp, m in machines.items()) or 'none'}"
        )
    return hits


def trends(
    history: History, configs: Sequence[str] | None = None, machine: str | None = None
) -> list[Series]:
    """Every series in the history (or those matching `configs` / `machine`) with its change points,
    each with the bootstrap interval of its size (from the raw samples of the runs around it)."""
    all_configs, machines = history.configs(), history.machines()
    keys = select_configs(list(all_configs), configs)
    fingerprints = select_machines(machines, machine)
    series = []
    for (fp, key), group in groupby(history.points(keys), key=lambda p: (p.fingerprint, p.config_key)):
        if fingerprints is not None and fp not in fingerprints:
            continue
        points = list(group)
        changes = detect([p.median for p in points], [p.median_rel_se for p in points])
        if changes:
            around = {i for c in changes for span in (c.before, c.after) for i in range(*span)}
            raw = history.samples_of(key, points[0].metric, [points[i].run_id for i in around])
            samples = [raw.get(p.run_id) or [p.median] for p in points]
            changes = [with_interval(c, samples) for c in changes]
        series.append(Series(machines[fp], all_configs[key], points[0].metric, points, changes))
    return series


# --- text ----------------------------------------------------------------------------------------


def describe_change(series: Series, change: Change) -> str:
    """`slower x1.12 (95% CI 1.08-1.16), step between <commit> and <commit> (run 31 of 40), p = 0.0005, 20 vs 5 runs`."""
    pts = series.points
    before, after = pts[change.first - 1], pts[change.last]
    where = f"between {commit_label(before)} and {commit_label(after)}"
    runs = (
        f"run {change.first + 1} of {len(pts)}"
        if change.kind == "step"
        else f"runs {change.first + 1}-{change.last + 1} of {len(pts)}"
    )
    interval = "" if math.isnan(change.ci_low) else f" (95% CI {change.ci_low:.3f}-{change.ci_high:.3f})"
    p = "p < 0.001" if change.p_value < 0.001 else f"p = {change.p_value:.3f}"
    n_before, n_after = change.before[1] - change.before[0], change.after[1] - change.after[0]
    return (
        f"{change.direction} x{change.ratio:.3f}{interval}, {change.kind} {where} ({runs}), {p}, "
        f"{n_before} vs {n_after} runs"
    )


def render_text(series: Sequence[Series], history_where: str, runs_total: int, last: int = 10) -> str:
    """The trend report: per machine, per configuration, the last `last` runs and every change."""
    if not series:
        return f"History {history_where}: {runs_total} runs, no timed configuration to show."
    machines = {s.machine.fingerprint for s in series}
    changes = sum(len(s.changes) for s in series)
    lines = [
        f"History {history_where}: {runs_total} runs, {len(machines)} machine(s), {len(series)} series, "
        f"{changes} change(s).",
        f"Change points: {METHOD}.",
    ]
    for fp, group in groupby(series, key=lambda s: s.machine.fingerprint):
        group = list(group)
        lines += ["", f"machine {fp}: {group[0].machine.label}"]
        for s in group:
            lines.append(f"  {str(s.config)}  ({s.metric}, {len(s.points)} runs)")
            starts = {c.first: c for c in s.changes}
            shown = range(max(0, len(s.points) - last), len(s.points))
            if shown.start > 0:
                lines.append(f"    ... {shown.start} earlier runs")
            for i in shown:
                if i in starts:
                    lines.append(f"    -- {describe_change(s, starts[i])}")
                p = s.points[i]
                lines.append(f"    {p.time_utc:%Y-%m-%d %H:%M}  {commit_label(p):<18} {p.median:>10.4g} ms")
            lines += [
                f"    earlier change: {describe_change(s, c)}" for c in s.changes if c.first < shown.start
            ]
            if not s.changes:
                few = len(s.points) < MIN_RUNS
                lines.append(f"    no change point{f' (searched from {MIN_RUNS} runs on)' if few else ''}")
    return "\n".join(lines)
