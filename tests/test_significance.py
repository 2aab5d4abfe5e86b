"""bench.analysis.significance: bootstrap interval, U test, verdicts and the regression rule.

Checked against hand-computed cases, against scipy's own bootstrap, and on synthetic runs with
known distributions: A/A pairs must pass and a real 25% slowdown must be caught.
"""

import math

import numpy as np
import pytest
from scipy import stats

from bench.analysis.significance import (
    FASTER,
    NO_DIFFERENCE,
    SLOWER,
    RegressionCheck,
    SampleComparison,
    bootstrap_ratio_interval,
    compare_samples,
    mann_whitney_p,
)


def test_bootstrap_interval_of_constant_samples_is_the_exact_ratio():
    assert bootstrap_ratio_interval([2.0] * 10, [1.0] * 7) == (2.0, 2.0)


def test_bootstrap_interval_is_fixed_by_its_seed():
    rng = np.random.default_rng(1)
    cur, base = rng.lognormal(0.1, 0.1, 30), rng.lognormal(0.0, 0.1, 30)
    assert bootstrap_ratio_interval(cur, base) == bootstrap_ratio_interval(cur, base)
    assert bootstrap_ratio_interval(cur, base) != bootstrap_ratio_interval(cur, base, seed=7)


def test_bootstrap_interval_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(2)
    cur, base = rng.lognormal(np.log(1.25), 0.1, 200), rng.lognormal(0.0, 0.1, 200)

    def ratio(c, b, axis):
        return np.median(c, axis=axis) / np.median(b, axis=axis)

    ref = stats.bootstrap(
        (cur, base),
        ratio,
        method="percentile",
        n_resamples=4000,
        vectorized=True,
        paired=False,
        random_state=3,
    ).confidence_interval
    low, high = bootstrap_ratio_interval(cur, base)
    assert low == pytest.approx(ref.low, rel=0.01)
    assert high == pytest.approx(ref.high, rel=0.01)


def test_bootstrap_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    # lognormal(mu, s) has median exp(mu): the true ratio of medians is exactly 1.25
    rng = np.random.default_rng(4)
    trials, covered = 200, 0
    for _ in range(trials):
        cur, base = rng.lognormal(np.log(1.25), 0.1, 40), rng.lognormal(0.0, 0.1, 40)
        low, high = bootstrap_ratio_interval(cur, base)
        covered += low <= 1.25 <= high
    assert 0.88 <= covered / trials <= 0.99


def test_mann_whitney_on_hand_computed_cases():
    # every current sample above every baseline one: U = 9, exact P(U >= 9) = 1 / C(6, 3) = 1/20
    assert mann_whitney_p([4, 5, 6], [1, 2, 3], "greater") == pytest.approx(1 / 20)
    assert mann_whitney_p([4, 5, 6], [1, 2, 3]) == pytest.approx(2 / 20)
    # current ranks {3, 5} of 5: U = 5; of the C(5, 2) = 10 rank pairs, {4, 5} and {3, 5} reach U >= 5
    assert mann_whitney_p([3, 5], [1, 2, 4], "greater") == pytest.approx(2 / 10)


def test_compare_samples_medians_ratio_and_p_values():
    result = compare_samples([4, 5, 6, 7], [1, 2, 3])
    assert (result.current, result.baseline, result.ratio) == (5.5, 2.0, 2.75)
    assert (result.n_current, result.n_baseline) == (4, 3)
    # exact U test: all 4 x 3 pairs favour current, P = 1 / C(7, 3) = 1/35 one-sided
    assert result.p_slower == pytest.approx(1 / 35)
    assert result.p_two_sided == pytest.approx(2 / 35)
    assert result.ci_low >= 4 / 3 and result.ci_high <= 7 / 1  # resampled medians stay within the data
    # 2/35 = 0.057 > alpha: with 4 and 3 samples even a total separation is not significant
    assert result.verdict == NO_DIFFERENCE
    assert compare_samples([4, 5, 6, 7, 8], [1, 2, 3, 3.5]).verdict == SLOWER  # 2 / C(9, 4) = 0.016


