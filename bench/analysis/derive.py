"""Columns derived from measured records (throughput, flags, FLOPs and utilisation, ratios to the
floor and to CPU eager, compile break-even, loss-curve agreement), computed once per run by `derive`.

    python -c "from bench.analysis.derive import train_step_flops; print(train_step_flops())"
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.analysis.stats import NOISY_IQR_RATIO, Summary
from bench.modes import FLOOR_MODES
from bench.records import ConfigKey, Record, timing_metric_for
from sumnet.data import make_batch, make_generator
from sumnet.model import NetConfig
from sumnet.train import init_net, make_optimizer, train_step

# Dense FP32 (the harness's dtype, TF32 off) peak FLOP/s and HBM bytes/s from NVIDIA's datasheets,
# SXM parts. Unknown devices get no utilisation rather than a guess.
GPU_PEAKS = {  # name: (FLOP/s, bytes/s)
    "H200": (67e12, 4.8e12),
    "H100 PCIe": (51e12, 2.0e12),
    "H100": (67e12, 3.35e12),
    "A100": (19.5e12, 2.0e12),
    "L4": (30.3e12, 0.3e12),
    "A10G": (31.2e12, 0.6e12),
}
CURVE_TOLERANCE = 0.05  # loss curves of a mode and eager may differ by 5% (relative) before a flag
CURVE_FLOOR = 1e-3  # losses below this are compared in absolute terms (relative error of ~0 is noise)
MIN_STEP_S = 1e-6  # nothing launches a training step in under a microsecond: such a time is an error
FLOAT_BYTES = 4


def gpu_peaks(gpu_name: str) -> tuple[float, float] | None:
    """(FP32 FLOP/s, HBM bytes/s) of a known GPU (longest matching name wins), else None."""
    matches = [k for k in GPU_PEAKS if k.lower() in (gpu_name or "").lower()]
    return GPU_PEAKS[max(matches, key=len)] if matches else None


def train_step_bytes(net_config: NetConfig = NetConfig(), batch_size: int = 32) -> int:
    """Bytes one training step must move at least: every parameter, gradient and Adam moment read
    and written once (8 float32 passes), the batch and the activations written and read once."""
    sizes = [net_config.input_size, *([net_config.hidden_size] * net_config.hidden_layers), 1]
    params = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    activations = batch_size * (sum(sizes) + 1)  # inputs, each layer's output, the targets
    return FLOAT_BYTES * (8 * params + 2 * activations)


def step_lower_bound_s(
    flops: float, bytes_moved: float, peak: float, bandwidth: float, launch_s: float
) -> float:
    """The time one step cannot go below: the largest of its arithmetic at the FP32 peak, its bytes at
    the memory bandwidth, and one kernel launch (a whole step needs at least one)."""
    return max(flops / peak, bytes_moved / bandwidth, launch_s)


@cache  # pure: one count per (config, batch size) in a process
def train_step_flops(net_config: NetConfig = NetConfig(), batch_size: int = 32) -> int:
    """FLOPs of one training step (forward + backward matmuls), counted by torch's FlopCounterMode."""
    net = init_net(net_config, 0)
    optimizer = make_optimizer(net)
    x, y = make_batch(batch_size, make_generator(0), net_config.input_size)
    with FlopCounterMode(display=False) as counter:
        train_step(net, optimizer, x, y)
    return int(counter.get_total_flops())


@cache
def forward_flops(net_config: NetConfig = NetConfig(), batch_size: int = 1) -> int:
    """FLOPs of one forward pass over `batch_size` rows, counted on the meta device (no compute)."""
    net = init_net(net_config, 0).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.empty(batch_size, net_config.input_size, device="meta"))
    return int(counter.get_total_flops())


def loss_curve_deviation(curve: Mapping[object, float], reference: Mapping[object, float]) -> float:
    """Largest relative deviation of `curve` from `reference` over their common steps, relative to
    at least CURVE_FLOOR so near-zero late losses do not turn rounding noise into huge errors."""
    common = {str(k) for k in curve} & {str(k) for k in reference}
    if not common:
        return math.nan
    a = {str(k): float(v) for k, v in curve.items()}
    b = {str(k): float(v) for k, v in reference.items()}
    return max(abs(a[k] - b[k]) / max(abs(b[k]), CURVE_FLOOR) for k in common)


def break_even_step(first_s: float, step_s: float, base_first_s: float, base_step_s: float) -> float:
    """Steps after which a run costing `first_s + (n-1) step_s` beats the baseline's; inf if never,
    1 when the mode is no slower from the first call on."""
    extra = first_s - base_first_s
    if extra <= 0 and step_s <= base_step_s:
        return 1.0
    saving = base_step_s - step_s
    if saving <= 0:
        return math.inf
    return float(math.ceil(1 + extra / saving))


