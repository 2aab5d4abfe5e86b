"""Start torchrun on the DDP worker, stop it within a stated timeout, and read rank 0's result.

One node: `torchrun --standalone`; several: one torchrun per node, c10d rendezvous (docs/multinode.md).
The outcome is rank 0's JSON as an ok `DDPResult`, or a failed one naming the rank and why from
torchrun's "Root Cause" summary. A lost rank cannot hang a run: nodes must join within
`join_timeout_s`, the group and every collective within `init_timeout_s`, the first rank to exit ends
the run (`--max-restarts 0`), and at `timeout_s` torchrun's process group gets SIGTERM, then SIGKILL.

    python -c "from bench.ddp.launch import run_ddp; r = run_ddp(2, steps=300, timeout_s=120); print(r.status, r.slowest_step_ms, r.samples_per_s)"
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.ddp import die_with_parent
from bench.ddp.plan import DDPPlan, check_setup

DEFAULT_JOIN_TIMEOUT_S = 60.0  # rendezvous: how long a node waits for the others (several nodes)
TERMINATE_GRACE_S = 10.0  # after SIGTERM at timeout_s, torchrun and its workers get this long before SIGKILL
_REPO = Path(__file__).resolve().parents[2]
_PLAN_FIELDS = ("backend", "scaling", "device", "steps", "seed", "threads_per_rank")  # also on DDPResult


@dataclass
class DDPResult:
    """One DDP configuration's outcome; statistics are derived from the raw samples on demand."""

    world_size: int
    backend: str
    scaling: str  # weak | strong
    device: str  # cpu | cuda
    status: str  # ok | failed
    reason: str = ""  # failed: which rank and why, one line
    nnodes: int = 1
    steps: int = 0
    seed: int = 0
    threads_per_rank: int = 1
    per_rank_batch: int = 0  # rows each rank draws per step
    step_ms: list[list[float]] = field(default_factory=list)  # [rank][block]: ms per step, steady state
    allreduce_ms: list[list[float]] = field(default_factory=list)  # [rank][block]: ms of all-reduce per step
    allreduce_method: str = ""
    first_call_s: float | None = None  # rank 0's first step alone (DDP's first-iteration work included)
    run_s: float | None = None  # rank 0's timed seconds for all steps (evaluation excluded)
    loss_curve: dict[int, float] = field(default_factory=dict)  # step -> training loss
    loss_curve_method: str = ""
    mae_curve: dict[int, float] = field(default_factory=dict)  # step -> held-out MAE (rank 0)
    steps_to_target: int | None = None
    time_to_target_s: float | None = None  # rank 0's timed seconds until the MAE first met the target
    final_mae: float | None = None
    converged: bool | None = None
    verdict: str = ""
    hosts: list[str] = field(default_factory=list)  # [rank]: the host name that ran it
    nodes: list[int] = field(default_factory=list)  # [rank]: its node's index (torchrun's group rank)
    wall_s: float = 0.0  # the launcher's whole torchrun time: start-up, rendezvous, training, teardown

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def global_batch(self) -> int:
        return self.per_rank_batch * self.world_size

    @property
    def rank_step_ms(self) -> list[float]:
        """Median ms per step of each rank."""
        return [statistics.median(samples) for samples in self.step_ms]

    @property
    def slowest_rank(self) -> int:
        medians = self.rank_step_ms
        return medians.index(max(medians))

    @property
    def slowest_step_ms(self) -> float:
        """The slowest rank's median: every rank waits for it at each all-reduce."""
        return max(self.rank_step_ms)

    @property
    def samples_per_s(self) -> float:
        """Training rows per second over all ranks, at the slowest rank's pace."""
        return self.global_batch / (self.slowest_step_ms / 1e3)

    @property
    def allreduce_share(self) -> float:
        """Rank 0's median all-reduce ms over its median step ms (0 to 1); nan without samples."""
        if not self.allreduce_ms or not self.allreduce_ms[0]:
            return math.nan  # a run too short for a steady-state block
        return statistics.median(self.allreduce_ms[0]) / self.rank_step_ms[0]

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], wall_s: float = 0.0) -> DDPResult:
        """The result of the JSON file the worker's rank 0 wrote."""
        ranks, copied = doc["ranks"], ("world_size", "nnodes", "per_rank_batch", "allreduce_method")
        copied += ("loss_curve_method", "steps_to_target", "time_to_target_s", "converged", "verdict")
        return cls(
            **{name: doc["plan"][name] for name in _PLAN_FIELDS},
            **{name: doc[name] for name in copied},
            **{name: {int(s): v for s, v in doc[name].items()} for name in ("loss_curve", "mae_curve")},
            status="ok",
            step_ms=[r["step_ms"] for r in ranks],
            allreduce_ms=[r["allreduce_ms"] for r in ranks],
            first_call_s=ranks[0]["first_call_s"],
            run_s=ranks[0]["run_s"],
            final_mae=doc["final_metrics"]["mae"],
            hosts=[r["host"] for r in ranks],
            nodes=[r["node"] for r in ranks],
            wall_s=wall_s,
        )


