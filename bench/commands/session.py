"""The run skeleton `bench run` and `bench convergence` share: environment, run folder, writer,
interrupts, and a finish that a second Ctrl-C or SIGTERM cannot cut short.

Ctrl-C or SIGTERM (a CI timeout; nox sends SIGTERM shortly after SIGINT) stops the loop over
configurations: the one cut short gets a failed row saying so, the measured ones are kept, and the
report is still written, with the signals ignored while it is, and the command exits 130.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import environment
from bench.store.run_folder import RunWriter, make_run_dir

INTERRUPTED = "interrupted (Ctrl-C or SIGTERM) before it finished"
EXIT_INTERRUPTED = 130


def interrupt_on_sigterm() -> None:
    """Treat SIGTERM (a CI timeout, `timeout`) like Ctrl-C, so a command can keep and report its rows."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


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
        with signals_ignored():
            self.writer.settings["wall_s"] = time.perf_counter() - self.started
            summary = render()
            self.writer.flush()
        print(summary)
        prefix = "INTERRUPTED: partial " if self.interrupted else ""
        print(f"\n{prefix}results in {self.run_dir}/ (report.md, results.csv, run.json)")
        return EXIT_INTERRUPTED if self.interrupted else 0


def open_session(out: str | Path, settings: dict[str, object], latest: str = "latest") -> Session:
    """Collect the environment, make the run folder (pointing `out/<latest>` at it) and its writer."""
    env = environment.collect()
    run_dir, latest_note = make_run_dir(out, str(env["host"]), latest)
    if latest_note:
        print(f"note: {latest_note}", file=sys.stderr)
    return Session(RunWriter(run_dir, env, dict(settings)))
