"""Statistics on raw timing samples: order statistics, spread, and the noise flag.

Raw samples are kept; everything here is derived from them. Never a bare mean.

    python -c "from bench.analysis.stats import Summary; print(Summary.of([1.0, 2.0, 3.0, 4.0]))"
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NOISY_IQR_RATIO = 0.10  # relative_iqr above this flags a measurement as noisy (as torch's Measurement)


@dataclass(frozen=True)
class Summary:
    """Order statistics of one set of raw samples, in the samples' own unit."""

    n: int
    median: float
    iqr: float  # p75 - p25
    p10: float
    p90: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        values = np.asarray(samples, dtype=float)
        p10, p25, p50, p75, p90 = (float(v) for v in np.quantile(values, [0.10, 0.25, 0.5, 0.75, 0.90]))
        return cls(len(values), p50, p75 - p25, p10, p90, float(values.min()), float(values.max()))

    @property
    def relative_iqr(self) -> float:
        """IQR / median; inf for a zero median."""
        return self.iqr / self.median if self.median > 0 else math.inf


def trimmed_mean(values: Sequence[float]) -> float:
    """MLPerf-style: drop the single fastest and slowest, average the rest (plain mean below 3)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("trimmed mean of no values")
    kept = ordered[1:-1] if len(ordered) >= 3 else ordered
    return sum(kept) / len(kept)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's binomtest), exact 0 and 1 at the ends."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    from scipy.stats import binomtest  # scipy.stats costs a second of start-up: only when needed

    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    low = 0.0 if successes == 0 else max(0.0, float(ci.low))
    high = 1.0 if successes == trials else min(1.0, float(ci.high))
    return low, high
