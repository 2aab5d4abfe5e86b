"""Execution modes: how one configuration's training step and forward pass are built.

Every mode runs the article's step (a fresh batch drawn on the device, forward, MSE, backward,
Adam) from `sumnet`, and exposes the same small interface, so the harness times them alike.

    python -c "from bench.modes import build_trainer; t = build_trainer('eager', 'cpu'); print(t.step())"
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from sumnet.data import make_batch, make_generator
from sumnet.model import NetConfig
from sumnet.train import TrainConfig, init_net, make_optimizer, train_step

SLOWDOWN_ENV = "SUMNET_BENCH_SLOWDOWN"  # e.g. 0.25: every training step spins 25% longer (gate validation)


@dataclass
class Trainer:
    """One configuration, ready to time.

    step: one article iteration (fresh batch + update); returns the loss (a device tensor or float).
    predict: eval-mode forward without gradients, for held-out metrics; (N, 30) -> (N, 1) tensor.
    inference: given an input batch already on the device, a zero-argument callable that runs
        this mode's forward on it under torch.inference_mode (what the inference sweep times).
    """

    step: Callable[[], torch.Tensor | float]
    predict: Callable[[torch.Tensor], torch.Tensor]
    inference: Callable[[torch.Tensor], Callable[[], object]]
    notes: list[str] = field(default_factory=list)  # e.g. which Adam implementation


def _allow_many_recompiles() -> None:
    """Each batch size of the inference sweep compiles its own graph; don't hit dynamo's limit of 8."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), 64))


def eval_predict(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        was_training = net.training
        net.eval()
        out = net(x)
        net.train(was_training)
        return out

    return predict


def inference_runner(
    model: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], Callable[[], object]]:
    def make(x: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return model(x)

        return run

    return make


def _module_trainer(mode: str, device: torch.device, net_config: NetConfig, config: TrainConfig) -> Trainer:
    """eager, compile and compile-cudagraphs: the sumnet step around a (compiled) module."""
    net = init_net(net_config, config.seed, device)
    optimizer = make_optimizer(net, config.lr)
    generator = make_generator(config.seed, device)
    model: Callable[[torch.Tensor], torch.Tensor] = net
    infer_model: Callable[[torch.Tensor], torch.Tensor] = net
    mark_step = None
    if mode == "compile":
        _allow_many_recompiles()
        model = torch.compile(net)
        infer_model = torch.compile(net, dynamic=False)
    elif mode == "compile-cudagraphs":
        _allow_many_recompiles()
        model = torch.compile(net, mode="reduce-overhead")
        infer_model = torch.compile(net, mode="reduce-overhead", dynamic=False)
        mark_step = torch.compiler.cudagraph_mark_step_begin
    elif mode != "eager":
        raise ValueError(f"not a module mode: {mode}")
    batch_size, input_size = config.batch_size, net_config.input_size

    def step() -> torch.Tensor:
        if mark_step is not None:
            mark_step()  # a new iteration: outputs of the last graph replay may be overwritten
        return train_step(model, optimizer, *make_batch(batch_size, generator, input_size))

    return Trainer(step=step, predict=eval_predict(net), inference=inference_runner(infer_model))


# Modes built in their own modules: mode -> "module:function(device, net_config, config) -> Trainer".
_EXTERNAL_BUILDERS = {
    "compile-fullstep": "bench.fullstep:build_trainer",
    "cudagraph": "bench.cuda_graph_step:build_trainer",
    "numpy-reference": "bench.numpy_reference:build_trainer",
}


def _with_slowdown(step: Callable[[], object], factor: float, device: torch.device) -> Callable[[], object]:
    """Make every step take (1 + factor) times as long by spinning after it: a real, known slowdown."""
    from bench.timing import synchronize

    def slowed() -> object:
        start = time.perf_counter()
        out = step()
        synchronize(device)
        deadline = start + (time.perf_counter() - start) * (1 + factor)
        while time.perf_counter() < deadline:
            pass
        return out

    return slowed


def build_trainer(
    mode: str,
    device: torch.device | str,
    net_config: NetConfig = NetConfig(),
    config: TrainConfig = TrainConfig(),
) -> Trainer:
    """The Trainer for `mode` on `device`, with fresh weights from `config.seed`."""
    device = torch.device(device)
    if mode in _EXTERNAL_BUILDERS:
        module_name, func = _EXTERNAL_BUILDERS[mode].split(":")
        trainer = getattr(importlib.import_module(module_name), func)(device, net_config, config)
    else:
        trainer = _module_trainer(mode, device, net_config, config)
    slowdown = float(os.environ.get(SLOWDOWN_ENV, "0") or 0)
    if slowdown > 0:
        trainer.step = _with_slowdown(trainer.step, slowdown, device)
        trainer.notes.append(f"{SLOWDOWN_ENV}={slowdown}: steps deliberately slowed")
    return trainer
