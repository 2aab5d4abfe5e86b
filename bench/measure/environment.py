"""What machine and software a result came from; every result row carries it.

python -m bench.measure.environment        # prints this machine's environment as JSON
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy
import torch

from bench import HARNESS_VERSION

# Fields that change from run to run on one machine: pytest-benchmark's machine_info, which its
# --benchmark-compare checks for equality, leaves them out (machine()).
PER_RUN_FIELDS = ("timestamp_utc", "argv", "git_commit", "git_dirty", "inductor_cache_warm")

_REPO = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(cmd: list[str]) -> str:
    """stdout of `cmd` stripped, or "" when it is missing or fails (metadata is best effort)."""
    if shutil.which(cmd[0]) is None:
        return ""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=_REPO).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _git() -> tuple[str, bool | None]:
    commit = _run(["git", "rev-parse", "--short=12", "HEAD"])
    if not commit:
        return "", None
    return commit, bool(_run(["git", "status", "--porcelain", "--untracked-files=no"]))


def _command_line() -> str:
    """The command as the user typed it, `python -m bench ...` for the module entry point."""
    if sys.argv and sys.argv[0].endswith("__main__.py"):
        return " ".join(["python -m " + Path(sys.argv[0]).parent.name, *sys.argv[1:]])
    return " ".join(sys.argv)


def _inductor_cache() -> tuple[str, bool]:
    """torch.compile's on-disk cache and whether it held anything: first-call times depend on it."""
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        path = Path(cache_dir())
    except (ImportError, AttributeError, OSError):
        path = Path(
            os.environ.get("TORCHINDUCTOR_CACHE_DIR", f"/tmp/torchinductor_{os.environ.get('USER', 'root')}")
        )
    try:
        return str(path), path.is_dir() and any(path.iterdir())
    except OSError:
        return str(path), False


def collect() -> dict[str, object]:
    """The run-level environment as a flat dict of JSON-friendly values (a record's own threads are
    on its ConfigKey; `default_threads` is torch's default here)."""
    cuda = torch.cuda.is_available()
    driver = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]) if cuda else ""
    commit, dirty = _git()
    cache_path, cache_warm = _inductor_cache()
    return {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "default_threads": torch.get_num_threads(),
        "gpu_name": torch.cuda.get_device_name(0) if cuda else "",
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "driver_version": driver.split("\n")[0].strip(),
        "cuda_version": torch.version.cuda or "",
        "torch_version": torch.__version__,
        "numpy_version": numpy.__version__,
        "python_version": platform.python_version(),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "inductor_cache_dir": cache_path,
        "inductor_cache_warm": cache_warm,  # compiled graphs may be loaded, not built: shorter first calls
        "git_commit": commit,
        "git_dirty": dirty,
        "harness_version": HARNESS_VERSION,
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "argv": _command_line(),
    }


THREADS_PER_CORE_LIMIT = 4  # oversubscription a user may want to measure; beyond it, a typo


def max_threads() -> int:
    """The most torch threads a flag may ask for here (libgomp aborts on absurd counts, not raises)."""
    return THREADS_PER_CORE_LIMIT * (os.cpu_count() or 1)


def machine() -> dict[str, object]:
    """collect() without PER_RUN_FIELDS: what stays the same between two runs on one setup."""
    return {k: v for k, v in collect().items() if k not in PER_RUN_FIELDS}


if __name__ == "__main__":
    print(json.dumps(collect(), indent=2))
