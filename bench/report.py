"""Rendering: DataFrames to markdown tables (tabulate) and the run's report.md.

Measuring code returns data; this module alone turns it into text.

    python -c "from bench.results import load_run; from bench.report import summary_markdown; print(summary_markdown(load_run('results/latest').frame))"
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
from tabulate import tabulate


def fmt(value: object, digits: int = 3) -> str:
    """A compact cell: empty for missing, yes/no for booleans, `digits` significant figures."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 10**digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 else f"{value:.2e}"
    return str(value)


def markdown_table(df: pd.DataFrame, columns: Mapping[str, str], digits: int = 3) -> str:
    """A GitHub markdown table of `df`'s `columns` (name -> header), cells formatted with fmt()."""
    present = {c: h for c, h in columns.items() if c in df.columns}
    body = [[fmt(_py(v), digits) for v in row] for row in df[list(present)].itertuples(index=False)]
    return tabulate(body, headers=list(present.values()), tablefmt="github", disable_numparse=True)


def _py(value: object) -> object:
    """numpy scalars to Python ones so fmt() sees bool and float."""
    return value.item() if hasattr(value, "item") else value
