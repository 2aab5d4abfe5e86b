"""bench.commands.compare and bench.store.pytest_json: three input kinds into one schema, and the table's content.

Runs are built with the real writer (RunWriter, records from tests/factories.py) and synthetic samples from seeded RNGs.
"""

import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.__main__ import main as bench_main
from bench.commands.compare import (
    Reference,
    comparison_table,
    env_differences,
    not_compared,
    parse_reference,
)
from bench.errors import UsageError
from bench.render.comparison import compare_markdown
from bench.store.load import load_run
from bench.store.pytest_json import read_pytest_benchmark
from bench.store.run_folder import COLUMNS, RunWriter
from tests.factories import record

LAPTOP = {
    "host": "laptop",
    "cpu_model": "Laptop CPU",
    "gpu_name": "",
    "torch_version": "2.13.0",
    "cuda_version": "",
}
SERVER = {
    "host": "gpu-box",
    "cpu_model": "Server CPU",
    "gpu_name": "H100",
    "torch_version": "2.11.0",
    "cuda_version": "12.8",
}

BASE_STEP = [0.90, 0.95, 1.00, 1.05, 1.10]  # median 1.00 ms
BASE_LATENCY = [0.20, 0.21, 0.22, 0.23, 0.24]  # median 0.22 ms


def make_run(path: Path, env: dict, rows: list[tuple[dict, dict]]) -> Path:
    """A results folder as the runner writes it: rows with their raw samples."""
    path.mkdir(parents=True)
    writer = RunWriter(path, env)
    for values, samples in rows:
        writer.add(record(samples, **values))
    return path


def train(device, mode, samples, converged=True, mae=0.004, **extra):
    values = dict(
        workload="train", device=device, mode=mode, batch_size=32, threads=2, output_activation="relu"
    )
    values.update(step_ms=float(np.median(samples)), converged=converged, mae=mae, **extra)
    return values, {"step_ms": list(samples)}


def infer(device, mode, batch, samples, **extra):
    values = dict(
        workload="inference", device=device, mode=mode, batch_size=batch, threads=2, output_activation="relu"
    )
    values.update(latency_ms=float(np.median(samples)), **extra)
    return values, {"latency_ms": list(samples)}


def skipped(device, mode, reason):
    values = dict(
        workload="train", device=device, mode=mode, batch_size=32, threads=2, output_activation="relu"
    )
    return dict(values, status="skipped", reason=reason), {}


@pytest.fixture
def pair(tmp_path):
    """A CPU-only laptop run and a GPU server run, with known ratios."""
    laptop = make_run(
        tmp_path / "laptop",
        LAPTOP,
        [
            train("cpu", "eager", BASE_STEP),
            infer("cpu", "eager", 32, BASE_LATENCY),
            skipped("cuda", "eager", "torch.cuda.is_available() is False: no CUDA GPU or driver"),
        ],
    )
    server = make_run(
        tmp_path / "server",
        SERVER,
        [
            train("cpu", "eager", BASE_STEP),  # the same samples: no difference
            # exactly 2x faster on the GPU, but it did not learn
            train("cuda", "eager", [v / 2 for v in BASE_STEP], converged=False, mae=14.8),
            infer("cpu", "eager", 32, [v * 3 for v in BASE_LATENCY]),  # 3x slower
        ],
    )
    return laptop, server


def test_table_for_a_known_pair(pair):
    runs = [load_run(p) for p in pair]
    table = comparison_table(runs)
    assert {"label", "ratio", "ci_low", "ci_high"} <= set(table.columns)
    assert table["label"].is_unique
    lines = {(r.run, r.workload, r.device, r.mode): r for r in table.itertuples()}
    assert set(lines) == {
        ("R1", "train", "cpu", "eager"),
        ("R2", "train", "cpu", "eager"),
        ("R2", "train", "cuda", "eager"),
        ("R1", "inference", "cpu", "eager"),
        ("R2", "inference", "cpu", "eager"),
    }
    ref = lines["R1", "train", "cpu", "eager"]
    assert (ref.ratio, ref.verdict, ref.median, ref.n) == (1.0, "reference", 1.0, 5)
    same = lines["R2", "train", "cpu", "eager"]
    assert same.ratio == 1.0 and same.ci_low <= 1.0 <= same.ci_high and same.p_value == pytest.approx(1.0)
    assert same.verdict == "no significant difference"
    gpu = lines["R2", "train", "cuda", "eager"]
    # every GPU sample below every CPU one: exact two-sided U p = 2 / C(10, 5) = 2/252
    assert gpu.ratio == pytest.approx(0.5) and gpu.ci_high < 1 and gpu.p_value == pytest.approx(2 / 252)
    assert gpu.verdict == "faster" and gpu.converged is False and gpu.mae == 14.8
    slow = lines["R2", "inference", "cpu", "eager"]
    assert slow.ratio == pytest.approx(3.0) and slow.ci_low > 1 and slow.verdict == "slower"
    # same device and mode as the reference: each workload has its own reference line
    assert lines["R1", "inference", "cpu", "eager"].verdict == "reference"
    # rows are grouped by workload, then batch: the two train lines come before inference
    assert list(table["workload"]) == ["train"] * 3 + ["inference"] * 2


