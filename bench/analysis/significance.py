"""Is one set of timing samples slower than another, and by more than a threshold?

Two runs of the same code on a noisy machine never give the same median. This module says
whether a difference is real: a percentile bootstrap interval for the ratio of medians
(current / baseline) from the raw samples, and a Mann-Whitney U test (scipy) on the same samples.
The bootstrap uses a fixed seed, so the same samples always give the same interval.

    python -c "from bench.analysis.significance import compare_samples as c; print(c([1.3, 1.25, 1.28, 1.31], [1.0, 1.02, 0.99, 1.01]))"
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

from bench.records import Record

ALPHA = 0.05  # significance level of every test and interval here (95% intervals)
BOOTSTRAP_RESAMPLES = 2000  # enough for stable 2.5%/97.5% percentiles; a few ms with numpy
BOOTSTRAP_SEED = 20240917  # fixed: the same samples always give the same interval
MIN_SAMPLES = 3  # fewer raw samples on either side: no test, the bare median ratio decides
_CHUNK_ELEMENTS = 2_000_000  # resample in chunks so a 4000-sample pytest-benchmark row stays small

FASTER, SLOWER, NO_DIFFERENCE = "faster", "slower", "no significant difference"

METHOD = (
    f"95% percentile bootstrap interval of the ratio of medians ({BOOTSTRAP_RESAMPLES} resamples "
    f"of the raw samples, seed {BOOTSTRAP_SEED}); Mann-Whitney U p-value (scipy), alpha {ALPHA}"
)


def _quantile_resamples(
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


def bootstrap_ratio_interval(
    current: Sequence[float],
    baseline: Sequence[float],
    confidence: float = 1 - ALPHA,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    q: float = 0.5,
) -> tuple[float, float]:
    """Percentile bootstrap interval of median(current) / median(baseline) (or of another q-quantile).

    The two sets are resampled independently (unpaired). Samples must be positive (times).
    """
    cur, base = np.asarray(current, dtype=float), np.asarray(baseline, dtype=float)
    if len(cur) == 0 or len(base) == 0:
        raise ValueError("bootstrap of an empty sample")
    rng = np.random.default_rng(seed)
    ratios = _quantile_resamples(cur, rng, resamples, q) / _quantile_resamples(base, rng, resamples, q)
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return float(low), float(high)


def mann_whitney_p(
    current: Sequence[float], baseline: Sequence[float], alternative: str = "two-sided"
) -> float:
    """Mann-Whitney U p-value; alternative "greater" tests current > baseline (slower)."""
    result = _scipy_stats.mannwhitneyu(current, baseline, alternative=alternative)
    return float(result.pvalue)


@dataclass(frozen=True)
class SampleComparison:
    """current against baseline for one metric (lower is better: a time)."""

    n_current: int  # raw samples; 0 when only a summary value was available
    n_baseline: int
    current: float  # the statistic of current's samples: the median unless q says otherwise
    baseline: float
    ci_low: float  # 95% bootstrap interval of the ratio; nan without raw samples
    ci_high: float
    p_two_sided: float  # Mann-Whitney U, current vs baseline; nan without raw samples
    p_slower: float  # one-sided, H1: current is slower
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
        if not self.tested:
            return NO_DIFFERENCE
        if self.p_two_sided < ALPHA and self.ci_low > 1:
            return SLOWER
        if self.p_two_sided < ALPHA and self.ci_high < 1:
            return FASTER
        return NO_DIFFERENCE


def compare_samples(current: Sequence[float], baseline: Sequence[float], q: float = 0.5) -> SampleComparison:
    """Medians (or q-quantiles), bootstrap interval of their ratio and U-test p-values of two sample sets.

    With fewer than MIN_SAMPLES on either side only the statistic is compared (interval and p nan).
    """
    cur = np.asarray([float(v) for v in current if v is not None and not math.isnan(float(v))])
    base = np.asarray([float(v) for v in baseline if v is not None and not math.isnan(float(v))])
    if not len(cur) or not len(base):
        raise ValueError("compare_samples needs at least one sample on each side")
    value_cur, value_base = float(np.quantile(cur, q)), float(np.quantile(base, q))
    if min(len(cur), len(base)) < MIN_SAMPLES:
        return SampleComparison(len(cur), len(base), value_cur, value_base, *([math.nan] * 4), q=q)
    low, high = bootstrap_ratio_interval(cur, base, q=q)
    return SampleComparison(
        n_current=len(cur),
        n_baseline=len(base),
        current=value_cur,
        baseline=value_base,
        ci_low=low,
        ci_high=high,
        p_two_sided=mann_whitney_p(cur, base, "two-sided"),
        p_slower=mann_whitney_p(cur, base, "greater"),
        q=q,
    )


def compare_values(current: float, baseline: float, q: float = 0.5) -> SampleComparison:
    """A comparison of bare summary values (a CSV without raw samples): ratio only, untested."""
    return SampleComparison(0, 0, float(current), float(baseline), *([math.nan] * 4), q=q)


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
    return compare_values(current.number(name), baseline.number(name))


_SPEC = re.compile(r"^(?:(?P<statistic>median|p[1-9][0-9]?):)?(?P<percent>\d+(?:\.\d+)?)%$")


@dataclass(frozen=True)
class RegressionCheck:
    """Fails when current is slower than baseline by more than `max_slowdown`, significantly.

    The rule: the ratio of medians exceeds 1 + max_slowdown AND the lower end of the 95% bootstrap
    interval of that ratio exceeds 1 + max_slowdown too, i.e. the samples exclude a slowdown of
    max_slowdown or less at alpha = 0.025 one-sided. Without raw samples (or with fewer than
    MIN_SAMPLES) only the ratio can be checked, and the message says so.

    Why not "ratio above the limit and U test significant": the U test asks whether current differs
    from baseline at all, which a few percent of drift between two runs on a busy machine already
    satisfies; requiring the interval itself to clear the limit keeps short, noisy rows from
    raising false alarms. `statistic` p10 (spec `p10:10%`) compares the fast tail instead of the
    median: on a shared machine other processes only ever add time, so the fastest blocks show the
    code's own speed. Both measured in scripts/gate_rates.py; synthetic cases in the tests.
    """

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
