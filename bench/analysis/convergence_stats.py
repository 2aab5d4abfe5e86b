"""Statistics of the convergence study: each seed's outcome and why, a configuration's record
(rate with its Wilson interval, steps and seconds to target, worst accuracy), and the paired test
on step counts between configurations.

    python -m bench convergence --seeds 8 --steps 500
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as scipy_stats

from bench.analysis.stats import trimmed_mean, wilson_interval
from bench.measure.convergence_study import WORKLOAD, ConfigResult, SeedTrace, StudyConfig, StudySettings
from bench.records import ConfigKey, Record

SIGNIFICANCE = 0.05  # Wilcoxon p below this: the step counts of two configurations differ
DEAD_AT_INIT = "dead output from the start"


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


def study_key(config: StudyConfig, settings: StudySettings) -> ConfigKey:
    """The configuration key of one study configuration, measured or skipped alike."""
    c = config
    return ConfigKey(
        WORKLOAD, c.device, c.mode, settings.batch_size, torch.get_num_threads(), c.output_activation
    )


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if values else None


def summarize(result: ConfigResult, settings: StudySettings) -> Record:
    """The configuration's record: its outcome and the raw per-seed samples."""
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
    measured = dict(
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
        seeds=n,
        converged_seeds=k,
        convergence_rate=k / n,
        convergence_rate_ci_low=low,
        convergence_rate_ci_high=high,
        not_converged=";".join(f"{seed}: {why}" for seed, why in never),
        peak_mem_bytes=torch.cuda.max_memory_allocated(c.device) if c.device.startswith("cuda") else None,
    )
    measured["verdict"] = f"{k}/{n} seeds converged ({how}), rate {k / n:.0%} [95% CI {low:.0%}, {high:.0%}]"
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
    key = study_key(c, settings)
    return Record(
        key, seed=settings.seeds[0], steps=settings.steps, repeats=n, measured=measured, samples=samples
    )


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
    steps_a, steps_b = (
        {t.seed: (seed_outcome(t, target_mae)[0], t.steps_to_target(target_mae)) for t in r.traces}
        for r in (a, b)
    )
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
