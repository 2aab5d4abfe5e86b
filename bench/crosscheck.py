"""Cross-check the harness's step timing against torch.utils.benchmark.Timer, same step, same process.

    python -m bench.crosscheck            # prints both medians and their ratio; exit 1 beyond 10%

The two are interleaved round by round so that machine noise hits both alike.
"""

from __future__ import annotations

import sys

import torch
import torch.utils.benchmark as torch_benchmark

from bench.modes import build_trainer
from bench.stats import Summary
from bench.timing import time_block

TOLERANCE = 0.10  # the bound: within 10% of torch's Timer


def crosscheck(
    device: str = "cpu", mode: str = "eager", rounds: int = 15, calls: int = 200
) -> tuple[float, float]:
    """(harness median s/step, torch Timer median s/step) for the same trainer's step."""
    trainer = build_trainer(mode, device)
    for _ in range(calls):  # warm-up, as both would do
        trainer.step()
    timer = torch_benchmark.Timer(
        stmt="step()", globals={"step": trainer.step}, num_threads=torch.get_num_threads()
    )
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(time_block(trainer.step, device, calls))
        theirs.append(timer.timeit(calls).median)
    return Summary.of(ours).median, Summary.of(theirs).median


def main() -> int:
    ours, theirs = crosscheck()
    ratio = ours / theirs
    print(f"harness {ours * 1e6:.1f} us/step, torch Timer {theirs * 1e6:.1f} us/step, ratio {ratio:.3f}")
    within = abs(ratio - 1) <= TOLERANCE
    print(f"{'within' if within else 'OUTSIDE'} {TOLERANCE:.0%}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
