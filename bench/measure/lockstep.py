"""Block lockstep: two `bench run` processes of `bench ab` take turns at every timed block.

On a shared machine the load changes within seconds, faster than one process runs, so two arms
measured one process after the other see different loads. `bench ab` therefore starts both arms of
a round together and lets only one of them time a block while the other waits parked: block k of
BASE and block k of HEAD are measured a few hundred milliseconds apart, in the order AB BA AB ...,
and their ratio cancels whatever load they shared. A process knows it is conducted from the
environment variable SUMNET_BENCH_LOCKSTEP="READY_FD,GO_FD" (two pipe ends it inherited): before
each timed block it writes `r` and waits for `g`, after it writes `d`. Without the variable, or
once the conductor has gone, every block runs at once, as in a plain `bench run`.

    python -m bench ab HEAD~1 --device cpu --mode eager --threads 1   # conducts its rounds in lockstep
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

LOCKSTEP_ENV = "SUMNET_BENCH_LOCKSTEP"
_channel: list[tuple[int, int] | None] = []  # [(ready_fd, go_fd) or None], read once from the environment


def _fds() -> tuple[int, int] | None:
    if not _channel:
        value = os.environ.get(LOCKSTEP_ENV, "")
        try:
            ready, go = (int(part) for part in value.split(","))
        except ValueError:  # unset or malformed: not conducted
            _channel.append(None)
        else:
            _channel.append((ready, go))
    return _channel[0]


def _let_go() -> None:
    """The conductor is gone (or never answered): run the remaining blocks freely."""
    _channel[:] = [None]


@contextmanager
def turn() -> Iterator[None]:
    """Wait for this process's turn before a timed block (at once when not conducted)."""
    fds = _fds()
    if fds is not None:
        try:
            os.write(fds[0], b"r")
            if os.read(fds[1], 1) != b"g":
                _let_go()
        except OSError:
            _let_go()
    try:
        yield
    finally:
        if fds is not None and _fds() is not None:
            try:
                os.write(fds[0], b"d")
            except OSError:
                _let_go()


class Conductor:
    """The `bench ab` side: gives the turn to processes that are parked, one block at a time.

    Make one per round with the number of processes; pass `child_fds(i)` to process i (pass_fds)
    and its environment entry `env(i)`, close the child ends after starting them (`started()`),
    then `start()` the conducting thread; `join()` after the processes exit."""

    def __init__(self, count: int):
        self._pipes = [(os.pipe(), os.pipe()) for _ in range(count)]  # (ready r/w, go r/w) per process
        self._thread = threading.Thread(target=self._conduct, daemon=True)
        self.turns = [0] * count  # blocks each process timed in lockstep

    def child_fds(self, index: int) -> tuple[int, int]:
        (_, ready_w), (go_r, _) = self._pipes[index]
        return ready_w, go_r

    def env(self, index: int) -> dict[str, str]:
        ready_w, go_r = self.child_fds(index)
        return {LOCKSTEP_ENV: f"{ready_w},{go_r}"}

    def started(self) -> None:
        """The processes hold their ends now: close ours, so a process that exits reads as EOF."""
        for index in range(len(self._pipes)):
            for fd in self.child_fds(index):
                os.close(fd)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _read(self, index: int) -> bytes:
        try:
            return os.read(self._pipes[index][0][0], 1)
        except OSError:
            return b""

    def _conduct(self) -> None:
        """Wait until every process is parked (or gone); then, in the order AB BA AB ..., let each
        parked process time one block and wait until it is parked again or gone."""
        parked = [self._read(i) == b"r" for i in range(len(self._pipes))]
        slot = 0
        while any(parked):
            order = range(len(parked)) if slot % 2 == 0 else reversed(range(len(parked)))
            for index in order:
                if not parked[index]:
                    continue
                try:
                    os.write(self._pipes[index][1][1], b"g")
                except OSError:
                    parked[index] = False
                    continue
                finished = self._read(index) == b"d"
                self.turns[index] += finished
                parked[index] = finished and self._read(index) == b"r"
            slot += 1
        for (ready_r, _), (_, go_w) in self._pipes:
            for fd in (ready_r, go_w):
                with suppress(OSError):
                    os.close(fd)
