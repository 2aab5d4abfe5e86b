"""Convergence study: how often, how fast, and whether every device and mode learns the same.

Trains many seeds of the article's Net per device, mode and output activation (together, as one
batched ensemble, unless --no-ensemble), evaluates each on the same held-out set every K steps,
and reports the convergence rate with its 95% Wilson interval, steps- and seconds-to-target
(median and MLPerf-style trimmed mean), final accuracy, each never-converged seed with why, and
a paired test on step counts between configurations.

    python -m bench convergence                        # CPU, eager, relu and none, 32 seeds x 3000 steps
    python -m bench convergence --seeds 8 --steps 500 --device cpu,cuda --mode eager,compile
    nox -s convergence -- --seeds 64
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from scipy import stats as scipy_stats

from bench import environment
from bench.convergence_plots import write_figures
from bench.ensemble import (
    EnsembleNet,
    ensemble_step,
    init_ensemble,
    make_ensemble_optimizer,
    make_member_batches,
    make_member_generators,
    member_metrics,
)
from bench.results import RunWriter, make_run_dir, new_row
from bench.selection import parse_devices, parse_modes, skip_reason
from bench.stats import quantile, trimmed_mean, wilson_interval
from bench.timing import time_call
from sumnet.cli_args import (
    UsageError,
    bounded_positive_int,
    first_line,
    interrupt_on_sigterm,
    positive_float,
    positive_int,
)
from sumnet.data import TestSet, make_batch, make_generator, make_test_set
from sumnet.evaluate import DEFAULT_TARGET_MAE, Metrics, evaluate
from sumnet.model import OUTPUT_ACTIVATIONS, Net, NetConfig
from sumnet.train import init_net, make_optimizer, train_step

WORKLOAD = "convergence"
SUPPORTED_MODES = ("eager", "compile")  # the modes whose model is a module we can stack or compile
DEFAULT_SEEDS = 32
DEFAULT_EVAL_EVERY = 50  # steps between held-out evaluations: the resolution of steps-to-target
SIGNIFICANCE = 0.05  # Wilcoxon p below this: the step counts of two configurations differ
DEAD_AT_INIT = "dead output from the start"


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
    mode: str
    output_activation: str

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


def seed_outcome(trace: SeedTrace, target_mae: float) -> tuple[bool, str]:
    """(converged, why): converged when the final held-out MAE is below the target."""
    final = trace.maes[-1]
    if not math.isfinite(final) or not all(math.isfinite(v) for v in trace.losses[1:]):
        bad = next(
            (s for s, v in zip(trace.eval_steps[1:], trace.losses[1:]) if not math.isfinite(v)),
            trace.eval_steps[-1],
        )
        return False, f"loss not finite from step {bad}"
    if final < target_mae:
        return True, f"MAE {final:.4f} < target {target_mae:g}"
    if trace.zero_fractions[0] == 1.0:
        return False, f"{DEAD_AT_INIT}: the output ReLU gives 0 for every held-out row at init"
    if trace.zero_fractions[-1] == 1.0:
        died = next(
            s
            for i, s in enumerate(trace.eval_steps)
            if all(z == 1.0 for z in trace.zero_fractions[i:])  # dead from here to the end
        )
        return False, f"output died during training: every held-out prediction 0 from step {died}"
    reached = trace.steps_to_target(target_mae)
    if reached is not None:
        return False, f"reached the target at step {reached} but ended above it (MAE {final:.4f})"
    return False, f"still above target at the end (MAE {final:.4f} >= {target_mae:g})"


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

        Steady state: median step time between evaluations, the chunk with the first call left
        out. A medians' ratio shrugs off bursts of load from other processes; the whole-run ratio
        takes them in.
        """
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
    return quantile(per_step, 0.5) if per_step else None


# --- training -------------------------------------------------------------------------------


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
    line = _Timeline()
    done, elapsed, last = 0, 0.0, [torch.zeros(0)]

    def run(n: int) -> None:
        for _ in range(n):
            last[0] = step()

    def measure() -> None:
        held: list[list[Metrics]] = []
        line.eval_s += time_call(lambda: held.append(evaluate_all()), device)
        line.metrics.append(held[0])

    measure()
    line.losses.append([math.nan] * len(line.metrics[0]))
    line.clock_s.append(0.0)
    for target in settings.eval_steps()[1:]:
        if done == 0:
            line.first_call_s = time_call(lambda: run(1), device)
            elapsed, done = line.first_call_s, 1
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


