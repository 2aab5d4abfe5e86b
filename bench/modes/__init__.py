"""The modes: how one configuration's training step and forward pass are built, by name.

A registry of `Mode(name, devices, description, build)`; `build(device, net_config, config)`
returns a `Trainer` (bench.modes.base). One module per mode family: MODES names each one's builder.

    python -c "from bench.modes import build_trainer; t = build_trainer('eager', 'cpu'); print(t.step())"
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import ModuleType

import torch

from bench.errors import UsageError
from bench.measure.timing import synchronize
from bench.modes import cuda_graph_step, fullstep, fused, module, numpy_reference
from bench.modes.base import Trainer
from sumnet.model import NetConfig
from sumnet.train import TrainConfig

DEVICE_TYPES = ("cpu", "cuda", "mps")
SLOWDOWN_ENV = "SUMNET_BENCH_SLOWDOWN"  # e.g. 0.25: every training step spins 25% longer (gate validation)
MAX_SLOWDOWN = 100.0  # a factor beyond this is a typo, not a test of the gate

Builder = Callable[[torch.device, NetConfig, TrainConfig], Trainer]


def _numba_reference() -> ModuleType:
    """bench.modes.numba_reference, imported when the mode is first asked for: importing numba is a
    sizeable share of a process's start, and most processes (every --metric instructions child,
    runs of other modes) never use it."""
    from bench.modes import numba_reference

    return numba_reference


@dataclass(frozen=True)
class Mode:
    name: str
    devices: tuple[str, ...]  # device types it runs on
    description: str
    build: Builder
    missing: Callable[[str], str | None] = lambda device: None  # why it cannot run on device here, else None


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("eager", DEVICE_TYPES, "plain PyTorch, the article's step", module.build),
        Mode("compile", DEVICE_TYPES, "torch.compile(net), default mode; Adam stays eager",
             partial(module.build, compile_mode="default")),
        Mode("compile-cudagraphs", ("cuda",), 'torch.compile(net, mode="reduce-overhead"): CUDA graphs',
             partial(module.build, compile_mode="reduce-overhead")),
        Mode("compile-fullstep", DEVICE_TYPES, "forward, backward and Adam compiled as one function",
             fullstep.build_trainer),
        Mode("cudagraph", ("cuda",), "the whole step, data generation included, captured as one CUDA graph",
             cuda_graph_step.build_trainer),
        Mode("numpy-reference", ("cpu",), "the same Net, data and Adam in NumPy alone: the hand-written "
             "floor", numpy_reference.build_trainer),
        Mode("fused", ("cuda",), "the whole step, batch draw included, in one Triton kernel (fp32 dots), "
             "one graph replay per step", fused.build_trainer, fused.unavailable_reason),
        Mode("numba-reference", ("cpu",), "the whole step, batch draw included, as one Numba-compiled "
             "function with no allocation: the floor",
             lambda *args: _numba_reference().build_trainer(*args),
             lambda device: _numba_reference().unavailable_reason()),
    )
}  # fmt: skip
FLOOR_MODES = ("numpy-reference", "numba-reference")  # hand-written floors: "x floor" uses the fastest


def env_number(name: str, maximum: float, environ: dict[str, str] | None = None) -> float:
    """The environment variable `name` as a number from 0 to `maximum` (0 when unset); UsageError
    for anything else."""
    text = (os.environ if environ is None else environ).get(name, "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= maximum:  # also refuses nan and inf
        raise UsageError(f"{name} must be a number from 0 to {maximum:g}, got {text!r}")
    return value


def slowdown_factor(environ: dict[str, str] | None = None) -> float:
    """The validated SUMNET_BENCH_SLOWDOWN factor (0 when unset); UsageError for anything else."""
    return env_number(SLOWDOWN_ENV, MAX_SLOWDOWN, environ)


def _with_slowdown(step: Callable[[], object], factor: float, device: torch.device) -> Callable[[], object]:
    """Make every step take (1 + factor) times as long by spinning after it: a real, known slowdown.

    On CPU the spin adds `factor` times the step's own CPU time (process_time, all threads) and
    counts its progress on this thread's CPU clock, so a step slowed under load is still slowed by
    about `factor`: a wall-clock spin that the scheduler preempts ends a whole time slice late
    (docs/ci-gate.md has the measurement). On CUDA the step's time is the device's, so the spin
    follows the wall clock.
    """
    if device.type != "cpu":

        def slowed() -> object:
            start = time.perf_counter()
            out = step()
            synchronize(device)
            deadline = start + (time.perf_counter() - start) * (1 + factor)
            while time.perf_counter() < deadline:
                pass
            return out

        return slowed

    def slowed_cpu() -> object:
        start = time.process_time_ns()
        out = step()
        deadline = time.thread_time_ns() + (time.process_time_ns() - start) * factor
        while time.thread_time_ns() < deadline:
            pass
        return out

    return slowed_cpu


def build_trainer(
    mode: str,
    device: torch.device | str,
    net_config: NetConfig = NetConfig(),
    config: TrainConfig = TrainConfig(),
) -> Trainer:
    """The Trainer for `mode` on `device`, with fresh weights from `config.seed`."""
    device = torch.device(device)
    trainer = MODES[mode].build(device, net_config, config)
    slowdown = slowdown_factor()
    if slowdown > 0:
        trainer.step = _with_slowdown(trainer.step, slowdown, device)
        trainer.notes.append(f"{SLOWDOWN_ENV}={slowdown}: steps deliberately slowed")
    return trainer


__all__ = ["FLOOR_MODES", "MODES", "SLOWDOWN_ENV", "Mode", "Trainer", "build_trainer", "slowdown_factor"]
