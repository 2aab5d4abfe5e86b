import math

import pytest

from bench.analysis.stats import NOISY_IQR_RATIO, Summary, trimmed_mean, wilson_interval

Z2 = 1.959963984540054**2  # norm.ppf(0.975), as scipy uses


def test_summary_on_hand_computed_numbers():
    s = Summary.of([1, 2, 3, 4, 100])
    assert (s.n, s.median, s.min, s.max) == (5, 3, 1, 100)
    assert s.iqr == 4 - 2  # p75 = 4, p25 = 2 by linear interpolation
    assert s.p10 == pytest.approx(1.4) and s.p90 == pytest.approx(61.6)
    assert s.relative_iqr == pytest.approx(2 / 3) and s.relative_iqr > NOISY_IQR_RATIO


def test_noise_flag_threshold():
    quiet = Summary.of([1.0, 1.0, 1.04, 1.04])  # IQR 0.04, median 1.02
    assert quiet.relative_iqr < NOISY_IQR_RATIO
    assert Summary.of([0.0, 0.0]).relative_iqr == math.inf


def test_wilson_zero_of_ten():
    # p = 0: centre = half = (z^2 / 2n) / (1 + z^2 / n)
    upper = 2 * (Z2 / 20) / (1 + Z2 / 10)
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(upper, abs=1e-9)
    assert high == pytest.approx(0.2775, abs=1e-4)  # the textbook value


def test_wilson_ten_of_ten_mirrors_zero_of_ten():
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0, abs=1e-12)
    assert low == pytest.approx(1 - 0.27753, abs=1e-4)


def test_wilson_five_of_ten():
    half = math.sqrt(Z2) * math.sqrt(0.25 / 10 + Z2 / 400) / (1 + Z2 / 10)
    low, high = wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-9)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_wilson_refuses_impossible_counts():
    with pytest.raises(ValueError):
        wilson_interval(3, 0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_trimmed_mean_drops_fastest_and_slowest():
    assert trimmed_mean([1, 2, 3, 100]) == 2.5
    assert trimmed_mean([300.0, 100.0, 200.0]) == 200.0
    assert trimmed_mean([1, 2]) == 1.5  # below 3 values: the plain mean
    assert trimmed_mean([7]) == 7
    with pytest.raises(ValueError):
        trimmed_mean([])
