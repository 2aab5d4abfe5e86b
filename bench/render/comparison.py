"""The markdown of compare and gate (compare.md, the gate's report), and what they print alike: a
ratio's interval.

    python -c "from bench.render.comparison import interval; print(interval(1.02, 1.31))"
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from bench.analysis.significance import ADVICE, INSTRUCTIONS, INSTRUCTIONS_LIMIT, METHOD, RegressionCheck
from bench.records import SHOWN_WHEN_DIFFERENT
from bench.render.report import fmt, markdown_table
from bench.store.run_folder import Run

TABLE_COLUMNS = {
    "workload": "workload",
    "batch_size": "batch",
    "run": "run",
    "device": "device",
    "mode": "mode",
    "threads": "threads",
    "output_activation": "output act.",
    "metric": "metric",
    "median": "median",
    "ratio": "ratio to ref (x)",
    "interval": "95% CI",
    "p_value": "p (U test)",
    "verdict": "vs reference",
    "converged": "converged",
    "mae": "MAE",
}


def interval(low: float, high: float) -> str:
    """`1.02-1.31`, or "" when no interval was computed (too few raw samples)."""
    return "" if math.isnan(low) else f"{fmt(low)}-{fmt(high)}"


def compare_markdown(
    runs: Sequence[Run],
    labels: Sequence[str],
    reference: str,
    table: pd.DataFrame,
    diffs: pd.DataFrame,
    skipped: pd.DataFrame,
) -> str:
    """compare.md: the runs, the reference and the method, the environment fields that differ
    (`diffs`), every timed line of `table` against the reference, and what was not compared."""
    shown_env = {"host": "host", "cpu": "cpu_model", "gpu": "gpu_name", "torch": "torch_version"}
    shown_env.update({"commit": "git_commit", "time (UTC)": "timestamp_utc"})
    run_lines = pd.DataFrame(
        {"run": label, "source": run.source, **{h: run.env.get(f, "") for h, f in shown_env.items()}}
        for label, run in zip(labels, runs)
    )
    parts = [
        f"# Comparison of {len(runs)} run{'s' if len(runs) > 1 else ''}",
        "",
        markdown_table(run_lines, {c: c for c in run_lines.columns}),
        "",
        f"Reference: {reference}. Each line's ratio is its median time over the reference's "
        "median for the same workload, batch size and output activation (same thread count when the "
        "reference has it); above 1 is slower.",
        "",
        f"Method: {METHOD}. Verdict: faster or slower when the interval excludes 1 and the two-sided "
        "U test agrees; otherwise no significant difference.",
        "",
    ]
    if len(runs) > 1:
        if diffs.empty:
            parts += ["Environment: the runs agree on " + ", ".join(SHOWN_WHEN_DIFFERENT) + ".", ""]
        else:
            parts += _section(
                "Environment fields that differ between the runs:",
                [markdown_table(diffs, {c: c for c in diffs.columns})],
            )
    if table.empty:
        parts += ["No timed configuration to compare.", ""]
    else:
        shown = table.assign(interval=[interval(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"])])
        shown["mae"] = [fmt(v) if v >= 0.1 else ("" if math.isnan(v) else f"{v:.4f}") for v in shown["mae"]]
        parts += [markdown_table(shown, TABLE_COLUMNS), ""]
    lines = [
        f"- {r.run} {r.config}: {r.status}{' - ' + r.reason if r.reason else ''}"
        for r in skipped.itertuples()
    ]
    return "\n".join(parts + _section("Not compared (skipped, failed or untimed rows):", lines))


def _section(title: str, lines: list[str]) -> list[str]:
    """A titled block of lines for a report, or nothing when there are no lines."""
    return [title, "", *lines, ""] if lines else []


def _describe_run(run: Run) -> str:
    env = run.env
    bits = [str(env.get(k)) for k in ("host", "git_commit", "timestamp_utc") if env.get(k)]
    return f"`{run.source}`" + (f" ({', '.join(bits)})" if bits else "")


def _outcome(conv: pd.DataFrame, arm: str) -> list[str]:
    """`True, MAE 0.0031` for each line of the convergence table, of the baseline or the current run."""
    return [
        f"{fmt(c)}, MAE {'' if math.isnan(m) else f'{m:.4f}'}"
        for c, m in zip(conv[f"{arm}_converged"], conv[f"{arm}_mae"])
    ]


def gate_markdown(
    result,
    baseline: Run,
    current: Run,
    check: RegressionCheck | None,
    convergence_rule: str,
    metrics: Sequence[str],
) -> str:
    """The report CI posts for bench.commands.gate.GateResult `result`: verdict, rules, every compared
    configuration, every regression and every configuration the runs could not decide."""
    time_check = check or RegressionCheck()
    rules = [f"- Speed rule: a configuration {time_check.describe()}; {BETWEEN_RULE}."]
    if INSTRUCTIONS in metrics:
        limit = check.max_slowdown if check else INSTRUCTIONS_LIMIT
        rules.append(
            f"- Instructions rule: fails when the median count per step or call is more than {limit:.0%} higher."
        )
    parts = [
        f"# Benchmark gate: {verdict_head(result.failures, result.inconclusive)}",
        "",
        f"- Baseline: {_describe_run(baseline)}",
        f"- Current: {_describe_run(current)}",
        *rules,
        "- Ratio = current / baseline (above 1 is slower). Exit codes: 0 pass, 1 regression, 2 bad input, 3 inconclusive.",
        f"- Metrics gated: {', '.join(metrics)}.",
        f"- Method: {METHOD}; p is one-sided (current slower).",
        f"- Convergence rule: {convergence_rule}.",
        f"- Environment {result.env_note}.",
        "",
    ]
    if not result.speed.empty:
        speed = result.speed.assign(
            interval=[interval(lo, hi) for lo, hi in zip(result.speed["ci_low"], result.speed["ci_high"])],
            samples=[f"{b} / {c}" for b, c in zip(result.speed["n_baseline"], result.speed["n_current"])],
        )
        columns = {
            "config": "configuration",
            "metric": "metric",
            "baseline": f"baseline ({time_check.statistic})",
            "current": f"current ({time_check.statistic})",
            "samples": "n (base / cur)",
            "ratio": "ratio",
            "interval": "95% CI",
            "p_slower": "p (slower)",
            "verdict": "verdict",
        }
        parts += ["## Speed", "", markdown_table(speed, columns), ""]
    if not result.convergence.empty:
        conv = result.convergence
        shown = conv.assign(**{f"{arm} converged": _outcome(conv, arm) for arm in ("baseline", "current")})
        columns = {"config": "configuration", **{h: h for h in ("baseline converged", "current converged")}}
        parts += ["## Convergence", "", markdown_table(shown, {**columns, "verdict": "verdict"}), ""]
    skipped = [
        f"- {r.config}: baseline {r.baseline}, current {r.current}; {r.note}"
        for r in result.not_compared.itertuples()
    ]
    parts += _section("## Not compared", skipped)
    parts += _section("## Regressions", [f"{i}. {f}" for i, f in enumerate(result.failures, 1)])
    unsure = [f"{i}. {f}" for i, f in enumerate(result.inconclusive, 1)]
    parts += _section("## Inconclusive", unsure + ["", f"What to run instead: {ADVICE}."] if unsure else [])
    return "\n".join(parts)


BETWEEN_RULE = (
    "where both runs have two or more repeats, every current repeat must also be beyond the limit of "
    "every baseline repeat (the variance between runs); rows flagged noisy in both runs, or noisy on a "
    "loaded machine, with one repeat each, and ratios beyond the limit whose interval reaches below it are INCONCLUSIVE"
)


def verdict_head(failures: Sequence[str], inconclusive: Sequence[str]) -> str:
    """PASS, FAIL (n regressions) or INCONCLUSIVE (n configurations)."""
    if failures:
        return f"FAIL ({len(failures)} regression{'s' * (len(failures) != 1)})"
    if inconclusive:
        return f"INCONCLUSIVE ({len(inconclusive)} configuration{'s' * (len(inconclusive) != 1)})"
    return "PASS"
