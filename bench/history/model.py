"""What the history stores: a machine (fingerprint), a run with its records (keyed by the harness's
ConfigKey), and the trend point read back. Plain dataclasses; bench.history.db maps them to tables.

    python -c "from bench.history.model import Machine; print(Machine('f', 'CPU', '', '2.13.0+cpu', '').label)"
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import NamedTuple

from bench.records import ConfigKey


@dataclass(frozen=True)
class Machine:
    """A machine type: timings compare only within one fingerprint."""

    fingerprint: str
    cpu_model: str
    gpu_name: str
    torch_version: str
    cuda_version: str

    @property
    def label(self) -> str:
        """`Intel Xeon · NVIDIA H200 · torch 2.11.0+cu130 · CUDA 13.0`, for tables and charts."""
        gpu = self.gpu_name or "no GPU"
        cuda = f"CUDA {self.cuda_version}" if self.cuda_version else "no CUDA"
        return f"{self.cpu_model or '?'} · {gpu} · torch {self.torch_version or '?'} · {cuda}"


@dataclass
class RecordEntry:
    """One configuration's outcome in one run, as stored."""

    config: ConfigKey  # the history's key is the harness's
    status: str
    reason: str = ""
    flags: str = ""
    metric: str | None = None  # step_ms | latency_ms | None (untimed: convergence, skipped)
    median: float | None = None
    median_rel_se: float | None = None
    n_samples: int = 0
    converged: bool | None = None
    mae: float | None = None
    row: dict[str, object] = field(default_factory=dict)
    samples: dict[str, object] = field(default_factory=dict)


@dataclass
class RunEntry:
    """One run with its records, ready to store."""

    run_id: str
    machine: Machine
    time_utc: _dt.datetime  # naive UTC
    git_commit: str
    git_dirty: bool | None
    host: str
    source: str
    env: dict[str, object]
    records: list[RecordEntry]


class Point(NamedTuple):
    """One run's median of one configuration on one machine: a point of a trend (a named tuple:
    a trend over 10,000 runs builds tens of thousands of them)."""

    fingerprint: str
    config_key: str
    metric: str
    run_id: str
    time_utc: _dt.datetime
    git_commit: str
    git_dirty: bool | None
    median: float
    median_rel_se: float | None
