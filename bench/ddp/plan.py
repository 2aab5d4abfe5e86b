"""One DDP configuration, checked before any process starts: device, backend, scaling, batch per rank.
The launcher refuses an impossible one before torchrun starts; the worker parses the same fields.

    python -c "from bench.ddp.plan import DDPPlan; print(DDPPlan(scaling='strong').per_rank_batch(4))"
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

import torch

from sumnet.evaluate import DEFAULT_TARGET_MAE

GLOBAL_BATCH = 32  # the article's batch: rows per rank (weak scaling) or split over ranks (strong)
SCALINGS = ("weak", "strong")
DEVICES = ("cpu", "cuda")
BACKENDS = ("gloo", "nccl")
RANKS_PER_CORE = 4  # on cpu, ranks one node may start: each is a process with torch loaded
RANKS_PER_GPU = 4  # on cuda with gloo, ranks sharing one GPU (nccl: one per GPU)


def per_rank_batch(scaling: str, world_size: int) -> int:
    """Rows each rank draws per step: 32 (weak), or 32 / world_size (strong; must divide evenly)."""
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    if scaling == "weak":
        return GLOBAL_BATCH
    if scaling != "strong":
        raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
    if GLOBAL_BATCH % world_size:
        divisors = ", ".join(str(d) for d in range(1, GLOBAL_BATCH + 1) if GLOBAL_BATCH % d == 0)
        raise ValueError(
            f"strong scaling splits a global batch of {GLOBAL_BATCH} rows evenly over the ranks: "
            f"world size {world_size} does not divide {GLOBAL_BATCH} (use {divisors})"
        )
    return GLOBAL_BATCH // world_size


def resolve_backend(device: str, backend: str | None) -> tuple[str, str]:
    """(backend, reason): gloo on cpu; nccl on cuda unless gloo is asked for. Raises ValueError."""
    if device not in DEVICES:
        raise ValueError(
            f"DDP runs on {' or '.join(DEVICES)}, got {device!r} (each rank takes GPU local_rank on cuda)"
        )
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if device == "cpu":
        if backend == "nccl":
            raise ValueError("the nccl backend needs CUDA tensors: use --backend gloo with --device cpu")
        return "gloo", "requested" if backend else "cpu: gloo is the CPU backend"
    if backend is None:
        return "nccl", "cuda: nccl is the GPU backend"
    return backend, "requested"


def check_devices(device: str, backend: str, local_world_size: int) -> None:
    """Refuse what this machine cannot hold: more ranks than RANKS_PER_CORE per core on cpu or
    RANKS_PER_GPU per GPU on cuda, no GPU for cuda, or NCCL with fewer GPUs than ranks."""
    if device == "cpu":
        cores = os.cpu_count() or 1
        bound, why = RANKS_PER_CORE * cores, f"{RANKS_PER_CORE} per core, {cores} cores"
    else:
        if not torch.cuda.is_available():
            raise ValueError("device cuda requested but torch.cuda.is_available() is False")
        gpus = torch.cuda.device_count()
        if backend == "nccl" and local_world_size > gpus:
            raise ValueError(
                f"NCCL needs one GPU per rank: {local_world_size} ranks on this node but {gpus} GPU(s) "
                "(use --backend gloo to share a GPU between ranks)"
            )
        if backend == "nccl" and not torch.distributed.is_nccl_available():
            raise ValueError("this torch build has no NCCL: use --backend gloo")
        bound, why = RANKS_PER_GPU * gpus, f"{RANKS_PER_GPU} per GPU, {gpus} GPU(s)"
    if local_world_size > bound:
        raise ValueError(
            f"{local_world_size} ranks on one node is more than this machine holds: at most {bound} ({why})"
        )


@dataclass(frozen=True)
class DDPPlan:
    """What every rank runs; the world size comes from torchrun."""

    device: str = "cpu"  # cpu or cuda (rank r takes GPU local_rank % GPUs)
    backend: str = "gloo"  # torch.distributed backend: gloo (cpu, cuda) or nccl (cuda)
    scaling: str = "weak"  # weak: 32 rows per rank; strong: 32 rows split over the ranks
    steps: int = 3000  # optimizer steps per rank (the article's 3000)
    seed: int = 0  # initial weights (same on every rank) and rank 0's batches
    threads_per_rank: int = 1  # torch.set_num_threads in each rank
    block_steps: int = 100  # steps per timed block; loss and held-out MAE are read between blocks
    warmup_blocks: int = 1  # blocks after the first call kept out of the steady-state samples
    target_mae: float = DEFAULT_TARGET_MAE  # held-out MAE that counts as learned
    init_timeout_s: float = 60.0  # torch.distributed timeout: joining the group and every collective

    def __post_init__(self) -> None:
        resolve_backend(self.device, self.backend)
        per_rank_batch(self.scaling, 1)  # refuses an unknown scaling
        for name in ("steps", "threads_per_rank", "block_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_blocks < 0:
            raise ValueError(f"warmup_blocks must be >= 0, got {self.warmup_blocks}")
        if not (self.target_mae > 0 and self.init_timeout_s > 0):
            raise ValueError("target_mae and init_timeout_s must be > 0")

    def per_rank_batch(self, world_size: int) -> int:
        return per_rank_batch(self.scaling, world_size)

    def global_batch(self, world_size: int) -> int:
        return self.per_rank_batch(world_size) * world_size

    def worker_args(self) -> list[str]:
        """The worker's command-line flags for this plan (bench.ddp.worker parses them back)."""
        return [arg for f in fields(self) for arg in (flag_of(f.name), str(getattr(self, f.name)))]


def flag_of(field_name: str) -> str:
    """A DDPPlan field's worker flag: `--block-steps`; threads_per_rank is `--threads`."""
    return "--" + {"threads_per_rank": "threads"}.get(field_name, field_name).replace("_", "-")


def check_setup(world_size: int, device: str, backend: str | None, scaling: str, nnodes: int = 1) -> str:
    """The backend a launch will use; ValueError for a setup that cannot run (a bad device or
    backend, nccl on cpu, a strong-scaling size that does not divide 32, too few GPUs, ranks that do
    not split evenly over the nodes). Checked before anything starts or is written."""
    backend, _ = resolve_backend(device, backend)
    if nnodes < 1 or world_size % nnodes:
        raise ValueError(f"world size {world_size} does not split evenly over {nnodes} node(s)")
    per_rank_batch(scaling, world_size)
    check_devices(device, backend, world_size // nnodes)
    return backend
