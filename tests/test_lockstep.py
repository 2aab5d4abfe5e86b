"""bench.measure.lockstep: two processes take turns at every timed block, in the order AB BA AB ...

python -m pytest tests/test_lockstep.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.analysis.paired import block_paired_ratio, judge
from bench.analysis.significance import RegressionCheck
from bench.measure import lockstep
from bench.records import ConfigKey

ROOT = Path(__file__).resolve().parent.parent
# A stand-in for `bench run`: `blocks` timed blocks of 30 ms, each inside lockstep.turn(), with the
# monotonic clock (shared by processes) read at its start and end.
CHILD = """
import json, sys, time
from bench.measure.lockstep import turn
spans = []
for _ in range(int(sys.argv[2])):
    with turn():
        start = time.monotonic(); time.sleep(0.03); spans.append((start, time.monotonic()))
    time.sleep(0.005)  # untimed work between blocks (the held-out evaluation)
open(sys.argv[1], "w").write(json.dumps(spans))
"""


def _conduct(tmp_path: Path, blocks: list[int]) -> tuple[list[list[tuple[float, float]]], list[int]]:
    conductor = lockstep.Conductor(len(blocks))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path / f"{i}.json"), str(n)],
            cwd=ROOT,
            env={**os.environ, **conductor.env(i)},
            pass_fds=conductor.child_fds(i),
        )
        for i, n in enumerate(blocks)
    ]
    conductor.started()
    conductor.start()
    assert [p.wait(60) for p in procs] == [0] * len(blocks)
    conductor.join(10)
    spans = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(len(blocks))]
    return spans, conductor.turns


def test_two_processes_time_their_blocks_in_turns_never_together(tmp_path):
    spans, turns = _conduct(tmp_path, [6, 6])
    assert turns == [6, 6]
    timeline = sorted((start, end, i) for i, mine in enumerate(spans) for start, end in mine)
    for (_, end, _), (start, _, _) in zip(timeline, timeline[1:]):
        assert end <= start  # no block overlaps another
    assert "".join("AB"[i] for *_, i in timeline) == "ABBAABBAABBA"


def test_a_process_that_stops_early_leaves_the_other_to_finish_alone(tmp_path):
    spans, turns = _conduct(tmp_path, [2, 5])
    assert turns == [2, 5] and [len(s) for s in spans] == [2, 5]


def test_without_the_variable_a_block_runs_at_once(monkeypatch):
    monkeypatch.delenv(lockstep.LOCKSTEP_ENV, raising=False)
    monkeypatch.setattr(lockstep, "_channel", [])
    ran = []
    with lockstep.turn():
        ran.append(1)
    assert ran == [1]


def test_the_block_ratio_is_the_median_of_block_k_over_block_k():
    # blocks 2.0 and 4.0 (a burst hit both arms) cancel; ratios 1.1, 1.1, 1.2 -> median 1.1
    assert block_paired_ratio([1.0, 2.0, 4.0], [1.1, 2.2, 4.8]) == pytest.approx(1.1)
    assert block_paired_ratio([1.0, 2.0], [1.1, 2.2, 9.9]) == pytest.approx(1.1)  # only the shared blocks


def test_lockstep_rounds_are_judged_on_block_ratios_not_on_each_arms_statistic():
    """Every round, block k of HEAD is 10% slower than block k of BASE (a burst slowed blocks 3 to 5
    of both); the arms' own values (here 2.9 and 1.2) would say HEAD got faster."""
    key = ConfigKey("train", "cpu", "eager", 32, 1)
    base_blocks, head_blocks = (1.0, 1.0, 3.0, 3.0, 3.0), (1.1, 1.1, 3.3, 3.3, 3.3)
    rounds = [
        {
            "A": {key: ("ok", "", 2.9 * s, tuple(b * s for b in base_blocks))},
            "B": {key: ("ok", "", 1.2 * s, tuple(b * s for b in head_blocks))},
            "lockstep": True,
        }
        for s in (1.0, 1.02, 0.97, 1.05, 0.99, 1.01)
    ]
    line = judge(rounds, instructions=False, check=RegressionCheck.parse("5%")).lines[0]
    assert line.comparison.ratios == pytest.approx([1.1] * 6)
    assert line.verdict == "REGRESSION"
    unpaired = judge([{**r, "lockstep": False} for r in rounds], False, RegressionCheck.parse("5%")).lines[0]
    assert unpaired.verdict == "pass"  # the per-arm values (2.9 vs 1.2) say HEAD got faster
