"""Rendering: DataFrames to markdown tables (tabulate) and the run's report.md.

Measuring code returns data; this module alone turns it into text.

    python -c "from bench.store.load import load_run; from bench.render.report import summary_markdown; print(summary_markdown(load_run('results/latest').frame))"
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
from tabulate import tabulate

from bench.analysis.crossover import inference_crossover, inference_curves
from bench.analysis.derive import CURVE_TOLERANCE
from bench.analysis.frames import ok_rows
from bench.analysis.stats import NOISY_IQR_RATIO
from bench.measure.machine_load import LOADED_LOAD_PER_CORE, LOADED_STEAL_FRAC, loaded_reason
from bench.records import Record


def fmt(value: object, digits: int = 3) -> str:
    """A compact cell: empty for missing, yes/no for booleans, `digits` significant figures."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if not isinstance(value, float):
        return str(value)
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 else f"{value:.2e}"


def markdown_table(df: pd.DataFrame, columns: Mapping[str, str], digits: int = 3) -> str:
    """A GitHub markdown table of `df`'s `columns` (name -> header), cells formatted with fmt()."""
    present = {c: h for c, h in columns.items() if c in df.columns}
    rows = df[list(present)].itertuples(index=False)
    # numpy scalars to Python ones, so fmt() sees bool and float
    body = [[fmt(v.item() if hasattr(v, "item") else v, digits) for v in row] for row in rows]
    return tabulate(body, headers=list(present.values()), tablefmt="github", disable_numparse=True)


_CONFIG_COLUMNS = {"device": "device", "mode": "mode", "threads": "threads"}  # a training row's identity
_ROW_COLUMNS = {**_CONFIG_COLUMNS, "workload": "workload", "batch_size": "batch"}  # any row's
_INTERRUPTED = (
    "**Interrupted** (Ctrl-C or SIGTERM): the configurations below were measured before it; "
    "the one cut short is listed as failed."
)

TRAIN_COLUMNS = {
    **_CONFIG_COLUMNS,
    "step_ms": "step ms (median)",
    "step_iqr_pct": "IQR %",
    "samples_per_s": "samples/s",
    "first_call_s": "first call s",
    "run_s": "3000-step run s",
    "speedup_vs_cpu_eager": "speed-up vs CPU eager",  # at the row's thread count: said under the table
    "ratio_to_floor": "x floor",
    "break_even_step": "break-even step",
    "mae": "held-out MAE",
    "converged": "converged",
    "flags": "flags",
}


def train_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Training rows in the report's units: IQR as % of median, GFLOP/s, %, MiB (nothing derived)."""
    train = ok_rows(df, "train")
    if "instructions_per_step" in train:  # counted, not timed (--metric instructions): its own table
        train = train[train["step_ms"].notna() | train["instructions_per_step"].isna()]
    if train.empty:
        return train
    train["step_iqr_pct"] = 100 * train["step_ms_iqr"] / train["step_ms"]
    train["gflops_per_s"] = train["achieved_flops_per_s"] / 1e9
    train["utilization_pct"] = 100 * train["utilization"]
    train["peak_mem_mib"] = train["peak_mem_bytes"] / 2**20
    train["peak_rss_mib"] = train["peak_rss_bytes"] / 2**20
    return train


def summary_markdown(df: pd.DataFrame) -> str:
    """The training summary table: device x mode, step time, run time, samples/s, speed-up, verdict."""
    train = train_summary(df)
    if train.empty:
        return "(no training rows measured)"
    cols = dict(TRAIN_COLUMNS)
    if train["steps"].nunique() == 1:
        cols["run_s"] = f"{int(train['steps'].iloc[0])}-step run s"
    return markdown_table(train, cols)


def crossover_sentence(df: pd.DataFrame) -> str:
    """Where the GPU's inference throughput overtakes the CPU's, from the best mode of each."""
    crossover = inference_crossover(df)
    if crossover is None:
        return (
            "Both a CPU and a CUDA device are needed to name the batch size where the GPU overtakes the CPU."
        )
    return f"**{crossover.describe()}.**"


def env_line(env: Mapping[str, object]) -> str:
    gpu = (
        f", GPU {env.get('gpu_name')} (driver {env.get('driver_version')}, CUDA {env.get('cuda_version')})"
        if env.get("gpu_name")
        else ", no GPU"
    )
    dirty = " (dirty tree)" if env.get("git_dirty") else ""
    cache = "warm" if str(env.get("inductor_cache_warm")) == "True" else "cold"
    return (
        f"Host `{env.get('host')}`: {env.get('cpu_model')}, {env.get('cpu_cores')} cores{gpu}; "
        f"torch {env.get('torch_version')}, numpy {env.get('numpy_version')}, Python {env.get('python_version')}; "
        f"commit {env.get('git_commit') or 'unknown'}{dirty}; torch.compile cache {cache} at start "
        f"(first calls of compiled modes depend on it); {env.get('timestamp_utc')}."
    )


