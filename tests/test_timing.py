import time

import pytest
import torch

from bench.analysis.stats import Summary
from bench.measure import timing
from bench.measure.timing import calls_for_duration, clock_for, time_block, time_blocks, time_call


def _spin(seconds: float):
    def fn():
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    return fn


def test_block_timing_measures_a_known_spin():
    samples = time_blocks(_spin(0.002), "cpu", blocks=7, calls=5)
    assert Summary.of(samples).min > 0.0019  # a 2 ms spin is never shorter; load can only lengthen it


def test_block_timing_divides_the_clock_by_the_calls(monkeypatch):
    """The arithmetic on a fake clock that a call advances by exactly 2 ms: no load can fail it."""
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    samples = time_blocks(lambda: clock.__setitem__(0, clock[0] + 0.002), "cpu", blocks=3, calls=5)
    assert samples == pytest.approx([0.002] * 3)


def test_time_call_and_calls_for_duration(monkeypatch):
    assert time_call(_spin(0.005), "cpu") > 0.0049  # load can only lengthen it
    clock = [0.0]  # a fake clock a call advances by exactly 1 ms: no load can fail the arithmetic
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    assert calls_for_duration(lambda: clock.__setitem__(0, clock[0] + 0.001), "cpu", 0.01) == 10


def test_clock_choice_per_device():
    assert clock_for("cpu") == "perf_counter"
    assert clock_for("cuda:0") == "cuda-event"
    assert clock_for(torch.device("cuda")) == "cuda-event"


def test_block_needs_a_call():
    with pytest.raises(ValueError):
        time_block(lambda: None, "cpu", 0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_event_timing_catches_async_work():
    x = torch.randn(4096, 4096, device="cuda")
    per_call = time_block(lambda: x @ x, "cuda", 10)
    assert per_call > 2 * 4096**3 / 1e15  # no GPU does 1 PFLOP/s in FP32: the work was waited for
