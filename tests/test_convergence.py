"""The convergence study: statistics on hand-computed cases, seed outcomes, pairing, and the CLI."""

import json
import math
import statistics

import pandas as pd
import pytest
import torch

from bench.__main__ import main as bench_main
from bench.analysis.convergence_stats import DEAD_AT_INIT, compare_steps, comparisons, seed_outcome, summarize
from bench.analysis.stats import wilson_interval
from bench.measure.convergence_study import (
    ConfigResult,
    SeedTrace,
    StudyConfig,
    StudySettings,
    steady_step_s,
    train_ensemble,
    train_plain,
)
from bench.measure.ensemble import init_ensemble
from bench.store.run_folder import to_row
from sumnet.data import make_test_set
from sumnet.evaluate import Metrics
from sumnet.model import NetConfig
from tests.optional import require

# --- seed outcomes on hand-made traces --------------------------------------------------------


def _trace(seed, maes, zeros=None, losses=None, clock=None, exact=0.9):
    steps = [0, 50, 100, 150][: len(maes)]
    zeros = zeros or [0.0] * len(maes)
    losses = losses or [math.nan] + [m * m for m in maes[1:]]
    clock = clock or [0.1 * s for s in steps]
    final = Metrics(mae=maes[-1], exact_accuracy=exact, zero_fraction=zeros[-1])
    return SeedTrace(seed, steps, list(maes), list(zeros), list(losses), list(clock), final)


def test_steps_and_time_to_target_are_the_first_evaluated_step_below():
    t = _trace(0, [10.0, 0.5, 0.009, 0.005], clock=[0.0, 1.0, 2.0, 3.0])
    assert t.steps_to_target(0.01) == 100
    assert t.time_to_target_s(0.01) == 2.0
    assert t.steps_to_target(0.001) is None and t.time_to_target_s(0.001) is None


@pytest.mark.parametrize(
    "maes,zeros,losses,converged,starts",
    [
        ([10.0, 0.5, 0.009, 0.005], None, None, True, "MAE 0.0050 < target"),
        ([15.0, 15.0, 15.0, 15.0], [1.0] * 4, None, False, DEAD_AT_INIT),
        ([10.0, 0.5, 15.0, 15.0], [0.0, 0.0, 1.0, 1.0], None, False, "output died during training"),
        ([10.0, 0.5, 0.009, 0.02], None, None, False, "reached the target at step 100 but ended above"),
        ([10.0, 0.5, 0.2, 0.1], None, None, False, "still above target at the end"),
        ([10.0, 0.5, 0.2, math.nan], None, [math.nan, 1.0, math.inf, math.nan], False, "loss not finite"),
    ],
)
def test_seed_outcome_says_why(maes, zeros, losses, converged, starts):
    ok, why = seed_outcome(_trace(0, maes, zeros, losses), 0.01)
    assert ok is converged
    assert why.startswith(starts)
    if starts == "output died during training":
        assert why.endswith("from step 100")
    if starts == "loss not finite":
        assert why.endswith("from step 100")


def _result(label, traces):
    device, mode, act = label.split("/")
    return ConfigResult(StudyConfig(device, mode, act), traces, run_s=1.0, first_call_s=0.1, eval_s=0.1)


def _converging(seed, step_index):
    maes = [10.0, 1.0, 0.5, 0.1]
    maes[step_index:] = [0.005] * (4 - step_index)
    return _trace(seed, maes)


def test_paired_steps_identical():
    a = _result("cpu/eager/relu", [_converging(s, 2) for s in range(6)])
    b = _result("cpu/compile/relu", [_converging(s, 2) for s in range(6)])
    c = compare_steps(a, b, 0.01)
    assert (c.matched, c.identical, c.p_value, c.median_diff_steps) == (6, 6, None, 0.0)
    assert c.conclusion == "identical step counts for every matched seed"


