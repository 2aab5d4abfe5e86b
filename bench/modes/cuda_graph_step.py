"""`cudagraph`: the article's whole step, data generation included, captured once as a CUDA graph.

One replay draws the batch from the mode's own generator, runs forward, MSE, backward and a
capturable (fused where torch has it) Adam on static tensors: one graph launch per step. PyTorch's
recipe ("CUDA Graphs", whole-network capture): warm up on a side stream, gradients to None, capture.
The first step() warms up, rewinds weights, Adam and the generator, captures and replays, so replay
k trains on eager step k's batch. A torch without `CUDAGraph.register_generator_state` draws from
the default CUDA generator, seeded with the config's seed (said in Trainer.notes).

    python -c "import torch; from bench.modes.cuda_graph_step import build_trainer; from sumnet.model import NetConfig; from sumnet.train import TrainConfig; t = build_trainer(torch.device('cuda'), NetConfig(), TrainConfig()); print([float(t.step()) for _ in range(3)])"
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext

import torch
from torch.nn import functional as F

from bench.errors import first_line
from bench.modes.base import Trainer, eval_predict, inference_runner
from sumnet.data import make_batch, make_generator
from sumnet.model import Net, NetConfig
from sumnet.train import TrainConfig, init_net, train_step

WARMUP_STEPS = 3  # PyTorch's docs warm up a few iterations on a side stream before capture


def make_capturable_adam(net: Net, lr: float) -> tuple[torch.optim.Adam, str]:
    """Adam whose step count lives on the device, so a captured step can replay it: fused if it can be."""
    try:
        return torch.optim.Adam(net.parameters(), lr=lr, capturable=True, fused=True), "fused Adam"
    except (RuntimeError, ValueError) as err:  # an older torch or a device without the fused kernel
        reason = first_line(err, type(err).__name__)
        return torch.optim.Adam(net.parameters(), lr=lr, capturable=True), f"foreach Adam (fused: {reason})"


def _adam_state_tensors(optimizer: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    for state in optimizer.state.values():
        yield from (value for value in state.values() if isinstance(value, torch.Tensor))


def warm_up_and_rewind(
    step: Callable[[], object],
    net: Net,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    steps: int = WARMUP_STEPS,
    stream_context: AbstractContextManager | None = None,
) -> None:
    """Run `steps` eager steps (inside `stream_context`: they create Adam's state), then rewind weights,
    Adam and the generator in place (the same tensors, so a capture sees them) to a fresh start."""
    generator_state = generator.get_state()  # host-side seed and offset
    with stream_context if stream_context is not None else nullcontext():
        # All on the one stream: the copy must be taken before, and put back after, the steps.
        weights = [p.detach().clone() for p in net.parameters()]
        for _ in range(steps):
            step()
        with torch.no_grad():
            for param, saved in zip(net.parameters(), weights):
                param.copy_(saved)
            for tensor in _adam_state_tensors(optimizer):
                tensor.zero_()  # exp_avg, exp_avg_sq and step all start at zero
    generator.set_state(generator_state)


def _graph_generator(
    graph: torch.cuda.CUDAGraph, device: torch.device, seed: int
) -> tuple[torch.Generator, str | None]:
    """A generator the captured graph advances on every replay, and a note when it is the default one."""
    if hasattr(graph, "register_generator_state"):
        return make_generator(seed, device), None
    generator = torch.cuda.default_generators[device.index if device.index is not None else 0]
    generator.manual_seed(seed)
    return generator, (
        f"torch {torch.__version__} has no CUDAGraph.register_generator_state: batches come from the "
        f"default CUDA generator, seeded with {seed} (global RNG state changed)"
    )


def capture_step(
    net: Net,
    optimizer: torch.optim.Optimizer,
    graph: torch.cuda.CUDAGraph,
    generator: torch.Generator,
    register_generator: bool,
    batch_size: int,
    input_size: int,
) -> torch.Tensor:
    """Warm up on a side stream, rewind, capture one whole step into `graph`; returns the static loss."""

    def eager_step() -> torch.Tensor:
        return train_step(net, optimizer, *make_batch(batch_size, generator, input_size))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    warm_up_and_rewind(eager_step, net, optimizer, generator, stream_context=torch.cuda.stream(side))
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    if register_generator:
        graph.register_generator_state(generator)
    optimizer.zero_grad(set_to_none=True)  # the captured backward allocates static .grad tensors
    with torch.cuda.graph(graph):
        inputs, targets = make_batch(batch_size, generator, input_size)
        loss = F.mse_loss(net(inputs), targets)
        loss.backward()  # no zero_grad in the graph: the captured backward writes the gradients
        optimizer.step()
    return loss.detach()


def build_trainer(device: torch.device, net_config: NetConfig, config: TrainConfig) -> Trainer:
    """The cudagraph Trainer (CUDA only); the first step() captures (see the module's docstring)."""

    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"cudagraph needs a CUDA device, not {device}: CUDA graphs exist only there")
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    net = init_net(net_config, config.seed, device)
    optimizer, adam = make_capturable_adam(net, config.lr)
    graph = torch.cuda.CUDAGraph()
    generator, generator_note = _graph_generator(graph, device, config.seed)
    static_loss: list[torch.Tensor] = []
    registered, sizes = generator_note is None, (config.batch_size, net_config.input_size)

    def step() -> torch.Tensor:
        if not static_loss:
            with torch.cuda.device(device):
                static_loss.append(capture_step(net, optimizer, graph, generator, registered, *sizes))
        graph.replay()
        return static_loss[0]  # overwritten by the next replay; the harness reads it at block ends

    notes = [f"one CUDA graph per step: batch, forward, backward, {adam} (capturable)"]
    notes.append(generator_note or "batches from the mode's own generator, registered with the graph")
    notes.append("predict and inference run the eager Net, which shares the graph's weights")
    return Trainer(step=step, predict=eval_predict(net), inference=inference_runner(net), notes=notes)
