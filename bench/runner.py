"""`python -m bench run`: time the article's Net on each device and mode, check it learns, report.

    python -m bench run                          # default preset, every device present
    python -m bench run --device cpu --mode eager,compile --preset quick --out results

Writes results/<host>-<UTC timestamp>/ with results.csv, run.json, report.md (and figures), points
results/latest at it, and ends with the summary table. Rows are saved as they are measured.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from bench import environment
from bench.derived import derive
from bench.modes import build_trainer
from bench.report import render_run_report, summary_markdown
from bench.results import RunWriter, make_run_dir, new_row
from bench.selection import MODES, parse_devices, parse_modes, skip_reason
from bench.stats import Summary
from bench.workloads import InferencePlan, TrainMeasurement, TrainPlan, measure_inference, measure_training
from sumnet.cli_args import (
    UsageError,
    first_line,
    interrupt_on_sigterm,
    positive_float,
    positive_int,
    seed_int,
)
from sumnet.data import TestSet, make_test_set
from sumnet.model import OUTPUT_ACTIVATIONS, NetConfig
from sumnet.train import TrainConfig

INTERRUPTED = "interrupted (Ctrl-C or SIGTERM) before it finished"


@dataclass(frozen=True)
class Preset:
    train: TrainPlan
    inference: InferencePlan
    modes: tuple[str, ...]  # modes run when --mode is not given
    thread_sweep: bool = False  # CPU rows at 1 thread and at every core, unless --threads is given


PRESETS = {
    "quick": Preset(
        TrainPlan(steps=3000, repeats=1),
        InferencePlan(batch_sizes=(1, 32, 1024, 16384), blocks=7, block_seconds=0.01),
        ("eager", "cudagraph", "numpy-reference", "compile"),
    ),
    "default": Preset(TrainPlan(steps=3000, repeats=3), InferencePlan(), tuple(MODES), thread_sweep=True),
    "full": Preset(
        TrainPlan(steps=3000, repeats=10),
        InferencePlan(batch_sizes=(1, 8, 32, 256, 1024, 4096, 16384, 65536, 131072, 262144), blocks=30),
        tuple(MODES),
        thread_sweep=True,
    ),
}


@dataclass(frozen=True)
class RunOptions:
    devices: list[str]
    modes: list[str]
    preset: str
    train: TrainPlan
    inference: InferencePlan
    threads: list[int]
    seed: int
    batch_size: int
    output_activation: str
    out: Path
    figures: bool = True
    inference_enabled: bool = True
    extra: dict = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="comma list of cpu, cuda, cuda:N, mps, or auto (default)"
    )
    parser.add_argument(
        "--mode", default=None, help=f"comma list of {', '.join(MODES)}, or all (default: the preset's)"
    )
    parser.add_argument("--preset", default="default", help="quick, default or full")
    parser.add_argument("--out", default="results", help="parent folder for the run folder (default results)")
    parser.add_argument(
        "--threads", default=None, help="torch CPU threads, a comma list to sweep (default: torch's)"
    )
    parser.add_argument("--seed", type=seed_int, default=0, help="init and data seed (default 0)")
    parser.add_argument(
        "--steps", type=positive_int, default=None, help="training steps per run (preset: 3000)"
    )
    parser.add_argument("--repeats", type=positive_int, default=None, help="training runs per configuration")
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="training batch size (default 32)"
    )
    parser.add_argument(
        "--batch-sizes", default=None, help="inference sweep, comma list (default: the preset's)"
    )
    parser.add_argument(
        "--target-mae", type=positive_float, default=None, help="convergence target (default 0.01)"
    )
    parser.add_argument("--output-activation", choices=OUTPUT_ACTIVATIONS, default="relu")
    parser.add_argument("--no-inference", action="store_true", help="skip the inference sweep")
    parser.add_argument("--no-figures", action="store_true", help="write no PNG figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"{what} must be a comma list of positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"{what} must be a comma list of positive integers, got {text!r}")
    return values


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """Validate the flags into RunOptions; UsageError on anything bad."""
    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}: choose from {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    train = preset.train
    if args.steps is not None:
        train = replace(train, steps=args.steps)
    if args.repeats is not None:
        train = replace(train, repeats=args.repeats)
    if args.target_mae is not None:
        train = replace(train, target_mae=args.target_mae)
    inference = preset.inference
    if args.batch_sizes is not None:
        inference = replace(inference, batch_sizes=tuple(_int_list(args.batch_sizes, "--batch-sizes")))
    if args.threads is not None:
        threads = sorted(set(_int_list(args.threads, "--threads")))
    elif preset.thread_sweep:
        threads = sorted({1, os.cpu_count() or 1})
    else:
        threads = [torch.get_num_threads()]
    return RunOptions(
        devices=parse_devices(args.device),
        modes=parse_modes(args.mode) if args.mode is not None else list(preset.modes),
        preset=args.preset,
        train=train,
        inference=inference,
        threads=threads,
        seed=args.seed,
        batch_size=args.batch_size,
        output_activation=args.output_activation,
        out=Path(args.out),
        figures=not args.no_figures,
        inference_enabled=not args.no_inference,
        extra={"progress": not args.no_progress},
    )


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {first_line(err)}".strip().rstrip(":")[:300]


def _median(values: list[float]) -> float:
    return Summary.of(values).median if values else math.nan


def _summary_columns(metric: str, s: Summary) -> dict[str, float]:
    """`metric` (the median), `metric_iqr`, `_p10`, `_p90`, `_min` from one set of raw samples."""
    return {
        metric: s.median,
        f"{metric}_iqr": s.iqr,
        f"{metric}_p10": s.p10,
        f"{metric}_p90": s.p90,
        f"{metric}_min": s.min,
    }


def train_row(base: dict, m: TrainMeasurement, plan: TrainPlan, batch_size: int) -> tuple[dict, dict]:
    """The results row and raw samples of one training configuration."""
    s = m.summary()
    first = m.repeats[0]
    reached = [r.steps_to_target for r in m.repeats if r.steps_to_target is not None]
    converged = [r.verdict.converged for r in m.repeats]
    reason = first.verdict.reason
    if len(set(converged)) > 1:
        reason += f" ({sum(converged)}/{len(converged)} repeats converged)"
    row = new_row(
        **base,
        workload="train",
        steps=plan.steps,
        repeats=len(m.repeats),
        flags="noisy" if s.noisy else "",
        first_call_s=first.first_call_s,
        **_summary_columns("step_ms", s),
        samples_per_s=batch_size / (s.median / 1e3),
        run_s=first.run_s,
        run_warm_s=_median([r.run_s for r in m.repeats[1:]]),
        steps_to_target=_median([float(v) for v in reached]),
        time_to_target_s=_median([r.time_to_target_s for r in m.repeats if r.time_to_target_s is not None]),
        eval_s=_median([r.eval_s for r in m.repeats]),
        final_loss=first.loss_curve[max(first.loss_curve)] if first.loss_curve else math.nan,
        mae=_median([r.metrics.mae for r in m.repeats]),
        exact_accuracy=_median([r.metrics.exact_accuracy for r in m.repeats]),
        converged=all(converged),
        verdict=reason,
    )
    samples = {
        "step_ms": m.step_ms,
        "run_s": [r.run_s for r in m.repeats],
        "first_call_s": [r.first_call_s for r in m.repeats],
        "loss_curve": first.loss_curve,
        "mae_curve": first.mae_curve,
    }
    return row, samples


def _run_config(
    writer: RunWriter, opts: RunOptions, test_set: TestSet, device: str, mode: str, threads: int, progress
) -> None:
    """Measure one (device, mode, threads): a train row and one inference row per batch size."""
    net_config = NetConfig(output_activation=opts.output_activation)
    config = TrainConfig(batch_size=opts.batch_size, seed=opts.seed)
    base = dict(
        device=device, mode=mode, threads=threads, seed=opts.seed, output_activation=opts.output_activation
    )
    reason = skip_reason(device, mode)
    if reason is not None:
        writer.add(
            new_row(**base, workload="train", batch_size=opts.batch_size, status="skipped", reason=reason)
        )
        if opts.inference_enabled:
            writer.add(new_row(**base, workload="inference", status="skipped", reason=reason))
        progress.update(opts.train.repeats + (1 if opts.inference_enabled else 0))
        return
    torch.set_num_threads(threads)
    dev = torch.device(device)

    def make_trainer():
        return build_trainer(mode, dev, net_config, config)

    progress.set_description(f"{device} {mode} x{threads} train")
    repeats_done = [0]

    def on_repeat(_: int) -> None:
        repeats_done[0] += 1
        progress.update(1)

    try:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        m = measure_training(make_trainer, dev, opts.train, test_set, on_repeat=on_repeat)
        row, samples = train_row({**base, "batch_size": opts.batch_size}, m, opts.train, opts.batch_size)
        row["peak_mem_bytes"] = int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else None
        row["peak_rss_bytes"] = _peak_rss_bytes()
        writer.add(row, samples)
        writer.settings["timed_s"] += m.timed_s
    except Exception as err:  # one configuration's failure is recorded in its row; the matrix goes on
        writer.add(
            new_row(
                **base, workload="train", batch_size=opts.batch_size, status="failed", reason=_first_line(err)
            )
        )
        progress.update(opts.train.repeats - repeats_done[0])
    except KeyboardInterrupt:  # say which configuration was cut short, then stop the matrix
        writer.add(
            new_row(**base, workload="train", batch_size=opts.batch_size, status="failed", reason=INTERRUPTED)
        )
        raise
    if not opts.inference_enabled:
        return
    progress.set_description(f"{device} {mode} x{threads} inference")
    try:
        points = measure_inference(make_trainer(), dev, opts.inference)
    except Exception as err:  # recorded, as above
        writer.add(new_row(**base, workload="inference", status="failed", reason=_first_line(err)))
        progress.update(1)
        return
    except KeyboardInterrupt:
        writer.add(new_row(**base, workload="inference", status="failed", reason=INTERRUPTED))
        raise
    writer.settings["timed_s"] += sum(p.timed_s for p in points)
    for p in points:
        if p.latency_s is None:
            writer.add(
                new_row(
                    **base, workload="inference", batch_size=p.batch_size, status="skipped", reason=p.skipped
                )
            )
            continue
        s = Summary.of([v * 1e3 for v in p.latency_s])
        row = new_row(
            **base,
            workload="inference",
            batch_size=p.batch_size,
            steps=p.calls,
            first_call_s=p.first_call_s,
            **_summary_columns("latency_ms", s),
            samples_per_s=p.batch_size / (s.median / 1e3),
            flags="noisy" if s.noisy else "",
            peak_mem_bytes=p.peak_mem_bytes,
            peak_rss_bytes=_peak_rss_bytes(),
        )
        writer.add(row, {"latency_ms": [v * 1e3 for v in p.latency_s]})
    progress.update(1)


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a convenience; the run goes on without it
        enabled = False
    if not enabled:
        return _NoProgress()
    return tqdm(
        total=total,
        unit="step",
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]",
    )


class _NoProgress:
    n = 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def set_description(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _configs(opts: RunOptions) -> list[tuple[str, str, int]]:
    """(device, mode, threads), mode by mode so the slow compiled modes come last and a run cut
    short still holds every device's fast modes. The thread sweep applies to the CPU only."""
    out = []
    for mode in opts.modes:
        for device in opts.devices:
            threads = opts.threads if device == "cpu" else opts.threads[-1:]
            out += [(device, mode, t) for t in threads]
    return out


