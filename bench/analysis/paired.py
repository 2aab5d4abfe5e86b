"""Paired statistics for `bench ab`: HEAD against BASE, measured in the same rounds.

On a shared machine load arrives in bursts that last longer than one run, so two runs measured
minutes apart differ by more than their own samples say. `bench ab` runs BASE and HEAD in
alternating processes, round after round; a burst that hits a round hits both of its arms. The
verdict is read from the per-round ratios HEAD / BASE, never from the two pools of samples: the
median of the paired log-ratios, its 95% percentile bootstrap interval (rounds resampled, fixed
seed), and a one-sided Wilcoxon signed-rank p-value (scipy) beside it.

The rule has the gate's shape (bench.analysis.significance.RegressionCheck): a regression when the
median paired ratio is above the limit AND the interval lies wholly above it AND, for times, the
signed-rank test finds HEAD slower at ALPHA; a pass when the interval lies wholly at or below the
limit; inconclusive otherwise (the interval straddles the limit, the rounds disagree too often, or
fewer than MIN_ROUNDS complete rounds, MIN_ROUNDS_COUNTS for instruction counts), which asks for
more rounds rather than guessing. The signed-rank test is there because a percentile interval of
the median of a few rounds is too narrow: on a loaded machine an A/A pair whose 4 rounds all
happened to favour BASE cleared a 5% limit with its interval, while the test said p = 1/16.

    python -c "from bench.analysis.paired import compare_paired as c; print(c([1.0, 1.3, 1.0, 1.1], [1.1, 1.43, 1.1, 1.21]))"
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _scipy_stats

from bench.analysis.significance import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    INCONCLUSIVE,
    INSTRUCTIONS,
    RegressionCheck,
    metric_samples,
    quantile_resamples,
)
from bench.records import ConfigKey, timing_metric_for

MIN_ROUNDS = 5  # fewer complete rounds of times: inconclusive (5 is the least that can reach p < 0.05)
# Instruction counts hardly move between processes (they do not depend on load): two rounds bound
# them, and a round under valgrind is slow.
MIN_ROUNDS_COUNTS = 2
PASS, REGRESSION = "pass", "REGRESSION"  # and the gate's INCONCLUSIVE

METHOD = (
    f"median of the per-round ratios HEAD / BASE; 95% percentile bootstrap interval of it "
    f"({BOOTSTRAP_RESAMPLES} resamples of the rounds, seed {BOOTSTRAP_SEED}); one-sided Wilcoxon "
    f"signed-rank p-value of the log-ratios (scipy), alpha {ALPHA}"
)


@dataclass(frozen=True)
class PairedComparison:
    """HEAD against BASE for one configuration and metric, one value per arm per round (lower is better)."""

    base: tuple[float, ...]  # BASE's statistic (median of its samples) in each complete round
    head: tuple[float, ...]  # HEAD's, same rounds, same order
    ci_low: float  # 95% bootstrap interval of the median paired ratio; nan below MIN_ROUNDS
    ci_high: float
    p_slower: float  # Wilcoxon signed-rank, H1: HEAD slower; nan below MIN_ROUNDS
    counts: bool = False  # instruction counts: deterministic, judged on the interval alone
    block_ratios: tuple[float, ...] = ()  # per round, from blocks timed in lockstep (else head / base)

    @property
    def rounds(self) -> int:
        return len(self.base)

    @property
    def ratios(self) -> list[float]:
        """HEAD / BASE in each round: above 1 means HEAD was slower in that round."""
        return list(self.block_ratios) or [h / b for b, h in zip(self.base, self.head)]

    @property
    def ratio(self) -> float:
        """The median paired ratio (exp of the median log-ratio)."""
        return float(np.exp(np.median(np.log(self.ratios))))

    @property
    def tested(self) -> bool:
        return not math.isnan(self.ci_low)


def _median_interval(log_ratios: np.ndarray) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of `log_ratios`, as ratios."""
    medians = quantile_resamples(log_ratios, np.random.default_rng(BOOTSTRAP_SEED), BOOTSTRAP_RESAMPLES)
    low, high = np.quantile(medians, [ALPHA / 2, 1 - ALPHA / 2])
    return float(np.exp(low)), float(np.exp(high))


