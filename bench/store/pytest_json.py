"""Read a pytest-benchmark JSON file (`pytest --benchmark-json=FILE`) into the results schema.

Each benchmark becomes one record, keyed by its `extra_info` (the project's suite sets the key's
columns), else its `params`, else its name. The time per call is `step_ms` for training and
`latency_ms` for the rest; `stats.data` (seconds per call) becomes the raw samples in ms.

    python -c "import sys; from bench.store.load import load_run; print(load_run(sys.argv[1]).records)" bench.json
"""

from __future__ import annotations

from pathlib import Path

from bench.analysis.derive import per_record
from bench.errors import UsageError
from bench.records import ConfigKey, Record, timing_metric_for
from bench.store.run_folder import Run

# machine_info keys taken as they are when a suite adds them (e.g. through the
# pytest_benchmark_update_machine_info hook with bench.measure.environment.machine()).
_ENV_FIELDS = (
    "host",
    "os",
    "cpu_model",
    "cpu_cores",
    "threads",
    "gpu_name",
    "gpu_count",
    "driver_version",
    "cuda_version",
    "torch_version",
    "numpy_version",
    "python_version",
    "git_commit",
    "git_dirty",
    "harness_version",
)


def _env(doc: dict, source: Path) -> dict[str, object]:
    machine = doc.get("machine_info")
    if not isinstance(machine, dict) or not machine:
        raise UsageError(
            f"{source}: a pytest-benchmark file without machine_info: which machine ran it is unknown"
        )
    cpu = machine.get("cpu") or {}
    commit = doc.get("commit_info") or {}
    derived = {
        "host": machine.get("node"),
        "os": " ".join(str(machine[k]) for k in ("system", "release") if machine.get(k)) or None,
        "cpu_model": cpu.get("brand_raw") or machine.get("processor") or None,
        "cpu_cores": cpu.get("count"),
        "python_version": machine.get("python_version"),
        "git_commit": commit.get("id"),
        "git_dirty": commit.get("dirty"),
        "timestamp_utc": doc.get("datetime"),
    }
    given = {k: machine[k] for k in _ENV_FIELDS if k in machine}  # the suite's own values come first
    env: dict[str, object] = {k: v for k, v in derived.items() if v is not None} | given
    env["source_format"] = f"pytest-benchmark {doc.get('version', '?')} ({source.name})"
    return env


def _key(bench: dict, source: Path) -> ConfigKey:
    """The configuration: extra_info first, then params, else the benchmark's name as workload."""
    extra, params = bench.get("extra_info") or {}, bench.get("params") or {}
    config = {c: extra.get(c, params.get(c)) for c in ConfigKey.columns()}
    if not config["workload"]:
        config["workload"] = bench.get("name") or bench.get("fullname")
    if not config["workload"]:
        raise UsageError(f"{source}: a benchmark without a name (and no workload in extra_info or params)")
    try:
        return ConfigKey.from_row(config)
    except (TypeError, ValueError):
        raise UsageError(
            f"{source}: benchmark {bench.get('name')!r}: a batch_size, threads or world_size that is not a number"
        ) from None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _record(bench: dict, source: Path) -> Record:
    key = _key(bench, source)
    stats = bench.get("stats") or {}
    name = bench.get("fullname") or bench.get("name") or "?"
    median = _number(stats.get("median"))
    if median is None or median < 0:
        raise UsageError(f"{source}: benchmark {name} has no stats.median (or a negative one)")
    metric = timing_metric_for(key.workload)
    # Our suite times a block of calls per round and says how many in extra_info: per call, like the harness.
    to_ms = 1e3 / max(1, int((bench.get("extra_info") or {}).get("calls_per_round", 1)))
    try:
        data_ms = [float(v) * to_ms for v in stats.get("data") or []]
    except (TypeError, ValueError):
        raise UsageError(f"{source}: benchmark {name} has raw data that are not numbers") from None
    if data_ms:
        return Record(key=key, samples={metric: data_ms})
    # saved without data: the file's own summary is all there is
    summary = {f"{metric}_{stat}": _number(stats.get(stat)) for stat in ("min", "iqr")}
    measured = {metric: median, **{name: v for name, v in summary.items() if v is not None}}
    return Record(key=key, measured={name: v * to_ms for name, v in measured.items()})


def read_pytest_benchmark(doc: dict, source: str | Path) -> Run:
    """A pytest-benchmark JSON document as a Run of records in the results schema."""
    source = Path(source)
    benchmarks = doc.get("benchmarks")
    if not isinstance(benchmarks, list) or not benchmarks or not all(isinstance(b, dict) for b in benchmarks):
        raise UsageError(f"{source}: a pytest-benchmark file without benchmarks")
    records: list[Record] = []
    for bench in benchmarks:
        record = _record(bench, source)
        if any(r.key == record.key for r in records):
            raise UsageError(f"{source}: two benchmarks map to the same configuration {record.key}")
        record.derived = per_record(record)
        records.append(record)
    return Run(str(source), _env(doc, source), {}, records)
