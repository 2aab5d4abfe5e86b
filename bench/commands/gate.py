"""`python -m bench gate`: fail CI on a real slowdown or lost convergence, not on noise.

A configuration regresses when it is significantly slower than --max-slowdown (significance.judge),
lost convergence (ConvergenceCheck), or ran in the baseline and fails now; the report states the
rules. `--metric instructions` gates CPU instruction counts; `--history [DB]` gates against the
recent comparable runs of the history (`python -m bench history gate` is the same gate).

Exit codes: 0 pass, 1 regression, 2 bad input (unreadable run, no configuration in common, machines
that differ on CPU, GPU, torch or CUDA version unless --allow-env-mismatch), 3 inconclusive.

    python -m bench gate --baseline results/baselines/linux-2core --current results/latest --out gate.md
    python -m bench gate --history --current results/latest
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from bench.analysis.significance import (
    ADVICE,
    INCONCLUSIVE,
    INSTRUCTIONS,
    RegressionCheck,
    default_check,
    judge,
    metric_samples,
)
from bench.errors import UsageError
from bench.history import DEFAULT_WINDOW, add_gate_arguments
from bench.records import MUST_MATCH, Record, differing_fields, parse_list
from bench.render.comparison import gate_markdown, verdict_head
from bench.store.load import load_run
from bench.store.run_folder import Run

TIMES = ("step_ms", "latency_ms", "run_s", "first_call_s", "time_to_target_s")  # lower is better
METRICS = (*TIMES, INSTRUCTIONS)
DEFAULT_METRICS = ("step_ms",)  # inference latency swings several-fold on a busy machine
MAE_FACTOR = 2.0  # held-out MAE may at most double ...
MAE_SLACK = 0.005  # ... or grow by half the exact-sum tolerance, whichever allows more (sum units)
EXIT_PASS, EXIT_REGRESSION, EXIT_INCONCLUSIVE = 0, 1, 3


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
    inconclusive: list[str] = field(default_factory=list)  # `config metric: why`
    env_note: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.failures else EXIT_INCONCLUSIVE if self.inconclusive else EXIT_PASS


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


def _measured(record: Record, metric: str) -> bool:
    if metric == INSTRUCTIONS:
        return bool(record.raw(metric_samples(metric, record.key.workload)))
    return not math.isnan(record.number(metric))


def _cores(run_env: dict) -> int | None:
    cores = run_env.get("cpu_cores")
    return cores if isinstance(cores, int) and not isinstance(cores, bool) else None


def gate(
    baseline: Run,
    current: Run,
    check: RegressionCheck | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    allow_env_mismatch: bool = False,
    allow_missing: bool = False,
) -> GateResult:
    """Compare every configuration of `current` with `baseline`; UsageError on input that cannot be
    gated. `check` None: each metric's default limit (10% for times, 1% for instructions)."""
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

    speed, conv, skipped, failures, inconclusive = [], [], [], [], []
    old, new = {r.key: r for r in baseline.records}, {r.key: r for r in current.records}
    for key in [*old, *(k for k in new if k not in old)]:  # the baseline's order, then the new ones
        before, now = old.get(key), new.get(key)
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
            status = ["absent" if r is None else r.status for r in (before, now)]
            skipped.append({"config": str(key), "baseline": status[0], "current": status[1], "note": note})
            continue
        if key.workload == "train" and None not in (before.steps, now.steps) and before.steps != now.steps:
            raise UsageError(  # training runs of different lengths differ in time and convergence by design
                f"{key}: the baseline trained {before.steps} steps and the current run {now.steps}; "
                "gate runs made with the same --steps and preset"
            )
        for metric in metrics:
            if not _measured(before, metric):
                continue
            if not _measured(now, metric):
                failures.append(f"{key} {metric}: measured in the baseline, not in the current run")
                continue
            verdict = judge(before, now, metric, check or default_check(metric), _cores(current.env))
            if verdict.failure:
                failures.append(f"{key} {metric}: {verdict.failure}")
            if verdict.why:
                inconclusive.append(f"{key} {metric}: {verdict.why}")
            r = verdict.result
            speed.append(
                {"config": str(key), "metric": metric, **asdict(r), "ratio": r.ratio, "verdict": verdict.text}
            )
        was, is_now = before.value("converged"), now.value("converged")
        if was is not None and is_now is not None:
            failure = ConvergenceCheck().fails(now, before)
            if failure:
                failures.append(f"{key}: {failure}")
            line = {"config": str(key), "baseline_converged": was, "baseline_mae": before.number("mae")}
            line.update(current_converged=is_now, current_mae=now.number("mae"))
            conv.append({**line, "verdict": "REGRESSION" if failure else "ok"})
    if not speed and not conv:
        raise UsageError(
            f"no configuration in common between {baseline.source} ({_few(baseline)}) and {current.source} "
            f"({_few(current)}) with the metrics {', '.join(metrics)} or a convergence verdict"
        )
    return GateResult(
        speed=pd.DataFrame(speed),
        convergence=pd.DataFrame(conv),
        not_compared=pd.DataFrame(skipped, columns=["config", "baseline", "current", "note"]),
        failures=failures,
        inconclusive=inconclusive,
        env_note=env_note,
    )