def scaling_efficiency(result: DDPResult, one_process: DDPResult) -> float:
    """samples/s at world size W over W times one process's (1.0: perfect; weak: t1 / tW)."""
    return result.samples_per_s / (result.world_size * one_process.samples_per_s)


def torchrun_command(
    plan: DDPPlan,
    nproc_per_node: int,
    out: Path,
    *,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
    rdzv_id: str | None = None,
    join_timeout_s: float = DEFAULT_JOIN_TIMEOUT_S,
) -> list[str]:
    """torchrun's command line for this node. With several, c10d assigns the global ranks, so rank 0
    (which writes `out`) may be on any node; `node_rank` 0 is the one at `rdzv_endpoint` (the store)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc_per_node)]
    cmd += ["--max-restarts", "0"]  # a failed rank ends the run: no elastic restart
    if nnodes == 1:
        cmd += ["--standalone"]
    else:
        if not rdzv_endpoint:
            raise ValueError("several nodes need rdzv_endpoint HOST:PORT (the node_rank 0 machine)")
        run_id = rdzv_id or "sumnet-ddp-" + re.sub(r"[^A-Za-z0-9]+", "-", rdzv_endpoint)
        conf = f"join_timeout={join_timeout_s:g},is_host={'true' if node_rank == 0 else 'false'}"
        cmd += ["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint]
        cmd += ["--rdzv-id", run_id, "--rdzv-conf", conf]
    return cmd + ["-m", "bench.ddp.worker", *plan.worker_args(), "--out", str(out)]


_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):\s*\n(?P<block>.*?)(?:\n=+|\Z)", re.S)
_FIELD = re.compile(r"^\s*(?P<name>time|host|rank|exitcode|error_file|traceback)\s*:\s*(?P<value>.*)$", re.M)
_EXCEPTION_LINE = re.compile(
    r"^\s*(?:[\w.]+\.)?(?P<type>\w*(?:Error|Exception|Timeout|Interrupt))\s*(?::\s*(?P<msg>.*))?$"
)


def failure_reason(output: str) -> str:
    """One line from torchrun's output: the failed rank, its host, exit code and exception."""
    match = _ROOT_CAUSE.search(output)
    if match:
        block = match.group("block")
        fields = {m.group("name"): m.group("value").strip() for m in _FIELD.finditer(block)}
        rank = fields.get("rank", "?").replace("(local_rank: ", "(local rank ")
        exitcode = re.sub(r"\s*\(pid: \d+\)\s*", " ", fields.get("exitcode", "?")).strip()
        reason = f"rank {rank} on {fields.get('host', '?')} failed: exitcode {exitcode}"
        exception = _last_exception(block)
        return f"{reason}: {exception}" if exception else reason
    exception = _last_exception(output)
    if exception:
        return f"torchrun failed before the ranks reported: {exception}"
    tail = [line for line in output.strip().splitlines() if line.strip()]
    return f"torchrun failed: {tail[-1].strip()[:300]}" if tail else "torchrun failed with no output"


def _last_exception(text: str) -> str:
    for line in reversed(text.splitlines()):
        match = _EXCEPTION_LINE.match(line)
        if match:
            message = (match.group("msg") or "").strip()
            return f"{match.group('type')}: {message}"[:300] if message else match.group("type")
    return ""


def _children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (Linux /proc; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, sig)


