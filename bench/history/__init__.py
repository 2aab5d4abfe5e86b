"""The results history: every run stored in one database (SQLite or PostgreSQL), a trend per machine
and configuration over commits with its change points, a gate against the recent history, and a
static dashboard.

    python -m bench history ingest results/reference/*/run.json
    python -m bench history trend
    python -m bench dashboard --out results/dashboard

This package module holds the constants, `--db` and `record_run`, importable without sqlalchemy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.analysis.significance import slowdown_argument
from bench.errors import UsageError, install_hint, missing_package
from sumnet.cli_args import positive_int

DEFAULT_DB = "results/history.db"
DB_ENV = "SUMNET_BENCH_HISTORY_DB"  # overrides DEFAULT_DB, e.g. with a team's postgresql+psycopg:// URL
DEFAULT_WINDOW = 10  # history gate: comparable runs pooled as the baseline


def add_db_argument(parser: argparse.ArgumentParser, default: str = DEFAULT_DB) -> None:
    """--db, for every command that reads or writes the history."""
    parser.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help=f"results history: a SQLite file or postgresql+psycopg://user@host/db URL (default ${DB_ENV}, else {default})",
    )


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """--current, --window and --max-slowdown: `bench gate` and `bench history gate` alike."""
    parser.add_argument("--current", required=True, help="the run under test (folder, CSV or JSON)")
    parser.add_argument(
        "--window",
        type=positive_int,
        default=DEFAULT_WINDOW,
        help=f"history runs pooled (default {DEFAULT_WINDOW})",
    )
    parser.add_argument(
        "--max-slowdown",
        type=slowdown_argument,
        default=None,
        metavar="PCT",
        help="largest tolerated slowdown, e.g. 10%% or median:10%% or p10:10%% (default 10%% for times, 1%% for instructions)",
    )


def record_run(run_dir: str | Path, db: str | Path | None = None):
    """Store a finished run folder in the history (ingest.record_run). UsageError when the history's
    packages are absent or it cannot be written: the caller reports it and keeps the run folder."""
    try:
        from bench.history.ingest import record_run as _record_run
    except ModuleNotFoundError as err:
        package = missing_package(err)
        if package is None:
            raise
        raise UsageError(f"the history {install_hint(package)}") from None
    return _record_run(run_dir, db)