def _few(run: Run) -> str:
    ok = [str(r.key) for r in run.records if r.ok]
    if not ok:
        return "no ok rows"
    return ", ".join(ok[:3]) + (f" and {len(ok) - 3} more" if len(ok) > 3 else "")


def parse_metrics(text: str) -> list[str]:
    metrics = parse_list(text)
    unknown = [m for m in metrics if m not in METRICS]
    if not metrics or unknown:
        raise argparse.ArgumentTypeError(f"--metric: choose from {', '.join(METRICS)}, got {text!r}")
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "exit codes: 0 pass, 1 regression, 2 bad input, 3 inconclusive (the report says why and what to run instead)"
    add = parser.add_argument
    add("--baseline", help="the stored run to compare against (folder, CSV or JSON)")
    history = "compare with the recent comparable runs in the history instead (default DB results/history.db)"
    add("--history", nargs="?", const="", metavar="DB", help=history)
    add_gate_arguments(parser)
    also = ", ".join(METRICS[1:])
    metrics = f"comma list of metrics to gate (default {','.join(DEFAULT_METRICS)}; also {also})"
    add("--metric", type=parse_metrics, default=list(DEFAULT_METRICS), help=metrics)
    mismatch = "gate runs from machines that differ in CPU, GPU, torch or CUDA version"
    add("--allow-env-mismatch", action="store_true", help=mismatch)
    missing = "pass although configurations measured in the baseline are absent from the current run"
    add("--allow-missing", action="store_true", help=missing)
    add("--out", type=Path, help="also write the markdown report to this file (for CI to post)")


def _run_identity(path: str | Path) -> Path:
    """The run folder a path names (a folder, or its results.csv or run.json)."""
    resolved = Path(path).resolve()
    return resolved.parent if resolved.name in ("results.csv", "run.json") else resolved


def main(args: argparse.Namespace) -> int:
    if args.history is not None:
        if args.baseline is not None:
            raise UsageError("give --baseline RUN or --history [DB], not both")
        return gate_history(args.history or None, args.current, args.window, args.max_slowdown, args.metric)
    if args.baseline is None:
        raise UsageError("give --baseline RUN (a stored run) or --history [DB] (the recent comparable runs)")
    if _run_identity(args.baseline) == _run_identity(args.current):
        raise UsageError(f"--baseline and --current are the same run ({args.current}): nothing to gate")
    baseline, current = load_run(args.baseline), load_run(args.current)
    check, metrics = args.max_slowdown, args.metric
    result = gate(baseline, current, check, metrics, args.allow_env_mismatch, args.allow_missing)
    markdown = gate_markdown(result, baseline, current, check, ConvergenceCheck().describe(), metrics)
    if args.out is not None:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(markdown)
        except OSError as err:
            raise UsageError(f"cannot write {args.out}: {err.strerror or err}") from None
    print(markdown)
    return result.exit_code


