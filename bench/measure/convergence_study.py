"""The convergence study's training: many seeds of the article's Net per configuration, as one
batched ensemble (or one after another), evaluated on the held-out set every K steps. Returns
per-seed traces; the statistics are in bench.analysis.convergence_stats.

    python -m bench convergence --seeds 8 --steps 500
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.errors import UsageError
from bench.measure.ensemble import (
    EnsembleNet,
    ensemble_step,
    init_ensemble,
    make_ensemble_optimizer,
    make_member_batches,
    make_member_generators,
    member_metrics,
)
from bench.measure.timing import time_call
from sumnet.data import TestSet, make_batch, make_generator
from sumnet.evaluate import DEFAULT_TARGET_MAE, Metrics, evaluate
from sumnet.model import Net, NetConfig
from sumnet.train import init_net, make_optimizer, train_step

WORKLOAD = "convergence"
SUPPORTED_MODES = ("eager", "compile")  # the modes whose model is a module we can stack or compile
DEFAULT_SEEDS = 32
DEFAULT_EVAL_EVERY = 50  # steps between held-out evaluations: the resolution of steps-to-target


@dataclass(frozen=True)
class StudySettings:
    """What every configuration of one study trains."""

    seeds: tuple[int, ...]  # seed i: initial weights init_net(config, i) and batches make_generator(i)
    steps: int = 3000  # training steps per seed
    target_mae: float = DEFAULT_TARGET_MAE  # converged: held-out MAE below this (sum units)
    eval_every: int = DEFAULT_EVAL_EVERY  # held-out MAE every this many steps, plus at 0 and at the end
    ensemble: bool = True  # train all seeds at once as one batched ensemble
    batch_size: int = 32
    lr: float = 1e-3

    def eval_steps(self) -> list[int]:
        """0 (the initial weights), every eval_every steps, and the last step."""
        return [0, *range(self.eval_every, self.steps, self.eval_every), self.steps]


@dataclass(frozen=True)
class StudyConfig:
    device: str
    mode: str  # one of SUPPORTED_MODES
    output_activation: str

    def __post_init__(self) -> None:
        if self.mode not in SUPPORTED_MODES:
            raise UsageError(
                f"--mode {self.mode}: the convergence study trains in {', '.join(SUPPORTED_MODES)} only"
            )

    @property
    def label(self) -> str:
        return f"{self.device}/{self.mode}/{self.output_activation}"


@dataclass
class SeedTrace:
    """One seed's training, sampled at the study's eval steps."""

    seed: int
    eval_steps: list[int]
    maes: list[float]  # held-out MAE at each eval step; [0] is the initial weights
    zero_fractions: list[float]  # share of held-out predictions exactly 0 at each eval step
    losses: list[float]  # training-batch loss at each eval step (nan at step 0)
    clock_s: list[float]  # training seconds of one Net of this configuration up to each eval step
    final: Metrics

    def steps_to_target(self, target_mae: float) -> int | None:
        """First evaluated step whose held-out MAE is below the target, or None."""
        return next((s for s, m in zip(self.eval_steps, self.maes) if m < target_mae), None)

    def time_to_target_s(self, target_mae: float) -> float | None:
        step = self.steps_to_target(target_mae)
        return None if step is None else self.clock_s[self.eval_steps.index(step)]


@dataclass
class ConfigResult:
    """Every seed of one configuration, with the training times."""

    config: StudyConfig
    traces: list[SeedTrace]
    run_s: float  # training time of all seeds (one ensemble run, or the sum of sequential runs)
    first_call_s: float  # the first step, compilation included (median over seeds when sequential)
    eval_s: float  # time spent on held-out evaluation, kept out of every training time
    one_seed: SeedTrace | None = None  # ensemble mode: the plain Net of seeds[0], timed alone
    one_seed_run_s: float | None = None
    ensemble_clock_s: list[float] | None = None  # ensemble mode: the ensemble's own clock at each eval step

    def cost_ratios(self, eval_steps: Sequence[int]) -> tuple[float, float | None] | None:
        """(whole-run, steady-state) cost of the ensemble over one seed alone; None when sequential.
        Steady state (steady_step_s) shrugs off bursts of load from other processes; whole runs take them in."""
        if self.one_seed_run_s is None or self.one_seed is None or self.ensemble_clock_s is None:
            return None
        ensemble = steady_step_s(self.ensemble_clock_s, eval_steps)
        one = steady_step_s(self.one_seed.clock_s, eval_steps)
        return self.run_s / self.one_seed_run_s, (ensemble / one if ensemble and one else None)


def steady_step_s(clock_s: Sequence[float], eval_steps: Sequence[int]) -> float | None:
    """Median seconds per step over the chunks between evaluations after the first (None if none)."""
    per_step = [
        (c1 - c0) / (s1 - s0)
        for (s0, c0), (s1, c1) in zip(zip(eval_steps, clock_s), zip(eval_steps[1:], clock_s[1:]))
        if s0 > 0
    ]
    return float(np.median(per_step)) if per_step else None


@dataclass
class _Timeline:
    metrics: list[list[Metrics]] = field(default_factory=list)  # eval step -> one Metrics per member
    losses: list[list[float]] = field(default_factory=list)  # eval step -> one loss per member
    clock_s: list[float] = field(default_factory=list)
    first_call_s: float = 0.0
    eval_s: float = 0.0


def _run_timeline(
    step: Callable[[], torch.Tensor],
    evaluate_all: Callable[[], list[Metrics]],
    settings: StudySettings,
    device: str,
) -> _Timeline:
    """Train with `step` to each eval step, timing the training and the evaluation apart."""
    line, done, last = _Timeline(), 0, [torch.zeros(0)]

    def run(n: int) -> None:
        for _ in range(n):
            last[0] = step()

    def measure() -> None:
        line.eval_s += time_call(lambda: line.metrics.append(evaluate_all()), device)

    measure()
    line.losses.append([math.nan] * len(line.metrics[0]))
    line.clock_s.append(0.0)
    for target in settings.eval_steps()[1:]:
        if done == 0:
            line.first_call_s = elapsed = time_call(lambda: run(1), device)
            done = 1
        if target > done:
            elapsed += time_call(lambda n=target - done: run(n), device)
            done = target
        line.clock_s.append(elapsed)
        line.losses.append([float(v) for v in last[0].reshape(-1).tolist()])
        measure()
    return line


def _traces(line: _Timeline, seeds: Sequence[int], settings: StudySettings) -> list[SeedTrace]:
    return [
        SeedTrace(
            seed=seed,
            eval_steps=settings.eval_steps(),
            maes=[m[i].mae for m in line.metrics],
            zero_fractions=[m[i].zero_fraction for m in line.metrics],
            losses=[v[i] for v in line.losses],
            clock_s=list(line.clock_s),
            final=line.metrics[-1][i],
        )
        for i, seed in enumerate(seeds)
    ]


def train_plain(
    config: StudyConfig, settings: StudySettings, seed: int, test_set: TestSet, net: Net | None = None
) -> tuple[SeedTrace, _Timeline]:
    """One plain Net (init_net of `seed`, unless `net` is given) trained alone, as sumnet.train does."""
    net_config = NetConfig(output_activation=config.output_activation)
    net = net if net is not None else init_net(net_config, seed, config.device)
    model = torch.compile(net) if config.mode == "compile" else net
    optimizer = make_optimizer(net, settings.lr)
    gen = make_generator(seed, config.device)
    rows = test_set.to(config.device)

    def step() -> torch.Tensor:
        return train_step(model, optimizer, *make_batch(settings.batch_size, gen, net_config.input_size))

    line = _run_timeline(step, lambda: [evaluate(net, rows)], settings, config.device)
    return _traces(line, [seed], settings)[0], line


def train_ensemble(
    config: StudyConfig, settings: StudySettings, test_set: TestSet, ensemble: EnsembleNet | None = None
) -> tuple[list[SeedTrace], _Timeline]:
    """Every seed at once; `ensemble` (members in settings.seeds order) replaces the default init."""
    net_config = NetConfig(output_activation=config.output_activation)
    ensemble = ensemble if ensemble is not None else init_ensemble(net_config, settings.seeds, config.device)
    model = torch.compile(ensemble) if config.mode == "compile" else ensemble
    optimizer = make_ensemble_optimizer(ensemble, settings.lr)
    gens = make_member_generators(settings.seeds, config.device)
    rows = test_set.to(config.device)

    def step() -> torch.Tensor:
        return ensemble_step(model, optimizer, *make_member_batches(gens, settings.batch_size))

    line = _run_timeline(
        step, lambda: member_metrics(ensemble, rows.inputs, rows.targets), settings, config.device
    )
    return _traces(line, settings.seeds, settings), line


def study_config(config: StudyConfig, settings: StudySettings, test_set: TestSet) -> ConfigResult:
    """Train every seed of `config`; in ensemble mode also time seeds[0] alone as the per-Net clock."""
    if settings.ensemble:
        one, one_line = train_plain(config, settings, settings.seeds[0], test_set)
        traces, line = train_ensemble(config, settings, test_set)
        for trace in traces:
            trace.clock_s = list(one.clock_s)  # seconds-to-target: as a Net of this config trains alone
        return ConfigResult(
            config,
            traces,
            run_s=line.clock_s[-1],
            first_call_s=line.first_call_s,
            eval_s=line.eval_s + one_line.eval_s,
            one_seed=one,
            one_seed_run_s=one.clock_s[-1],
            ensemble_clock_s=list(line.clock_s),
        )
    runs = [train_plain(config, settings, seed, test_set) for seed in settings.seeds]
    return ConfigResult(
        config,
        [trace for trace, _ in runs],
        run_s=sum(line.clock_s[-1] for _, line in runs),
        first_call_s=float(np.median([line.first_call_s for _, line in runs])),
        eval_s=sum(line.eval_s for _, line in runs),
    )