def _compiled(module: torch.nn.Module, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if mode == "eager":
        return module
    if mode == "compile":
        return torch.compile(module)
    raise UsageError(f"mode {mode!r}: the convergence study trains in {', '.join(SUPPORTED_MODES)} only")


def train_plain(
    config: StudyConfig, settings: StudySettings, seed: int, test_set: TestSet, net: Net | None = None
) -> tuple[SeedTrace, _Timeline]:
    """One plain Net (init_net of `seed`, unless `net` is given) trained alone, as sumnet.train does."""
    net_config = NetConfig(output_activation=config.output_activation)
    net = net if net is not None else init_net(net_config, seed, config.device)
    model = _compiled(net, config.mode)
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
    model = _compiled(ensemble, config.mode)
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
        first_call_s=quantile([line.first_call_s for _, line in runs], 0.5),
        eval_s=sum(line.eval_s for _, line in runs),
    )


# --- statistics -----------------------------------------------------------------------------


def _key_columns(config: StudyConfig, settings: StudySettings) -> dict[str, object]:
    """The columns that identify a configuration's row, measured or skipped alike."""
    return dict(
        workload=WORKLOAD,
        device=config.device,
        mode=config.mode,
        batch_size=settings.batch_size,
        threads=torch.get_num_threads(),
        output_activation=config.output_activation,
        steps=settings.steps,
        seed=settings.seeds[0],
    )


def _median(values: Sequence[float]) -> float | None:
    return quantile(values, 0.5) if values else None


def summarize(result: ConfigResult, settings: StudySettings) -> tuple[dict[str, object], dict[str, object]]:
    """The configuration's results row and its raw per-seed samples."""
    target = settings.target_mae
    outcomes = [seed_outcome(t, target) for t in result.traces]
    done = [t for t, (ok, _) in zip(result.traces, outcomes) if ok]
    steps = [float(t.steps_to_target(target)) for t in done]
    times = [t.time_to_target_s(target) for t in done]
    n, k = len(result.traces), len(done)
    low, high = wilson_interval(k, n)
    never = [(t.seed, why) for t, (ok, why) in zip(result.traces, outcomes) if not ok]
    flags = []
    if any(why.startswith(DEAD_AT_INIT) for _, why in never):
        flags.append("dead-output-at-init")
    if never:
        flags.append("not-all-converged")
    how = f"one ensemble of {n}" if settings.ensemble else f"{n} sequential runs"
    c = result.config
    row = new_row(
        **_key_columns(c, settings),
        repeats=n,
        flags=";".join(flags),
        first_call_s=result.first_call_s,
        run_s=result.run_s,
        eval_s=result.eval_s,
        steps_to_target=_median(steps),
        steps_to_target_trimmed=trimmed_mean(steps) if steps else None,
        time_to_target_s=_median(times),
        time_to_target_trimmed_s=trimmed_mean(times) if times else None,
        final_loss=_median([t.losses[-1] for t in result.traces]),
        mae=_median([t.final.mae for t in done]),
        mae_worst=max((t.final.mae for t in done), default=None),
        exact_accuracy=_median([t.final.exact_accuracy for t in done]),
        exact_accuracy_worst=min((t.final.exact_accuracy for t in done), default=None),
        converged=k == n,
        verdict=f"{k}/{n} seeds converged ({how}), rate {k / n:.0%} [95% CI {low:.0%}, {high:.0%}]",
        seeds=n,
        converged_seeds=k,
        convergence_rate=k / n,
        convergence_rate_ci_low=low,
        convergence_rate_ci_high=high,
        not_converged=";".join(f"{seed}: {why}" for seed, why in never),
        peak_mem_bytes=torch.cuda.max_memory_allocated(c.device) if c.device.startswith("cuda") else None,
    )
    samples: dict[str, object] = {
        "target_mae": target,
        "eval_steps": settings.eval_steps(),
        "training": "ensemble" if settings.ensemble else "sequential",
        "per_seed": [_seed_sample(t, ok, why, target) for t, (ok, why) in zip(result.traces, outcomes)],
    }
    ratios = result.cost_ratios(settings.eval_steps())
    if result.one_seed is not None and ratios is not None:
        samples["one_seed"] = {
            "seed": result.one_seed.seed,
            "run_s": result.one_seed_run_s,
            "ensemble_run_s": result.run_s,
            "cost_ratio": ratios[0],
            "steady_cost_ratio": ratios[1],
            "clock_s": result.one_seed.clock_s,
            "ensemble_clock_s": result.ensemble_clock_s,
            "mae": result.one_seed.final.mae,
            "member_mae": result.traces[0].final.mae,  # the same seed inside the ensemble
        }
    return row, samples


