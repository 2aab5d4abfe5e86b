"""A real, known amount of extra work per training step, to test that a gate catches it.

    SUMNET_BENCH_EXTRA_WORK=0.05 python -m bench run --preset quick --device cpu --metric instructions

SUMNET_BENCH_SLOWDOWN spins on a clock, which an instruction count cannot see (and a spin's count
depends on the clock). This knob adds tensor operations instead: after each step,
round(fraction x OPS_PER_STEP) small elementwise operations on a (batch, 60) tensor, about the
operator calls of one eager CPU step, so 0.05 adds about 5% to an eager step's instructions (the
share is larger for the modes whose step is cheaper). The training itself is unchanged.
"""

from __future__ import annotations

import torch

from bench.modes import env_number
from bench.modes.base import Trainer

EXTRA_WORK_ENV = "SUMNET_BENCH_EXTRA_WORK"
MAX_EXTRA_WORK = 10.0  # a fraction beyond this is a typo, not a test of the gate
OPS_PER_STEP = 100  # operator calls of one eager CPU step, roughly: the unit the fraction scales


def extra_work_fraction(environ: dict[str, str] | None = None) -> float:
    """The validated SUMNET_BENCH_EXTRA_WORK fraction (0 when unset); UsageError for anything else."""
    return env_number(EXTRA_WORK_ENV, MAX_EXTRA_WORK, environ)


def with_extra_work(trainer: Trainer, batch_size: int, fraction: float | None = None) -> Trainer:
    """`trainer` whose step also runs round(fraction x OPS_PER_STEP) tensor operations (none at 0)."""
    fraction = extra_work_fraction() if fraction is None else fraction
    ops = round(fraction * OPS_PER_STEP)
    if ops == 0:
        return trainer
    scratch = torch.ones(batch_size, 60)
    step = trainer.step

    def step_with_work() -> object:
        out = step()
        acc = scratch
        for _ in range(ops):
            acc = acc.mul(1.0001)
        return out

    trainer.step = step_with_work
    trainer.notes.append(f"{EXTRA_WORK_ENV}={fraction:g}: {ops} extra tensor operations per step")
    return trainer
