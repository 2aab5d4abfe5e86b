"""`python -m bench run`: time the article's Net on each device and mode, check it learns, report.

    python -m bench run                          # default preset, every device present
    python -m bench run --device cpu --mode eager,compile --preset quick --out results

Writes results/<host>-<UTC timestamp>/ with results.csv, run.json, report.md (and figures), points
results/latest at it, and ends with the summary table. Rows are saved as they are measured.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import sys
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from functools import partial
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
    int_list,
    open_session,
    signals_ignored,
)
from bench.errors import UsageError, describe
from bench.measure.environment import max_threads
from bench.measure.extra_work import extra_work_fraction, with_extra_work
from bench.measure.instructions import (
    InstructionPlan,
    count_instructions,
    instructions_skip_reason,
    stop_children,
)
from bench.measure.kernels import best_steps_per_launch, graph_launch_latency_s, profile_kernels
from bench.measure.machine_load import LoadProbe
from bench.measure.process import peak_rss_bytes, pin_malloc, reset_peak_rss
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
from bench.render.figures import (
    FILE_NAMES,
    FigureSet,
    run_figures_with_data,
    write_run_figures,
)
from bench.render.report import instructions_table, render_run_report, summary_markdown
from bench.store.run_folder import RunWriter, WriteError, atomic_write
from sumnet.cli_args import bounded_positive_int, positive_float, seed_int
from sumnet.data import TestSet, make_test_set
from sumnet.model import OUTPUT_ACTIVATIONS, NetConfig
from sumnet.train import MAX_BATCH_SIZE, MAX_STEPS, TrainConfig

MAX_REPEATS = 1000  # training runs per configuration; each is up to MAX_STEPS steps
METRICS = ("time", "instructions")
INSTRUCTION_STEPS, INSTRUCTION_REPEATS = 20, 2  # --metric instructions: each process imports torch
# under valgrind (slow), so few repeats in one process per configuration, and few steps (the count
# does not vary with load, so few suffice)


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
    progress: bool = True
    history: str | None = None  # where the finished run is recorded; None: not
    metric: str = "time"  # time | instructions (counted under callgrind, CPU only)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add, most = parser.add_argument, f"1 to {MAX_BATCH_SIZE:,}"
    add("--device", default="auto", help="comma list of cpu, cuda, cuda:N, mps, or auto (default)")
    add("--mode", help=f"comma list of {', '.join(MODES)}, or all (default: the preset's)")
    add("--preset", default="default", help="quick, default or full")
    add("--out", default="results", help="parent folder for the run folder (default results)")
    add("--threads", help="torch CPU threads, a comma list to sweep (default: torch's)")
    add("--seed", type=seed_int, default=0, help="init and data seed (default 0)")
    steps, repeats = bounded_positive_int(MAX_STEPS), bounded_positive_int(MAX_REPEATS)
    add("--steps", type=steps, help=f"training steps per run, 1 to {MAX_STEPS:,} (preset: 3000)")
    add("--repeats", type=repeats, help=f"training runs per configuration, 1 to {MAX_REPEATS:,}")
    batch = bounded_positive_int(MAX_BATCH_SIZE)
    add("--batch-size", type=batch, default=32, help=f"training batch size, {most} (default 32)")
    add("--batch-sizes", help=f"inference sweep, comma list of {most} (default: the preset's)")
    add("--target-mae", type=positive_float, help="convergence target (default 0.01)")
    add("--output-activation", choices=OUTPUT_ACTIVATIONS, default="relu")
    add("--no-inference", action="store_true", help="skip the inference sweep")
    add("--no-figures", action="store_true", help="write no PNG figures")
    add("--no-progress", action="store_true", help="no progress bar")
    metric = (
        "time (default), or instructions per step and per call under valgrind (CPU; "
        f"{INSTRUCTION_STEPS} steps x {INSTRUCTION_REPEATS} repeats in one process, 1 thread, unless given)"
    )
    add("--metric", choices=METRICS, default="time", help=metric)
    add_history_arguments(parser)


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """Validate the flags into RunOptions; UsageError on anything bad."""
    if not args.out.strip():
        raise UsageError("--out is empty: give a folder for the run folders, e.g. --out results")
    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}: choose from {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    train = preset.train
    if args.metric == "instructions":
        train = replace(train, steps=INSTRUCTION_STEPS, repeats=INSTRUCTION_REPEATS)
    given = {"steps": args.steps, "repeats": args.repeats, "target_mae": args.target_mae}
    train = replace(train, **{name: value for name, value in given.items() if value is not None})
    inference = preset.inference
    if args.batch_sizes is not None:
        sizes = int_list(args.batch_sizes, "--batch-sizes", MAX_BATCH_SIZE)
        inference = replace(inference, batch_sizes=tuple(dict.fromkeys(sizes)))  # once each, order kept
    if args.threads is not None:
        threads = sorted(set(int_list(args.threads, "--threads", max_threads())))
    elif args.metric == "instructions":
        threads = [1]  # threads run one at a time under valgrind: more only add spin-waits
    elif preset.thread_sweep:
        threads = sorted({1, os.cpu_count() or 1})
    else:
        threads = [torch.get_num_threads()]
    devices = parse_devices(args.device)
    modes = parse_modes(args.mode) if args.mode is not None else list(preset.modes)
    require_runnable(devices, modes, args.device, args.mode)
    slowdown_factor()  # a bad SUMNET_BENCH_SLOWDOWN or SUMNET_BENCH_EXTRA_WORK is refused before
    extra_work_fraction()  # anything runs
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
        progress=not args.no_progress,
        history=history_target(args.out, args.db, args.no_history),
        metric=args.metric,
    )


def _median(values: list[float]) -> float:
    return Summary.of(values).median if values else math.nan


def train_record(
    key: ConfigKey, m: TrainMeasurement, plan: TrainPlan, seed: int, notes: list[str], measured: dict
) -> Record:
    """The record of one training configuration: raw samples and the held-out outcome. The first
    (cold) repeat gives first call, run time, steps and time to target and the final loss; MAE,
    accuracy and evaluation time are medians over the repeats; step_ms pools every repeat's blocks."""
    first = m.repeats[0]
    converged = [r.verdict.converged for r in m.repeats]
    reason = first.verdict.reason
    if len(set(converged)) > 1:
        reason += f" ({sum(converged)}/{len(converged)} repeats converged)"
    measured = dict(
        measured,
        first_call_s=first.first_call_s,
        run_s=first.run_s,
        run_warm_s=_median([r.run_s for r in m.repeats[1:]]),
        steps_to_target=math.nan if first.steps_to_target is None else float(first.steps_to_target),
        time_to_target_s=math.nan if first.time_to_target_s is None else first.time_to_target_s,
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
        notes=notes,
        seed=seed,
        steps=plan.steps,
        repeats=len(m.repeats),
        measured=measured,
        samples=samples,
    )


