"""Columns derived from measured rows: FLOPs and utilisation, ratios to the fastest mode and to
the NumPy floor, compile break-even, loss-curve agreement with eager. Pure functions on rows.

    python -c "from bench.derived import train_step_flops; print(train_step_flops())"
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch.utils.flop_counter import FlopCounterMode

from sumnet.data import make_batch, make_generator
from sumnet.model import NetConfig
from sumnet.train import init_net, make_optimizer, train_step

# Dense FP32 (non-tensor-core) peak FLOP/s from NVIDIA's datasheets, SXM parts. The harness runs
# in FP32 with TF32 off (torch's default), so this is the relevant ceiling. Unknown devices get no
# utilisation rather than a guess.
PEAK_FP32_FLOPS = {
    "H200": 67e12,
    "H100 PCIe": 51e12,
    "H100": 67e12,
    "A100": 19.5e12,
    "L4": 30.3e12,
    "A10G": 31.2e12,
}
CURVE_TOLERANCE = 0.05  # loss curves of a mode and eager may differ by 5% (relative) before a flag
CURVE_FLOOR = 1e-3  # losses below this are compared in absolute terms (relative error of ~0 is noise)
MIN_STEP_S = 1e-6  # nothing launches a training step in under a microsecond: such a time is an error


def peak_flops(gpu_name: str) -> float | None:
    """The FP32 peak of a known GPU (longest matching name wins), else None."""
    matches = [k for k in PEAK_FP32_FLOPS if k.lower() in (gpu_name or "").lower()]
    return PEAK_FP32_FLOPS[max(matches, key=len)] if matches else None


def train_step_flops(net_config: NetConfig = NetConfig(), batch_size: int = 32) -> int:
    """FLOPs of one training step (forward + backward matmuls), counted by torch's FlopCounterMode."""
    net = init_net(net_config, 0)
    optimizer = make_optimizer(net)
    x, y = make_batch(batch_size, make_generator(0), net_config.input_size)
    with FlopCounterMode(display=False) as counter:
        train_step(net, optimizer, x, y)
    return int(counter.get_total_flops())


def forward_flops(net_config: NetConfig = NetConfig(), batch_size: int = 1) -> int:
    """FLOPs of one forward pass over `batch_size` rows, counted on the meta device (no compute)."""
    net = init_net(net_config, 0).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.empty(batch_size, net_config.input_size, device="meta"))
    return int(counter.get_total_flops())


def loss_curve_deviation(curve: Mapping[object, float], reference: Mapping[object, float]) -> float:
    """Largest relative deviation of `curve` from `reference` over their common steps.

    Where the reference loss is below CURVE_FLOOR the difference is divided by CURVE_FLOOR instead,
    so late, near-zero losses do not turn rounding noise into huge relative errors.
    """
    common = {str(k) for k in curve} & {str(k) for k in reference}
    if not common:
        return math.nan
    a = {str(k): float(v) for k, v in curve.items()}
    b = {str(k): float(v) for k, v in reference.items()}
    return max(abs(a[k] - b[k]) / max(abs(b[k]), CURVE_FLOOR) for k in common)


def break_even_step(first_s: float, step_s: float, base_first_s: float, base_step_s: float) -> float:
    """Steps after which a run costing `first_s + (n-1) step_s` beats the baseline's; inf if never.

    1 when the mode is no slower from the first call on.
    """
    extra = first_s - base_first_s
    if extra <= 0 and step_s <= base_step_s:
        return 1.0
    saving = base_step_s - step_s
    if saving <= 0:
        return math.inf
    return float(math.ceil(1 + extra / saving))


def _add_flag(row: dict, flag: str) -> None:
    flags = [f for f in str(row.get("flags") or "").split(";") if f]
    if flag not in flags:
        row["flags"] = ";".join([*flags, flag])


def derive(
    rows: list[dict], samples: Mapping[str, Mapping], env: Mapping[str, object], net_config: NetConfig
) -> None:
    """Fill the derived columns of `rows` in place (rows with status ok only)."""
    from bench.results import row_key

    peak = peak_flops(str(env.get("gpu_name", "")))
    ok = [r for r in rows if r.get("status") == "ok"]
    flop_cache: dict[tuple[str, int], int] = {}
    for row in ok:
        kind, bs = row["workload"], int(row["batch_size"])
        if kind not in ("train", "inference"):
            continue
        if (kind, bs) not in flop_cache:
            flop_cache[kind, bs] = (
                train_step_flops(net_config, bs) if kind == "train" else forward_flops(net_config, bs)
            )
        flops = flop_cache[kind, bs]
        seconds = (row["step_ms"] if kind == "train" else row["latency_ms"]) / 1e3
        row["flops_per_step"] = flops
        row["achieved_flops_per_s"] = flops / seconds if seconds > 0 else math.nan
        device_peak = peak if str(row["device"]).startswith("cuda") else None
        if device_peak:
            row["utilization"] = row["achieved_flops_per_s"] / device_peak
        if seconds < MIN_STEP_S or (device_peak and flops / device_peak > seconds):
            _add_flag(row, "below-floor")

    train = [r for r in ok if r["workload"] == "train"]
    for row in train:
        peers = [r for r in train if r["device"] == row["device"] and r["threads"] == row["threads"]]
        row["ratio_to_fastest"] = row["step_ms"] / min(r["step_ms"] for r in peers)
        floor = [r for r in peers if r["mode"] == "numpy-reference"]
        if floor:
            row["ratio_to_floor"] = row["step_ms"] / floor[0]["step_ms"]
        eager = [r for r in peers if r["mode"] == "eager"]
        if eager and row["mode"] != "eager":
            base = eager[0]
            row["break_even_step"] = break_even_step(
                row["first_call_s"], row["step_ms"] / 1e3, base["first_call_s"], base["step_ms"] / 1e3
            )
            # numpy-reference draws its batches from NumPy's generator: its curve is not comparable
            curve = (
                {}
                if row["mode"] == "numpy-reference"
                else samples.get(row_key(row), {}).get("loss_curve", {})
            )
            ref = samples.get(row_key(base), {}).get("loss_curve", {})
            if curve and ref:
                row["loss_curve_max_rel_dev"] = loss_curve_deviation(curve, ref)
                if row["loss_curve_max_rel_dev"] > CURVE_TOLERANCE:
                    _add_flag(row, "curve-deviates")
