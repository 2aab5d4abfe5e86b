"""Read a pytest-benchmark JSON file (`pytest --benchmark-json=FILE`) into the results schema.

Each benchmark becomes one row. Its configuration comes from `extra_info` (the project's suite sets
workload, device, mode, batch_size, threads and output_activation), else from `params`; a benchmark
with neither is keyed by its name. pytest-benchmark times one call, so the time per call lands in
`step_ms` for the train workload and in `latency_ms` for every other one; `stats.data` (seconds per
call, present unless the file was written without data) becomes the raw samples in milliseconds.

    python -c "import json, sys; from bench.pytest_json import read_pytest_benchmark as r; print(r(json.load(open(sys.argv[1])), sys.argv[1]).frame)" bench.json
"""

from __future__ import annotations

from pathlib import Path

from bench.results import KEY_COLUMNS, LoadedRun, frame, new_row, row_key
from bench.stats import NOISY_IQR_RATIO, Summary
from sumnet.cli_args import UsageError

# machine_info keys taken as they are when a suite adds them (e.g. through the
# pytest_benchmark_update_machine_info hook with bench.environment.collect()).
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


def metric_for(workload: str) -> str:
    """The schema column a pytest-benchmark time per call goes to."""
    return "step_ms" if workload == "train" else "latency_ms"


def _env(doc: dict, source: Path) -> dict[str, object]:
    machine = doc.get("machine_info") or {}
    cpu = machine.get("cpu") or {}
    commit = doc.get("commit_info") or {}
    env: dict[str, object] = {k: machine[k] for k in _ENV_FIELDS if k in machine}
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
    for name, value in derived.items():
        if value is not None and name not in env:
            env[name] = value
    env["source_format"] = f"pytest-benchmark {doc.get('version', '?')} ({source.name})"
    return env


def _config(bench: dict) -> dict[str, object]:
    """The key columns: extra_info first, then params, else the benchmark's name as workload."""
    extra, params = bench.get("extra_info") or {}, bench.get("params") or {}
    config: dict[str, object] = {}
    for column in KEY_COLUMNS:
        value = extra.get(column, params.get(column))
        config[column] = "" if value is None else value
    if not config["workload"]:
        config["workload"] = bench.get("name") or bench.get("fullname") or "?"
    return config


def _row(bench: dict, source: Path) -> tuple[dict[str, object], dict[str, object]]:
    config = _config(bench)
    stats = bench.get("stats") or {}
    name = bench.get("fullname") or bench.get("name") or "?"
    if not isinstance(stats.get("median"), (int, float)):
        raise UsageError(f"{source}: benchmark {name} has no stats.median")
    metric = metric_for(str(config["workload"]))
    # Our suite times a block of calls per round and says how many in extra_info: per call, like the harness.
    to_ms = 1e3 / max(1, int((bench.get("extra_info") or {}).get("calls_per_round", 1)))
    median_ms = stats["median"] * to_ms
    values: dict[str, object] = {metric: median_ms}
    for stat in ("min", "iqr"):
        if isinstance(stats.get(stat), (int, float)):
            values[f"{metric}_{stat}"] = stats[stat] * to_ms
    data_ms = [float(v) * to_ms for v in stats.get("data") or []]
    if data_ms:
        summary = Summary.of(data_ms)
        values[f"{metric}_p10"], values[f"{metric}_p90"] = summary.p10, summary.p90
    batch = config["batch_size"]
    if isinstance(batch, (int, float)) and batch > 0 and median_ms > 0:
        values["samples_per_s"] = batch / (median_ms / 1e3)
    iqr = values.get(f"{metric}_iqr")
    noisy = isinstance(iqr, float) and median_ms > 0 and iqr / median_ms > NOISY_IQR_RATIO
    row = new_row(**config, **values, flags="noisy" if noisy else "")
    return row, ({metric: data_ms} if data_ms else {})


def read_pytest_benchmark(doc: dict, source: str | Path) -> LoadedRun:
    """A pytest-benchmark JSON document as a LoadedRun in the results schema (rows get the current version)."""
    source = Path(source)
    benchmarks = doc.get("benchmarks")
    if not isinstance(benchmarks, list) or not benchmarks:
        raise UsageError(f"{source}: a pytest-benchmark file without benchmarks")
    rows, samples = [], {}
    for bench in benchmarks:
        row, raw = _row(bench, source)
        key = row_key(row)
        if key in samples:
            raise UsageError(f"{source}: two benchmarks map to the same configuration {key}")
        rows.append(row)
        samples[key] = raw
    env = _env(doc, source)
    return LoadedRun(str(source), frame(rows, env), env, samples)
