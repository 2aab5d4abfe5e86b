"""Data-parallel training of the article's Net through torchrun and DistributedDataParallel.

plan.py checks a configuration before anything starts; worker.py trains and times under torchrun;
launch.py starts torchrun, enforces the timeouts and reads the outcome into a `DDPResult`.

    python -c "from bench.ddp.launch import run_ddp; r = run_ddp(2, steps=300, timeout_s=120); print(r.status, r.slowest_step_ms)"
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Ask Linux to send this process `sig` when its parent dies, even by SIGKILL (the out-of-memory
    killer), so no torchrun or rank outlives the process that started it. `parent`: the pid the
    parent had; if it is gone already, exit now. Does nothing off Linux."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(128 + int(sig))
