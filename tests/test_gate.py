"""bench.commands.gate: passes A/A pairs, fails real slowdowns and lost convergence, exits 2 on bad input.

Runs are results folders written with RunWriter from seeded synthetic samples.
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.__main__ import main as bench_main
from bench.analysis.significance import RegressionCheck, between_repeats, judge
from bench.commands.gate import ConvergenceCheck, env_mismatch
from bench.commands.gate import gate as gate_runs
from bench.store.run_folder import Run, RunWriter
from tests.factories import record

ENV = {
    "host": "ci-runner",
    "cpu_model": "Xeon",
    "gpu_name": "",
    "torch_version": "2.13.0",
    "cuda_version": "",
}
TRAIN = dict(workload="train", device="cpu", mode="eager", batch_size=32, threads=2, output_activation="relu")


def infer_key(batch):
    return dict(TRAIN, workload="inference", batch_size=batch)


def make_run(
    path: Path, *, seed=0, slow_train=1.0, slow_infer=1.0, env=ENV, converged=True, mae=0.003, extra=()
):
    """A quick-preset-like run: 29 step blocks, 7 latency blocks for two batch sizes."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    writer = RunWriter(path, dict(env))
    steps = list(slow_train * 0.5 * rng.lognormal(0, 0.05, 29))
    writer.add(
        record({"step_ms": steps}, **TRAIN, converged=converged, mae=mae, verdict="MAE ..."),
    )
    for batch, ms in ((1, 0.05), (1024, 0.4)):
        lat = list(slow_infer * ms * rng.lognormal(0, 0.08, 7))
        writer.add(record({"latency_ms": lat}, **infer_key(batch)))
    for values in extra:
        writer.add(record(**values))
    return path


def gate(capsys, baseline, current, *extra):
    argv = ["gate", "--baseline", str(baseline), "--current", str(current), *extra]
    try:
        code = bench_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_a_a_pairs_pass(tmp_path, capsys):
    for seed in range(5):
        base = make_run(tmp_path / f"b{seed}", seed=2 * seed)
        cur = make_run(tmp_path / f"c{seed}", seed=2 * seed + 1)
        code, out, _ = gate(capsys, base, cur)
        assert code == 0, out
        assert "# Benchmark gate: PASS" in out and "REGRESSION" not in out


def test_a_slowed_training_step_fails_with_the_reason(tmp_path, capsys):
    base, cur = make_run(tmp_path / "b", seed=1), make_run(tmp_path / "c", seed=2, slow_train=1.25)
    out_file = tmp_path / "ci" / "gate.md"
    code, out, _ = gate(capsys, base, cur, "--out", str(out_file), "--metric", "step_ms,latency_ms")
    assert code == 1
    assert "FAIL (1 regression)" in out
    assert "1. train/cpu/eager/32/2/relu step_ms: median +2" in out
    assert out_file.read_text() in out  # the file CI posts is the printed report
    # the inference rows were compared too, and passed
    assert out.count("| inference/") == 2 and out.count("REGRESSION") == 1


def test_every_regression_is_listed_before_one_exit(tmp_path, capsys):
    base = make_run(tmp_path / "b", seed=1)
    cur = make_run(tmp_path / "c", seed=2, slow_train=1.5, slow_infer=2.0, converged=False, mae=14.9)
    code, out, _ = gate(capsys, base, cur, "--metric", "step_ms,latency_ms")
    assert code == 1
    assert "FAIL (4 regressions)" in out
    regressions = out.split("## Regressions")[1]
    for text in ("train/cpu/eager/32/2/relu step_ms", "inference/cpu/eager/1/2/relu latency_ms",
                 "inference/cpu/eager/1024/2/relu latency_ms", "converged in the baseline, not now"):  # fmt: skip
        assert text in regressions


def test_the_threshold_and_metrics_are_honoured(tmp_path, capsys):
    base, cur = make_run(tmp_path / "b", seed=1), make_run(tmp_path / "c", seed=2, slow_train=1.25)
    assert gate(capsys, base, cur, "--max-slowdown", "50%")[0] == 0
    assert gate(capsys, base, cur, "--max-slowdown", "median:10%")[0] == 1
    code, out, _ = gate(capsys, base, cur, "--max-slowdown", "p10:10%")
    assert code == 1 and "step_ms: p10 +2" in out and "its p10 is more than 10% slower" in out
    code, out, _ = gate(capsys, base, cur, "--metric", "latency_ms")
    assert code == 0 and "step_ms" not in out.split("## Speed")[1].split("## Convergence")[0]
    # by default only the training step is gated: slowed inference alone passes
    slow_infer = make_run(tmp_path / "i", seed=3, slow_infer=2.0)
    code, out, _ = gate(capsys, base, slow_infer)
    assert code == 0 and "Metrics gated: step_ms." in out and "| inference/" not in out


