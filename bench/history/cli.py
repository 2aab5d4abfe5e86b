"""`python -m bench history ingest|trend|gate`: the results history. Each action imports only what
it runs (no torch).

    python -m bench history ingest results/reference/*/run.json results/baselines/*/*
    python -m bench history trend --config 'train/cpu/*' --last 10
    python -m bench history gate --current results/latest --window 10 --max-slowdown 10%
"""

from __future__ import annotations

import argparse

from bench.history import add_db_argument, add_gate_arguments
from sumnet.cli_args import non_negative_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`history ingest|trend|gate`."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="{ingest,trend,gate}")
    ingest = sub.add_parser("ingest", help="add run folders, run.json or pytest-benchmark JSON files")
    ingest.add_argument(
        "runs", nargs="+", metavar="RUN", help="a run folder, results.csv, run.json or pytest-benchmark JSON"
    )
    trend = sub.add_parser("trend", help="run medians over commits and their change points")
    trend.add_argument(
        "--config",
        action="append",
        metavar="KEY",
        help="a configuration key or glob, e.g. train/cpu/eager/32/2/relu or 'train/cuda/*' (repeatable)",
    )
    trend.add_argument("--machine", default=None, help="a machine fingerprint (prefix) or part of its label")
    trend.add_argument(
        "--last", type=non_negative_int, default=10, help="runs listed per series (default 10)"
    )
    gate = sub.add_parser("gate", help="fail on a significant slowdown against the recent history")
    add_gate_arguments(gate)
    for action in (ingest, trend, gate):
        add_db_argument(action)


def main(args: argparse.Namespace) -> int:
    if args.action == "gate":
        from bench.commands.gate import gate_history  # the one gate, bench gate --history

        return gate_history(args.db, args.current, args.window, args.max_slowdown)
    from bench.history.db import open_history

    if args.action == "ingest":
        from bench.history.ingest import ingest

        with open_history(args.db, create=True) as history:
            for done in ingest(history, args.runs):
                state = "added" if done.added else "already stored"
                print(f"{state}: {done.source} (run {done.run_id}, {done.records} records)")
            print(f"{history.where}: {history.count_runs()} runs")
        return 0
    from bench.history.trend import render_text, trends

    with open_history(args.db, create=False) as history:
        series = trends(history, args.config, args.machine)
        print(render_text(series, history.where, history.count_runs(), last=args.last))
    return 0
