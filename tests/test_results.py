import json
import re

import pandas as pd
import pytest

from bench.errors import UsageError
from bench.records import SCHEMA_VERSION, ConfigKey
from bench.store.load import load_run
from bench.store.run_folder import COLUMNS, RunWriter, make_run_dir
from tests.factories import record

KEY = dict(workload="train", mode="eager", batch_size=32, threads=2, output_activation="relu")


def _records():
    return [
        record(
            {"step_ms": [0.4, 0.41, 0.42]},
            notes=["torch.optim.Adam", "a fallback taken"],
            device="cpu",
            converged=True,
            verdict="MAE 0.0014 < target 0.01",
            **KEY,
        ),
        record(device="cuda", status="skipped", reason="no GPU", **KEY),
    ]


def test_csv_round_trip_and_samples(tmp_path):
    writer = RunWriter(tmp_path, {"host": "h", "torch_version": "2.13"})
    for r in _records():
        writer.add(r)
    written = writer.frame()
    run = load_run(tmp_path)
    pd.testing.assert_frame_equal(run.frame[written.columns], written, check_dtype=False)
    assert run.records[0].raw("step_ms") == [0.4, 0.41, 0.42]
    assert run.env["host"] == "h"
    assert list(run.frame.columns) == list(COLUMNS)  # the environment is in run.json, once
    from_json = load_run(tmp_path / "run.json").frame
    assert from_json["step_ms"].iloc[0] == 0.41  # the median, computed from the samples
    assert from_json["notes"].iloc[0] == "torch.optim.Adam;a fallback taken"


def test_records_are_on_disk_after_each_add(tmp_path):
    writer = RunWriter(tmp_path, {})
    writer.add(_records()[0])
    assert len(pd.read_csv(tmp_path / "results.csv")) == 1
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION and len(doc["records"]) == 1
    assert doc["records"][0]["notes"] == ["torch.optim.Adam", "a fallback taken"]


def test_config_key_text_and_from_row():
    key = ConfigKey("train", "cpu", "eager", 32, 2, "relu")
    assert str(key) == "train/cpu/eager/32/2/relu"
    assert str(ConfigKey("ddp", "cpu", "eager", 32, 1, "relu", world_size=2, backend="gloo")).endswith(
        "/ws2/gloo"
    )
    assert ConfigKey.from_row({**KEY, "device": "cpu", "batch_size": 32.0, "threads": "2"}) == key
    assert ConfigKey.from_row({**KEY, "device": "cpu", "batch_size": float("nan")}).batch_size is None


def test_version_1_reference_runs_still_load():
    run = load_run("results/reference/cpu-2core-default")
    assert (run.frame["world_size"] == 1).all()
    key = ConfigKey("train", "cpu", "eager", 32, 1, "relu")
    assert len(next(r for r in run.records if r.key == key).raw("step_ms")) > 10


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
        ("a.csv", "schema_version,workload\nabc,train\n", "schema version abc"),
        ("b.csv", "schema_version,workload\n1,train\n", "without the column(s) device"),
        ("c.csv", "schema_version,workload\n1.9,train\n", "schema version 1.9"),
        ("d.csv", "schema_version,workload\ntrue,train\n", "schema version true"),
        ("e.csv", "schema_version,workload\n1e400,train\n", "schema version 1e400"),
        ("run.json", '{"schema_version": 1, "rows": [{"x": 1}]}', "records are not"),
        ("r2.json", '{"schema_version": 1, "rows": 3}', "records are not"),
        ("r3.json", '{"schema_version": 2, "env": [1, 2], "records": []}', "env is not an object"),
        ("r4.json", '{"schema_version": true, "records": []}', "no readable schema_version"),
    ],
)
def test_malformed_results_are_usage_errors(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(UsageError, match=re.escape(message)):
        load_run(tmp_path / name)


def test_text_samples_and_a_truncated_csv_are_refused(tmp_path):
    writer = RunWriter(tmp_path, {})
    writer.add(_records()[0])
    doc = json.loads((tmp_path / "run.json").read_text())
    doc["records"][0]["samples"]["step_ms"] = ["fast", "slow"]
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(UsageError, match="not numbers"):
        load_run(tmp_path)
    (tmp_path / "run.json").unlink()
    text = (tmp_path / "results.csv").read_text()
    (tmp_path / "results.csv").write_text(text[: len(text) - 40])  # cut mid-row
    with pytest.raises(UsageError, match="truncated"):
        load_run(tmp_path)


def test_make_run_dir_and_latest_link(tmp_path):
    run_dir, note = make_run_dir(tmp_path, "host")
    assert run_dir.parent == tmp_path and run_dir.name.startswith("host-") and note is None
    assert (tmp_path / "latest").resolve() == run_dir.resolve()


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_users_latest_is_never_replaced(tmp_path, kind):
    latest = tmp_path / "latest"
    if kind == "file":
        latest.write_text("mine")
    else:
        latest.mkdir()
    _, note = make_run_dir(tmp_path, "host")
    assert note is not None and f"is a {kind} of yours" in note
    assert (latest.read_text() == "mine") if kind == "file" else latest.is_dir() and not latest.is_symlink()


def test_empty_out_is_refused():
    with pytest.raises(UsageError, match="--out is empty"):
        make_run_dir("", "host")


def test_a_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path, monkeypatch):
    writer = RunWriter(tmp_path, {})

    def full(self, text, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_text", full)
    with pytest.raises(UsageError, match=r"could not write .*results.csv: No space left on device"):
        writer.add(_records()[0])
    monkeypatch.undo()
    assert not list(tmp_path.glob("*.tmp"))
