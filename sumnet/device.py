"""Resolve a device name to a torch.device, with the reason for the choice.

python -c "from sumnet.device import resolve_device; print(resolve_device('auto'))"
"""

from __future__ import annotations

import torch


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def available_devices() -> list[str]:
    """Device types present here, CPU first."""
    present = ["cpu"]
    if torch.cuda.is_available():
        present.append("cuda")
    if _mps_available():
        present.append("mps")
    return present


def unavailable_reason(name: str) -> str | None:
    """Why device `name` cannot run here, or None when it can. Raises ValueError on a bad name."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r}: use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            if torch.version.cuda is None:
                return f"this torch ({torch.__version__}) is a CPU-only build"
            return "torch.cuda.is_available() is False: no CUDA GPU or driver"
        if device.index is not None and device.index >= torch.cuda.device_count():
            return f"{name} requested but only {torch.cuda.device_count()} CUDA device(s) present"
        return None
    if device.type == "mps":
        return None if _mps_available() else "torch.backends.mps.is_available() is False"
    raise ValueError(f"unknown device {name!r}: use cpu, cuda, cuda:N, mps or auto")


def resolve_device(name: str = "auto") -> tuple[torch.device, str]:
    """(device, reason). `auto` takes CUDA, then MPS, then CPU. Raises ValueError if unusable."""
    if name == "auto":
        best = available_devices()[-1] if "cuda" not in available_devices() else "cuda"
        return torch.device(best), f"auto: {best} is the fastest device present"
    reason = unavailable_reason(name)
    if reason is not None:
        raise ValueError(f"device {name} is not available: {reason}")
    return torch.device(name), "requested"
