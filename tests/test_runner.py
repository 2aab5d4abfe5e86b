"""The run command end to end on the CPU with tiny step counts, and its failure paths."""

import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.__main__ import main as bench_main
from bench.commands import run as runner
from bench.commands.session import INTERRUPTED, signals_ignored
from bench.measure import instructions, workloads
from bench.measure.environment import max_threads
from bench.records import ConfigKey
from bench.store.load import load_run

TINY = [
    "--steps",
    "200",
    "--repeats",
    "2",
    "--threads",
    "1",
    "--batch-sizes",
    "1,64",
    "--no-progress",
    "--target-mae",
    "1.0",
]


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


@pytest.mark.slow
def test_cli_smoke_run_writes_every_output(tmp_path):
    """One real end-to-end subprocess run; the rest of the CLI is tested in-process."""
    proc = _cli("run", "--device", "auto", "--mode", "eager", "--out", str(tmp_path), "--no-figures", *TINY)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "latest"
    assert {"results.csv", "run.json", "report.md"} <= {p.name for p in run_dir.iterdir()}
    run = load_run(run_dir)
    df = run.frame
    train = df[(df.workload == "train") & (df.device == "cpu")].iloc[0]
    assert train.status == "ok" and train.steps == 200 and train.repeats == 2
    samples = {r.key: r.samples for r in run.records}[
        ConfigKey("train", "cpu", "eager", 32, int(train.threads), "relu")
    ]
    assert len(samples["run_s"]) == 2 and len(samples["step_ms"]) == 2  # one steady block per repeat
    assert train.step_ms == pytest.approx(statistics.median(samples["step_ms"]))
    assert train.run_s * 1e3 >= 100 * min(samples["step_ms"])  # the timed block lies inside the run
    assert train.first_call_s == pytest.approx(samples["first_call_s"][0])
    assert train.samples_per_s == pytest.approx(32 / (train.step_ms / 1e3))
    assert train.flops_per_step == 933_120
    inference = df[(df.workload == "inference") & (df.device == "cpu")]
    assert sorted(inference.batch_size) == [1, 64] and (inference.page_faults_per_call >= 0).all()
    glibc = platform.libc_ver()[0] == "glibc"  # mallopt is glibc's; elsewhere the pin is reported off
    assert json.loads((run_dir / "run.json").read_text())["settings"]["malloc_pinned"] is glibc
    for row in inference.itertuples():
        latencies = {r.key: r.samples for r in run.records}[
            ConfigKey("inference", "cpu", "eager", row.batch_size, row.threads, "relu")
        ]
        assert row.latency_ms == pytest.approx(statistics.median(latencies["latency_ms"]))
    report = (run_dir / "report.md").read_text()
    assert "## Training" in report and "## Inference throughput" in report
    assert proc.stdout.splitlines()[0].startswith("| device")  # the console ends with the summary table
    if not torch.cuda.is_available():
        cuda = df[df.device == "cuda"]
        assert set(cuda.status) == {"skipped"} and cuda.reason.str.len().min() > 0
        assert "## Skipped and failed" in report


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "tpu"], "unknown device"),
        (["--mode", "turbo"], "unknown mode"),
        (["--preset", "huge"], "unknown preset"),
        (["--steps", "0"], "positive integer"),
        (["--steps", "1e3"], "positive integer"),
        (["--repeats", "-1"], "positive integer"),
        (["--threads", "0"], "--threads"),
        (["--batch-sizes", "1,x"], "--batch-sizes"),
        (["--out", "/proc/forbidden"], "cannot write"),
        (["--out", ""], "--out is empty"),
        (["--mode", ""], "empty selection"),
        (["--threads", ""], "--threads"),
        (["--seed", str(2**64)], "at most 2**63 - 1"),
        (["--device", "cpu", "--mode", "cudagraph"], "--mode cudagraph cannot run on cpu"),
        (["--batch-size", "10000000000"], "--batch-size: expected at most 1,048,576"),
        (["--batch-size", "1048577"], "--batch-size: expected at most 1,048,576"),
        (["--steps", "100000000000"], "--steps: expected at most 10,000,000"),
        (["--repeats", "1001"], "--repeats: expected at most 1,000"),
        (
            ["--batch-sizes", "1,100000000000"],
            "--batch-sizes must be a comma list of integers from 1 to 1,048,576",
        ),
        (["--threads", "100000"], f"--threads must be a comma list of integers from 1 to {max_threads()}"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(["run", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_an_explicit_absent_device_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(["run", "--device", "cuda", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        exc.value.code == 2
        and len(err) == 1
        and err[0].startswith("python -m bench run: error: --device cuda:")
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["abc", "inf", "nan", "-1", "1e9"])
def test_a_bad_slowdown_variable_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch, value):
    monkeypatch.setenv("SUMNET_BENCH_SLOWDOWN", value)
    with pytest.raises(SystemExit) as exc:
        bench_main(["run", "--device", "cpu", "--mode", "eager", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "SUMNET_BENCH_SLOWDOWN must be a number" in err[0]


def test_an_interrupt_before_the_run_folder_exists_is_one_line(tmp_path, capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("bench.commands.session.environment.collect", interrupted)
    assert bench_main(["run", "--device", "cpu", "--mode", "eager", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["python -m bench run: interrupted before anything was measured"]


@pytest.mark.parametrize("args", [["explode"], []])
def test_unknown_or_missing_command_exits_2_with_one_line(args, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(args)
    captured = capsys.readouterr()
    assert exc.value.code == 2 and len(captured.err.strip().splitlines()) == 1 and captured.out == ""


def _options(tmp_path, modes="eager,compile"):
    args = [
        "run",
        "--device",
        "cpu",
        "--mode",
        modes,
        "--out",
        str(tmp_path),
        "--no-figures",
        "--no-inference",
        *TINY,
    ]
    parser = __import__("argparse").ArgumentParser()
    runner.add_arguments(parser)
    return runner.options_from_args(parser.parse_args(args[1:]))


def _sweep_options(tmp_path, sizes="1,7,2"):
    parser = __import__("argparse").ArgumentParser()
    runner.add_arguments(parser)
    args = ["--device", "cpu", "--mode", "eager", "--out", str(tmp_path), "--no-figures", "--no-history"]
    args += ["--steps", "200", "--repeats", "1", "--threads", "1", "--batch-sizes", sizes, "--no-progress"]
    return runner.options_from_args(parser.parse_args(args))


def test_a_batch_size_that_fails_is_recorded_in_its_own_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = workloads.make_batch

    def allocation_fails_at_seven(batch_size, *a, **k):
        if batch_size == 7:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory")
        return real(batch_size, *a, **k)

    monkeypatch.setattr(workloads, "make_batch", allocation_fails_at_seven)
    args = [
        "run",
        "--device",
        "cpu",
        "--mode",
        "eager",
        "--out",
        str(tmp_path),
        "--no-figures",
        "--no-history",
    ]
    args += ["--steps", "200", "--repeats", "1", "--threads", "1", "--batch-sizes", "1,7,2", "--no-progress"]
    assert bench_main(args) == 0
    df = load_run(tmp_path / "latest").frame
    inference = df[df.workload == "inference"].set_index("batch_size")
    assert list(inference.index) == [1, 7, 2]
    assert list(inference.status) == ["ok", "failed", "ok"]
    reason = "RuntimeError: [enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory"
    assert inference.loc[7, "reason"] == reason
    assert inference.loc[[1, 2], "latency_ms"].notna().all()
    report = (tmp_path / "latest" / "report.md").read_text()
    cells = [
        [c.strip() for c in line.strip("|").split("|")] for line in report.splitlines() if "| failed" in line
    ]
    assert cells == [["cpu", "eager", "1", "inference", "7", "failed", reason]]  # the report names the size


def test_an_interrupt_mid_sweep_keeps_the_sizes_measured_and_names_the_one_cut_short(tmp_path, monkeypatch):
    real = workloads.make_batch

    def interrupted_at_seven(batch_size, *a, **k):
        if batch_size == 7:
            raise KeyboardInterrupt
        return real(batch_size, *a, **k)

    monkeypatch.setattr(workloads, "make_batch", interrupted_at_seven)
    session = runner.run(_sweep_options(tmp_path))
    assert session.interrupted
    saved = load_run(session.run_dir).frame
    inference = saved[saved.workload == "inference"].set_index("batch_size")
    assert list(inference.index) == [1, 7]  # 2 never started
    assert inference.loc[1, "status"] == "ok" and inference.loc[1, "latency_ms"] > 0
    assert (inference.loc[7, "status"], inference.loc[7, "reason"]) == ("failed", INTERRUPTED)
    assert saved[saved.workload == "train"].iloc[0].status == "ok"


def test_a_failing_configuration_is_recorded_and_the_rest_runs(tmp_path, monkeypatch):
    real = runner.build_trainer

    def flaky(mode, *a, **k):
        if mode == "compile":
            raise RuntimeError("simulated compiler crash\nsecond line not kept")
        return real(mode, *a, **k)

    monkeypatch.setattr(runner, "build_trainer", flaky)
    session = runner.run(_options(tmp_path, "compile,eager"))
    interrupted = session.interrupted
    df = session.writer.frame()
    failed = df[df["mode"] == "compile"].iloc[0]
    assert failed.status == "failed" and failed.reason == "RuntimeError: simulated compiler crash"
    assert df[df["mode"] == "eager"].iloc[0].status == "ok"
    assert not interrupted


def test_an_interrupted_run_keeps_its_rows(tmp_path, monkeypatch):
    real = runner.build_trainer

    def interrupt_second(mode, *a, **k):
        if mode == "compile":
            raise KeyboardInterrupt
        return real(mode, *a, **k)

    monkeypatch.setattr(runner, "build_trainer", interrupt_second)
    session = runner.run(_options(tmp_path, "eager,compile"))
    run_dir = session.run_dir
    assert session.interrupted
    on_disk = pd.read_csv(run_dir / "results.csv")
    assert list(on_disk["mode"]) == ["eager", "compile"]
    assert list(on_disk["status"]) == ["ok", "failed"] and on_disk["reason"].iloc[1] == INTERRUPTED
    assert json.loads((run_dir / "run.json").read_text())["records"][0]["samples"]["step_ms"]


def test_main_returns_130_and_writes_report_when_interrupted(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "build_trainer", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    code = bench_main(
        ["run", "--device", "cpu", "--mode", "eager", "--out", str(tmp_path), "--no-figures", *TINY]
    )
    assert code == 130
    assert (Path(tmp_path) / "latest" / "report.md").exists()
    assert "INTERRUPTED" in capsys.readouterr().out


def test_thread_sweep_applies_to_cpu_only():
    opts = runner.RunOptions(
        devices=["cpu", "cuda"],
        modes=["eager", "compile"],
        preset="quick",
        train=runner.PRESETS["quick"].train,
        inference=runner.PRESETS["quick"].inference,
        threads=[1, 2],
        seed=0,
        batch_size=32,
        output_activation="relu",
        out=Path("."),
    )
    assert runner._configs(opts) == [
        ("cpu", "eager", 1),
        ("cpu", "eager", 2),
        ("cuda", "eager", 2),
        ("cpu", "compile", 1),
        ("cpu", "compile", 2),
        ("cuda", "compile", 2),
    ]


def test_default_preset_sweeps_cpu_threads_and_threads_flag_overrides(monkeypatch):
    import argparse

    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 4)
    assert runner.options_from_args(parser.parse_args([])).threads == [1, 4]
    assert runner.options_from_args(parser.parse_args(["--threads", "3"])).threads == [3]
    quick = runner.options_from_args(parser.parse_args(["--preset", "quick"]))
    assert quick.threads == [torch.get_num_threads()]


def test_each_thread_count_labels_its_own_rows_and_notes_reach_the_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("SUMNET_BENCH_SLOWDOWN", "0.01")
    args = [
        "run",
        "--device",
        "cpu",
        "--mode",
        "eager,numpy-reference",
        "--threads",
        "1,2",
        "--out",
        str(tmp_path),
    ]
    args += [
        "--steps",
        "200",
        "--repeats",
        "1",
        "--no-inference",
        "--no-figures",
        "--no-progress",
        "--target-mae",
        "1",
    ]
    assert bench_main(args) == 0
    run_dir = (tmp_path / "latest").resolve()
    df = pd.read_csv(run_dir / "results.csv")
    assert sorted(df["threads"]) == [1, 1, 2, 2] and not any(c.startswith("env_") for c in df.columns)
    doc = json.loads((run_dir / "run.json").read_text())
    assert "threads" not in doc["env"] and doc["env"]["default_threads"] >= 1
    assert [r["key"]["threads"] for r in doc["records"]] == [1, 2, 1, 2]
    eager_notes = doc["records"][0]["notes"]
    assert any("torch.optim.Adam" in n for n in eager_notes)
    assert any("SUMNET_BENCH_SLOWDOWN=0.01: steps deliberately slowed" in n for n in eager_notes)
    assert "deliberately slowed" in df["notes"].iloc[0]
    report = (run_dir / "report.md").read_text()
    assert "## Notes of the modes" in report and "NumPy float32" in report and "deliberately slowed" in report
    assert "`numpy-reference`" in report  # the floor column names its floor


def test_a_second_interrupt_cannot_cut_the_report_short():
    import os
    import signal

    with signals_ignored():
        os.kill(os.getpid(), signal.SIGINT)  # ignored: no KeyboardInterrupt inside the block
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_then_sigterm_as_nox_sends_them_keeps_rows_and_report(tmp_path):
    """The README's path under nox: SIGINT, then SIGTERM 0.3 s later, while a run is measuring."""
    import signal
    import time

    args = [sys.executable, "-m", "bench", "run", "--device", "cpu", "--mode", "eager"]
    args += ["--steps", "100000", "--repeats", "1", "--no-inference", "--no-progress", "--no-history"]
    proc = subprocess.Popen(
        [*args, "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("*-*")):
        time.sleep(0.05)  # the run folder exists: the environment is collected, training starts
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run_dir = (tmp_path / "latest").resolve()
    assert (run_dir / "report.md").exists() and "**Interrupted**" in (run_dir / "report.md").read_text()
    rows = pd.read_csv(run_dir / "results.csv")
    assert list(rows["status"]) == ["failed"] and "interrupted" in rows["reason"].iloc[0]
    assert "INTERRUPTED: partial results" in out


def test_notes_a_mode_writes_during_its_first_step_reach_the_record(tmp_path):
    args = ["run", "--device", "cpu", "--mode", "compile-fullstep", "--threads", "1", "--out", str(tmp_path)]
    args += [
        "--steps",
        "200",
        "--repeats",
        "1",
        "--no-inference",
        "--no-figures",
        "--no-progress",
        "--no-history",
    ]
    args += ["--target-mae", "1"]
    assert bench_main(args) == 0
    doc = json.loads(((tmp_path / "latest").resolve() / "run.json").read_text())
    assert any("functional Adam" in n for n in doc["records"][0]["notes"])  # written by step() 1


def test_a_history_that_cannot_be_written_is_a_note_and_the_run_is_kept(tmp_path, capsys):
    not_a_database = tmp_path / "history.db"
    not_a_database.write_text("these are somebody's notes, not SQLite\n")
    out = tmp_path / "runs"
    args = ["run", "--device", "cpu", "--mode", "eager", "--out", str(out), "--no-figures", "--no-inference"]
    code = bench_main(
        [*args, "--steps", "200", "--repeats", "1", "--no-progress", "--db", str(not_a_database)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0
    assert [line for line in err if line.startswith("note: the history was not updated: ")], err
    assert not_a_database.read_text() == "these are somebody's notes, not SQLite\n"
    train = load_run(out / "latest").frame.iloc[0]
    assert (train.workload, train.status) == ("train", "ok")


def _parsed(*args):
    parser = __import__("argparse").ArgumentParser()
    runner.add_arguments(parser)
    return runner.options_from_args(parser.parse_args(list(args)))


def test_repeated_batch_sizes_are_measured_once_in_the_order_given():
    assert _parsed("--batch-sizes", "32,32,1,32").inference.batch_sizes == (32, 1)


def test_a_bad_extra_work_fraction_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SUMNET_BENCH_EXTRA_WORK", "lots")
    with pytest.raises(SystemExit) as exc:
        bench_main(["run", "--device", "cpu", "--mode", "eager", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "SUMNET_BENCH_EXTRA_WORK must be a number" in err[0]
    assert not list(tmp_path.iterdir())


def test_metric_instructions_defaults_to_one_thread_and_few_steps():
    opts = _parsed("--metric", "instructions", "--preset", "quick", "--device", "cpu")
    assert (opts.metric, opts.threads, opts.train.steps, opts.train.repeats) == ("instructions", [1], 20, 2)
    assert (
        _parsed("--metric", "instructions", "--threads", "2", "--steps", "5").train.steps == 5
    )  # given: kept


def test_without_valgrind_instruction_rows_are_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(instructions, "valgrind_missing", lambda: "valgrind not found: install valgrind")
    args = ["run", "--device", "cpu", "--mode", "eager", "--metric", "instructions", "--out", str(tmp_path)]
    assert bench_main([*args, "--no-figures", "--no-history", "--no-progress", "--batch-sizes", "1"]) == 0
    df = load_run(tmp_path / "latest").frame
    assert set(df.status) == {"skipped"} and set(df.reason) == {"valgrind not found: install valgrind"}
    assert instructions.instructions_skip_reason("cuda", "eager").startswith(
        "instructions are counted on the CPU only"
    )


def test_a_figure_that_cannot_be_saved_is_named_and_the_report_and_rows_are_kept(
    tmp_path, monkeypatch, capsys
):
    from matplotlib.figure import Figure

    real = Figure.savefig

    def disk_full_for_inference(self, path, *a, **k):
        if str(path).endswith("inference_throughput.png"):
            raise OSError(28, "No space left on device")
        return real(self, path, *a, **k)

    monkeypatch.setattr(Figure, "savefig", disk_full_for_inference)
    args = ["run", "--device", "cpu", "--mode", "eager", "--out", str(tmp_path), "--no-history", *TINY]
    assert bench_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    run_dir = (tmp_path / "latest").resolve()
    assert err[-1] == (
        f"figure not saved, the rows and report.md are: {run_dir / 'inference_throughput.png'} "
        "(No space left on device)"
    )
    report = (run_dir / "report.md").read_text()
    assert "Figure not saved: inference_throughput.png (No space left on device)." in report
    assert "inference_throughput.png)" not in report  # no link to the missing figure
    assert {p.name for p in run_dir.iterdir()} >= {"results.csv", "run.json", "train_step_time.png"}
    assert len(load_run(run_dir).frame) == 3


def test_each_record_holds_the_machine_load_and_its_own_peak_rss_and_the_run_its_times(tmp_path, monkeypatch):
    resets = []
    monkeypatch.setattr(runner, "reset_peak_rss", lambda: resets.append(1) or True)
    args = [
        "run",
        "--device",
        "cpu",
        "--mode",
        "eager",
        "--out",
        str(tmp_path),
        "--no-history",
        "--no-figures",
    ]
    assert bench_main([*args, *TINY]) == 0
    df = load_run(tmp_path / "latest").frame
    assert len(resets) == 3  # the training and each batch size: each its own peak
    assert (df.load_avg_before >= 0).all() and (df.load_avg_after >= 0).all()
    assert df.cpu_steal_frac.between(0, 1).all() or df.cpu_steal_frac.isna().all()
    settings = json.loads(((tmp_path / "latest") / "run.json").read_text())["settings"]
    assert settings["started_utc"] <= settings["ended_utc"] and settings["wall_s"] > 0
    assert "extra" not in settings and settings["metric"] == "time"
    report = (tmp_path / "latest" / "report.md").read_text()
    assert "## Machine load" in report and "`cpu_steal_frac`" in report


def test_a_training_row_takes_its_first_call_run_and_target_from_the_first_repeat():
    from bench.measure.workloads import RepeatResult, TrainMeasurement, TrainPlan
    from sumnet.evaluate import Metrics, Verdict

    def repeat(first_call_s, run_s, steps_to_target, time_to_target_s, mae):
        metrics = Metrics(mae=mae, exact_accuracy=1.0, zero_fraction=0.0)
        return RepeatResult(
            first_call_s, run_s, 0.1, [1e-3], {100: 0.5}, {100: mae}, steps_to_target, time_to_target_s,
            metrics, Verdict(True, "ok"),
        )  # fmt: skip

    cold, warm = repeat(38.4, 39.8, 200, 38.9, 0.001), repeat(0.2, 1.5, 100, 1.04, 0.003)
    key = ConfigKey("train", "cpu", "compile-fullstep", 32, 1)
    r = runner.train_record(key, TrainMeasurement([cold, warm, warm]), TrainPlan(), 0, [], {})
    m = r.measured
    assert (m["first_call_s"], m["run_s"], m["steps_to_target"], m["time_to_target_s"]) == (
        38.4,
        39.8,
        200,
        38.9,
    )
    assert m["time_to_target_s"] >= m["first_call_s"]  # the target's time holds the compile it waited for
    assert m["mae"] == 0.003 and m["run_warm_s"] == 1.5  # stated statistics: medians over the repeats


def test_metric_instructions_writes_the_counts_from_each_configurations_plan(tmp_path, monkeypatch, capsys):
    """The run's side of --metric instructions, with the valgrind child replaced by its answer."""
    plans = []

    def fake_count(plan):
        plans.append(plan)
        return instructions.InstructionCounts(
            plan, [2.0e6, 2.1e6], {1: [1e5, 1.2e5], 64: [3e6, 3e6]}, ["a note"]
        )

    monkeypatch.setattr(instructions, "valgrind_missing", lambda: None)
    monkeypatch.setattr(runner, "count_instructions", fake_count)
    args = ["run", "--device", "cpu", "--mode", "eager", "--metric", "instructions", "--out", str(tmp_path)]
    assert bench_main([*args, "--no-history", "--no-progress", "--batch-sizes", "1,64", "--steps", "10"]) == 0
    assert [(p.mode, p.threads, p.steps, p.repeats, p.inference_batch_sizes) for p in plans] == [
        ("eager", 1, 10, 2, (1, 64))
    ]
    df = load_run(tmp_path / "latest").frame.set_index("workload")
    assert df.loc["train", "instructions_per_step"] == pytest.approx(2.05e6)
    inference = df.loc["inference"].set_index("batch_size")
    assert list(inference.instructions_per_call) == [pytest.approx(1.1e5), 3e6]
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| device") and "instructions/step" in out.splitlines()[0]
    report = (tmp_path / "latest" / "report.md").read_text()
    assert "## Instructions (callgrind)" in report and "2,050,000" in report
    assert "(no training rows measured)" in report  # counted rows stay out of the timing table
