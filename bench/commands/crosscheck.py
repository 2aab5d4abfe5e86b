"""Cross-check the harness's step timing against torch.utils.benchmark.Timer, same step, same process.
Run as `python -m bench.crosscheck` (bench/crosscheck.py: the signal handling, then this module).

    python -m bench.crosscheck                          # eager CPU: both medians and their ratio
    python -m bench.crosscheck --device cuda --mode compile-fullstep --rounds 31 --calls 500

Prints both medians and their ratio; exit 0 within 10%, 1 beyond, 2 with one line on bad input.
The two are interleaved round by round so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse

import torch
import torch.utils.benchmark as torch_benchmark

from bench.analysis.stats import Summary
from bench.errors import UsageError
from bench.measure.timing import time_block
from bench.modes import MODES, build_trainer
from bench.modes.selection import skip_reason
from sumnet.cli_args import OneLineArgumentParser, bounded_positive_int, fail
from sumnet.device import resolve_device

PROG = "python -m bench.crosscheck"
TOLERANCE = 0.10  # the bound: within 10% of torch's Timer
MAX_ROUNDS = 1_000  # rounds of each clock; more is a typo, not a check
MAX_CALLS = 100_000  # steps per round; more is a typo
EXIT_OUTSIDE = 1  # the two clocks disagree by more than TOLERANCE


def crosscheck(
    device: str = "cpu", mode: str = "eager", rounds: int = 15, calls: int = 200
) -> tuple[float, float]:
    """(harness median s/step, torch Timer median s/step) for the same trainer's step: `rounds`
    samples of each clock, interleaved, each the mean of `calls` steps."""
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


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    parser.add_argument("--mode", choices=list(MODES), default="eager", help="execution mode (default eager)")
    for flag, bound, default, what in (
        ("--rounds", MAX_ROUNDS, 15, "samples of each clock"),
        ("--calls", MAX_CALLS, 200, "steps per sample"),
    ):
        help = f"{what}, 1 to {bound:,} (default {default})"
        parser.add_argument(flag, type=bounded_positive_int(bound), default=default, help=help)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:  # an unknown or absent device, a mode that cannot run there, a bad SUMNET_BENCH_SLOWDOWN
        device = str(resolve_device(args.device)[0])
        reason = skip_reason(device, args.mode)
        if reason is not None:
            raise UsageError(f"--mode {args.mode} cannot run on {device}: {reason}")
        ours, theirs = crosscheck(device, args.mode, args.rounds, args.calls)
    except (ValueError, UsageError) as err:
        fail(PROG, str(err))
    ratio = ours / theirs
    print(f"harness {ours * 1e6:.1f} us/step, torch Timer {theirs * 1e6:.1f} us/step, ratio {ratio:.3f}")
    within = abs(ratio - 1) <= TOLERANCE
    print(f"{'within' if within else 'OUTSIDE'} {TOLERANCE:.0%}")
    return 0 if within else EXIT_OUTSIDE
