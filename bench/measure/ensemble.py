"""A batched ensemble of E Nets that train together, each exactly as the plain Net would alone.

Member i holds `init_net(net_config, seed_i)`'s weights stacked on a leading axis and trains on its
own batches with the plain Net's MSE. The member losses are summed before backward, so each member
gets the plain Net's gradient, and one Adam over the stacked parameters is per-member Adam (Adam is
elementwise): 32 seeds cost a few times one seed, not 32 times.

    python -c "from bench.measure.ensemble import init_ensemble; print(init_ensemble(__import__('sumnet').NetConfig(), [0, 1]))"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from sumnet.data import HIGH, LOW, SCALE, make_generator
from sumnet.evaluate import Metrics, metrics_from_predictions
from sumnet.model import Net, NetConfig
from sumnet.train import init_net


class EnsembleNet(nn.Module):
    """E Nets with stacked parameters; forward maps (E, B, in) to (E, B, 1)."""

    def __init__(self, config: NetConfig, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]):
        super().__init__()
        self.config = config
        self.weights = nn.ParameterList(nn.Parameter(w) for w in weights)  # layer l: (E, out, in)
        self.biases = nn.ParameterList(nn.Parameter(b) for b in biases)  # layer l: (E, out)

    @classmethod
    def from_nets(cls, nets: Sequence[Net]) -> EnsembleNet:
        """Stack copies of the nets' parameters (the nets themselves are left alone)."""
        if not nets:
            raise ValueError("an ensemble needs at least one member")
        layers = [[*net.hidden, net.out] for net in nets]
        weights = [torch.stack([m[i].weight.detach() for m in layers]) for i in range(len(layers[0]))]
        biases = [torch.stack([m[i].bias.detach() for m in layers]) for i in range(len(layers[0]))]
        return cls(nets[0].config, weights, biases)

    @property
    def members(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor, members: slice = slice(None)) -> torch.Tensor:
        """Forward of the members in `members` (a slice keeps held-out evaluation small)."""
        # (E, B, 30) -> (E, B, 60) -> (E, B, 60) -> (E, B, 1); a shared (B, 30) broadcasts to every member
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            w, b = w[members], b[members]
            if x.dim() == 2:
                x = torch.matmul(x, w.transpose(1, 2)) + b.unsqueeze(1)
            else:
                x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
            if i < last or self.config.output_activation == "relu":
                x = torch.relu(x)
        return x

    def member(self, index: int) -> Net:
        """A plain Net holding a copy of member `index`'s current parameters."""
        net = Net(self.config).to(self.weights[0].device)
        with torch.no_grad():
            for layer, w, b in zip([*net.hidden, net.out], self.weights, self.biases):
                layer.weight.copy_(w[index])
                layer.bias.copy_(b[index])
        return net


def init_ensemble(
    net_config: NetConfig, seeds: Sequence[int], device: torch.device | str = "cpu"
) -> EnsembleNet:
    """Member i starts exactly as `sumnet.train.init_net(net_config, seeds[i])`."""
    return EnsembleNet.from_nets([init_net(net_config, seed) for seed in seeds]).to(device)


def make_member_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One batch generator per member, seeded as the plain training of that seed seeds its own."""
    return [make_generator(seed, device) for seed in seeds]


def make_member_batches(
    generators: Sequence[torch.Generator], batch_size: int, input_size: int = 30
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (E, B, in) and targets (E, B, 1): row i is `sumnet.data.make_batch` from generator i,
    with one randint per member's stream, then the scaling and sums for all members at once."""
    device = generators[0].device
    ints = torch.empty((len(generators), batch_size, input_size), dtype=torch.int64, device=device)
    for row, gen in zip(ints, generators):
        torch.randint(LOW, HIGH + 1, (batch_size, input_size), generator=gen, out=row)
    inputs = ints.to(torch.float32) / SCALE
    return inputs, inputs.sum(dim=2, keepdim=True)


def member_losses(
    model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """(E,) MSE of each member on its own batch: the plain Net's F.mse_loss, member by member."""
    return (model(inputs) - targets).square().mean(dim=(1, 2))


FUSED_ADAM_DEVICES = ("cpu", "cuda")  # device types with a fused Adam kernel in torch >= 2.4


def make_ensemble_optimizer(ensemble: EnsembleNet, lr: float = 1e-3) -> torch.optim.Adam:
    """torch.optim.Adam with PyTorch's defaults over the stacked parameters (per-member Adam), fused
    where PyTorch has it: the plain Net's update up to float rounding, in one kernel for all members."""
    fused = True if ensemble.weights[0].device.type in FUSED_ADAM_DEVICES else None
    return torch.optim.Adam(ensemble.parameters(), lr=lr, fused=fused)


def ensemble_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
) -> torch.Tensor:
    """One update of every member; returns the (E,) losses, detached, without a host sync."""
    losses = member_losses(model, inputs, targets)
    optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()  # members share no parameter, so each gets exactly its own gradient
    optimizer.step()
    return losses.detach()


EVAL_MEMBERS_PER_CHUNK = 32  # members evaluated at once: 32 x 10,000 rows x 60 floats is 77 MB


@torch.no_grad()
def member_metrics(ensemble: EnsembleNet, inputs: torch.Tensor, targets: torch.Tensor) -> list[Metrics]:
    """Held-out metrics of every member on the same rows (inputs (N, in), targets (N, 1))."""
    metrics = []
    for start in range(0, ensemble.members, EVAL_MEMBERS_PER_CHUNK):
        chunk = slice(start, start + EVAL_MEMBERS_PER_CHUNK)
        predictions = ensemble(inputs, chunk)  # (e, N, 1)
        metrics += [metrics_from_predictions(p, targets) for p in predictions]
    return metrics
