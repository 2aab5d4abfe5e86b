"""Which devices and modes to run, and why a combination is skipped.

python -c "from bench.selection import parse_devices, skip_reason; print(parse_devices('auto'), skip_reason('cuda', 'eager'))"
"""

from __future__ import annotations

from sumnet.cli_args import UsageError
from sumnet.device import available_devices, unavailable_reason

DEVICE_TYPES = ("cpu", "cuda", "mps")

# mode -> (device types it runs on, what it is)
MODES: dict[str, tuple[tuple[str, ...], str]] = {
    "eager": (DEVICE_TYPES, "plain PyTorch, the article's step"),
    "compile": (DEVICE_TYPES, "torch.compile(net), default mode; Adam stays eager"),
    "compile-cudagraphs": (("cuda",), 'torch.compile(net, mode="reduce-overhead"): CUDA graphs'),
    "compile-fullstep": (DEVICE_TYPES, "forward, backward and Adam compiled as one function"),
    "cudagraph": (("cuda",), "the whole step, data generation included, captured as one CUDA graph"),
    "numpy-reference": (("cpu",), "the same Net, data and Adam in NumPy alone: the hand-written floor"),
}
DEFAULT_MODES = tuple(MODES)


def _split(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError("empty selection: give a comma-separated list")
    return list(dict.fromkeys(items))  # de-duplicated, order kept


def parse_devices(text: str) -> list[str]:
    """`auto` -> every device type present plus absent ones (reported as skipped); else the list given.

    Absent devices stay in the list so the report shows them skipped with their reason; an
    unknown name is a UsageError.
    """
    if text.strip() == "auto":
        present = available_devices()
        return present + [d for d in ("cpu", "cuda") if d not in present]
    devices = _split(text)
    for name in devices:
        try:
            unavailable_reason(name)
        except ValueError as err:
            raise UsageError(str(err)) from None
    return devices


def parse_modes(text: str) -> list[str]:
    """A comma-separated list of known modes, or `all`."""
    if text.strip() == "all":
        return list(MODES)
    modes = _split(text)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UsageError(f"unknown mode {unknown[0]!r}: choose from {', '.join(MODES)}")
    return modes


def skip_reason(device: str, mode: str) -> str | None:
    """Why (device, mode) cannot run here, or None when it can."""
    absent = unavailable_reason(device)
    if absent is not None:
        return absent
    device_type = device.split(":")[0]
    runs_on, _ = MODES[mode]
    if device_type not in runs_on:
        return f"{mode} runs on {', '.join(runs_on)} only"
    return None
