"""pytest-benchmark suite: the harness's training step and inference, per device and mode.

    nox -s pytest_bench                                   # saves .benchmarks/…/NNNN_*.json
    nox -s pytest_bench -- --benchmark-compare --benchmark-compare-fail=min:10%

Built so that two runs of the same code agree (an A/A comparison passes): every case is warmed
up, each round lasts about ROUND_SECONDS, and there are ROUNDS of them. The clock is the harness's
`bench.measure.timing.time_block` (one measurement path): an iteration is one block of
CALLS_PER_BLOCK calls, and each round runs as many iterations as fill ROUND_SECONDS. pytest-benchmark
divides a round by its iterations, so every sample is the time of one block whatever the count
chosen on this run, and two runs stay comparable though their calibration differs. `extra_info`
carries the configuration and `calls_per_round` (the calls per sample), so `python -m bench compare`
reads the JSON too. In the ordinary test run (benchmarks disabled) each case runs once as a smoke
test, compiled modes excepted: they cost seconds of compilation each.
"""

from __future__ import annotations

import os

# NumPy's BLAS (the numpy-reference rows) reads its thread count once, when numpy is first imported,
# which `import torch` below does. With two BLAS threads on a busy machine one waits for a core and
# a 0.1 ms forward takes 20 ms in some runs and not in others; pin it like torch's (THREADS below).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import math
import statistics

import pytest
import torch

from bench.measure.timing import time_block
from bench.modes import MODES, build_trainer
from bench.modes.selection import skip_reason
from sumnet.data import make_batch, make_generator

CALLS_PER_BLOCK = 10  # calls per sample: on CUDA the block's syncs cost well under 1% of it
ROUND_SECONDS = 0.02  # a round lasts about this long (at least one block)
ROUNDS = 40  # samples per case: many short rounds, so some run undisturbed (the min) on a busy machine
WARMUP_ROUNDS = 5  # untimed rounds first: caches, allocator and CPU clock settle
CALIBRATION_BLOCKS = 5  # blocks timed to size the rounds; their median sets the iterations
THREADS = 1  # torch CPU threads: on a busy machine a second thread waits for a core, rounds vary
# several-fold and two runs disagree; one thread is the harness's `--threads 1` row
BATCH_SIZES = (1, 1024, 16384)
DEVICES = ("cpu", "cuda")


@pytest.fixture(autouse=True)
def _one_thread():
    """Every case runs with THREADS torch threads (set before the trainer is built or compiled)."""
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _skip_if_unrunnable(benchmark, device: str, mode: str) -> None:
    reason = skip_reason(device, mode)
    if reason is not None:
        pytest.skip(reason)
    if benchmark.disabled and mode.startswith("compile"):
        pytest.skip("compiled modes are benchmarked by nox -s pytest_bench, not smoke-run")


def _iterations(benchmark, fn, device: str) -> int:
    """Blocks per round so that a round lasts about ROUND_SECONDS (1 in the smoke run)."""
    if benchmark.disabled:
        return 1
    block = statistics.median(time_block(fn, device, CALLS_PER_BLOCK) for _ in range(CALIBRATION_BLOCKS))
    return max(1, round(ROUND_SECONDS / (block * CALLS_PER_BLOCK)))


def _measure(benchmark, fn, workload: str, device: str, mode: str, batch_size: int) -> None:
    """Time `fn` in blocks of CALLS_PER_BLOCK calls; the configuration goes to extra_info."""
    iterations = _iterations(benchmark, fn, device)
    benchmark.extra_info.update(
        workload=workload,
        device=device,
        mode=mode,
        batch_size=batch_size,
        threads=torch.get_num_threads(),
        output_activation="relu",
        calls_per_round=CALLS_PER_BLOCK,  # calls per sample, the divisor bench compare applies
        blocks_per_round=iterations,
    )
    benchmark.pedantic(
        time_block,
        args=(fn, device, CALLS_PER_BLOCK),
        rounds=ROUNDS,
        iterations=iterations,
        warmup_rounds=WARMUP_ROUNDS,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", list(MODES))
def test_train_step(benchmark, device, mode):
    _skip_if_unrunnable(benchmark, device, mode)
    trainer = build_trainer(mode, device)
    loss = trainer.step()  # first call: compilation or capture, kept out of the rounds
    assert math.isfinite(float(loss)), loss
    _measure(benchmark, trainer.step, "train", device, mode, batch_size=32)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", list(MODES))
def test_inference(benchmark, device, mode, batch_size):
    _skip_if_unrunnable(benchmark, device, mode)
    trainer = build_trainer(mode, device)
    run = trainer.inference(make_batch(batch_size, make_generator(0, device))[0])
    out = run()  # first call: compilation for this batch size, kept out of the rounds
    assert tuple(out.shape) == (batch_size, 1)
    _measure(benchmark, run, "inference", device, mode, batch_size)
