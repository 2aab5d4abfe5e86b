"""How busy the machine was while a configuration ran: the 1-minute load average before and after
it (/proc/loadavg) and the share of CPU time stolen by the hypervisor during it (/proc/stat).

    python -c "from bench.measure.machine_load import LoadProbe; p = LoadProbe.start(); print(p.finish())"

A row flagged noisy on a loaded machine says why here: other processes (load above the core count)
or a neighbour on the same host (steal). Linux only; elsewhere the values are NaN.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
LOADED_STEAL_FRAC = 0.05  # steal above 5% of CPU time: a neighbour took the CPU
LOADED_LOAD_PER_CORE = 1.0  # load average above the core count: processes waited for a CPU


def load_average(proc: Path = PROC) -> float:
    """The 1-minute load average, NaN where /proc/loadavg cannot be read."""
    try:
        return float((proc / "loadavg").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return math.nan


def cpu_times(proc: Path = PROC) -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat's `cpu` line; None where unreadable.
    The total is user..steal: guest time is already inside user."""
    try:
        first = (proc / "stat").read_text().splitlines()[0].split()
        values = [int(v) for v in first[1:9]]
    except (OSError, IndexError, ValueError):
        return None
    if first[0] != "cpu" or len(values) < 8:
        return None
    return values[7], sum(values)


def steal_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float:
    """Stolen share of the CPU time between two cpu_times() readings; NaN when unknown."""
    if before is None or after is None or after[1] <= before[1]:
        return math.nan
    return (after[0] - before[0]) / (after[1] - before[1])


@dataclass(frozen=True)
class LoadProbe:
    """Readings at a configuration's start; finish() gives its record's `measured` values."""

    load_avg_before: float
    times: tuple[int, int] | None
    proc: Path = PROC

    @classmethod
    def start(cls, proc: Path = PROC) -> LoadProbe:
        return cls(load_average(proc), cpu_times(proc), proc)

    def finish(self) -> dict[str, float]:
        return {
            "load_avg_before": self.load_avg_before,
            "load_avg_after": load_average(self.proc),
            "cpu_steal_frac": steal_fraction(self.times, cpu_times(self.proc)),
        }


def loaded_reason(measured: dict[str, object], cores: int | None = None) -> str | None:
    """Why the machine counts as loaded for a record's values (load or steal), else None."""
    cores = cores or os.cpu_count() or 1
    loads = [measured.get(k) for k in ("load_avg_before", "load_avg_after")]
    load = max((float(v) for v in loads if isinstance(v, (int, float)) and not math.isnan(v)), default=0.0)
    steal = measured.get("cpu_steal_frac")
    reasons = []
    if load > LOADED_LOAD_PER_CORE * cores:
        reasons.append(f"load average {load:.1f} on {cores} cores")
    if isinstance(steal, (int, float)) and steal > LOADED_STEAL_FRAC:
        reasons.append(f"{steal:.0%} of CPU time stolen")
    return ", ".join(reasons) or None
