"""Small helpers on a results table (a DataFrame built for the report and the figures): the ok
rows, a numeric column. Readers of runs work on records (bench.records), not on these.

python -c "from bench.store.load import load_run; from bench.analysis.frames import ok_rows; print(ok_rows(load_run('results/latest').frame, 'train'))"
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def ok_rows(df: pd.DataFrame, workload: str | None = None) -> pd.DataFrame:
    """A copy of the rows of `workload` (every workload when None) whose status is ok
    (a missing status column counts as ok)."""
    rows = df
    if workload is not None and "workload" in rows.columns:
        rows = rows[rows["workload"] == workload]
    if "status" in rows.columns:
        rows = rows[rows["status"].fillna("ok").replace("", "ok") == "ok"]
    return rows.copy()


def numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """`column` as floats (NaN where missing or not a number; all NaN when the column is absent)."""
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)