def _overhead_sentence(settings: Mapping[str, object]) -> str:
    wall, timed = settings.get("wall_s"), settings.get("timed_s")
    if not wall or not timed:  # nothing timed (--metric instructions): no overhead to state
        return ""
    outside = max(0.0, float(wall) - float(timed))
    return (
        f"The run took {float(wall):.0f} s to this report, {float(timed):.0f} s of it inside timed regions; the "
        f"harness's own work (building models, writing files) took {outside:.1f} s ({outside / float(wall):.0%})."
    )


def _figure_link(figures: object, name: str, caption: str) -> str:
    paths = getattr(figures, "paths", {}) or {}
    return f"\n![{caption}]({paths[name].name})\n" if name in paths else ""


def _notes_section(records: Sequence[Record]) -> list[str]:
    """Each configuration's notes (which Adam ran, a fallback taken, a deliberate slowdown), once per
    distinct set, so the reason behind a number is in the report."""
    seen: dict[tuple[str, ...], dict[str, None]] = {}  # notes -> the configurations' labels, in order
    for r in records:
        if r.notes:
            threads = f" · {r.key.threads} threads" if r.key.threads else ""
            seen.setdefault(tuple(r.notes), {})[f"{r.key.device} · {r.key.mode}{threads}"] = None
    if not seen:
        return []
    lines = [f"- **{', '.join(labels)}**: " + "; ".join(notes) for notes, labels in seen.items()]
    return ["## Notes of the modes", "", *lines, ""]


def _floor_sentence(train: pd.DataFrame) -> str:
    floors = sorted({str(m) for m in train.get("floor_mode", pd.Series(dtype=str)) if m})
    if not floors:
        return ""
    return f"The floor column (`x floor`) divides by the fastest hand-written floor of each device and thread count: {', '.join(f'`{f}`' for f in floors)}."


def render_run_report(
    df: pd.DataFrame,
    env: Mapping[str, object],
    settings: Mapping[str, object],
    figures: object,
    records: Sequence[Record] = (),
) -> str:
    """report.md of one `bench run`: summary, time to accuracy, hardware use, inference, skipped rows, notes."""
    train = train_summary(df)
    out = [
        "# sumnet-bench report",
        "",
        env_line(env),
        "",
        f"Preset `{settings.get('preset')}`, seed {settings.get('seed')}, command `{env.get('argv')}`. "
        + _overhead_sentence(settings)
        + ' A *step* is one batch update (the article\'s "epoch"). '
        "Times are medians of raw block samples; first call includes compilation; run time excludes evaluation.",
        "",
        *([_INTERRUPTED, ""] if settings.get("interrupted") else []),
        "## Training",
        "",
        summary_markdown(df),
        "",
        "First call, run time, steps and time to target and the final loss are the first (cold) repeat's; "
        "step ms pools the steady blocks of every repeat; MAE, accuracy and eval time are medians over the "
        "repeats. Speed-up divides CPU eager's step time at the row's thread count by the row's.",
        "",
        _floor_sentence(train),
        _figure_link(figures, "train_steps", "Training step time per device and mode"),
        _figure_link(figures, "run_split", "Whole-run time: first call vs steady state"),
    ]
    if not train.empty:
        out += [
            "### Time to accuracy and learning",
            "",
            markdown_table(
                train,
                {
                    **_CONFIG_COLUMNS,
                    "steps_to_target": "steps to target",
                    "time_to_target_s": "time to target s",
                    "eval_s": "eval s (apart)",
                    "final_loss": "final loss",
                    "exact_accuracy": "exact-sum acc.",
                    "loss_curve_max_rel_dev": "loss-curve dev. vs eager",
                    "verdict": "verdict",
                },
            ),
            "",
            "### Hardware use",
            "",
            markdown_table(
                train.dropna(axis=1, how="all"),  # GPU-only columns stay out of a CPU-only report
                {
                    **_CONFIG_COLUMNS,
                    "flops_per_step": "FLOPs/step",
                    "gflops_per_s": "GFLOP/s",
                    "utilization_pct": "% of FP32 peak",
                    "floor_mode": "floor",  # its ratio is the summary's x floor
                    "kernels_per_step": "kernels/step",
                    "us_per_kernel": "us/kernel",
                    "lower_bound_us": "lower bound us",
                    "ratio_to_bound": "x bound",
                    "best_steps_per_launch": "best steps/launch",
                    "best_us_per_step": "us/step at best",
                    "peak_mem_mib": "peak GPU MiB",
                    "peak_rss_mib": "peak RSS MiB",
                },
            ),
            "",
        ]
    curves = inference_curves(df)
    if curves:
        sizes = sorted({b for curve in curves.values() for b in curve})
        table = pd.DataFrame({"batch_size": sizes})
        for (device, label), curve in curves.items():
            table[f"{device} {label}"] = [curve.get(b, math.nan) for b in sizes]
        out += [
            "## Inference throughput (samples/s)",
            "",
            markdown_table(table, {c: str(c) if c != "batch_size" else "batch size" for c in table.columns}),
            "",
            crossover_sentence(df),
            _figure_link(figures, "inference", "Inference throughput against batch size"),
        ]
    cores = env.get("cpu_cores")
    cores = int(cores) if isinstance(cores, (int, float)) and cores > 0 else None  # NaN > 0 is False
    out += _instructions_section(df) + load_section(df, cores)
    bad = df[df["status"] != "ok"]
    # one line per configuration and reason (a skipped mode's train and inference rows say the same),
    # but each inference batch size that failed on its own keeps its line
    own_size = bad["workload"].eq("inference") & bad["batch_size"].notna()
    bad = pd.concat(
        [
            bad[~own_size].drop_duplicates(subset=["device", "mode", "threads", "status", "reason"]),
            bad[own_size],
        ]
    )
    if not bad.empty:
        out += [
            "## Skipped and failed",
            "",
            markdown_table(bad, {**_ROW_COLUMNS, "status": "status", "reason": "reason"}),
            "",
        ]
    out += _notes_section(records)
    if skipped_figs := getattr(figures, "skipped", None):
        out += [f"Figures skipped: {skipped_figs}.", ""]
    for name, why in (getattr(figures, "failed", None) or {}).items():
        out += [f"Figure not saved: {name} ({why}).", ""]
    out += [
        f"Flags: `noisy` = IQR over {NOISY_IQR_RATIO:.0%} of the median; `below-floor` = faster than the device "
        f"can be; `curve-deviates` = loss curve over {CURVE_TOLERANCE:.0%} from eager's at the same seed. "
        "Rows measured while the machine was loaded are listed under Machine load.",
        "",
    ]
    return "\n".join(out)


