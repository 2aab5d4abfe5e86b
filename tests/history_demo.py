"""The history tests' data: synthetic runs whose raw samples are drawn around chosen medians (or
resampled from a real pool of samples), and `fill_demo(history)`, two machines with known changes.
scripts/history_rates.py draws its runs here too.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

import numpy as np

from bench.history.db import Machine, RunEntry
from bench.history.ingest import record_entry
from bench.records import ConfigKey, Record, timing_metric_for

CPU_BOX = Machine("cpu0cpu0cpu0", "Intel(R) Xeon(R) Processor", "", "2.13.0+cpu", "")
GPU_BOX = Machine("gpu0gpu0gpu0", "Intel(R) Xeon(R) Processor", "NVIDIA H200", "2.11.0+cu130", "13.0")
START = _dt.datetime(2026, 1, 1)
RUN_EVERY = _dt.timedelta(minutes=10)


def config(key: str) -> ConfigKey:
    """A ConfigKey from its text `workload/device/mode/batch/threads/activation[/wsN/backend]`."""
    workload, device, mode, batch, threads, activation, *ddp = key.split("/")
    number = [int(v) if v else None for v in (batch, threads)]
    return ConfigKey(
        workload, device, mode, *number, activation, int(ddp[0][2:]) if ddp else 1, "/".join(ddp[1:])
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
        raw = {timing_metric_for(cfg.workload): [round(float(v), 6) for v in values]}
        failed = state != "ok"
        reason = "synthetic failure" if failed else ""
        records.append(record_entry(Record(cfg, state, reason, samples={} if failed else raw)))
    return RunEntry(
        run_id=f"synthetic-{machine.fingerprint[:4]}-{index:07d}",
        machine=machine,
        time_utc=START + index * RUN_EVERY,
        git_commit=f"{index:012x}",
        git_dirty=False,
        host="synthetic",
        source="tests.history_demo",
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
