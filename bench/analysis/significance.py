"""Is one set of timing samples slower than another, and by more than a threshold? A percentile
bootstrap interval (fixed seed) of the ratio of medians from the raw samples, a Mann-Whitney U test,
and the gate's verdict of one configuration and metric (`judge`).

    python -c "from bench.analysis.significance import compare_samples as c; print(c([1.3, 1.25, 1.28, 1.31], [1.0, 1.02, 0.99, 1.01]))"
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.errors import UsageError
from bench.measure.machine_load import LOADED_LOAD_PER_CORE, LOADED_STEAL_FRAC
from bench.records import Record

ALPHA = 0.05  # significance level of every test and interval here (95% intervals)
BOOTSTRAP_RESAMPLES = 2000  # enough for stable 2.5%/97.5% percentiles
BOOTSTRAP_SEED = 20240917  # fixed: the same samples always give the same interval
MIN_SAMPLES = 3  # fewer raw samples on either side: no test, the bare median ratio decides
_CHUNK_ELEMENTS = 2_000_000  # resample in chunks so a 4000-sample pytest-benchmark row stays small

FASTER, SLOWER, NO_DIFFERENCE = "faster", "slower", "no significant difference"

METHOD = (
    f"95% percentile bootstrap interval of the ratio of medians ({BOOTSTRAP_RESAMPLES} resamples "
    f"of the raw samples, seed {BOOTSTRAP_SEED}); Mann-Whitney U p-value (scipy), alpha {ALPHA}"
)


def quantile_resamples(
    values: np.ndarray, rng: np.random.Generator, resamples: int, q: float = 0.5
) -> np.ndarray:
    """The q-quantile (median by default) of `resamples` bootstrap resamples of `values`, vectorised."""
    n = len(values)
    per_chunk = max(1, _CHUNK_ELEMENTS // n)
    out = np.empty(resamples)
    for start in range(0, resamples, per_chunk):
        stop = min(resamples, start + per_chunk)
        drawn = values[rng.integers(0, n, size=(stop - start, n))]
        out[start:stop] = np.median(drawn, axis=1) if q == 0.5 else np.quantile(drawn, q, axis=1)
    return out


def _resampled(group: Sequence, rng: np.random.Generator, resamples: int, q: float) -> np.ndarray:
    """Bootstrap q-quantiles of a sample; of a list of runs (each a list of raw samples), two-stage:
    each run's quantile from a resample of its samples, then the median of runs drawn with replacement."""
    runs = len(group) and isinstance(group[0], (list, tuple, np.ndarray))
    if not len(group) or (runs and any(len(run) == 0 for run in group)):
        raise ValueError("bootstrap of an empty sample")
    if not runs:
        return quantile_resamples(np.asarray(group, dtype=float), rng, resamples, q)
    per_run = np.stack([quantile_resamples(np.asarray(run, dtype=float), rng, resamples, q) for run in group])
    picks = rng.integers(0, len(group), (resamples, len(group)))
    return np.median(per_run[picks, np.arange(resamples)[:, None]], axis=1)


def bootstrap_ratio_interval(
    current: Sequence,
    baseline: Sequence,
    confidence: float = 1 - ALPHA,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    q: float = 0.5,
) -> tuple[float, float]:
    """Percentile bootstrap interval of median(current) / median(baseline) (or of another q-quantile).
    Each side is a sample of positive times, or a list of runs (lists of raw samples: two-stage, for
    the history's change points); the sides are resampled independently, current first."""
    rng = np.random.default_rng(seed)
    ratios = _resampled(current, rng, resamples, q) / _resampled(baseline, rng, resamples, q)
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return float(low), float(high)


def mann_whitney_p(
    current: Sequence[float], baseline: Sequence[float], alternative: str = "two-sided"
) -> float:
    """Mann-Whitney U p-value; alternative "greater" tests current > baseline (slower)."""
    from scipy.stats import mannwhitneyu  # scipy.stats costs a second: `history trend` never needs it

    return float(mannwhitneyu(current, baseline, alternative=alternative).pvalue)


