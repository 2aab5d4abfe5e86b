"""The results schema, and writing and reading a run's folder.

A run folder holds `results.csv` (one row per configuration and workload, units in the column
names), `run.json` (schema version, environment, raw samples per row) and `report.md`. Rows are
written as they are measured, through a temp file and a rename, so a crash keeps what it had.

    python -c "from bench.results import load_run; print(load_run('results/latest').frame)"
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sumnet.cli_args import UsageError

SCHEMA_VERSION = 1

# A configuration is identified by these; compare and gate match rows on them.
KEY_COLUMNS = ("workload", "device", "mode", "batch_size", "threads", "output_activation")

COLUMNS = (
    "schema_version",
    *KEY_COLUMNS,
    "steps",  # training steps per run (train), or calls per block (inference)
    "seed",
    "repeats",  # training runs of this configuration, each from a fresh model
    "status",  # ok | skipped | failed
    "reason",  # why skipped or failed (first line of the error), else ""
    "flags",  # ";"-joined warnings: noisy, below-floor, curve-deviates, ...
    # training
    "first_call_s",  # first step of the first repeat: compilation and warm-up included
    "step_ms",  # steady-state step time, median of the raw block samples
    "step_ms_iqr",
    "step_ms_p10",
    "step_ms_p90",
    "step_ms_min",
    "run_s",  # first repeat's whole training run: all steps, first call included, evaluation excluded
    "run_warm_s",  # median whole run of the repeats after the first (compiled code cached)
    "steps_to_target",  # first evaluated step where held-out MAE < target (median over repeats)
    "time_to_target_s",  # training time up to that step, evaluation excluded
    "eval_s",  # time spent evaluating during training, reported apart
    "final_loss",
    "mae",  # held-out MAE of the final model, sum units (median over repeats)
    "exact_accuracy",  # share of held-out rows predicted to the exact sum
    "converged",  # every repeat's final model below the target MAE
    "verdict",  # why (not) converged
    "loss_curve_max_rel_dev",  # largest relative deviation of the loss curve from eager, same device/seed
    # inference
    "latency_ms",  # one forward of batch_size rows, median of the raw block samples
    "latency_ms_iqr",
    "latency_ms_p10",
    "latency_ms_p90",
    "latency_ms_min",
    "samples_per_s",  # rows per second: batch_size / median step or latency
    # hardware use
    "flops_per_step",  # counted FLOPs of one training step or forward
    "achieved_flops_per_s",
    "utilization",  # achieved / peak FLOP/s where the device's peak is known, else empty
    "ratio_to_fastest",  # step time / fastest mode's on the same device and threads
    "ratio_to_floor",  # step time / the numpy-reference floor on the same device and threads
    "break_even_step",  # steps after which a compiled mode's total time beats eager's
    # convergence study (workload "convergence"): one row per device, mode and output activation
    "seeds",  # seeds trained
    "converged_seeds",
    "convergence_rate",  # converged_seeds / seeds
    "convergence_rate_ci_low",  # 95% Wilson interval
    "convergence_rate_ci_high",
    "steps_to_target_trimmed",  # MLPerf-style: drop fastest and slowest seed, mean of the rest
    "time_to_target_trimmed_s",
    "mae_worst",  # worst final MAE among converged seeds
    "exact_accuracy_worst",
    "not_converged",  # "seed: reason" for each seed that never converged, ";"-joined
    # memory
    "peak_mem_bytes",  # torch.cuda.max_memory_allocated, CUDA only
    "peak_rss_bytes",  # process peak resident set size when the row was written
)

ENV_PREFIX = "env_"
TEXT_COLUMNS = (
    "workload",
    "device",
    "mode",
    "output_activation",
    "status",
    "reason",
    "flags",
    "verdict",
    "not_converged",
)
BOOL_COLUMNS = ("converged",)
_BOOLS = {True: True, False: False, "True": True, "False": False, "true": True, "false": False}


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """One set of dtypes for a results frame, whether built in memory or read from CSV:
    text columns are str ("" when missing), booleans True/False/NaN, the rest numeric."""
    df = df.copy()
    for col in df.columns:
        if col in TEXT_COLUMNS:
            df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str)
        elif col in BOOL_COLUMNS:
            df[col] = df[col].astype(object).map(_BOOLS)
        elif col in COLUMNS:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def row_key(row: dict | pd.Series) -> str:
    """A stable text key for a configuration, e.g. `train/cpu/eager/32/2/relu`."""
    return "/".join(str(row.get(c, "")) for c in KEY_COLUMNS)


def new_row(**values: object) -> dict[str, object]:
    """A row dict with every schema column, unknown names refused."""
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not in the results schema: {sorted(unknown)}")
    row: dict[str, object] = dict.fromkeys(COLUMNS)
    row.update(schema_version=SCHEMA_VERSION, status="ok", reason="", flags="")
    row.update(values)
    return row


def frame(rows: Iterable[dict], env: dict | None = None) -> pd.DataFrame:
    """Rows as a DataFrame in schema column order, with env fields as `env_*` columns."""
    df = pd.DataFrame(list(rows))
    df = normalise(df.reindex(columns=[*COLUMNS, *(c for c in df.columns if c not in COLUMNS)]))
    for name, value in (env or {}).items():
        df[ENV_PREFIX + name] = "" if value is None else str(value)  # as a CSV reads it back
    return df


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _json_default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def make_run_dir(parent: str | Path, host: str) -> Path:
    """Create `parent/<host>-<UTC timestamp>/`, point `parent/latest` at it; UsageError if unwritable."""
    parent = Path(parent)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = parent / f"{host}-{stamp}"
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / ".write-test").write_text("")
        (run_dir / ".write-test").unlink()
    except FileExistsError:
        raise UsageError(f"{run_dir} exists already; wait a second or choose another --out") from None
    except OSError as err:
        raise UsageError(f"cannot write the output folder {run_dir}: {err.strerror or err}") from None
    latest = parent / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(run_dir.name, target_is_directory=True)
    except OSError:
        pass  # a filesystem without symlinks still gets the run folder
    return run_dir


@dataclass
class RunWriter:
    """Collects rows and rewrites results.csv and run.json after each one."""

    run_dir: Path
    env: dict[str, object]
    settings: dict[str, object] = field(default_factory=dict)  # the run's options, for run.json
    rows: list[dict[str, object]] = field(default_factory=list)
    samples: dict[str, dict[str, object]] = field(default_factory=dict)  # row key -> raw samples

    def add(self, row: dict[str, object], samples: dict[str, object] | None = None) -> None:
        self.rows.append(row)
        if samples:
            self.samples[row_key(row)] = samples
        self.flush()

    def frame(self) -> pd.DataFrame:
        return frame(self.rows, self.env)

    def flush(self) -> None:
        _atomic_write(self.run_dir / "results.csv", self.frame().to_csv(index=False))
        doc = {
            "schema_version": SCHEMA_VERSION,
            "env": self.env,
            "settings": self.settings,
            "rows": [
                {"key": row_key(r), "row": r, "samples": self.samples.get(row_key(r), {})} for r in self.rows
            ],
        }
        _atomic_write(self.run_dir / "run.json", json.dumps(doc, indent=1, default=_json_default))


@dataclass
class LoadedRun:
    source: str  # the path it was read from
    frame: pd.DataFrame  # schema columns (+ env_* columns)
    env: dict[str, object]
    samples: dict[str, dict[str, object]]  # row key -> raw samples ({} when only a CSV was given)

    @property
    def name(self) -> str:
        return Path(self.source).resolve().name if Path(self.source).is_dir() else Path(self.source).name


def read_csv(path: Path) -> pd.DataFrame:
    """results.csv read back with the types it was written with."""
    df = normalise(pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""]))
    env_columns = [c for c in df.columns if c.startswith(ENV_PREFIX)]
    df[env_columns] = df[env_columns].fillna("").astype(str)
    return df


def _check_schema(version: object, source: Path) -> None:
    if version is None:
        raise UsageError(f"{source}: no readable schema_version; is this a sumnet-bench results file?")
    if version != SCHEMA_VERSION:
        raise UsageError(f"{source}: schema version {version}, this harness reads version {SCHEMA_VERSION}")


def _check_columns(df: pd.DataFrame, source: Path) -> None:
    missing = [c for c in (*KEY_COLUMNS, "status") if c not in df.columns or df[c].isna().all()]
    if missing:
        raise UsageError(f"{source}: results without the column(s) {', '.join(missing)}")


def load_run(path: str | Path) -> LoadedRun:
    """Read a run folder, its results.csv or run.json, or a pytest-benchmark JSON file."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_dir():
        if not (path / "results.csv").exists():
            raise UsageError(f"{path}: no results.csv in this folder")
        return _load_csv_with_json(path / "results.csv", path / "run.json", source=path)
    if path.suffix == ".csv":
        return _load_csv_with_json(path, path.with_name("run.json"), source=path)
    if path.suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"{path}: not readable JSON ({err})") from None
        if isinstance(doc, dict) and "benchmarks" in doc:
            from bench.pytest_json import read_pytest_benchmark

            return read_pytest_benchmark(doc, source=path)
        if isinstance(doc, dict) and "rows" in doc:
            _check_schema(doc.get("schema_version"), path)
            try:
                rows = [r["row"] for r in doc["rows"]]
                samples = {r["key"]: r.get("samples", {}) for r in doc["rows"]}
            except (KeyError, TypeError, AttributeError):
                raise UsageError(
                    f"{path}: a run.json whose rows are not {{key, row, samples}} objects"
                ) from None
            loaded = LoadedRun(str(path), frame(rows, doc.get("env", {})), doc.get("env", {}), samples)
            _check_columns(loaded.frame, path)
            return loaded
        raise UsageError(f"{path}: neither a run.json nor a pytest-benchmark JSON file")
    raise UsageError(f"{path}: expected a results folder, a .csv or a .json file")


def _load_csv_with_json(csv_path: Path, json_path: Path, source: Path) -> LoadedRun:
    try:
        df = read_csv(csv_path)
    except (OSError, ValueError) as err:
        raise UsageError(f"{csv_path}: not a readable CSV ({err})") from None
    if "schema_version" not in df.columns or df.empty:
        raise UsageError(f"{csv_path}: not a sumnet-bench results.csv (no schema_version column or no rows)")
    version = df["schema_version"].iloc[0]
    _check_schema(None if pd.isna(version) else int(version), csv_path)
    _check_columns(df, csv_path)
    env: dict[str, object] = {
        c[len(ENV_PREFIX) :]: df[c].iloc[0] for c in df.columns if c.startswith(ENV_PREFIX)
    }
    samples: dict[str, dict[str, object]] = {}
    if json_path.exists():
        try:
            doc = json.loads(json_path.read_text())
            samples = {r["key"]: r.get("samples", {}) for r in doc.get("rows", [])}
            env = doc.get("env", env)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # the CSV alone still compares, without raw samples
    return LoadedRun(str(source), df, env, samples)
