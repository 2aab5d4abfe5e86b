"""PNG figures for a run's and a comparison's report (FILE_NAMES), each built by a pure
`_*_figure(...) -> Figure` that tests read. Drawn with `Figure` and the Agg canvas, never pyplot, so
the caller's backend and open figures are left alone.

    python -c "from bench.store.load import load_run; from bench.render.figures import write_run_figures as w; r = load_run('results/latest'); print(w(r.frame, r.samples, 'results/latest', r.env))"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from bench.analysis.crossover import inference_crossover, inference_curves, is_gpu
from bench.analysis.frames import numeric, ok_rows
from bench.modes import MODES
from bench.records import ConfigKey
from bench.store.run_folder import KEY_COLUMNS

DPI = 110
SIZE_IN = (8.0, 4.5)
# A log axis once the values span more than this factor; below it a linear axis reads more easily.
STEP_LOG_SPAN = 30.0
RATIO_LOG_SPAN = 10.0
COMPARE_LINES = 24  # configurations compare_ratios.png shows at most: the largest changes

FILE_NAMES = {
    "inference": "inference_throughput.png",
    "train_steps": "train_step_time.png",
    "run_split": "train_run_split.png",
    "compare": "compare_ratios.png",
}

# Okabe-Ito colours: distinguishable with colour-blindness, readable on the opaque white background
# that keeps the PNGs legible in GitHub's dark theme too. One colour per mode, the same in every figure.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999999")
_MODE_COLOURS = {mode: _PALETTE[i % len(_PALETTE)] for i, mode in enumerate(MODES)}
_SUBTITLE_COLOUR = "#444444"
_TEXT_COLOUR = "#222222"


@dataclass(frozen=True)
class FigureSet:
    """The figures written: name (a FILE_NAMES key) -> PNG path, only figures that had data."""

    paths: dict[str, Path] = field(default_factory=dict)
    skipped: str | None = None  # why no figure was written (--no-figures, no data), else None
    failed: dict[str, str] = field(default_factory=dict)  # file name -> why it could not be saved


def subtitle_for(env: Mapping | str | None) -> str:
    """ "host · cpu_model · gpu_name · torch X" from an environment dict (a string is a ready
    subtitle); missing fields left out, a known-empty gpu_name reads "no GPU"."""
    if isinstance(env, str):
        return env
    env = env or {}
    parts = [str(env.get("host") or ""), str(env.get("cpu_model") or "")]
    if "gpu_name" in env:
        parts.append(str(env.get("gpu_name") or "no GPU"))
    if env.get("torch_version"):
        parts.append(f"torch {env['torch_version']}")
    return " · ".join(p for p in parts if p)


def _labels(rows: pd.DataFrame) -> list[str]:
    """ "device · mode", plus the other key columns that vary among `rows` (batch size, threads, ...)."""
    names = {"batch_size": "batch", "output_activation": "out"}
    varying = [c for c in KEY_COLUMNS if c in rows.columns and rows[c].nunique(dropna=False) > 1]
    extra = [c for c in varying if c not in ("workload", "device", "mode")]
    return [
        " · ".join(
            [str(r.get(c, "")) for c in ("device", "mode")] + [f"{names.get(c, c)} {r[c]}" for c in extra]
        )
        for _, r in rows.iterrows()
    ]


def _colour(mode: str) -> str:
    return _MODE_COLOURS.get(mode) or _PALETTE[sum(map(ord, mode)) % len(_PALETTE)]  # stable, unlike hash()


def new_figure(title: str, subtitle: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=SIZE_IN, dpi=DPI, facecolor="white", layout="constrained")
    ax = fig.add_subplot()
    ax.set_facecolor("white")
    fig.suptitle(title, fontsize=12, fontweight="bold", color=_TEXT_COLOUR)
    ax.set_title(subtitle, fontsize=8, color=_SUBTITLE_COLOUR)
    ax.grid(True, which="major", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    return fig, ax


def _empty_note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color=_SUBTITLE_COLOUR)


def _legend(ax: Axes, **kwargs) -> None:
    ax.legend(fontsize=8, framealpha=0.9, **{"loc": "best", **kwargs})


def _configurations_axis(ax: Axes, positions, labels: list[str]) -> None:
    """Configurations down the y axis, the first on top as in the table."""
    ax.set_yticks(positions, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_ylabel("configuration (device · mode)")


def _inference_figure(df: pd.DataFrame, subtitle: str) -> Figure:
    """Log-log samples/s against batch size, one line per device and mode, the crossover marked."""
    fig, ax = new_figure("Inference throughput against batch size", subtitle)
    curves = inference_curves(df)
    for (device, mode), curve in curves.items():
        sizes, style = sorted(curve), "--s" if is_gpu(device) else "-o"
        colour = _colour(mode.split(" · ")[0])  # mode, or "mode · N threads"
        ax.plot(
            sizes, [curve[b] for b in sizes], style, label=f"{device} · {mode}", color=colour, markersize=4
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (rows per forward, log scale)")
    ax.set_ylabel("throughput (samples/s, log scale)")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    crossing = inference_crossover(df)
    if crossing is not None and crossing.batch_size is not None:
        line = ax.axvline(crossing.batch_size, color=_TEXT_COLOUR, linestyle=":", linewidth=1.2)
        line.set_gid("crossover")
        line.set_label(f"crossover: batch {crossing.batch_size}")
        # the note sits on the side of the line with more room, so it stays inside the axes
        sizes = [b for curve in curves.values() for b in curve]
        middle = math.sqrt(min(sizes) * max(sizes))
        right_half = crossing.batch_size > middle
        ax.annotate(
            crossing.describe(),
            xy=(crossing.batch_size, 0.97),
            xycoords=("data", "axes fraction"),
            xytext=(-4 if right_half else 4, 0),
            textcoords="offset points",
            ha="right" if right_half else "left",
            va="top",
            fontsize=8,
            color=_TEXT_COLOUR,
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#bbbbbb"},
        )
    elif crossing is not None:
        ax.text(0.01, 0.97, crossing.describe(), transform=ax.transAxes, va="top", fontsize=8)
    if not curves:
        _empty_note(ax, "no inference rows measured")
    elif len(ax.get_legend_handles_labels()[0]) > 1:
        _legend(ax, loc="lower right")
    return fig


def _train_step_figure(
    df: pd.DataFrame, samples: Mapping[ConfigKey, Mapping] | None, subtitle: str
) -> Figure:
    """Median step time per device and mode as bars; raw samples as a strip, else IQR whiskers."""
    fig, ax = new_figure("Training step time per device and mode", subtitle)
    rows = ok_rows(df, "train")
    rows["_median"] = numeric(rows, "step_ms")
    rows["_iqr"] = numeric(rows, "step_ms_iqr")
    rows = rows[rows["_median"] > 0]
    samples = samples or {}
    labels = _labels(rows)
    values: list[float] = []
    ticks: list[str] = []  # "device · mode" and the median under it
    drew_points = drew_whiskers = False
    for i, (label, (_, row)) in enumerate(zip(labels, rows.iterrows())):
        median = float(row["_median"])
        colour = _colour(str(row.get("mode", "")))
        ax.bar(i, median, width=0.6, color=colour, alpha=0.45, edgecolor=colour, gid=f"bar:{label}")
        values.append(median)
        raw = [float(v) for v in (samples.get(ConfigKey.from_row(row)) or {}).get("step_ms", []) if v]
        raw = [v for v in raw if math.isfinite(v) and v > 0]
        if raw:
            # evenly spread across the bar, not random, so the figure is the same on every run
            xs = i + np.linspace(-0.2, 0.2, len(raw)) if len(raw) > 1 else np.array([float(i)])
            points = ax.scatter(xs, raw, s=10, color=colour, edgecolor=_TEXT_COLOUR, linewidth=0.3, zorder=3)
            points.set_gid(f"samples:{label}")
            values += raw
            drew_points = True
        elif math.isfinite(row["_iqr"]):
            half = float(row["_iqr"]) / 2
            whisker = {"fmt": "none", "ecolor": _TEXT_COLOUR, "capsize": 4, "zorder": 3}
            ax.errorbar(i, median, yerr=half, label=f"_iqr:{label}", **whisker)
            values += [median - half, median + half]
            drew_whiskers = True
        noisy = " · noisy" if "noisy" in str(row.get("flags") or "") else ""
        ticks.append(f"{label}\n{median:.3g} ms{noisy}")
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > STEP_LOG_SPAN:
        ax.set_yscale("log")
        ax.set_ylabel("step time (ms, log scale)")
    else:
        ax.set_ylabel("step time (ms)")
    many = len(ticks) > 4
    ax.set_xticks(
        range(len(ticks)), ticks, rotation=25 if many else 0, ha="right" if many else "center", fontsize=8
    )
    ax.set_xlabel("device · mode")
    if rows.empty:
        _empty_note(ax, "no training rows measured")
        return fig
    handles = [Patch(facecolor="#bbbbbb", edgecolor="#777777", label="median step time")]
    if drew_points:
        handles.append(
            Line2D([], [], marker="o", ls="none", color="#777777", label="raw samples (block means)")
        )
    if drew_whiskers:
        handles.append(Line2D([], [], color=_TEXT_COLOUR, label="IQR, centred on the median"))
    _legend(ax, handles=handles)
    return fig


def _run_split_figure(df: pd.DataFrame, subtitle: str) -> Figure:
    """Per train row, a stacked bar: first call (compile, warm-up) then the rest of the run."""
    fig, ax = new_figure("Whole training run: first call (compile, warm-up) against the rest", subtitle)
    rows = ok_rows(df, "train")
    rows["_run"] = numeric(rows, "run_s")
    rows["_first"] = numeric(rows, "first_call_s")
    rows = rows[np.isfinite(rows["_run"]) & np.isfinite(rows["_first"]) & (rows["_run"] > 0)]
    labels = _labels(rows)
    first = rows["_first"].clip(lower=0).to_numpy()
    rest = (rows["_run"] - rows["_first"]).clip(lower=0).to_numpy()
    positions = np.arange(len(labels))
    if len(labels):
        ax.barh(positions, first, color="#D55E00", label="first call (compile, warm-up)", gid="first_call")
        ax.barh(
            positions, rest, left=first, color="#0072B2", label="rest of the run (steady state)", gid="rest"
        )
        for y, f, r in zip(positions, first, rest):
            share = f / (f + r) if f + r > 0 else 0.0
            ax.annotate(
                f"{f + r:.3g} s ({share:.0%} first call)",
                (f + r, y),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
        ax.set_xlim(0, float((first + rest).max()) * 1.3)
        _legend(ax)
    else:
        _empty_note(ax, "no training rows with run and first-call times")
    _configurations_axis(ax, positions, labels)
    ax.set_xlabel("training time (s), evaluation excluded")
    return fig


def _compare_figure(table: pd.DataFrame, subtitle: str, xlabel: str) -> Figure:
    """Each configuration's ratio to the reference, CI as horizontal error bars, a line at 1. Beyond
    COMPARE_LINES configurations only the largest changes (furthest from 1) are drawn, in table order."""
    ratio = numeric(table, "ratio")
    keep = ratio > 0
    title = "Ratio to the reference, with confidence interval"
    if keep.sum() > COMPARE_LINES:
        largest = (
            np.abs(np.log(ratio[keep])).sort_values(ascending=False, kind="stable").index[:COMPARE_LINES]
        )
        title = (
            f"The {COMPARE_LINES} largest of {int(keep.sum())} ratios to the reference (compare.csv has all)"
        )
        keep = ratio.index.isin(largest)
    fig, ax = new_figure(title, subtitle)
    labels = [str(v) for v in table.loc[keep, "label"]] if "label" in table.columns else []
    ratio = ratio[keep].to_numpy()
    low = numeric(table, "ci_low")[keep].to_numpy()
    high = numeric(table, "ci_high")[keep].to_numpy()
    # a missing bound draws no whisker on that side
    below = np.where(np.isfinite(low), np.clip(ratio - low, 0, None), 0.0)
    above = np.where(np.isfinite(high), np.clip(high - ratio, 0, None), 0.0)
    positions = np.arange(len(ratio))
    reference = ax.axvline(1.0, color=_TEXT_COLOUR, linewidth=1.0, linestyle="--", label="reference (1×)")
    reference.set_gid("reference")
    if len(ratio):
        ax.errorbar(
            ratio,
            positions,
            xerr=[below, above],
            fmt="o",
            color="#0072B2",
            capsize=4,
            label="ratio, with its confidence interval",
        )
        span = [v for v in (*ratio, *(ratio - below), *(ratio + above), 1.0) if v > 0]
        if max(span) / min(span) > RATIO_LOG_SPAN:
            ax.set_xscale("log")
            xlabel += ", log scale"
        _legend(ax)
    else:
        _empty_note(ax, "no ratios to show")
    ax.set_ylim(-0.7, max(len(ratio), 1) - 0.3)
    _configurations_axis(ax, positions, labels)
    ax.set_xlabel(xlabel)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Render `fig` to a PNG with the Agg canvas (no pyplot, no global backend change), then drop it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, facecolor="white")
    fig.clear()  # nothing refers to the figure after this; freed without pyplot's close()
    return path


def run_figures_with_data(df: pd.DataFrame) -> list[str]:
    """The run figures (FILE_NAMES keys) that `df` has data for, in report order."""
    train = ok_rows(df, "train")
    names = ["inference"] if inference_curves(df) else []
    if (numeric(train, "step_ms") > 0).any():
        names.append("train_steps")
    if ((numeric(train, "run_s") > 0) & np.isfinite(numeric(train, "first_call_s"))).any():
        names.append("run_split")
    return names


def write_run_figures(
    df: pd.DataFrame,
    samples: Mapping[ConfigKey, Mapping] | None,
    out_dir: str | Path,
    env: Mapping | str | None,
) -> FigureSet:
    """The run figures that have data, written into `out_dir`; skipped with a reason otherwise. A
    figure that cannot be saved (a full disk) is left out and named in `failed`; the others are kept."""
    names = run_figures_with_data(df)
    if not names:
        return FigureSet(skipped="no measured (status ok) inference or training rows to draw")
    out_dir, subtitle = Path(out_dir), subtitle_for(env)
    draw = {
        "inference": lambda: _inference_figure(df, subtitle),
        "train_steps": lambda: _train_step_figure(df, samples, subtitle),
        "run_split": lambda: _run_split_figure(df, subtitle),
    }
    paths, failed = {}, {}
    for name in names:
        path = out_dir / FILE_NAMES[name]
        try:
            paths[name] = save_figure(draw[name](), path)
        except OSError as err:
            path.unlink(missing_ok=True)  # no half-written PNG
            failed[path.name] = err.strerror or str(err)
    return FigureSet(paths=paths, failed=failed)


def write_compare_figures(
    table: pd.DataFrame,
    out_dir: str | Path,
    env_or_subtitle: Mapping | str | None,
    xlabel: str = "ratio to the reference (×)",
) -> FigureSet:
    """compare_ratios.png in `out_dir` when `table` (columns label, ratio, ci_low, ci_high) has a
    positive ratio; skipped with a reason otherwise."""
    if not (numeric(table, "ratio") > 0).any():
        return FigureSet(skipped="no ratios to draw")
    figure = _compare_figure(table, subtitle_for(env_or_subtitle), xlabel)
    return FigureSet(paths={"compare": save_figure(figure, Path(out_dir) / FILE_NAMES["compare"])})