def test_a_ratio_above_the_limit_without_significance_is_inconclusive(tmp_path, capsys):
    """Issue 19: neither a pass nor a regression: exit 3, the reason, and what to run instead."""

    def run(path, samples):
        path.mkdir()
        RunWriter(path, dict(ENV)).add(record({"step_ms": samples}, **TRAIN))
        return path

    base = run(tmp_path / "b", [1.0, 2.0, 3.0, 4.0, 5.0])
    cur = run(tmp_path / "c", [1.2, 2.2, 3.5, 4.4, 5.6])  # median +16.7%, noise far larger
    code, out, _ = gate(capsys, base, cur)
    assert code == 3 and "# Benchmark gate: INCONCLUSIVE (1 configuration)" in out and "REGRESSION" not in out
    assert "median ratio 1.167 is beyond the limit 1.10, but its 95% interval" in out
    assert "python -m bench ab BASE" in out and "--repeats" in out and "--metric instructions" in out
    noisy = run(tmp_path / "n", [1.0, 2.0, 3.0, 4.0, 5.0])
    RunWriter(noisy, dict(ENV)).add(record({"step_ms": [1.0, 2.0, 3.0, 4.0, 5.0]}, **TRAIN, flags="noisy"))
    code, out, _ = gate(capsys, base, noisy)
    assert (
        code == 3
        and "INCONCLUSIVE (noisy: baseline, current)" in out
        and "both runs are flagged noisy" in out
    )


def test_mae_tolerance_is_the_stated_one():
    check = ConvergenceCheck()

    def fails(now, before):
        return check.fails(
            record(**TRAIN, converged=now[0], mae=now[1]), record(**TRAIN, converged=before[0], mae=before[1])
        )

    assert check.mae_limit(0.003) == pytest.approx(0.008)  # baseline + 0.005 allows more than 2 x
    assert check.mae_limit(0.01) == pytest.approx(0.02)  # 2 x allows more than + 0.005
    assert fails((True, 0.0079), (True, 0.003)) is None
    message = fails((True, 0.0081), (True, 0.003))
    assert message is not None and "0.0081 > limit 0.0080" in message
    # not converging in both runs is not a regression; learning again is not either
    assert fails((False, 15.1), (False, 15.0)) is None
    assert fails((True, 0.004), (False, 15.0)) is None
    assert "not now" in fails((False, 0.004), (True, 0.004))


def test_lost_convergence_fails(tmp_path, capsys):
    base = make_run(tmp_path / "b", seed=1)
    cur = make_run(tmp_path / "c", seed=2, converged=False, mae=0.012)
    code, out, _ = gate(capsys, base, cur)
    assert code == 1
    assert "converged in the baseline, not now" in out and "## Convergence" in out


def test_failed_and_skipped_rows_are_listed_and_a_new_failure_fails(tmp_path, capsys):
    compile_row = dict(TRAIN, mode="compile", step_ms=0.3)
    cuda_row = dict(TRAIN, device="cuda", status="skipped", reason="no CUDA GPU")
    base = make_run(tmp_path / "b", seed=1, extra=[compile_row, cuda_row])
    broken = dict(TRAIN, mode="compile", status="failed", reason="InductorError: boom")
    cur = make_run(tmp_path / "c", seed=2, extra=[broken, cuda_row])
    code, out, _ = gate(capsys, base, cur)
    assert code == 1
    assert "train/cpu/compile/32/2/relu: ran in the baseline, fails now: InductorError: boom" in out
    assert "train/cuda/eager/32/2/relu: baseline skipped, current skipped" in out


