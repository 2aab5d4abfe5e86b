"""The one place that reads a clock: block timing with the right clock for the device.

On CUDA the clock is a pair of CUDA events around a block of calls (the GPU's own timeline,
no queued work escapes); elsewhere it is `time.perf_counter` after a device sync. A sample is
the mean time of one call within a block of `block` calls.

    python -c "from bench.measure.timing import time_blocks; import time; print(time_blocks(lambda: time.sleep(0.001), 'cpu', 5, 2))"
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from bench.measure.lockstep import turn


def synchronize(device: torch.device | str) -> None:
    """Wait for all queued work on `device` (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def clock_for(device: torch.device | str) -> str:
    """Name of the clock used for `device`: "cuda-event" or "perf_counter"."""
    return "cuda-event" if torch.device(device).type == "cuda" else "perf_counter"


def time_call(fn: Callable[[], object], device: torch.device | str) -> float:
    """Seconds for one call of `fn`, synced before and after (for first calls and whole runs)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def time_block(fn: Callable[[], object], device: torch.device | str, calls: int) -> float:
    """Seconds per call, averaged over one block of `calls` back-to-back calls."""
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    device = torch.device(device)
    with turn():  # under `bench ab`, wait until the other arm's process is parked (else at once)
        if clock_for(device) == "cuda-event":
            with torch.cuda.device(device):  # events go on this device's stream, also for cuda:N
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                synchronize(device)
                start.record()
                for _ in range(calls):
                    fn()
                end.record()
                end.synchronize()
            return start.elapsed_time(end) / 1e3 / calls

        def block() -> None:
            for _ in range(calls):
                fn()

        return time_call(block, device) / calls


def time_blocks(
    fn: Callable[[], object], device: torch.device | str, blocks: int, calls: int, warmup: int = 1
) -> list[float]:
    """`blocks` samples of seconds per call, each from `calls` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    return [time_block(fn, device, calls) for _ in range(blocks)]


def calls_for_duration(fn: Callable[[], object], device: torch.device | str, seconds: float) -> int:
    """How many calls make a block of about `seconds` (at least 1), from one probe call."""
    per_call = max(time_call(fn, device), 1e-7)
    return max(1, int(seconds / per_call))
