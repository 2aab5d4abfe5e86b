"""Add runs to the history: a run folder (results.csv + run.json), a run.json, or a pytest-benchmark
JSON file becomes one stored run with its records and raw samples. Idempotent: a run is identified
by a hash of its environment's timestamp, host and git commit, so the same run ingested twice (or
from its folder and its run.json) is one entry.

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

from bench.history.db import History, open_history
from bench.history.harness import MUST_MATCH, UsageError, config_key_of, load_run, timing_metric_for
from bench.history.model import Config, Machine, RecordEntry, RunEntry

# A median from fewer raw samples than this has no standard error (the order-statistic bound is empty).
MIN_SAMPLES_FOR_SE = 5
Z_95 = 1.959963984540054


def machine_of(env: Mapping[str, object]) -> Machine:
    """The machine fingerprint of a run: its CPU model, GPU name, torch and CUDA versions."""
    values = [_text(env.get(name)) for name in MUST_MATCH]
    digest = hashlib.sha256("\x1f".join(values).encode()).hexdigest()[:12]
    return Machine(digest, *values)


def run_id_of(env: Mapping[str, object], content: str) -> str:
    """A stable id: hash of the run's timestamp, host and commit; of its content when it has no timestamp."""
    stamp = _text(env.get("timestamp_utc"))
    basis = "\x1f".join([stamp, _text(env.get("host")), _text(env.get("git_commit"))]) if stamp else content
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
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower())
    number = _number(value)
    return None if number is None else bool(number)


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


def _samples_for(samples: Mapping[object, dict], key: object) -> dict[str, object]:
    """A row's raw samples, whether the loader keys them by ConfigKey or by its text."""
    found = samples.get(key)
    if found is None:
        found = samples.get(str(key))
    return dict(found or {})


def _record(row: Mapping[str, object], samples: dict[str, object]) -> RecordEntry:
    key = config_key_of(row)
    config = Config(
        key=str(key),
        workload=key.workload,
        device=key.device,
        mode=key.mode,
        batch_size=key.batch_size,
        threads=key.threads,
        output_activation=key.output_activation,
        world_size=key.world_size,
        backend=key.backend,
    )
    status = _text(row.get("status")) or "ok"
    metric = timing_metric_for(key.workload)
    raw = samples.get(metric)
    values = [float(v) for v in raw if _number(v) is not None] if isinstance(raw, list) else []
    median = float(np.median(values)) if values else _number(row.get(metric))
    if median is None or status != "ok":
        metric, median = None, None
    return RecordEntry(
        config=config,
        status=status,
        reason=_text(row.get("reason")),
        flags=_text(row.get("flags")),
        metric=metric,
        median=median,
        median_rel_se=median_rel_se(values) if metric else None,
        n_samples=len(values),
        converged=_bool(row.get("converged")),
        mae=_number(row.get("mae")),
        row={str(k): v for k, v in dict(row).items() if _text(v) != ""},  # empty cells dropped
        samples=samples,
    )


def entry_of(path: str | Path) -> RunEntry:
    """Read a run (folder, results.csv, run.json or pytest-benchmark JSON) into a storable entry."""
    return entry_from_loaded(load_run(path))


def entry_from_loaded(loaded) -> RunEntry:
    """A run already read by the harness's loader (LoadedRun: .source, .env, .frame, .samples)."""
    path = Path(loaded.source)
    env = dict(loaded.env or {})
    rows = [row.to_dict() for _, row in loaded.frame.iterrows()]
    records = [_record(row, _samples_for(loaded.samples, config_key_of(row))) for row in rows]
    seen: set[str] = set()
    for r in records:
        if r.config.key in seen:
            raise UsageError(f"{path}: the configuration {r.config.key} appears twice")
        seen.add(r.config.key)
    content = json.dumps([[r.config.key, r.median, r.samples] for r in records], sort_keys=True, default=str)
    source_file = path / "results.csv" if path.is_dir() else path
    return RunEntry(
        run_id=run_id_of(env, content),
        machine=machine_of(env),
        time_utc=_time_of(env, source_file),
        git_commit=_text(env.get("git_commit")),
        git_dirty=_bool(env.get("git_dirty")),
        host=_text(env.get("host")),
        source=str(path),
        env=env,
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
