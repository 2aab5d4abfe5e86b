"""Trends, the history gate and the history commands on a small synthetic history with known changes
(tests/history_demo.py: a 20% step and a 15% drift on the CPU box, the rest flat)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.optional import require

require("sqlalchemy", "the results history's database")
require("ruptures", "the history's change-point detection")

from bench.__main__ import main as bench_main  # noqa: E402
from bench.commands.gate import check_against_history  # noqa: E402
from bench.errors import UsageError  # noqa: E402
from bench.history.db import open_history  # noqa: E402
from bench.history.ingest import entry_of  # noqa: E402
from bench.history.trend import render_text, select_configs, trends  # noqa: E402
from tests.history_demo import CPU_BOX, GPU_BOX, config, fill_demo, synthetic_run  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "results/baselines/intel-r-xeon-r-processor/vm-20261127T062315Z"
EAGER = config("train/cpu/eager/32/2/relu")


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("history") / "history.db"
    with open_history(path) as history:
        fill_demo(history)
    return str(path)


def test_trends_find_the_injected_changes_and_nothing_else(demo_db):
    with open_history(demo_db, create=False) as history:
        series = {(s.machine.fingerprint, str(s.config)): s for s in trends(history)}
    assert len(series) == 4
    eager = series[(CPU_BOX.fingerprint, str(EAGER))]
    (step,) = eager.changes
    assert step.kind == "step" and step.first == 30 and step.ratio == pytest.approx(1.2, abs=0.02)
    assert step.ci_low < 1.2 < step.ci_high
    assert eager.points[step.first].git_commit == f"{60:012x}"  # CPU runs are the even indices
    (drift,) = series[(CPU_BOX.fingerprint, "train/cpu/compile/32/2/relu")].changes
    assert drift.kind == "drift" and drift.first >= 13 and drift.last <= 31
    assert drift.ratio == pytest.approx(1.01**15, abs=0.03)
    assert series[(CPU_BOX.fingerprint, "inference/cpu/eager/32/2/relu")].changes == []
    assert series[(GPU_BOX.fingerprint, "train/cuda/eager/32/16/relu")].changes == []


def test_trend_text_marks_the_change_between_its_commits(demo_db):
    with open_history(demo_db, create=False) as history:
        text = render_text(
            trends(history, ["train/cpu/eager/*"]), history.where, history.count_runs(), last=12
        )
    assert "machine cpu0cpu0cpu0" in text and "train/cpu/eager/32/2/relu  (step_ms, 40 runs)" in text
    marker = next(line for line in text.splitlines() if line.strip().startswith("-- slower x1.1"))
    assert f"between {58:012x} and {60:012x} (run 31 of 40)" in marker and "p < 0.001" in marker
    assert "... 28 earlier runs" in text and "gpu0" not in text


def test_unknown_configuration_or_machine_is_a_usage_error_naming_what_exists():
    known = ["train/cpu/eager/32/2/relu", "train/cuda/eager/32/16/relu"]
    assert select_configs(known, ["train/cu*"]) == ["train/cuda/eager/32/16/relu"]
    assert select_configs(known, None) is None
    with pytest.raises(
        UsageError, match=r"unknown configuration 'train/mps/\*': the history holds train/cpu"
    ):
        select_configs(known, ["train/mps/*"])


def _current(factor: float, status: str = "ok"):
    """A run after the demo history (index 100) on the CPU box with the eager step x factor."""
    rng = np.random.default_rng(100)
    return synthetic_run(100, CPU_BOX, {EAGER: 0.6 * factor}, rng, spread=0.03, status={EAGER: status})


def gate_on_history(db, current) -> list[str]:
    """The failures of `current` (a RunEntry) against the last 10 comparable runs in the history `db`."""
    with open_history(db, create=False) as history:
        return [c.failure for c in check_against_history(history, current) if c.failure]


def test_gate_on_history_fails_a_real_slowdown_and_passes_noise(demo_db):
    assert gate_on_history(demo_db, _current(1.0)) == []
    assert gate_on_history(demo_db, _current(1.04)) == []  # slower, within the 10% limit
    (failure,) = gate_on_history(demo_db, _current(1.3))
    assert failure.startswith("train/cpu/eager/32/2/relu step_ms: median +3")
    assert f"baseline: 10 runs of history ({60:012x}..{78:012x})" in failure


def test_gate_on_history_pools_the_window_and_reuses_the_one_baseline_rule(demo_db):
    with open_history(demo_db, create=False) as history:
        (check,) = check_against_history(history, _current(1.3), window=3)
    assert check.runs == 3 and check.comparison.n_baseline == 3 * 29 and check.comparison.n_current == 29
    assert check.comparison.ci_low > 1.1


def test_gate_on_history_flags_a_configuration_that_now_fails(demo_db):
    (failure,) = gate_on_history(demo_db, _current(1.0, status="failed"))
    assert "ran ok in the last 10 comparable runs, fails now: synthetic failure" in failure


def test_gate_on_history_without_comparable_runs_is_a_usage_error(demo_db):
    other = synthetic_run(0, CPU_BOX, {config("train/cpu/eager/64/2/relu"): 0.5}, np.random.default_rng(0))
    with pytest.raises(UsageError, match="no comparable history"):
        gate_on_history(demo_db, other)


def _history_and_a_slower_run(tmp_path, db) -> Path:
    """Ingest BASELINE into `db`; return a later copy of it whose first row's steps are 1.5x slower."""
    assert _exit_code(["history", "ingest", str(BASELINE), "--db", str(db)]) == 0
    doc = json.loads((BASELINE / "run.json").read_text())
    doc["env"]["timestamp_utc"] = "2026-12-01T00:00:00Z"
    doc["rows"][0]["samples"]["step_ms"] = [v * 1.5 for v in doc["rows"][0]["samples"]["step_ms"]]
    slower = tmp_path / "slower" / "run.json"
    slower.parent.mkdir()
    slower.write_text(json.dumps(doc))
    return slower


