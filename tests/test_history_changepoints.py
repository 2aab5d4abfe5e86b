"""Change-point detection on synthetic series with known changes, its statistics on hand-checked
numbers, and determinism. (Its rates over many trials: scripts/history_rates.py, not a unit test.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from tests.optional import require

require("sqlalchemy", "the results history's database")
require("ruptures", "the history's change-point detection")

from bench.analysis.significance import bootstrap_ratio_interval  # noqa: E402
from bench.history.changepoints import (  # noqa: E402
    INTERVAL_RESAMPLES,
    MIN_RUNS,
    NOISE_FLOOR,
    detect,
    noise_sigma,
    rank_sum_p,
    with_interval,
)
from bench.history.ingest import median_rel_se  # noqa: E402


def _series(levels, noise=0.01, seed=0, samples=29):
    """Run medians and raw samples: each run's samples are level x lognormal(0, 5%) noise, and the
    run itself is shifted by lognormal(0, noise) (the run-to-run spread)."""
    rng = np.random.default_rng(seed)
    runs = [level * math.exp(rng.normal(0, noise)) * np.exp(rng.normal(0, 0.05, samples)) for level in levels]
    return [float(np.median(r)) for r in runs], [median_rel_se(r) for r in runs], runs


def test_a_ten_percent_step_is_found_where_it_is_with_its_size():
    medians, se, runs = _series([1.0] * 30 + [1.1] * 5)
    changes = detect(medians, se)
    assert len(changes) == 1
    change = with_interval(changes[0], runs)
    assert change.kind == "step" and change.slower
    assert change.first == 30 and change.before == (10, 30) and change.after == (30, 35)
    assert change.ratio == pytest.approx(1.1, abs=0.03)
    assert change.ci_low < 1.1 < change.ci_high and change.ci_low > 1.0
    assert change.p_value < 0.001


def test_a_speedup_is_a_change_too():
    medians, se, _ = _series([1.0] * 25 + [0.8] * 10, seed=3)
    (change,) = detect(medians, se)
    assert not change.slower and change.ratio == pytest.approx(0.8, abs=0.03)


def test_a_flat_series_has_no_change():
    for seed in range(5):
        medians, se, _ = _series([1.0] * 50, seed=seed)
        assert detect(medians, se) == []


def test_one_percent_per_commit_over_fifteen_commits_is_reported_as_one_drift():
    levels = [1.0] * 20 + [1.01**k for k in range(1, 16)] + [1.01**15] * 15
    medians, se, runs = _series(levels, noise=0.005, seed=1)
    changes = [c for c in detect(medians, se) if c.slower]
    assert changes, "a 16% drift went unreported"
    assert all(c.first >= 18 and c.last <= 37 for c in changes)
    total = max(changes, key=lambda c: c.ratio)
    assert total.ratio > 1.08  # most of the 16% drift, not one 1% step


def test_short_series_are_not_searched_and_bad_medians_refused():
    assert detect([1.0, 2.0, 3.0][: MIN_RUNS - 1]) == []
    with pytest.raises(ValueError, match="positive"):
        detect([1.0] * 10 + [0.0])


def test_noise_is_at_least_the_samples_own_standard_error_and_the_floor():
    flat = np.log(np.full(20, 2.0))
    assert noise_sigma(flat) == NOISE_FLOOR
    assert noise_sigma(flat, [0.03] * 20) == pytest.approx(0.03)
    wobbly = np.log(1 + 0.1 * np.tile([0, 1], 10))  # run-to-run jumps of 10%
    assert noise_sigma(wobbly, [0.001] * 20) > 0.05


def test_rank_sum_p_matches_scipy_exact_without_ties():
    before = [1.0, 1.1, 0.9, 1.05, 0.95, 1.02, 0.98, 1.01]
    after = [1.2, 1.15, 1.08, 1.25]
    exact = mannwhitneyu(after, before, alternative="two-sided", method="exact").pvalue
    assert rank_sum_p(before, after) == pytest.approx(exact)  # 495 splits: listed, exact
    assert rank_sum_p(before, after) == rank_sum_p(before, after)  # fixed seed: deterministic


def test_rank_sum_p_with_ties_is_not_significant_for_identical_groups():
    assert rank_sum_p([1.0, 1.0, 2.0, 2.0], [1.0, 2.0]) > 0.5


def test_rank_sum_p_by_random_splits_agrees_with_the_exact_test_on_large_groups():
    rng = np.random.default_rng(1)
    before, after = rng.normal(0, 1, 30), rng.normal(0.8, 1, 25)  # C(55, 25): far too many to list
    exact = mannwhitneyu(after, before, alternative="two-sided", method="exact").pvalue
    assert rank_sum_p(before, after) == pytest.approx(exact, abs=0.002)


def test_median_standard_error_from_order_statistics_by_hand():
    # n = 25: half-width 1.96 x 5 / 2 = 4.9 -> order statistics 7 and 17 (0-based), log(1.18 / 1.07) / 3.92
    values = [1.0 + 0.01 * i for i in range(25)]
    assert median_rel_se(values) == pytest.approx(math.log(1.17 / 1.07) / (2 * 1.959963984540054))
    assert median_rel_se([1.0, 2.0]) is None


def ratio_interval(before, after):
    """with_interval's two-stage bootstrap of median(after run medians) / median(before run medians)."""
    return bootstrap_ratio_interval(after, before, resamples=INTERVAL_RESAMPLES)


def test_ratio_interval_covers_the_true_ratio_and_widens_with_run_spread():
    rng = np.random.default_rng(5)
    before = [np.exp(rng.normal(0, 0.05, 29)) for _ in range(20)]
    after = [1.2 * np.exp(rng.normal(0, 0.05, 29)) for _ in range(5)]
    low, high = ratio_interval(before, after)
    assert low < 1.2 < high
    spread_after = [a * f for a, f in zip(after, (0.8, 1.25, 0.9, 1.1, 1.0))]
    low2, high2 = ratio_interval(before, spread_after)
    assert high2 - low2 > 2 * (high - low)


def test_detection_is_deterministic():
    medians, se, runs = _series([1.0] * 30 + [1.15] * 6, seed=9)
    first = [with_interval(c, runs) for c in detect(medians, se)]
    again = [with_interval(c, runs) for c in detect(medians, se)]
    assert first == again
