"""Small helpers on a results frame that every reader shares: the ok rows, a numeric column.

python -c "from bench.store.load import load_run; from bench.analysis.frames import ok_rows; print(ok_rows(load_run('results/latest').frame, 'train'))"
"""

from __future__ import annotations

import math

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


TIME_METRICS = ("step_ms", "latency_ms")  # per-row speed metric, lower is better, in this order


def number(value: object) -> float:
    """A float, NaN for missing or non-numeric cells."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def timing_metric(row: pd.Series | dict) -> str | None:
    """The row's speed column: step_ms for training, latency_ms for inference, None if untimed."""
    for metric in TIME_METRICS:
        if not math.isnan(number(row.get(metric))):
            return metric
    return None


def as_bool(value: object) -> bool | None:
    """A boolean cell (converged) as read from JSON (bool) or CSV ("True", 1.0); None when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}.get(
            value.strip().lower()
        )
    return bool(value)


def key_text(value: object) -> str:
    """One cell as key text: 32.0 -> "32", NaN / None -> "" (CSV and JSON rows agree)."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    text = str(value)
    if text in ("None", "nan", "NaN"):
        return ""
    if text.endswith(".0") and text[:-2].lstrip("-").isdigit():
        return text[:-2]
    return text
