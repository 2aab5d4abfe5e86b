"""The harness on a machine with only torch and the scientific stack, as the project's GPU machine
is (no nox, no internet, no tqdm, sqlalchemy, numba, ruptures or PyYAML): scripts/gpu-check.sh must
run there. tests/without_extras.py makes those packages unimportable in a child interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.store.load import load_run

ROOT = Path(__file__).resolve().parent.parent
WITHOUT = ROOT / "tests" / "without_extras.py"


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # `require` skips, as on the GPU machine
    return subprocess.run(
        [sys.executable, str(WITHOUT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_blocker_makes_the_extras_unimportable_and_leaves_the_rest():
    code = (
        "import importlib.util as u\n"
        "print(u.find_spec('tqdm'), u.find_spec('triton.language'), u.find_spec('pandas') is not None)\n"
        "from bench.modes.fused import unavailable_reason\n"
        "print(unavailable_reason('cuda').split(':')[0].replace(' ', '_'))\n"
        "try:\n    import sqlalchemy\nexcept ModuleNotFoundError as e:\n    print('absent', e.name)\n"
    )
    proc = _run("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "None", "True", "triton_is_not_installed", "absent", "sqlalchemy"]


@pytest.mark.slow
def test_bench_run_works_and_the_history_is_a_one_line_note(tmp_path):
    proc = _run(
        "bench", "run", "--device", "cpu", "--mode", "eager,numpy-reference", "--steps", "200",
        "--repeats", "1", "--threads", "1", "--batch-sizes", "1,64", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    notes = [
        line for line in proc.stderr.splitlines() if line.startswith("note: the history was not updated")
    ]
    assert notes and "sqlalchemy" in notes[0]
    df = load_run(tmp_path / "latest").frame
    assert set(df["status"]) == {"ok"} and len(df) == 2 + 2 * 2  # two train rows, two inference sizes each
    assert (tmp_path / "latest" / "report.md").exists() and (
        tmp_path / "latest" / "train_step_time.png"
    ).exists()


def test_the_default_modes_skip_numba_with_its_reason_and_explicit_numba_is_refused(tmp_path):
    proc = _run("bench", "run", "--device", "cpu", "--mode", "numba-reference", "--out", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "python -m bench run: error: --mode numba-reference cannot run on cpu: numba is not installed: pip install numba"
    ]


def test_the_history_commands_say_what_is_missing_in_one_line(tmp_path):
    for args in (["bench", "history", "trend", "--db", str(tmp_path / "h.db")],
                 ["bench", "gate", "--history", str(tmp_path / "h.db"), "--current", str(tmp_path)]):  # fmt: skip
        proc = _run(*args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "'sqlalchemy'" in lines[0] and "pip install -e '.[history]'" in lines[0], (
            lines
        )


def test_the_cuda_tests_collect(tmp_path):
    proc = _run("pytest", "-q", "-m", "cuda", "tests", "--co", "-p", "no:cacheprovider")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "error" not in proc.stdout.lower().split("short test summary")[0][-200:]
    assert "sqlalchemy is not installed" in proc.stdout


def test_ctrl_c_then_sigterm_exits_130_when_shutdown_is_quick(tmp_path):
    """Without the extras' exit hooks the process finishes its report within nox's 0.3 s, so the
    SIGTERM lands in interpreter shutdown, where Python has reset its handlers: it must still exit
    130, not die by the signal (it did, on the GPU machine's package set, before exit_shielded)."""
    import signal
    import time

    args = ["bench", "run", "--device", "cpu", "--mode", "eager", "--steps", "100000", "--repeats", "1"]
    args += ["--no-inference", "--no-progress", "--no-history", "--no-figures", "--out", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    proc = subprocess.Popen(
        [sys.executable, str(WITHOUT), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("*-*")):
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "INTERRUPTED: partial results" in out and "Traceback" not in err


def test_missing_package_names_third_party_packages_and_leaves_ours_to_raise():
    from bench.errors import missing_package

    assert missing_package(ModuleNotFoundError("x", name="sqlalchemy.dialects")) == "sqlalchemy"
    assert missing_package(ModuleNotFoundError("x", name="tqdm")) == "tqdm"
    for ours in ("bench.history.db", "sumnet.model", None):
        assert missing_package(ModuleNotFoundError("x", name=ours)) is None