def run(opts: RunOptions) -> tuple[Path, RunWriter, bool]:
    """Run the matrix; returns (run folder, writer, interrupted)."""
    env = environment.collect()
    run_dir = make_run_dir(opts.out, str(env["host"]))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    settings["timed_s"] = 0.0  # seconds inside timed regions, to state the harness's own overhead
    writer = RunWriter(run_dir, env, settings)
    configs = _configs(opts)
    units = opts.train.repeats + (1 if opts.inference_enabled else 0)
    progress = _progress(len(configs) * units, bool(opts.extra.get("progress", True)))
    default_threads = torch.get_num_threads()
    interrupted = False
    test_set = make_test_set()  # the same held-out rows for every configuration
    try:
        for device, mode, threads in configs:
            _run_config(writer, opts, test_set, device, mode, threads, progress)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
        torch.set_num_threads(default_threads)
    derive(writer.rows, writer.samples, env, NetConfig(output_activation=opts.output_activation))
    writer.flush()
    return run_dir, writer, interrupted


def main(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    interrupt_on_sigterm()
    started = time.perf_counter()
    run_dir, writer, interrupted = run(opts)
    df = writer.frame()
    figures = None
    if opts.figures:
        from bench.figures import write_run_figures

        figures = write_run_figures(df, writer.samples, run_dir, writer.env)
        if figures.skipped:
            print(f"figures skipped: {figures.skipped}", file=sys.stderr)
    writer.settings["wall_s"] = time.perf_counter() - started
    writer.flush()
    report = render_run_report(df, writer.env, writer.settings, figures)
    (run_dir / "report.md").write_text(report)
    print(summary_markdown(df))
    print(
        f"\n{'INTERRUPTED: partial ' if interrupted else ''}results in {run_dir}/ (report.md, results.csv, run.json)"
    )
    return 130 if interrupted else 0
