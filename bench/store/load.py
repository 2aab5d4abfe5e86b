"""Read any results source into a LoadedRun: a run folder, its results.csv or run.json, or a
pytest-benchmark JSON file. Bad or corrupt input is a UsageError with one line.

    python -c "from bench.store.load import load_run; print(load_run('results/latest').frame)"
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import UsageError
from bench.store.pytest_json import is_pytest_benchmark, read_pytest_benchmark
from bench.store.run_folder import LoadedRun, check_columns, from_run_json, load_csv_with_json, read_json


def load_run(path: str | Path) -> LoadedRun:
    """Read a run folder, its results.csv or run.json, or a pytest-benchmark JSON file."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_dir():
        if not (path / "results.csv").exists():
            raise UsageError(f"{path}: no results.csv in this folder")
        return load_csv_with_json(path / "results.csv", path / "run.json", source=path)
    if path.suffix == ".csv":
        return load_csv_with_json(path, path.with_name("run.json"), source=path)
    if path.suffix != ".json":
        raise UsageError(f"{path}: expected a results folder, a .csv or a .json file")
    doc = read_json(path)
    if is_pytest_benchmark(doc):
        return read_pytest_benchmark(doc, source=path)
    if isinstance(doc, dict) and ("records" in doc or "rows" in doc):
        df, env, samples = from_run_json(doc, path)
        check_columns(df, path)
        return LoadedRun(str(path), df, env, samples)
    raise UsageError(f"{path}: neither a run.json nor a pytest-benchmark JSON file")