def _seed_sample(trace: SeedTrace, converged: bool, reason: str, target: float) -> dict[str, object]:
    return {
        "seed": trace.seed,
        "converged": converged,
        "reason": reason,
        "steps_to_target": trace.steps_to_target(target),
        "time_to_target_s": trace.time_to_target_s(target),
        "mae": trace.final.mae,
        "exact_accuracy": trace.final.exact_accuracy,
        "init_zero_fraction": trace.zero_fractions[0],
        "loss_curve": dict(zip(trace.eval_steps[1:], trace.losses[1:])),
        "mae_curve": dict(zip(trace.eval_steps, trace.maes)),
        "clock_s": dict(zip(trace.eval_steps, trace.clock_s)),
    }


@dataclass(frozen=True)
class PairedComparison:
    """Steps-to-target of the same seeds in two configurations: `b` against the baseline `a`."""

    a: str
    b: str
    matched: int  # seeds converged in both
    identical: int  # of those, reaching the target at the same eval step
    only_a: int  # converged in a only
    only_b: int
    median_diff_steps: float | None  # median of (b - a) over the matched seeds
    p_value: float | None  # Wilcoxon signed-rank on the nonzero differences; None when there are none

    @property
    def conclusion(self) -> str:
        if self.matched == 0:
            return "no seed converged in both"
        if self.identical == self.matched:
            return "identical step counts for every matched seed"
        if self.p_value is not None and self.p_value < SIGNIFICANCE:
            more = "more" if (self.median_diff_steps or 0) > 0 else "fewer"
            return f"differ: {self.b} takes {more} steps (Wilcoxon p={self.p_value:.3g})"
        return f"no significant difference (Wilcoxon p={self.p_value:.3g})"


def compare_steps(a: ConfigResult, b: ConfigResult, target_mae: float) -> PairedComparison:
    """Pair the seeds of a and b; test whether their steps-to-target differ (Wilcoxon signed-rank)."""
    steps_a = {t.seed: (seed_outcome(t, target_mae)[0], t.steps_to_target(target_mae)) for t in a.traces}
    steps_b = {t.seed: (seed_outcome(t, target_mae)[0], t.steps_to_target(target_mae)) for t in b.traces}
    common = sorted(set(steps_a) & set(steps_b))
    pairs = [(steps_a[s][1], steps_b[s][1]) for s in common if steps_a[s][0] and steps_b[s][0]]
    diffs = [float(sb - sa) for sa, sb in pairs]
    nonzero = [d for d in diffs if d != 0]
    p_value = float(scipy_stats.wilcoxon(nonzero).pvalue) if nonzero else None
    return PairedComparison(
        a=a.config.label,
        b=b.config.label,
        matched=len(pairs),
        identical=len(diffs) - len(nonzero),
        only_a=sum(1 for s in common if steps_a[s][0] and not steps_b[s][0]),
        only_b=sum(1 for s in common if steps_b[s][0] and not steps_a[s][0]),
        median_diff_steps=_median(diffs),
        p_value=p_value,
    )


def comparisons(results: Sequence[ConfigResult], target_mae: float) -> list[PairedComparison]:
    """compile against eager on the same device, and every other device against cpu, same mode."""
    by_key = {(r.config.device, r.config.mode, r.config.output_activation): r for r in results}
    out = []
    for (device, mode, act), result in by_key.items():
        if mode != "eager" and (device, "eager", act) in by_key:
            out.append(compare_steps(by_key[(device, "eager", act)], result, target_mae))
        if device != "cpu" and ("cpu", mode, act) in by_key:
            out.append(compare_steps(by_key[("cpu", mode, act)], result, target_mae))
    return out


# --- command line ---------------------------------------------------------------------------


