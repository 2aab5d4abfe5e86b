import json
import re

import pandas as pd
import pytest

from bench.results import COLUMNS, SCHEMA_VERSION, RunWriter, load_run, make_run_dir, new_row, row_key
from sumnet.cli_args import UsageError


def _rows():
    return [
        new_row(
            workload="train",
            device="cpu",
            mode="eager",
            batch_size=32,
            threads=2,
            output_activation="relu",
            step_ms=0.41,
            converged=True,
            verdict="MAE 0.0014 < target 0.01",
        ),
        new_row(
            workload="train",
            device="cuda",
            mode="eager",
            batch_size=32,
            threads=2,
            output_activation="relu",
            status="skipped",
            reason="no GPU",
        ),
    ]


def test_csv_round_trip_and_samples(tmp_path):
    writer = RunWriter(tmp_path, {"host": "h", "torch_version": "2.13"})
    rows = _rows()
    writer.add(rows[0], {"step_ms": [0.4, 0.41, 0.42]})
    writer.add(rows[1])
    written = writer.frame()
    run = load_run(tmp_path)
    pd.testing.assert_frame_equal(run.frame[written.columns], written, check_dtype=False)
    assert run.samples[row_key(rows[0])]["step_ms"] == [0.4, 0.41, 0.42]
    assert run.env["host"] == "h"
    assert list(run.frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert (load_run(tmp_path / "run.json").frame["step_ms"].iloc[0]) == 0.41


def test_rows_are_on_disk_after_each_add(tmp_path):
    writer = RunWriter(tmp_path, {})
    writer.add(_rows()[0])
    assert len(pd.read_csv(tmp_path / "results.csv")) == 1
    assert len(json.loads((tmp_path / "run.json").read_text())["rows"]) == 1


def test_new_row_refuses_unknown_columns():
    with pytest.raises(KeyError):
        new_row(step_seconds=1.0)


def test_load_run_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_run(tmp_path / "missing")
    with pytest.raises(UsageError, match="no results.csv"):
        load_run(tmp_path)
    bad = tmp_path / "old.csv"
    pd.DataFrame([{"schema_version": SCHEMA_VERSION + 1, "workload": "train"}]).to_csv(bad, index=False)
    with pytest.raises(UsageError, match="schema version"):
        load_run(bad)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("a.csv", "schema_version,workload\nabc,train\n", "no readable schema_version"),
        ("b.csv", "schema_version,workload\n1,train\n", "without the column(s) device"),
        ("run.json", '{"schema_version": 1, "rows": [{"x": 1}]}', "rows are not"),
        ("r2.json", '{"schema_version": 1, "rows": 3}', "rows are not"),
    ],
)
def test_malformed_results_are_usage_errors(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(UsageError, match=re.escape(message)):
        load_run(tmp_path / name)


def test_make_run_dir_and_latest_link(tmp_path):
    run_dir = make_run_dir(tmp_path, "host")
    assert run_dir.parent == tmp_path and run_dir.name.startswith("host-")
    assert (tmp_path / "latest").resolve() == run_dir.resolve()
