"""`fused`: the article's whole training step in ONE Triton kernel (CUDA; CPU only in the interpreter).

One launch draws the batch (Philox), runs forward, MSE, backward and Adam in float32, and can loop
over K steps with the weights and Adam moments in one CTA's registers (bench/modes/fused_kernel.py).
On CUDA each launch is captured once in a CUDA graph and replayed. fp32 dots by default, "tf32x3"
behind `precision=`; plain tf32 does not converge. The batch has make_batch's distribution, not its
draws (`u % 101 / 100` of a Philox counter per element: a modulo bias of 2.4e-8 relative).
`Trainer.step()` runs ONE step, as every mode is timed; `train_steps(k)` runs k in one launch.

    .venv/bin/python -m pytest -q tests/test_fused.py   # interpreter tests on the CPU, CUDA tests on a GPU
    python -c "import torch; from bench.modes.fused import build_trainer; from sumnet.model import NetConfig; from sumnet.train import TrainConfig; t = build_trainer(torch.device('cuda'), NetConfig(), TrainConfig()); print([float(t.step()) for _ in range(3)])"
    TRITON_INTERPRET=1 python -c "import torch; from bench.modes.fused import FusedTrainer; from sumnet.model import NetConfig; from sumnet.train import TrainConfig; print(FusedTrainer(torch.device('cpu'), NetConfig(), TrainConfig()).train_steps(3))"
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from contextlib import nullcontext
from types import ModuleType

import torch
from torch.func import functional_call

from bench.modes.base import Trainer, inference_runner
from sumnet.model import Net, NetConfig
from sumnet.train import TrainConfig, init_net

INTERPRET_ENV = "TRITON_INTERPRET"  # "1": Triton's interpreter runs kernels on CPU tensors (tests)
DEFAULT_PRECISION = "ieee"  # fp32 dots; "tf32x3" is the faster near-fp32 option
DEFAULT_NUM_WARPS = 8  # fewest spilled bytes in all at sm_90 (docs/validation.md); not timed on a GPU yet
MAX_PADDED_BATCH = 128  # the batch tile lives in registers too: (128, 64) floats per activation
MAX_PADDED_WIDTH = 128  # a (128, 128) weight tile and its two moments: 49k of one SM's 64k registers
_NOT_CUDA = "fused runs on cuda only (set TRITON_INTERPRET=1 to run it on the CPU interpreter for tests)"


def _interpreting() -> bool:
    return os.environ.get(INTERPRET_ENV, "0").strip().lower() in ("1", "true", "on", "yes")


def unavailable_reason(device: torch.device | str) -> str | None:
    """Why `fused` cannot run on `device` here, or None when it can."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    device = torch.device(device)
    if device.type == "cuda":
        if _interpreting():
            return (
                f"{INTERPRET_ENV}=1 is set: the kernel would run in Triton's CPU interpreter, not on the GPU"
            )
        if not torch.cuda.is_available():
            return "torch.cuda.is_available() is False: no CUDA GPU or driver"
        return None
    if device.type == "cpu" and _interpreting():
        return _late_interpreter_reason()
    return _NOT_CUDA


def _late_interpreter_reason() -> str | None:
    """Why the interpreter cannot run the kernel although TRITON_INTERPRET=1: `@triton.jit` reads the
    variable when it decorates, so triton's library follows it as it was when triton was first imported."""
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    if isinstance(tl.randint, InterpretedFunction):
        return None
    return (
        f"triton was imported before {INTERPRET_ENV}=1 was set, so its library is compiled, not "
        "interpreted: set the variable before anything imports triton (e.g. at the top of tests/conftest.py)"
    )


def _check_config(net_config: NetConfig, config: TrainConfig, precision: str, kernel: ModuleType) -> None:
    if net_config.hidden_layers != 2:
        raise ValueError(f"fused is written for 2 hidden layers, got {net_config.hidden_layers}")
    if precision not in kernel.PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(kernel.PRECISIONS)}, got {precision!r}")
    if kernel.padded(config.batch_size) > MAX_PADDED_BATCH:
        raise ValueError(
            f"fused keeps the batch on chip: batch_size <= {MAX_PADDED_BATCH}, got {config.batch_size}"
        )
    widest = max(net_config.input_size, net_config.hidden_size)
    if kernel.padded(widest) > MAX_PADDED_WIDTH:
        raise ValueError(f"fused keeps the weights on chip: widths <= {MAX_PADDED_WIDTH}, got {widest}")