def test_env_mismatch_is_refused_unless_allowed(tmp_path, capsys):
    base = make_run(tmp_path / "b", seed=1)
    cur = make_run(tmp_path / "c", seed=2, env=dict(ENV, torch_version="2.14.0", host="other"))
    code, _, err = gate(capsys, base, cur)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "torch_version: 2.13.0 vs 2.14.0" in err and "--allow-env-mismatch" in err and "host" not in err
    code, out, _ = gate(capsys, base, cur, "--allow-env-mismatch")
    assert code == 0 and "DIFFER, allowed by --allow-env-mismatch: torch_version" in out


def test_env_fields_not_recorded_are_named_not_refused():
    differ, unknown = env_mismatch({"cpu_model": "A", "torch_version": "2"}, {"cpu_model": "A"})
    assert differ == [] and unknown == ["gpu_name", "torch_version", "cuda_version"]
    differ, _ = env_mismatch({"gpu_name": ""}, {"gpu_name": "H100"})
    assert differ == ["gpu_name: (none) vs H100"]


def _no_common(tmp_path):
    base = make_run(tmp_path / "b", seed=1)
    other = tmp_path / "c"
    other.mkdir()
    RunWriter(other, dict(ENV)).add(record({"step_ms": [1.0] * 5}, **dict(TRAIN, batch_size=64)))
    return base, other


def _wrong_schema(tmp_path):
    base = make_run(tmp_path / "b", seed=1)
    cur = make_run(tmp_path / "c", seed=2)
    csv = cur / "results.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0]] + ["99" + line[line.index(",") :] for line in lines[1:]]) + "\n")
    return base, cur


def _unreadable(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    return make_run(tmp_path / "b", seed=1), bad


def _missing(tmp_path):
    return make_run(tmp_path / "b", seed=1), tmp_path / "nowhere"


def _wrong_schema_json(tmp_path):
    cur = make_run(tmp_path / "c", seed=2)
    doc = json.loads((cur / "run.json").read_text())
    doc["schema_version"] = 99
    (tmp_path / "old.json").write_text(json.dumps(doc))
    return make_run(tmp_path / "b", seed=1), tmp_path / "old.json"


def _same_run(tmp_path):
    base = make_run(tmp_path / "b", seed=1)
    return base, base / "results.csv"


def _different_lengths(tmp_path):
    base, cur = make_run(tmp_path / "b", seed=1), make_run(tmp_path / "c", seed=2)
    for run, steps in ((base, 3000), (cur, 200)):
        frame = pd.read_csv(run / "results.csv")
        frame.loc[frame["workload"] == "train", "steps"] = steps
        frame.to_csv(run / "results.csv", index=False)
    return base / "results.csv", cur / "results.csv"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_missing, "no such file"),
        (_unreadable, "not readable JSON"),
        (_wrong_schema, "schema version 99"),
        (_wrong_schema_json, "schema version 99"),
        (_no_common, "no configuration in common"),
        (_same_run, "the same run"),
        (_different_lengths, "trained 3000 steps and the current run 200"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, build, message):
    base, cur = build(tmp_path)
    code, out, err = gate(capsys, base, cur)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "message"), [(["--max-slowdown", "10"], "10%"), (["--metric", "step_s"], "choose from")]
)
def test_bad_flags_exit_2(tmp_path, capsys, flags, message):
    base, cur = make_run(tmp_path / "b", seed=1), make_run(tmp_path / "c", seed=2)
    code, _, err = gate(capsys, base, cur, *flags)
    assert code == 2 and message in err


def test_gate_reads_csv_alone_and_checks_the_bare_ratio(tmp_path, capsys):
    base, cur = make_run(tmp_path / "b", seed=1), make_run(tmp_path / "c", seed=2, slow_train=1.3)
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(cur / "results.csv", only / "results.csv")
    code, out, _ = gate(capsys, base, only / "results.csv")
    assert code == 1 and "median ratio alone" in out


def test_gate_reads_pytest_benchmark_json(tmp_path, capsys):
    def doc(scale, seed):
        rng = np.random.default_rng(seed)
        data = list(scale * 5e-4 * rng.lognormal(0, 0.05, 30))
        extra = {"workload": "train", "device": "cpu", "mode": "eager", "batch_size": 32, "threads": 2,
                 "output_activation": "relu"}  # fmt: skip
        stats = {"median": float(np.median(data)), "min": min(data), "iqr": 0.0, "data": data}
        return {"machine_info": {"node": "ci", "cpu": {"brand_raw": "Xeon"}}, "benchmarks": [
            {"name": "test_train_step", "extra_info": extra, "stats": stats}]}  # fmt: skip

    paths = []
    for name, scale, seed in (("a", 1.0, 1), ("b", 1.0, 2), ("slow", 1.25, 3)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc(scale, seed)))
    assert gate(capsys, paths[0], paths[1])[0] == 0
    code, out, _ = gate(capsys, paths[0], paths[2])
    assert code == 1 and "train/cpu/eager/32/2/relu step_ms" in out