def inference_record(key: ConfigKey, p: InferencePoint, seed: int, measured: dict) -> Record:
    """The record of one inference batch size: latency samples, or why it failed or was skipped."""
    if p.failed is not None or p.latency_s is None:
        status, reason = ("failed", p.failed) if p.failed is not None else ("skipped", p.skipped)
        return Record(key, status=status, reason=reason or "not measured", seed=seed, measured=measured)
    measured = dict(
        measured,
        first_call_s=p.first_call_s,
        peak_mem_bytes=p.peak_mem_bytes,
        page_faults_per_call=p.page_faults_per_call,
    )
    samples = {"latency_ms": [v * 1e3 for v in p.latency_s]}
    return Record(key, seed=seed, steps=p.calls, measured=measured, samples=samples)


class _Footprint:
    """One configuration's machine load and peak RSS: started before it, read after it."""

    def __init__(self) -> None:
        self.rss_reset = reset_peak_rss()  # where Linux refuses, no peak rather than the process's
        self.load = LoadProbe.start()

    def finish(self) -> dict[str, object]:
        return {**self.load.finish(), "peak_rss_bytes": peak_rss_bytes() if self.rss_reset else None}


@dataclass
class _Builder:
    """Builds each repeat's Trainer and keeps the last one (its notes, its kernels)."""

    mode: str
    device: torch.device
    net_config: NetConfig
    config: TrainConfig
    last: Trainer | None = None

    def __call__(self) -> Trainer:
        trainer = build_trainer(self.mode, self.device, self.net_config, self.config)
        self.last = with_extra_work(trainer, self.config.batch_size)
        return self.last


