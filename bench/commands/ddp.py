"""`python -m bench ddp`: the article's Net and step under DistributedDataParallel, through torchrun.

    python -m bench ddp --nproc 1,2 --device cpu                 # gloo, weak scaling: 32 rows per rank
    python -m bench ddp --nproc 1,2,4 --device cuda --backend nccl --scaling strong
    nox -s ddp -- --nproc 1,2 --device cpu

One torchrun launch per world size; a rank that dies or never joins ends its launch within the
timeouts with a failed row naming the rank, and the other sizes still run. Writes
results/<host>-<UTC time>/ (results.csv, run.json, report.md) and points results/latest-ddp at it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from bench.analysis.derive import derive
from bench.commands.session import (
    INTERRUPTED,
    add_history_arguments,
    history_target,
    int_list,
    open_session,
    signals_ignored,
)
from bench.ddp.launch import DDPResult, run_ddp, scaling_efficiency
from bench.ddp.plan import BACKENDS, SCALINGS, check_setup, per_rank_batch
from bench.errors import UsageError
from bench.measure.environment import max_threads
from bench.records import ConfigKey, Record
from bench.render.ddp_report import render_ddp_report, scaling_table
from bench.store.run_folder import atomic_write
from sumnet.cli_args import bounded_positive_int, positive_float, seed_int
from sumnet.model import NetConfig
from sumnet.train import MAX_STEPS

MAX_WORLD_SIZE = 1024
# A world size's row until it is measured: a launcher killed outright leaves a run folder that says so
NOT_MEASURED = "not measured: bench ddp ended before this world size finished (killed? out of memory?)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add, threads, steps = parser.add_argument, max_threads(), bounded_positive_int(MAX_STEPS)
    add("--nproc", default="1,2", help="world sizes to run, comma list (default 1,2)")
    add("--device", default="cpu", help="cpu or cuda (default cpu)")
    add("--backend", default=None, help=f"{' or '.join(BACKENDS)} (default gloo on cpu, nccl on cuda)")
    add("--scaling", choices=SCALINGS, default="weak", help="weak: 32 rows per rank; strong: 32 in all")
    add("--steps", type=steps, default=3000, help=f"1 to {MAX_STEPS:,} (default 3000)")
    add("--seed", type=seed_int, default=0, help="init and data seed (default 0)")
    add("--threads-per-rank", type=bounded_positive_int(threads), default=1, help=f"1 to {threads} here")
    add("--timeout", type=positive_float, default=600.0, help="seconds per launch (default 600)")
    add("--out", default="results", help="parent folder of the run folder (default results)")
    add("--no-figures", action="store_true", help="write no PNG figure")
    add_history_arguments(parser)


def _key(device: str, batch_size: int, threads: int, world_size: int, backend: str) -> ConfigKey:
    return ConfigKey("ddp", device, "eager", batch_size, threads, "relu", world_size, backend)


def ddp_record(r: DDPResult) -> Record:
    """One world size's record: the slowest rank's step samples (every rank waits for it)."""
    key = _key(r.device, r.per_rank_batch, r.threads_per_rank, r.world_size, r.backend)
    if not r.ok:
        return Record(key, status="failed", reason=r.reason, seed=r.seed, steps=r.steps)
    slowest = r.slowest_rank
    copied = ("first_call_s", "run_s", "steps_to_target", "time_to_target_s", "converged", "verdict")
    measured = {name: getattr(r, name) for name in copied}
    final_loss = r.loss_curve[max(r.loss_curve)] if r.loss_curve else None
    measured.update(final_loss=final_loss, mae=r.final_mae, allreduce_share=r.allreduce_share)
    measured["slowest_rank_step_ms"] = r.slowest_step_ms
    notes = [
        f"{r.scaling} scaling: {r.per_rank_batch} rows per rank, {r.global_batch} in all",
        f"all-reduce timed by {r.allreduce_method}",
        f"loss curve: {r.loss_curve_method}",
        f"step samples of the slowest rank ({slowest}); rank 0's median {r.rank_step_ms[0]:.4g} ms",
    ]
    samples = {
        "step_ms": list(r.step_ms[slowest]),
        "rank_step_ms": r.step_ms,
        "allreduce_ms": r.allreduce_ms,
        "loss_curve": r.loss_curve,
        "mae_curve": r.mae_curve,
    }
    return Record(key, notes=notes, seed=r.seed, steps=r.steps, measured=measured, samples=samples)


def main(args: argparse.Namespace) -> int:
    sizes = sorted(set(int_list(args.nproc, "--nproc", MAX_WORLD_SIZE, "world sizes")))
    backends = {}
    for world_size in sizes:  # a setup that cannot run is refused before a run folder exists
        try:
            backends[world_size] = check_setup(world_size, args.device, args.backend, args.scaling)
        except ValueError as err:
            raise UsageError(str(err)) from None
    history = history_target(args.out, args.db, args.no_history)
    session = open_session(args.out, vars(args), latest="latest-ddp", history=history)
    writer = session.writer
    results: dict[int, DDPResult] = {}
    for world_size in sizes:
        batch = per_rank_batch(args.scaling, world_size)
        key = _key(args.device, batch, args.threads_per_rank, world_size, backends[world_size])
        writer.records.append(Record(key, status="failed", reason=NOT_MEASURED, seed=args.seed))
    writer.flush()

    flags = ("device", "backend", "scaling", "steps", "seed", "threads_per_rank", "timeout")
    launch = [getattr(args, flag) for flag in flags]  # run_ddp's arguments after the world size

    def measure(world_size: int) -> None:
        index = sizes.index(world_size)
        print(f"ddp: world size {world_size} ({args.device}) ...", file=sys.stderr)
        try:
            result = run_ddp(world_size, *launch)
        except KeyboardInterrupt:
            writer.records[index] = replace(writer.records[index], reason=INTERRUPTED)
            writer.flush()
            raise
        assert result is not None  # one node: this launch holds global rank 0
        results[world_size] = result
        writer.records[index] = ddp_record(result)
        writer.flush()
        outcome = result.reason or result.verdict
        print(f"ddp: world size {world_size}: {result.status} {outcome}", file=sys.stderr)

    session.loop(sizes, measure)
    writer.records = [r for r in writer.records if r.reason != NOT_MEASURED]  # after an interrupt
    with signals_ignored():
        derived = derive(writer.records, writer.env, NetConfig())
        one = results.get(1)
        for record in writer.records:
            result = results.get(record.key.world_size)
            if one is not None and one.ok and result is not None and result.ok:
                derived.setdefault(record.key, {})["scaling_efficiency"] = scaling_efficiency(result, one)
        writer.derived = derived
        writer.flush()

    def render() -> str:
        df = writer.frame()
        writer.settings["wall_s"] = time.perf_counter() - session.started
        atomic_write(
            session.run_dir / "report.md",
            render_ddp_report(df, writer.env, writer.settings, session.run_dir, not args.no_figures),
        )
        return scaling_table(df)

    return session.finish(render)
