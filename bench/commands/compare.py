"""`python -m bench compare`: put runs side by side, from one machine or several, with intervals.

Every timed configuration of every run is one line: its median, the ratio to the reference
configuration (default: the first run's CPU eager row of the same workload, batch size and output
activation) with its 95% bootstrap interval and Mann-Whitney p-value, the verdict, convergence and
held-out MAE. The environment fields that differ between the runs are listed.

    python -m bench compare results/laptop-20250101T000000Z results/gpu-20250101T000000Z
    python -m bench compare RUN_A RUN_B --reference 2:cuda:eager --out results/cpu-vs-gpu

Writes compare.md, compare.csv (and compare_ratios.png) to --out; prints the markdown.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from bench.analysis.significance import compare_records
from bench.errors import UsageError
from bench.records import SHOWN_WHEN_DIFFERENT, ConfigKey, Record, differing_fields
from bench.render.comparison import compare_markdown
from bench.render.figures import write_compare_figures
from bench.store.load import load_run
from bench.store.run_folder import Run

REFERENCE_DEFAULT = ("cpu", "eager")


# --- the reference --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    run: int  # index into the runs
    device: str
    mode: str

    def label(self, labels: Sequence[str]) -> str:
        return f"{labels[self.run]} {self.device} {self.mode}"

    def holds(self, index: int, record: Record) -> bool:
        return (index, record.key.device, record.key.mode) == (self.run, self.device, self.mode)


def parse_reference(spec: str, names: Sequence[Sequence[str]]) -> Reference:
    """`RUN:device:mode`; RUN is a run's 1-based position or one of its names (`names[i]`: the path
    given, the folder name). The device may itself hold a colon (cuda:1)."""
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


def _timed(run: Run) -> list[Record]:
    """The run's ok records that have a time (step_ms or latency_ms)."""
    return [r for r in run.records if r.ok and r.timing_metric]


def _reference_records(runs: Sequence[Run], ref: Reference) -> list[Record]:
    return [r for r in _timed(runs[ref.run]) if ref.holds(ref.run, r)]


def default_reference(runs: Sequence[Run]) -> Reference:
    """The first run's CPU eager records, else the first run's first timed device and mode."""
    first = Reference(0, *REFERENCE_DEFAULT)
    timed = _timed(runs[0])
    if _reference_records(runs, first) or not timed:
        return first
    return Reference(0, timed[0].key.device, timed[0].key.mode)


# --- the table ------------------------------------------------------------------------------


def run_labels(runs: Sequence[Run]) -> list[str]:
    """R1, R2, ...: short names for the table; the runs table maps them to sources."""
    return [f"R{i + 1}" for i in range(len(runs))]


def _match(refs: Sequence[Record], record: Record) -> Record | None:
    """The reference record of the same workload, batch size and output activation (same threads first)."""
    same = [r for r in refs if _kin(r.key) == _kin(record.key)]
    return next((r for r in same if r.key.threads == record.key.threads), same[0] if same else None)


def _kin(key: ConfigKey) -> tuple:
    return key.workload, key.batch_size, key.output_activation


def _labels(table: pd.DataFrame) -> list[str]:
    """One unique, readable label per line: run, device, mode, plus what varies among the rest."""
    varying = [
        c
        for c in ("workload", "batch_size", "threads", "output_activation")
        if table[c].nunique(dropna=False) > 1
    ]
    prefix = {"batch_size": "b", "threads": "t"}
    return [
        " · ".join(
            [str(line[c]) for c in ("run", "device", "mode")]
            + [prefix.get(c, "") + ("" if line[c] is None else str(line[c])) for c in varying]
        )
        for line in table.to_dict("records")
    ]


