"""Task runner: `nox -l` lists the sessions.

    nox -s tests          # the test suite (a few minutes on 2 CPU cores)
    nox -s bench          # the benchmark; flags after --, e.g. nox -s bench -- --preset quick

Dependencies come from pyproject.toml. torch defaults to the pinned CPU wheel; on a CUDA machine set
SUMNET_TORCH (a requirement such as "torch==2.13.0") and SUMNET_TORCH_INDEX (a wheel index such as
https://download.pytorch.org/whl/cu128) to install a CUDA build instead.
"""

from __future__ import annotations

import os

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "tests"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _install_runtime(session: nox.Session) -> None:
    """Install the project's runtime dependencies, with the torch override applied."""
    deps = PYPROJECT["project"]["dependencies"]
    torch_spec = os.environ.get("SUMNET_TORCH", next(d for d in deps if d.startswith("torch")))
    index = os.environ.get("SUMNET_TORCH_INDEX")
    session.install(torch_spec, *(["--index-url", index] if index else []))
    session.install(*(d for d in deps if not d.startswith("torch")))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest; CUDA tests skip without a GPU)."""
    _install_runtime(session)
    session.install(*nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("pytest", *session.posargs)


@nox.session
def pytest_bench(session: nox.Session) -> None:
    """pytest-benchmark suite (same timing as the harness); add --benchmark-compare --benchmark-compare-fail=min:20%."""
    _install_runtime(session)
    session.install(*nox.project.dependency_groups(PYPROJECT, "test"))
    session.run(
        "pytest",
        "tests/benchmarks",
        "--benchmark-enable",
        "--benchmark-only",
        "--benchmark-autosave",
        "--benchmark-save-data",  # raw rounds, so bench compare and gate can test significance
        *session.posargs,
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Check style with ruff (lint and format)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


def _bench_command(session: nox.Session, command: str, *defaults: str) -> None:
    _install_runtime(session)
    session.run("python", "-m", "bench", command, *defaults, *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmark matrix (flags after --: --device, --mode, --preset, --out, --threads, --seed)."""
    _bench_command(session, "run")


@nox.session
def compare(session: nox.Session) -> None:
    """Put runs side by side: nox -s compare -- RUN RUN [--reference RUN:device:mode]."""
    _bench_command(session, "compare")


@nox.session
def gate(session: nox.Session) -> None:
    """Fail on a significant slowdown or lost convergence: nox -s gate -- --baseline RUN --current RUN."""
    _bench_command(session, "gate")


@nox.session
def convergence(session: nox.Session) -> None:
    """Convergence study over many seeds: nox -s convergence -- --seeds 32."""
    _bench_command(session, "convergence")


@nox.session
def ddp(session: nox.Session) -> None:
    """DistributedDataParallel through torchrun: nox -s ddp -- --nproc 1,2 --device cpu."""
    _bench_command(session, "ddp")


@nox.session
def history(session: nox.Session) -> None:
    """The results history: nox -s history -- trend (or ingest RUN..., gate --current RUN)."""
    _bench_command(session, "history")


@nox.session
def dashboard(session: nox.Session) -> None:
    """A static page of the history: nox -s dashboard (writes results/dashboard/index.html)."""
    _bench_command(
        session, "dashboard", *([] if "--out" in session.posargs else ["--out", "results/dashboard"])
    )
