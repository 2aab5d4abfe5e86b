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

try:
    from tqdm import tqdm
except ImportError:  # a machine with only torch and the scientific stack (the GPU check's): no bar
    tqdm = None

from bench.analysis.derive import derive
from bench.analysis.stats import Summary
from bench.commands.session import (
    INTERRUPTED,
    Session,
    add_history_arguments,
    history_target,
    open_session,
    signals_ignored,
)
from bench.errors import UsageError, describe
from bench.measure.environment import max_threads
from bench.measure.kernels import best_steps_per_launch, graph_launch_latency_s, profile_kernels
from bench.measure.process import pin_malloc
from bench.measure.workloads import (
    InferencePlan,
    InferencePoint,
    TrainMeasurement,
    TrainPlan,
    measure_inference,
    measure_training,
    peak_memory,
    reset_peak_memory,
)
from bench.modes import MODES, Trainer, build_trainer, slowdown_factor
from bench.modes.selection import parse_devices, parse_modes, require_runnable, skip_reason
from bench.records import ConfigKey, Record
from bench.render.figures import write_run_figures
from bench.render.report import render_run_report, summary_markdown
from bench.store.run_folder import RunWriter, atomic_write
from sumnet.cli_args import bounded_positive_int, positive_float, seed_int
from sumnet.data import TestSet, make_test_set
from sumnet.model import OUTPUT_ACTIVATIONS, NetConfig
from sumnet.train import MAX_BATCH_SIZE, MAX_STEPS, TrainConfig

