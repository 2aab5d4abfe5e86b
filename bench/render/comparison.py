"""What compare, gate and the history's gate print alike: a ratio's interval.

python -c "from bench.render.comparison import interval; print(interval(1.02, 1.31))"
"""

from __future__ import annotations

import math

from bench.render.report import fmt


def interval(low: float, high: float) -> str:
    """`1.02-1.31`, or "" when no interval was computed (too few raw samples)."""
    return "" if math.isnan(low) else f"{fmt(low)}-{fmt(high)}"
