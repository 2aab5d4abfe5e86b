"""Where the GPU's inference throughput overtakes the CPU's: the best mode of each, compared on
the batch sizes both measured.

    python -c "from bench.store.load import load_run; from bench.analysis.crossover import inference_crossover; print(inference_crossover(load_run('results/latest').frame))"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.analysis.frames import numeric, ok_rows


@dataclass(frozen=True)
class Crossover:
    """Where the best GPU mode starts to beat the best CPU mode in inference throughput."""

    batch_size: int | None  # None: the GPU never wins at the largest common batch sizes
    cpu_mode: str
    gpu_device: str
    gpu_mode: str

    def describe(self) -> str:
        who = f"{self.gpu_device} · {self.gpu_mode} vs cpu · {self.cpu_mode}"
        if self.batch_size is None:
            return f"GPU never beats CPU here ({who})"
        return f"GPU beats CPU from batch {self.batch_size} ({who})"


def crossover_batch_size(cpu: Mapping[int, float], gpu: Mapping[int, float]) -> int | None:
    """The smallest batch size from which the GPU's samples/s beats the CPU's at every larger size
    both measured (finite values only); None when it loses at the largest or no size is common."""
    common = sorted(
        b for b in set(cpu) & set(gpu) if math.isfinite(float(cpu[b])) and math.isfinite(float(gpu[b]))
    )
    found: int | None = None
    for b in reversed(common):
        if not float(gpu[b]) > float(cpu[b]):
            break
        found = int(b)
    return found


def is_gpu(device: str) -> bool:
    return str(device).split(":")[0] == "cuda"


def _best_mode(curves: Mapping[str, Mapping[int, float]]) -> str:
    """The mode with the highest geometric-mean throughput over the batch sizes every mode measured
    (so large batches alone do not win), else over each mode's own sizes."""
    common = set.intersection(*(set(c) for c in curves.values()))

    def score(mode: str) -> tuple[float, int]:
        curve = curves[mode]
        sizes = common or set(curve)
        values = [curve[b] for b in sizes if curve[b] > 0]
        return (float(np.mean(np.log(values))) if values else -math.inf, len(curve))

    return max(sorted(curves), key=score)


def inference_curves(df: pd.DataFrame) -> dict[tuple[str, str], dict[int, float]]:
    """(device, label) -> {batch_size: samples_per_s} for ok inference rows with a positive
    throughput. The label is the mode, with its thread count where the device ran several: one curve
    per row, so the table and the figure show the same numbers."""
    rows = ok_rows(df, "inference")
    rows["_b"] = numeric(rows, "batch_size")
    rows["_s"] = numeric(rows, "samples_per_s")
    rows["_t"] = numeric(rows, "threads").fillna(0).astype(int)
    rows = rows[np.isfinite(rows["_b"]) & (rows["_s"] > 0)]
    several = {d for d, g in rows.groupby("device") if g["_t"].nunique() > 1}
    curves: dict[tuple[str, str], dict[int, float]] = {}
    for (device, mode, threads), group in rows.groupby(["device", "mode", "_t"], sort=True):
        label = f"{mode} · {threads} threads" if device in several else str(mode)
        curves[(str(device), label)] = {int(b): float(s) for b, s in zip(group["_b"], group["_s"])}
    return curves


def inference_crossover(df: pd.DataFrame) -> Crossover | None:
    """The crossover between the best cpu mode and the best GPU mode; None unless both devices ran."""
    curves = inference_curves(df)
    cpu = {m: c for (d, m), c in curves.items() if d == "cpu"}
    gpu_devices = sorted({d for d, _ in curves if is_gpu(d)})
    if not cpu or not gpu_devices:
        return None
    gpu = {m: c for (d, m), c in curves.items() if d == gpu_devices[0]}
    cpu_mode, gpu_mode = _best_mode(cpu), _best_mode(gpu)
    return Crossover(
        batch_size=crossover_batch_size(cpu[cpu_mode], gpu[gpu_mode]),
        cpu_mode=cpu_mode,
        gpu_device=gpu_devices[0],
        gpu_mode=gpu_mode,
    )
