"""torchrun entry point: the article's Net and step under DistributedDataParallel, timed per rank.

Every rank builds the Net from the same seed, draws its own batches on its device and times
`sumnet.train.train_step` on the DDP-wrapped Net with `bench.measure.workloads.train_once`'s block
loop. Between blocks, untimed, the ranks average their losses and rank 0 evaluates the held-out MAE;
at the end rank 0 gathers every rank's samples into one JSON file. All-reduce time comes from a DDP
communication hook around the default allreduce hook.

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m bench.ddp.worker --out ddp.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
from dataclasses import asdict, fields
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel

from bench.ddp import die_with_parent
from bench.ddp.plan import BACKENDS, DEVICES, SCALINGS, DDPPlan, check_devices, flag_of, resolve_backend
from bench.errors import first_line
from bench.measure.timing import clock_for, synchronize
from bench.measure.workloads import train_once
from bench.store.run_folder import atomic_write
from sumnet.data import make_batch, make_generator, make_test_set
from sumnet.evaluate import evaluate
from sumnet.model import NetConfig, count_parameters
from sumnet.train import init_net, make_optimizer, train_step

RESULT_SCHEMA = "sumnet-ddp/1"
ENV_FAIL_RANK = "SUMNET_DDP_FAIL_RANK"  # failure tests: this global rank raises after its first step
ENV_HANG_RANK = "SUMNET_DDP_HANG_RANK"  # failure tests: this global rank never joins the group
RANK_SEED_STRIDE = 1_000_003  # rank r draws batches from seed + r * stride: rank 0 matches one process
LOSS_CURVE_METHOD = "mean over ranks (all_reduce SUM / world size between blocks, untimed)"
ALLREDUCE_METHOD = {
    "perf_counter": "ddp comm hook around allreduce_hook: perf_counter from hook call to future done",
    "cuda-event": "ddp comm hook around allreduce_hook: CUDA events at hook call and future done",
}


class AllreduceTimer:
    """A DDP communication hook: the default allreduce hook, timed from the hook's call (the end of
    backward) to completion, so waiting for the slowest rank counts. The Net's 22 KB of gradients
    fit one bucket: one call per step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = clock_for(device) == "cuda-event"
        self.calls = 0
        self._spans: list[tuple] = []  # (start, end): perf_counter floats, or CUDA events

    def _mark(self) -> float | torch.cuda.Event:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        with torch.cuda.device(self.device):  # the future's callback may run on another thread
            event.record()
        return event

    # No annotations on bucket and the return: DDP compares them with dist.GradBucket and Future
    # objects, and this module's `from __future__ import annotations` would make them strings.
    def hook(self, state: object, bucket):  # noqa: ANN001, ANN201
        self.calls += 1
        start = self._mark()

        def done(fut: torch.futures.Future[torch.Tensor]) -> torch.Tensor:
            self._spans.append((start, self._mark()))
            return fut.value()

        return default_hooks.allreduce_hook(None, bucket).then(done)  # type: ignore[arg-type]

    def take_seconds(self) -> float:
        """Seconds of all-reduce recorded since the last take, summed (call after the block)."""
        if self.cuda:
            synchronize(self.device)
            total = sum(start.elapsed_time(end) for start, end in self._spans) / 1e3
        else:
            total = sum(end - start for start, end in self._spans)
        self._spans.clear()
        return total


def train_rank(
    plan: DDPPlan, rank: int, local_rank: int, world_size: int
) -> tuple[dict[str, object], dict[str, object] | None]:
    """Train and time this rank: (its samples, and on rank 0 the curves and verdict, else None)."""
    device = torch.device("cpu")
    if plan.device == "cuda":
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)  # NCCL and gather_object use the current device
    batch = plan.per_rank_batch(world_size)
    net = init_net(NetConfig(), plan.seed, device)
    model = DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
    timer = AllreduceTimer(device)
    model.register_comm_hook(None, timer.hook)
    optimizer = make_optimizer(model, lr=1e-3)
    generator = make_generator(plan.seed + rank * RANK_SEED_STRIDE, device)
    test_set = make_test_set().to(device) if rank == 0 else None
    fail_rank = os.environ.get(ENV_FAIL_RANK)
    allreduce_s: list[float] = []  # seconds per step: the first call's, then one per block

    def mean_loss(loss: torch.Tensor) -> float:  # all ranks' mean (SUM then divide: gloo has no AVG)
        total = loss.clone().reshape(1)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.item() / world_size

    def after(steps: int) -> None:  # untimed, after the first call and after each block
        if not allreduce_s and fail_rank is not None and int(fail_rank) == rank:
            raise RuntimeError(f"injected failure: {ENV_FAIL_RANK}={fail_rank} (after the first step)")
        allreduce_s.append(timer.take_seconds() / steps)
        dist.barrier()  # the next block starts together: rank 0's evaluation is in nobody's timing

    result = train_once(
        lambda: train_step(model, optimizer, *make_batch(batch, generator, net.config.input_size)),
        device,
        plan,
        None if test_set is None else lambda: evaluate(net, test_set),
        loss=mean_loss,  # type: ignore[arg-type]
        after=after,
    )
    samples: dict[str, object] = {
        "rank": rank,
        "local_rank": local_rank,
        "node": int(os.environ.get("GROUP_RANK", 0)),  # torchrun's index of this rank's node
        "host": socket.gethostname(),
        "device": str(device),
        "step_ms": [s * 1e3 for s in result.step_s],
        "allreduce_ms": [s * 1e3 for s in allreduce_s[1 + plan.warmup_blocks :]],
        "allreduce_calls_per_step": timer.calls / plan.steps,
        "first_call_s": result.first_call_s,
        "run_s": result.run_s,
    }
    if result.metrics is None or result.verdict is None:
        return samples, None
    outcome: dict[str, object] = {
        "loss_curve": {str(s): v for s, v in result.loss_curve.items()},  # JSON keys are strings
        "mae_curve": {str(s): v for s, v in result.mae_curve.items()},
        "steps_to_target": result.steps_to_target,
        "time_to_target_s": result.time_to_target_s,
        "final_metrics": asdict(result.metrics),
        "converged": result.verdict.converged,
        "verdict": result.verdict.reason,
        "parameters": count_parameters(net),
    }
    return samples, outcome


