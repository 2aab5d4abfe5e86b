import copy
import math

import pytest

from bench.analysis.derive import (
    CURVE_TOLERANCE,
    break_even_step,
    derive,
    forward_flops,
    gpu_peaks,
    loss_curve_deviation,
    per_record,
    train_step_flops,
)
from sumnet.model import NetConfig
from tests.factories import record

LAYERS = [(30, 60), (60, 60), (60, 1)]


def test_train_step_flops_match_the_hand_count():
    b = 32
    forward = sum(2 * b * i * o for i, o in LAYERS)
    weight_grads = sum(2 * b * i * o for i, o in LAYERS)
    input_grads = sum(2 * b * i * o for i, o in LAYERS[1:])  # the data needs no gradient
    assert train_step_flops(NetConfig(), b) == forward + weight_grads + input_grads == 933_120
    assert forward_flops(NetConfig(), 1000) == 1000 * 2 * 5460


def test_gpu_peaks_known_and_unknown():
    assert gpu_peaks("NVIDIA H100 PCIe")[0] == 51e12
    assert gpu_peaks("NVIDIA H100 80GB HBM3")[0] == 67e12
    assert gpu_peaks("Some Laptop GPU") is None and gpu_peaks("") is None


def test_break_even():
    # compile: 10 s first call, 0.2 ms/step; eager: 0.01 s, 0.4 ms/step -> (10-0.01)/0.0002 + 1 steps
    assert break_even_step(10, 2e-4, 0.01, 4e-4) == math.ceil(1 + 9.99 / 2e-4)
    assert break_even_step(10, 5e-4, 0.01, 4e-4) == math.inf
    assert break_even_step(0.001, 1e-4, 0.01, 4e-4) == 1


def test_loss_curve_deviation_uses_a_floor_for_tiny_losses():
    ref = {100: 1.0, 200: 0.5, 300: 1e-6}
    assert loss_curve_deviation({100: 1.1, 200: 0.5, 300: 2e-6}, ref) == pytest.approx(0.1)
    assert loss_curve_deviation({"100": 1.0}, ref) == 0.0  # JSON keys are strings
    assert math.isnan(loss_curve_deviation({}, ref))


def _train(mode, step_ms, first_call_s, loss_curve=None):
    samples = {"step_ms": [step_ms] * 3, **({"loss_curve": loss_curve} if loss_curve else {})}
    return record(
        samples,
        workload="train",
        device="cpu",
        mode=mode,
        batch_size=32,
        threads=2,
        output_activation="relu",
        first_call_s=first_call_s,
    )


def test_derive_fills_ratios_break_even_and_curve_flags():
    records = [
        _train("eager", 0.4, 0.01, {"100": 1.0, "200": 0.5}),
        _train("compile", 0.2, 10.0, {"100": 1.0, "200": 0.5 * (1 + 2 * CURVE_TOLERANCE)}),
        _train("numpy-reference", 0.1, 0.0),
    ]
    before = copy.deepcopy(records)
    derived = derive(records, {"gpu_name": ""}, NetConfig())
    assert records == before  # pure: the records are not changed
    eager, comp, floor = (derived[r.key] for r in records)
    assert floor["ratio_to_floor"] == 1 and eager["ratio_to_floor"] == pytest.approx(4)
    assert "ratio_to_fastest" not in eager  # one ratio, not two columns that repeat it
    assert comp["speedup_vs_cpu_eager"] == pytest.approx(2) and floor[
        "speedup_vs_cpu_eager"
    ] == pytest.approx(4)
    assert comp["ratio_to_floor"] == pytest.approx(2) and comp["floor_mode"] == "numpy-reference"
    assert comp["break_even_step"] == math.ceil(1 + 9.99 / 2e-4)
    assert "curve-deviates" in comp["flags"]
    assert eager["flops_per_step"] == 933_120
    assert eager["achieved_flops_per_s"] == pytest.approx(933_120 / 0.4e-3)
    assert "utilization" not in eager  # CPU peak unknown: left out rather than guessed


def test_the_fastest_floor_is_the_floor():
    records = [_train("eager", 0.4, 0.0), _train("numpy-reference", 0.1, 0.0)]
    derived = derive(records, {}, NetConfig())
    assert derived[records[0].key]["ratio_to_floor"] == pytest.approx(4)


def test_derive_flags_impossible_times():
    one = _train("eager", 1e-7, 0.0)
    assert "below-floor" in derive([one], {}, NetConfig())[one.key]["flags"]


def test_per_record_throughput_and_noise_flag():
    calm = _train("eager", 0.5, 0.0)
    assert per_record(calm) == {"samples_per_s": pytest.approx(32 / 0.5e-3)}
    noisy = record(
        {"step_ms": [1.0, 2.0, 3.0, 4.0, 5.0]},
        workload="train",
        device="cpu",
        mode="eager",
        batch_size=32,
        threads=1,
    )
    assert per_record(noisy)["flags"] == "noisy"  # IQR 2 / median 3 > 10%
    assert per_record(record(workload="train", device="cpu", mode="eager", status="failed")) == {}


def test_speedup_divides_by_cpu_eager_at_the_rows_own_thread_count_only():
    one = _train("eager", 0.4, 0.0)
    two = record(
        {"step_ms": [0.1] * 3},
        workload="train",
        device="cpu",
        mode="numba-reference",
        batch_size=32,
        threads=1,
    )
    derived = derive([one, two], {}, NetConfig())
    assert derived[one.key]["speedup_vs_cpu_eager"] == 1
    assert "speedup_vs_cpu_eager" not in derived[two.key]  # no eager at 1 thread: no silent fallback


def test_derive_holds_the_per_record_values_and_the_instruction_medians():
    counted = record(
        {"instructions_per_step": [2.0e6, 2.1e6, 2.3e6]},
        workload="train",
        device="cpu",
        mode="eager",
        batch_size=32,
    )
    timed = _train("eager", 0.5, 0.0)
    derived = derive([counted, timed], {}, NetConfig())
    assert derived[counted.key]["instructions_per_step"] == 2.1e6
    assert derived[timed.key]["samples_per_s"] == pytest.approx(32 / 0.5e-3)
    assert derived[timed.key] | per_record(timed) == derived[timed.key]  # the per-record half, once
