"""A run folder: results.csv (one row per record, units in the column names), run.json (schema
version, the environment once, settings, every record with its raw samples and notes, the derived
values) and report.md. Written after each record through a temp file and a rename, so a crash
keeps what it had; read back (bench.store.load) into a `Run` of records by compare, gate and the history.

    python -c "from bench.store.load import load_run; print(load_run('results/latest').records[0])"
"""

from __future__ import annotations

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
from bench.records import SCHEMA_VERSION, SUMMARY_STATS, ConfigKey, Record, is_missing, json_safe

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
INT_COLUMNS = ("batch_size", "threads", "world_size", "steps", "seed", "repeats", "seeds", "converged_seeds")
TIME_COLUMNS = tuple(c for c in COLUMNS if c.endswith(("_ms", "_s")) or "_ms_" in c)
# What the run's derive step computes (bench.analysis.derive): a record's `derived`, not `measured`.
DERIVED_COLUMNS = (
    "flags",
    "samples_per_s",
    "flops_per_step",
    "achieved_flops_per_s",
    "utilization",
    "ratio_to_floor",
    "speedup_vs_cpu_eager",
    "floor_mode",
    "break_even_step",
    "loss_curve_max_rel_dev",
    "lower_bound_us",
    "ratio_to_bound",
    "scaling_efficiency",
    "instructions_per_step",
    "instructions_per_call",
)
_RECORD_FIELDS = ("schema_version", "status", "reason", "notes", "seed", "steps", "repeats")
_BOOLS = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}


def cell(column: str, value: object) -> object:
    """One results cell, from results.csv (text) or run.json (JSON values), as its type: str for text
    columns, bool for converged, int or float for the rest, None when empty. ValueError, saying
    what the cell holds, for a value that is not of its column's type (a timing that cannot be read
    is not a pass)."""
    if is_missing(value) or (isinstance(value, str) and value.strip() == ""):
        return "" if column in TEXT_COLUMNS else None
    if column in TEXT_COLUMNS or column not in COLUMNS:
        return str(value)
    text = str(value).strip()
    if column in BOOL_COLUMNS:
        if isinstance(value, bool) or text.lower() in _BOOLS:
            return value if isinstance(value, bool) else _BOOLS[text.lower()]
        raise ValueError(f"{column} is {text!r}, not True or False")
    try:
        number = float(value) if not isinstance(value, bool) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if math.isnan(number) and text.lower() not in ("nan", "-nan"):
        raise ValueError(f"{column} is {text!r}, not a number")
    if column in INT_COLUMNS:
        if not number.is_integer():
            raise ValueError(f"{column} is {text!r}, not a whole number")
        return int(number)
    if column in TIME_COLUMNS and number < 0:
        raise ValueError(f"{column} is {number:g}, a negative time")
    return number


def record_from_row(row: Mapping[str, object]) -> Record:
    """A results row (results.csv or a version 1 run.json) as a Record; ValueError for a bad cell."""
    values = {c: cell(c, v) for c, v in row.items() if not str(c).startswith("env_")}
    rest = {
        c: v
        for c, v in values.items()
        if c not in KEY_COLUMNS and c not in _RECORD_FIELDS and v not in (None, "")
    }
    notes = [n for n in str(values.get("notes") or "").split(";") if n]
    measured = {c: v for c, v in rest.items() if c not in DERIVED_COLUMNS}
    derived = {c: v for c, v in rest.items() if c in DERIVED_COLUMNS}
    return _record(ConfigKey.from_row(values), values, notes, measured=measured, derived=derived)


def _record(key: ConfigKey, fields: Mapping[str, object], notes: list[str], **values: object) -> Record:
    """A Record of `key` with the fields a results row and a run.json record share (status, seed, ...)."""
    status, reason = str(fields.get("status") or "ok"), str(fields.get("reason") or "")
    counts = {name: fields.get(name) for name in ("seed", "steps", "repeats")}
    return Record(key, status, reason, notes, **counts, **values)  # type: ignore[arg-type]


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """One set of dtypes for a results table: text columns str ("" when missing), booleans
    True/False/NaN, the rest numeric."""
    df = df.copy()
    for col in df.columns:
        if col in TEXT_COLUMNS:
            df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str)
        elif col in BOOL_COLUMNS:
            df[col] = df[col].astype(object).map({True: True, False: False})
        elif col in COLUMNS:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if "world_size" in df.columns:
        df["world_size"] = df["world_size"].fillna(1)
    return df


def to_row(record: Record, derived: Mapping[str, object] | None = None) -> dict[str, object]:
    """A record flattened to results columns: summary statistics computed from its samples, then
    `derived` (its values from analysis.derive)."""
    row: dict[str, object] = dict.fromkeys(COLUMNS)
    row.update(asdict(record.key), schema_version=SCHEMA_VERSION, seed=record.seed, flags="")
    row.update(steps=record.steps, repeats=record.repeats, status=record.status, reason=record.reason)
    row["notes"] = ";".join(record.notes)
    row.update({k: v for k, v in record.measured.items() if k in COLUMNS})
    metric, summary = record.timing_metric, record.timing
    if metric and summary:
        row[metric] = summary.median
        row.update({f"{metric}_{stat}": getattr(summary, stat) for stat in SUMMARY_STATS})
    # the run's derive step (passed, or on the record); a record never derived (pytest JSON): its own
    row.update(derived if derived is not None else (record.derived or per_record(record)))
    return row


def frame(
    records: Iterable[Record], derived: Mapping[ConfigKey, Mapping[str, object]] | None = None
) -> pd.DataFrame:
    """Records as a results DataFrame in schema column order: built once, for the CSV and the tables.
    `derived`: the writer's values by key; None: each record's own."""
    rows = [to_row(r, None if derived is None else derived.get(r.key, {})) for r in records]
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


def make_run_dir(parent: str | Path, host: str, latest: str = "latest") -> tuple[Path, str | None]:
    """Create `parent/<host>-<UTC timestamp>/` and point `parent/<latest>` at it: (run folder, a note when
    `latest` is a file or folder of the user's, left alone); UsageError when the folder cannot be made."""
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
    """A record for run.json; its derived values go to the document's "derived" list, once."""
    doc = asdict(record)
    doc["key"] = asdict(record.key)
    del doc["derived"]
    return doc


def record_from_json(doc: Mapping[str, object]) -> Record:
    key = doc["key"]
    if not isinstance(key, Mapping):
        raise TypeError("a record's key is not an object")
    measured, samples = dict(doc.get("measured") or {}), dict(doc.get("samples") or {})  # type: ignore[call-overload]
    notes = [str(n) for n in doc.get("notes") or []]  # type: ignore[union-attr]
    return _record(ConfigKey(**key), doc, notes, measured=measured, samples=samples)


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
        text = json.dumps(json_safe(doc), indent=1, default=str, allow_nan=False)
        atomic_write(self.run_dir / "run.json", text)


@dataclass
class Run:
    """A run read back: its environment once, its settings, and its records (derived values on each)."""

    source: str  # the path it was read from
    env: dict[str, object]
    settings: dict[str, object]
    records: list[Record]

    @property
    def name(self) -> str:
        return Path(self.source).resolve().name if Path(self.source).is_dir() else Path(self.source).name

    @property
    def frame(self) -> pd.DataFrame:
        """The results table of these records (schema columns), for tables and figures."""
        return frame(self.records)