def test_environment_differences_and_skipped_rows_are_listed(pair):
    runs = [load_run(p) for p in pair]
    diffs = env_differences(runs).set_index("field")
    assert set(diffs.index) == {"host", "cpu_model", "gpu_name", "torch_version", "cuda_version"}
    assert diffs.loc["gpu_name", "R2"] == "H100" and diffs.loc["torch_version", "R1"] == "2.13.0"
    skipped_rows = not_compared(runs)
    assert list(skipped_rows["config"]) == ["train/cuda/eager/32/2/relu"]
    assert "no CUDA GPU" in skipped_rows["reason"].iloc[0]
    labels = ["R1", "R2"]
    reference = Reference(0, "cpu", "eager").label(labels)
    markdown = compare_markdown(
        runs, labels, reference, comparison_table(runs), diffs.reset_index(), skipped_rows
    )
    for text in (
        "R1 cpu eager",
        "bootstrap",
        "Mann-Whitney",
        "faster",
        "slower",
        "H100",
        "gpu_name",
        "skipped",
    ):
        assert text in markdown


def test_other_reference(pair):
    runs = [load_run(p) for p in pair]
    table = comparison_table(runs, Reference(1, "cuda", "eager"))
    cpu = table[(table["run"] == "R1") & (table["workload"] == "train")].iloc[0]
    assert cpu["ratio"] == pytest.approx(2.0) and cpu["verdict"] == "slower"
    # no cuda inference row in R2: inference lines have nothing to be compared with
    assert set(table[table["workload"] == "inference"]["verdict"]) == {"no reference row"}


def test_parse_reference():
    names = [("results/a", "a"), ("/tmp/x:y", "x:y")]
    assert parse_reference("2:cuda:eager", names) == Reference(1, "cuda", "eager")
    assert parse_reference("results/a:cpu:compile", names) == Reference(0, "cpu", "compile")
    assert parse_reference("/tmp/x:y:cuda:1:eager", names) == Reference(1, "cuda:1", "eager")
    for bad in ("3:cpu:eager", "cpu:eager", "1:cpu"):
        with pytest.raises(UsageError, match="RUN:device:mode"):
            parse_reference(bad, names)


