"""Shared pytest configuration.

Without a GPU, Triton kernels run in Triton's interpreter: TRITON_INTERPRET must be set before
anything imports triton (torch.utils.flop_counter does), so it is set here, first.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from bench.measure import environment  # noqa: E402


def pytest_benchmark_update_machine_info(config, machine_info):
    """Put bench.measure.environment's fields (torch, GPU, CUDA...) into saved benchmark JSON,
    so `python -m bench gate` can check that two saved runs come from the same setup."""
    machine_info.update(environment.collect())
