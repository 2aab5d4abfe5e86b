"""`python -m bench gate`: fail CI on a real slowdown or lost convergence, not on noise.

A configuration present in both runs fails when its median time is more than --max-slowdown slower
and the 95% bootstrap interval of the median ratio lies wholly above that limit too (a significant
slowdown beyond the threshold, not only a ratio); when it converged in the baseline and no longer
does; when its held-out MAE grew beyond max(2 x baseline, baseline + 0.005); or when it ran in the
baseline and now fails. Every regression is listed, then the exit code is 1 (0 when all pass).
Bad input exits 2: a missing or unreadable run, another schema version, no configuration in common,
or machines that differ on CPU model, GPU, torch or CUDA version (unless --allow-env-mismatch).

    python -m bench gate --baseline results/baselines/linux-2core --current results/latest --out gate.md
    nox -s gate -- --baseline RUN --current RUN --max-slowdown 10%
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.analysis.significance import METHOD, SLOWER, RegressionCheck, SampleComparison, compare_records
from bench.errors import UsageError
from bench.history import DEFAULT_WINDOW
from bench.history.cli import gate_history
from bench.records import MUST_MATCH, ConfigKey, Record, differing_fields, parse_list
from bench.render.comparison import interval
from bench.render.report import fmt, markdown_table
from bench.store.load import load_run
from bench.store.run_folder import Run
from sumnet.cli_args import positive_int

METRICS = ("step_ms", "latency_ms", "run_s", "first_call_s", "time_to_target_s")  # times: lower is better
# The training step only, by default: inference rows are 7 blocks of 10 ms, and on a 2-core machine
# with another busy process their latency swings 3-300x between runs (measured; docs/ci-gate.md).
DEFAULT_METRICS = ("step_ms",)
MAE_FACTOR = 2.0  # held-out MAE may at most double ...
MAE_SLACK = 0.005  # ... or grow by half the exact-sum tolerance, whichever allows more (sum units)


@dataclass(frozen=True)
class ConvergenceCheck:
    """Fails when the baseline converged and the current run does not, or when MAE grew too much."""

    mae_factor: float = MAE_FACTOR
    mae_slack: float = MAE_SLACK

    def mae_limit(self, baseline_mae: float) -> float:
        return max(self.mae_factor * baseline_mae, baseline_mae + self.mae_slack)

    def describe(self) -> str:
        return (
            "a configuration that converged in the baseline and does not now fails; so does a held-out MAE "
            f"above max({self.mae_factor:g} x baseline, baseline + {self.mae_slack:g})"
        )

    def fails(self, current: Record, baseline: Record) -> str | None:
        """Records of one configuration -> why it regressed in convergence, or None."""
        reasons = []
        if baseline.value("converged") is True and current.value("converged") is False:
            why = str(current.value("verdict") or "").strip()
            reasons.append("converged in the baseline, not now" + (f" ({why})" if why else ""))
        mae_before, mae_now = baseline.number("mae"), current.number("mae")
        if not (math.isnan(mae_before) or math.isnan(mae_now)) and mae_now > self.mae_limit(mae_before):
            reasons.append(
                f"held-out MAE {mae_now:.4f} > limit {self.mae_limit(mae_before):.4f} (baseline {mae_before:.4f})"
            )
        return "; ".join(reasons) or None


@dataclass
class GateResult:
    speed: pd.DataFrame  # one line per configuration and metric
    convergence: pd.DataFrame  # one line per configuration with a convergence verdict in both runs
    not_compared: pd.DataFrame  # configuration, baseline status, current status, note
    failures: list[str] = field(default_factory=list)
    env_note: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures


def env_mismatch(
    baseline: dict, current: dict, fields: Sequence[str] = MUST_MATCH
) -> tuple[list[str], list[str]]:
    """(`field: baseline vs current` for each field recorded in both that differs, fields not recorded in both)."""
    unknown = [name for name in fields if name not in baseline or name not in current]
    differ = [
        f"{name}: {baseline[name] or '(none)'!s} vs {current[name] or '(none)'!s}"
        for name in differing_fields([baseline, current], fields)
        if name not in unknown
    ]
    return differ, unknown


def _status(record: Record | None) -> str:
    return "absent" if record is None else record.status


def _speed_verdict(result: SampleComparison, check: RegressionCheck, failure: str | None) -> str:
    if failure:
        return "REGRESSION"
    if result.ratio > check.limit:
        return "above limit, not significant" if result.tested else "within limit"
    if not result.tested:
        return "within limit (not tested)"
    if result.verdict == SLOWER:
        return f"slower, within {check.max_slowdown:.0%}"
    return result.verdict


def _noisy(baseline: Record, current: Record) -> str:
    """` (noisy: baseline, current)` for records flagged noisy (IQR over 10% of the median)."""
    noisy = [name for name, r in (("baseline", baseline), ("current", current)) if "noisy" in r.flags]
    return f" (noisy: {', '.join(noisy)})" if noisy else ""


def _refuse_different_lengths(pairs: Sequence[tuple[ConfigKey, Record | None, Record | None]]) -> None:
    """Training runs of different lengths differ in time and convergence by design: refuse them."""
    for key, before, now in pairs:
        ok = before is not None and now is not None and before.ok and now.ok and key.workload == "train"
        if ok and None not in (before.steps, now.steps) and before.steps != now.steps:  # type: ignore[union-attr]
            raise UsageError(
                f"{key}: the baseline trained {before.steps} steps and the current run {now.steps}; "  # type: ignore[union-attr]
                "gate runs made with the same --steps and preset"
            )


def pair_by_key(
    baseline: Sequence[Record], current: Sequence[Record]
) -> list[tuple[ConfigKey, Record | None, Record | None]]:
    """(key, baseline record, current record) for every configuration of either run: the baseline's
    order, then what only the current run has; None where a run lacks it."""
    before, now = {r.key: r for r in baseline}, {r.key: r for r in current}
    return [(k, before.get(k), now.get(k)) for k in [*before, *(k for k in now if k not in before)]]


def gate(
    baseline: Run,
    current: Run,
    check: RegressionCheck = RegressionCheck(),
    metrics: Sequence[str] = DEFAULT_METRICS,
    allow_env_mismatch: bool = False,
    convergence: ConvergenceCheck = ConvergenceCheck(),
    allow_missing: bool = False,
) -> GateResult:
    """Compare every configuration of `current` with `baseline`; UsageError on input that cannot be gated."""
    differ, unknown = env_mismatch(baseline.env, current.env)
    if differ and not allow_env_mismatch:
        raise UsageError(
            f"the runs come from different environments ({'; '.join(differ)}): a time difference could be the "
            "machine's, not the code's, so gating is refused; gate against a baseline from the same machine "
            "type or pass --allow-env-mismatch"
        )
    env_note = "must match (" + ", ".join(MUST_MATCH) + "): "
    env_note += ("DIFFER, allowed by --allow-env-mismatch: " + "; ".join(differ)) if differ else "agree"
    if unknown:
        env_note += "; not recorded in both runs, not checked: " + ", ".join(unknown)

    pairs = pair_by_key(baseline.records, current.records)
    _refuse_different_lengths(pairs)
    speed, conv, skipped, failures = [], [], [], []
    for key, before, now in pairs:
        if before is None or now is None or not before.ok or not now.ok:
            note = "listed, not compared"
            if before is not None and before.ok and now is None:
                note = "measured in the baseline, absent now"
                if not allow_missing:
                    failures.append(f"{key}: {note} (pass --allow-missing if that is intended)")
            elif before is not None and before.ok and now is not None and now.status == "failed":
                note = f"ran in the baseline, fails now: {now.reason or 'no reason recorded'}"
                failures.append(f"{key}: {note}")
            elif now is not None and not now.ok and now.reason:
                note = f"current: {now.reason}"
            elif before is not None and not before.ok and before.reason:
                note = f"baseline: {before.reason}"
            skipped.append(
                {"config": str(key), "baseline": _status(before), "current": _status(now), "note": note}
            )
            continue
        for metric in metrics:
            if math.isnan(before.number(metric)):
                continue
            if math.isnan(now.number(metric)):
                failures.append(f"{key} {metric}: measured in the baseline, not in the current run")
                continue
            result = compare_records(now, before, metric, check.q)
            failure = check.failure(result)
            if failure:
                failures.append(f"{key} {metric}: {failure}")
            speed.append(
                {
                    "config": str(key),
                    "metric": metric,
                    "baseline": result.baseline,
                    "current": result.current,
                    "n_baseline": result.n_baseline,
                    "n_current": result.n_current,
                    "ratio": result.ratio,
                    "ci_low": result.ci_low,
                    "ci_high": result.ci_high,
                    "p_slower": result.p_slower,
                    "verdict": _speed_verdict(result, check, failure) + _noisy(before, now),
                }
            )
        was, is_now = before.value("converged"), now.value("converged")
        if was is not None and is_now is not None:
            failure = convergence.fails(now, before)
            if failure:
                failures.append(f"{key}: {failure}")
            conv.append(
                {
                    "config": str(key),
                    "baseline_converged": was,
                    "baseline_mae": before.number("mae"),
                    "current_converged": is_now,
                    "current_mae": now.number("mae"),
                    "verdict": "REGRESSION" if failure else "ok",
                }
            )
    if not speed and not conv:
        raise UsageError(
            f"no configuration in common between {baseline.source} ({_few(baseline)}) and {current.source} "
            f"({_few(current)}) with the metrics {', '.join(metrics)} or a convergence verdict"
        )
    return GateResult(
        speed=pd.DataFrame(speed, columns=_SPEED_COLUMNS),
        convergence=pd.DataFrame(conv, columns=_CONV_COLUMNS),
        not_compared=pd.DataFrame(skipped, columns=["config", "baseline", "current", "note"]),
        failures=failures,
        env_note=env_note,
    )


_SPEED_COLUMNS = [
    "config",
    "metric",
    "baseline",
    "current",
    "n_baseline",
    "n_current",
    "ratio",
    "ci_low",
    "ci_high",
    "p_slower",
    "verdict",
]
_CONV_COLUMNS = [
    "config",
    "baseline_converged",
    "baseline_mae",
    "current_converged",
    "current_mae",
    "verdict",
]


def _few(run: Run) -> str:
    ok = [str(r.key) for r in run.records if r.ok]
    if not ok:
        return "no ok rows"
    return ", ".join(ok[:3]) + (f" and {len(ok) - 3} more" if len(ok) > 3 else "")


def _describe_run(run: Run) -> str:
    env = run.env
    bits = [str(env.get(k)) for k in ("host", "git_commit", "timestamp_utc") if env.get(k)]
    return f"`{run.source}`" + (f" ({', '.join(bits)})" if bits else "")


def _mae(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4f}"


def render_markdown(
    result: GateResult,
    baseline: Run,
    current: Run,
    check: RegressionCheck,
    convergence: ConvergenceCheck,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> str:
    """The report CI posts: verdict, rules, every compared configuration, every regression."""
    head = (
        "PASS"
        if result.passed
        else f"FAIL ({len(result.failures)} regression{'s' * (len(result.failures) != 1)})"
    )
    parts = [
        f"# Benchmark gate: {head}",
        "",
        f"- Baseline: {_describe_run(baseline)}",
        f"- Current: {_describe_run(current)}",
        f"- Speed rule: a configuration {check.describe()}. Ratio = current / baseline (above 1 is slower).",
        f"- Metrics gated: {', '.join(metrics)}.",
        f"- Method: {METHOD}; p is one-sided (current slower).",
        f"- Convergence rule: {convergence.describe()}.",
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
            "baseline": f"baseline ({check.statistic})",
            "current": f"current ({check.statistic})",
            "samples": "n (base / cur)",
            "ratio": "ratio",
            "interval": "95% CI",
            "p_slower": "p (slower)",
            "verdict": "verdict",
        }
        parts += ["## Speed", "", markdown_table(speed, columns), ""]
    if not result.convergence.empty:
        conv = result.convergence.assign(
            base=[
                f"{fmt(c)}, MAE {_mae(m)}"
                for c, m in zip(result.convergence["baseline_converged"], result.convergence["baseline_mae"])
            ],
            cur=[
                f"{fmt(c)}, MAE {_mae(m)}"
                for c, m in zip(result.convergence["current_converged"], result.convergence["current_mae"])
            ],
        )
        columns = {
            "config": "configuration",
            "base": "baseline converged",
            "cur": "current converged",
            "verdict": "verdict",
        }
        parts += ["## Convergence", "", markdown_table(conv, columns), ""]
    if not result.not_compared.empty:
        parts += ["## Not compared", ""]
        parts += [
            f"- {r.config}: baseline {r.baseline}, current {r.current}; {r.note}"
            for r in result.not_compared.itertuples()
        ]
        parts.append("")
    if result.failures:
        parts += ["## Regressions", ""] + [f"{i}. {f}" for i, f in enumerate(result.failures, 1)] + [""]
    return "\n".join(parts)


def parse_metrics(text: str) -> list[str]:
    metrics = parse_list(text)
    unknown = [m for m in metrics if m not in METRICS]
    if not metrics or unknown:
        raise argparse.ArgumentTypeError(f"--metric: choose from {', '.join(METRICS)}, got {text!r}")
    return metrics


def parse_check(text: str) -> RegressionCheck:
    try:
        return RegressionCheck.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline", default=None, help="the stored run to compare against (folder, CSV or JSON)"
    )
    parser.add_argument(
        "--history",
        nargs="?",
        const="",
        default=None,
        metavar="DB",
        help="compare with the recent comparable runs in the history instead (default DB results/history.db)",
    )
    parser.add_argument(
        "--window",
        type=positive_int,
        default=DEFAULT_WINDOW,
        help=f"history runs pooled (default {DEFAULT_WINDOW})",
    )
    parser.add_argument("--current", required=True, help="the run under test")
    parser.add_argument(
        "--max-slowdown",
        type=parse_check,
        default=RegressionCheck(),
        metavar="PCT",
        help="largest tolerated slowdown of the median, e.g. 10%% or median:10%% (default 10%%)",
    )
    parser.add_argument(
        "--metric",
        type=parse_metrics,
        default=list(DEFAULT_METRICS),
        help=f"comma list of time columns to gate (default {','.join(DEFAULT_METRICS)}; also {', '.join(METRICS[1:])})",
    )
    parser.add_argument(
        "--allow-env-mismatch",
        action="store_true",
        help="gate runs from machines that differ in CPU, GPU, torch or CUDA version",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="pass although configurations measured in the baseline are absent from the current run",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the markdown report to this file (for CI to post)"
    )


def _run_identity(path: str | Path) -> Path:
    """The run folder a path names (a folder, or its results.csv or run.json)."""
    resolved = Path(path).resolve()
    return resolved.parent if resolved.name in ("results.csv", "run.json") else resolved


def main(args: argparse.Namespace) -> int:
    if args.history is not None:
        if args.baseline is not None:
            raise UsageError("give --baseline RUN or --history [DB], not both")
        if args.max_slowdown.statistic != "median":
            raise UsageError("--history gates the median; give --max-slowdown as a plain percentage")
        return gate_history(args.history or None, args.current, args.window, args.max_slowdown.max_slowdown)
    if args.baseline is None:
        raise UsageError("give --baseline RUN (a stored run) or --history [DB] (the recent comparable runs)")
    if _run_identity(args.baseline) == _run_identity(args.current):
        raise UsageError(f"--baseline and --current are the same run ({args.current}): nothing to gate")
    baseline, current = load_run(args.baseline), load_run(args.current)
    convergence = ConvergenceCheck()
    result = gate(
        baseline,
        current,
        args.max_slowdown,
        args.metric,
        args.allow_env_mismatch,
        convergence,
        args.allow_missing,
    )
    markdown = render_markdown(result, baseline, current, args.max_slowdown, convergence, args.metric)
    if args.out is not None:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(markdown)
        except OSError as err:
            raise UsageError(f"cannot write {args.out}: {err.strerror or err}") from None
    print(markdown)
    return 0 if result.passed else 1
