"""`compile-fullstep`: forward, backward and the Adam update compiled as one function.

The step is written functionally (`torch.func.grad_and_value` over `functional_call`, Adam in
torch ops matching `torch.optim.Adam` op for op), traced into one aten graph (`make_fx`) and
compiled by inductor, with the C++ wrapper on the CPU: no dynamo frame evaluation or guards at run
time, which at this Net's size cost as much as the arithmetic (docs/validation.md). Fallbacks:
torch.compile(fullgraph=True), then torch.compile; Trainer.notes says which ran and why.

The state is updated in place, in the eager Net's tensors, so predict and inference see the trained
weights. The batch is drawn eagerly into an int64 buffer; scaling and targets are in the graph. On
CUDA the draw and the compiled step are captured as one CUDA graph (a failed capture is noted).

    python -c "import torch; from bench.modes.fullstep import build_trainer; from sumnet.model import NetConfig; from sumnet.train import TrainConfig; t = build_trainer(torch.device('cpu'), NetConfig(), TrainConfig()); print([float(t.step()) for _ in range(3)])"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.fx.experimental.proxy_tensor import make_fx
from torch.nn import functional as F

from bench.errors import first_line
from bench.modes.base import BETA1, BETA2, EPS, Trainer, eval_predict, inference_runner
from sumnet.data import HIGH, LOW, SCALE, make_generator
from sumnet.model import Net, NetConfig
from sumnet.train import TrainConfig, init_net

Params = dict[str, torch.Tensor]


@dataclass
class AdamState:
    """Adam's state for a dict of parameters. `step` is a float32 0-dim tensor, as torch.optim.Adam's:
    an int would recompile as it counts, and inductor drops in-place updates to a 0-dim float64."""

    exp_avg: Params
    exp_avg_sq: Params
    step: torch.Tensor

    @classmethod
    def zeros_like(cls, params: Params) -> AdamState:
        device = next(iter(params.values())).device
        return cls(
            exp_avg={k: torch.zeros_like(p) for k, p in params.items()},
            exp_avg_sq={k: torch.zeros_like(p) for k, p in params.items()},
            step=torch.zeros((), dtype=torch.float32, device=device),
        )


def adam_update_(params: Params, grads: Params, state: AdamState, lr: float) -> None:
    """torch.optim.Adam's single-tensor update, in place, to the last bit when run eagerly on the CPU:
    bias corrections in float64 (torch's Python floats), each entering as one rounded float32 scalar."""
    state.step.add_(1)
    step = state.step.to(torch.float64)
    bias_correction1 = 1 - BETA1**step
    bias_correction2_sqrt = (1 - BETA2**step).sqrt()
    step_size = lr / bias_correction1
    for name, param in params.items():
        grad, exp_avg, exp_avg_sq = grads[name], state.exp_avg[name], state.exp_avg_sq[name]
        exp_avg.lerp_(grad, 1 - BETA1)
        exp_avg_sq.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt.to(param.dtype)).add_(EPS)
        # addcdiv_(m, denom, value=-step_size), whose CPU kernel computes (value * m) / denom
        param.sub_(step_size.to(param.dtype) * exp_avg / denom)