def test_too_few_samples_are_not_tested():
    result = compare_samples([1.3, 1.4], [1.0, 1.0, 1.0])
    assert not result.tested and math.isnan(result.ci_low) and math.isnan(result.p_slower)
    assert result.ratio == pytest.approx(1.35)
    assert result.verdict == NO_DIFFERENCE


@pytest.mark.parametrize(("factor", "expected"), [(1.25, SLOWER), (0.8, FASTER), (1.0, NO_DIFFERENCE)])
def test_verdict_on_known_shifts(factor, expected):
    rng = np.random.default_rng(5)
    base = rng.lognormal(0.0, 0.05, 30)
    cur = factor * rng.lognormal(0.0, 0.05, 30)
    assert compare_samples(cur, base).verdict == expected


@pytest.mark.parametrize(
    ("spec", "slowdown", "statistic", "q"),
    [
        ("10%", 0.10, "median", 0.5),
        ("median:25%", 0.25, "median", 0.5),
        ("12.5%", 0.125, "median", 0.5),
        (" 5% ", 0.05, "median", 0.5),
        ("p10:10%", 0.10, "p10", 0.1),
        ("p25:20%", 0.20, "p25", 0.25),
    ],
)
def test_regression_check_parses_specs(spec, slowdown, statistic, q):
    check = RegressionCheck.parse(spec)
    assert (check.max_slowdown, check.statistic, check.q) == (pytest.approx(slowdown), statistic, q)


@pytest.mark.parametrize("spec", ["10", "mean:10%", "median:", "-5%", "ten%", "", "p0:10%", "p100:10%"])
def test_regression_check_refuses_bad_specs(spec):
    with pytest.raises(ValueError, match="10%"):
        RegressionCheck.parse(spec)


def _run_samples(rng, n, within, drift, outliers, factor=1.0):
    """One synthetic run: a run-level drift, lognormal block noise, a few interference outliers."""
    level = factor * rng.lognormal(0.0, drift)
    samples = level * rng.lognormal(0.0, within, n)
    hit = rng.random(n) < outliers
    samples[hit] *= rng.uniform(1.3, 3.0, hit.sum())
    return samples


# (raw samples per run, within-run noise, run-to-run drift, outlier share)
TRAIN_ROW = (29, 0.05, 0.03, 0.05)  # the quick preset's 29 step blocks on a quiet machine
INFERENCE_ROW = (7, 0.08, 0.03, 0.0)  # 7 latency blocks
NOISY_SMALL_ROW = (7, 0.15, 0.05, 0.10)  # a busy machine


def _rates(scenario, rule, pairs=20, seed=6):
    """(false alarms on A/A pairs, detections of a 25% slowdown) of `rule(current, baseline)`."""
    rng = np.random.default_rng(seed)
    false_alarms = caught = 0
    for _ in range(pairs):
        base = _run_samples(rng, *scenario)
        same = _run_samples(rng, *scenario)
        slow = _run_samples(rng, *scenario, factor=1.25)
        false_alarms += rule(same, base)
        caught += rule(slow, base)
    return false_alarms, caught


def _gate_rule(current, baseline):
    return RegressionCheck.parse("10%").fails(current, baseline) is not None


def _bare_ratio_rule(current, baseline):  # pytest-benchmark's --benchmark-compare-fail=median:10%
    return np.median(current) / np.median(baseline) > 1.10


def test_a_a_train_pairs_pass_and_a_25_percent_slowdown_is_caught():
    false_alarms, caught = _rates(TRAIN_ROW, _gate_rule)
    assert false_alarms <= 1 and caught >= 19


def test_a_a_inference_pairs_pass():
    false_alarms, _ = _rates(INFERENCE_ROW, _gate_rule)
    assert false_alarms <= 1


def test_significance_cuts_false_alarms_that_a_bare_ratio_raises_on_small_noisy_rows():
    ours, _ = _rates(NOISY_SMALL_ROW, _gate_rule, pairs=200, seed=10)
    bare, _ = _rates(NOISY_SMALL_ROW, _bare_ratio_rule, pairs=200, seed=10)
    assert ours <= 6  # <= 3% of 200 A/A pairs
    assert bare >= 30  # >= 15%: what a bare percentage threshold does on the same pairs