class FusedTrainer:
    """The Net's parameters and Adam state in padded device buffers, trained by the fused kernel.

    `params`, `exp_avg` and `exp_avg_sq` are flat float32 buffers in `bench.modes.fused_kernel.Layout`;
    `steps_done` (int64) counts steps, `scalars` (float64) holds beta1**t, beta2**t and lr. All of
    them stay on the device, so a captured launch continues from the last one when replayed.
    """

    def __init__(
        self,
        device: torch.device | str,
        net_config: NetConfig,
        config: TrainConfig,
        *,
        precision: str = DEFAULT_PRECISION,
        num_warps: int = DEFAULT_NUM_WARPS,
        cuda_graph: bool = True,
    ) -> None:
        from bench.modes import fused_kernel as kernel  # on first use: it imports triton, maybe absent

        _check_config(net_config, config, precision, kernel)
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device, self.net_config, self.config = device, net_config, config
        self.precision, self.num_warps = precision, num_warps
        self.use_graph = cuda_graph and device.type == "cuda"
        self._kernel = kernel
        self.layout = kernel.layout(net_config.input_size, net_config.hidden_size)
        f32 = dict(dtype=torch.float32, device=device)
        self.params = torch.zeros(self.layout.size, **f32)
        self.exp_avg = torch.zeros(self.layout.size, **f32)
        self.exp_avg_sq = torch.zeros(self.layout.size, **f32)
        self.steps_done = torch.zeros(1, dtype=torch.int64, device=device)
        self.scalars = torch.tensor([1.0, 1.0, config.lr], dtype=torch.float64, device=device)
        self._unused = torch.zeros(1, **f32)  # for pointer arguments a launch does not read
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._step_replay: tuple[Callable[[], None], torch.Tensor] | None = None
        self.net: Net = init_net(net_config, config.seed, device)  # the forward predict() calls
        with torch.no_grad():
            for name, view in self.parameters().items():
                view.copy_(self.net.get_parameter(name))

    # --- the state, as the Net names it ---------------------------------------------------------
    def views(self, buffer: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of params, exp_avg or exp_avg_sq, named and shaped as the Net's parameters."""
        lay, n_in, n_h = self.layout, self.net_config.input_size, self.net_config.hidden_size
        w1 = buffer[lay.w1 : lay.b1].view(lay.in_p, lay.h_p)[:n_in, :n_h].T  # (60, 30), a view
        w2 = buffer[lay.w2 : lay.b2].view(lay.h_p, lay.h_p)[:n_h, :n_h].T  # (60, 60)
        return {
            "hidden.0.weight": w1,
            "hidden.0.bias": buffer[lay.b1 : lay.b1 + n_h],
            "hidden.1.weight": w2,
            "hidden.1.bias": buffer[lay.b2 : lay.b2 + n_h],
            "out.weight": buffer[lay.w3 : lay.w3 + n_h].view(1, n_h),
            "out.bias": buffer[lay.b3 : lay.b3 + 1],
        }

    def parameters(self) -> dict[str, torch.Tensor]:
        """Views of the trained parameters, named and shaped as the Net's (writing them writes the state)."""
        return self.views(self.params)

    def _state(self) -> list[torch.Tensor]:
        return [self.params, self.exp_avg, self.exp_avg_sq, self.steps_done, self.scalars]

    # --- launching ------------------------------------------------------------------------------
    def launch(
        self,
        num_steps: int,
        *,
        batches: tuple[torch.Tensor, torch.Tensor] | None = None,
        record: tuple[torch.Tensor, torch.Tensor] | None = None,
        losses: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One kernel launch of `num_steps` steps (no graph); returns their losses, (num_steps,).

        batches: (x (num_steps, B, IN), y (num_steps, B) or (num_steps, B, 1)) to train on instead of
            drawing with Philox (tests feed eager the same ones).
        record: buffers of those shapes the kernel fills with the batches it used.
        losses: a (num_steps,) float32 buffer to write into (a captured launch needs a static one).
        """
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        batch_size, n_in = self.config.batch_size, self.net_config.input_size
        losses = torch.empty(num_steps, dtype=torch.float32, device=self.device) if losses is None else losses
        x, y = batches if batches is not None else (self._unused, self._unused)
        rec_x, rec_y = record if record is not None else (self._unused, self._unused)
        for name, tensor in (("batch", batches), ("record", record)):
            if tensor is not None and tensor[0].shape != (num_steps, batch_size, n_in):
                raise ValueError(
                    f"{name} x must be ({num_steps}, {batch_size}, {n_in}), got {tuple(tensor[0].shape)}"
                )
        if record is not None and not all(t.is_contiguous() for t in record):
            raise ValueError("record buffers must be contiguous: the kernel writes them in place")
        x, y = x.contiguous(), y.contiguous()
        k, relu_out = self._kernel, self.net_config.output_activation == "relu"
        load, save = batches is not None, record is not None
        fixed = k.constants(batch_size, n_in, self.layout, relu_out, self.precision, load, save)
        kernel_args = (self.params, self.exp_avg, self.exp_avg_sq, self.steps_done, self.scalars, losses)
        with torch.cuda.device(self.device) if self.device.type == "cuda" else nullcontext():
            k.fused_train_kernel[(1,)](
                *kernel_args, x, y, rec_x, rec_y, self.config.seed, num_steps, **fixed,
                num_warps=self.num_warps, enable_fp_fusion=k.ENABLE_FP_FUSION,
            )  # fmt: skip
        return losses

    def _captured(self, num_steps: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """A CUDA graph of one `num_steps` launch; the first call compiles, rewinds, then captures."""
        if num_steps not in self._graphs:
            losses = torch.empty(num_steps, dtype=torch.float32, device=self.device)
            saved = [t.clone() for t in self._state()]
            self.launch(num_steps, losses=losses)  # compiles the kernel outside the capture
            torch.cuda.synchronize(self.device)
            for tensor, before in zip(self._state(), saved):
                tensor.copy_(before)  # in place: the graph holds these very buffers
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.device(self.device), torch.cuda.graph(graph):
                self.launch(num_steps, losses=losses)
            self._graphs[num_steps] = (graph, losses)
        return self._graphs[num_steps]

    def train_steps(self, num_steps: int) -> torch.Tensor:
        """`num_steps` training steps in ONE launch (a graph replay on CUDA); their losses, (num_steps,).

        On CUDA the returned tensor is the graph's static buffer: the next replay overwrites it.
        """
        if not self.use_graph:
            return self.launch(num_steps)
        graph, losses = self._captured(num_steps)
        graph.replay()
        return losses

    def step(self) -> torch.Tensor:
        """One training step, one launch: the loss as a 0-dim device tensor (static on CUDA)."""
        if not self.use_graph:
            return self.launch(1)[0]
        if self._step_replay is None:  # no per-step view or lookup: the host cost is the replay
            graph, losses = self._captured(1)
            self._step_replay = (graph.replay, losses[0])
        replay, loss = self._step_replay
        replay()
        return loss

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The eager Net's forward on the kernel's current weights: (N, IN) -> (N, 1)."""
        return functional_call(self.net, self.parameters(), (x,))

    def notes(self) -> list[str]:
        precision = {
            "ieee": 'fp32 dots (input_precision="ieee", FMA)',
            "tf32x3": "tf32x3 dots (3 tf32 tensor-core products)",
        }
        run = "each launch replayed from a CUDA graph (captured at the first step of each k)"
        if not self.use_graph:
            interpreter = "Triton interpreter on the CPU: a correctness check, not a timing"
            run = f"launched directly ({interpreter if self.device.type == 'cpu' else 'no CUDA graph'})"
        return [
            f"one Triton kernel per step: Philox batch, forward, MSE, backward, Adam; {precision[self.precision]}; "
            f"one CTA, {self.num_warps} warps, weights and Adam moments in registers",
            "K = 1 step per launch in step(), so times are per step; FusedTrainer.train_steps(k) runs k per launch",
            "batch drawn in the kernel: tl.randint(seed, step*B*30 + row*30 + col) % 101 / 100 (modulo bias "
            "2.4e-8 relative), target the row sum: torch's distribution, other draws",
            run,
            "predict and inference run the eager Net on the kernel's weights",
        ]


def build_trainer(device: torch.device, net_config: NetConfig, config: TrainConfig):
    """The fused Trainer: fp32 dots, one step per step(); the first step() on CUDA compiles and captures."""

    if (reason := unavailable_reason(device)) is not None:
        raise ValueError(reason)
    fused = FusedTrainer(device, net_config, config)
    return Trainer(
        step=fused.step,
        predict=fused.predict,
        inference=inference_runner(fused.predict),
        notes=fused.notes(),
        multi_step=fused.train_steps,
    )
