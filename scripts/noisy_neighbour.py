"""A reproducible noisy neighbour: worker processes that load the CPU in seeded bursts.

Shared CI runners are loaded by other jobs in bursts that last from a fraction of a second to
minutes. To measure how a gate behaves there, the same load must come back run after run: each of
--workers processes alternates busy periods (a tight loop of Python arithmetic on one core) and idle
ones, with lengths drawn from exponential distributions by its own random.Random(seed + worker).
The mean busy period is --burst-s; the mean idle period is chosen so that a worker is busy a
fraction --duty of the time. It stops by itself after --seconds, on SIGTERM or Ctrl-C, and when its
parent dies.

    python scripts/noisy_neighbour.py --workers 2 --duty 0.5 --burst-s 2 --seconds 600 --seed 1
    python scripts/noisy_neighbour.py --seconds 60 & python -m bench ab HEAD~1; kill %1

Why not stress-ng (a Debian package here): its bursts are not drawn from a seed one can replay, it
needs a package install (root) where this needs only Python, and the same script runs on a
developer's laptop and a CI runner alike.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import time


def _spin_until(deadline: float) -> None:
    x = 0
    while time.monotonic() < deadline:
        for i in range(10_000):  # check the clock every ~ms, not every iteration
            x = (x * 31 + i) % 1_000_003


def worker(index: int, seed: int, duty: float, burst_s: float, stop_at: float, parent: int) -> None:
    """Alternate busy and idle periods until `stop_at` (time.monotonic) or until the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its workers; Ctrl-C is its to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    rng = random.Random(seed * 1_000 + index)
    idle_mean = burst_s * (1 - duty) / duty if duty < 1 else 0.0
    busy = rng.random() < duty  # start in a busy or an idle period with the long-run odds
    while time.monotonic() < stop_at and os.getppid() == parent:
        mean = burst_s if busy else idle_mean
        end = min(stop_at, time.monotonic() + (rng.expovariate(1 / mean) if mean > 0 else 0.0))
        while time.monotonic() < end and os.getppid() == parent:
            if busy:
                _spin_until(min(end, time.monotonic() + 0.25))
            else:
                time.sleep(min(0.25, max(0.0, end - time.monotonic())))
        busy = not busy


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: one per CPU)"
    )
    parser.add_argument(
        "--duty", type=_fraction, default=0.5, help="fraction of time each worker is busy (default 0.5)"
    )
    parser.add_argument(
        "--burst-s", type=_positive, default=2.0, help="mean busy period, seconds (default 2)"
    )
    parser.add_argument("--seconds", type=_positive, default=600.0, help="stop after this long (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="the bursts' seed: the same seed, the same load")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    stop_at = time.monotonic() + args.seconds
    context = multiprocessing.get_context("fork")
    procs = [
        context.Process(
            target=worker, args=(i, args.seed, args.duty, args.burst_s, stop_at, os.getpid()), daemon=True
        )
        for i in range(args.workers)
    ]

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    for proc in procs:
        proc.start()
    print(
        f"noisy_neighbour: {args.workers} workers, duty {args.duty}, mean burst {args.burst_s} s, "
        f"seed {args.seed}, for {args.seconds:g} s (pid {os.getpid()})",
        file=sys.stderr,
        flush=True,
    )
    try:
        for proc in procs:
            proc.join(max(0.0, stop_at - time.monotonic()) + 5)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
