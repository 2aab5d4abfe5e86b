"""The result model: a frozen configuration key, one record per measured configuration, and the
rules every reader shares (which sample is a record's speed, which environment fields must match).
Statistics are computed from a record's raw samples on demand, never stored beside them.

    python -c "from bench.records import ConfigKey; print(ConfigKey('train', 'cpu', 'eager', 32, 1))"
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

from bench.analysis.stats import Summary

SCHEMA_VERSION = 2  # 2: world_size, backend and notes columns; environment once per run (run.json)
READABLE_VERSIONS = (1, 2)  # version 1 run folders (results/reference, results/baselines) still load

TIMING_METRIC = {"train": "step_ms", "ddp": "step_ms"}  # raw-sample name of each workload's speed, ms
SUMMARY_STATS = ("iqr", "p10", "p90", "min")  # `step_ms_iqr`, ...: computed from the raw samples


def timing_metric_for(workload: str) -> str:
    """The one rule for a record's speed: step_ms for training, latency_ms for any other workload."""
    return TIMING_METRIC.get(workload, "latency_ms")


# Environment fields that must agree for a timing comparison to mean "the code changed" rather than
# "the machine changed" (pyperf's _CHECKED_METADATA idea); the history's machine fingerprint.
MUST_MATCH = ("cpu_model", "gpu_name", "torch_version", "cuda_version")
# Fields worth showing when runs from different machines are put side by side.
SHOWN_WHEN_DIFFERENT = MUST_MATCH + (
    "host",
    "cpu_cores",
    "default_threads",
    "driver_version",
    "python_version",
)


def differing_fields(
    envs: Sequence[Mapping[str, object]], names: Sequence[str] = SHOWN_WHEN_DIFFERENT
) -> list[str]:
    """The fields among `names` whose values are not the same in every env (unrecorded counts as "")."""
    return [f for f in names if len({str(env.get(f) or "") for env in envs}) > 1]


def parse_list(text: str) -> list[str]:
    """A comma list as its distinct, non-empty items in order: `"a, b,,a"` -> ["a", "b"]."""
    return list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))


def is_missing(value: object) -> bool:
    """None or a float NaN: an empty cell."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def json_safe(value: object) -> object:
    """`value` ready for JSON: NaN and inf as null, numpy scalars as numbers, tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return json_safe(value.item())  # a numpy scalar
    return value


def _int_or_none(value: object) -> int | None:
    if is_missing(value) or value == "":
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else int(number)


@dataclass(frozen=True, order=True)
class ConfigKey:
    """The identity of one configuration: what compare, gate and the history match on."""

    workload: str  # train | inference | convergence | ddp
    device: str  # cpu, cuda, cuda:1, mps
    mode: str  # a name from bench.modes.MODES
    batch_size: int | None  # training batch (per rank for ddp), or inference rows; None when skipped
    threads: int | None  # torch CPU threads the record ran with
    output_activation: str = "relu"
    world_size: int = 1  # processes (ddp), 1 otherwise
    backend: str = ""  # torch.distributed backend (ddp), "" otherwise

    def __str__(self) -> str:
        """`train/cpu/eager/32/2/relu`, plus `/ws2/gloo` for a distributed configuration."""
        parts = [self.workload, self.device, self.mode, self.batch_size, self.threads, self.output_activation]
        text = "/".join("" if p is None else str(p) for p in parts)
        if self.world_size != 1 or self.backend:
            text += f"/ws{self.world_size}/{self.backend}"
        return text

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> ConfigKey:
        """The key of a results row (a dict or a pandas Series), from results.csv or run.json alike."""

        def text(name: str, default: str = "") -> str:
            value = row.get(name)
            return default if is_missing(value) else str(value)

        return cls(
            workload=text("workload"),
            device=text("device"),
            mode=text("mode"),
            batch_size=_int_or_none(row.get("batch_size")),
            threads=_int_or_none(row.get("threads")),
            output_activation=text("output_activation", "relu"),
            world_size=_int_or_none(row.get("world_size")) or 1,
            backend=text("backend"),
        )


@dataclass
class Record:
    """One configuration's outcome: `samples`, raw measurements by name (`step_ms` one per block,
    `run_s` one per repeat, `loss_curve` {step: value}); `measured`, scalar outcomes that no sample
    gives back (held-out MAE, verdict), by results column; `derived`, what the run's derive step
    computed for it (flags, throughput, ratios)."""

    key: ConfigKey
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""  # why skipped or failed (one line), else ""
    notes: list[str] = field(default_factory=list)  # what the mode ran and why
    seed: int | None = None
    steps: int | None = None  # training steps per run, or calls per timed block (inference)
    repeats: int | None = None  # training runs, each from a fresh model
    measured: dict[str, object] = field(default_factory=dict)
    samples: dict[str, object] = field(default_factory=dict)
    derived: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def timing_metric(self) -> str | None:
        """The name of this record's speed (step_ms or latency_ms), None when it has no such time."""
        metric = timing_metric_for(self.key.workload)
        return metric if self.samples.get(metric) or not math.isnan(self.number(metric)) else None

    @property
    def timing(self) -> Summary | None:
        """Order statistics of the speed samples, computed from them; None without samples."""
        values = self.raw(timing_metric_for(self.key.workload))
        return Summary.of(values) if values else None

    def raw(self, metric: str) -> list[float]:
        """The raw samples of `metric` (a list of numbers), [] when there are none."""
        values = self.samples.get(metric)
        return [float(v) for v in values if not is_missing(v)] if isinstance(values, list) else []

    def value(self, name: str) -> object:
        """A results value by column name: derived, else a summary statistic of the raw speed
        samples (step_ms, step_ms_p10, ...), else measured; None when the record has none."""
        if not is_missing(self.derived.get(name)):
            return self.derived[name]
        metric = timing_metric_for(self.key.workload)
        summary = self.timing if name == metric or name.startswith(metric + "_") else None
        stat = name[len(metric) + 1 :] or "median"
        if summary is not None and stat in ("median", *SUMMARY_STATS):
            return getattr(summary, stat)
        value = self.measured.get(name)
        return None if is_missing(value) else value

    def number(self, name: str) -> float:
        """value(name) as a float; NaN when missing or not a number (a bool counts as none)."""
        value = self.value(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan

    @property
    def flags(self) -> list[str]:
        """The warnings on this record: noisy, below-floor, curve-deviates, ..."""
        return [f for f in str(self.value("flags") or "").split(";") if f]
