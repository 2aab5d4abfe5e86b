"""The history tests' data: `fill_demo(history)`, two machines with known changes."""

from __future__ import annotations

import numpy as np

from bench.history.synthetic import CPU_BOX, GPU_BOX, config, synthetic_run


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
