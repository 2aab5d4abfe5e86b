"""A run folder: results.csv (one row per record, units in the column names), run.json (schema
version, the environment once, settings, every record with its raw samples and notes, the derived
values) and report.md. Written after each record through a temp file and a rename, so a crash
keeps what it had; read back by compare, gate and the history.

    python -c "from bench.store.load import load_run; print(load_run('results/latest').frame)"
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from bench.analysis.derive import per_record
from bench.errors import UsageError
from bench.records import READABLE_VERSIONS, SCHEMA_VERSION, ConfigKey, Record

KEY_COLUMNS = ConfigKey.columns()

COLUMNS = (
    "schema_version",
    *KEY_COLUMNS,
    "steps",  # training steps per run (train), or calls per block (inference)
    "seed",
    "repeats",  # training runs of this configuration, each from a fresh model
    "status",  # ok | skipped | failed
    "reason",  # why skipped or failed (first line of the error), else ""
    "flags",  # ";"-joined warnings: noisy, below-floor, curve-deviates, ...
    "notes",  # ";"-joined notes of the mode: which Adam, a fallback taken, a deliberate slowdown
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
    "samples_per_s",  # rows per second: batch_size (x world size) / median step or latency
    # hardware use
    "flops_per_step",  # counted FLOPs of one training step or forward
    "achieved_flops_per_s",
    "utilization",  # achieved / peak FLOP/s where the device's peak is known, else empty
    "ratio_to_floor",  # step time / the fastest hand-written floor on the same device and threads
    "floor_mode",  # which floor that was
    "speedup_vs_cpu_eager",  # CPU eager's step time at the row's thread count / this step time
    "break_even_step",  # steps after which a compiled mode's total time beats eager's
    "kernels_per_step",  # CUDA kernels launched per training step (torch.profiler, outside timed runs)
    "us_per_kernel",  # mean device time of one of them
    "graph_launch_us",  # one dependent kernel launch inside a CUDA graph, measured on this GPU
    "lower_bound_us",  # the step cannot go below max(FLOPs / peak, bytes / bandwidth, one launch)
    "ratio_to_bound",  # step time / that lower bound
    "best_steps_per_launch",  # fused: the k (steps per launch) that gave the fastest step
    "best_us_per_step",  # fused: the time per step at that k
    # distributed (workload "ddp")
    "slowest_rank_step_ms",  # median step of the slowest rank
    "allreduce_share",  # share of the step spent in all-reduce
    "scaling_efficiency",  # samples/s per process / one process's
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
    "peak_rss_bytes",  # peak resident set size during this configuration (VmHWM reset before it)
    "page_faults_per_call",  # inference: minor page faults per timed forward (near 0 when memory is reused)
    # --metric instructions (callgrind): medians over the measured regions
    "instructions_per_step",  # CPU instructions per training step
    "instructions_per_call",  # CPU instructions per inference call
    # how busy the machine was (bench.measure.machine_load)
    "load_avg_before",  # 1-minute load average before the configuration
    "load_avg_after",
    "cpu_steal_frac",  # share of CPU time stolen by the hypervisor during it
)
TEXT_COLUMNS = (
    "workload",
    "device",
    "mode",
    "output_activation",
    "backend",
    "status",
    "reason",
    "flags",
    "notes",
    "verdict",
    "floor_mode",
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
    if "world_size" in df.columns:
        df["world_size"] = df["world_size"].fillna(1)
    return df


def to_row(record: Record, derived: Mapping[str, object] | None = None) -> dict[str, object]:
    """A record flattened to results columns: summary statistics computed from its samples, then
    `derived` (its values from analysis.derive)."""
    row: dict[str, object] = dict.fromkeys(COLUMNS)
    row.update(asdict(record.key))
    row.update(
        schema_version=SCHEMA_VERSION,
        steps=record.steps,
        seed=record.seed,
        repeats=record.repeats,
        status=record.status,
        reason=record.reason,
        notes=";".join(record.notes),
        flags="",
    )
    row.update({k: v for k, v in record.measured.items() if k in COLUMNS})
    metric, summary = record.timing_metric, record.timing
    if metric and summary:
        row.update(
            {
                metric: summary.median,
                f"{metric}_iqr": summary.iqr,
                f"{metric}_p10": summary.p10,
                f"{metric}_p90": summary.p90,
                f"{metric}_min": summary.min,
            }
        )
    row.update(derived or {})
    return row


def frame(
    records: Iterable[Record], derived: Mapping[ConfigKey, Mapping[str, object]] | None = None
) -> pd.DataFrame:
    """Records as a results DataFrame in schema column order: built once, for the CSV and the tables.
    `derived` None (records read without a derive step: pytest JSON): their per-record values."""
    if derived is None:
        derived = {r.key: per_record(r) for r in records}
    rows = [to_row(r, derived.get(r.key)) for r in records]
    return normalise(pd.DataFrame(rows, columns=list(COLUMNS)))


class WriteError(UsageError):
    """A results file could not be written (disk full, permissions); said in one line, exit 2."""


def atomic_write(path: Path, text: str) -> None:
    """Write `path` through a temp file and a rename; on failure remove the temp file and raise WriteError."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"could not write {path}: {err.strerror or err}") from None