def _is_worker(pid: int) -> bool:
    """Whether `pid` is still a DDP worker (not a process that took over a freed id)."""
    try:
        return b"bench.ddp.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM torchrun (it stops its workers), then SIGKILL it and its workers after the grace period.
    Each worker runs in a session of its own: found as torchrun's children first, killed by group."""
    workers = _children(proc.pid)
    _signal_group(proc.pid, signal.SIGTERM)  # the group this launcher created with start_new_session
    try:
        proc.wait(timeout=TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    for worker in filter(_is_worker, workers):
        _signal_group(worker, signal.SIGKILL)  # a worker stuck in a collective ignores nothing else


def run_ddp(
    world_size: int,
    device: str = "cpu",
    backend: str | None = None,
    scaling: str = "weak",
    steps: int = 3000,
    seed: int = 0,
    threads_per_rank: int = 1,
    timeout_s: float = 600.0,
    nnodes: int = 1,
    *,
    init_timeout_s: float = 60.0,
    block_steps: int = 100,
    out: Path | None = None,
    env: Mapping[str, str] | None = None,
    **rendezvous: Any,
) -> DDPResult | None:
    """Train under DDP with `world_size` ranks in all, split over `nnodes` nodes (this call starts
    this node's). timeout_s: wall seconds for the whole torchrun. out: rank 0's JSON (kept; default a
    temporary file), torchrun's log beside it as `.log`. env: extra variables for the ranks.
    rendezvous: torchrun_command's node_rank, rdzv_endpoint, rdzv_id, join_timeout_s. Raises
    ValueError for a configuration that cannot run; returns None only on a node of several that ran
    fine while global rank 0 (and so the result) was on another."""
    backend = check_setup(world_size, device, backend, scaling, nnodes)
    nproc = world_size // nnodes
    plan = DDPPlan(
        device, backend, scaling, steps, seed, threads_per_rank, block_steps, init_timeout_s=init_timeout_s
    )
    with tempfile.TemporaryDirectory(prefix="sumnet-ddp-") as scratch:
        path = Path(out) if out is not None else Path(scratch) / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a stale file must not pass for this run's result
        cmd = torchrun_command(plan, nproc, path, nnodes=nnodes, **rendezvous)
        child_env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": str(threads_per_rank)}
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), child_env.get("PYTHONPATH")]))
        log = path.with_suffix(".log") if out is not None else Path(scratch) / "torchrun.log"
        output, timed_out, wall_s, returncode = _run(cmd, child_env, timeout_s, log)
        failed = DDPResult(
            **{name: asdict(plan)[name] for name in _PLAN_FIELDS},
            world_size=world_size,
            status="failed",
            nnodes=nnodes,
            per_rank_batch=plan.per_rank_batch(world_size),
            wall_s=wall_s,
        )
        if timed_out:
            found = failure_reason(output) if "Root Cause" in output else ""
            failed.reason = (
                f"no result within timeout_s={timeout_s:g}: torchrun stopped (SIGTERM, SIGKILL after "
                f"{TERMINATE_GRACE_S:g} s)" + (f"; {found}" if found else "")
            )
            return failed
        if returncode != 0:
            failed.reason = failure_reason(output)
            if nnodes > 1 and "RendezvousTimeoutError" in output:
                failed.reason = (
                    f"rendezvous timed out: not all {nnodes} nodes joined {rendezvous.get('rdzv_endpoint')} "
                    f"within join_timeout_s={rendezvous.get('join_timeout_s', DEFAULT_JOIN_TIMEOUT_S):g} "
                    "(a node never started or cannot reach the endpoint)"
                )
            return failed
        if not path.exists():
            if nnodes > 1:
                return None  # global rank 0 ran on another node, which holds the result
            failed.reason = f"torchrun exited 0 but rank 0 wrote no result at {path}"
            return failed
        return DDPResult.from_document(json.loads(path.read_text()), wall_s=wall_s)


def _run(cmd: list[str], env: Mapping[str, str], timeout_s: float, log: Path) -> tuple[str, bool, float, int]:
    """(output, timed out, wall seconds, exit code) of `cmd` in its own process group; the output
    goes to `log`, not a pipe, which a worker that outlives torchrun could hold open."""
    start = time.perf_counter()
    launcher = os.getpid()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            cmd,
            cwd=_REPO,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout reaches torchrun's agent
            # killed with the launcher (kill -9, out of memory): torchrun then stops its ranks, and
            # each rank dies with torchrun (bench.ddp.worker asks for the same)
            preexec_fn=lambda: die_with_parent(signal.SIGTERM, launcher),
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc)
        except BaseException:  # Ctrl-C or SIGTERM in the launcher: no torchrun is left behind
            _stop(proc)
            raise
    return log.read_text(errors="replace"), timed_out, time.perf_counter() - start, proc.returncode
