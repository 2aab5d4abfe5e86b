import math

import pytest

from bench.analysis.stats import NOISY_IQR_RATIO, Summary, trimmed_mean, wilson_interval


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


def test_trimmed_mean_drops_fastest_and_slowest():
    assert trimmed_mean([10, 1, 2, 3, 100]) == pytest.approx(5.0)
    assert trimmed_mean([4, 6]) == 5.0


def test_wilson_interval_hand_computed():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.2775, abs=1e-4)
    with pytest.raises(ValueError):
        wilson_interval(3, 0)