@dataclass(frozen=True)
class SampleComparison:
    """current against baseline for one metric (lower is better: a time)."""

    n_current: int  # raw samples; 0 when only a summary value was available
    n_baseline: int
    current: float  # the statistic of current's samples: the median unless q says otherwise
    baseline: float
    ci_low: float = math.nan  # 95% bootstrap interval of the ratio; nan without raw samples (untested)
    ci_high: float = math.nan
    p_two_sided: float = math.nan  # Mann-Whitney U, current vs baseline; nan without raw samples
    p_slower: float = math.nan  # one-sided, H1: current is slower
    q: float = 0.5  # the quantile compared: 0.5 is the median

    @property
    def ratio(self) -> float:
        """current / baseline of the statistic: above 1 means current is slower."""
        return self.current / self.baseline if self.baseline > 0 else math.inf

    @property
    def tested(self) -> bool:
        """Whether raw samples allowed a test (else only the ratio is known)."""
        return not math.isnan(self.ci_low)

    @property
    def verdict(self) -> str:
        """faster / slower when the 95% interval excludes 1 and the two-sided U test agrees at ALPHA."""
        if self.tested and self.p_two_sided < ALPHA and (self.ci_low > 1 or self.ci_high < 1):
            return SLOWER if self.ci_low > 1 else FASTER
        return NO_DIFFERENCE


def compare_samples(current: Sequence[float], baseline: Sequence[float], q: float = 0.5) -> SampleComparison:
    """Medians (or q-quantiles), bootstrap interval of their ratio and U-test p-values of two sample
    sets; with fewer than MIN_SAMPLES on either side only the statistic (interval and p nan)."""
    cur = np.asarray([float(v) for v in current if v is not None and not math.isnan(float(v))])
    base = np.asarray([float(v) for v in baseline if v is not None and not math.isnan(float(v))])
    if not len(cur) or not len(base):
        raise ValueError("compare_samples needs at least one sample on each side")
    value_cur, value_base = float(np.quantile(cur, q)), float(np.quantile(base, q))
    if min(len(cur), len(base)) < MIN_SAMPLES:
        return SampleComparison(len(cur), len(base), value_cur, value_base, q=q)
    low, high = bootstrap_ratio_interval(cur, base, q=q)
    p_two_sided, p_slower = mann_whitney_p(cur, base, "two-sided"), mann_whitney_p(cur, base, "greater")
    return SampleComparison(len(cur), len(base), value_cur, value_base, low, high, p_two_sided, p_slower, q)


def compare_records(current: Record, baseline: Record, metric: str, q: float = 0.5) -> SampleComparison:
    """The one comparison of two records on one metric (compare, gate and the history's gate): the
    q-quantile of the raw samples when both records have them, else the records' summary values
    (the pNN value for a quantile, the median when that is absent too), untested."""
    now, before = current.raw(metric), baseline.raw(metric)
    if now and before:
        return compare_samples(now, before, q)
    name = metric if q == 0.5 else f"{metric}_p{round(q * 100)}"
    if math.isnan(current.number(name)) or math.isnan(baseline.number(name)):
        name = metric  # no such summary value: the median stands in
    return SampleComparison(0, 0, current.number(name), baseline.number(name))


_SPEC = re.compile(r"^(?:(?P<statistic>median|p[1-9][0-9]?):)?(?P<percent>\d+(?:\.\d+)?)%$")


