"""report.md of `python -m bench ddp`: the scaling table, what it means, and the efficiency figure.

python -m bench ddp --nproc 1,2 --device cpu      # writes results/<host>-<time>/report.md
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bench.analysis.frames import ok_rows
from bench.render.figures import new_figure, save_figure, subtitle_for
from bench.render.report import env_line, markdown_table

SCALING_COLUMNS = {
    "world_size": "world size",
    "backend": "backend",
    "batch_size": "rows per rank",
    "step_ms": "step ms (slowest rank)",
    "samples_per_s": "samples/s",
    "scaling_efficiency": "scaling efficiency",
    "allreduce_share": "all-reduce share",
    "steps_to_target": "steps to target",
    "time_to_target_s": "s to target",
    "mae": "held-out MAE",
    "converged": "converged",
    "status": "status",
    "reason": "reason",
}
FIGURE = "ddp_scaling.png"


def scaling_table(df: pd.DataFrame) -> str:
    rows = df[df["workload"] == "ddp"].sort_values("world_size")
    return markdown_table(rows, SCALING_COLUMNS) if not rows.empty else "(no DDP rows)"


def verdict(df: pd.DataFrame) -> str:
    """Whether adding processes raised throughput, in one sentence, from the measured rows."""
    ok = ok_rows(df, "ddp").sort_values("world_size")
    one = ok[ok["world_size"] == 1]
    if one.empty or len(ok) < 2:
        return "One world size measured: nothing to scale against."
    base = float(one["samples_per_s"].iloc[0])
    best = ok.loc[ok["samples_per_s"].idxmax()]
    if int(best["world_size"]) == 1:
        worst = ok[ok["world_size"] > 1]["samples_per_s"].max() / base
        return (
            f"**DDP does not pay here**: no world size beats one process; the best of them reaches "
            f"{worst:.2f}x one process's samples/s. At 5,581 parameters (a 22 KB gradient) each step's "
            "all-reduce costs more than the step itself."
        )
    return (
        f"DDP pays: world size {int(best['world_size'])} trains {best['samples_per_s'] / base:.2f}x the samples/s "
        f"of one process (efficiency {best['scaling_efficiency']:.2f})."
    )


def _figure(df: pd.DataFrame, path: Path, env: Mapping[str, object]) -> Path | None:
    ok = ok_rows(df, "ddp").sort_values("world_size")
    ok = ok[ok["scaling_efficiency"].map(lambda v: isinstance(v, float) and math.isfinite(v))]
    if ok.empty:
        return None
    fig, ax = new_figure("DDP scaling efficiency", subtitle_for(env))
    ax.plot(ok["world_size"], ok["scaling_efficiency"], marker="o", color="#1f77b4", label="measured")
    ax.axhline(1.0, color="#888888", linestyle="--", linewidth=1, label="perfect scaling")
    ax.set_xlabel("world size (processes)")
    ax.set_ylabel("samples/s per process ÷ one process's")
    ax.set_xticks(list(ok["world_size"]))
    ax.set_ylim(bottom=0)
    ax.legend()
    return save_figure(fig, path)


def render_ddp_report(
    df: pd.DataFrame, env: Mapping[str, object], settings: Mapping[str, object], run_dir: Path, figures: bool
) -> str:
    figure = _figure(df, run_dir / FIGURE, env) if figures else None
    interrupted = "**Interrupted** (Ctrl-C or SIGTERM): the world sizes below were measured before it."
    lines = [
        "# sumnet-bench DDP report",
        "",
        env_line(env),
        "",
        f"`{env.get('argv')}`: {settings.get('scaling')} scaling on {settings.get('device')}, "
        f"{settings.get('steps')} steps, seed {settings.get('seed')}, {settings.get('threads_per_rank')} thread(s) per rank, "
        "one torchrun launch per world size. Step times are the slowest rank's (every rank waits for it at "
        "the all-reduce); samples/s counts every rank's rows; scaling efficiency = samples/s / (world size x "
        "one process's samples/s); the all-reduce share is rank 0's all-reduce time over its step time.",
        "",
        *([interrupted, ""] if settings.get("interrupted") else []),
        "## Scaling",
        "",
        scaling_table(df),
        "",
        verdict(df),
        "",
    ]
    if figure is not None:
        lines += [f"![DDP scaling efficiency against world size]({figure.name})", ""]
    notes = [n for n in df.get("notes", pd.Series(dtype=str)) if n]
    if notes:
        lines += ["## Notes", "", *(f"- {n.replace(';', '; ')}" for n in dict.fromkeys(notes)), ""]
    return "\n".join(lines)
