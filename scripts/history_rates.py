"""Measure the history's change-point detector and the speed of `history trend` (issue 13's goals).

Series are built from REAL raw samples: every training configuration with at least 20 raw step_ms
samples in the committed runs (results/reference/*/run.json, results/baselines/*/*/run.json) is a
pool; a synthetic run draws as many samples as the pool holds, with replacement, times the injected
factor, and its median is one point of the series (its standard error comes from its samples, as
at ingest). Each trial picks a pool at random. Measured, over --trials trials each:

  - false alarms: null series of 50 runs; share with any change reported (either direction) on the
    whole series, and ("online") on any of its prefixes of 10..50 runs, as if `trend` ran after each run
  - steps: 45 runs, then a 10% (or 5%) slowdown; share where a slower change within 2 runs of the
    step is reported once k = 1..5 runs after it exist
  - drift: 1% per commit over 15 commits, (a) followed by 15 flat runs, (b) ending at the latest run;
    share with a slower change (step or drift) inside the drift's commits (2 runs slack)
Rates are given for all pools and for the pools the runner did not flag noisy (IQR > 10% of the
median), and again with a run-to-run jitter (--jitter, lognormal) that resampling alone lacks.

Then the time of `history trend` over --runs stored runs (2 machines, 4 configurations each, 29 raw
samples per record, a few injected changes) in a temporary SQLite file: in-process (query,
detection, intervals, text) and as a whole `python -m bench history trend` process (start-up included).

    .venv/bin/python scripts/history_rates.py                     # about 70 s on 2 busy cores
    .venv/bin/python scripts/history_rates.py --trials 50 --runs 2000
    .venv/bin/python scripts/history_rates.py --trials 0 --pool-trials 0      # the trend timing alone
"""

from __future__ import annotations

import argparse
import glob
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.history.changepoints import METHOD, detect  # noqa: E402
from bench.history.db import open_history  # noqa: E402
from bench.history.ingest import median_rel_se  # noqa: E402
from bench.history.trend import render_text, trends  # noqa: E402
from bench.store.load import load_run  # noqa: E402
from tests.history_demo import CPU_BOX, GPU_BOX, config, synthetic_run  # noqa: E402

BEFORE = 45  # runs before a step
STEP_SLACK = 2  # a change reported within this many runs of the true one counts
MIN_POOL = 20  # raw samples a configuration needs to be a pool
NULL_RUNS = 50
ONLINE_FROM = 10  # the online false-alarm scan checks prefixes of this many runs and more


@dataclass(frozen=True)
class Pool:
    name: str
    samples: np.ndarray
    noisy: bool  # the runner flagged the row noisy


def pools() -> list[Pool]:
    """Every training configuration with raw step_ms samples in the committed runs."""
    paths = sorted(glob.glob(str(REPO / "results/reference/*/run.json")))
    paths += sorted(glob.glob(str(REPO / "results/baselines/*/*/run.json")))
    out = []
    for path in paths:
        run = load_run(path)
        for record in run.records:
            values = record.raw("step_ms")
            if len(values) >= MIN_POOL:
                name = f"{Path(path).parent.name}:{record.key}"
                out.append(Pool(name, np.asarray(values, dtype=float), "noisy" in record.flags))
    if not out:
        raise SystemExit("no committed run has raw step_ms samples to resample")
    return out


def make_series(pool: Pool, factors: np.ndarray, rng: np.random.Generator, jitter: float):
    """Run medians and their relative standard errors for runs with the given speed factors."""
    n = len(pool.samples)
    medians, ses = [], []
    for factor in factors:
        level = factor * (float(np.exp(rng.normal(0.0, jitter))) if jitter else 1.0)
        run = pool.samples[rng.integers(0, n, n)] * level
        medians.append(float(np.median(run)))
        ses.append(median_rel_se(run))
    return np.asarray(medians), ses