def _edit_csv(run: Path, edit) -> Path:
    """Rewrite results.csv as `edit(frame)` returns it (the frame itself when it returns None)."""
    df = pd.read_csv(run / "results.csv", dtype=object, keep_default_na=False)
    edited = edit(df)
    (df if edited is None else edited).to_csv(run / "results.csv", index=False)
    (run / "run.json").unlink()  # the CSV alone, as a user might hand it over
    return run


def test_a_configuration_missing_now_fails_unless_allowed(tmp_path, capsys):
    base = make_run(tmp_path / "b", seed=1)
    cur = _edit_csv(make_run(tmp_path / "c", seed=2), lambda df: df.iloc[:-1])
    code, out, _ = gate(capsys, base, cur)
    assert code == 1 and "measured in the baseline, absent now" in out
    assert bench_main(["gate", "--baseline", str(base), "--current", str(cur), "--allow-missing"]) == 0


@pytest.mark.parametrize(
    "value, message", [("fast", "step_ms is 'fast', not a number"), ("-5", "step_ms is -5, a negative time")]
)
def test_unreadable_or_negative_times_are_bad_input(tmp_path, capsys, value, message):
    base = make_run(tmp_path / "b", seed=1)

    def edit(df):
        df.loc[df["workload"] == "train", "step_ms"] = value

    cur = _edit_csv(make_run(tmp_path / "c", seed=2), edit)
    with pytest.raises(SystemExit) as exc:
        bench_main(["gate", "--baseline", str(base), "--current", str(cur)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and message in err[0]


# --- issue 19: inconclusive is a verdict; between-run evidence; instructions; a loaded machine ------


def _blocks(rng, level, repeats, per_repeat=29, noise=0.25, levels=None):
    """Raw step blocks of `repeats` repeats in order, each around `level` (or its own `levels[i]`)."""
    levels = levels or [level] * repeats
    return [float(v) for lv in levels for v in lv * rng.lognormal(0, noise, per_repeat)]


def _run(*records, env=ENV):
    return Run("hand-built", dict(env), {}, list(records))


def test_an_a_a_pair_with_both_runs_noisy_is_never_a_regression_without_between_run_evidence():
    rng = np.random.default_rng(7)
    base = record({"step_ms": _blocks(rng, 0.5, 1)}, **TRAIN, flags="noisy")
    # a burst longer than the run: the whole current run 30% slower, so the samples alone say "regression"
    cur = record({"step_ms": _blocks(rng, 0.65, 1)}, **TRAIN, flags="noisy")
    within = judge(base, cur, "step_ms", RegressionCheck())
    assert within.result.ci_low > 1.1  # the bootstrap inside the runs would have raised the alarm
    result = gate_runs(_run(base), _run(cur))
    assert result.exit_code == 3 and result.failures == []
    (line,) = result.speed.to_dict("records")
    assert line["verdict"] == "INCONCLUSIVE (noisy: baseline, current)"
    assert "both runs are flagged noisy" in result.inconclusive[0]


def test_between_run_evidence_decides_noisy_runs_with_repeats():
    rng = np.random.default_rng(8)
    base = record({"step_ms": _blocks(rng, 0.5, 3)}, **TRAIN, repeats=3, flags="noisy")
    slow = record({"step_ms": _blocks(rng, 0.65, 3, noise=0.15)}, **TRAIN, repeats=3, flags="noisy")
    result = gate_runs(_run(base), _run(slow))  # every repeat 30% slower: it holds between runs
    assert result.exit_code == 1 and "REGRESSION (noisy: baseline, current)" in result.speed["verdict"][0]
    # a burst that hit two of the three current repeats: slower within the run, not between runs
    burst = record({"step_ms": _blocks(rng, 0, 3, noise=0.15, levels=[0.7, 0.7, 0.5])}, **TRAIN, repeats=3)
    assert judge(base, burst, "step_ms", RegressionCheck()).result.ci_low > 1.1
    result = gate_runs(_run(base), _run(burst))
    assert result.exit_code == 3 and "not between them" in result.inconclusive[0]
    assert between_repeats(burst, base, "step_ms")[0] < 1.1


def test_a_loaded_machine_is_named_and_a_loaded_noisy_row_is_not_a_regression():
    rng = np.random.default_rng(9)
    base = record({"step_ms": _blocks(rng, 0.5, 1, noise=0.03)}, **TRAIN)
    loaded = dict(load_avg_before=6.5, load_avg_after=8.0, cpu_steal_frac=0.31)
    cur = record({"step_ms": _blocks(rng, 0.7, 1)}, **TRAIN, flags="noisy", **loaded)
    result = gate_runs(_run(base), _run(cur, env=dict(ENV, cpu_cores=2)))
    assert result.exit_code == 3
    assert "loaded: current load 8.0 on 2 cores, steal 31%" in result.speed["verdict"][0]
    assert "noisy on a loaded machine" in result.inconclusive[0]
    quiet = record({"step_ms": _blocks(rng, 0.7, 1, noise=0.03)}, **TRAIN, **loaded)  # loaded, not noisy
    assert gate_runs(_run(base), _run(quiet, env=dict(ENV, cpu_cores=2))).exit_code == 1


def _counts(per_step, spread=0.001, n=3):
    return [per_step * (1 + spread * (i - 1)) for i in range(n)]


@pytest.mark.parametrize(
    ("factor", "code", "verdict"), [(1.005, 0, "within limit"), (1.03, 1, "REGRESSION"), (0.97, 0, "fewer")]
)
def test_instructions_use_a_1_percent_limit_on_the_median_count(factor, code, verdict):
    infer = dict(TRAIN, workload="inference", batch_size=1)
    base = [
        record({"instructions_per_step": _counts(2.27e6)}, **TRAIN),
        record({"instructions_per_call": _counts(5.0e5)}, **infer),
    ]
    cur = [
        record({"instructions_per_step": _counts(2.27e6 * factor)}, **TRAIN),
        record({"instructions_per_call": _counts(5.0e5)}, **infer),
    ]
    result = gate_runs(_run(*base), _run(*cur), metrics=["instructions"])
    assert result.exit_code == code and result.speed["verdict"][0].startswith(verdict)
    assert result.speed["ratio"][0] == pytest.approx(factor) and math.isnan(result.speed["ci_low"][0])
    if code:
        assert "instructions +3.00% (limit +1%)" in result.failures[0]


def test_instruction_counts_that_spread_are_refused(tmp_path, capsys):
    base, cur = tmp_path / "b", tmp_path / "c"
    for path, spread in ((base, 0.001), (cur, 0.01)):
        path.mkdir()
        RunWriter(path, dict(ENV)).add(record({"instructions_per_step": _counts(2.27e6, spread)}, **TRAIN))
    code, _, err = gate(capsys, base, cur, "--metric", "instructions")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "the current run's counts spread 2.00% between processes, over 0.5%" in err


def test_the_exit_codes_are_documented_in_the_help(capsys):
    with pytest.raises(SystemExit):
        bench_main(["gate", "-h"])
    assert "0 pass, 1 regression, 2 bad input, 3 inconclusive" in capsys.readouterr().out


# --- issue 20: unreadable cells are bad input, never a pass -------------------------------------


def test_unreadable_convergence_is_bad_input_not_a_pass(tmp_path, capsys):
    base = make_run(tmp_path / "b", seed=1)

    def edit(df):
        df["converged"] = "maybe"

    cur = _edit_csv(make_run(tmp_path / "c", seed=2), edit)
    code, out, err = gate(capsys, base, cur)
    assert code == 2 and "PASS" not in out and len(err.strip().splitlines()) == 1
    assert "line 2: converged is 'maybe', not True or False" in err


def test_a_threads_cell_that_is_text_is_bad_input(tmp_path, capsys):
    base = make_run(tmp_path / "b", seed=1)

    def edit(df):
        df.loc[df["workload"] == "inference", "threads"] = "many"

    cur = _edit_csv(make_run(tmp_path / "c", seed=2), edit)
    code, _, err = gate(capsys, base, cur)
    assert (
        code == 2 and len(err.strip().splitlines()) == 1 and "line 3: threads is 'many', not a number" in err
    )
