"""`python -m bench compare`: put runs side by side, from one machine or several, with intervals.

Every timed configuration of every run becomes one line: its median time, the ratio to the
reference configuration (by default the first run's CPU eager row of the same workload, batch size
and output activation), a 95% bootstrap interval of that ratio from the raw samples, a Mann-Whitney
p-value, and faster / slower / no significant difference; the convergence verdict and held-out MAE
sit beside it. The environment fields that differ between runs (CPU, GPU, torch, threads) are listed.

    python -m bench compare results/laptop-20250101T000000Z results/gpu-20250101T000000Z
    python -m bench compare RUN_A RUN_B --reference 2:cuda:eager --out results/cpu-vs-gpu

Writes compare.md, compare.csv (and compare_ratios.png) to --out; prints the markdown.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.analysis.frames import as_bool, key_text, number, ok_rows, timing_metric
from bench.analysis.significance import METHOD, compare_samples, compare_values
from bench.errors import UsageError
from bench.measure.environment import SHOWN_WHEN_DIFFERENT, differing_fields
from bench.records import ConfigKey
from bench.render.figures import write_compare_figures
from bench.render.report import fmt, markdown_table
from bench.store.load import load_run
from bench.store.run_folder import KEY_COLUMNS, LoadedRun

REFERENCE_DEFAULT = ("cpu", "eager")
MATCH_COLUMNS = ("workload", "batch_size", "output_activation")  # a row meets the reference's row on these

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


def config_key(row: pd.Series | dict) -> str:
    """`train/cpu/eager/32/2/relu`, the same for a row read from results.csv or run.json."""
    return str(ConfigKey.from_row(row))


def raw_samples(run: LoadedRun, row: pd.Series | dict, metric: str) -> list[float]:
    """The row's raw samples of `metric` (e.g. step_ms block means), [] when the run has none."""
    return run.raw(ConfigKey.from_row(row), metric)


# --- the reference --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    run: int  # index into the runs
    device: str
    mode: str

    def label(self, labels: Sequence[str]) -> str:
        return f"{labels[self.run]} {self.device} {self.mode}"


def parse_reference(spec: str, names: Sequence[Sequence[str]]) -> Reference:
    """`RUN:device:mode`; RUN is a run's 1-based position, its path as given, or its folder name.

    `names[i]` holds the accepted names of run i. The device may itself hold a colon (cuda:1).
    """
    candidates = []
    for index, aliases in enumerate(names):
        for alias in {str(index + 1), *aliases}:
            if alias and spec.startswith(alias + ":"):
                device, _, mode = spec[len(alias) + 1 :].rpartition(":")
                if device and mode:
                    candidates.append((len(alias), Reference(index, device, mode)))
    if not candidates:
        raise UsageError(
            f"--reference {spec!r}: expected RUN:device:mode with RUN one of 1..{len(names)} or a run given"
        )
    return max(candidates, key=lambda c: c[0])[1]


def _reference_rows(run: LoadedRun, ref: Reference) -> pd.DataFrame:
    rows = ok_rows(run.frame)
    return rows[(rows["device"].astype(str) == ref.device) & (rows["mode"].astype(str) == ref.mode)]


def default_reference(runs: Sequence[LoadedRun]) -> Reference:
    """The first run's CPU eager rows, else the first run's first timed device and mode."""
    first = Reference(0, *REFERENCE_DEFAULT)
    if not _reference_rows(runs[0], first).empty:
        return first
    for _, row in ok_rows(runs[0]).iterrows():
        if timing_metric(row):
            return Reference(0, str(row["device"]), str(row["mode"]))
    return first


# --- the table ------------------------------------------------------------------------------


def run_labels(runs: Sequence[LoadedRun]) -> list[str]:
    """R1, R2, ...: short names for the table; the runs table maps them to sources."""
    return [f"R{i + 1}" for i in range(len(runs))]


def _match(ref_rows: pd.DataFrame, row: pd.Series) -> pd.Series | None:
    """The reference row of the same workload, batch size and output activation (same threads first)."""
    same = ref_rows
    for column in MATCH_COLUMNS:
        same = same[same[column].map(key_text) == key_text(row.get(column))]
    if same.empty:
        return None
    threads = same[same["threads"].map(key_text) == key_text(row.get("threads"))]
    return (threads if not threads.empty else same).iloc[0]


def _labels(table: pd.DataFrame) -> list[str]:
    """One unique, readable label per line: run, device, mode, plus what varies among the rest."""
    varying = [
        c
        for c in ("workload", "batch_size", "threads", "output_activation")
        if table[c].map(key_text).nunique() > 1
    ]
    prefix = {"batch_size": "b", "threads": "t"}
    labels = []
    for _, row in table.iterrows():
        parts = [str(row["run"]), str(row["device"]), str(row["mode"])]
        parts += [prefix.get(c, "") + key_text(row[c]) for c in varying]
        labels.append(" · ".join(parts))
    return labels