_LOAD_COLUMNS = ("load_avg_before", "load_avg_after", "cpu_steal_frac")


def _with_columns(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`df` with the `columns` it lacks added, empty."""
    return df.reindex(columns=[*df.columns, *(c for c in columns if c not in df.columns)])


def instructions_table(df: pd.DataFrame) -> str:
    """Instructions per training step and per inference call of the counted rows."""
    columns = {"instructions_per_step": "instructions/step", "instructions_per_call": "instructions/call"}
    ok = _with_columns(df[df["status"] == "ok"], columns)
    counted = ok[ok[list(columns)].notna().any(axis=1)]
    if counted.empty:
        return "(no instructions counted)"
    return markdown_table(counted, {**_ROW_COLUMNS, **columns}, digits=4)


def _instructions_section(df: pd.DataFrame) -> list[str]:
    table = instructions_table(df)
    if table.startswith("(no"):
        return []
    return [
        "## Instructions (callgrind)",
        "",
        "CPU instructions counted by Valgrind's callgrind around the measured steps and calls only "
        "(median of the repeats): Python, the dispatcher and the CPU kernels, not memory stalls or the clock.",
        "",
        table,
        "",
    ]


def load_section(df: pd.DataFrame, cores: int | None) -> list[str]:
    """How busy the machine was (`cores`: the measured machine's): the configurations measured
    while it was loaded, and why."""
    rows = _with_columns(df, _LOAD_COLUMNS)
    rows = rows[rows["load_avg_before"].notna()]
    if rows.empty:
        return []
    worst = rows.groupby(["device", "mode", "threads"], sort=False)[list(_LOAD_COLUMNS)].max()
    loaded = [
        f"- {d} · {m} · {t} threads: {why}"
        for (d, m, t), r in worst.iterrows()
        if (why := loaded_reason(r, cores))
    ]
    loads = rows[["load_avg_before", "load_avg_after"]].stack()
    head = (
        f"## Machine load\n\n1-minute load average {loads.min():.2f} to {loads.max():.2f}, CPU steal up to "
        f"{rows['cpu_steal_frac'].max():.1%} (results.csv: `load_avg_before`, `load_avg_after`, `cpu_steal_frac`). "
        f"Loaded means a load average above {LOADED_LOAD_PER_CORE:g}x the cores or steal above {LOADED_STEAL_FRAC:.0%}"
    )
    if not loaded:
        return [head + ": no configuration was measured loaded.", ""]
    return [
        head + "; these were, so their times (and `noisy` flags) say more about the machine than the code:",
        "",
        *loaded,
        "",
    ]
