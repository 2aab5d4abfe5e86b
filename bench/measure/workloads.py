"""The two measured workloads: a training run (timed per block, evaluated between blocks) and
an inference sweep over batch sizes. They return raw samples; nothing here renders.

    python -c "from bench.measure.workloads import *; from bench.modes import build_trainer; print(measure_training(lambda: build_trainer('eager', 'cpu'), 'cpu', TrainPlan(steps=300, repeats=1)).step_ms)"
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from bench.errors import describe
from bench.measure.process import minor_page_faults
from bench.measure.timing import calls_for_duration, time_block, time_blocks, time_call
from bench.modes.base import Trainer
from sumnet.data import TestSet, make_batch, make_generator, make_test_set
from sumnet.evaluate import DEFAULT_TARGET_MAE, Metrics, Verdict, metrics_from_predictions, verdict

INFERENCE_SEED = 99  # the inference inputs' own seed


@dataclass(frozen=True)
class TrainPlan:
    steps: int = 3000  # steps per training run (the article's 3000)
    repeats: int = 3  # training runs, each from a fresh model with the same seed
    block_steps: int = 100  # steps per timed block; the held-out MAE is evaluated between blocks
    target_mae: float = DEFAULT_TARGET_MAE
    warmup_blocks: int = 1  # blocks after the first call kept out of the steady-state samples


@dataclass
class RepeatResult:
    first_call_s: float  # the first step alone, synced: compilation and warm-up
    run_s: float  # all timed steps (evaluation excluded)
    eval_s: float  # time spent evaluating between blocks
    step_s: list[float]  # steady-state seconds per step, one sample per block
    loss_curve: dict[int, float]  # step -> loss at each block end
    mae_curve: dict[int, float]  # step -> held-out MAE at each block end
    steps_to_target: int | None
    time_to_target_s: float | None
    metrics: Metrics | None = None  # None where the run had no held-out set (DDP ranks but 0)
    verdict: Verdict | None = None


@dataclass
class TrainMeasurement:
    repeats: list[RepeatResult] = field(default_factory=list)

    @property
    def timed_s(self) -> float:
        """Seconds inside timed regions: training and evaluation of every repeat."""
        return sum(r.run_s + r.eval_s for r in self.repeats)

    @property
    def step_ms(self) -> list[float]:
        """Steady-state step samples of every repeat, pooled, in milliseconds."""
        return [s * 1e3 for r in self.repeats for s in r.step_s]


def block_sizes(steps: int, block: int) -> list[int]:
    """Steps per block after the first call, so blocks end on multiples of `block` (and at `steps`)."""
    sizes, done = [], 1
    while done < steps:
        end = min(steps, (done // block + 1) * block)
        sizes.append(end - done)
        done = end
    return sizes


def train_once(
    step: Callable[[], object],
    device: torch.device | str,
    plan: TrainPlan,
    held_out: Callable[[], Metrics] | None,
    loss: Callable[[object], float] = float,
    after: Callable[[int], None] = lambda steps: None,
) -> RepeatResult:
    """One training run of `plan.steps` calls of `step` (which returns the loss): the first call timed
    alone, then blocks. Untimed after each block: `loss(last loss)`, `held_out()` (timed apart) and
    `after(steps in the block)`, which also follows the first call as `after(1)`."""
    last: list[object] = [None]

    def one_step() -> None:
        last[0] = step()

    first_call_s = time_call(one_step, device)
    after(1)
    result = RepeatResult(first_call_s, first_call_s, 0.0, [], {}, {}, None, None)
    done, evals = 1, []
    for index, size in enumerate(block_sizes(plan.steps, plan.block_steps)):
        per_step = time_block(one_step, device, size)
        result.run_s += per_step * size
        done += size
        if index >= plan.warmup_blocks:
            result.step_s.append(per_step)
        result.loss_curve[done] = loss(last[0])
        if held_out is not None:
            result.eval_s += time_call(lambda: evals.append(held_out()), device)
            result.mae_curve[done] = evals[-1].mae
            if result.steps_to_target is None and evals[-1].mae < plan.target_mae:
                result.steps_to_target, result.time_to_target_s = done, result.run_s
        after(size)
    if not result.step_s:  # too few steps for a warm-up block: every step after the first call
        run_s = result.run_s
        result.step_s = [(run_s - first_call_s) / (plan.steps - 1)] if plan.steps > 1 else [first_call_s]
    if held_out is not None:
        result.metrics = held_out()
        result.verdict = verdict(result.metrics, plan.target_mae)
    return result


def trainer_metrics(trainer: Trainer, test_set: TestSet) -> Callable[[], Metrics]:
    """The held-out metrics of `trainer` on `test_set` (on its device), for train_once."""
    return lambda: metrics_from_predictions(trainer.predict(test_set.inputs), test_set.targets)


def measure_training(
    make_trainer: Callable[[], Trainer],
    device: torch.device | str,
    plan: TrainPlan,
    test_set: TestSet | None = None,
    on_repeat: Callable[[int], None] | None = None,
) -> TrainMeasurement:
    """`plan.repeats` training runs, each with a fresh Trainer from `make_trainer`."""
    device = torch.device(device)
    test_set = (test_set or make_test_set()).to(device)
    result = TrainMeasurement()
    for r in range(plan.repeats):
        trainer = make_trainer()
        result.repeats.append(train_once(trainer.step, device, plan, trainer_metrics(trainer, test_set)))
        if on_repeat is not None:
            on_repeat(r)
    return result


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int | None:
    """Peak bytes allocated by torch on a CUDA device since the last reset; None elsewhere."""
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


@dataclass(frozen=True)
class InferencePlan:
    batch_sizes: Sequence[int] = (1, 32, 1024, 16384, 131072)
    blocks: int = 15  # latency samples per batch size
    block_seconds: float = 0.02  # target duration of one block (calls per block derived from it)
    warmup_calls: int = 3


@dataclass
class InferencePoint:
    batch_size: int
    first_call_s: float  # first forward on this shape: compilation or graph capture included
    latency_s: list[float] | None  # seconds per forward, one sample per block
    skipped: str | None = None  # why this batch size was not measured (out of GPU memory)
    failed: str | None = None  # the error that stopped this batch size (e.g. a CPU allocation)
    peak_mem_bytes: int | None = None  # CUDA only: torch.cuda.max_memory_allocated for this batch size
    calls: int = 0  # forwards per block
    page_faults_per_call: float | None = None  # minor page faults per forward in the timed blocks

    @property
    def timed_s(self) -> float:
        """Seconds spent inside timed regions for this point (first call and blocks)."""
        first = 0.0 if math.isnan(self.first_call_s) else self.first_call_s
        return first + sum(self.latency_s or []) * self.calls


def measure_inference(
    trainer: Trainer, device: torch.device | str, plan: InferencePlan
) -> Iterator[InferencePoint]:
    """Yield each batch size's latency samples of the trainer's forward (inputs built on the device);
    one that fails (out of memory, any error) yields its point with the reason and the sweep goes on."""
    device = torch.device(device)
    generator = make_generator(INFERENCE_SEED, device)
    for batch_size in plan.batch_sizes:
        try:
            reset_peak_memory(device)
            x = make_batch(batch_size, generator)[0]
            run = trainer.inference(x)
            first = time_call(run, device)
            calls = calls_for_duration(run, device, plan.block_seconds)
            faults = minor_page_faults()
            samples = time_blocks(run, device, plan.blocks, calls, warmup=plan.warmup_calls)
            faults = (minor_page_faults() - faults) / (plan.blocks * calls + plan.warmup_calls)
            point = InferencePoint(
                batch_size,
                first,
                samples,
                peak_mem_bytes=peak_memory(device),
                calls=calls,
                page_faults_per_call=round(faults, 1),
            )
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            point = InferencePoint(batch_size, math.nan, None, "out of GPU memory: batch size trimmed")
        except Exception as err:  # this batch size's row says why; the next one still runs
            x = run = None  # drop what the failed size held before the next one allocates
            point = InferencePoint(batch_size, math.nan, None, failed=describe(err))
        yield point