def _write_result(
    path: Path, plan: DDPPlan, world_size: int, ranks: list[dict[str, object]], outcome: dict[str, object]
) -> None:
    """Rank 0's one JSON file, written whole then renamed so a reader never sees half of it."""
    clock = clock_for(str(ranks[0]["device"]))
    document = {
        "schema": RESULT_SCHEMA,
        "plan": asdict(plan),
        "world_size": world_size,
        "nnodes": int(os.environ.get("GROUP_WORLD_SIZE", 1)),  # torchrun agents, one per node
        "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", world_size)),
        "per_rank_batch": plan.per_rank_batch(world_size),
        "global_batch": plan.global_batch(world_size),
        "clock": clock,
        "allreduce_method": ALLREDUCE_METHOD[clock],
        "loss_curve_method": LOSS_CURVE_METHOD,
        "torch_version": torch.__version__,
        "ranks": ranks,  # index = global rank
        **outcome,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(document, indent=1))


def _parse(argv: list[str] | None) -> tuple[DDPPlan, Path]:
    """The flags DDPPlan.worker_args writes, one per plan field; --backend defaults by device."""
    parser = argparse.ArgumentParser(prog="bench.ddp.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON result file, written by rank 0")
    choices = {"device": DEVICES, "backend": BACKENDS, "scaling": SCALINGS}
    for f in fields(DDPPlan):
        default = None if f.name == "backend" else f.default
        kind = str if f.name in choices else type(f.default)
        parser.add_argument(
            flag_of(f.name), dest=f.name, type=kind, choices=choices.get(f.name), default=default
        )
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    args["backend"] = resolve_backend(args["device"], args["backend"])[0]
    return DDPPlan(**args), out


def _missing_ranks(store_error: str) -> list[int]:
    """Ranks a store timeout waited for: gloo's keys end in the peer's rank (`.../cpu//0/1`)."""
    keys = re.search(r"keys: (.*)", store_error)
    found = (re.search(r"/(\d+)\s*$", key) for key in keys.group(1).split(",")) if keys else ()
    return sorted({int(m.group(1)) for m in found if m})


def _join_group(plan: DDPPlan, rank: int) -> None:
    """init_process_group, with a missing peer named when the group does not form in time."""
    try:
        dist.init_process_group(plan.backend, timeout=timedelta(seconds=plan.init_timeout_s))
    except dist.DistStoreError as err:
        missing = _missing_ranks(str(err))
        who = f"rank(s) {', '.join(map(str, missing))}" if missing else "a rank"
        raise RuntimeError(
            f"rank {rank}: the process group did not form within init_timeout_s={plan.init_timeout_s:g}: "
            f"{who} never joined ({first_line(err)})"
        ) from err


@record  # torchrun's error summary then shows this rank's exception, not only its exit code
def main(argv: list[str] | None = None) -> int:
    # torchrun killed outright (out of memory) takes this rank with it; one killed before this line
    # leaves the rank to fail joining the group within init_timeout_s
    die_with_parent()
    plan, out = _parse(argv)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    plan.per_rank_batch(world_size)  # refuse a strong-scaling world size that does not divide 32
    check_devices(plan.device, plan.backend, int(os.environ.get("LOCAL_WORLD_SIZE", world_size)))
    torch.set_num_threads(plan.threads_per_rank)
    hang_rank = os.environ.get(ENV_HANG_RANK)
    if hang_rank is not None and int(hang_rank) == rank:
        print(f"rank {rank}: {ENV_HANG_RANK}={hang_rank}: never joining the process group", file=sys.stderr)
        time.sleep(1e6)  # torchrun ends this process once a peer fails at init_timeout_s
    _join_group(plan, rank)
    try:
        samples, outcome = train_rank(plan, rank, local_rank, world_size)
        gathered: list[dict[str, object]] | None = [{} for _ in range(world_size)] if rank == 0 else None
        dist.gather_object(samples, gathered, dst=0)
        if gathered is not None and outcome is not None:
            _write_result(out, plan, world_size, gathered, outcome)
        dist.barrier()  # no rank leaves (and tears the group down) before rank 0 has written
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
