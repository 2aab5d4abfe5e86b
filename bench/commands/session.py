"""The run skeleton `bench run` and `bench convergence` share: environment, run folder, writer,
interrupts, and a finish that a second Ctrl-C or SIGTERM cannot cut short.

Ctrl-C or SIGTERM (a CI timeout; nox sends SIGTERM shortly after SIGINT) stops the loop over
configurations: the one cut short gets a failed row saying so, the measured ones are kept, and the
report is still written, with the signals ignored while it is, and the command exits 130. (The
handlers themselves are installed by the entry point, sumnet.cli_args.run_entry.)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import EXIT_INTERRUPTED, UsageError
from bench.history import DB_ENV, add_db_argument, record_run
from bench.measure import environment
from bench.store.run_folder import RunWriter, make_run_dir

INTERRUPTED = "interrupted (Ctrl-C or SIGTERM) before it finished"  # a failed row's reason


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM inside the block (writing the report), then restore the handlers."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class Session:
    """One run folder being filled: its writer, the wall clock, whether it was interrupted."""

    writer: RunWriter
    history: str | None = None  # where the finished run is recorded (a SQLite path or URL); None: not
    started: float = field(default_factory=time.perf_counter)
    interrupted: bool = False

    @property
    def run_dir(self) -> Path:
        return self.writer.run_dir

    def loop(self, items: list, measure: Callable[[object], None]) -> None:
        """`measure(item)` for each item until all are done or an interrupt arrives."""
        try:
            for item in items:
                measure(item)
        except KeyboardInterrupt:
            self.interrupted = True
        self.writer.settings["interrupted"] = self.interrupted

    def finish(self, render: Callable[[], str]) -> int:
        """Write the report (`render()` returns its summary to print) shielded from a second
        interrupt, print where the results are; the exit code: 130 if interrupted, else 0."""
        with signals_ignored():  # the report, the summary, where it is, the history: all or nothing cut
            self.writer.settings["wall_s"] = time.perf_counter() - self.started
            summary = render()
            self.writer.flush()
            print(summary)
            prefix = "INTERRUPTED: partial " if self.interrupted else ""
            print(f"\n{prefix}results in {self.run_dir}/ (report.md, results.csv, run.json)")
            if self.history is not None:
                self._record_history()
        return EXIT_INTERRUPTED if self.interrupted else 0

    def _record_history(self) -> None:
        """Store the finished run in the history; a history that cannot be written is a warning,
        never a lost run (the run folder is complete already)."""
        try:
            entry = record_run(self.run_dir, self.history)
        except UsageError as err:
            print(f"note: the history was not updated: {err}", file=sys.stderr)
            return
        print(f"history: {'added' if entry.added else 'already held'} run {entry.run_id} in {self.history}")


def add_history_arguments(parser) -> None:
    """--db and --no-history, for every command that writes a run folder."""
    add_db_argument(parser, default="OUT/history.db")
    parser.add_argument("--no-history", action="store_true", help="do not record this run in the history")


def history_target(out: str | Path, db: str | None, no_history: bool) -> str | None:
    """Where a finished run is recorded: --db, else $SUMNET_BENCH_HISTORY_DB, else OUT/history.db."""
    if no_history:
        return None
    if db is not None:
        return db
    return os.environ.get(DB_ENV) or str(Path(out) / "history.db")


def open_session(
    out: str | Path, settings: dict[str, object], latest: str = "latest", history: str | None = None
) -> Session:
    """Collect the environment, make the run folder (pointing `out/<latest>` at it) and its writer."""
    env = environment.collect()
    run_dir, latest_note = make_run_dir(out, str(env["host"]), latest)
    if latest_note:
        print(f"note: {latest_note}", file=sys.stderr)
    return Session(RunWriter(run_dir, env, dict(settings)), history)