def test_paired_steps_systematic_shift_is_significant():
    # 10 seeds, each 50 steps later in b: Wilcoxon exact two-sided p = 2 / 2**10
    a = _result("cpu/eager/none", [_converging(s, 1) for s in range(10)])
    b = _result("cuda/eager/none", [_converging(s, 2) for s in range(10)])
    c = compare_steps(a, b, 0.01)
    assert c.matched == 10 and c.identical == 0 and c.median_diff_steps == 50.0
    assert c.p_value == pytest.approx(2 / 2**10)
    assert c.conclusion.startswith("differ: cuda/eager/none takes more steps")


def test_paired_steps_count_seeds_converged_on_one_side_only():
    dead = _trace(1, [15.0] * 4, [1.0] * 4)
    a = _result("cpu/eager/relu", [_converging(0, 1), _converging(1, 1), _converging(2, 2)])
    b = _result("cpu/compile/relu", [_converging(0, 2), dead, _converging(2, 1)])
    c = compare_steps(a, b, 0.01)
    assert (c.matched, c.only_a, c.only_b, c.identical) == (2, 1, 0, 0)
    assert c.conclusion.startswith("no significant difference")  # +50 and -50: no direction


def test_comparisons_pair_compile_with_eager_and_devices_with_cpu():
    labels = ["cpu/eager/relu", "cpu/compile/relu", "cuda/eager/relu", "cuda/eager/none"]
    results = [_result(label, [_converging(0, 2)]) for label in labels]
    pairs = {(c.a, c.b) for c in comparisons(results, 0.01)}
    assert pairs == {("cpu/eager/relu", "cpu/compile/relu"), ("cpu/eager/relu", "cuda/eager/relu")}


def test_steady_step_time_leaves_out_the_first_chunk_and_takes_the_median():
    steps = [0, 50, 100, 150, 200]
    clock = [0.0, 3.0, 3.5, 4.5, 5.5]  # first chunk holds a 2.5 s first call
    assert steady_step_s(clock, steps) == pytest.approx(0.02)  # median of 0.01, 0.02, 0.02
    assert steady_step_s([0.0, 3.0], [0, 50]) is None


def test_cost_ratios_of_ensemble_against_one_seed():
    one = _trace(
        0, [10.0, 1.0, 0.5, 0.1], clock=[0.0, 1.0, 1.5, 2.0]
    )  # 0.01 s per step after the first chunk
    result = ConfigResult(
        StudyConfig("cpu", "eager", "relu"),
        [one],
        run_s=9.0,
        first_call_s=0.1,
        eval_s=0.1,
        one_seed=one,
        one_seed_run_s=2.0,
        ensemble_clock_s=[0.0, 5.0, 7.0, 9.0],  # 0.04 s per step after the first chunk
    )
    assert result.cost_ratios([0, 50, 100, 150]) == pytest.approx((4.5, 4.0))
    assert _result("cpu/eager/relu", [one]).cost_ratios([0, 50, 100, 150]) is None


# --- training drivers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_test_set():
    return make_test_set(1000)


def test_dead_seed_is_detected_and_reported(small_test_set):
    """Member 1's output bias pushed far negative: its output ReLU is 0 for every row from step 0."""
    settings = StudySettings(seeds=(0, 1), steps=100, target_mae=1.0, eval_every=50)
    config = StudyConfig("cpu", "eager", "relu")
    ensemble = init_ensemble(NetConfig(output_activation="relu"), settings.seeds)
    with torch.no_grad():
        ensemble.biases[-1][1].fill_(-100.0)
    traces, _ = train_ensemble(config, settings, small_test_set, ensemble)
    assert traces[1].zero_fractions == [1.0, 1.0, 1.0]
    result = ConfigResult(config, traces, run_s=1.0, first_call_s=0.1, eval_s=0.1)
    record = summarize(result, settings)
    row, samples = to_row(record), record.samples
    assert (row["seeds"], row["converged_seeds"], row["convergence_rate"]) == (2, 1, 0.5)
    assert row["not_converged"].startswith(f"1: {DEAD_AT_INIT}")
    assert "dead-output-at-init" in row["flags"].split(";")
    assert row["converged"] is False
    assert (row["convergence_rate_ci_low"], row["convergence_rate_ci_high"]) == wilson_interval(1, 2)
    assert [s["converged"] for s in samples["per_seed"]] == [True, False]
    assert samples["per_seed"][1]["reason"].startswith(DEAD_AT_INIT)


