"""Read any results source into a `Run` of records: a run folder, its results.csv or run.json, or a
pytest-benchmark JSON file. Each file is parsed once, each cell by one parser (run_folder.cell);
bad or corrupt input is a UsageError with one line.

    python -c "from bench.store.load import load_run; print(load_run('results/latest').records[0])"
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from bench.analysis.derive import per_record
from bench.errors import UsageError
from bench.records import READABLE_VERSIONS, ConfigKey, Record
from bench.store.pytest_json import read_pytest_benchmark
from bench.store.run_folder import Run, record_from_json, record_from_row


def load_run(path: str | Path) -> Run:
    """Read a run folder, its results.csv or run.json, or a pytest-benchmark JSON file."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_dir() and not (path / "results.csv").exists():
        raise UsageError(f"{path}: no results.csv in this folder")
    if path.is_dir() or path.suffix == ".csv":
        return _csv_with_json(path / "results.csv" if path.is_dir() else path, source=path)
    if path.suffix != ".json":
        raise UsageError(f"{path}: expected a results folder, a .csv or a .json file")
    doc = read_json(path)
    if isinstance(doc, dict) and "benchmarks" in doc:  # pytest --benchmark-json
        return read_pytest_benchmark(doc, source=path)
    if isinstance(doc, dict) and ("records" in doc or "rows" in doc):
        run = from_run_json(doc, path)
        _check_required(run.records, path)
        return run
    raise UsageError(f"{path}: neither a run.json nor a pytest-benchmark JSON file")


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not readable JSON ({err})") from None


def check_schema(version: object, source: Path) -> int:
    """The schema version as an int, or UsageError for anything this harness cannot read."""
    if version is None or version == "" or isinstance(version, bool):
        raise UsageError(f"{source}: no readable schema_version; is this a sumnet-bench results file?")
    try:
        number = float(version)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number) or number != int(number) or int(number) not in READABLE_VERSIONS:
        raise UsageError(f"{source}: schema version {version}; this harness reads versions 1 and 2")
    return int(number)


def _check_required(records: list[Record], source: Path) -> None:
    missing = [c for c in ("workload", "device", "mode") if not any(getattr(r.key, c) for r in records)]
    if missing:
        raise UsageError(f"{source}: results without the column(s) {', '.join(missing)}")


def _checked_samples(samples: object, what: str, path: Path) -> dict[str, object]:
    """The samples of one record with its times and counts as floats; UsageError for any that are not
    a list of non-negative, finite numbers."""
    if not isinstance(samples, dict):
        raise UsageError(f"{path}: the samples of {what} are not an object")
    out = dict(samples)
    for metric in ("step_ms", "latency_ms", "instructions_per_step", "instructions_per_call"):
        if out.get(metric) is None:
            continue
        if not isinstance(out[metric], list):
            raise UsageError(f"{path}: the raw samples of {what} {metric} are not a list")
        try:
            out[metric] = [float(v) for v in out[metric]]
        except (TypeError, ValueError):
            raise UsageError(f"{path}: the raw samples of {what} {metric} are not numbers") from None
        if any(not math.isfinite(v) or v < 0 for v in out[metric]):
            raise UsageError(
                f"{path}: the raw samples of {what} {metric} hold a negative or non-finite value"
            )
    return out


def from_run_json(doc: dict, path: Path) -> Run:
    """A run.json's records, version 1 (rows) or 2 (records with the derived values beside them)."""
    version = check_schema(doc.get("schema_version"), path)
    env, settings = doc.get("env", {}), doc.get("settings") or {}
    if not isinstance(env, dict):
        raise UsageError(f"{path}: its env is not an object")
    derived: dict[ConfigKey, dict] = {}
    try:
        if version == 1:
            records = [record_from_row(r["row"]) for r in doc["rows"]]
            raw = [r.get("samples", {}) for r in doc["rows"]]
        else:
            records = [record_from_json(r) for r in doc["records"]]
            raw = [r.samples for r in records]
            derived = {ConfigKey(**d["key"]): dict(d["values"]) for d in doc.get("derived") or []}
    except (KeyError, TypeError, AttributeError):
        raise UsageError(
            f"{path}: a run.json whose records are not in the version {version} layout"
        ) from None
    except ValueError as err:
        raise UsageError(f"{path}: {err}") from None
    for record, samples in zip(records, raw):
        record.samples = _checked_samples(samples, str(record.key), path)
        if version > 1:  # version 1 rows hold their derived values already
            record.derived = {**per_record(record), **derived.get(record.key, {})}
    return Run(str(path), env, dict(settings), records)


def _rows(csv_path: Path) -> list[dict[str, str]]:
    """results.csv's rows as text cells; UsageError for a file cut mid-row or without schema_version."""
    try:
        with csv_path.open(newline="") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"{csv_path}: not a readable CSV ({err})") from None
    header = lines[0] if lines else []
    if "schema_version" not in header or len(lines) < 2:
        raise UsageError(f"{csv_path}: not a sumnet-bench results.csv (no schema_version column or no rows)")
    for number, line in enumerate(lines[1:], start=2):
        if len(line) != len(header):
            raise UsageError(
                f"{csv_path}: line {number} has {len(line)} fields, the header {len(header)}; a truncated results.csv?"
            )
    return [dict(zip(header, line)) for line in lines[1:]]


def _csv_with_json(csv_path: Path, source: Path) -> Run:
    """results.csv's records (the CSV is what the user may have edited), with the raw samples,
    settings and environment of the run.json beside it when there is one."""
    records = []
    for number, row in enumerate(_rows(csv_path), start=2):
        check_schema(row["schema_version"].strip() or None, csv_path)
        try:
            records.append(record_from_row(row))
        except ValueError as err:
            raise UsageError(f"{csv_path}: line {number}: {err}") from None
    _check_required(records, csv_path)
    run = Run(str(source), {}, {}, records)
    json_path = csv_path.with_name("run.json")
    doc = read_json(json_path) if json_path.exists() else None
    if isinstance(doc, dict):
        stored = from_run_json(doc, json_path)
        samples = {r.key: r.samples for r in stored.records}
        for record in records:
            record.samples = samples.get(record.key, {})
        run.env, run.settings = stored.env, stored.settings
    return run