def comparison_table(runs: Sequence[LoadedRun], reference: Reference | None = None) -> pd.DataFrame:
    """Every timed ok row of every run against the reference's matching row.

    Columns: label, run, workload, device, mode, batch_size, threads, output_activation, metric,
    median (the metric's unit, ms), n (raw samples), ratio (median / reference median; above 1 is
    slower), ci_low, ci_high (95% bootstrap interval of the ratio), p_value (two-sided Mann-Whitney U),
    verdict, converged (True/False/None), mae (held-out, sum units).
    """
    reference = reference or default_reference(runs)
    labels = run_labels(runs)
    ref_run = runs[reference.run]
    ref_rows = _reference_rows(ref_run, reference)
    lines = []
    for index, run in enumerate(runs):
        for _, row in ok_rows(run.frame).iterrows():
            metric = timing_metric(row)
            if metric is None:
                continue
            line = {
                "run": labels[index],
                **{c: row.get(c) for c in KEY_COLUMNS},
                "metric": metric,
                "median": number(row[metric]),
                "n": len(raw_samples(run, row, metric)),
                "ratio": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "p_value": math.nan,
                "verdict": "no reference row",
                "converged": as_bool(row.get("converged")),
                "mae": number(row.get("mae")),
            }
            is_reference = (
                index == reference.run
                and str(row["device"]) == reference.device
                and str(row["mode"]) == reference.mode
            )
            ref = _match(ref_rows, row)
            if is_reference:
                line.update(ratio=1.0, verdict="reference")
            elif ref is not None and timing_metric(ref) == metric:
                line.update(_against(run, row, ref_run, ref, metric))
            lines.append(line)
    table = pd.DataFrame(lines, columns=["label", *_LINE_COLUMNS])
    if table.empty:
        return table
    order = {w: i for i, w in enumerate(dict.fromkeys(table["workload"]))}
    table = table.assign(_w=table["workload"].map(order), _b=table["batch_size"].map(number))
    table = table.sort_values(["_w", "_b", "output_activation", "run", "device", "mode"], kind="stable")
    table = table.drop(columns=["_w", "_b"]).reset_index(drop=True)
    for column in ("batch_size", "threads"):  # whole numbers, also where a CSV made them floats
        table[column] = [
            int(v) if not math.isnan(number(v)) and number(v).is_integer() else v for v in table[column]
        ]
    table["label"] = _labels(table)
    return table


_LINE_COLUMNS = (
    "run",
    *KEY_COLUMNS,
    "metric",
    "median",
    "n",
    "ratio",
    "ci_low",
    "ci_high",
    "p_value",
    "verdict",
    "converged",
    "mae",
)


def _against(run: LoadedRun, row: pd.Series, ref_run: LoadedRun, ref: pd.Series, metric: str) -> dict:
    current, baseline = raw_samples(run, row, metric), raw_samples(ref_run, ref, metric)
    if current and baseline:
        result = compare_samples(current, baseline)
    else:
        result = compare_values(number(row[metric]), number(ref[metric]))
    verdict = result.verdict if result.tested else "not tested: too few raw samples"
    return {
        "ratio": result.ratio,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "p_value": result.p_two_sided,
        "verdict": verdict,
    }


def not_compared(runs: Sequence[LoadedRun]) -> pd.DataFrame:
    """Rows that were skipped or failed, or are not timed, with their reason (listed, not compared)."""
    labels = run_labels(runs)
    lines = []
    for index, run in enumerate(runs):
        for _, row in run.frame.iterrows():
            status = str(row.get("status", "ok"))
            if status == "ok" and timing_metric(row):
                continue
            reason = str(row.get("reason") or "") if status != "ok" else "no step or latency time"
            lines.append(
                {"run": labels[index], "config": config_key(row), "status": status, "reason": reason}
            )
    return pd.DataFrame(lines, columns=["run", "config", "status", "reason"])


def env_differences(
    runs: Sequence[LoadedRun], fields: tuple[str, ...] = SHOWN_WHEN_DIFFERENT
) -> pd.DataFrame:
    """field x run for the environment fields whose values differ between the runs."""
    labels = run_labels(runs)
    envs = [run.env for run in runs]
    rows = [
        {"field": f, **{labels[i]: key_text(env.get(f, "")) for i, env in enumerate(envs)}}
        for f in differing_fields(envs, fields)
    ]
    return pd.DataFrame(rows, columns=["field", *labels])


# --- rendering ------------------------------------------------------------------------------


