"""bench.measure.machine_load: load average and CPU steal from fake /proc files, by hand."""

from __future__ import annotations

import math

import pytest

from bench.measure import machine_load as ml


def _proc(tmp_path, loadavg="0.50 0.40 0.30 1/100 42\n", steal=0, total_other=1000):
    (tmp_path / "loadavg").write_text(loadavg)
    # user nice system idle iowait irq softirq steal guest guest_nice
    (tmp_path / "stat").write_text(f"cpu  {total_other} 0 0 0 0 0 0 {steal} 7 7\ncpu0 1 2 3 4 5 6 7 8\n")
    return tmp_path


def test_load_average_and_cpu_times_read_the_first_fields(tmp_path):
    proc = _proc(tmp_path, steal=50, total_other=950)
    assert ml.load_average(proc) == 0.5
    assert ml.cpu_times(proc) == (50, 1000)  # guest time is inside user: not added again


def test_a_probe_gives_before_after_and_the_steal_share_between(tmp_path):
    proc = _proc(tmp_path, steal=50, total_other=950)
    probe = ml.LoadProbe.start(proc)
    _proc(tmp_path, "3.25 1 1 2/100 43\n", steal=50 + 30, total_other=950 + 170)  # 200 jiffies, 30 stolen
    assert probe.finish() == {
        "load_avg_before": 0.5,
        "load_avg_after": 3.25,
        "cpu_steal_frac": pytest.approx(0.15),
    }


def test_unreadable_proc_gives_nan_not_an_error(tmp_path):
    assert math.isnan(ml.load_average(tmp_path))
    (tmp_path / "stat").write_text("intr 1 2 3\n")
    assert ml.cpu_times(tmp_path) is None
    values = ml.LoadProbe.start(tmp_path).finish()
    assert all(math.isnan(v) for v in values.values())


def test_loaded_means_load_above_the_cores_or_steal_above_five_percent():
    assert (
        ml.loaded_reason({"load_avg_before": 1.9, "load_avg_after": 2.0, "cpu_steal_frac": 0.05}, cores=2)
        is None
    )
    assert (
        ml.loaded_reason({"load_avg_before": 2.1, "cpu_steal_frac": 0.0}, cores=2)
        == "load average 2.1 on 2 cores"
    )
    reason = ml.loaded_reason({"load_avg_after": 6.0, "cpu_steal_frac": 0.33}, cores=2)
    assert reason == "load average 6.0 on 2 cores, 33% of CPU time stolen"


def test_the_report_names_the_configurations_measured_loaded():
    import pandas as pd

    from bench.render.report import load_section

    rows = pd.DataFrame(
        {
            "workload": ["train", "inference", "train"],
            "device": ["cpu"] * 3,
            "mode": ["eager", "eager", "compile"],
            "threads": [1, 1, 1],
            "load_avg_before": [0.5, 2.5, 0.4],
            "load_avg_after": [0.7, 1.0, 0.6],
            "cpu_steal_frac": [0.0, 0.01, 0.08],
        }
    )
    text = "\n".join(load_section(rows, cores=2))
    assert "1-minute load average 0.40 to 2.50, CPU steal up to 8.0%" in text
    assert "- cpu · eager · 1 threads: load average 2.5 on 2 cores" in text  # the worst of its rows
    assert "- cpu · compile · 1 threads: 8% of CPU time stolen" in text
    assert load_section(rows.assign(load_avg_before=0.1, load_avg_after=0.1, cpu_steal_frac=0.0), 2)[
        0
    ].endswith("no configuration was measured loaded.")
