"""DDP through torchrun on the CPU: result shapes, learning like one process, strong scaling, and a
rank that dies or never joins ending the run with a failed result instead of a hang.

Each launch pays torchrun's and the ranks' start-up (a few seconds on 2 cores); runs are 300 steps.

    pytest tests/test_ddp.py
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from bench.__main__ import main as bench_main
from bench.ddp import launch
from bench.ddp.launch import DDPResult, failure_reason, run_ddp, scaling_efficiency
from bench.ddp.plan import DDPPlan, per_rank_batch, resolve_backend
from bench.ddp.worker import ENV_FAIL_RANK, ENV_HANG_RANK, _missing_ranks
from bench.measure.environment import max_threads
from sumnet.train import TrainConfig, train

STEPS = 300  # three blocks of 100: one warm-up block, two steady-state samples per rank
TIMEOUT_S = 180.0  # the launcher's last line: a hung run fails this test instead of the suite
INIT_TIMEOUT_S = 2.0  # how long the ranks wait for a peer that never joins
# World size 1 is eager with one extra identity all-reduce and a division by 1, so its losses must
# equal the single-process Net's; the tolerance only allows a different summation order elsewhere.
LOSS_RTOL, LOSS_ATOL = 1e-5, 1e-7


@pytest.fixture(scope="module")
def one_rank() -> DDPResult:
    result = run_ddp(1, steps=STEPS, timeout_s=TIMEOUT_S)
    assert result is not None and result.ok, result and result.reason
    return result


@pytest.fixture(scope="module")
def two_ranks_strong() -> DDPResult:
    result = run_ddp(2, scaling="strong", steps=STEPS, timeout_s=TIMEOUT_S)
    assert result is not None and result.ok, result and result.reason
    return result


@pytest.fixture(scope="module")
def failures() -> dict[str, DDPResult]:
    """A rank that raises after its first step and a rank that never joins, launched side by side."""
    cases = {
        "dies": {ENV_FAIL_RANK: "1"},
        "never_joins": {ENV_HANG_RANK: "1"},
    }
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {
            name: pool.submit(
                run_ddp, 2, steps=STEPS, timeout_s=TIMEOUT_S, init_timeout_s=INIT_TIMEOUT_S, env=env
            )
            for name, env in cases.items()
        }
        return {name: future.result() for name, future in futures.items()}  # type: ignore[misc]


@pytest.mark.slow
def test_world_size_one_result_shapes(one_rank: DDPResult) -> None:
    assert (one_rank.world_size, one_rank.backend, one_rank.scaling) == (1, "gloo", "weak")
    assert one_rank.per_rank_batch == one_rank.global_batch == 32
    assert [len(s) for s in one_rank.step_ms] == [2] and [len(s) for s in one_rank.allreduce_ms] == [2]
    assert list(one_rank.loss_curve) == list(one_rank.mae_curve) == [100, 200, 300]
    assert one_rank.first_call_s > 0 and one_rank.run_s > one_rank.first_call_s
    assert "comm hook" in one_rank.allreduce_method
    assert 0 < one_rank.allreduce_share < 1
    assert one_rank.samples_per_s == pytest.approx(32 / (one_rank.slowest_step_ms / 1e3))
    assert one_rank.final_mae == one_rank.mae_curve[300] and one_rank.converged is False  # 300 steps: too few
    assert "above target" in one_rank.verdict
    assert scaling_efficiency(one_rank, one_rank) == pytest.approx(1.0)


@pytest.mark.slow
def test_world_size_one_learns_like_the_single_process_net(one_rank: DDPResult) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the rank ran: the same kernels, and no thread contention on 2 cores
    try:
        eager = train(TrainConfig(steps=STEPS, seed=0), log_every=100).losses
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(
        torch.tensor(list(one_rank.loss_curve.values()), dtype=torch.float64),
        torch.tensor([eager[s] for s in one_rank.loss_curve], dtype=torch.float64),
        rtol=LOSS_RTOL,
        atol=LOSS_ATOL,
    )


@pytest.mark.slow
def test_strong_scaling_splits_the_global_batch(two_ranks_strong: DDPResult) -> None:
    r = two_ranks_strong
    assert (r.world_size, r.per_rank_batch, r.global_batch) == (2, 16, 32)
    assert [len(s) for s in r.step_ms] == [2, 2] and [len(s) for s in r.allreduce_ms] == [2, 2]
    assert len(r.hosts) == 2 and r.nodes == [0, 0] and r.nnodes == 1
    assert r.slowest_step_ms == max(r.rank_step_ms) and r.slowest_rank in (0, 1)
    assert "mean over ranks" in r.loss_curve_method
    assert list(r.loss_curve) == [100, 200, 300] and all(math.isfinite(v) for v in r.loss_curve.values())


def test_strong_scaling_refuses_a_world_size_that_does_not_divide_32() -> None:
    with pytest.raises(ValueError, match="world size 3 does not divide 32"):
        run_ddp(3, scaling="strong", steps=10, timeout_s=10)
    assert [per_rank_batch("strong", w) for w in (1, 2, 4, 32)] == [32, 16, 8, 1]
    assert per_rank_batch("weak", 3) == 32


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--nproc", "0"], "--nproc must be a comma list of world sizes from 1 to 1024"),
        (["--nproc", "1,99999"], "--nproc must be a comma list of world sizes from 1 to 1024"),
        (["--steps", "10000001"], "--steps: expected at most 10,000,000"),
        (["--threads-per-rank", "100000"], f"--threads-per-rank: expected at most {max_threads()}"),
        (["--scaling", "sideways"], "--scaling"),
        (["--backend", "nccl"], "the nccl backend needs CUDA tensors"),
        (["--scaling", "strong", "--nproc", "1,3"], "world size 3 does not divide 32"),
        (["--timeout", "0"], "--timeout: expected a positive number"),
        (["--nproc", str(4 * (os.cpu_count() or 1) + 1)], f"at most {4 * (os.cpu_count() or 1)} (4 per core"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_any_launch(flags, message, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["ddp", *flags, "--out", str(tmp_path), "--no-history"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_backend_resolution_refuses_impossible_combinations() -> None:
    assert resolve_backend("cpu", None)[0] == "gloo" and resolve_backend("cuda", None)[0] == "nccl"
    assert resolve_backend("cuda", "gloo")[0] == "gloo"
    with pytest.raises(ValueError, match="nccl backend needs CUDA"):
        resolve_backend("cpu", "nccl")
    with pytest.raises(ValueError, match="DDP runs on cpu or cuda"):
        DDPPlan(device="mps")


@pytest.mark.slow
def test_a_rank_that_dies_fails_the_run_naming_it(failures: dict[str, DDPResult]) -> None:
    r = failures["dies"]
    assert r.status == "failed" and r.step_ms == []
    assert r.reason.startswith("rank 1 (local rank 1)"), r.reason
    assert "exitcode 1" in r.reason and "injected failure" in r.reason
    assert r.wall_s < TIMEOUT_S / 2  # torchrun ended it, not the launcher's last-line timeout


@pytest.mark.slow
def test_a_rank_that_never_joins_fails_the_run_within_the_init_timeout(
    failures: dict[str, DDPResult],
) -> None:
    r = failures["never_joins"]
    assert r.status == "failed"
    assert "rank(s) 1 never joined" in r.reason and f"init_timeout_s={INIT_TIMEOUT_S:g}" in r.reason, r.reason
    assert r.wall_s < TIMEOUT_S / 2


def test_failure_reason_reads_torchrun_root_cause_and_bare_exceptions() -> None:
    summary = """\