def test_a_ratio_above_the_limit_without_significance_passes():
    base = [1.0, 2.0, 3.0, 4.0, 5.0]
    cur = [1.2, 2.2, 3.5, 4.4, 5.6]  # median 3.5 / 3.0 = +16.7%, but the spread swamps it
    result = compare_samples(cur, base)
    assert result.ratio == pytest.approx(3.5 / 3.0)
    assert result.ci_low < 1.10
    assert RegressionCheck.parse("10%").failure(result) is None


def test_a_significant_slowdown_within_the_limit_passes():
    rng = np.random.default_rng(8)
    base = rng.lognormal(0.0, 0.01, 50)
    cur = 1.05 * rng.lognormal(0.0, 0.01, 50)
    result = compare_samples(cur, base)
    assert result.verdict == SLOWER
    assert RegressionCheck.parse("10%").failure(result) is None


def test_failure_message_states_ratio_interval_and_p():
    rng = np.random.default_rng(9)
    base = rng.lognormal(0.0, 0.03, 30)
    message = RegressionCheck.parse("10%").fails(1.3 * rng.lognormal(0.0, 0.03, 30), base)
    assert message is not None
    assert "+2" in message and "limit +10%" in message and "interval" in message and "p = " in message


def test_medians_alone_fall_back_to_the_bare_ratio():
    check = RegressionCheck.parse("10%")
    assert check.failure(SampleComparison(0, 0, 1.05, 1.0)) is None
    message = check.failure(SampleComparison(0, 0, 1.2, 1.0))
    assert message is not None and "median ratio alone" in message and "+20.0%" in message


def test_quantile_statistic_compares_the_fast_tail():
    base = [1.0, 1.0, 1.1, 1.2, 1.3, 1.5, 2.0, 2.5, 3.0, 4.0]
    cur = [2 * v for v in base]
    result = compare_samples(cur, base, q=0.1)
    assert result.q == 0.1 and result.baseline == pytest.approx(np.quantile(base, 0.1)) == 1.0
    assert result.ratio == pytest.approx(2.0)


def _contended_run(rng, n=29, contended_share=0.5, factor=1.0):
    """Block times when another process holds a core part of the time: those blocks take 3-30x longer."""
    samples = factor * rng.lognormal(0.0, 0.03, n)
    hit = rng.random(n) < contended_share
    samples[hit] *= rng.uniform(3.0, 30.0, hit.sum())
    return samples


def test_p10_sees_through_contention_that_hides_a_slowdown_from_the_median():
    median, p10 = RegressionCheck.parse("10%"), RegressionCheck.parse("p10:10%")
    rng = np.random.default_rng(11)
    median_alarms = median_caught = p10_alarms = p10_caught = 0
    for _ in range(20):
        base = _contended_run(rng, contended_share=rng.uniform(0.0, 0.6))
        same = _contended_run(rng, contended_share=rng.uniform(0.0, 0.6))
        slow = _contended_run(rng, contended_share=rng.uniform(0.0, 0.6), factor=1.25)
        median_alarms += median.fails(same, base) is not None
        median_caught += median.fails(slow, base) is not None
        p10_alarms += p10.fails(same, base) is not None
        p10_caught += p10.fails(slow, base) is not None
    assert p10_alarms <= 1 and p10_caught >= 19
    # the median moves with the share of contended blocks: its interval is too wide to see 25%
    assert median_alarms <= 1 and median_caught <= 15


def test_the_bootstrap_reads_runs_two_stage():
    """One bootstrap and one U test for the gate and the history's change points (issue 18 item 5)."""
    from bench.analysis.significance import bootstrap_ratio_interval, mann_whitney_p

    rng = np.random.default_rng(0)
    before = [list(rng.lognormal(0, 0.1, 29)) for _ in range(5)]
    after = [list(1.2 * rng.lognormal(0, 0.1, 29)) for _ in range(4)]
    low, high = bootstrap_ratio_interval(after, before)
    assert low < 1.2 < high and high - low < 0.2
    flat = bootstrap_ratio_interval([v for r in after for v in r], [v for r in before for v in r])
    assert flat[1] - flat[0] < high - low  # pooled samples ignore the spread between runs
    assert mann_whitney_p([7, 8, 9, 10, 11, 12], [1, 2, 3, 4, 5, 6]) == pytest.approx(2 / 924)  # exact
