"""pytest-benchmark suite: the harness's training step and inference, per device and mode.

    nox -s pytest_bench                                   # saves .benchmarks/…/NNNN_*.json
    nox -s pytest_bench -- --benchmark-compare --benchmark-compare-fail=median:10%

Each round is one `bench.timing.time_block` of CALLS calls (the harness's own timing and
workloads: one measurement path); pytest-benchmark's clock wraps it, and `extra_info` carries
the configuration and calls_per_round, so `python -m bench compare` reads the JSON too. In the
ordinary test run (benchmarks disabled) each case runs once as a smoke test, compiled modes
excepted: they cost seconds of compilation each.
"""

from __future__ import annotations

import pytest
import torch

from bench.modes import build_trainer
from bench.selection import MODES, skip_reason
from bench.timing import time_block
from sumnet.data import make_batch, make_generator

TRAIN_CALLS = 100  # steps per round
INFER_CALLS = 20  # forwards per round
ROUNDS = 15
BATCH_SIZES = (1, 1024, 16384)
DEVICES = ("cpu", "cuda")


def _skip_if_unrunnable(benchmark, device: str, mode: str) -> None:
    reason = skip_reason(device, mode)
    if reason is not None:
        pytest.skip(reason)
    if benchmark.disabled and mode.startswith("compile"):
        pytest.skip("compiled modes are benchmarked by nox -s pytest_bench, not smoke-run")


def _extra(benchmark, workload: str, device: str, mode: str, batch_size: int, calls: int) -> None:
    benchmark.extra_info.update(
        workload=workload,
        device=device,
        mode=mode,
        batch_size=batch_size,
        threads=torch.get_num_threads(),
        output_activation="relu",
        calls_per_round=calls,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", list(MODES))
def test_train_step(benchmark, device, mode):
    _skip_if_unrunnable(benchmark, device, mode)
    trainer = build_trainer(mode, device)
    trainer.step()  # first call: compilation or capture, kept out of the rounds
    _extra(benchmark, "train", device, mode, 32, TRAIN_CALLS)
    per_step = benchmark.pedantic(
        time_block, args=(trainer.step, device, TRAIN_CALLS), rounds=ROUNDS, iterations=1, warmup_rounds=1
    )
    assert per_step > 0


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", list(MODES))
def test_inference(benchmark, device, mode, batch_size):
    _skip_if_unrunnable(benchmark, device, mode)
    trainer = build_trainer(mode, device)
    run = trainer.inference(make_batch(batch_size, make_generator(0, device))[0])
    run()
    _extra(benchmark, "inference", device, mode, batch_size, INFER_CALLS)
    per_call = benchmark.pedantic(
        time_block, args=(run, device, INFER_CALLS), rounds=ROUNDS, iterations=1, warmup_rounds=1
    )
    assert per_call > 0
