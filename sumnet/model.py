"""The article's network: an MLP that learns to sum 30 numbers.

Pure model code: no device, file or print logic lives here.

    python -c "from sumnet.model import Net; print(Net())"
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

OUTPUT_ACTIVATIONS = ("relu", "none")


@dataclass(frozen=True)
class NetConfig:
    input_size: int = 30  # numbers summed per row
    hidden_size: int = 60  # width of each hidden layer
    hidden_layers: int = 2  # count of hidden Linear+ReLU layers
    output_activation: str = "relu"  # "relu" as in the article (it can die at init), or "none"

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "hidden_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation must be one of {', '.join(OUTPUT_ACTIVATIONS)}, "
                f"got {self.output_activation!r}"
            )


class Net(nn.Module):
    """Linear(30,60) ReLU Linear(60,60) ReLU Linear(60,1) [ReLU], PyTorch's default init."""

    def __init__(self, config: NetConfig = NetConfig()) -> None:
        super().__init__()
        self.config = config
        widths = [config.input_size] + [config.hidden_size] * config.hidden_layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.out = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))  # (B, 30) -> (B, 60), then (B, 60) -> (B, 60)
        x = self.out(x)  # (B, 60) -> (B, 1)
        if self.config.output_activation == "relu":
            x = torch.relu(x)  # the article's output ReLU: predictions are >= 0
        return x


def count_parameters(net: nn.Module) -> int:
    """Number of trainable scalars (5,581 for the article's Net)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