def _found_step(changes, at: int) -> bool:
    return any(c.slower and c.first - STEP_SLACK <= at <= c.last + STEP_SLACK for c in changes)


def _found_drift(changes, start: int, stop: int) -> bool:
    return any(c.slower and c.last >= start - STEP_SLACK and c.first <= stop + STEP_SLACK for c in changes)


def measure(chosen: list[Pool], trials: int, seed: int, jitter: float) -> dict[str, float]:
    """The rates over `trials` series per scenario, pools drawn from `chosen`."""
    rng = np.random.default_rng(seed)
    pick = lambda: chosen[rng.integers(len(chosen))]  # noqa: E731
    counts: dict[str, int] = {}

    def hit(name: str, yes: bool) -> None:
        counts[name] = counts.get(name, 0) + int(yes)

    for _ in range(trials):
        m, se = make_series(pick(), np.ones(NULL_RUNS), rng, jitter)
        hit("null: alarm on the 50 runs", bool(detect(m, se)))
        hit(
            "null: alarm on any prefix (online)",
            any(detect(m[:k], se[:k]) for k in range(ONLINE_FROM, NULL_RUNS + 1)),
        )
    for step in (0.10, 0.05):
        for _ in range(trials):
            m, se = make_series(pick(), np.r_[np.ones(BEFORE), np.full(5, 1 + step)], rng, jitter)
            for k in range(1, 6):
                hit(
                    f"{step:.0%} step: found {k} run(s) after",
                    _found_step(detect(m[: BEFORE + k], se[: BEFORE + k]), BEFORE),
                )
    drift = 1.01 ** np.arange(1, 16)
    for _ in range(trials):
        m, se = make_series(pick(), np.r_[np.ones(20), drift, np.full(15, drift[-1])], rng, jitter)
        hit("drift 1%/commit x15, then 15 flat runs", _found_drift(detect(m, se), 20, 34))
        m, se = make_series(pick(), np.r_[np.ones(35), drift], rng, jitter)
        hit("drift 1%/commit x15, ending at the latest run", _found_drift(detect(m, se), 35, 49))
    return {name: count / trials for name, count in counts.items()}