def test_ensemble_driver_matches_plain_driver_per_seed(small_test_set):
    settings = StudySettings(seeds=(0, 1), steps=100, eval_every=50)
    config = StudyConfig("cpu", "eager", "none")
    traces, line = train_ensemble(config, settings, small_test_set)
    assert line.clock_s[0] == 0.0 and line.clock_s == sorted(line.clock_s) and line.eval_s > 0
    for trace in traces:
        plain, _ = train_plain(config, settings, trace.seed, small_test_set)
        assert plain.eval_steps == trace.eval_steps == [0, 50, 100]
        assert plain.maes == pytest.approx(trace.maes, rel=1e-4)
        assert plain.losses[1:] == pytest.approx(trace.losses[1:], rel=1e-4)


@pytest.mark.slow
def test_compiled_ensemble_matches_eager(small_test_set):
    settings = StudySettings(seeds=(0, 1), steps=20, eval_every=10)
    eager, _ = train_ensemble(StudyConfig("cpu", "eager", "relu"), settings, small_test_set)
    compiled, _ = train_ensemble(StudyConfig("cpu", "compile", "relu"), settings, small_test_set)
    for a, b in zip(eager, compiled):
        assert a.maes == pytest.approx(b.maes, rel=1e-4)


# --- command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--seeds", "0"], "--seeds: expected a positive integer"),
        (["--target-mae", "0"], "--target-mae: expected a positive number"),
        (["--target-mae", "-0.5"], "--target-mae: expected a positive number"),
        (["--output-activation", "tanh"], "unknown output activation 'tanh'"),
        (["--mode", "fast"], "unknown mode 'fast'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--seeds", "99999999999999999999"], "expected at most 100,000"),
        (["--steps", "10000001"], "--steps: expected at most 10,000,000"),
        (["--eval-every", "0"], "--eval-every: expected a positive integer"),
    ],
)
def test_bad_input_exits_2_with_one_line(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["convergence", *flags, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []  # refused before any run folder was made


def test_bad_input_through_the_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(["convergence", "--seeds", "0", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert exc.value.code == 2 and captured.out == ""
    assert captured.err.strip().splitlines() == [
        "python -m bench convergence: error: argument --seeds: expected a positive integer, got 0"
    ]


def test_cli_smoke_writes_rows_samples_report_and_figures(tmp_path, capsys):
    argv = ["convergence", "--seeds", "3", "--steps", "200", "--eval-every", "50", "--target-mae", "2.0"]
    argv += ["--mode", "eager", "--out", str(tmp_path)]
    assert bench_main(argv) == 0
    run_dir = (tmp_path / "latest-convergence").resolve()
    assert not (tmp_path / "latest").exists()  # `latest` stays the last `bench run`
    df = pd.read_csv(run_dir / "results.csv")
    assert list(df["output_activation"]) == ["relu", "none"]
    assert set(df["workload"]) == {"convergence"}
    ok = df[df["status"] == "ok"]
    assert list(ok["mode"]) == ["eager", "eager"]
    assert (ok["seeds"] == 3).all() and (ok["steps"] == 200).all()
    assert (
        (ok["convergence_rate_ci_low"] <= ok["convergence_rate"])
        & (ok["convergence_rate"] <= ok["convergence_rate_ci_high"])
    ).all()
    assert (ok["run_s"] > 0).all() and (ok["eval_s"] > 0).all()  # times: the ratios below check them
    doc = json.loads((run_dir / "run.json").read_text())
    samples = {(r["key"]["mode"], r["key"]["output_activation"]): r["samples"] for r in doc["records"]}[
        ("eager", "none")
    ]
    assert samples["eval_steps"] == [0, 50, 100, 150, 200]
    assert [s["seed"] for s in samples["per_seed"]] == [0, 1, 2]
    one = samples["one_seed"]
    assert one["cost_ratio"] == pytest.approx(one["ensemble_run_s"] / one["run_s"])
    assert one["ensemble_run_s"] == pytest.approx(one["ensemble_clock_s"][-1])
    assert one["run_s"] == pytest.approx(one["clock_s"][-1])
    steady = [(b - a) / 50 for a, b in zip(one["clock_s"][1:], one["clock_s"][2:])]  # chunks after step 50
    steady_ensemble = [(b - a) / 50 for a, b in zip(one["ensemble_clock_s"][1:], one["ensemble_clock_s"][2:])]
    assert one["steady_cost_ratio"] == pytest.approx(
        statistics.median(steady_ensemble) / statistics.median(steady)
    )
    report = (run_dir / "report.md").read_text()
    assert "## Summary" in report and "## Seeds that never converged" in report
    for name in ("curves_cpu_eager_relu.png", "curves_cpu_eager_none.png", "steps_to_target.png"):
        assert f"(figures/{name})" in report and (run_dir / "figures" / name).stat().st_size > 1000
    out = capsys.readouterr().out
    assert "| device" in out and "report.md" in out


def test_cli_no_ensemble_trains_seeds_one_after_another(tmp_path):
    argv = ["convergence", "--seeds", "2", "--steps", "100", "--output-activation", "none", "--no-ensemble"]
    assert bench_main([*argv, "--no-figures", "--out", str(tmp_path)]) == 0
    run_dir = (tmp_path / "latest-convergence").resolve()
    doc = json.loads((run_dir / "run.json").read_text())
    (entry,) = doc["records"]
    assert entry["samples"]["training"] == "sequential" and "one_seed" not in entry["samples"]
    assert entry["measured"]["verdict"].startswith("0/2 seeds converged (2 sequential runs)")
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.md", "results.csv", "run.json"]
    assert "Figures skipped: --no-figures given" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize("mode", ["compile-fullstep", "numpy-reference", "eager,numpy-reference"])
def test_cli_a_mode_the_study_cannot_train_exits_2(tmp_path, capsys, mode):
    with pytest.raises(SystemExit) as exc:
        bench_main(["convergence", "--mode", mode, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "trains in eager, compile only" in err[0]
    assert not list(tmp_path.iterdir())  # refused before a run folder was made


def test_an_interrupted_study_says_so_and_judges_no_seed(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bench.commands.convergence.study_config", interrupted)
    argv = ["convergence", "--seeds", "2", "--steps", "100", "--no-figures", "--out", str(tmp_path)]
    assert bench_main(argv) == 130
    run_dir = (tmp_path / "latest-convergence").resolve()
    report = (run_dir / "report.md").read_text()
    assert "**Interrupted**" in report and "Every seed converged" not in report
    assert "No configuration finished" in report
    df = pd.read_csv(run_dir / "results.csv")
    assert list(df["status"]) == ["failed"] and "interrupted" in df["reason"].iloc[0]


def test_cli_records_the_study_in_the_history_given_by_db(tmp_path, capsys):
    """The README: every convergence run records itself in the history (--db NEW.db is made)."""
    require("sqlalchemy", "the results history's database")
    from bench.history.db import open_history

    db = tmp_path / "new.db"
    argv = [
        "convergence",
        "--seeds",
        "2",
        "--steps",
        "50",
        "--eval-every",
        "25",
        "--output-activation",
        "none",
    ]
    assert bench_main([*argv, "--no-figures", "--out", str(tmp_path / "out"), "--db", str(db)]) == 0
    assert f"in {db}" in capsys.readouterr().out
    with open_history(db, create=False) as history:
        assert history.count_runs() == 1
        assert [c.workload for c in history.configs().values()] == ["convergence"]