def _json_default(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _json_safe(value: object) -> object:
    """NaN and inf become null (JSON has neither), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def make_run_dir(parent: str | Path, host: str, latest: str = "latest") -> tuple[Path, str | None]:
    """Create `parent/<host>-<UTC timestamp>/` and point `parent/<latest>` at it.

    Returns (run folder, a note when `latest` was left alone: a file or folder of the user's is
    never deleted). UsageError when the folder cannot be made.
    """
    if not str(parent).strip():
        raise UsageError("--out is empty: give a folder for the run folders, e.g. --out results")
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
    return run_dir, point_latest(parent / latest, run_dir.name)


def point_latest(latest: Path, target: str) -> str | None:
    """Point the symlink `latest` at `target`; a note instead when `latest` is not ours to replace."""
    if latest.exists() and not latest.is_symlink():
        kind = "folder" if latest.is_dir() else "file"
        return f"{latest} is a {kind} of yours, not a symlink: left as it is and not pointed at this run"
    try:
        if latest.is_symlink():
            latest.unlink()
        latest.symlink_to(target, target_is_directory=True)
    except OSError as err:
        return f"could not point {latest} at this run: {err.strerror or err}"
    return None


def record_to_json(record: Record) -> dict[str, object]:
    doc = asdict(record)
    doc["key"] = asdict(record.key)
    return doc


def record_from_json(doc: Mapping[str, object]) -> Record:
    key = doc["key"]
    if not isinstance(key, Mapping):
        raise TypeError("a record's key is not an object")
    return Record(
        key=ConfigKey(**key),
        status=str(doc.get("status", "ok")),
        reason=str(doc.get("reason") or ""),
        notes=[str(n) for n in doc.get("notes") or []],
        seed=doc.get("seed"),  # type: ignore[arg-type]
        steps=doc.get("steps"),  # type: ignore[arg-type]
        repeats=doc.get("repeats"),  # type: ignore[arg-type]
        measured=dict(doc.get("measured") or {}),  # type: ignore[arg-type]
        samples=dict(doc.get("samples") or {}),  # type: ignore[arg-type]
    )


@dataclass
class RunWriter:
    """Collects records and rewrites results.csv and run.json after each one."""

    run_dir: Path
    env: dict[str, object]
    settings: dict[str, object] = field(default_factory=dict)  # the run's options, for run.json
    records: list[Record] = field(default_factory=list)
    derived: dict[ConfigKey, dict[str, object]] = field(default_factory=dict)  # analysis.derive's

    def add(self, record: Record) -> None:
        """Keep `record` with its per-record derived values (a run cut short keeps its throughput and
        noise flags; the run's derive step replaces them all at the end) and rewrite the files."""
        self.records.append(record)
        self.derived[record.key] = per_record(record)
        self.flush()

    def frame(self) -> pd.DataFrame:
        return frame(self.records, self.derived)

    @property
    def samples(self) -> dict[ConfigKey, dict[str, object]]:
        return {r.key: r.samples for r in self.records}

    def flush(self) -> None:
        atomic_write(self.run_dir / "results.csv", self.frame().to_csv(index=False))
        doc = {
            "schema_version": SCHEMA_VERSION,
            "env": self.env,
            "settings": self.settings,
            "records": [record_to_json(r) for r in self.records],
            "derived": [{"key": asdict(k), "values": v} for k, v in self.derived.items()],
        }
        text = json.dumps(_json_safe(doc), indent=1, default=_json_default, allow_nan=False)
        atomic_write(self.run_dir / "run.json", text)


@dataclass
class LoadedRun:
    source: str  # the path it was read from
    frame: pd.DataFrame  # schema columns, normalised dtypes
    env: dict[str, object]
    samples: dict[ConfigKey, dict[str, object]]  # raw samples per configuration ({} from a CSV alone)

    @property
    def name(self) -> str:
        return Path(self.source).resolve().name if Path(self.source).is_dir() else Path(self.source).name

    def raw(self, key: ConfigKey, metric: str) -> list[float]:
        """The raw samples of `metric` for `key`, [] when there are none."""
        return list(self.samples.get(key, {}).get(metric) or [])  # type: ignore[call-overload]


def read_csv(path: Path) -> pd.DataFrame:
    """results.csv read back with the types it was written with; env_* columns of version 1 dropped."""
    df = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
    df = df[[c for c in df.columns if not c.startswith("env_")]]
    if "schema_version" not in df.columns:
        return df
    return normalise(df.reindex(columns=[*COLUMNS, *(c for c in df.columns if c not in COLUMNS)]))


def check_schema(version: object, source: Path) -> int:
    """The schema version as an int, or UsageError for anything this harness cannot read."""
    if version is None or isinstance(version, bool):
        raise UsageError(f"{source}: no readable schema_version; is this a sumnet-bench results file?")
    try:
        number = float(version)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number) or number != int(number) or int(number) not in READABLE_VERSIONS:
        raise UsageError(f"{source}: schema version {version}; this harness reads versions 1 and 2")
    return int(number)


def check_columns(df: pd.DataFrame, source: Path) -> None:
    required = ("workload", "device", "mode", "status")
    missing = [c for c in required if c not in df.columns or df[c].replace("", None).isna().all()]
    if missing:
        raise UsageError(f"{source}: results without the column(s) {', '.join(missing)}")


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not readable JSON ({err})") from None


def _env_of(doc: Mapping[str, object], path: Path) -> dict[str, object]:
    env = doc.get("env", {})
    if not isinstance(env, dict):
        raise UsageError(f"{path}: its env is not an object")
    return env


def _numbers(values: object, what: str, path: Path) -> list[float]:
    """Raw samples as floats; UsageError when they are not numbers."""
    if not isinstance(values, list):
        raise UsageError(f"{path}: the raw samples of {what} are not a list")
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise UsageError(f"{path}: the raw samples of {what} are not numbers") from None
    if any(not math.isfinite(v) or v < 0 for v in out):
        raise UsageError(f"{path}: the raw samples of {what} hold a negative or non-finite time")
    return out


def _checked_samples(samples: object, what: str, path: Path) -> dict[str, object]:
    if not isinstance(samples, dict):
        raise UsageError(f"{path}: the samples of {what} are not an object")
    out = dict(samples)
    for metric in ("step_ms", "latency_ms", "instructions_per_step", "instructions_per_call"):
        if metric in out and out[metric] is not None:
            out[metric] = _numbers(out[metric], f"{what} {metric}", path)
    return out


def from_run_json(
    doc: dict, path: Path
) -> tuple[pd.DataFrame, dict[str, object], dict[ConfigKey, dict[str, object]]]:
    """A run.json's frame, env and samples, version 1 (rows) or 2 (records)."""
    version = check_schema(doc.get("schema_version"), path)
    env = _env_of(doc, path)
    try:
        if version == 1:
            rows = [r["row"] for r in doc["rows"]]
            df = read_rows(rows)
            samples = {
                ConfigKey.from_row(r["row"]): _checked_samples(
                    r.get("samples", {}), str(ConfigKey.from_row(r["row"])), path
                )
                for r in doc["rows"]
            }
            return df, env, samples
        records = [record_from_json(r) for r in doc["records"]]
        stored = {ConfigKey(**d["key"]): dict(d["values"]) for d in doc.get("derived") or []}
    except (KeyError, TypeError, AttributeError, ValueError):
        raise UsageError(
            f"{path}: a run.json whose records are not in the version {version} layout"
        ) from None
    samples = {r.key: _checked_samples(r.samples, str(r.key), path) for r in records}
    # a run.json of an older harness kept the per-record values out of "derived"
    derived = {r.key: {**per_record(r), **stored.get(r.key, {})} for r in records}
    return frame(records, derived), env, samples


def read_rows(rows: list[dict]) -> pd.DataFrame:
    """Version 1 row dicts as a normalised frame."""
    df = pd.DataFrame(rows)
    return normalise(df.reindex(columns=[*COLUMNS, *(c for c in df.columns if c not in COLUMNS)]))


def load_csv_with_json(csv_path: Path, json_path: Path, source: Path) -> LoadedRun:
    try:
        df = read_csv(csv_path)
    except (OSError, ValueError) as err:
        raise UsageError(f"{csv_path}: not a readable CSV ({err})") from None
    if "schema_version" not in df.columns or df.empty:
        raise UsageError(f"{csv_path}: not a sumnet-bench results.csv (no schema_version column or no rows)")
    raw_versions = pd.read_csv(csv_path, dtype=object, keep_default_na=False, usecols=["schema_version"])
    for version in set(raw_versions["schema_version"]):
        check_schema(version if version != "" else None, csv_path)
    check_columns(df, csv_path)
    _check_complete(csv_path)
    _check_values(csv_path, df)
    env: dict[str, object] = {}
    samples: dict[ConfigKey, dict[str, object]] = {}
    if json_path.exists():
        doc = read_json(json_path)
        if isinstance(doc, dict):
            _, env, samples = from_run_json(doc, json_path)
    return LoadedRun(str(source), df, env, samples)


TIME_COLUMNS = tuple(c for c in COLUMNS if c.endswith(("_ms", "_s")) or "_ms_" in c)


def _check_values(csv_path: Path, df: pd.DataFrame) -> None:
    """Refuse time cells that are text or negative: a timing that cannot be read is not a pass."""
    raw = pd.read_csv(csv_path, dtype=object, keep_default_na=False)
    for column in (c for c in TIME_COLUMNS if c in raw.columns):
        text = raw[column].astype(str).str.strip()
        unreadable = (text != "") & df[column].isna() & ~text.str.lower().isin(["nan", "inf"])
        if unreadable.any():
            line = int(unreadable.idxmax()) + 2
            raise UsageError(
                f"{csv_path}: line {line}: {column} is {text[unreadable].iloc[0]!r}, not a number"
            )
        negative = df[column] < 0
        if negative.any():
            line = int(negative.idxmax()) + 2
            raise UsageError(
                f"{csv_path}: line {line}: {column} is {df[column][negative].iloc[0]:g}, a negative time"
            )


def _check_complete(csv_path: Path) -> None:
    """Refuse a CSV cut mid-row (a crash, a truncated copy): every row has the header's field count."""
    with csv_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise UsageError(
                f"{csv_path}: line {number} has {len(row)} fields, the header {len(rows[0])}; a truncated results.csv?"
            )