def _interval(low: float, high: float) -> str:
    return "" if math.isnan(low) else f"{fmt(low)}-{fmt(high)}"


def render_markdown(runs: Sequence[LoadedRun], table: pd.DataFrame, reference: Reference) -> str:
    labels = run_labels(runs)
    run_lines = pd.DataFrame(
        [
            {
                "run": labels[i],
                "source": run.source,
                "host": run.env.get("host", ""),
                "cpu": run.env.get("cpu_model", ""),
                "gpu": run.env.get("gpu_name", ""),
                "torch": run.env.get("torch_version", ""),
                "commit": run.env.get("git_commit", ""),
                "time (UTC)": run.env.get("timestamp_utc", ""),
            }
            for i, run in enumerate(runs)
        ]
    )
    parts = [
        f"# Comparison of {len(runs)} run{'s' if len(runs) > 1 else ''}",
        "",
        markdown_table(run_lines, {c: c for c in run_lines.columns}),
        "",
        f"Reference: {reference.label(labels)}. Each line's ratio is its median time over the reference's "
        "median for the same workload, batch size and output activation (same thread count when the "
        "reference has it); above 1 is slower.",
        "",
        f"Method: {METHOD}. Verdict: faster or slower when the interval excludes 1 and the two-sided "
        "U test agrees; otherwise no significant difference.",
        "",
    ]
    diffs = env_differences(runs)
    if len(runs) > 1:
        if diffs.empty:
            parts += ["Environment: the runs agree on " + ", ".join(SHOWN_WHEN_DIFFERENT) + ".", ""]
        else:
            parts += [
                "Environment fields that differ between the runs:",
                "",
                markdown_table(diffs, {c: c for c in diffs.columns}),
                "",
            ]
    if table.empty:
        parts += ["No timed configuration to compare.", ""]
    else:
        shown = table.assign(
            interval=[_interval(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"])]
        )
        shown["mae"] = [fmt(v) if v >= 0.1 else (f"{v:.4f}" if v == v else "") for v in shown["mae"]]
        parts += [markdown_table(shown, TABLE_COLUMNS), ""]
    skipped = not_compared(runs)
    if not skipped.empty:
        parts += ["Not compared (skipped, failed or untimed rows):", ""]
        parts += [
            f"- {r.run} {r.config}: {r.status}{' - ' + r.reason if r.reason else ''}"
            for r in skipped.itertuples()
        ]
        parts.append("")
    return "\n".join(parts)


# --- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", metavar="RUN", help="a results folder, its results.csv, or a pytest-benchmark JSON"
    )
    parser.add_argument(
        "--reference",
        default=None,
        metavar="RUN:DEVICE:MODE",
        help="the configuration ratios are taken against, RUN being 1-based or a path given (default: 1:cpu:eager)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for compare.md and compare.csv (default: results/compare-<UTC time>)",
    )
    parser.add_argument("--no-figures", action="store_true", help="write no PNG figure")


def _write(out: Path, markdown: str, table: pd.DataFrame) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(markdown)
        table.to_csv(out / "compare.csv", index=False)
    except OSError as err:
        raise UsageError(f"cannot write to {out}: {err.strerror or err}") from None


def _figure(table: pd.DataFrame, out: Path, runs: Sequence[LoadedRun]) -> str:
    """Draw compare_ratios.png through bench.render.figures; returns a line saying what happened."""
    subtitle = "; ".join(
        f"{label}: {run.env.get('host', '?')}, torch {run.env.get('torch_version', '?')}"
        for label, run in zip(run_labels(runs), runs)
    )
    figures = write_compare_figures(table, out, subtitle)
    if figures.skipped:
        return f"figure skipped: {figures.skipped}"
    return "figure: " + ", ".join(str(p) for p in figures.paths.values())


def main(args: argparse.Namespace) -> int:
    runs = [load_run(path) for path in args.runs]
    names = [(path, Path(path).name, run.name) for path, run in zip(args.runs, runs)]
    reference = (
        parse_reference(args.reference, names) if args.reference is not None else default_reference(runs)
    )
    if _reference_rows(runs[reference.run], reference).empty:
        raise UsageError(
            f"reference {reference.label(run_labels(runs))}: no timed ok row with device {reference.device!r} "
            f"and mode {reference.mode!r} in {runs[reference.run].source}"
        )
    table = comparison_table(runs, reference)
    markdown = render_markdown(runs, table, reference)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("results") / f"compare-{stamp}"
    _write(out, markdown, table)
    print(markdown)
    print(f"wrote {out / 'compare.md'} and {out / 'compare.csv'}")
    if not args.no_figures and not table.empty:
        print(_figure(table, out, runs))
    return 0