def _cli(argv, capsys):
    try:
        code = bench_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_markdown_and_csv(pair, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, _ = _cli(["compare", str(pair[0]), str(pair[1]), "--out", str(out), "--no-figures"], capsys)
    assert code == 0
    assert (out / "compare.md").read_text() in stdout
    csv = pd.read_csv(out / "compare.csv")
    assert len(csv) == 5 and {"label", "ratio", "ci_low", "ci_high", "verdict", "converged", "mae"} <= set(
        csv.columns
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reference", "1:cuda:eager"], "no timed ok row"),
        (["--reference", "nope"], "RUN:device:mode"),
    ],
)
def test_cli_bad_reference_exits_2(pair, tmp_path, capsys, extra, message):
    code, _, err = _cli(["compare", str(pair[0]), str(pair[1]), "--out", str(tmp_path / "o"), *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_missing_run_exits_2(tmp_path, capsys):
    code, _, err = _cli(["compare", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "no such file" in err


# --- three input kinds, one schema ------------------------------------------------------------


def _pytest_benchmark_doc(step_s, latency_s, with_data=True):
    """The shape pytest-benchmark 5 writes with --benchmark-json (trimmed to what is read)."""

    def bench(name, extra, data):
        stats = {
            "min": min(data),
            "max": max(data),
            "median": float(np.median(data)),
            "iqr": float(np.subtract(*np.percentile(data, [75, 25]))),
            "rounds": len(data),
            "iterations": 1,
        }
        if with_data:
            stats["data"] = list(data)
        return {"group": None, "name": name, "fullname": f"tests/test_bench.py::{name}", "params": None,
                "extra_info": extra, "stats": stats}  # fmt: skip

    key = {"device": "cpu", "mode": "eager", "threads": 2, "output_activation": "relu"}
    return {
        "machine_info": {
            "node": "laptop",
            "python_version": "3.11.7",
            "system": "Linux",
            "release": "6.1",
            "cpu": {"brand_raw": "Laptop CPU", "count": 2},
        },  # fmt: skip
        "commit_info": {"id": "abc123", "dirty": False},
        "benchmarks": [
            bench("test_train_step[cpu-eager]", {"workload": "train", "batch_size": 32, **key}, step_s),
            bench(
                "test_inference[cpu-eager-32]", {"workload": "inference", "batch_size": 32, **key}, latency_s
            ),
        ],
        "datetime": "2025-01-01T00:00:00+00:00",
        "version": "5.3.1",
    }


def test_folder_csv_and_pytest_benchmark_json_read_into_one_schema(pair, tmp_path):
    folder = pair[0]
    csv_only = tmp_path / "csv-only"
    csv_only.mkdir()
    shutil.copy(folder / "results.csv", csv_only / "results.csv")
    json_path = tmp_path / "bench.json"
    doc = _pytest_benchmark_doc([v / 1e3 for v in BASE_STEP], [v / 1e3 for v in BASE_LATENCY])
    json_path.write_text(json.dumps(doc))

    runs = {
        "folder": load_run(folder),
        "csv": load_run(folder / "results.csv"),
        "csv-only": load_run(csv_only / "results.csv"),
        "pytest-benchmark": load_run(json_path),
    }
    for run in runs.values():
        assert list(run.frame.columns[: len(COLUMNS)]) == list(COLUMNS)
        keys = {str(r.key) for r in run.records if r.ok}
        assert {"train/cpu/eager/32/2/relu", "inference/cpu/eager/32/2/relu"} <= keys
    for name in ("folder", "csv", "pytest-benchmark", "csv-only"):
        train_record = next(r for r in runs[name].records if r.key.workload == "train")
        assert train_record.number("step_ms") == pytest.approx(1.0)
    for name in ("folder", "csv", "pytest-benchmark"):
        run = runs[name]
        train_record = next(r for r in run.records if r.key.workload == "train")
        assert train_record.raw("step_ms") == pytest.approx(BASE_STEP)
        infer_record = next(r for r in run.records if r.key.workload == "inference")
        assert infer_record.raw("latency_ms") == pytest.approx(BASE_LATENCY)
    assert all(r.samples == {} for r in runs["csv-only"].records)
    assert runs["pytest-benchmark"].env["cpu_model"] == runs["folder"].env["cpu_model"] == "Laptop CPU"


def test_a_csv_without_samples_compares_medians_untested(pair, tmp_path):
    csv_only = tmp_path / "csv-only"
    csv_only.mkdir()
    shutil.copy(pair[1] / "results.csv", csv_only / "results.csv")
    table = comparison_table([load_run(pair[0]), load_run(csv_only / "results.csv")])
    gpu = table[(table["run"] == "R2") & (table["device"] == "cuda")].iloc[0]
    assert gpu["ratio"] == pytest.approx(0.5) and math.isnan(gpu["ci_low"]) and gpu["n"] == 0
    assert gpu["verdict"].startswith("not tested")


def test_pytest_benchmark_reader_maps_stats_and_config():
    doc = _pytest_benchmark_doc([0.001, 0.002, 0.003], [0.0001, 0.0002, 0.0004])
    run = read_pytest_benchmark(doc, "bench.json")
    row = run.frame.set_index("workload").loc["train"]
    assert row["step_ms"] == pytest.approx(2.0) and row["step_ms_min"] == pytest.approx(1.0)
    assert row["step_ms_iqr"] == pytest.approx(1.0)  # 2.5 ms - 1.5 ms
    assert row["samples_per_s"] == pytest.approx(32 / 0.002)
    assert math.isnan(row["latency_ms"])
    infer_row = run.frame.set_index("workload").loc["inference"]
    assert infer_row["latency_ms"] == pytest.approx(0.2) and math.isnan(infer_row["step_ms"])
    assert run.env["host"] == "laptop" and run.env["git_commit"] == "abc123"
    assert "torch_version" not in run.env  # not recorded by pytest-benchmark: unknown, not ""
    without = read_pytest_benchmark(
        _pytest_benchmark_doc([0.001] * 3, [0.0001] * 3, with_data=False), "b.json"
    )
    assert {str(r.key): r.samples for r in without.records} == {
        "train/cpu/eager/32/2/relu": {},
        "inference/cpu/eager/32/2/relu": {},
    }


def test_pytest_benchmark_without_extra_info_is_keyed_by_name():
    doc = _pytest_benchmark_doc([0.001] * 3, [0.0001] * 3)
    for bench in doc["benchmarks"]:
        bench["extra_info"] = {}
    run = read_pytest_benchmark(doc, "b.json")
    assert list(run.frame["workload"]) == ["test_train_step[cpu-eager]", "test_inference[cpu-eager-32]"]
    assert run.frame["latency_ms"].notna().all()  # a generic time per call


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(benchmarks=[]), "without benchmarks"),
        (lambda d: d["benchmarks"][0]["stats"].pop("median"), "no stats.median"),
        (lambda d: d["benchmarks"][1]["extra_info"].update(workload="train"), "same configuration"),
    ],
)
def test_pytest_benchmark_bad_documents(change, message):
    doc = _pytest_benchmark_doc([0.001] * 3, [0.0001] * 3)
    change(doc)
    with pytest.raises(UsageError, match=message):
        read_pytest_benchmark(doc, "b.json")


def test_a_real_pytest_benchmark_file_reads(tmp_path, child_env):
    """pytest-benchmark itself writes the JSON: the reader follows the real format."""
    (tmp_path / "test_tiny.py").write_text(
        textwrap.dedent(
            """
            def test_step(benchmark):
                benchmark.extra_info.update(workload="train", device="cpu", mode="eager", batch_size=32,
                                            threads=1, output_activation="relu")
                benchmark.pedantic(sum, args=(range(100),), rounds=20, iterations=10)
            """
        )
    )
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "test_tiny.py",
           f"--benchmark-json={out}"]  # fmt: skip
    subprocess.run(cmd, cwd=tmp_path, env=child_env, check=True, capture_output=True, timeout=120)
    (record,) = load_run(out).records
    assert str(record.key) == "train/cpu/eager/32/1/relu"
    samples = record.raw("step_ms")
    assert len(samples) == 20 and record.number("step_ms") == pytest.approx(float(np.median(samples)))
    assert 0 < record.number("step_ms") < 100