def _timing(record: Record) -> tuple[float, float]:
    """(median seconds, IQR / median) of the record's step or latency: from its samples, else as
    measured (a pytest-benchmark file saved without data); NaN when untimed."""
    metric = timing_metric_for(record.key.workload)
    median, iqr = record.number(metric), record.number(f"{metric}_iqr")
    relative = iqr / median if median > 0 else (math.inf if record.timing else math.nan)
    return median / 1e3, relative


def per_record(record: Record) -> dict[str, object]:
    """Values derived from one record alone: throughput, the noise flag, median instruction counts."""
    if not record.ok:
        return {}
    out: dict[str, object] = {}
    seconds, relative_iqr = _timing(record)
    rows = (record.key.batch_size or 0) * record.key.world_size
    if rows > 0 and seconds > 0:
        out["samples_per_s"] = rows / seconds
    flags = [f for f in str(record.measured.get("flags") or "").split(";") if f]
    if relative_iqr > NOISY_IQR_RATIO and "noisy" not in flags:
        flags.insert(0, "noisy")
    if flags:
        out["flags"] = ";".join(flags)
    for name in ("instructions_per_step", "instructions_per_call"):
        if record.samples.get(name):
            out[name] = Summary.of(record.samples[name]).median  # type: ignore[arg-type]
    return out


def _with_flag(flags: str, flag: str) -> str:
    present = [f for f in flags.split(";") if f]
    return ";".join(present if flag in present else [*present, flag])


def derive(
    records: Sequence[Record], env: Mapping[str, object], net_config: NetConfig
) -> dict[ConfigKey, dict[str, object]]:
    """{key: {column: value}} of every ok record: per_record's values, then those across records
    (FLOPs and utilisation, below-floor and curve-deviates flags, floor ratio, speed-up, break-even)."""
    peaks = gpu_peaks(str(env.get("gpu_name", "")))
    out = {r.key: per_record(r) for r in records if r.ok}
    seconds = {r.key: _timing(r)[0] for r in records if r.ok}
    for record in records:
        key = record.key
        if not record.ok or key.workload not in ("train", "inference") or not key.batch_size:
            continue
        kind, bs, s, values = key.workload, key.batch_size, seconds[key], out[key]
        flops = (train_step_flops if kind == "train" else forward_flops)(net_config, bs)
        values.update(flops_per_step=flops, achieved_flops_per_s=flops / s if s > 0 else math.nan)
        peak, bandwidth = peaks if peaks and key.device.startswith("cuda") else (None, None)
        if peak:
            values["utilization"] = values["achieved_flops_per_s"] / peak
        if s < MIN_STEP_S or (peak and flops / peak > s):
            values["flags"] = _with_flag(str(values.get("flags", "")), "below-floor")
        launch_us = record.measured.get("graph_launch_us")
        if kind == "train" and peak and bandwidth and isinstance(launch_us, (int, float)):
            bound = step_lower_bound_s(
                flops, train_step_bytes(net_config, bs), peak, bandwidth, launch_us / 1e6
            )
            values.update(lower_bound_us=bound * 1e6, ratio_to_bound=s / bound)

    train = [r for r in records if r.ok and r.key.workload == "train" and not math.isnan(seconds[r.key])]
    cpu_eager = {
        r.key.threads: seconds[r.key] for r in train if (r.key.device, r.key.mode) == ("cpu", "eager")
    }
    for record in train:
        key, values = record.key, out[record.key]
        if key.threads in cpu_eager:
            values["speedup_vs_cpu_eager"] = cpu_eager[key.threads] / seconds[key]
        peers = [r for r in train if (r.key.device, r.key.threads) == (key.device, key.threads)]
        floors = [r for r in peers if r.key.mode in FLOOR_MODES]
        if floors:
            floor = min(floors, key=lambda r: seconds[r.key])
            values.update(ratio_to_floor=seconds[key] / seconds[floor.key], floor_mode=floor.key.mode)
        eager = [r for r in peers if r.key.mode == "eager"]
        if eager and key.mode != "eager":
            base = eager[0]
            values["break_even_step"] = break_even_step(
                float(record.measured.get("first_call_s") or 0.0),
                seconds[key],
                float(base.measured.get("first_call_s") or 0.0),
                seconds[base.key],
            )
            # the floors draw their batches from other generators: their curves are not comparable
            curve = {} if key.mode in FLOOR_MODES else record.samples.get("loss_curve") or {}
            ref = base.samples.get("loss_curve") or {}
            if curve and ref:
                deviation = loss_curve_deviation(curve, ref)  # type: ignore[arg-type]
                values["loss_curve_max_rel_dev"] = deviation
                if deviation > CURVE_TOLERANCE:
                    values["flags"] = _with_flag(str(values.get("flags", "")), "curve-deviates")
    return out
