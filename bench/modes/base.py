"""What every mode builds: a Trainer (step, predict, inference, notes) and the helpers they share.

python -c "from bench.modes import build_trainer; t = build_trainer('eager', 'cpu'); print(t.step())"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, for the modes that write Adam out


@dataclass
class Trainer:
    """One configuration, ready to time.

    step: one article iteration (fresh batch + update); returns the loss (a device tensor or float).
    predict: eval-mode forward without gradients, for held-out metrics; (N, 30) -> (N, 1) tensor.
    inference: given an input batch already on the device, a zero-argument callable that runs
        this mode's forward on it under torch.inference_mode (what the inference sweep times).
    notes: what ran and why (which Adam, a fallback taken); they reach run.json and report.md.
    multi_step: for a mode that can run k steps in one launch (fused), a function of k doing so;
        the harness times it after the timed runs to report the best k.
    """

    step: Callable[[], torch.Tensor | float]
    predict: Callable[[torch.Tensor], torch.Tensor]
    inference: Callable[[torch.Tensor], Callable[[], object]]
    notes: list[str] = field(default_factory=list)
    multi_step: Callable[[int], object] | None = None


def eval_predict(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """`predict` for a torch Net: eval mode, no gradients, training mode restored."""

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
    """`inference` for a torch model: the forward on a fixed input under torch.inference_mode."""

    def make(x: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return model(x)

        return run

    return make


def require_cpu(mode: str, device: torch.device | str) -> None:
    if torch.device(device).type != "cpu":
        raise ValueError(f"{mode} runs on the CPU only, not {device}")


def array_trainer(
    step: Callable[[], float], forward_on: Callable[[np.ndarray], Callable[[], np.ndarray]], notes: list[str]
) -> Trainer:
    """A Trainer around a NumPy floor: `forward_on(x)` takes a float32 (N, IN) array and returns a call
    that runs the forward on it, into buffers made once, and gives the (N, 1) output."""

    def as_array(x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().numpy().astype(np.float32, copy=False)

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(forward_on(as_array(x))().copy()).to(x.device)

    def inference(x: torch.Tensor) -> Callable[[], object]:
        forward = forward_on(as_array(x))

        def run() -> object:
            with torch.inference_mode():  # nothing of torch runs; kept for the interface's contract
                return forward()

        return run

    return Trainer(step=step, predict=predict, inference=inference, notes=notes)