def test_pytest_benchmark_rounds_of_several_calls_are_read_per_call():
    doc = _pytest_benchmark_doc([0.100, 0.200, 0.300], [0.0001, 0.0002, 0.0004])
    doc["benchmarks"][0]["extra_info"]["calls_per_round"] = 100  # each round timed 100 steps
    row = read_pytest_benchmark(doc, "bench.json").frame.set_index("workload").loc["train"]
    assert row["step_ms"] == pytest.approx(2.0) and row["step_ms_min"] == pytest.approx(1.0)


def test_a_threads_cell_that_is_text_is_refused(pair, tmp_path, capsys):
    """Issue 20: it used to load as a blank thread count (a key that matches nothing)."""
    csv = tmp_path / "many.csv"
    df = pd.read_csv(pair[0] / "results.csv", dtype=object, keep_default_na=False)
    df.loc[0, "threads"] = "many"
    df.to_csv(csv, index=False)
    code, _, err = _cli(["compare", str(pair[1]), str(csv), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and err.count("\n") == 1 and "many.csv: line 2: threads is 'many', not a number" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("machine_info"), "without machine_info"),
        (
            lambda d: [b.update(name=None, fullname=None, extra_info={}) for b in d["benchmarks"]],
            "without a name",
        ),
    ],
)
def test_a_pytest_benchmark_file_without_machine_or_name_is_refused(change, message):
    doc = _pytest_benchmark_doc([0.001] * 3, [0.0001] * 3)
    change(doc)
    with pytest.raises(UsageError, match=message):
        read_pytest_benchmark(doc, "b.json")


def test_many_configurations_draw_the_largest_changes_only():
    """Issue 20: compare_ratios.png of two 50-configuration runs had ~100 overlapping labels."""
    pytest.importorskip("matplotlib")
    from bench.render.figures import COMPARE_LINES, _compare_figure

    ratios = [1.0 + 0.01 * i for i in range(100)]
    table = pd.DataFrame(
        {"label": [f"line {i}" for i in range(100)], "ratio": ratios, "ci_low": ratios, "ci_high": ratios}
    )
    fig = _compare_figure(table, "subtitle", "ratio")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [f"line {i}" for i in range(100 - COMPARE_LINES, 100)]  # the largest, in table order
    assert f"The {COMPARE_LINES} largest of 100 ratios" in fig.texts[0].get_text()