def comparison_table(runs: Sequence[Run], reference: Reference | None = None) -> pd.DataFrame:
    """Every timed ok record of every run against the reference's matching record.

    Columns: label, run, workload, device, mode, batch_size, threads, output_activation, metric,
    median (the metric's unit, ms), n (raw samples), ratio (median / reference median; above 1 is
    slower), ci_low, ci_high (95% bootstrap interval of the ratio), p_value (two-sided Mann-Whitney U),
    verdict, converged (True/False/None), mae (held-out, sum units).
    """
    reference = reference or default_reference(runs)
    labels = run_labels(runs)
    refs = _reference_records(runs, reference)
    lines = []
    for index, run in enumerate(runs):
        for record in _timed(run):
            metric = str(record.timing_metric)
            line = {"run": labels[index], **asdict(record.key), "metric": metric}
            line.update(median=record.number(metric), n=len(record.raw(metric)), ratio=math.nan)
            line.update(ci_low=math.nan, ci_high=math.nan, p_value=math.nan, verdict="no reference row")
            line.update(converged=record.value("converged"), mae=record.number("mae"))
            ref = _match(refs, record)
            if reference.holds(index, record):
                line.update(ratio=1.0, verdict="reference")
            elif ref is not None and ref.timing_metric == metric:
                r = compare_records(record, ref, metric)
                line.update(ratio=r.ratio, ci_low=r.ci_low, ci_high=r.ci_high, p_value=r.p_two_sided)
                line["verdict"] = r.verdict if r.tested else "not tested: too few raw samples"
            lines.append(line)
    table = pd.DataFrame(lines)
    if table.empty:
        return table
    for column in ("batch_size", "threads"):  # whole numbers or None, never floats
        table[column] = pd.Series([line[column] for line in lines], dtype=object)
    order = {w: i for i, w in enumerate(dict.fromkeys(table["workload"]))}
    table = table.assign(_w=table["workload"].map(order), _b=pd.to_numeric(table["batch_size"]))
    table = table.sort_values(["_w", "_b", "output_activation", "run", "device", "mode"], kind="stable")
    table = table.drop(columns=["_w", "_b"]).reset_index(drop=True)
    table.insert(0, "label", _labels(table))
    return table


def not_compared(runs: Sequence[Run]) -> pd.DataFrame:
    """Records that were skipped or failed, or are not timed, with their reason (listed, not compared)."""
    lines = [
        (label, str(r.key), r.status, r.reason if not r.ok else "no step or latency time")
        for label, run in zip(run_labels(runs), runs)
        for r in run.records
        if not (r.ok and r.timing_metric)
    ]
    return pd.DataFrame(lines, columns=["run", "config", "status", "reason"])


def env_differences(runs: Sequence[Run], fields: tuple[str, ...] = SHOWN_WHEN_DIFFERENT) -> pd.DataFrame:
    """field x run for the environment fields whose values differ between the runs."""
    labels = run_labels(runs)
    rows = [
        {"field": f, **{labels[i]: str(run.env.get(f) or "") for i, run in enumerate(runs)}}
        for f in differing_fields([run.env for run in runs], fields)
    ]
    return pd.DataFrame(rows, columns=["field", *labels])


# --- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    runs = "a results folder, its results.csv, or a pytest-benchmark JSON"
    add("runs", nargs="+", metavar="RUN", help=runs)
    reference = "the configuration ratios are taken against, RUN being 1-based or a path given"
    add("--reference", metavar="RUN:DEVICE:MODE", help=f"{reference} (default: 1:cpu:eager)")
    out = "folder for compare.md and compare.csv (default: results/compare-<UTC time>)"
    add("--out", type=Path, help=out)
    add("--no-figures", action="store_true", help="write no PNG figure")


def _figure(table: pd.DataFrame, out: Path, runs: Sequence[Run]) -> str:
    """Draw compare_ratios.png through bench.render.figures; returns a line saying what happened."""
    subtitle = "; ".join(
        f"{label}: {run.env.get('host', '?')}, torch {run.env.get('torch_version', '?')}"
        for label, run in zip(run_labels(runs), runs)
    )
    figures = write_compare_figures(table, out, subtitle)
    if figures.skipped:
        return f"figure skipped: {figures.skipped}"
    return f"figure: {', '.join(map(str, figures.paths.values()))}"


def main(args: argparse.Namespace) -> int:
    runs = [load_run(path) for path in args.runs]
    names = [(path, Path(path).name, run.name) for path, run in zip(args.runs, runs)]
    reference = default_reference(runs) if args.reference is None else parse_reference(args.reference, names)
    if not _reference_records(runs, reference):
        raise UsageError(
            f"reference {reference.label(run_labels(runs))}: no timed ok row with device {reference.device!r} "
            f"and mode {reference.mode!r} in {runs[reference.run].source}"
        )
    table = comparison_table(runs, reference)
    labels = run_labels(runs)
    markdown = compare_markdown(
        runs, labels, reference.label(labels), table, env_differences(runs), not_compared(runs)
    )
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("results") / f"compare-{stamp}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(markdown)
        table.to_csv(out / "compare.csv", index=False)
    except OSError as err:
        raise UsageError(f"cannot write to {out}: {err.strerror or err}") from None
    print(markdown)
    print(f"wrote {out / 'compare.md'} and {out / 'compare.csv'}")
    if not args.no_figures and not table.empty:
        print(_figure(table, out, runs))
    return 0
