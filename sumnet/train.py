"""The article's training step (Adam lr 1e-3, MSE, batch 32) and a loop around it.

`train_step` is the one step every device and mode uses; it never forces a host sync, so
the caller decides when to read the loss.

    python -c "from sumnet.train import TrainConfig, train; print(train(TrainConfig(steps=300)).final_loss)"
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from sumnet.data import make_batch, make_generator
from sumnet.model import Net, NetConfig

# Bounds on what a run can honour; the CLIs refuse anything outside them with one line.
MAX_STEPS = 10_000_000  # hours of eager CPU steps; beyond it a typo, not a run
MAX_BATCH_SIZE = 1_048_576  # 2**20 rows: a CPU step's peak memory is then in gigabytes
# Adam moves each weight by about lr per step: below MIN_LR nothing moves, above MAX_LR the Net only
# diverges, and from lr ~1e37 Adam's float32 step size overflows (a RuntimeError, not a result).
MIN_LR, MAX_LR = 1e-8, 1.0


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000  # batch updates; the article calls each one an "epoch"
    batch_size: int = 32  # fresh random rows per step
    lr: float = 1e-3  # Adam learning rate
    seed: int = 0  # seeds both the initial weights and the batch generator

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be from 1 to {MAX_STEPS:,}, got {self.steps:,}")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be from 1 to {MAX_BATCH_SIZE:,}, got {self.batch_size:,}")
        if not (math.isfinite(self.lr) and MIN_LR <= self.lr <= MAX_LR):  # also refuses nan
            raise ValueError(f"lr must be from {MIN_LR:g} to {MAX_LR:g}, got {self.lr:g}")


def init_net(net_config: NetConfig, seed: int, device: torch.device | str = "cpu") -> Net:
    """A Net with PyTorch's default init drawn from `seed` on the CPU (so every device starts from the
    same weights), then moved to `device`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Net(net_config)
    return net.to(device)


def make_optimizer(net: nn.Module, lr: float = 1e-3) -> torch.optim.Adam:
    """The article's optimizer: Adam with PyTorch's defaults and the given learning rate."""
    return torch.optim.Adam(net.parameters(), lr=lr)


def train_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
) -> torch.Tensor:
    """One batch update; returns the loss as a detached device tensor (no host sync)."""
    loss = F.mse_loss(model(inputs), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@dataclass
class TrainResult:
    net: Net
    losses: dict[int, float] = field(default_factory=dict)  # step -> loss, every log_every steps

    @property
    def final_loss(self) -> float:
        return self.losses[max(self.losses)] if self.losses else float("nan")


def train(
    config: TrainConfig = TrainConfig(),
    net_config: NetConfig = NetConfig(),
    device: torch.device | str = "cpu",
    *,
    log_every: int = 100,
    on_log: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a fresh Net; log the loss every `log_every` steps (the only host syncs)."""
    net = init_net(net_config, config.seed, device)
    optimizer = make_optimizer(net, config.lr)
    generator = make_generator(config.seed, device)
    result = TrainResult(net=net)
    for step in range(1, config.steps + 1):
        loss = train_step(net, optimizer, *make_batch(config.batch_size, generator, net_config.input_size))
        if log_every and (step % log_every == 0 or step == config.steps):
            result.losses[step] = loss.item()
            if on_log is not None:
                on_log(step, result.losses[step])
    return result
