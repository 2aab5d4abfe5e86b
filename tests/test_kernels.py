"""Kernels per step, the launch-latency probe and the step's lower bound: their logic on a CPU
(hand-made profiler events, hand-computed bounds); the CUDA measurements are marked cuda."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bench.analysis.derive import derive, step_lower_bound_s, train_step_bytes, train_step_flops
from bench.measure.kernels import count_kernels, graph_launch_latency_s, profile_kernels
from bench.modes import build_trainer
from sumnet.model import NetConfig
from tests.factories import record

CUDA, CPU = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU


def test_count_kernels_counts_device_events_only():
    events = [SimpleNamespace(device_type=CUDA, device_time=2.0)] * 6 + [
        SimpleNamespace(device_type=CPU, device_time=9.0)
    ]
    count = count_kernels(events, steps=3)
    assert count.kernels_per_step == 2 and count.us_per_kernel == 2.0 and count.device_us_per_step == 4.0
    assert count_kernels([SimpleNamespace(device_type=CPU, device_time=1.0)], steps=3) is None


def test_nothing_to_count_off_cuda():
    trainer = build_trainer("eager", "cpu")
    assert profile_kernels(trainer.step, torch.device("cpu")) is None
    assert graph_launch_latency_s(torch.device("cpu")) is None


def test_bytes_and_bound_by_hand():
    # 5,581 parameters x 8 float32 passes + 32 rows x (30 + 60 + 60 + 1 + 1) values written and read
    assert train_step_bytes() == 4 * (8 * 5581 + 2 * 32 * 152)
    assert step_lower_bound_s(1e6, 2e5, 1e12, 1e11, 3e-6) == pytest.approx(3e-6)  # launch-bound
    assert step_lower_bound_s(1e9, 2e5, 1e12, 1e11, 3e-6) == pytest.approx(1e-3)  # compute-bound
    assert step_lower_bound_s(1e6, 2e9, 1e12, 1e11, 3e-6) == pytest.approx(2e-2)  # memory-bound


def test_derive_puts_each_cuda_mode_against_the_bound():
    fused = record(
        {"step_ms": [0.005] * 3},
        workload="train",
        device="cuda",
        mode="fused",
        batch_size=32,
        threads=1,
        graph_launch_us=2.0,
    )
    derived = derive([fused], {"gpu_name": "NVIDIA H100 80GB HBM3"}, NetConfig())[fused.key]
    memory_s = train_step_bytes() / 3.35e12
    bound = max(train_step_flops() / 67e12, memory_s, 2e-6)
    assert derived["lower_bound_us"] == pytest.approx(bound * 1e6)
    assert derived["ratio_to_bound"] == pytest.approx(5e-6 / bound)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_eager_launches_dozens_of_kernels_and_cudagraph_replays_them():
    device = torch.device("cuda")
    eager = profile_kernels(build_trainer("eager", device).step, device)
    assert eager is not None and eager.kernels_per_step > 10
    assert 0 < graph_launch_latency_s(device) < 50e-6


def test_the_best_steps_per_launch_is_the_fastest_per_step(monkeypatch):
    import time

    def multi_step(k):  # a launch costs 50 us plus 1 us per step: more steps per launch, less per step
        end = time.perf_counter() + (50 + k) * 1e-6
        while time.perf_counter() < end:
            pass

    from bench.measure.kernels import best_steps_per_launch

    per_k = best_steps_per_launch(multi_step, torch.device("cpu"), ks=(1, 100))
    assert per_k[1] > per_k[100] and per_k[100] == pytest.approx(1.5, abs=0.5)