# --- against the history ------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryCheck:
    """One configuration and metric of the current run against its history."""

    config_key: str
    metric: str
    runs: int  # history runs pooled
    commits: str  # oldest..newest commit of those runs
    comparison: object | None  # bench.analysis.significance.SampleComparison; None for a status check
    failure: str | None  # why it fails, or None
    why: str | None = None  # why the history cannot decide, or None


def check_against_history(
    history,
    current,
    window: int = DEFAULT_WINDOW,
    check: RegressionCheck | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> list[HistoryCheck]:
    """Every configuration of `current` (a bench.history.db.RunEntry) against its last `window`
    comparable runs in `history` (same machine, ok, earlier, itself excluded), their raw samples
    pooled as the baseline and judged by significance.judge; UsageError when none has a history."""
    fp = current.machine.fingerprint
    checks = []
    for entry in current.records:
        key = str(entry.config)
        recent = history.recent_runs(fp, key, window, before=current.time_utc, exclude_run=current.run_id)
        if not recent:
            continue
        commits = _commit_range([commit for _, commit, _ in reversed(recent)])
        if entry.status == "failed":
            reason = entry.reason or "no reason recorded"
            failure = f"{key}: ran ok in the last {len(recent)} comparable runs, fails now: {reason}"
            checks.append(HistoryCheck(key, "status", len(recent), commits, None, failure))
            continue
        now = Record(entry.config, entry.status, samples=entry.samples, derived={"flags": entry.flags})
        for metric in metrics:
            name = metric_samples(metric, entry.config.workload)
            if not now.ok or not now.raw(name):
                continue
            pooled = history.samples_of(key, name, [run_id for run_id, _, _ in recent])
            baseline = [v for run_id, _, _ in recent for v in pooled.get(run_id, [])]
            if not baseline:
                continue
            before = Record(entry.config, samples={name: baseline})
            verdict = judge(before, now, metric, check or default_check(metric), _cores(current.env))
            failure = (
                verdict.failure
                and f"{key} {metric}: {verdict.failure}; baseline: {len(pooled)} runs of history ({commits})"
            )
            checks.append(
                HistoryCheck(key, metric, len(pooled), commits, verdict.result, failure, verdict.why)
            )
    if not checks:
        raise UsageError(
            f"no comparable history for {current.source}: machine {fp} ({current.machine.label}) has no "
            f"earlier ok run of its configurations in {history.where}"
        )
    return checks


def gate_history(
    db: str | None,
    current: str,
    window: int = DEFAULT_WINDOW,
    check: RegressionCheck | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> int:
    """`bench gate --history` and `bench history gate`: print every check against the history and
    return the exit code (0 pass, 1 regression, 3 inconclusive)."""
    from bench.history.db import open_history  # sqlalchemy: only the history needs it
    from bench.history.ingest import entry_of

    with open_history(db, create=False) as history:
        checks = check_against_history(history, entry_of(current), window, check, metrics)
    failures = [c.failure for c in checks if c.failure]
    unsure = [f"{c.config_key} {c.metric}: {c.why}" for c in checks if c.why]
    limit = (check or default_check(metrics[0])).max_slowdown
    print(
        f"History gate: {verdict_head(failures, unsure)}; {current} against the last {window} comparable runs, "
        f"limit +{limit:.0%}"
    )
    for c in (c for c in checks if c.comparison is not None):
        r = c.comparison
        shown = f" [{r.ci_low:.3f}-{r.ci_high:.3f}]" if r.tested else ""
        verdict = "REGRESSION" if c.failure else INCONCLUSIVE if c.why else "ok"
        print(
            f"  {c.config_key} {c.metric}: ratio {r.ratio:.3f}{shown} vs {c.runs} runs ({c.commits}): {verdict}"
        )
    for i, failure in enumerate(failures, 1):
        print(f"{i}. {failure}")
    for line in unsure:
        print(f"inconclusive: {line}")
    if unsure:
        print(f"What to run instead: {ADVICE}.")
    return EXIT_REGRESSION if failures else EXIT_INCONCLUSIVE if unsure else EXIT_PASS


def _commit_range(commits: Sequence[str]) -> str:
    named = [c[:12] for c in commits if c]
    if not named:
        return "no commits recorded"
    return named[0] if named[0] == named[-1] else f"{named[0]}..{named[-1]}"