def test_gate_on_history_reads_a_run_folder(tmp_path):
    db = tmp_path / "h.db"
    slower = _history_and_a_slower_run(tmp_path, db)
    (failure,) = gate_on_history(db, entry_of(slower))
    assert failure.startswith("train/cpu/eager/32/2/relu step_ms: median +50")
    with pytest.raises(UsageError, match="no comparable history"):
        gate_on_history(db, entry_of(BASELINE))  # the stored run itself is excluded: nothing earlier


def _exit_code(argv: list[str]) -> int:
    """`python -m bench ARGV` in-process: its exit code, returned or raised (bad input)."""
    try:
        return bench_main(argv)
    except SystemExit as exit_:
        return exit_.code


def test_history_commands_exit_codes_and_one_line_errors(demo_db, tmp_path, capsys):
    assert _exit_code(["history", "trend", "--db", demo_db, "--config", "train/cuda/*", "--last", "2"]) == 0
    assert "train/cuda/eager/32/16/relu  (step_ms, 40 runs)" in capsys.readouterr().out
    assert _exit_code(["history", "trend", "--db", demo_db, "--config", "nope"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("python -m bench history trend: error: unknown configuration 'nope'")
        and err.count("\n") == 1
    )
    assert _exit_code(["history", "trend", "--db", str(tmp_path / "none.db")]) == 2
    assert "no history database here yet" in capsys.readouterr().err
    assert _exit_code(["dashboard", "--db", demo_db, "--out", str(tmp_path / "site")]) == 0
    assert (tmp_path / "site" / "index.html").exists()


def test_a_bad_url_exits_2_with_one_line_in_a_real_process(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench", "history", "trend", "--db", "mysql://u@h/db"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "python -m bench history trend: error: mysql://u@h/db: unsupported database 'mysql'; "
        "use a SQLite path or postgresql+psycopg://"
    ]


def test_commands_plug_into_the_bench_command_convention(demo_db, tmp_path, capsys):
    """As bench/__main__.py runs a command: a parser from the module's add_arguments, then main(args)."""
    from bench.history import cli, dashboard
    from sumnet.cli_args import OneLineArgumentParser

    parser = OneLineArgumentParser(prog="python -m bench history")
    cli.add_arguments(parser)
    assert cli.main(parser.parse_args(["trend", "--db", demo_db, "--last", "0"])) == 0
    assert "4 series, 2 change(s)" in capsys.readouterr().out
    parser = OneLineArgumentParser(prog="python -m bench dashboard")
    dashboard.add_arguments(parser)
    assert dashboard.main(parser.parse_args(["--out", str(tmp_path / "site"), "--db", demo_db])) == 0
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args([])  # --out is required: one line, exit 2
    assert exit_.value.code == 2


def test_bench_gate_history_and_history_gate_are_one_gate(tmp_path, capsys):
    """`python -m bench history gate` is `bench gate --history`: same checks, output, exit code."""
    db = str(tmp_path / "h.db")
    slower = _history_and_a_slower_run(tmp_path, db)
    capsys.readouterr()
    assert _exit_code(["history", "gate", "--current", str(slower), "--db", db, "--max-slowdown", "10%"]) == 1
    alias = capsys.readouterr().out
    assert bench_main(["gate", "--history", db, "--current", str(slower)]) == 1
    assert capsys.readouterr().out == alias
    assert alias.startswith("History gate: FAIL (1 regression);") and "step_ms: ratio 1.5" in alias
    assert _exit_code(["history", "gate", "--current", str(slower), "--db", db, "--max-slowdown", "60%"]) == 0
