"""--metric instructions: callgrind counts are deterministic across processes and see real extra work.

The counting test runs two child processes under valgrind (each imports torch under valgrind),
in parallel; it is skipped where valgrind is absent.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from bench.errors import UsageError
from bench.measure import instructions
from bench.measure.extra_work import EXTRA_WORK_ENV, extra_work_fraction
from bench.measure.instructions import InstructionPlan, calls_for, count_instructions, valgrind_missing

PLAN = InstructionPlan(mode="eager", batch_size=32, threads=1, repeats=1, warmup_steps=10, steps=10)


@pytest.mark.slow
@pytest.mark.skipif(valgrind_missing() is not None, reason="needs valgrind")
def test_counts_are_deterministic_across_processes_and_see_five_percent_more_work():
    """Two children, one with 5% extra work per training step: their inference calls, which the
    knob leaves alone, count the same in both processes; their training steps differ by the work."""
    plan = replace(PLAN, inference_batch_sizes=(32,))
    with ThreadPoolExecutor(2) as pool:  # the counts do not depend on load: both at once
        runs = [pool.submit(count_instructions, plan, env={EXTRA_WORK_ENV: e}) for e in ("0", "0.05")]
        plain, more = (f.result() for f in runs)
    (a,), (b,) = plain.per_call[32], more.per_call[32]
    assert abs(a - b) / a < 0.005, (a, b)
    assert more.per_step[0] > 1.02 * plain.per_step[0], (plain.per_step, more.per_step)


def test_valgrind_absent_is_a_reason_not_an_error(monkeypatch):
    monkeypatch.setattr(instructions.shutil, "which", lambda tool: None)
    assert "valgrind not found" in valgrind_missing()


def test_inference_regions_call_fewer_times_for_large_batches():
    plan = InstructionPlan(mode="eager", batch_size=32, threads=1, calls=10)
    assert [calls_for(plan, b) for b in (1, 32, 1024, 8192, 1 << 20)] == [10, 10, 4, 1, 1]


@pytest.mark.parametrize("value", ["abc", "-0.1", "nan", "inf", "11"])
def test_a_bad_extra_work_fraction_is_refused(value):
    with pytest.raises(UsageError, match=EXTRA_WORK_ENV):
        extra_work_fraction({EXTRA_WORK_ENV: value})
    assert extra_work_fraction({}) == 0 and extra_work_fraction({EXTRA_WORK_ENV: "0.03"}) == 0.03


def test_dumps_are_read_in_dump_order(tmp_path):
    for n, total in ((2, 20), (10, 100), (1, 10)):
        (tmp_path / f"cg.7.{n}").write_text(f"events: Ir\nsummary: 5\ntotals: {total}\n")
    (tmp_path / "cg.7").write_text("totals: 0\n")  # the dump at exit, after the last region
    assert instructions._dumped_totals(tmp_path, 7) == [10, 20, 100]


def test_compiled_modes_are_skipped_where_inductor_would_build_avx512(tmp_path, monkeypatch):
    monkeypatch.setattr(instructions, "valgrind_missing", lambda: None)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512vl\n")
    assert "AVX-512" in instructions.instructions_skip_reason("cpu", "compile-fullstep", cpuinfo)
    assert instructions.instructions_skip_reason("cpu", "eager", cpuinfo) is None
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2\n")
    assert instructions.instructions_skip_reason("cpu", "compile", cpuinfo) is None


def test_instruction_counts_round_trip_and_text_counts_are_refused(tmp_path):
    import json

    from bench.analysis.derive import derive
    from bench.records import ConfigKey, Record
    from bench.store.load import load_run
    from bench.store.run_folder import RunWriter
    from sumnet.model import NetConfig

    key = ConfigKey("train", "cpu", "eager", 32, 1)
    writer = RunWriter(tmp_path, {})
    writer.add(Record(key, samples={"instructions_per_step": [2.0e6, 2.2e6, 2.1e6]}))
    writer.derived = derive(writer.records, {}, NetConfig())
    writer.flush()
    assert load_run(tmp_path).frame.iloc[0].instructions_per_step == 2.1e6  # the median
    doc = json.loads((tmp_path / "run.json").read_text())
    doc["records"][0]["samples"]["instructions_per_step"] = ["many"]
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(UsageError, match="instructions_per_step are not numbers"):
        load_run(tmp_path)


def test_the_child_runs_numpys_blas_at_the_plans_threads(monkeypatch):
    """Unbounded, OpenBLAS's workers spin under valgrind and their spins are counted: numpy-reference's
    1,024-row inference call read 24 then 91 million instructions in two regions of one process."""
    seen = {}

    class Stop(Exception):
        pass

    def popen(command, env, **kwargs):
        seen.update(env)
        raise Stop

    monkeypatch.setattr(instructions.subprocess, "Popen", popen)
    with pytest.raises(Stop):
        count_instructions(InstructionPlan(mode="numpy-reference", batch_size=32, threads=3))
    assert [seen[name] for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")] == [
        "3"
    ] * 3
