"""Figures of a convergence study: every seed's curves per configuration, and steps-to-target,
from the per-seed samples in run.json (so a run folder's figures can be redrawn).

    python -m bench convergence --seeds 8 --steps 500      # writes figures/ inside the run folder
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.render.figures import save_figure

BAND = (10, 90)  # percentiles of the shaded band around the median curve


def _curves(per_seed: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps (S,) and values (seeds, S) of one curve kind; JSON turns the step keys into text."""
    steps = sorted(int(s) for s in per_seed[0][key])
    values = np.array([[float(seed[key].get(s, seed[key].get(str(s)))) for s in steps] for seed in per_seed])
    return np.array(steps), values


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")


def _draw_curves(ax, steps, values, converged, title: str, ylabel: str) -> None:
    """Every seed thin (never-converged in red); median and band over the converged seeds only,
    so a dead seed shows as its own red line instead of stretching the band."""
    for row, ok in zip(values, converged):
        ax.plot(steps, row, color="tab:blue" if ok else "tab:red", alpha=0.25 if ok else 0.6, lw=0.7)
    kept = values[np.array(converged, dtype=bool)] if any(converged) else values
    which = "converged seeds" if any(converged) else "all seeds (none converged)"
    with np.errstate(all="ignore"):
        low, mid, high = np.nanpercentile(kept, [BAND[0], 50, BAND[1]], axis=0)
    ax.fill_between(steps, low, high, color="tab:blue", alpha=0.2, label=f"p{BAND[0]}-p{BAND[1]}, {which}")
    ax.plot(steps, mid, color="black", lw=2, label=f"median, {which}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def _curve_figure(label: str, samples: Mapping) -> Figure:
    per_seed = samples["per_seed"]
    converged = [s["converged"] for s in per_seed]
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    steps, losses = _curves(per_seed, "loss_curve")
    _draw_curves(left, steps, np.maximum(losses, 1e-12), converged, "training-batch loss (MSE)", "loss")
    steps, maes = _curves(per_seed, "mae_curve")
    _draw_curves(right, steps, np.maximum(maes, 1e-12), converged, "held-out MAE", "MAE (sum units)")
    right.axhline(
        samples["target_mae"], color="tab:green", ls="--", label=f"target {samples['target_mae']:g}"
    )
    right.legend(loc="upper right", fontsize=8)
    never = len(converged) - sum(converged)
    fig.suptitle(f"{label}: {len(converged)} seeds ({never} never converged, in red)")
    return fig


def _steps_figure(labelled: Mapping[str, Mapping]) -> Figure:
    labels = list(labelled)
    fig = Figure(figsize=(9, 1.0 + 0.8 * len(labels)), layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # jitter only, so points at the same step stay visible
    ticks = []
    for y, label in enumerate(labels):
        per_seed = labelled[label]["per_seed"]
        steps = [s["steps_to_target"] for s in per_seed if s["converged"]]
        if steps:
            q25, median, q75 = np.percentile(steps, [25, 50, 75])
            ax.hlines(y, q25, q75, color="tab:gray", lw=10, alpha=0.35, label="IQR" if y == 0 else None)
            ax.plot(
                [median], [y], marker="|", ms=24, mew=3, color="black", label="median" if y == 0 else None
            )
            ax.scatter(steps, y + rng.uniform(-0.18, 0.18, len(steps)), s=12, alpha=0.7, color="tab:blue")
        ticks.append(f"{label}\n{len(steps)}/{len(per_seed)} converged")
    ax.set_yticks(range(len(labels)), ticks)
    ax.set_xlabel("steps to target (first evaluated step below the target MAE)")
    ax.set_title("steps to target of the converged seeds")
    ax.set_ylim(-0.6, len(labels) - 0.4)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8)
    return fig


def write_figures(run_dir: Path, labelled: Mapping[str, Mapping]) -> tuple[dict[str, str], str | None]:
    """PNGs under run_dir/figures/: ({title: path relative to run_dir}, why skipped or None)."""
    if not labelled:
        return {}, "no configuration trained"
    out, written = Path(run_dir) / "figures", {}
    for label, samples in labelled.items():
        path = save_figure(_curve_figure(label, samples), out / f"curves_{_slug(label)}.png", dpi=100)
        written[f"curves of every seed, {label}"] = str(path.relative_to(run_dir))
    path = save_figure(_steps_figure(labelled), out / "steps_to_target.png", dpi=100)
    written["steps to target"] = str(path.relative_to(run_dir))
    return written, None
