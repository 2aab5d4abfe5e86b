"""`bench ab`: the paired statistics on hand-built numbers, the balanced order, the refusals, and the
command end to end in a temporary git repository holding this tree's code (tiny steps, two rounds).

    pytest tests/test_ab.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.__main__ import main as bench_main
from bench.analysis.paired import (
    INCONCLUSIVE,
    MIN_ROUNDS,
    PASS,
    REGRESSION,
    compare_paired,
    judge,
    paired_verdict,
)
from bench.analysis.significance import RegressionCheck, compare_samples
from bench.commands.ab import balanced_order, refuse_different_dependencies
from bench.errors import UsageError
from bench.records import ConfigKey

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "--device",
    "cpu",
    "--preset",
    "quick",
    "--mode",
    "eager",
    "--threads",
    "1",
    "--no-inference",
    "--steps",
    "200",
]
GIT_ID = ["-c", "user.name=test", "-c", "user.email=test@example.com"]


def _verdict(base, head, check=RegressionCheck()) -> str:
    return paired_verdict(compare_paired(base, head), check)[0]


# --- the paired statistics ----------------------------------------------------------------------

ROUND_SPEED = np.array([1.0, 1.6, 3.0, 1.1, 2.2, 1.2])  # the machine's speed moved 3x between rounds
JITTER = np.array([1.01, 0.99, 1.0, 1.02, 0.98, 1.0])  # what is left within a round


def test_a_burst_that_hits_both_arms_of_a_round_cancels():
    result = compare_paired(ROUND_SPEED, ROUND_SPEED * JITTER)
    assert _verdict(ROUND_SPEED, ROUND_SPEED * JITTER) == PASS
    assert result.ci_high < 1.05 and result.ci_low > 0.95
    # the same numbers unpaired: the pools overlap so widely that the interval cannot rule out +10%
    unpaired = compare_samples(ROUND_SPEED * JITTER, ROUND_SPEED)
    assert unpaired.ci_high > 1.5


def test_a_consistent_ten_percent_slowdown_is_caught():
    head = ROUND_SPEED * JITTER * 1.10
    assert _verdict(ROUND_SPEED, head, RegressionCheck(0.05)) == REGRESSION
    verdict, why = paired_verdict(compare_paired(ROUND_SPEED, ROUND_SPEED * JITTER * 1.25), RegressionCheck())
    assert verdict == REGRESSION and "lies above 1.100" in why and "Wilcoxon" in why


def test_a_slowdown_at_the_limit_is_inconclusive_not_a_pass():
    assert _verdict(ROUND_SPEED, ROUND_SPEED * JITTER * 1.10) == INCONCLUSIVE


def test_a_over_a_passes_and_a_noisy_round_makes_it_inconclusive_not_a_false_alarm():
    assert _verdict(ROUND_SPEED, ROUND_SPEED * JITTER) == PASS
    one_arm_hit = ROUND_SPEED * JITTER * np.array([1, 1, 1.6, 1, 1.5, 1])  # bursts inside HEAD's process
    verdict, why = paired_verdict(compare_paired(ROUND_SPEED, one_arm_hit), RegressionCheck())
    assert verdict == INCONCLUSIVE and "run more --rounds" in why


def test_rounds_that_all_lean_one_way_by_chance_are_inconclusive_not_a_false_alarm():
    # measured A/A under load (4 rounds, per-process medians of 2 blocks): every round favoured BASE
    base, head = [1.245, 1.035, 0.91, 0.66], [1.535, 1.575, 1.8, 1.225]
    verdict, why = paired_verdict(compare_paired(base, head), RegressionCheck(0.05))
    assert verdict == INCONCLUSIVE and "fewer than 5" in why
    five = compare_paired([*base, 1.0], [*head, 1.3])  # five rounds that all lean: p = 1/32, a regression
    assert five.p_slower < 0.05 and paired_verdict(five, RegressionCheck(0.05))[0] == REGRESSION


def test_too_few_rounds_are_inconclusive():
    verdict, why = paired_verdict(
        compare_paired([1.0] * (MIN_ROUNDS - 1), [1.5] * (MIN_ROUNDS - 1)), RegressionCheck()
    )
    assert verdict == INCONCLUSIVE and "fewer than" in why


def test_instruction_counts_decide_in_two_rounds_at_a_one_percent_limit():
    counts = [2_266_555.0, 2_270_410.0]  # two processes, 0.17% apart
    result = compare_paired(counts, counts[::-1], counts=True)
    assert result.tested and 0.99 < result.ci_low <= result.ci_high < 1.01
    assert paired_verdict(result, RegressionCheck(0.01))[0] == PASS
    same = compare_paired(counts, counts, counts=True)
    assert same.ratio == 1 and same.ci_low == same.ci_high == 1 and same.p_slower == 1
    more_work = compare_paired(counts, [c * 1.03 for c in counts[::-1]], counts=True)
    assert paired_verdict(more_work, RegressionCheck(0.01))[0] == REGRESSION
    assert not compare_paired(counts, counts).tested  # times need MIN_ROUNDS


@pytest.mark.parametrize(
    "base, head", [([1.0, 2.0], [1.0]), ([], []), ([1.0, -1.0], [1.0, 1.0]), ([1.0], [np.nan])]
)
def test_paired_values_must_match_and_be_positive(base, head):
    with pytest.raises(ValueError):
        compare_paired(base, head)


def test_the_order_is_balanced_abba():
    order = balanced_order(4)
    assert "".join(arm for _, arm in order) == "ABBAABBA"
    assert [r for r, _ in order] == [1, 1, 2, 2, 3, 3, 4, 4]
    firsts = [arm for i, (_, arm) in enumerate(order) if i % 2 == 0]
    assert firsts.count("A") == firsts.count("B") == 2


def test_judge_pairs_rounds_and_names_what_broke_or_was_not_compared():
    train = ConfigKey("train", "cpu", "eager", 32, 1)
    broken = ConfigKey("train", "cpu", "compile", 32, 1)
    skipped = ConfigKey("train", "cuda", "eager", 32, None)
    rounds = [
        {
            "A": {
                train: ("ok", "", 1.0 * s, ()),
                broken: ("ok", "", 0.5, ()),
                skipped: ("skipped", "no GPU", None, ()),
            },
            "B": {
                train: ("ok", "", 1.01 * s, ()),
                broken: ("failed", "RuntimeError: boom", None, ()),
                skipped: ("skipped", "no GPU", None, ()),
            },
        }
        for s in ROUND_SPEED
    ]
    outcome = judge(rounds, instructions=False, check=RegressionCheck())
    by_config = {line.config: line for line in outcome.lines}
    assert by_config[str(train)].verdict == PASS and by_config[str(train)].comparison.rounds == 6
    assert by_config[str(broken)].verdict == REGRESSION and "RuntimeError: boom" in by_config[str(broken)].why
    assert outcome.not_compared == [f"{skipped}: BASE skipped, HEAD skipped"]


# --- the dependency refusal --------------------------------------------------------------------

PYPROJECT = '[project]\nname = "x"\ndependencies = [\n  "torch==2.13.0",  # comment\n  "numpy>=1.24",\n]\n'


def test_pyprojects_that_declare_other_dependencies_are_refused():
    reformatted = PYPROJECT.replace("# comment", "") + "\n[tool.ruff]\nline-length = 99\n"
    refuse_different_dependencies(PYPROJECT, reformatted, "BASE", "HEAD")  # same lists: accepted
    with pytest.raises(UsageError, match="different dependencies"):
        refuse_different_dependencies(PYPROJECT, PYPROJECT.replace("2.13.0", "2.14.0"), "BASE", "HEAD")
    with pytest.raises(UsageError, match="different dependencies"):
        refuse_different_dependencies(
            PYPROJECT, PYPROJECT + '\n[project.optional-dependencies]\nx = ["numba"]\n', "B", "H"
        )


# --- end to end, in a temporary repository of this tree's code ------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *GIT_ID, *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git repository holding this working tree's bench/, sumnet/ and pyproject.toml, committed."""
    root = tmp_path_factory.mktemp("ab-repo")
    for name in ("bench", "sumnet"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "base")
    return root


