"""`eager`, `compile` and `compile-cudagraphs`: the sumnet step around a plain or compiled Net.

python -c "from bench.modes import build_trainer; t = build_trainer('compile', 'cpu'); print(t.step())"
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.modes.base import Trainer, eval_predict, inference_runner
from sumnet.data import make_batch, make_generator
from sumnet.model import NetConfig
from sumnet.train import TrainConfig, init_net, make_optimizer, train_step


def _allow_many_recompiles() -> None:
    """Each batch size of the inference sweep compiles its own graph; don't hit dynamo's limit of 8."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), 64))


def build(
    device: torch.device, net_config: NetConfig, config: TrainConfig, *, compile_mode: str | None = None
) -> Trainer:
    """The sumnet step on `init_net`'s Net; compiled with `compile_mode` unless it is None (eager)."""
    net = init_net(net_config, config.seed, device)
    optimizer = make_optimizer(net, config.lr)
    generator = make_generator(config.seed, device)
    model: Callable[[torch.Tensor], torch.Tensor] = net
    infer_model: Callable[[torch.Tensor], torch.Tensor] = net
    mark_step = None
    notes = ["torch.optim.Adam (default implementation for this device)"]
    if compile_mode is not None:
        _allow_many_recompiles()
        model = torch.compile(net, mode=compile_mode)
        infer_model = torch.compile(net, mode=compile_mode, dynamic=False)
        notes.append(f"torch.compile(net, mode={compile_mode!r}); Adam and the batch draw stay eager")
        if compile_mode == "reduce-overhead":
            mark_step = torch.compiler.cudagraph_mark_step_begin
    batch_size, input_size = config.batch_size, net_config.input_size

    def step() -> torch.Tensor:
        if mark_step is not None:
            mark_step()  # a new iteration: outputs of the last graph replay may be overwritten
        return train_step(model, optimizer, *make_batch(batch_size, generator, input_size))

    return Trainer(step=step, predict=eval_predict(net), inference=inference_runner(infer_model), notes=notes)
