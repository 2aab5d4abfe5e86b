"""report.md and the console table of `python -m bench convergence`: rendering only, no measuring.

python -m bench convergence --seeds 8 --steps 1000     # writes results/<host>-<time>/report.md
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import pandas as pd

from bench.analysis.convergence_stats import SIGNIFICANCE, PairedComparison, seed_outcome
from bench.measure.convergence_study import ConfigResult, StudySettings
from bench.render.report import fmt, markdown_table
from bench.store.run_folder import RunWriter

_SUMMARY_COLUMNS = {
    "device": "device",
    "mode": "mode",
    "output_activation": "output",
    "status": "status",
    "converged_of": "converged",
    "convergence_rate": "rate",
    "rate_ci": "95% CI (Wilson)",
    "steps_to_target": "steps to target (median)",
    "steps_to_target_trimmed": "(trimmed mean)",
    "time_to_target_s": "s to target (median)",
    "time_to_target_trimmed_s": "(trimmed mean)",
    "mae": "MAE median",
    "mae_worst": "MAE worst",
    "exact_accuracy": "exact median",
    "exact_accuracy_worst": "exact worst",
    "run_s": "training s (all seeds)",
}


def summary_table(writer: RunWriter) -> str:
    df = writer.frame()
    ok = df["status"] == "ok"
    df["converged_of"] = [
        f"{k:.0f}/{n:.0f}" if o else "" for k, n, o in zip(df["converged_seeds"], df["seeds"], ok)
    ]
    df["rate_ci"] = [
        f"{fmt(lo)} to {fmt(hi)}" if o else r
        for lo, hi, o, r in zip(
            df["convergence_rate_ci_low"], df["convergence_rate_ci_high"], ok, df["reason"]
        )
    ]
    return markdown_table(df, _SUMMARY_COLUMNS)


def render_report(
    writer: RunWriter,
    results: Sequence[ConfigResult],
    settings: StudySettings,
    compared: Sequence[PairedComparison],
    figures: dict[str, str],
    figures_skipped: str | None,
) -> str:
    env = writer.env
    interrupted = (
        "**Interrupted** (Ctrl-C or SIGTERM): only the configurations below that finished were studied; "
        "the one cut short is listed as failed."
    )
    lines = [
        "# Convergence study",
        "",
        f"`{env.get('argv', '')}` on {env.get('host')} ({env.get('cpu_model')}; {env.get('gpu_name') or 'no GPU'}), "
        f"torch {env.get('torch_version')}, {env.get('default_threads')} threads, commit {env.get('git_commit')}.",
        "",
        f"{len(settings.seeds)} seeds ({settings.seeds[0]}..{settings.seeds[-1]}) x {settings.steps} steps, batch "
        f"{settings.batch_size}, Adam lr {settings.lr:g}; converged = held-out MAE < {settings.target_mae:g} after "
        f"the last step; evaluated every {settings.eval_every} steps on the same 10,000 held-out rows; trained "
        + ("as one batched ensemble per configuration." if settings.ensemble else "one seed after another."),
        "",
        *([interrupted, ""] if writer.settings.get("interrupted") else []),
        "## Summary",
        "",
        summary_table(writer),
        "",
        "Steps to target: the first evaluated step with held-out MAE below the target, over the converged "
        "seeds; trimmed mean = MLPerf-style, the fastest and slowest seed dropped. Seconds to target: "
        + (
            "training time (evaluation excluded) a plain Net of the same configuration, timed alone on seed "
            f"{settings.seeds[0]}, took to reach that step."
            if settings.ensemble
            else "each seed's own training time to that step, evaluation excluded."
        ),
        "",
        "## Seeds that never converged",
        "",
    ]
    outcomes = [
        (r.config.label, t.seed, seed_outcome(t, settings.target_mae)) for r in results for t in r.traces
    ]
    never = [(label, seed, why) for label, seed, (ok, why) in outcomes if not ok]
    if never:
        df = pd.DataFrame(never, columns=["config", "seed", "reason"])
        lines += [markdown_table(df, {"config": "configuration", "seed": "seed", "reason": "why"}), ""]
    elif results:
        lines += ["Every seed converged.", ""]
    else:
        lines += ["No configuration finished, so no seed was judged.", ""]
    lines += ["## Do configurations need the same number of steps?", ""]
    if compared:
        df = pd.DataFrame([{**asdict(c), "conclusion": c.conclusion} for c in compared])
        cols = {
            "a": "baseline",
            "b": "against",
            "matched": "seeds converged in both",
            "identical": "same step",
            "only_a": "baseline only",
            "only_b": "other only",
            "median_diff_steps": "median Δ steps",
            "p_value": "Wilcoxon p",
            "conclusion": "conclusion",
        }
        lines += [
            markdown_table(df, cols),
            "",
            "Paired by seed (same initial weights and batches). Wilcoxon signed-rank test on the nonzero "
            f"differences of steps-to-target; p < {SIGNIFICANCE} counts as a difference.",
            "",
        ]
    else:
        lines += ["Nothing to pair: the study needs eager and compile, or cpu and another device.", ""]
    with_one = [(r, r.cost_ratios(settings.eval_steps())) for r in results if r.one_seed_run_s]
    if with_one:
        names = ["configuration", "seeds", "ensemble training s", "one seed alone s"]
        names += ["cost ratio, whole runs", "cost ratio, median step"]
        rows = [(r.config.label, len(r.traces), r.run_s, r.one_seed_run_s, *ratios) for r, ratios in with_one]
        df = pd.DataFrame(rows, columns=names)
        lines += [
            "## Ensemble cost",
            "",
            markdown_table(df, {name: name for name in names}),
            "",
            f"The ensemble against the plain Net of seed {settings.seeds[0]} trained alone, same configuration. "
            "Median step: the median time per step between evaluations, first call left out, which other "
            "processes' bursts of load barely move.",
            "",
        ]
    lines += ["## Figures", ""]
    if figures:
        lines += [line for title, path in figures.items() for line in (f"![{title}]({path})", "")]
    else:
        lines.append(f"Figures skipped: {figures_skipped}")
    return "\n".join(lines) + "\n"
