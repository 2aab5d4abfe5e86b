"""Task runner: `nox -l` lists the sessions.

    nox -s tests          # the test suite (a few minutes on 2 CPU cores)
    nox -s bench          # the benchmark; flags after --, e.g. nox -s bench -- --preset quick

Dependencies come from pyproject.toml, every extra included. Two virtualenvs serve every session
but lint: `.nox/runtime` (bench, compare, gate, ab, convergence, ddp, history, dashboard) and
`.nox/testenv` (tests, pytest_bench), each made by a hidden session the others require, so torch is
installed twice, not once per session. uv makes them when it is on PATH, virtualenv otherwise.
torch defaults to the pinned CPU wheel; on a CUDA machine set SUMNET_TORCH (a requirement such as
"torch==2.13.0") and SUMNET_TORCH_INDEX (a wheel index such as
https://download.pytorch.org/whl/cu128) to install a CUDA build instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox
from nox.command import CommandFailed

nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
_PYTHON: dict[str, str] = {}  # shared environment name -> its python, set by the session that made it


def _install(session: nox.Session, *groups: str) -> None:
    """Install the dependencies and every extra from pyproject.toml (torch override applied), and
    `groups` from its dependency groups; remember this environment's python for the sessions that
    require it."""
    project = PYPROJECT["project"]
    deps = [*project["dependencies"]]
    for name, extra in project["optional-dependencies"].items():
        deps += [d for d in extra if name != "all"]
    torch_spec = os.environ.get("SUMNET_TORCH", next(d for d in deps if d.startswith("torch")))
    index = os.environ.get("SUMNET_TORCH_INDEX")
    session.install(torch_spec, *(["--index-url", index] if index else []))
    session.install(*(d for d in deps if not d.startswith("torch")))
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))
    _PYTHON[session.name] = str(Path(session.bin) / "python")


@nox.session(default=False)
def runtime(session: nox.Session) -> None:
    """The environment the benchmark commands share (made or updated; required by them)."""
    _install(session)


@nox.session(default=False)
def testenv(session: nox.Session) -> None:
    """The environment tests and pytest_bench share (made or updated; required by them)."""
    _install(session, "test")


def _run_in(session: nox.Session, env: str, *args: str) -> None:
    """Run `python args...` in the shared environment `env`. A failing command's exit code passes
    through nox (nox itself would turn every failure into 1): the gate's 1 regression, 2 bad input,
    3 inconclusive reach CI as they are."""
    try:
        session.run(_PYTHON[env], *args, external=True)
    except CommandFailed as err:
        if err.return_code:
            session.warn(f"exit code {err.return_code} passed through")
            raise SystemExit(err.return_code) from None
        raise


@nox.session(venv_backend="none", requires=["testenv"])
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest; CUDA tests skip without a GPU), one pytest-xdist worker per CPU,
    each taking whole files (module fixtures are built once), the files with slow tests first
    (tests/conftest.py); `nox -s tests -- -n 0` runs it in one process. Plain `python -m pytest`
    (the GPU machine has no xdist) runs it in one process too."""
    xdist = ("-n", "auto", "--dist", "loadfile", "--no-loadscope-reorder")
    _run_in(session, "testenv", "-m", "pytest", *xdist, *session.posargs)


@nox.session(venv_backend="none", requires=["testenv"])
def pytest_bench(session: nox.Session) -> None:
    """pytest-benchmark suite (same timing as the harness); add --benchmark-compare --benchmark-compare-fail=min:20%."""
    _run_in(
        session,
        "testenv",
        "-m",
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


def _bench(session: nox.Session, command: str, *defaults: str) -> None:
    _run_in(session, "runtime", "-m", "bench", command, *defaults, *session.posargs)


@nox.session(venv_backend="none", requires=["runtime"])
def bench(session: nox.Session) -> None:
    """Run the benchmark matrix (flags after --: --device, --mode, --preset, --out, --threads, --seed)."""
    _bench(session, "run")


@nox.session(venv_backend="none", requires=["runtime"])
def ab(session: nox.Session) -> None:
    """Two commits interleaved on this machine, paired verdict: nox -s ab -- BASE [HEAD] [bench run flags]."""
    _bench(session, "ab")


@nox.session(venv_backend="none", requires=["runtime"])
def compare(session: nox.Session) -> None:
    """Put runs side by side: nox -s compare -- RUN RUN [--reference RUN:device:mode]."""
    _bench(session, "compare")


@nox.session(venv_backend="none", requires=["runtime"])
def gate(session: nox.Session) -> None:
    """Exit 1 on a significant slowdown or lost convergence, 3 inconclusive: nox -s gate -- --baseline RUN --current RUN."""
    _bench(session, "gate")


@nox.session(venv_backend="none", requires=["runtime"])
def convergence(session: nox.Session) -> None:
    """Convergence study over many seeds: nox -s convergence -- --seeds 32."""
    _bench(session, "convergence")


@nox.session(venv_backend="none", requires=["runtime"])
def ddp(session: nox.Session) -> None:
    """DistributedDataParallel through torchrun: nox -s ddp -- --nproc 1,2 --device cpu."""
    _bench(session, "ddp")


@nox.session(venv_backend="none", requires=["runtime"])
def history(session: nox.Session) -> None:
    """The results history: nox -s history -- trend (or ingest RUN..., gate --current RUN)."""
    _bench(session, "history")


@nox.session(venv_backend="none", requires=["runtime"])
def dashboard(session: nox.Session) -> None:
    """A static page of the history: nox -s dashboard (writes results/dashboard/index.html)."""
    _bench(session, "dashboard", *([] if "--out" in session.posargs else ["--out", "results/dashboard"]))


@nox.session(venv_backend="none", requires=["runtime"])
def demo(session: nox.Session) -> None:
    """The article's demo: train the Net, print the test table and the verdict (python -m sumnet)."""
    _run_in(session, "runtime", "-m", "sumnet", *session.posargs)


@nox.session(venv_backend="none", requires=["runtime"])
def crosscheck(session: nox.Session) -> None:
    """The harness's step time against torch.utils.benchmark.Timer (python -m bench.crosscheck)."""
    _run_in(session, "runtime", "-m", "bench.crosscheck", *session.posargs)
