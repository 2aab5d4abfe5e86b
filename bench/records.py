"""The result model: a frozen configuration key, and one record per measured configuration.

A `Record` holds what was measured (raw samples, scalar outcomes such as the held-out MAE), its
status and the notes of the mode that ran; summary statistics are computed from its samples on
demand, never stored beside them. Run-level facts (host, versions) live once on the run
(`bench.measure.environment`); per-record facts (threads, peak memory) live on the record.

    python -c "from bench.records import ConfigKey; print(ConfigKey('train', 'cpu', 'eager', 32, 1))"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from bench.analysis.stats import Summary

SCHEMA_VERSION = 2  # 2: world_size, backend and notes columns; environment once per run (run.json)
READABLE_VERSIONS = (1, 2)  # version 1 run folders (results/reference, results/baselines) still load

TIMING_METRIC = {"train": "step_ms", "ddp": "step_ms"}  # raw-sample name of each workload's speed, ms


def timing_metric_for(workload: str) -> str:
    """step_ms for training workloads, latency_ms for every other one (inference, a benchmark's name)."""
    return TIMING_METRIC.get(workload, "latency_ms")


# Environment fields that must agree for a timing comparison to mean "the code changed" rather than
# "the machine changed" (pyperf's _CHECKED_METADATA idea); the history's machine fingerprint.
MUST_MATCH = ("cpu_model", "gpu_name", "torch_version", "cuda_version")


def _int_or_none(value: object) -> int | None:
    if value is None or value == "":
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
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return default
            return str(value)

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
    """One configuration's outcome.

    samples: raw measurements by name, e.g. `step_ms` (one value per timed block), `run_s` and
        `first_call_s` (one per repeat), `loss_curve` and `mae_curve` ({step: value}).
    measured: scalar outcomes that no sample list gives back (held-out MAE, verdict, peak memory);
        their names are results columns (bench.store.run_folder.COLUMNS).
    """

    key: ConfigKey
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""  # why skipped or failed (one line), else ""
    notes: list[str] = field(default_factory=list)  # what the mode ran and why
    seed: int | None = None
    steps: int | None = None  # training steps per run, or calls per timed block (inference)
    repeats: int | None = None  # training runs, each from a fresh model
    measured: dict[str, object] = field(default_factory=dict)
    samples: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def timing_metric(self) -> str | None:
        """The raw-sample name of this record's speed (step_ms or latency_ms), None if untimed."""
        metric = timing_metric_for(self.key.workload)
        return metric if self.samples.get(metric) else None

    @property
    def timing(self) -> Summary | None:
        """Order statistics of the speed samples, computed from them; None without samples."""
        metric = self.timing_metric
        return Summary.of(self.samples[metric]) if metric else None  # type: ignore[arg-type]