MAX_REPEATS = 1000  # training runs per configuration; each is up to MAX_STEPS steps


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
        "--steps",
        type=bounded_positive_int(MAX_STEPS),
        default=None,
        help=f"training steps per run, 1 to {MAX_STEPS:,} (preset: 3000)",
    )
    parser.add_argument(
        "--repeats",
        type=bounded_positive_int(MAX_REPEATS),
        default=None,
        help=f"training runs per configuration, 1 to {MAX_REPEATS:,}",
    )
    parser.add_argument(
        "--batch-size",
        type=bounded_positive_int(MAX_BATCH_SIZE),
        default=32,
        help=f"training batch size, 1 to {MAX_BATCH_SIZE:,} (default 32)",
    )
    parser.add_argument(
        "--batch-sizes",
        default=None,
        help=f"inference sweep, comma list of 1 to {MAX_BATCH_SIZE:,} (default: the preset's)",
    )
    parser.add_argument(
        "--target-mae", type=positive_float, default=None, help="convergence target (default 0.01)"
    )
    parser.add_argument("--output-activation", choices=OUTPUT_ACTIVATIONS, default="relu")
    parser.add_argument("--no-inference", action="store_true", help="skip the inference sweep")
    parser.add_argument("--no-figures", action="store_true", help="write no PNG figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_history_arguments(parser)


def _int_list(text: str, what: str, maximum: int) -> list[int]:
    """A comma list of integers from 1 to `maximum`; UsageError naming the flag otherwise."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1 or max(values) > maximum:
        raise UsageError(f"{what} must be a comma list of integers from 1 to {maximum:,}, got {text!r}")
    return values


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """Validate the flags into RunOptions; UsageError on anything bad."""
    if not args.out.strip():
        raise UsageError("--out is empty: give a folder for the run folders, e.g. --out results")
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
        inference = replace(
            inference, batch_sizes=tuple(_int_list(args.batch_sizes, "--batch-sizes", MAX_BATCH_SIZE))
        )
    if args.threads is not None:
        threads = sorted(set(_int_list(args.threads, "--threads", max_threads())))
    elif preset.thread_sweep:
        threads = sorted({1, os.cpu_count() or 1})
    else:
        threads = [torch.get_num_threads()]
    devices = parse_devices(args.device)
    modes = parse_modes(args.mode) if args.mode is not None else list(preset.modes)
    require_runnable(devices, modes, args.device, args.mode)
    slowdown_factor()  # a bad SUMNET_BENCH_SLOWDOWN is refused before anything runs
    return RunOptions(
        devices=devices,
        modes=modes,
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
        extra={
            "progress": not args.no_progress,
            "history": history_target(args.out, args.db, args.no_history),
        },
    )


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _median(values: list[float]) -> float:
    return Summary.of(values).median if values else math.nan


def train_record(key: ConfigKey, m: TrainMeasurement, plan: TrainPlan, seed: int, notes: list[str]) -> Record:
    """The record of one training configuration: raw samples and the held-out outcome."""
    first = m.repeats[0]
    reached = [r.steps_to_target for r in m.repeats if r.steps_to_target is not None]
    converged = [r.verdict.converged for r in m.repeats]
    reason = first.verdict.reason
    if len(set(converged)) > 1:
        reason += f" ({sum(converged)}/{len(converged)} repeats converged)"
    measured = dict(
        first_call_s=first.first_call_s,
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
    return Record(
        key,
        notes=list(notes),
        seed=seed,
        steps=plan.steps,
        repeats=len(m.repeats),
        measured=measured,
        samples=samples,
    )


def inference_record(key: ConfigKey, p: InferencePoint, seed: int) -> Record:
    """The record of one inference batch size: latency samples, or why it failed or was skipped."""
    if p.failed is not None:
        return Record(key, status="failed", reason=p.failed, seed=seed)
    if p.latency_s is None:
        return Record(key, status="skipped", reason=p.skipped or "not measured", seed=seed)
    measured = dict(
        first_call_s=p.first_call_s,
        peak_mem_bytes=p.peak_mem_bytes,
        peak_rss_bytes=_peak_rss_bytes(),
        page_faults_per_call=p.page_faults_per_call,
    )
    return Record(
        key,
        seed=seed,
        steps=p.calls,
        measured=measured,
        samples={"latency_ms": [v * 1e3 for v in p.latency_s]},
    )


def _run_config(
    writer: RunWriter, opts: RunOptions, test_set: TestSet, device: str, mode: str, threads: int, progress
) -> None:
    """Measure one (device, mode, threads): a train record and one inference record per batch size."""
    net_config = NetConfig(output_activation=opts.output_activation)
    config = TrainConfig(batch_size=opts.batch_size, seed=opts.seed)

    def key(workload: str, batch_size: int | None) -> ConfigKey:
        return ConfigKey(workload, device, mode, batch_size, threads, opts.output_activation)

    def unmeasured(workload: str, batch_size: int | None, status: str, reason: str) -> Record:
        return Record(key(workload, batch_size), status=status, reason=reason, seed=opts.seed)

    reason = skip_reason(device, mode)
    if reason is not None:
        writer.add(unmeasured("train", opts.batch_size, "skipped", reason))
        if opts.inference_enabled:
            writer.add(unmeasured("inference", None, "skipped", reason))
        progress.update(opts.train.repeats + (1 if opts.inference_enabled else 0))
        return
    torch.set_num_threads(threads)
    dev = torch.device(device)
    last: list[Trainer] = []  # the trainer timed last: its notes (some filled by its first step), its kernels

    def make_trainer():
        last[:] = [build_trainer(mode, dev, net_config, config)]
        return last[0]

    progress.set_description(f"{device} {mode} x{threads} train")
    repeats_done = [0]

    def on_repeat(_: int) -> None:
        repeats_done[0] += 1
        progress.update(1)

    try:
        reset_peak_memory(dev)
        m = measure_training(make_trainer, dev, opts.train, test_set, on_repeat=on_repeat)
        record = train_record(key("train", opts.batch_size), m, opts.train, opts.seed, last[0].notes)
        record.measured.update(peak_mem_bytes=peak_memory(dev), peak_rss_bytes=_peak_rss_bytes())
        record.measured.update(_kernel_columns(last[0], dev))
        record.notes = list(last[0].notes)  # with what the kernel measurements added
        writer.add(record)
        writer.settings["timed_s"] += m.timed_s
    except Exception as err:  # one configuration's failure is recorded in its record; the matrix goes on
        writer.add(unmeasured("train", opts.batch_size, "failed", describe(err)))
        progress.update(opts.train.repeats - repeats_done[0])
    except KeyboardInterrupt:  # say which configuration was cut short, then stop the matrix
        writer.add(unmeasured("train", opts.batch_size, "failed", INTERRUPTED))
        raise
    if not opts.inference_enabled:
        return
    progress.set_description(f"{device} {mode} x{threads} inference")
    try:
        for p in measure_inference(make_trainer(), dev, opts.inference):
            writer.add(inference_record(key("inference", p.batch_size), p, opts.seed))
            writer.settings["timed_s"] += p.timed_s
    except Exception as err:  # the model failed to build: one record for the sweep, as above
        writer.add(unmeasured("inference", None, "failed", describe(err)))
    except KeyboardInterrupt:  # the sizes measured are saved; the first one without a record says so
        saved = {r.key for r in writer.records}
        cut = next((b for b in opts.inference.batch_sizes if key("inference", b) not in saved), None)
        if cut is not None:
            writer.add(unmeasured("inference", cut, "failed", INTERRUPTED))
        raise
    finally:
        progress.update(1)


def _kernel_columns(trainer: Trainer, device: torch.device) -> dict[str, float]:
    """On CUDA: kernels per step and us per kernel of the trained mode, one graph launch's latency
    (for the lower bound), and for a mode that runs k steps per launch the best k and its time per
    step; all measured after the timed runs; nothing elsewhere."""
    count, launch_s = profile_kernels(trainer.step, device), graph_launch_latency_s(device)
    out: dict[str, float] = {}
    if count is not None:
        out.update(kernels_per_step=count.kernels_per_step, us_per_kernel=count.us_per_kernel)
    if launch_s is not None:
        out["graph_launch_us"] = launch_s * 1e6
    if trainer.multi_step is not None and device.type == "cuda":
        per_k = best_steps_per_launch(trainer.multi_step, device)
        best = min(per_k, key=per_k.__getitem__)
        out.update(best_steps_per_launch=best, best_us_per_step=per_k[best])
        trainer.notes.append(
            "us per step by steps per launch: " + ", ".join(f"k={k}: {v:.3g}" for k, v in per_k.items())
        )
    return out


class _NoProgress:
    """What the run loop calls on a progress bar, doing nothing: --no-progress, or tqdm absent."""

    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if tqdm is None or not enabled:
        return _NoProgress()
    return tqdm(
        total=total,
        unit="step",
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]",
    )


def _configs(opts: RunOptions) -> list[tuple[str, str, int]]:
    """(device, mode, threads), mode by mode so the slow compiled modes come last and a run cut
    short still holds every device's fast modes. The thread sweep applies to the CPU only."""
    out = []
    for mode in opts.modes:
        for device in opts.devices:
            threads = opts.threads if device == "cpu" else opts.threads[-1:]
            out += [(device, mode, t) for t in threads]
    return out


def run(opts: RunOptions) -> Session:
    """Run the matrix into a new run folder, then derive once; the session says if it was interrupted."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    settings["timed_s"] = 0.0  # seconds inside timed regions, to state the harness's own overhead
    settings.pop("extra", None)
    # Fixed malloc thresholds: without them a 131,072-row forward took 70 to 82 ms in 5 of 6 processes
    # here and 29 ms in the sixth; with them 30 to 32 ms in all six (bench/measure/process.py).
    settings["malloc_pinned"] = pin_malloc()
    session = open_session(opts.out, settings, history=opts.extra.get("history"))
    writer = session.writer
    configs = _configs(opts)
    units = opts.train.repeats + (1 if opts.inference_enabled else 0)
    progress = _progress(len(configs) * units, bool(opts.extra.get("progress", True)))
    default_threads = torch.get_num_threads()
    test_set = make_test_set()  # the same held-out rows for every configuration
    try:
        session.loop(configs, lambda c: _run_config(writer, opts, test_set, *c, progress))
    finally:
        progress.close()
        torch.set_num_threads(default_threads)
    with signals_ignored():
        writer.derived = derive(
            writer.records, writer.env, NetConfig(output_activation=opts.output_activation)
        )
        writer.flush()
    return session


def main(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    session = run(opts)
    writer = session.writer

    def render() -> str:
        df = writer.frame()
        figures = None
        if opts.figures:
            figures = write_run_figures(df, writer.samples, session.run_dir, writer.env)
            if figures.skipped:
                print(f"figures skipped: {figures.skipped}", file=sys.stderr)
        writer.settings["wall_s"] = time.perf_counter() - session.started
        report = render_run_report(df, writer.env, writer.settings, figures, writer.records)
        atomic_write(session.run_dir / "report.md", report)
        return summary_markdown(df)

    return session.finish(render)
