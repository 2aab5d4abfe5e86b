"""Synthetic runs for the tests and for scripts/history_rates.py: storable entries whose raw samples
are drawn around chosen medians (or resampled from a real pool of samples), with known changes.

    python -c "from bench.history.synthetic import synthetic_run, CPU_BOX, config; import numpy as np; print(synthetic_run(0, CPU_BOX, {config('train/cpu/eager/32/2/relu'): 0.5}, np.random.default_rng(0)).run_id)"
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

import numpy as np

from bench.history.ingest import median_rel_se
from bench.history.model import Machine, RecordEntry, RunEntry
from bench.records import ConfigKey

CPU_BOX = Machine("cpu0cpu0cpu0", "Intel(R) Xeon(R) Processor", "", "2.13.0+cpu", "")
GPU_BOX = Machine("gpu0gpu0gpu0", "Intel(R) Xeon(R) Processor", "NVIDIA H200", "2.11.0+cu130", "13.0")
START = _dt.datetime(2026, 1, 1)
RUN_EVERY = _dt.timedelta(minutes=10)


def config(key: str) -> ConfigKey:
    """A ConfigKey from its text `workload/device/mode/batch/threads/activation[/wsN/backend]`."""
    parts = key.split("/")
    world_size, backend = (int(parts[6][2:]), parts[7]) if len(parts) == 8 else (1, "")
    return ConfigKey(
        workload=parts[0],
        device=parts[1],
        mode=parts[2],
        batch_size=int(parts[3]) if parts[3] else None,
        threads=int(parts[4]) if parts[4] else None,
        output_activation=parts[5],
        world_size=world_size,
        backend=backend,
    )


def synthetic_run(
    index: int,
    machine: Machine,
    medians: Mapping[ConfigKey, float],
    rng: np.random.Generator,
    samples: int = 29,
    spread: float = 0.05,
    pools: Mapping[ConfigKey, np.ndarray] | None = None,
    status: Mapping[ConfigKey, str] | None = None,
) -> RunEntry:
    """Run number `index` (time START + index x RUN_EVERY, commit `index` in hex) on `machine`.

    Each configuration's raw samples are `medians[c]` x lognormal(0, spread) noise, or, when `pools`
    has the configuration, a resample of that pool scaled by `medians[c]` (a factor then)."""
    records = []
    for cfg, level in medians.items():
        if pools is not None and cfg in pools:
            pool = pools[cfg]
            values = pool[rng.integers(0, len(pool), samples)] * level
        else:
            values = level * np.exp(rng.normal(0.0, spread, samples))
        state = (status or {}).get(cfg, "ok")
        ok = state == "ok"
        metric = "step_ms" if cfg.workload in ("train", "ddp") else "latency_ms"
        records.append(
            RecordEntry(
                config=cfg,
                status=state,
                reason="" if ok else "synthetic failure",
                metric=metric if ok else None,
                median=float(np.median(values)) if ok else None,
                median_rel_se=median_rel_se(values) if ok else None,
                n_samples=len(values) if ok else 0,
                row={"workload": cfg.workload, "status": state},
                samples={metric: [round(float(v), 6) for v in values]} if ok else {},
            )
        )
    return RunEntry(
        run_id=f"synthetic-{machine.fingerprint[:4]}-{index:07d}",
        machine=machine,
        time_utc=START + index * RUN_EVERY,
        git_commit=f"{index:012x}",
        git_dirty=False,
        host="synthetic",
        source="bench.history.synthetic",
        env={"timestamp_utc": (START + index * RUN_EVERY).isoformat() + "Z"},
        records=records,
    )


def fill_demo(history, runs: int = 40, seed: int = 0) -> None:
    """A small two-machine history with known changes, for tests and for looking at the dashboard:
    the CPU box's training step gets 20% slower at its run 30 and its compile step drifts 1% per run
    over runs 15-29; its inference and the GPU box's training stay flat."""
    rng = np.random.default_rng(seed)
    eager, compiled = config("train/cpu/eager/32/2/relu"), config("train/cpu/compile/32/2/relu")
    infer, gpu = config("inference/cpu/eager/32/2/relu"), config("train/cuda/eager/32/16/relu")
    entries = []
    for i in range(runs):
        drift = 1.01 ** min(15, max(0, i - 14))
        cpu = {eager: 0.5 * (1.2 if i >= 30 else 1.0), compiled: 0.6 * drift, infer: 0.03}
        entries.append(synthetic_run(2 * i, CPU_BOX, cpu, rng, spread=0.03))
        entries.append(synthetic_run(2 * i + 1, GPU_BOX, {gpu: 1.6}, rng, spread=0.03))
    history.add_runs(entries)