@dataclass
class _Matrix:
    """The measuring loop's state: where records go, what to run, the bar."""

    writer: RunWriter
    opts: RunOptions
    test_set: TestSet
    progress: object
    counting: dict[tuple[str, str, int], Future] = field(default_factory=dict)  # --metric instructions

    def key(self, workload: str, device: str, mode: str, threads: int, batch_size: int | None) -> ConfigKey:
        return ConfigKey(workload, device, mode, batch_size, threads, self.opts.output_activation)

    def unmeasured(self, config: tuple[str, str, int], status: str, reason: str) -> None:
        """Skipped or failed records of the training and the sweep."""
        self.failed("train", config, self.opts.batch_size, reason, status)
        if self.opts.inference_enabled:
            self.failed("inference", config, None, reason, status)

    def failed(
        self, workload: str, config: tuple, size: int | None, reason: str, status: str = "failed"
    ) -> None:
        key = self.key(workload, *config, size)
        self.writer.add(Record(key, status=status, reason=reason, seed=self.opts.seed))

    def measure(self, config: tuple[str, str, int]) -> None:
        """Measure one (device, mode, threads): a train record and one inference record per batch size."""
        done = self.progress.n + self.opts.train.repeats + (1 if self.opts.inference_enabled else 0)
        reason = skip_reason(config[0], config[1])
        if reason is None and self.opts.metric == "instructions":
            reason = instructions_skip_reason(config[0], config[1])
        if reason is not None:
            self.unmeasured(config, "skipped", reason)
        elif self.opts.metric == "instructions":
            self.count(config)
        else:
            self.time(config)
        self.progress.update(done - self.progress.n)

    def time(self, config: tuple[str, str, int]) -> None:
        device, mode, threads = config
        opts = self.opts
        torch.set_num_threads(threads)
        dev = torch.device(device)
        net_config = NetConfig(output_activation=opts.output_activation)
        builder = _Builder(mode, dev, net_config, TrainConfig(batch_size=opts.batch_size, seed=opts.seed))
        self.progress.set_description(f"{device} {mode} x{threads} train")
        try:
            reset_peak_memory(dev)
            footprint = _Footprint()
            m = measure_training(
                builder, dev, opts.train, self.test_set, on_repeat=lambda _: self.progress.update(1)
            )
            measured = {**footprint.finish(), "peak_mem_bytes": peak_memory(dev)}
            assert builder.last is not None
            measured.update(_kernel_columns(builder.last, dev))  # after the timed runs; may add notes
            key = self.key("train", *config, opts.batch_size)
            self.writer.add(train_record(key, m, opts.train, opts.seed, list(builder.last.notes), measured))
            self.writer.settings["timed_s"] += m.timed_s
        except Exception as err:  # one configuration's failure is recorded in its record; the matrix goes on
            self.failed("train", config, opts.batch_size, describe(err))
        except KeyboardInterrupt:  # say which configuration was cut short, then stop the matrix
            self.failed("train", config, opts.batch_size, INTERRUPTED)
            raise
        if opts.inference_enabled:
            self.progress.set_description(f"{device} {mode} x{threads} inference")
            self.sweep(config, builder, dev)

    def sweep(self, config: tuple[str, str, int], builder: _Builder, dev: torch.device) -> None:
        opts = self.opts
        try:
            points = measure_inference(builder(), dev, opts.inference)
        except Exception as err:  # the model failed to build: one record for the sweep
            self.failed("inference", config, None, describe(err))
            return
        saved = 0
        try:
            for _ in opts.inference.batch_sizes:
                footprint = _Footprint()
                point = next(points)
                key = self.key("inference", *config, point.batch_size)
                self.writer.add(inference_record(key, point, opts.seed, footprint.finish()))
                self.writer.settings["timed_s"] += point.timed_s
                saved += 1
        except KeyboardInterrupt:  # the sizes measured are saved; the one cut short says so
            self.failed("inference", config, opts.inference.batch_sizes[saved], INTERRUPTED)
            raise

    def count(self, config: tuple[str, str, int]) -> None:
        """--metric instructions: the configuration's records, from its child process's counts."""
        self.progress.set_description(f"{config[0]} {config[1]} x{config[2]} instructions")
        try:
            counts = self.counting[config].result()
        except Exception as err:  # valgrind or the mode failed: the configuration's rows say why
            self.unmeasured(config, "failed", describe(err))
            return
        except KeyboardInterrupt:
            self.unmeasured(config, "failed", INTERRUPTED)
            raise
        for record in counts.records(partial(self.key, device=config[0], mode=config[1], threads=config[2])):
            self.writer.add(record)

    def plan(self, config: tuple[str, str, int]) -> InstructionPlan:
        o = self.opts
        return InstructionPlan(
            mode=config[1],
            batch_size=o.batch_size,
            threads=config[2],
            seed=o.seed,
            output_activation=o.output_activation,
            repeats=o.train.repeats,
            steps=o.train.steps,
            inference_batch_sizes=tuple(o.inference.batch_sizes) if o.inference_enabled else (),
        )


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

    n = 0  # steps done, as tqdm counts them

    def update(self, n: int = 1) -> None:
        self.n += n

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


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run(opts: RunOptions) -> Session:
    """Run the matrix into a new run folder, then derive once; the session says if it was interrupted."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    # timed_s: seconds inside timed regions, to state the harness's own overhead; malloc_pinned: see
    # measure/process.py; run_uuid: tells apart in the history two runs of one commit started in the
    # same second (bench ab starts both arms of a round together)
    settings.update(timed_s=0.0, malloc_pinned=pin_malloc(), started_utc=utc_now(), run_uuid=uuid.uuid4().hex)
    session = open_session(opts.out, settings, history=opts.history)
    configs = _configs(opts)
    units = opts.train.repeats + (1 if opts.inference_enabled else 0)
    matrix = _Matrix(session.writer, opts, make_test_set(), _progress(len(configs) * units, opts.progress))
    default_threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)  # counts do not depend on load: in parallel
    if opts.metric == "instructions":
        counted = [c for c in configs if not (skip_reason(*c[:2]) or instructions_skip_reason(*c[:2]))]
        matrix.counting = {c: pool.submit(count_instructions, matrix.plan(c)) for c in counted}
    try:
        session.loop(configs, matrix.measure)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        stop_children()
        matrix.progress.close()
        torch.set_num_threads(default_threads)
    session.writer.settings["ended_utc"] = utc_now()
    with signals_ignored():
        session.writer.derived = derive(
            session.writer.records, session.writer.env, NetConfig(output_activation=opts.output_activation)
        )
    return session


@dataclass
class _Outputs:
    """report.md, then the figures (a full disk keeps the report); figures that could not be saved."""

    session: Session
    figures: bool
    metric: str
    unsaved: dict[str, str] = field(default_factory=dict)  # file name -> why

    def __call__(self) -> str:
        writer, run_dir = self.session.writer, self.session.run_dir
        df = writer.frame()
        skipped = None if self.figures else "--no-figures"
        names = run_figures_with_data(df) if self.figures else []
        planned = FigureSet({n: run_dir / FILE_NAMES[n] for n in names}, skipped)
        report = render_run_report(df, writer.env, writer.settings, planned, writer.records)
        atomic_write(run_dir / "report.md", report)
        if names:
            written = write_run_figures(df, writer.samples, run_dir, writer.env)
            self.unsaved = written.failed
            if written.failed:
                with suppress(WriteError):  # the report written above stays, its links to them dangling
                    report = render_run_report(df, writer.env, writer.settings, written, writer.records)
                    atomic_write(run_dir / "report.md", report)
        return instructions_table(df) if self.metric == "instructions" else summary_markdown(df)


def main(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    outputs = _Outputs(run(opts), opts.figures, opts.metric)
    code = outputs.session.finish(outputs)
    if outputs.unsaved and code == 0:
        unsaved = "; ".join(f"{outputs.session.run_dir / n} ({why})" for n, why in outputs.unsaved.items())
        print(f"figure not saved, the rows and report.md are: {unsaved}", file=sys.stderr)
        return 2
    return code
