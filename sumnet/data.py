"""Data for the sum task: rows of 30 integers in 0..100 divided by 100, target the row sum.

Batches are drawn on the target device from an explicit generator, so a seed reproduces a
run and no host-to-device copy happens per training step.

    python -c "from sumnet.data import make_test_set; print(make_test_set(5).inputs)"
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOW, HIGH = 0, 100  # integers drawn uniformly from LOW..HIGH inclusive, as the article's randint(0, 101)
SCALE = 100.0  # the article's normalisation: inputs divided by 100
TEST_SET_SIZE = 10_000
TEST_SET_SEED = 20_240_601  # the held-out set's own seed, distinct from any training seed


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on `device` seeded with `seed` (CUDA batches need a CUDA generator)."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(seed)
    return gen


def make_batch(
    batch_size: int, generator: torch.Generator, input_size: int = 30
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch on the generator's device: inputs (B, input_size) in [0, 1], targets (B, 1)."""
    ints = torch.randint(
        LOW, HIGH + 1, (batch_size, input_size), generator=generator, device=generator.device
    )
    inputs = ints.to(torch.float32) / SCALE
    return inputs, inputs.sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class TestSet:
    """The fixed held-out rows every evaluation uses."""

    __test__ = False  # not a pytest test class

    inputs: torch.Tensor  # (N, 30) float32
    targets: torch.Tensor  # (N, 1) float32, exact sums of the inputs

    def to(self, device: torch.device | str) -> TestSet:
        return TestSet(self.inputs.to(device), self.targets.to(device))


def make_test_set(size: int = TEST_SET_SIZE, seed: int = TEST_SET_SEED, input_size: int = 30) -> TestSet:
    """The held-out set, drawn on the CPU so every device evaluates the very same rows."""
    inputs, targets = make_batch(size, make_generator(seed, "cpu"), input_size)
    return TestSet(inputs, targets)