def _signed_rank_p(log_ratios: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p (HEAD slower); 1 when every round tied (identical counts)."""
    if not np.any(log_ratios):
        return 1.0
    return float(_scipy_stats.wilcoxon(log_ratios, alternative="greater").pvalue)


def block_paired_ratio(base_blocks: Sequence[float], head_blocks: Sequence[float]) -> float:
    """One round's HEAD / BASE from blocks timed in lockstep: the median of the ratios of block k
    of HEAD to block k of BASE, measured moments apart, so that load they shared cancels."""
    n = min(len(base_blocks), len(head_blocks))
    logs = np.log(np.asarray(head_blocks[:n], dtype=float) / np.asarray(base_blocks[:n], dtype=float))
    return float(np.exp(np.median(logs)))


def compare_paired(
    base: Sequence[float], head: Sequence[float], counts: bool = False, block_ratios: Sequence[float] = ()
) -> PairedComparison:
    """One value per arm per complete round -> the paired comparison; untested below MIN_ROUNDS
    rounds (MIN_ROUNDS_COUNTS for instruction counts). Values must be positive. `block_ratios`,
    one per round, replace head / base where the round's blocks were timed in lockstep."""
    if len(base) != len(head) or not len(base):
        raise ValueError(
            f"paired values need the same number of rounds on each side, got {len(base)} and {len(head)}"
        )
    b, h = np.asarray(base, dtype=float), np.asarray(head, dtype=float)
    if not (np.all(b > 0) and np.all(h > 0) and np.all(np.isfinite(b)) and np.all(np.isfinite(h))):
        raise ValueError("paired values must be positive and finite (times or counts)")
    paired = tuple(float(r) for r in block_ratios)
    if paired and len(paired) != len(b):
        raise ValueError(f"{len(paired)} block ratios for {len(b)} rounds")
    if len(b) < (MIN_ROUNDS_COUNTS if counts else MIN_ROUNDS):
        return PairedComparison(tuple(b), tuple(h), math.nan, math.nan, math.nan, counts, paired)
    logs = np.log(paired) if paired else np.log(h / b)
    low, high = _median_interval(logs)
    return PairedComparison(tuple(b), tuple(h), low, high, _signed_rank_p(logs), counts, paired)


def paired_verdict(result: PairedComparison, check: RegressionCheck) -> tuple[str, str]:
    """(PASS, REGRESSION or INCONCLUSIVE, why in one line) under `check`'s limit."""
    limit, share = check.limit, f"{check.max_slowdown:.0%}"
    if not result.tested:
        return INCONCLUSIVE, (
            f"{result.rounds} complete round{'s' * (result.rounds != 1)}, fewer than {MIN_ROUNDS_COUNTS if result.counts else MIN_ROUNDS}: "
            "run more --rounds"
        )
    interval = f"95% interval {result.ci_low:.3f}-{result.ci_high:.3f}"
    if result.ratio > limit and result.ci_low > limit and (result.counts or result.p_slower < ALPHA):
        return REGRESSION, (
            f"median paired ratio {result.ratio:.3f} ({result.ratio - 1:+.1%}, limit +{share}), {interval} "
            f"lies above {limit:.3f}; Wilcoxon p = {result.p_slower:.2g}"
        )
    if result.ci_high > limit:
        return INCONCLUSIVE, (
            f"median paired ratio {result.ratio:.3f}, {interval} reaches above {limit:.3f}: neither a pass "
            "nor a regression; run more --rounds, quieten the machine, or gate --metric instructions"
        )
    if result.ci_low > 1:
        return PASS, f"slower, within {share} ({interval})"
    if result.ci_high < 1:
        return PASS, f"faster ({interval})"
    return PASS, f"no significant difference ({interval})"


# --- judging the rounds of an A/B run -----------------------------------------------------------


def gated_metric(workload: str, instructions: bool) -> str:
    """The raw-sample name judged for a workload: its time, or its instruction count."""
    return metric_samples(INSTRUCTIONS, workload) if instructions else timing_metric_for(workload)


# One arm's run of one round: key -> (status, reason, that round's statistic of the gated metric or
# None, the gated metric's samples in the order they were timed)
RoundValues = dict[ConfigKey, tuple[str, str, float | None, tuple[float, ...]]]


@dataclass
class Line:
    """One configuration and metric: its paired comparison (None when never both measured) and verdict."""

    config: str
    metric: str
    comparison: PairedComparison | None
    verdict: str
    why: str

    def as_json(self) -> dict:
        c, numbers = self.comparison, {}
        if c is not None:
            numbers = {"base": list(c.base), "head": list(c.head), "ratios": c.ratios, "ratio": c.ratio,
                       "ci_low": c.ci_low, "ci_high": c.ci_high, "p_slower": c.p_slower}  # fmt: skip
        finite = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        doc = {
            "config": self.config,
            "metric": self.metric,
            **numbers,
            "verdict": self.verdict,
            "why": self.why,
        }
        return {k: [finite(x) for x in v] if isinstance(v, list) else finite(v) for k, v in doc.items()}


@dataclass
class Outcome:
    lines: list[Line] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)  # `key: BASE status, HEAD status`

    def count(self, verdict: str) -> int:
        return sum(line.verdict == verdict for line in self.lines)


def judge(rounds: list[dict], instructions: bool, check: RegressionCheck) -> Outcome:
    """Complete rounds ({"A": RoundValues, "B": RoundValues, "lockstep": bool} each) -> every
    configuration's verdict, or why it was not compared. A configuration that ran in BASE and fails
    (or is absent) in HEAD regressed. Rounds timed in lockstep are judged on their block ratios
    (the median statistic only: a fast tail is a per-arm statistic)."""
    outcome = Outcome()
    keys = list(dict.fromkeys(k for r in rounds for arm in ("A", "B") for k in r[arm]))
    for key in keys:
        metric = gated_metric(key.workload, instructions)
        base, head, blocks, broke, statuses = [], [], [], "", set()
        for r in rounds:
            a, b = r["A"].get(key), r["B"].get(key)
            statuses.add((a[0] if a else "absent", b[0] if b else "absent"))
            if a and b and a[2] is not None and b[2] is not None:
                base.append(a[2])
                head.append(b[2])
                if r.get("lockstep") and check.q == 0.5 and a[3] and b[3]:
                    blocks.append(block_paired_ratio(a[3], b[3]))
            elif a and a[0] == "ok" and (b is None or b[0] == "failed"):
                broke = broke or (b[1] if b else "absent in HEAD's run")
        if broke:
            outcome.lines.append(
                Line(str(key), metric, None, REGRESSION, f"ran in BASE, fails in HEAD: {broke}")
            )
        elif base:
            paired = blocks if len(blocks) == len(base) else []  # every round in lockstep, or none
            comparison = compare_paired(base, head, counts=instructions, block_ratios=paired)
            outcome.lines.append(Line(str(key), metric, comparison, *paired_verdict(comparison, check)))
        else:
            seen = "; ".join(f"BASE {a}, HEAD {b}" for a, b in sorted(statuses))
            outcome.not_compared.append(f"{key}: {seen}")
    return outcome
