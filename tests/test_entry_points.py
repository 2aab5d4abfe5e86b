"""Every entry point (`python -m bench`, the `sumnet-bench` script, `python -m sumnet`, `python -m
bench.crosscheck`) in real processes. Ctrl-C and SIGTERM: one line on stderr, exit 130, never a
traceback, never death by the signal (143), also when the signal lands while torch is still being
imported (seconds on a loaded machine) and when nox sends SIGINT then SIGTERM 0.3 s later. A
Python without torch: one line saying how to install, exit 2.

The import is made slow on purpose: a finder placed first on sys.meta_path says "importing torch"
on stderr and sleeps, so the signal lands inside the import every time; another finder makes torch
absent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLOW_TORCH = """
import importlib.abc, runpy, sys, time

class _SlowTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            print("importing torch", file=sys.stderr, flush=True)
            time.sleep(20)
        return None

sys.meta_path.insert(0, _SlowTorch())
"""
NO_TORCH = """
import importlib.abc, runpy, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
"""
RUN = ["run", "--device", "cpu", "--mode", "eager", "--threads", "1", "--no-inference", "--no-history"]


SCRIPTS = {"sumnet-bench": "bench.__main__:cli", "sumnet-script": "sumnet.__main__:main"}  # pyproject.toml's


def test_the_console_scripts_are_the_ones_tested_here():
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"sumnet": SCRIPTS["sumnet-script"], "sumnet-bench": SCRIPTS["sumnet-bench"]}


def _start(entry: str, args: list[str], tmp_path: Path, hook: str = "slow") -> subprocess.Popen:
    """`python -m ENTRY ARGS`, or the console script ENTRY as pip's wrapper runs it, with torch's
    import made slow (hook 'slow'), absent ('absent') or left alone ('')."""
    if entry in SCRIPTS:
        module, function = SCRIPTS[entry].split(":")
        run = f"sys.argv = [{entry!r}, *ARGS]; from {module} import {function}; sys.exit({function}())"
    else:
        run = (
            f"sys.argv = [{entry!r}, *ARGS]; runpy.run_module({entry!r}, run_name='__main__', alter_sys=True)"
        )
    prelude = {"slow": SLOW_TORCH, "absent": NO_TORCH, "": "import runpy, sys\n"}[hook]
    code = prelude + f"ARGS = {args!r}\n" + run
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for(stream, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if text in line:
            return
        assert line, f"the process ended before printing {text!r}"
    raise AssertionError(f"no {text!r} within {timeout} s")


def _interrupt(proc: subprocess.Popen, signals: tuple[signal.Signals, ...]) -> tuple[str, str]:
    for i, sig in enumerate(signals):
        if i:
            time.sleep(0.3)  # as nox sends them
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return out, err


BOTH = (signal.SIGINT, signal.SIGTERM)


@pytest.mark.parametrize(
    "entry, args, signals, line",
    [
        ("bench", RUN, (signal.SIGINT,), "python -m bench run: interrupted before anything was measured"),
        ("bench", RUN, BOTH, "python -m bench run: interrupted before anything was measured"),
        ("bench", RUN, (signal.SIGTERM,), "python -m bench run: interrupted before anything was measured"),
        ("sumnet-bench", ["compare", "a", "b"], BOTH, "python -m bench compare: interrupted"),
        ("sumnet", [], BOTH, "python -m sumnet: interrupted"),
        ("sumnet-script", [], BOTH, "python -m sumnet: interrupted"),
        ("sumnet", [], (signal.SIGTERM,), "python -m sumnet: interrupted"),
        ("bench.crosscheck", [], BOTH, "python -m bench.crosscheck: interrupted"),
    ],
)
def test_an_interrupt_while_torch_is_imported_is_one_line_and_exit_130(tmp_path, entry, args, signals, line):
    proc = _start(entry, args, tmp_path)
    _wait_for(proc.stderr, "importing torch")
    out, err = _interrupt(proc, signals)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.splitlines() == [err.strip()] and err.startswith(line), err
    assert not list(tmp_path.iterdir())  # nothing half-made


def test_sumnet_interrupted_while_training_by_sigint_then_sigterm_exits_130(tmp_path):
    proc = _start("sumnet", ["--steps", "100000"], tmp_path, hook="")
    _wait_for(proc.stdout, "Epoch [100/100000]")
    out, err = _interrupt(proc, BOTH)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err == "python -m sumnet: interrupted\n"


@pytest.mark.parametrize(
    "entry, args, prog",
    [
        ("sumnet", [], "python -m sumnet"),
        ("sumnet-script", ["--steps", "5"], "python -m sumnet"),
        ("bench.crosscheck", [], "python -m bench.crosscheck"),
        ("bench", ["history", "ingest", "results/reference"], "python -m bench history ingest"),
        ("bench", ["run", "--preset", "quick"], "python -m bench run"),
    ],
)
def test_without_torch_one_line_says_how_to_install_and_exits_2(tmp_path, entry, args, prog):
    proc = _start(entry, args, tmp_path, hook="absent")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.splitlines() == [f"{prog}: error: needs the Python module 'torch', not installed in {sys.executable}: "
                                "pip install -e . (or run it through nox: nox -l lists the sessions)"], err  # fmt: skip


@pytest.mark.parametrize("prog", ["python -m sumnet", "python -m bench.crosscheck"])
def test_run_entry_turns_ctrl_c_in_main_into_one_line_and_exit_130(monkeypatch, capsys, prog):
    """In-process, with the process's signal handlers left alone: main() lets Ctrl-C through."""
    from sumnet import cli_args

    monkeypatch.setattr(cli_args, "interrupt_on_signals", lambda: None)
    monkeypatch.setattr(cli_args, "ignore_interrupts", lambda: None)

    def main() -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_:
        cli_args.run_entry(prog, main)
    assert exit_.value.code == 130 and capsys.readouterr().err == f"{prog}: interrupted\n"


@pytest.mark.parametrize("argv, code", [(["-h"], 141), (["run", "-h"], 0), (["history", "trend", "-h"], 0)])
def test_a_reader_of_stdout_that_left_is_exit_141_without_a_traceback(tmp_path, argv, code):
    """`python -m bench ... | head`: head has gone before the output is written. Exit 141, as a shell
    reports SIGPIPE; argparse's own help drops what it cannot write and exits 0."""
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *argv], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
    )  # fmt: skip
    os.close(write)
    assert (proc.returncode, proc.stderr) == (code, "")
