"""Kernels per training step and microseconds per kernel on CUDA (torch.profiler), and one kernel's
launch latency in a CUDA graph: why a mode is as fast as it is. Measured outside the timed runs; None
off CUDA.

    python -c "import torch; from bench.modes import build_trainer; from bench.measure.kernels import profile_kernels; t = build_trainer('eager', 'cuda'); print(profile_kernels(t.step, torch.device('cuda')))"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

from bench.measure.timing import synchronize, time_block

PROFILED_STEPS = 20  # steps under the profiler, after as many warm-up steps
GRAPH_KERNELS = 100  # tiny kernels captured in one graph to time one launch


@dataclass(frozen=True)
class KernelCount:
    kernels_per_step: float  # device kernels (and memcpy/memset) launched per step
    us_per_kernel: float  # mean device time of one of them, microseconds
    device_us_per_step: float  # summed device time per step: the GPU's busy time, not the wall time


def count_kernels(events: Iterable[object], steps: int) -> KernelCount | None:
    """KernelCount from profiler events: those that ran on the device (CUDA kernels, memcpy, memset)."""
    device_events = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    if not device_events or steps < 1:
        return None
    total_us = sum(float(getattr(e, "device_time", 0.0) or 0.0) for e in device_events)
    return KernelCount(
        kernels_per_step=len(device_events) / steps,
        us_per_kernel=total_us / len(device_events),
        device_us_per_step=total_us / steps,
    )


def profile_kernels(
    step: Callable[[], object], device: torch.device, steps: int = PROFILED_STEPS
) -> KernelCount | None:
    """Run `steps` warm-up steps, then `steps` under torch.profiler; None off CUDA."""
    if device.type != "cuda":
        return None
    for _ in range(steps):
        step()
    synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    return count_kernels(prof.events(), steps)


def graph_launch_latency_s(device: torch.device) -> float | None:
    """Seconds per kernel when GRAPH_KERNELS dependent one-element kernels replay as one CUDA graph:
    the floor a chain of launches cannot go below on this GPU. None off CUDA."""
    if device.type != "cuda":
        return None
    x = torch.zeros(1, device=device)
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            x.add_(1)
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(GRAPH_KERNELS):
            x.add_(1)  # each depends on the last
    per_replay = min(time_block(graph.replay, device, 50) for _ in range(5))
    return per_replay / GRAPH_KERNELS


STEPS_PER_LAUNCH = (1, 10, 100, 1000)  # k for a mode that runs k steps per launch


def best_steps_per_launch(
    multi_step: Callable[[int], object], device: torch.device, ks: tuple[int, ...] = STEPS_PER_LAUNCH
) -> dict[int, float]:
    """Microseconds per step when `multi_step(k)` runs k steps per launch, for each k: the best of
    five blocks of launches adding up to about 1000 steps (after one warm-up launch of each k)."""
    out = {}
    for k in ks:
        multi_step(k)  # compiles and captures this k
        calls = max(1, 1000 // k)
        out[k] = min(time_block(lambda k=k: multi_step(k), device, calls) for _ in range(5)) / k * 1e6
    return out
