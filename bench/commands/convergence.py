"""Convergence study: how often, how fast, and whether every device and mode learns the same.

Trains many seeds per device, mode and output activation (one batched ensemble unless --no-ensemble)
and reports the convergence rate, steps and seconds to target, each never-converged seed with why,
and a paired test on step counts between configurations.

    python -m bench convergence                        # CPU, eager, relu and none, 32 seeds x 3000 steps
    python -m bench convergence --seeds 8 --steps 500 --device cpu,cuda --mode eager,compile
    nox -s convergence -- --seeds 64
"""

from __future__ import annotations

import argparse
import sys

import torch

from bench.analysis.convergence_stats import comparisons, study_key, summarize
from bench.commands.session import INTERRUPTED, Session, add_history_arguments, history_target, open_session
from bench.errors import UsageError, describe
from bench.measure.convergence_study import (
    DEFAULT_EVAL_EVERY,
    DEFAULT_SEEDS,
    ConfigResult,
    StudyConfig,
    StudySettings,
    study_config,
)
from bench.modes.selection import parse_devices, parse_modes, require_runnable, skip_reason
from bench.records import Record, parse_list
from bench.render.convergence_plots import write_figures
from bench.render.convergence_report import render_report, summary_table
from bench.store.run_folder import atomic_write
from sumnet.cli_args import bounded_positive_int, positive_float
from sumnet.data import TestSet, make_test_set
from sumnet.evaluate import DEFAULT_TARGET_MAE
from sumnet.model import OUTPUT_ACTIVATIONS
from sumnet.train import MAX_STEPS

MAX_SEEDS = 100_000  # far beyond any useful study; keeps a typo from allocating an absurd ensemble


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add, steps = parser.add_argument, bounded_positive_int(MAX_STEPS)
    add("--seeds", type=bounded_positive_int(MAX_SEEDS), default=DEFAULT_SEEDS, help="0..N-1 (default 32)")
    add("--device", default="cpu", help="comma-separated devices, or auto (default cpu)")
    add("--mode", default="eager", help="comma-separated: eager, compile (default eager)")
    add("--output-activation", default="relu,none", help="relu (the article), none, or both")
    add("--steps", type=steps, default=3000, help=f"steps per seed, 1 to {MAX_STEPS:,} (default 3000)")
    add("--target-mae", type=positive_float, default=DEFAULT_TARGET_MAE, help="converged below this")
    add("--eval-every", type=steps, default=DEFAULT_EVAL_EVERY, help="steps between evaluations")
    add("--no-ensemble", action="store_true", help="train the seeds one after another")
    add("--out", default="results", help="parent folder of the run folder (default results)")
    add("--no-figures", action="store_true", help="skip the matplotlib figures")
    add_history_arguments(parser)


def parse_activations(text: str) -> list[str]:
    items = parse_list(text)
    unknown = [t for t in items if t not in OUTPUT_ACTIVATIONS] or ([] if items else [""])
    if unknown:
        raise UsageError(f"unknown output activation {unknown[0]!r}: choose relu, none or relu,none")
    return items


def main(args: argparse.Namespace) -> int:
    devices, modes = parse_devices(args.device), parse_modes(args.mode)
    require_runnable(devices, modes, args.device, args.mode)
    activations = parse_activations(args.output_activation)
    configs = [StudyConfig(d, m, a) for d in devices for m in modes for a in activations]  # refuses a mode
    settings = StudySettings(
        seeds=tuple(range(args.seeds)),
        steps=args.steps,
        target_mae=args.target_mae,
        eval_every=args.eval_every,
        ensemble=not args.no_ensemble,
    )
    # its own `latest`, so `results/latest` stays the last `bench run` (the gate's example)
    session = open_session(
        args.out,
        {**vars(args), "seeds": list(settings.seeds)},
        latest="latest-convergence",
        history=history_target(args.out, args.db, args.no_history),
    )
    test_set = make_test_set()
    results: list[ConfigResult] = []
    labelled: dict[str, dict[str, object]] = {}

    def measure(config: StudyConfig) -> None:
        done = _study_one(config, settings, test_set, session)
        if done is not None:
            results.append(done)
            labelled[done.config.label] = session.writer.records[-1].samples

    session.loop(configs, measure)
    compared = comparisons(results, settings.target_mae)

    def render() -> str:
        figures, skipped = (
            ({}, "--no-figures given") if args.no_figures else write_figures(session.run_dir, labelled)
        )
        if skipped and not args.no_figures:
            print(f"figures skipped: {skipped}")
        report = render_report(session.writer, results, settings, compared, figures, skipped)
        atomic_write(session.run_dir / "report.md", report)
        lines = [summary_table(session.writer), *(f"{c.b} vs {c.a}: {c.conclusion}" for c in compared)]
        return "\n".join(lines)

    return session.finish(render)


def _study_one(
    config: StudyConfig, settings: StudySettings, test_set: TestSet, session: Session
) -> ConfigResult | None:
    """Train and record one configuration; a skipped or failed one becomes a record with its reason."""
    key = study_key(config, settings)

    def unmeasured(status: str, reason: str) -> None:
        session.writer.add(
            Record(key, status=status, reason=reason, seed=settings.seeds[0], steps=settings.steps)
        )

    reason = skip_reason(config.device, config.mode)
    if reason is not None:
        print(f"{config.label}: skipped: {reason}", file=sys.stderr)
        return unmeasured("skipped", reason)
    how = "one ensemble" if settings.ensemble else "one after another"
    print(f"{config.label}: {len(settings.seeds)} seeds x {settings.steps} steps, {how} ...", file=sys.stderr)
    if config.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(config.device)
    try:
        result = study_config(config, settings, test_set)
    except KeyboardInterrupt:
        unmeasured("failed", INTERRUPTED)
        raise
    except Exception as err:  # compile errors, CUDA out-of-memory: recorded, the study goes on
        print(f"{config.label}: failed: {describe(err)}", file=sys.stderr)
        return unmeasured("failed", describe(err))
    record = summarize(result, settings)
    session.writer.add(record)
    print(f"{config.label}: {record.measured['verdict']}; training {result.run_s:.1f} s", file=sys.stderr)
    return result