MAX_SEEDS = 100_000  # far beyond any useful study; keeps a typo from allocating an absurd ensemble


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds",
        type=bounded_positive_int(MAX_SEEDS),
        default=DEFAULT_SEEDS,
        help="seeds 0..N-1 (default 32)",
    )
    parser.add_argument("--device", default="cpu", help="comma-separated devices, or auto (default cpu)")
    parser.add_argument("--mode", default="eager", help="comma-separated: eager, compile (default eager)")
    parser.add_argument("--output-activation", default="relu,none", help="relu (the article), none, or both")
    parser.add_argument("--steps", type=positive_int, default=3000, help="training steps per seed")
    parser.add_argument(
        "--target-mae", type=positive_float, default=DEFAULT_TARGET_MAE, help="converged below this"
    )
    parser.add_argument(
        "--eval-every", type=positive_int, default=DEFAULT_EVAL_EVERY, help="steps between evaluations"
    )
    parser.add_argument("--no-ensemble", action="store_true", help="train the seeds one after another")
    parser.add_argument("--out", default="results", help="parent folder of the run folder (default results)")
    parser.add_argument("--no-figures", action="store_true", help="skip the matplotlib figures")


def parse_activations(text: str) -> list[str]:
    items = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not items:
        raise UsageError("empty --output-activation: give relu, none or relu,none")
    for item in items:
        if item not in OUTPUT_ACTIVATIONS:
            raise UsageError(
                f"unknown output activation {item!r}: choose from {', '.join(OUTPUT_ACTIVATIONS)}"
            )
    return items


def main(args: argparse.Namespace) -> int:
    devices, modes = parse_devices(args.device), parse_modes(args.mode)
    activations = parse_activations(args.output_activation)
    settings = StudySettings(
        seeds=tuple(range(args.seeds)),
        steps=args.steps,
        target_mae=args.target_mae,
        eval_every=args.eval_every,
        ensemble=not args.no_ensemble,
    )
    env = environment.collect()
    run_dir = make_run_dir(args.out, str(env["host"]))
    writer = RunWriter(run_dir, env, settings={**vars(args), "seeds": list(settings.seeds)})
    test_set = make_test_set()
    results, labelled = [], {}
    interrupt_on_sigterm()
    interrupted = False
    try:
        for device in devices:
            for mode in modes:
                for act in activations:
                    done = _study_one(StudyConfig(device, mode, act), settings, test_set, writer)
                    if done is not None:
                        results.append(done[0])
                        labelled[done[0].config.label] = done[1]
    except KeyboardInterrupt:  # keep and report the configurations already measured
        interrupted = True
    compared = comparisons(results, settings.target_mae)
    figures: dict[str, str] = {}
    skipped = "--no-figures given" if args.no_figures else None
    if not args.no_figures:
        figures, skipped = write_figures(run_dir, labelled)
        if skipped:
            print(f"figures skipped: {skipped}")
    from bench.convergence_report import render_report, summary_table  # rendering lives apart

    (run_dir / "report.md").write_text(render_report(writer, results, settings, compared, figures, skipped))
    print(summary_table(writer))
    for c in compared:
        print(f"{c.b} vs {c.a}: {c.conclusion}")
    print(f"{'INTERRUPTED: partial ' if interrupted else ''}report: {run_dir / 'report.md'}")
    return 130 if interrupted else 0


def _study_one(
    config: StudyConfig, settings: StudySettings, test_set: TestSet, writer: RunWriter
) -> tuple[ConfigResult, dict[str, object]] | None:
    """Train and record one configuration; a skipped or failed one becomes a row with its reason."""
    base = dict(**_key_columns(config, settings), seeds=len(settings.seeds))
    reason = skip_reason(config.device, config.mode)
    if reason is None and config.mode not in SUPPORTED_MODES:
        reason = f"the convergence study trains in {', '.join(SUPPORTED_MODES)} only"
    if reason is not None:
        print(f"{config.label}: skipped: {reason}", file=sys.stderr)
        writer.add(new_row(**base, status="skipped", reason=reason))
        return None
    how = "one ensemble" if settings.ensemble else "one after another"
    print(f"{config.label}: {len(settings.seeds)} seeds x {settings.steps} steps, {how} ...", file=sys.stderr)
    if config.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(config.device)
    try:
        result = study_config(config, settings, test_set)
    except RuntimeError as err:  # compile errors and CUDA out-of-memory are RuntimeErrors: they become a row
        first = first_line(err, type(err).__name__)
        print(f"{config.label}: failed: {first}", file=sys.stderr)
        writer.add(new_row(**base, status="failed", reason=first))
        return None
    row, samples = summarize(result, settings)
    writer.add(row, samples)
    print(f"{config.label}: {row['verdict']}; training {result.run_s:.1f} s", file=sys.stderr)
    return result, samples
