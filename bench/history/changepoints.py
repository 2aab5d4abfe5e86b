"""Change points in a series of run medians: where the speed of a configuration changed, by how much,
and how sure that is (METHOD says how). Same-direction candidates close together are one "drift"
(asv #932: 1% per commit is never a significant step, 15% over 15 commits is). Rates found and
missed: scripts/history_rates.py.

    python -c "from bench.history.changepoints import detect; print(detect([1.0] * 20 + [1.2] * 6))"
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import chain, combinations

import numpy as np

from bench.analysis.significance import bootstrap_ratio_interval

PENALTY_PER_LOG_N = 4.0  # PELT penalty per change, x ln(n), in units of the noise variance
MIN_SEGMENT_RUNS = 2  # shortest segment PELT may cut (one odd run is not a change)
MIN_RUNS = 6  # shorter series are not searched
NOISE_FLOOR = 0.005  # 0.5%: no series is treated as quieter than this (relative, log units)
MAX_P = 0.001  # a change must pass the rank-sum test at this (strict: PELT chose the most different split)
MIN_CHANGE = 0.02  # ... and move the median by at least 2%
WINDOW_RUNS = 20  # runs compared on each side of a change, at most
DRIFT_GAP_RUNS = 15  # same-direction changes this close (a drift over 15 commits, cut twice) are one drift
PERMUTATIONS = 10_000  # rank-sum permutation test when the splits are too many to list; p resolution 1e-4
EXACT_SPLITS = 60_000  # up to this many splits the permutation test lists them all (exact p)
INTERVAL_RESAMPLES = 1000  # two-stage bootstrap of the change's size
SEED = 20240917  # fixed: the same series always gives the same p-values and intervals
CONFIDENCE = 0.95

METHOD = (
    f"PELT (ruptures KernelCPD, linear kernel) on log medians / noise, penalty {PENALTY_PER_LOG_N:g} ln(n), "
    f"segments of at least {MIN_SEGMENT_RUNS} runs; a change is kept when the runs around it (at most "
    f"{WINDOW_RUNS} each side) differ by a Mann-Whitney permutation test at p < {MAX_P:g} and by at least "
    f"{MIN_CHANGE:.0%}; same-direction changes within {DRIFT_GAP_RUNS} runs form one drift; size: median after / "
    f"median before of the run medians, {CONFIDENCE:.0%} two-stage bootstrap interval (runs, then raw samples)"
)


@dataclass(frozen=True)
class Change:
    """A change in a series: positions are indices into the series (0 = oldest run)."""

    first: int  # first run after the change (a drift: after its first step)
    last: int  # first run after the last step of a drift; == first for a step
    before: tuple[int, int]  # [start, stop) of the runs compared before it
    after: tuple[int, int]  # [start, stop) of the runs compared after it
    ratio: float  # median of the run medians after / before: above 1 is slower
    p_value: float  # two-sided rank-sum permutation test, run medians before vs after
    ci_low: float = math.nan  # CONFIDENCE interval of the ratio; nan until `with_interval`
    ci_high: float = math.nan

    @property
    def kind(self) -> str:
        return "step" if self.first == self.last else "drift"

    @property
    def slower(self) -> bool:
        return self.ratio > 1

    @property
    def direction(self) -> str:
        return "slower" if self.slower else "faster"


def noise_sigma(log_medians: np.ndarray, rel_se: Sequence[float | None] | None = None) -> float:
    """The series' noise in log units: the largest of the run-to-run differences' MAD, the medians' own
    standard errors (a bimodal configuration is not taken for a quiet one) and NOISE_FLOOR."""
    diffs = np.diff(log_medians)
    spread = 0.0
    if len(diffs) >= 2:
        spread = 1.4826 * float(np.median(np.abs(diffs))) / math.sqrt(2)  # MAD of differences about 0
    known = [s for s in (rel_se or []) if s is not None and math.isfinite(s)]
    sampling = float(np.median(known)) if known else 0.0
    return max(spread, sampling, NOISE_FLOOR)


def rank_sum_p(before: Sequence[float], after: Sequence[float], seed: int = SEED) -> float:
    """Two-sided Mann-Whitney test as a permutation test of the rank sum, ties at average ranks; exact
    up to EXACT_SPLITS splits, else PERMUTATIONS. Not significance.mann_whitney_p: with ties scipy's
    normal approximation cannot reach MAX_P with 4 runs after a change, and its permutation method
    is far slower."""
    from scipy.stats import rankdata

    a, b = np.asarray(after, dtype=float), np.asarray(before, dtype=float)
    values = np.concatenate([a, b])
    ranks = rankdata(values)  # ties: average ranks
    n, k = len(values), min(len(a), len(b))
    ranks_k = ranks[: len(a)] if len(a) == k else ranks[len(a) :]  # the smaller group's ranks
    expected = k * (n + 1) / 2
    observed = abs(ranks_k.sum() - expected) - 1e-9
    if math.comb(n, k) <= EXACT_SPLITS:
        splits = np.fromiter(chain.from_iterable(combinations(range(n), k)), dtype=np.intp)
        sums = ranks[splits.reshape(-1, k)].sum(axis=1)
        return float(np.mean(np.abs(sums - expected) >= observed))
    rng = np.random.default_rng(seed)
    picks = np.argpartition(rng.random((PERMUTATIONS, n)), k - 1, axis=1)[:, :k]
    extreme = np.abs(ranks[picks].sum(axis=1) - expected) >= observed
    return float((1 + extreme.sum()) / (1 + PERMUTATIONS))


def detect(medians: Sequence[float], rel_se: Sequence[float | None] | None = None) -> list[Change]:
    """Changes in a series of run medians (positive times, oldest first), oldest change first;
    `rel_se`: each run's standard error of its median / median (None: unknown)."""
    m = np.asarray(medians, dtype=float)
    if len(m) < MIN_RUNS:
        return []
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError("medians must be positive, finite times")
    import ruptures  # imported on use: ruptures pulls in scipy.stats (a second of start-up)

    y = np.log(m)
    n = len(y)
    z = (y - np.median(y)) / noise_sigma(y, rel_se)
    algo = ruptures.KernelCPD(kernel="linear", min_size=MIN_SEGMENT_RUNS).fit(z.reshape(-1, 1))
    cuts = [int(c) for c in algo.predict(pen=PENALTY_PER_LOG_N * math.log(n))[:-1]]
    bounds = [0, *cuts, n]
    groups: list[dict[str, int]] = []
    for i, cut in enumerate(cuts):
        up = np.median(y[cut : bounds[i + 2]]) > np.median(y[bounds[i] : cut])
        last = groups[-1] if groups else None
        if last is not None and last["up"] == up and cut - last["last"] <= DRIFT_GAP_RUNS:
            last["last"], last["hi"] = cut, bounds[i + 2]
        else:
            groups.append({"first": cut, "last": cut, "lo": bounds[i], "hi": bounds[i + 2], "up": up})
    changes = []
    for g in groups:
        before = (max(g["lo"], g["first"] - WINDOW_RUNS), g["first"])
        after = (g["last"], min(g["hi"], g["last"] + WINDOW_RUNS))
        b, a = y[before[0] : before[1]], y[after[0] : after[1]]
        ratio = float(math.exp(np.median(a) - np.median(b)))
        if abs(ratio - 1) < MIN_CHANGE:
            continue
        # A drift is tested on every run since it began (all of them moved), its size on those after it.
        p = rank_sum_p(b, y[g["first"] : after[1]])
        if p < MAX_P:
            changes.append(Change(g["first"], g["last"], before, after, ratio, p))
    return changes


def with_interval(change: Change, samples: Sequence[Sequence[float]]) -> Change:
    """The change with its size interval from every run's raw samples (index-aligned to the series):
    two-stage (runs, then their samples), so it keeps the run-to-run spread a pooled one would lose."""
    before = [samples[i] for i in range(*change.before)]
    after = [samples[i] for i in range(*change.after)]
    low, high = bootstrap_ratio_interval(after, before, CONFIDENCE, INTERVAL_RESAMPLES, SEED)
    return replace(change, ci_low=low, ci_high=high)
