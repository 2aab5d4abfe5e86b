"""Figures: each PNG is valid and its drawn data is the input's; the crossover on hand-made curves.

.venv/bin/python -m pytest tests/test_figures.py -q
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer

from bench.analysis.crossover import crossover_batch_size, inference_crossover
from bench.records import ConfigKey
from bench.render import figures
from bench.render.figures import (
    FILE_NAMES,
    FigureSet,
    save_figure,
    subtitle_for,
    write_compare_figures,
    write_run_figures,
)
from bench.store.run_folder import COLUMNS, normalise
from tests.factories import row as new_row


def frame(rows: list[dict], env: dict | None = None) -> pd.DataFrame:
    """A results frame from hand-written rows (the environment lives in run.json, not the frame)."""
    df = pd.DataFrame(rows)
    return normalise(df.reindex(columns=[*COLUMNS, *(c for c in df.columns if c not in COLUMNS)]))


ENV = {"host": "box", "cpu_model": "Test CPU 9000", "gpu_name": "", "torch_version": "2.13.0+cpu"}
SUBTITLE = "box · Test CPU 9000 · no GPU · torch 2.13.0+cpu"
SIZES = [1, 8, 64, 512]
# (device, mode) -> samples/s at SIZES. cpu compile has the higher geometric mean of the two cpu modes;
# cuda compile beats it only at 512 (300000 > 130000; at 64, 19200 < 50000).
CURVES = {
    ("cpu", "eager"): [1000.0, 7000.0, 40000.0, 100000.0],
    ("cpu", "compile"): [900.0, 8000.0, 50000.0, 130000.0],
    ("cuda", "eager"): [200.0, 1600.0, 12800.0, 200000.0],
    ("cuda", "compile"): [300.0, 2400.0, 19200.0, 300000.0],
}
KEY = {"threads": 2, "output_activation": "relu"}


def _inference_rows(curves=CURVES) -> list[dict]:
    return [
        new_row(workload="inference", device=d, mode=m, batch_size=b, samples_per_s=s, **KEY)
        for (d, m), values in curves.items()
        for b, s in zip(SIZES, values)
    ]


def _train(device: str, mode: str, **values) -> dict:
    return new_row(workload="train", device=device, mode=mode, batch_size=32, **KEY, **values)


def _train_rows() -> list[dict]:
    return [
        _train("cpu", "eager", step_ms=0.5, step_ms_iqr=0.05, run_s=2.0, first_call_s=0.1),
        _train("cpu", "compile", step_ms=0.3, step_ms_iqr=0.2, run_s=12.0, first_call_s=10.5, flags="noisy"),
    ]


def _not_ok_rows() -> list[dict]:
    """Rows that must never be drawn, with values that would show if they were."""
    no_cuda = {"status": "skipped", "reason": "CUDA is not available"}
    boom = {"status": "failed", "reason": "boom"}
    inference = {"workload": "inference", "batch_size": 8, **KEY}
    return [
        new_row(device="cuda", mode="cudagraph", samples_per_s=9e9, **inference, **no_cuda),
        new_row(device="cpu", mode="numpy-reference", samples_per_s=5e6, **inference, **boom),
        _train("cuda", "eager", step_ms=99.0, step_ms_iqr=1.0, run_s=99.0, first_call_s=9.0, **no_cuda),
        _train("cpu", "cudagraph", step_ms=77.0, run_s=50.0, first_call_s=5.0, **boom),
    ]


def _run_frame() -> pd.DataFrame:
    return frame(_inference_rows() + _train_rows() + _not_ok_rows(), ENV)


EAGER_SAMPLES = [0.48, 0.5, 0.52, 0.6]


def _samples(df: pd.DataFrame) -> dict[str, dict]:
    eager = df[(df["workload"] == "train") & (df["mode"] == "eager") & (df["device"] == "cpu")].iloc[0]
    return {ConfigKey.from_row(eager): {"step_ms": EAGER_SAMPLES}}


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _assert_sensible_png(path: Path) -> None:
    width, height = _png_size(path)
    assert 400 <= width <= 3000 and 300 <= height <= 3000, (width, height)
    assert width > height  # about 8 x 4.5 in


def _lines_by_label(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines()}


def _common_text_checks(fig, title_part: str) -> None:
    ax = fig.axes[0]
    assert title_part in fig.get_suptitle()
    assert ax.get_title() == SUBTITLE
    assert ax.get_xlabel() and ax.get_ylabel()  # both axes named (matplotlib's default is '')
    assert fig.get_facecolor()[3] == 1.0  # opaque, readable on a dark page


# --- crossover on hand-made curves -------------------------------------------------------------------


def test_crossover_gpu_always_wins_is_the_smallest_size():
    assert crossover_batch_size({1: 10, 8: 20, 64: 30}, {1: 11, 8: 30, 64: 100}) == 1


def test_crossover_gpu_never_wins_is_none():
    assert crossover_batch_size({1: 10, 8: 20, 64: 30}, {1: 5, 8: 10, 64: 29}) is None


def test_crossover_crosses_once():
    cpu = {1: 100.0, 8: 100.0, 64: 100.0, 512: 100.0}
    assert crossover_batch_size(cpu, {1: 10.0, 8: 50.0, 64: 200.0, 512: 900.0}) == 64


def test_crossover_back_and_forth_counts_from_the_last_crossing():
    cpu = dict.fromkeys([1, 8, 64, 512, 4096], 100.0)
    assert crossover_batch_size(cpu, {1: 200.0, 8: 50.0, 64: 200.0, 512: 300.0, 4096: 400.0}) == 64
    assert crossover_batch_size(cpu, {1: 200.0, 8: 50.0, 64: 200.0, 512: 50.0, 4096: 500.0}) == 4096
    # wins early, loses at the largest size: no crossover
    assert crossover_batch_size(cpu, {1: 200.0, 8: 200.0, 64: 200.0, 512: 200.0, 4096: 99.0}) is None


def test_crossover_disjoint_sizes_is_none():
    assert crossover_batch_size({1: 10, 8: 20}, {64: 1000, 512: 2000}) is None
    assert crossover_batch_size({}, {}) is None


def test_crossover_uses_only_common_finite_sizes_and_ties_do_not_win():
    # 4096 is measured on the GPU only and 8 is NaN on the CPU: neither counts
    cpu = {1: 100.0, 8: math.nan, 64: 100.0, 512: 100.0}
    gpu = {1: 50.0, 8: 10.0, 64: 200.0, 512: 300.0, 4096: 1.0}
    assert crossover_batch_size(cpu, gpu) == 64
    assert crossover_batch_size({1: 100.0, 8: 100.0}, {1: 50.0, 8: 100.0}) is None
    assert crossover_batch_size({1: 100.0, 8: 100.0}, {1: 100.0, 8: 200.0}) == 8


def test_inference_crossover_picks_the_best_mode_per_device():
    crossing = inference_crossover(_run_frame())
    assert crossing is not None
    assert (crossing.cpu_mode, crossing.gpu_device, crossing.gpu_mode) == ("compile", "cuda", "compile")
    assert crossing.batch_size == 512
    assert "512" in crossing.describe() and "cuda · compile" in crossing.describe()


def test_inference_crossover_needs_both_devices():
    cpu_only = {k: v for k, v in CURVES.items() if k[0] == "cpu"}
    assert inference_crossover(frame(_inference_rows(cpu_only))) is None


# --- figures: data drawn is the input ------------------------------------------------------------------


def test_inference_figure_draws_ok_rows_and_marks_the_crossover(tmp_path):
    fig = figures._inference_figure(_run_frame(), SUBTITLE)
    _common_text_checks(fig, "Inference throughput")
    ax = fig.axes[0]
    lines = _lines_by_label(ax)
    for (device, mode), values in CURVES.items():
        line = lines[f"{device} · {mode}"]
        assert list(line.get_xdata()) == SIZES
        np.testing.assert_allclose(line.get_ydata(), values)
    # skipped and failed rows are not drawn
    assert not any("cudagraph" in label or "numpy-reference" in label for label in lines)
    assert max(max(line.get_ydata()) for line in ax.get_lines()) == 300000.0
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "samples/s" in ax.get_ylabel() and "batch size" in ax.get_xlabel()
    crossover = [line for line in ax.get_lines() if line.get_gid() == "crossover"]
    assert len(crossover) == 1 and list(crossover[0].get_xdata()) == [512, 512]
    notes = [t.get_text() for t in ax.texts]
    assert any("512" in t and "cuda · compile" in t and "cpu · compile" in t for t in notes)
    assert ax.get_legend() is not None
    _assert_sensible_png(save_figure(figures._inference_figure(_run_frame(), SUBTITLE), tmp_path / "inf.png"))


def test_inference_figure_without_a_gpu_win_has_no_crossover_line():
    slow_gpu = {("cpu", "eager"): [10.0, 20.0, 30.0, 40.0], ("cuda", "eager"): [1.0, 2.0, 3.0, 4.0]}
    ax = figures._inference_figure(frame(_inference_rows(slow_gpu)), SUBTITLE).axes[0]
    assert not [line for line in ax.get_lines() if line.get_gid() == "crossover"]
    assert any("never" in t.get_text() for t in ax.texts)


def test_train_step_figure_bars_samples_and_iqr(tmp_path):
    df = _run_frame()
    fig = figures._train_step_figure(df, _samples(df), SUBTITLE)
    _common_text_checks(fig, "step time")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if str(p.get_gid()).startswith("bar:")]
    assert [p.get_gid() for p in bars] == ["bar:cpu · eager", "bar:cpu · compile"]  # not the skipped/failed
    np.testing.assert_allclose([p.get_height() for p in bars], [0.5, 0.3])
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["cpu · eager\n0.5 ms", "cpu · compile\n0.3 ms · noisy"]
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert points.get_gid() == "samples:cpu · eager"
    offsets = points.get_offsets()
    np.testing.assert_allclose(offsets[:, 1], EAGER_SAMPLES)
    assert np.all(np.abs(offsets[:, 0] - 0) <= 0.3)  # over the first bar
    # compile has no samples: IQR whisker of 0.2 centred on the 0.3 ms median
    (whisker,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert whisker.get_label() == "_iqr:cpu · compile"
    (segment,) = whisker.lines[2][0].get_segments()
    np.testing.assert_allclose(segment, [[1, 0.2], [1, 0.4]])
    assert ax.get_yscale() == "linear" and "ms" in ax.get_ylabel()
    assert ax.get_legend() is not None
    _assert_sensible_png(
        save_figure(figures._train_step_figure(df, _samples(df), SUBTITLE), tmp_path / "steps.png")
    )


def test_train_step_figure_goes_log_when_values_span_more_than_30x():
    rows = _train_rows()
    rows[0]["step_ms"], rows[1]["step_ms"] = 0.1, 5.0  # 50x
    assert figures._train_step_figure(frame(rows), {}, SUBTITLE).axes[0].get_yscale() == "log"
    rows[1]["step_ms"] = 2.0  # whiskers included: 0.075 (0.1 - 0.05/2) to 2.1 (2.0 + 0.2/2), 28x
    assert figures._train_step_figure(frame(rows), None, SUBTITLE).axes[0].get_yscale() == "linear"


def test_run_split_figure_stacks_first_call_and_rest(tmp_path):
    fig = figures._run_split_figure(_run_frame(), SUBTITLE)
    _common_text_checks(fig, "first call")
    ax = fig.axes[0]
    first = [p for p in ax.patches if p.get_gid() == "first_call"]
    rest = [p for p in ax.patches if p.get_gid() == "rest"]
    np.testing.assert_allclose([p.get_width() for p in first], [0.1, 10.5])
    np.testing.assert_allclose([p.get_width() for p in rest], [1.9, 1.5])
    np.testing.assert_allclose([p.get_x() for p in rest], [0.1, 10.5])  # stacked after the first call
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cpu · eager", "cpu · compile"]
    assert "(s)" in ax.get_xlabel()
    assert ax.get_legend() is not None
    _assert_sensible_png(
        save_figure(figures._run_split_figure(_run_frame(), SUBTITLE), tmp_path / "split.png")
    )


def _ratio_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["cpu · compile", "cpu · eager @ 4 threads", "cpu · numpy-reference"],
            "ratio": [0.5, 1.2, 2.0],
            "ci_low": [0.45, 1.0, math.nan],
            "ci_high": [0.55, 1.4, math.nan],
        }
    )


def test_compare_figure_points_ci_and_reference_line(tmp_path):
    fig = figures._compare_figure(_ratio_table(), SUBTITLE, "step time ratio (×)")
    _common_text_checks(fig, "Ratio")
    ax = fig.axes[0]
    (points,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    np.testing.assert_allclose(points.lines[0].get_xdata(), [0.5, 1.2, 2.0])
    np.testing.assert_allclose(points.lines[0].get_ydata(), [0, 1, 2])
    segments = points.lines[2][0].get_segments()
    np.testing.assert_allclose(segments[0], [[0.45, 0], [0.55, 0]])
    np.testing.assert_allclose(segments[1], [[1.0, 1], [1.4, 1]])
    np.testing.assert_allclose(segments[2], [[2.0, 2], [2.0, 2]])  # no CI: no whisker
    (reference,) = [line for line in ax.get_lines() if line.get_gid() == "reference"]
    assert list(reference.get_xdata()) == [1.0, 1.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(_ratio_table()["label"])
    assert ax.get_xscale() == "linear" and ax.get_xlabel() == "step time ratio (×)"
    assert ax.get_legend() is not None
    _assert_sensible_png(
        save_figure(figures._compare_figure(_ratio_table(), SUBTITLE, "ratio"), tmp_path / "cmp.png")
    )


def test_compare_figure_goes_log_when_ratios_span_more_than_10x():
    table = _ratio_table().assign(ratio=[0.05, 1.2, 2.0], ci_low=[0.04, 1.0, 1.5], ci_high=[0.06, 1.4, 2.5])
    assert figures._compare_figure(table, SUBTITLE, "ratio").axes[0].get_xscale() == "log"


# --- entry points -----------------------------------------------------------------------------------


def test_subtitle_for():
    assert subtitle_for(ENV) == SUBTITLE
    assert (
        subtitle_for({**ENV, "gpu_name": "NVIDIA H100 80GB HBM3"})
        == "box · Test CPU 9000 · NVIDIA H100 80GB HBM3 · torch 2.13.0+cpu"
    )
    assert subtitle_for({"host": "box"}) == "box"


def test_write_run_figures_writes_the_three_run_pngs(tmp_path):
    df = _run_frame()
    result = write_run_figures(df, _samples(df), tmp_path / "run", ENV)
    assert result.skipped is None
    assert set(result.paths) == {"inference", "train_steps", "run_split"}
    for name, path in result.paths.items():
        assert path == tmp_path / "run" / FILE_NAMES[name]
        _assert_sensible_png(path)
    assert _png_size(result.paths["inference"]) == (880, 495)  # 8 x 4.5 in at 110 dpi


def test_write_run_figures_leaves_out_figures_without_data(tmp_path):
    only_inference = frame(_inference_rows(), ENV)
    assert set(write_run_figures(only_inference, {}, tmp_path, ENV).paths) == {"inference"}
    nothing_ok = frame(_not_ok_rows(), ENV)
    result = write_run_figures(nothing_ok, {}, tmp_path / "none", ENV)
    assert result.paths == {} and "no measured" in result.skipped
    assert not (tmp_path / "none").exists()


def test_write_compare_figures(tmp_path):
    result = write_compare_figures(_ratio_table(), tmp_path, "a given subtitle")
    assert result == FigureSet(paths={"compare": tmp_path / "compare_ratios.png"})
    _assert_sensible_png(result.paths["compare"])
    empty = write_compare_figures(_ratio_table().iloc[:0], tmp_path / "empty", ENV)
    assert empty.paths == {} and empty.skipped == "no ratios to draw"


def test_figures_leave_pyplot_and_the_backend_alone(tmp_path):
    """In a fresh interpreter: no pyplot import, the backend unchanged, nothing left registered."""
    code = (
        "import sys, matplotlib; matplotlib.use('svg'); import tests.test_figures as t;"
        "from bench.render.figures import write_run_figures as w; df = t._run_frame();"
        "r = w(df, t._samples(df), sys.argv[1], t.ENV); assert len(r.paths) == 3, r;"
        "assert 'matplotlib.pyplot' not in sys.modules; assert matplotlib.get_backend() == 'svg'"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_inference_table_and_figure_show_each_thread_count():
    """Two thread counts of one mode: one table column and one figure line each, the same numbers
    (the table used to keep the first thread count's and the figure the best of both)."""
    from bench.render.report import render_run_report

    rows = [
        new_row(
            workload="inference",
            device="cpu",
            mode="compile-fullstep",
            batch_size=1,
            samples_per_s=s,
            threads=t,
        )
        for t, s in ((1, 5196.0), (2, 19973.0))
    ]
    df = frame(rows)
    report = render_run_report(df, ENV, {}, None, [])
    header = next(line for line in report.splitlines() if line.startswith("| batch size"))
    assert "cpu compile-fullstep · 1 threads" in header and "cpu compile-fullstep · 2 threads" in header
    assert "| 1 " in report and "5,196" in report and "19,973" in report
    lines = figures._inference_figure(df, SUBTITLE).axes[0].get_lines()
    drawn = {line.get_label(): list(line.get_ydata()) for line in lines}
    assert drawn == {
        "cpu · compile-fullstep · 1 threads": [5196.0],
        "cpu · compile-fullstep · 2 threads": [19973.0],
    }


def test_the_flag_legend_takes_its_limits_from_the_constants(monkeypatch):
    from bench.render import report

    monkeypatch.setattr(report, "NOISY_IQR_RATIO", 0.2)
    monkeypatch.setattr(report, "CURVE_TOLERANCE", 0.07)
    text = report.render_run_report(frame(_train_rows()), ENV, {}, None, [])
    assert "`noisy` = IQR over 20% of the median" in text and "over 7% from eager's" in text


def test_the_report_names_the_crossover_or_what_it_needs():
    from bench.render.report import crossover_sentence

    assert crossover_sentence(frame(_inference_rows())) == (
        "**GPU beats CPU from batch 512 (cuda · compile vs cpu · compile).**"
    )
    never = {k: v for k, v in CURVES.items() if k[1] == "eager"} | {("cuda", "eager"): [1.0, 1, 1, 1]}
    assert crossover_sentence(frame(_inference_rows(never))).startswith("**GPU never beats CPU here")
    cpu_only = {k: v for k, v in CURVES.items() if k[0] == "cpu"}
    assert crossover_sentence(frame(_inference_rows(cpu_only))).startswith("Both a CPU and a CUDA device")
