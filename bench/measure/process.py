"""The measuring process's own steadiness and footprint: glibc malloc's thresholds, the page faults
a timed region takes, and the peak resident memory of one configuration.

glibc adapts its trim and mmap thresholds to the process's history, so in some processes every large
forward takes fresh pages from the kernel and in others none; `bench run` and the pytest-benchmark
suite fix the thresholds before timing so every process is the fast one (docs/validation.md).

    python -c "from bench.measure.process import pin_malloc; print(pin_malloc())"
"""

from __future__ import annotations

import ctypes
import resource
import sys
from pathlib import Path

PROC_SELF = Path("/proc/self")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MALLOC_TRIM_BYTES = 1 << 30  # never hand freed heap memory back to the kernel below 1 GiB
MALLOC_MMAP_BYTES = 32 << 20  # only blocks above 32 MiB (glibc's maximum) get their own mapping


def pin_malloc() -> bool:
    """Fix glibc malloc's trim and mmap thresholds for the rest of this process; False where not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # musl has none
    return bool(
        mallopt is not None
        and mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_BYTES)
        and mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_BYTES)
    )


def minor_page_faults() -> int:
    """Minor page faults of this process so far (pages the kernel handed out or mapped anew)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def reset_peak_rss(proc: Path = PROC_SELF) -> bool:
    """Reset this process's peak resident set size (VmHWM) to its current size, so the next
    peak_rss_bytes() is this configuration's peak, not the process's; False where Linux refuses."""
    try:
        (proc / "clear_refs").write_text("5")  # 5: reset the peak RSS (proc(5))
    except OSError:
        return False
    return True


def peak_rss_bytes(proc: Path = PROC_SELF) -> int | None:
    """Peak resident set size since the last reset_peak_rss() (VmHWM), None where unreadable."""
    try:
        lines = (proc / "status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return None
