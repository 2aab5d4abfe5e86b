"""pytest-benchmark suite: the harness's training step and inference, per device and mode.

    nox -s pytest_bench                                   # saves .benchmarks/…/NNNN_*.json
    nox -s pytest_bench -- --benchmark-compare --benchmark-compare-fail=min:20%

Built so that two runs of the same code agree (an A/A comparison passes). Every case is warmed up
and timed in ROUNDS rounds of about ROUND_SECONDS each; each process runs with one torch thread and
with glibc malloc's thresholds pinned (bench.measure.process). On the shared 2-core CPU machine, A/A pairs
passed `min:25%` 43 times in 44 and `median:10%` 26 times in 44; with OPENBLAS_NUM_THREADS=1 set
before numpy loads (tests/conftest.py; the numpy-reference rows otherwise jump 2x between
processes), `min:20%` passed 30 of 30 (20 with the variable set by hand, 10 with the conftest pin). A real 30% slowdown of the training step failed every train row. A run's level
moves 10-20% from process to process on the large-batch rows, which no number of rounds inside
one process averages out, so a bare 10% limit on the median cannot pass A/A here.

The clock is the harness's `bench.measure.timing.time_block` (one measurement path): an iteration
is one block of CALLS_PER_BLOCK calls, and each round runs as many iterations as fill ROUND_SECONDS.
pytest-benchmark divides a round by its iterations, so a sample is the time of one block whatever
count this run chose, and two runs stay comparable though their calibration differs. `extra_info`
carries the configuration, `calls_per_round` (the calls per sample), `page_faults_per_call` and
`malloc_pinned`, so `python -m bench compare` reads the JSON too. In the ordinary test run
(benchmarks disabled) each case runs once as a smoke test, compiled modes excepted: they cost
seconds of compilation each.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from bench.measure.process import minor_page_faults, pin_malloc
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
def _steady_process(benchmark):
    """THREADS torch threads (set before a trainer is built or compiled) and, when benchmarking,
    pinned malloc thresholds; the threads are restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    benchmark.extra_info["malloc_pinned"] = benchmark.enabled and pin_malloc()
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
    faults_before = minor_page_faults()
    benchmark.pedantic(
        time_block,
        args=(fn, device, CALLS_PER_BLOCK),
        rounds=ROUNDS,
        iterations=iterations,
        warmup_rounds=WARMUP_ROUNDS,
    )
    faults = minor_page_faults() - faults_before
    calls = (ROUNDS + WARMUP_ROUNDS) * iterations * CALLS_PER_BLOCK
    # Page faults in the rounds: near 0 when memory is reused; thousands explain a slow outlier run.
    benchmark.extra_info["page_faults_per_call"] = round(faults / calls, 1)


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