Root Cause (first observed failure):
[0]:
  time      : 2026-11-27_23:28:16
  host      : node7
  rank      : 3 (local_rank: 1)
  exitcode  : -9 (pid: 11686)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 11686
============================================================"""
    assert failure_reason(summary) == "rank 3 (local rank 1) on node7 failed: exitcode -9"
    bare = "Traceback...\ntorch.distributed.elastic.rendezvous.api.RendezvousTimeoutError\n"
    assert failure_reason(bare) == "torchrun failed before the ranks reported: RendezvousTimeoutError"
    assert _missing_ranks("wait timeout after 5000ms, keys: /default_pg/0//cpu//0/2") == [2]


def test_timeout_stops_the_launcher_and_workers_in_their_own_sessions(tmp_path: Path) -> None:
    """The last line: torchrun starts each worker in a session of its own; a timeout ends them all."""
    child = "import time; time.sleep(120)"
    parent = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {child!r}, 'bench.ddp.worker'], start_new_session=True); "
        "time.sleep(120)"
    )
    start = time.perf_counter()
    _, timed_out, _, _ = launch._run([sys.executable, "-c", parent], os.environ, 3.0, tmp_path / "log")
    assert timed_out and time.perf_counter() - start < 3.0 + 2 * launch.TERMINATE_GRACE_S
    time.sleep(0.5)  # SIGKILL is delivered asynchronously

    def is_stand_in(cmdline: Path) -> bool:
        try:
            return child.encode() in cmdline.read_bytes()
        except OSError:
            return False

    assert not any(map(is_stand_in, Path("/proc").glob("[0-9]*/cmdline"))), "a worker outlived the timeout"


@pytest.mark.slow
def test_killing_the_launcher_outright_takes_torchrun_and_its_ranks_with_it(tmp_path: Path) -> None:
    """kill -9 of `bench ddp` (the out-of-memory killer) leaves no torchrun or rank running, and the
    run folder latest-ddp points at says which world size was not measured."""
    cmd = [sys.executable, "-m", "bench", "ddp", "--nproc", "2", "--steps", "10000000", "--no-history"]
    launcher = subprocess.Popen(
        [*cmd, "--out", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    tree: list[int] = []
    while time.monotonic() < deadline and len(tree) < 3:  # torchrun and its two ranks
        torchrun = launch._children(launcher.pid)
        tree = torchrun + [w for t in torchrun for w in launch._children(t)]
        time.sleep(0.2)
    assert len(tree) == 3, f"the ranks never started: {tree}"
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 60  # torchrun stops its ranks (SIGTERM, then SIGKILL after its grace)
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in tree):
        time.sleep(0.2)
    survivors = [pid for pid in tree if Path(f"/proc/{pid}").exists()]
    for pid in survivors:  # leave nothing behind whatever the verdict
        os.kill(pid, signal.SIGKILL)
    assert survivors == [], "a process outlived the launcher"
    rows = (tmp_path / "latest-ddp" / "results.csv").read_text()
    assert "not measured: bench ddp ended before this world size finished" in rows, rows
