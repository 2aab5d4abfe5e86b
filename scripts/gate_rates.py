"""Measure the gate's false-alarm and detection rates on real runs of this machine.

Each trial makes three quick eager CPU runs with `python -m bench run`: a baseline, a second run of
the same code (the A/A pair), and a run with SUMNET_BENCH_SLOWDOWN=0.25, which makes every timed
training step spin 25% longer (a real, known slowdown). The order of the three rotates from trial
to trial so a drift of the machine over time favours none of them. Then, in process, bench.gate
compares (baseline, same) and (baseline, slowed):

- false alarm: the A/A pair fails on any row (training step or inference latency);
- detection: the slowed pair fails on the training step row.

Beside the gate's own rule (median ratio above the limit AND the 95% bootstrap interval wholly
above it), the same pairs are scored with two other rules for comparison: the ratio above the limit
with a one-sided Mann-Whitney p < 0.05, and the bare median ratio (pytest-benchmark's
--benchmark-compare-fail=median:10%). Keep the machine otherwise idle while it runs: about
3 x 20 runs of 10-30 s each on a 2-core CPU.

    .venv/bin/python scripts/gate_rates.py --trials 20 --out results/gate-rates
    .venv/bin/python scripts/gate_rates.py --out results/gate-rates --reuse   # re-score kept runs

Writes gate_rates.md (the summary) and gate_rates.json (every pair's ratios) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.gate import gate  # noqa: E402
from bench.results import load_run  # noqa: E402
from bench.significance import ALPHA, RegressionCheck  # noqa: E402

KINDS = ("base", "same", "slow")
GATE_RULE = "gate (interval above limit)"
TRAIN_METRIC = "step_ms"


def _run(out: Path, slowdown: float | None, timeout_s: float) -> Path:
    """One quick eager CPU run into `out`; returns its run folder (`out/latest`)."""
    env = dict(os.environ)
    env.pop("SUMNET_BENCH_SLOWDOWN", None)
    if slowdown:
        env["SUMNET_BENCH_SLOWDOWN"] = str(slowdown)
    cmd = [sys.executable, "-m", "bench", "run", "--device", "cpu", "--mode", "eager", "--preset", "quick",
           "--no-figures", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"gate_rates: `{' '.join(cmd)}` exited {done.returncode}: {tail[0]}")
    return (out / "latest").resolve()


def _rules(limit: float) -> dict[str, object]:
    return {
        GATE_RULE: lambda r: r["ratio"] > limit and r["ci_low"] > limit,
        f"ratio + U test p < {ALPHA}": lambda r: r["ratio"] > limit and r["p_slower"] < ALPHA,
        "bare median ratio": lambda r: r["ratio"] > limit,
    }


def _score(base: Path, other: Path, check: RegressionCheck) -> list[dict]:
    result = gate(load_run(base), load_run(other), check, metrics=("step_ms", "latency_ms"))
    return result.speed.to_dict("records")


def _measure(trial_dir: Path, index: int, slowdown: float, reuse: bool, timeout_s: float) -> dict[str, Path]:
    paths = {}
    order = KINDS[index % 3 :] + KINDS[: index % 3]
    for kind in order:
        out = trial_dir / kind
        if reuse and (out / "latest").exists():
            paths[kind] = (out / "latest").resolve()
            continue
        started = time.perf_counter()
        paths[kind] = _run(out, slowdown if kind == "slow" else None, timeout_s)
        load = os.getloadavg()[0]
        print(
            f"  trial {index + 1} {kind}: {time.perf_counter() - started:.0f} s, load {load:.2f}", flush=True
        )
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="A/A and slowed pairs (default 20)")
    parser.add_argument(
        "--slowdown", type=float, default=0.25, help="SUMNET_BENCH_SLOWDOWN of the slowed run"
    )
    parser.add_argument("--max-slowdown", default="10%", help="the gate's threshold (default 10%%)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "gate-rates")
    parser.add_argument(
        "--reuse", action="store_true", help="score runs already under --out, measure the rest"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per run")
    args = parser.parse_args()
    check = RegressionCheck.parse(args.max_slowdown)
    rules = _rules(check.limit)
    trials = []
    started = time.perf_counter()
    for index in range(args.trials):
        paths = _measure(args.out / f"trial-{index + 1:02d}", index, args.slowdown, args.reuse, args.timeout)
        same, slow = _score(paths["base"], paths["same"], check), _score(paths["base"], paths["slow"], check)
        train_same = next(r for r in same if r["metric"] == TRAIN_METRIC)
        train_slow = next(r for r in slow if r["metric"] == TRAIN_METRIC)
        trial = {
            "trial": index + 1,
            "runs": {k: str(v) for k, v in paths.items()},
            "a_a": same,
            "slowed": slow,
            "false_alarm": {name: any(rule(r) for r in same) for name, rule in rules.items()},
            "detected": {name: bool(rule(train_slow)) for name, rule in rules.items()},
        }
        trials.append(trial)
        print(
            f"trial {index + 1}: A/A step ratio {train_same['ratio']:.3f} [{train_same['ci_low']:.3f}, "
            f"{train_same['ci_high']:.3f}], slowed {train_slow['ratio']:.3f} [{train_slow['ci_low']:.3f}, "
            f"{train_slow['ci_high']:.3f}]; gate: A/A {'FAIL' if trial['false_alarm'][GATE_RULE] else 'pass'}, "
            f"slowed {'caught' if trial['detected'][GATE_RULE] else 'MISSED'}",
            flush=True,
        )
    n = len(trials)
    lines = [
        f"# Gate rates on this machine: {n} trials of quick eager CPU runs",
        "",
        f"Threshold {args.max_slowdown}, slowed runs SUMNET_BENCH_SLOWDOWN={args.slowdown}; "
        f"{time.perf_counter() - started:.0f} s of measuring; load average after: {os.getloadavg()[0]:.2f}.",
        "",
        "| rule | A/A pairs passed | slowed pairs caught |",
        "|---|---|---|",
    ]
    for name in rules:
        passed = sum(not t["false_alarm"][name] for t in trials)
        caught = sum(t["detected"][name] for t in trials)
        lines.append(f"| {name} | {passed}/{n} | {caught}/{n} |")
    ratios = [next(r for r in t["a_a"] if r["metric"] == TRAIN_METRIC)["ratio"] for t in trials]
    slowed = [next(r for r in t["slowed"] if r["metric"] == TRAIN_METRIC)["ratio"] for t in trials]
    lines += [
        "",
        f"Training step median ratio, A/A: {min(ratios):.3f} to {max(ratios):.3f}; "
        f"slowed: {min(slowed):.3f} to {max(slowed):.3f}.",
        "",
    ]
    summary = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gate_rates.md").write_text(summary)
    (args.out / "gate_rates.json").write_text(json.dumps(trials, indent=1, default=str))
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