def _ab(repo: Path, *args: str, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, "-m", "bench", "ab", *args]
    return subprocess.Popen(
        cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def _worktrees(repo: Path) -> int:
    return _git(repo, "worktree", "list").count("\n")


@pytest.mark.slow
def test_ab_head_end_to_end_keeps_every_round_and_removes_its_worktree(repo, tmp_path):
    db = tmp_path / "history.db"
    proc = _ab(repo, "HEAD", *TINY, "--rounds", "2", "--out", str(tmp_path), "--db", str(db))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err  # two rounds are fewer than MIN_ROUNDS: inconclusive, never a pass
    (folder,) = tmp_path.glob("ab-*")
    assert sorted(p.name for p in folder.glob("round-*")) == [
        "round-01-A",
        "round-01-B",
        "round-02-A",
        "round-02-B",
    ]
    doc = json.loads((folder / "ab.json").read_text())
    assert doc["order"] == ["AB", "BA"] and doc["complete_rounds"] == [1, 2] and doc["exit_code"] == 3
    (line,) = doc["configs"]
    assert line["config"] == "train/cpu/eager/32/1/relu" and line["metric"] == "step_ms"
    assert len(line["base"]) == len(line["head"]) == 2 and line["verdict"] == INCONCLUSIVE
    for arm in ("A", "B"):  # each arm's raw samples are kept in its own run folder
        run = json.loads((Path(doc["rounds"][0][arm]["run"]) / "run.json").read_text())
        assert run["records"][0]["samples"]["step_ms"]
    assert "# Benchmark A/B: INCONCLUSIVE" in out and "| train/cpu/eager/32/1/relu" in out
    assert (folder / "report.md").read_text() in out
    assert _worktrees(repo) == 1 and "round 2 A (BASE)" in err
    # both arms of every round go into the history (or, without its packages, a note says why not)
    assert f"history: 4 of 4 runs added to {db}" in out or "note: the history was not updated" in err


@pytest.mark.slow
def test_an_interrupted_ab_judges_the_rounds_it_has_and_exits_130(repo, tmp_path):
    proc = _ab(repo, "HEAD", *TINY, "--rounds", "3", "--out", str(tmp_path))
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("ab-*/round-02-B")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)  # round 1 done: round 2 starts with B
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (folder,) = tmp_path.glob("ab-*")
    doc = json.loads((folder / "ab.json").read_text())
    assert doc["interrupted"] and doc["complete_rounds"] == [1] and doc["exit_code"] == 130
    assert "INTERRUPTED after 1 of 3 rounds" in (folder / "report.md").read_text()
    assert _worktrees(repo) == 1


