"""Shared pytest configuration: pytest-benchmark JSON carries the harness's environment."""

from __future__ import annotations


def pytest_benchmark_update_machine_info(config, machine_info):
    """Put bench.environment's fields (torch, GPU, CUDA, threads...) into saved benchmark JSON,
    so `python -m bench gate` can check that two saved runs come from the same setup."""
    from bench import environment

    machine_info.update(environment.collect())
