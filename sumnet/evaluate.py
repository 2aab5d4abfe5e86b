"""Held-out metrics and the convergence verdict.

An "exact" prediction is within 0.005 of the true sum, i.e. round(prediction * 100) equals
the integer sum: what the article's printed "error 0.00" means.

    python -c "from sumnet.evaluate import metrics_from_predictions as m; import torch; print(m(torch.zeros(2,1), torch.ones(2,1)))"
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sumnet.data import TestSet

EXACT_TOLERANCE = 0.005  # |error| below this rounds to the exact sum at 2 decimals
DEFAULT_TARGET_MAE = 0.01  # converged: held-out MAE below this after training (sum units)


@dataclass(frozen=True)
class Metrics:
    mae: float  # mean absolute error, sum units
    exact_accuracy: float  # share of rows with |error| < EXACT_TOLERANCE, in [0, 1]
    zero_fraction: float  # share of predictions that are exactly 0 (1.0: the output ReLU is dead)


def metrics_from_predictions(predictions: torch.Tensor, targets: torch.Tensor) -> Metrics:
    """Metrics of predictions (N, 1) against targets (N, 1), computed in float64."""
    pred, target = predictions.double().flatten(), targets.double().flatten()
    err = (pred - target).abs()
    return Metrics(
        mae=err.mean().item(),
        exact_accuracy=(err < EXACT_TOLERANCE).double().mean().item(),
        zero_fraction=(pred == 0).double().mean().item(),
    )


@torch.no_grad()
def evaluate(net: nn.Module, test_set: TestSet) -> Metrics:
    """Metrics of `net` on `test_set`, in eval mode; restores the net's train/eval mode."""
    was_training = net.training
    net.eval()
    predictions = net(test_set.inputs)
    net.train(was_training)
    return metrics_from_predictions(predictions, test_set.targets)


@dataclass(frozen=True)
class Verdict:
    converged: bool
    reason: str  # why, in one line, for a report cell


def verdict(metrics: Metrics, target_mae: float = DEFAULT_TARGET_MAE) -> Verdict:
    """Converged when the held-out MAE is below `target_mae`; otherwise say why not."""
    if metrics.mae < target_mae:
        return Verdict(True, f"MAE {metrics.mae:.4f} < target {target_mae:g}")
    if metrics.zero_fraction == 1.0:
        return Verdict(
            False,
            f"dead output: every prediction is 0, the output ReLU never fires (MAE {metrics.mae:.2f})",
        )
    return Verdict(False, f"MAE {metrics.mae:.4f} still above target {target_mae:g}")
