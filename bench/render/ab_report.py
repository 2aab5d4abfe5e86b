"""The report of `bench ab`: verdict, what ran, the rule, one line per configuration (the gate's
layout), then the regressions and the inconclusive configurations with what to run instead.

    python -m bench ab HEAD~1 --device cpu --mode eager --threads 1   # writes and prints it
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from bench.analysis.paired import INCONCLUSIVE, METHOD, PASS, REGRESSION, Outcome
from bench.analysis.significance import RegressionCheck
from bench.render.report import fmt, markdown_table

COLUMNS = {
    "config": "configuration",
    "metric": "metric",
    "base": "BASE",
    "head": "HEAD",
    "rounds": "rounds",
    "ratio": "paired ratio",
    "interval": "95% CI",
    "p": "p (slower)",
    "per_round": "per-round ratios",
    "verdict": "verdict",
}


def heading(outcome: Outcome, interrupted: bool, done: int, planned: int) -> str:
    """PASS, FAIL (n regressions), INCONCLUSIVE (n configurations); and whether it was cut short."""
    regressions, unsure = outcome.count(REGRESSION), outcome.count(INCONCLUSIVE)
    if regressions:
        head = f"FAIL ({regressions} regression{'s' * (regressions != 1)})"
    elif unsure:
        head = f"INCONCLUSIVE ({unsure} configuration{'s' * (unsure != 1)})"
    else:
        head = "PASS" if outcome.lines else "nothing compared"
    return head + (f", INTERRUPTED after {done} of {planned} rounds" if interrupted else "")


def _row(line) -> dict:
    c = line.comparison
    return {
        "config": line.config,
        "metric": line.metric,
        "base": np.median(c.base) if c else math.nan,
        "head": np.median(c.head) if c else math.nan,
        "rounds": c.rounds if c else 0,
        "ratio": c.ratio if c else math.nan,
        "interval": f"{fmt(c.ci_low)}-{fmt(c.ci_high)}" if c and c.tested else "",
        "p": c.p_slower if c else math.nan,
        "per_round": " ".join(f"{r:.3f}" for r in c.ratios) if c else "",
        "verdict": line.verdict if line.verdict != PASS else line.why.split(" (")[0],
    }


def render_ab_markdown(outcome: Outcome, record: dict, check: RegressionCheck, instructions: bool) -> str:
    """`record` is what ab.json holds: the arms described, the rounds with their load, the flags."""
    done, planned = len(record["complete_rounds"]), record["rounds_planned"]
    loads = [v for r in record["rounds"] for arm in r.values() if isinstance(arm, dict)
             for v in (arm["load_before"], arm["load_after"])]  # fmt: skip
    what = "instruction count" if instructions else check.statistic
    parts = [
        f"# Benchmark A/B: {heading(outcome, record['interrupted'], done, planned)}",
        "",
        f"- BASE (A): {record['base']}",
        f"- HEAD (B): {record['head']}",
        f"- Rounds: {done} complete of {planned}, order {' '.join(record['order'])}; each arm one "
        f"`python -m bench run {' '.join(record['run_argv'])}` process per round, started in its own tree; "
        f"{record['schedule']}.",
        f"- Environment: one Python environment serves both trees ({record['python']}); the two "
        "pyproject.toml dependency lists agree.",
        "- Rule: per round, "
        + (
            "the median over its blocks of block k of HEAD / block k of BASE"
            if record.get("lockstep") and what == "median"
            else f"the ratio HEAD / BASE of each arm's {what}"
        )
        + "; a configuration fails when the median "
        f"of these ratios is above {check.limit:.3g} and the lower end of its 95% interval is too; it passes "
        "when the upper end is at or below it; otherwise it is inconclusive.",
        f"- Method: {METHOD}.",
        "- Machine: 1-minute load average "
        + (f"{min(loads):.1f} to {max(loads):.1f} around the processes" if loads else "not measured")
        + f" ({os.cpu_count()} CPUs); the pairing absorbs load that lasts a round, not a burst within one arm.",
        "",
    ]
    if outcome.lines:
        columns = {**COLUMNS, "base": f"BASE ({what})", "head": f"HEAD ({what})"}
        table = markdown_table(pd.DataFrame([_row(line) for line in outcome.lines]), columns)
        parts += ["## Instructions" if instructions else "## Speed", "", table, ""]
    if outcome.not_compared:
        parts += ["## Not compared", "", *(f"- {n}" for n in outcome.not_compared), ""]
    for verdict, title in ((REGRESSION, "Regressions"), (INCONCLUSIVE, "Inconclusive")):
        found = [f"{ln.config} {ln.metric}: {ln.why}" for ln in outcome.lines if ln.verdict == verdict]
        if found:
            parts += [f"## {title}", "", *(f"{i}. {text}" for i, text in enumerate(found, 1)), ""]
    return "\n".join(parts)