@dataclass(frozen=True)
class RegressionCheck:
    """Fails when the ratio of medians exceeds 1 + max_slowdown AND the lower end of its 95% bootstrap
    interval does too (without MIN_SAMPLES raw samples, the ratio alone, and the message says so).

    Not "ratio above the limit and U test significant": the U test asks whether the runs differ at
    all, which a few percent of drift on a busy machine satisfies. `p10:10%` compares the fast tail:
    other processes only add time. Rates: scripts/gate_rates.py."""

    max_slowdown: float = 0.10  # 0.10: fail beyond 10% slower
    statistic: str = "median"  # or pNN, a percentile of the raw samples (p10: the fast tail)

    @classmethod
    def parse(cls, spec: str) -> RegressionCheck:
        """`10%`, `median:10%` (pytest-benchmark's --benchmark-compare-fail syntax) or `p10:10%`."""
        match = _SPEC.match(spec.strip())
        if not match:
            raise ValueError(f"expected a slowdown such as 10%, median:10% or p10:10%, got {spec!r}")
        return cls(max_slowdown=float(match["percent"]) / 100, statistic=match["statistic"] or "median")

    @property
    def q(self) -> float:
        """The quantile the statistic names: 0.5 for the median, 0.1 for p10."""
        return 0.5 if self.statistic == "median" else int(self.statistic[1:]) / 100

    @property
    def limit(self) -> float:
        """The largest ratio current / baseline that passes."""
        return 1 + self.max_slowdown

    def describe(self) -> str:
        return (
            f"fails when its {self.statistic} is more than {self.max_slowdown:.0%} slower and the lower end "
            f"of the 95% bootstrap interval of the {self.statistic} ratio is above {self.limit:.2f} too"
        )

    def failure(self, result: SampleComparison) -> str | None:
        """Why `result` is a regression, or None when it passes."""
        if result.ratio <= self.limit:
            return None
        slower = f"{self.statistic} {result.ratio - 1:+.1%} (limit +{self.max_slowdown:.0%})"
        if not result.tested:
            return f"{slower}; too few raw samples to test significance, the {self.statistic} ratio alone"
        if result.ci_low <= self.limit:
            return None
        return (
            f"{slower}, 95% interval of the ratio {result.ci_low:.3f}-{result.ci_high:.3f} "
            f"lies above {self.limit:.2f}; Mann-Whitney p = {result.p_slower:.2g}"
        )

    def fails(self, current: Sequence[float], baseline: Sequence[float]) -> str | None:
        """Raw samples of one metric in the current and baseline runs -> failure message or None."""
        return self.failure(compare_samples(current, baseline, self.q))


def slowdown_argument(text: str) -> RegressionCheck:
    """--max-slowdown's argparse type, for `bench gate` and `bench history gate` alike."""
    try:
        return RegressionCheck.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# --- the verdict of one configuration and metric (gate, the history's gate) ------------------

INSTRUCTIONS = "instructions"  # --metric name: CPU instructions per step / call, counted per process
INSTRUCTIONS_LIMIT = 0.01  # a deterministic count: 1% more work is a regression
MAX_COUNT_SPREAD = 0.005  # counts of one run's processes further apart than this are not deterministic
INCONCLUSIVE = "INCONCLUSIVE"
ADVICE = (
    "`python -m bench ab BASE` (both commits interleaved in one job, paired), more `--repeats` "
    "(the variance between repeats then decides), or `--metric instructions` (a count that load does not change)"
)


def metric_samples(metric: str, workload: str) -> str:
    """The sample name a gated metric reads: `instructions` is instructions_per_step for training,
    instructions_per_call for inference; a time is its own name."""
    if metric != INSTRUCTIONS:
        return metric
    return "instructions_per_step" if workload in ("train", "ddp") else "instructions_per_call"


def default_check(metric: str) -> RegressionCheck:
    """The limit of a metric when --max-slowdown is not given: 1% for instructions, 10% for times."""
    return RegressionCheck(INSTRUCTIONS_LIMIT) if metric == INSTRUCTIONS else RegressionCheck()


def _repeat_quantiles(record: Record, metric: str, q: float) -> list[float]:
    """The q-quantile of each repeat's blocks (in order in the raw samples); [] for fewer than two
    repeats or samples that do not split evenly."""
    values, repeats = record.raw(metric), record.repeats or 0
    if repeats < 2 or not values or len(values) % repeats:
        return []
    return [float(np.quantile(block, q)) for block in np.split(np.asarray(values), repeats)]


def between_repeats(
    current: Record, baseline: Record, metric: str, q: float = 0.5
) -> tuple[float, float] | None:
    """(lowest, highest) ratio of a current repeat's statistic to a baseline repeat's: the slowdown
    that holds against the variance between repeats; None without two repeats on each side."""
    now, before = _repeat_quantiles(current, metric, q), _repeat_quantiles(baseline, metric, q)
    if not now or not before:
        return None
    return min(now) / max(before), max(now) / min(before)