def rates_table(all_pools: list[Pool], trials: int, seed: int, jitter: float) -> str:
    quiet = [p for p in all_pools if not p.noisy]
    columns = [
        (f"all {len(all_pools)} configurations", all_pools, 0.0),
        (f"{len(quiet)} not flagged noisy", quiet, 0.0),
        (f"all, + {jitter:.0%} run jitter", all_pools, jitter),
        (f"not noisy, + {jitter:.0%} run jitter", quiet, jitter),
    ]
    results = [measure(chosen, trials, seed, j) for _, chosen, j in columns]
    lines = [
        f"| scenario ({trials} trials each) | " + " | ".join(name for name, _, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for scenario in results[0]:
        lines.append(f"| {scenario} | " + " | ".join(f"{r[scenario]:.1%}" for r in results) + " |")
    return "\n".join(lines)


def per_pool_table(all_pools: list[Pool], trials: int, seed: int) -> str:
    """Per configuration: its run-median noise and how often a 10% step is found 5 runs after it."""
    lines = [
        f"| configuration ({trials} trials each) | noisy flag | median std. error | 10% step found 5 runs after |",
        "|---|---|---:|---:|",
    ]
    for pool in all_pools:
        rng = np.random.default_rng(seed)
        found = 0
        for _ in range(trials):
            m, se = make_series(pool, np.r_[np.ones(BEFORE), np.full(5, 1.1)], rng, 0.0)
            found += _found_step(detect(m, se), BEFORE)
        noise = float(np.median([s for s in se if s is not None]))
        lines.append(
            f"| {pool.name} | {'noisy' if pool.noisy else ''} | {noise:.1%} | {found / trials:.0%} |"
        )
    return "\n".join(lines)


# --- trend over many stored runs -------------------------------------------------------------------


def _fill(db: Path, runs: int, all_pools: list[Pool], seed: int) -> None:
    """`runs` runs alternating between a CPU and a GPU machine, 4 configurations each (3 training, 1
    inference), raw samples resampled from real pools, a 10% step and a 15% drift injected in two
    series of each machine."""
    rng = np.random.default_rng(seed)
    machines = {
        CPU_BOX: [
            "train/cpu/eager/32/2/relu",
            "train/cpu/compile/32/2/relu",
            "train/cpu/numpy-reference/32/2/relu",
        ],
        GPU_BOX: [
            "train/cuda/eager/32/16/relu",
            "train/cuda/compile/32/16/relu",
            "train/cuda/cudagraph/32/16/relu",
        ],
    }
    quiet = [p for p in all_pools if not p.noisy]
    configs = {
        m: [config(k) for k in keys + [keys[0].replace("train", "inference")]] for m, keys in machines.items()
    }
    pools_by_config = {c: quiet[j % len(quiet)].samples for cs in configs.values() for j, c in enumerate(cs)}
    batch = []
    with open_history(db) as history:
        for i in range(runs):
            n, machine = i // 2, (CPU_BOX, GPU_BOX)[i % 2]  # this machine's run number, the machine
            cs = configs[machine]
            factors = {c: 1.0 for c in cs}
            factors[cs[0]] = 1.10 if n >= runs // 4 else 1.0  # a step
            factors[cs[1]] = 1.01 ** min(15, max(0, n - runs // 3))  # a drift
            batch.append(synthetic_run(i, machine, factors, rng, pools=pools_by_config))
            if len(batch) == 500:
                history.add_runs(batch)
                batch = []
        if batch:
            history.add_runs(batch)


def trend_timing(runs: int, all_pools: list[Pool], seed: int, repeats: int = 3) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "history.db"
        began = time.perf_counter()
        _fill(db, runs, all_pools, seed)
        fill_s = time.perf_counter() - began
        inside, whole, changes = [], [], 0
        for _ in range(repeats):
            began = time.perf_counter()
            with open_history(db, create=False) as history:
                series = trends(history)
                text = render_text(series, history.where, history.count_runs())
            inside.append(time.perf_counter() - began)
            changes = sum(len(s.changes) for s in series)
            began = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "bench", "history", "trend", "--db", str(db)],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            whole.append(time.perf_counter() - began)
        assert text
        return (
            f"| `history trend` over {runs:,} stored runs ({runs * 4:,} records, {changes} changes found) | "
            f"{statistics.median(inside):.2f} s | {statistics.median(whole):.2f} s |\n"
            f"(median of {repeats}; filling the database took {fill_s:.0f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="series per scenario (0: skip the rates)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--jitter", type=float, default=0.02, help="run-to-run lognormal sigma (default 0.02)"
    )
    parser.add_argument("--pool-trials", type=int, default=50, help="trials per configuration (0: skip)")
    parser.add_argument("--runs", type=int, default=10_000, help="stored runs for the trend timing (0: skip)")
    args = parser.parse_args()
    all_pools = pools()
    print(f"Detector: {METHOD}.")
    print(
        f"Pools: {len(all_pools)} configurations, {sum(p.noisy for p in all_pools)} flagged noisy by the runner:"
    )
    for p in all_pools:
        print(f"  {p.name} ({len(p.samples)} samples{', noisy' if p.noisy else ''})")
    if args.trials:
        print()
        print(rates_table(all_pools, args.trials, args.seed, args.jitter))
    if args.pool_trials:
        print()
        print(per_pool_table(all_pools, args.pool_trials, args.seed))
    if args.runs:
        print()
        print("| timing | in-process (query, detect, intervals, text) | whole process (start-up included) |")
        print("|---|---:|---:|")
        print(trend_timing(args.runs, all_pools, args.seed))


if __name__ == "__main__":
    main()
