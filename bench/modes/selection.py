"""Which devices and modes to run, and why a combination is skipped.

python -c "from bench.modes.selection import parse_devices, skip_reason; print(parse_devices('auto'), skip_reason('cuda', 'eager'))"
"""

from __future__ import annotations

from bench.errors import UsageError
from bench.modes import MODES
from bench.records import parse_list
from sumnet.device import available_devices, unavailable_reason


def _split(text: str) -> list[str]:
    items = parse_list(text)
    if not items:
        raise UsageError("empty selection: give a comma-separated list")
    return items


def parse_devices(text: str) -> list[str]:
    """`auto` -> every device type present, then the absent ones (the report shows them skipped);
    else the list given. An unknown name is a UsageError; an absent one: see `require_runnable`."""
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
    if (absent := unavailable_reason(device)) is not None:
        return absent
    runs_on = MODES[mode].devices
    if device.split(":")[0] not in runs_on:
        return f"{mode} runs on {', '.join(runs_on)} only"
    return MODES[mode].missing(device)


def require_runnable(devices: list[str], modes: list[str], device_text: str, mode_text: str | None) -> None:
    """Refuse (UsageError) an explicit request that can run nothing at all: a named device that is
    absent, a named mode that runs on none of the devices. `auto` devices and preset modes may skip."""
    if device_text.strip() != "auto":
        for device in devices:
            if (absent := unavailable_reason(device)) is not None:
                raise UsageError(f"--device {device}: {absent}")
    if mode_text is not None:
        for mode in modes:
            reasons = [skip_reason(d, mode) for d in devices]
            if all(r is not None for r in reasons):
                raise UsageError(f"--mode {mode} cannot run on {', '.join(devices)}: {reasons[0]}")
