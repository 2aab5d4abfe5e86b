"""Add runs to the history: a run folder, run.json or pytest-benchmark JSON file becomes one stored
run with its records and raw samples. Idempotent: a run's id hashes its timestamp, host and commit.

    python -m bench history ingest results/reference/* results/baselines/*/*
    python -c "from bench.history import record_run; record_run('results/latest')"
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import UsageError
from bench.history.db import History, open_history
from bench.history.model import Machine, RecordEntry, RunEntry
from bench.records import MUST_MATCH, Record, is_missing
from bench.store.load import load_run
from bench.store.run_folder import to_row

# A median from fewer raw samples than this has no standard error (the order-statistic bound is empty).
MIN_SAMPLES_FOR_SE = 5
Z_95 = 1.959963984540054


def machine_of(env: Mapping[str, object]) -> Machine:
    """The machine fingerprint of a run: its CPU model, GPU name, torch and CUDA versions."""
    values = [_text(env.get(name)) for name in MUST_MATCH]
    digest = hashlib.sha256("\x1f".join(values).encode()).hexdigest()[:12]
    return Machine(digest, *values)


def run_id_of(env: Mapping[str, object], content: str, run_uuid: object = None) -> str:
    """A stable id: hash of the run's timestamp, host and commit (and its run_uuid, which runs started
    in the same second by bench ab tell apart); of its content when it has no timestamp."""
    stamp = _text(env.get("timestamp_utc"))
    parts = [stamp, _text(env.get("host")), _text(env.get("git_commit"))] + (
        [str(run_uuid)] if run_uuid else []
    )
    basis = "\x1f".join(parts) if stamp else content
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def median_rel_se(samples: Iterable[float]) -> float | None:
    """Standard error of the median / median, distribution-free: half the width of the binomial
    order-statistic 95% interval of the median, in log units, / 1.96. Unlike a normal-theory formula
    it widens for bimodal samples, where the median jumps between modes from run to run."""
    x = np.sort(np.asarray([v for v in samples if v > 0], dtype=float))
    n = len(x)
    if n < MIN_SAMPLES_FOR_SE:
        return None
    half = Z_95 * math.sqrt(n) / 2
    low, high = max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half) - 1)
    return float((math.log(x[high]) - math.log(x[low])) / (2 * Z_95))


def _text(value: object) -> str:
    return "" if is_missing(value) else str(value)


def _time_of(env: Mapping[str, object], source: Path) -> _dt.datetime:
    """The run's UTC time from its environment; the file's modification time when it has none."""
    stamp = _text(env.get("timestamp_utc")).strip()
    if stamp:
        try:
            when = _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"{source}: unreadable timestamp_utc {stamp!r}") from None
        if when.tzinfo is not None:
            when = when.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return when
    return _dt.datetime.fromtimestamp(os.path.getmtime(source), _dt.timezone.utc).replace(tzinfo=None)


def record_entry(record: Record) -> RecordEntry:
    """A record as the history stores it: its speed's median and standard error, its results row."""
    metric = record.timing_metric if record.ok else None
    values = record.raw(metric) if metric else []
    return RecordEntry(
        config=record.key,
        status=record.status,
        reason=record.reason,
        flags=";".join(record.flags),
        metric=metric,
        median=record.number(metric) if metric else None,
        median_rel_se=median_rel_se(values) if metric else None,
        n_samples=len(values),
        converged=record.value("converged"),  # type: ignore[arg-type]
        mae=None if math.isnan(record.number("mae")) else record.number("mae"),
        row={k: v for k, v in to_row(record).items() if _text(v) != ""},  # empty cells dropped
        samples=record.samples,
    )


def entry_of(path: str | Path) -> RunEntry:
    """A run (folder, results.csv, run.json or pytest-benchmark JSON) as the history stores it;
    UsageError for an unreadable run or a configuration seen twice."""
    run = load_run(path)
    path = Path(run.source)
    records = [record_entry(r) for r in run.records]
    keys = [r.config for r in records]
    for key in keys:
        if keys.count(key) > 1:
            raise UsageError(f"{path}: the configuration {key} appears twice")
    content = json.dumps([[str(r.config), r.median, r.samples] for r in records], sort_keys=True, default=str)
    source_file = path / "results.csv" if path.is_dir() else path
    return RunEntry(
        run_id=run_id_of(run.env, content, run.settings.get("run_uuid")),
        machine=machine_of(run.env),
        time_utc=_time_of(run.env, source_file),
        git_commit=_text(run.env.get("git_commit")),
        git_dirty=run.env.get("git_dirty") if isinstance(run.env.get("git_dirty"), bool) else None,
        host=_text(run.env.get("host")),
        source=str(path),
        env=dict(run.env),
        records=records,
    )


@dataclass(frozen=True)
class Ingested:
    source: str
    run_id: str
    records: int
    added: bool  # False: the history had it already


def ingest(history: History, paths: Iterable[str | Path]) -> list[Ingested]:
    """Add each run to the history (each in its own transaction); UsageError on an unreadable run."""
    out = []
    for path in paths:
        entry = entry_of(path)
        added = history.add_run(entry)
        out.append(Ingested(str(path), entry.run_id, len(entry.records), added))
    return out


def record_run(run_dir: str | Path, db: str | Path | None = None) -> Ingested:
    """The hook `bench run` and `bench convergence` call at their end (unless --no-history): store the
    finished run folder in the history at `db` (default results/history.db)."""
    with open_history(db, create=True) as history:
        return ingest(history, [run_dir])[0]