@pytest.fixture
def in_repo(repo, monkeypatch) -> Path:
    monkeypatch.chdir(repo)
    return repo


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nosuchref"], "unknown git ref 'nosuchref'"),
        (["HEAD^{tree}"], "unknown git ref"),
        (["HEAD", "--mode", "nosuch"], "nosuch"),
        (["HEAD", "--threads", "0"], "--threads"),
        (["HEAD", "--steps", "0"], "--steps"),
        (["HEAD", "--max-slowdown", "ten"], "--max-slowdown"),
        (["HEAD", "--head-env", "NOEQUALS"], "NAME=VALUE"),
        (["HEAD", "--rounds", "0"], "--rounds"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(in_repo, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        bench_main(["ab", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and message in err[0], err
    assert _worktrees(in_repo) == 1


def test_outside_a_git_repository_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        bench_main(["ab", "HEAD"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "not inside a git repository" in err[0]


def test_a_commit_that_changes_the_dependencies_is_refused(repo, tmp_path, monkeypatch, capsys):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    text = (clone / "pyproject.toml").read_text()
    (clone / "pyproject.toml").write_text(text.replace('"numpy>=1.24"', '"numpy>=2.0"'))
    monkeypatch.chdir(clone)
    with pytest.raises(SystemExit) as exc:  # the working tree against HEAD
        bench_main(["ab", "HEAD"])
    _git(clone, "commit", "-qam", "numpy 2")
    with pytest.raises(SystemExit) as exc2:  # two commits
        bench_main(["ab", "HEAD~1", "HEAD"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == exc2.value.code == 2 and len(err) == 2
    assert all("declare different dependencies" in line for line in err)


def test_help_says_one_environment_serves_both_trees(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(["ab", "-h"])
    out = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0 and "One Python environment" in out and "3 inconclusive" in out