def load_note(record: Record, cores: int | None) -> str:
    """`load 6.2 on 2 cores, steal 31%` when the record was measured on a loaded machine, else ""."""
    loads = [record.number("load_avg_before"), record.number("load_avg_after")]
    load = max((v for v in loads if not math.isnan(v)), default=math.nan)
    steal, parts = record.number("cpu_steal_frac"), []
    if cores and load > LOADED_LOAD_PER_CORE * cores:
        parts.append(f"load {load:.1f} on {cores} cores")
    if steal > LOADED_STEAL_FRAC:
        parts.append(f"steal {steal:.0%}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Verdict:
    """One configuration and metric judged: REGRESSION (failure set), INCONCLUSIVE (why set) or a pass."""

    result: SampleComparison
    text: str  # the report's verdict cell, notes (noisy, loaded) included
    failure: str | None = None  # why it is a regression
    why: str | None = None  # why the runs cannot decide


def judge(
    baseline: Record, current: Record, metric: str, check: RegressionCheck, cores: int | None = None
) -> Verdict:
    """The gate's rule for one configuration and metric. A time regresses when the check fails on the
    samples and, where both runs have two or more repeats, every current repeat is beyond the limit
    of every baseline repeat too; without repeats, rows noisy in both runs (or noisy on a loaded
    machine) are inconclusive, as is a ratio beyond the limit whose interval reaches below it."""
    if metric == INSTRUCTIONS:
        return judge_counts(baseline, current, check)
    result = compare_records(current, baseline, metric, check.q)
    failure = check.failure(result)
    arms = (("baseline", baseline), ("current", current))
    noisy = [arm for arm, r in arms if "noisy" in r.flags]
    loaded = [f"{arm} {note}" for arm, r in arms if (note := load_note(r, cores))]
    between = between_repeats(current, baseline, metric, check.q)
    held = between is not None and between[1] <= check.limit  # every repeat within the limit
    why = None
    if failure and between is not None and between[0] <= check.limit:
        why = (
            f"slower within the runs, not between them: the repeats' {check.statistic} ratios span "
            f"{between[0]:.3f}-{between[1]:.3f}, down to the limit {check.limit:.2f}"
        )
    elif not failure and not held and result.ratio > check.limit:  # the interval reaches below the limit
        why = (
            f"{check.statistic} ratio {result.ratio:.3f} is beyond the limit {check.limit:.2f}, but its 95% "
            f"interval {result.ci_low:.3f}-{result.ci_high:.3f} reaches below it"
        )
    elif (len(noisy) == 2 or (loaded and noisy)) and (between is None if failure else not held):
        why = ("both runs are flagged noisy" if len(noisy) == 2 else "noisy on a loaded machine") + (
            " and one repeat each gives no variance between runs to hold a slowdown against"
        )
    if why:
        failure, text = None, INCONCLUSIVE
    elif failure:
        text = "REGRESSION"
    elif not result.tested:
        text = "within limit (not tested)"
    else:
        text = f"slower, within {check.max_slowdown:.0%}" if result.verdict == SLOWER else result.verdict
    notes = ([f"noisy: {', '.join(noisy)}"] if noisy else []) + (
        [f"loaded: {'; '.join(loaded)}"] if loaded else []
    )
    return Verdict(result, text + (f" ({'; '.join(notes)})" if notes else ""), failure, why)


def judge_counts(baseline: Record, current: Record, check: RegressionCheck) -> Verdict:
    """Instruction counts: the ratio of the medians of the per-process counts against the limit, no
    interval (the count does not depend on load); UsageError when one run's counts spread beyond
    MAX_COUNT_SPREAD, since the count then is not deterministic."""
    name = metric_samples(INSTRUCTIONS, current.key.workload)
    counts = {"baseline": baseline.raw(name), "current": current.raw(name)}
    for arm, values in counts.items():
        spread = (max(values) - min(values)) / float(np.median(values))
        if spread > MAX_COUNT_SPREAD:
            raise UsageError(
                f"{current.key} {name}: the {arm} run's counts spread {spread:.2%} between processes, over "
                f"{MAX_COUNT_SPREAD:.1%}: not a deterministic count, so the gate refuses it"
            )
    now, before = float(np.median(counts["current"])), float(np.median(counts["baseline"]))
    result = SampleComparison(len(counts["current"]), len(counts["baseline"]), now, before)
    if result.ratio > check.limit:
        failure = f"instructions {result.ratio - 1:+.2%} (limit +{check.max_slowdown:.0%}), ratio of the median counts"
        return Verdict(result, "REGRESSION", failure)
    return Verdict(result, "within limit" if result.ratio >= 1 else "fewer instructions")