def make_step_function(net: Net, lr: float) -> Callable[..., torch.Tensor]:
    """step(params, state, ints (B, input_size) int64) -> loss: scale, forward, MSE, grads, Adam;
    params and state are updated in place."""

    def loss_fn(params: Params, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(torch.func.functional_call(net, params, (inputs,)), targets)

    grad_and_loss = torch.func.grad_and_value(loss_fn)

    def step(params: Params, state: AdamState, ints: torch.Tensor) -> torch.Tensor:
        inputs = ints.to(torch.float32) / SCALE  # as sumnet.data.make_batch
        targets = inputs.sum(dim=1, keepdim=True)
        grads, loss = grad_and_loss(params, inputs, targets)
        with torch.no_grad():
            adam_update_(params, grads, state, lr)
        return loss.detach()

    return step


def flat_step_function(names: list[str], step: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """step over flat tensors, as an FX graph takes them: (ints, *params, *exp_avg, *exp_avg_sq, step_count)."""
    n = len(names)

    def flat(ints: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, tensors[:n]))
        state = AdamState(
            dict(zip(names, tensors[n : 2 * n])), dict(zip(names, tensors[2 * n : 3 * n])), tensors[-1]
        )
        return step(params, state, ints)

    return flat


def flat_tensors(params: Params, state: AdamState) -> list[torch.Tensor]:
    """The persistent tensors in flat_step_function's order (after the batch)."""
    return [*params.values(), *state.exp_avg.values(), *state.exp_avg_sq.values(), state.step]


def _graph_compile(flat: Callable[..., torch.Tensor], args: list[torch.Tensor], cpp_wrapper: bool):
    """Trace `flat` to one aten graph (make_fx, fake tensors: nothing runs) and compile it with inductor."""
    from torch._inductor import compile as inductor_compile

    graph = make_fx(flat, tracing_mode="fake")(*args)
    options = {"cpp_wrapper": True} if cpp_wrapper else None  # C++ calls the kernels, not Python
    return inductor_compile(graph, args, options=options)


def compile_step(
    flat: Callable[..., torch.Tensor], args: list[torch.Tensor], device: torch.device
) -> tuple[Callable[..., torch.Tensor], str, list[str]]:
    """Compile the whole step: (function of *args, how, failures on the way). Each way in turn must
    also run once on copies of args; the last, torch.compile, cannot fail (dynamo falls back to eager)."""
    attempts: list[tuple[str, Callable[[], Callable[..., torch.Tensor]]]] = []
    if device.type == "cpu":
        attempts.append(("make_fx + inductor (cpp_wrapper)", lambda: _graph_compile(flat, args, True)))
    attempts += [
        ("make_fx + inductor", lambda: _graph_compile(flat, args, False)),
        ("torch.compile(fullgraph=True)", lambda: torch.compile(flat, fullgraph=True, dynamic=False)),
    ]
    failures = []
    for how, attempt in attempts:
        try:
            compiled = attempt()
            compiled(*[a.clone() for a in args])  # torch.compile fails, if at all, when first called
            return compiled, how, failures
        except Exception as err:  # any compiler failure: fall back to the next way, and say why
            message = first_line(err)[:200]
            failures.append(f"{how} failed ({type(err).__name__}: {message})")
    return torch.compile(flat, dynamic=False), "torch.compile", failures


def capture_step(
    compiled: Callable[..., torch.Tensor],
    args: list[torch.Tensor],
    draw: Callable[[], object],
    generator: torch.Generator,
    device: torch.device,
) -> Callable[[], torch.Tensor]:
    """On CUDA: the batch draw and the compiled step captured as one CUDA graph; returns a replay
    that runs one whole step and gives the (static) loss. Nothing of the training state changes
    here: the warm-up runs on copies, and capture records without running."""
    graph = torch.cuda.CUDAGraph()
    if not hasattr(graph, "register_generator_state"):
        raise RuntimeError(f"torch {torch.__version__} cannot register a generator with a CUDA graph")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # PyTorch's recipe: warm up on a side stream before capture
        for _ in range(3):
            compiled(*[a.clone() for a in args])
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    graph.register_generator_state(generator)
    with torch.cuda.graph(graph):
        draw()
        loss = compiled(*args)

    def replay() -> torch.Tensor:
        graph.replay()
        return loss  # overwritten by the next replay; the harness reads it at block ends

    return replay


def build_trainer(device: torch.device, net_config: NetConfig, config: TrainConfig) -> Trainer:
    """The compile-fullstep Trainer from init_net's weights; the first step() compiles (first-call time)."""
    device = torch.device(device)
    net = init_net(net_config, config.seed, device)
    # Detached aliases of the Net's parameters: the compiled step updates them in place, so the
    # eager Net (used by predict and inference) always holds the current weights.
    params = {name: p.detach() for name, p in net.named_parameters()}
    state = AdamState.zeros_like(params)
    generator = make_generator(config.seed, device)
    ints = torch.empty((config.batch_size, net_config.input_size), dtype=torch.int64, device=device)
    args = [ints, *flat_tensors(params, state)]
    flat = flat_step_function(list(params), make_step_function(net, config.lr))
    notes: list[str] = []
    compiled: list[Callable[..., torch.Tensor]] = []
    replayed: list[Callable[[], torch.Tensor]] = []

    def draw() -> None:
        torch.randint(LOW, HIGH + 1, ints.shape, generator=generator, out=ints)  # make_batch's draw

    def compile_and_capture() -> None:
        fn, how, failures = compile_step(flat, args, device)
        compiled.append(fn)
        notes.extend([*failures, f"{how}: grad_and_value + functional Adam (torch.optim.Adam defaults)"])
        if device.type == "cuda":  # launch-bound there: replay the whole step as one CUDA graph
            before = generator.get_state()
            try:
                replayed.append(capture_step(fn, args, draw, generator, device))
                notes.append("CUDA: batch draw and compiled step replayed as one CUDA graph per step")
            except Exception as err:  # any capture failure: run uncaptured, and say why
                generator.set_state(before)
                notes.append(
                    f"CUDA graph capture failed ({type(err).__name__}: {first_line(err)[:200]}): uncaptured"
                )

    def step() -> torch.Tensor:
        if not compiled:
            compile_and_capture()
        if replayed:
            return replayed[0]()
        draw()
        return compiled[0](*args)

    return Trainer(step=step, predict=eval_predict(net), inference=inference_runner(net), notes=notes)
