"""The measuring process's own steadiness: glibc malloc's thresholds, and the page faults a timed
region takes.

    python -c "from bench.measure.process import pin_malloc; print(pin_malloc())"

glibc's malloc adapts its trim and mmap thresholds to the process's history: in some processes each
large forward (16,384 rows: 4 MB of activations) gets fresh pages from the kernel, about 3,800 page
faults and 2.5x the time per call; in others none. Fixed thresholds keep freed memory in the heap, so
every process is the fast one. `bench run` and the pytest-benchmark suite pin them before timing.
"""

from __future__ import annotations

import ctypes
import resource
import sys

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
