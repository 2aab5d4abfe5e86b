"""Instructions per training step and per inference call, counted by Valgrind's callgrind: a
deterministic count of CPU work, for gating where wall time cannot be trusted (a shared CI runner).

    python -m bench run --preset quick --device cpu --metric instructions

Each configuration runs in one child process under `valgrind --tool=callgrind --instr-atstart=no`:
torch is imported, every model built and warmed up (compiled) with instrumentation off, and the
parent switches it on (`callgrind_control -i on PID`) only around each measured region, then off,
and dumps the count. callgrind_control ships with valgrind, so valgrind is the one thing a machine
needs; client requests would need a compiled helper (pytest-codspeed's is a private module of a
pytest plugin). The child waits on a pipe while the parent toggles, so each count also holds one
pipe read and write: a constant, the same in every region.

What it sees: CPU-side work (Python, the dispatcher, CPU kernels), not memory stalls, caches or the
clock frequency. Threads run one at a time under valgrind, so a count at more than one thread also
holds the workers' spin-waits and varies; the default is one thread.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.errors import describe
from bench.measure.extra_work import with_extra_work
from bench.modes import build_trainer
from bench.records import ConfigKey, Record
from sumnet.data import make_batch, make_generator
from sumnet.model import NetConfig
from sumnet.train import TrainConfig

VALGRIND, CALLGRIND_CONTROL = "valgrind", "callgrind_control"
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
ROOT = Path(__file__).resolve().parents[2]
_RUNNING: set[subprocess.Popen] = set()  # children counting now, for stop_children()


@dataclass(frozen=True)
class InstructionPlan:
    """What one configuration's child process measures."""

    mode: str
    batch_size: int  # training batch
    threads: int
    seed: int = 0
    output_activation: str = "relu"
    repeats: int = 2  # training regions, each with a fresh model
    warmup_steps: int = 10  # steps before each region, instrumentation off (compilation, caches)
    steps: int = 20  # steps per region
    inference_batch_sizes: tuple[int, ...] = ()
    calls: int = 10  # inference calls per region (fewer for the largest batches: see calls_for)


ROWS_PER_REGION = 4096  # inference rows one region counts at most (but one call at least)


def calls_for(plan: InstructionPlan, batch_size: int) -> int:
    """Inference calls in one region: plan.calls, fewer for batches whose calls would pass
    ROWS_PER_REGION rows. A count is exact, so one call of a large batch tells as much as ten, and an
    instrumented call is slow: numpy-reference's 1,024-row call counts 57 million instructions."""
    return max(1, min(plan.calls, ROWS_PER_REGION // batch_size))


def valgrind_missing() -> str | None:
    """Why instructions cannot be counted here (valgrind or callgrind_control absent), else None."""
    for tool in (VALGRIND, CALLGRIND_CONTROL):
        if shutil.which(tool) is None:
            return (
                f"{tool} not found: install valgrind (Debian: apt-get install valgrind) to count instructions"
            )
    return None


def instructions_skip_reason(device: str, mode: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """Why --metric instructions does not count (device, mode), else None."""
    if device != "cpu":
        return "instructions are counted on the CPU only: callgrind sees no GPU work"
    if mode.startswith("compile") and _has_avx512(cpuinfo):
        return "torch.compile builds AVX-512 code for this CPU, which valgrind cannot run"
    return valgrind_missing()


def _has_avx512(cpuinfo: Path) -> bool:
    try:
        return " avx512f" in cpuinfo.read_text()
    except OSError:
        return False


@dataclass
class InstructionCounts:
    plan: InstructionPlan
    per_step: list[float]  # one per training region
    per_call: dict[int, list[float]]  # inference batch size -> one per region
    notes: list[str]

    def records(self, key: Callable[..., ConfigKey]) -> list[Record]:
        """The training record and one per inference batch size; `key(workload, batch_size=...)`."""
        p = self.plan
        train = Record(
            key("train", batch_size=p.batch_size),
            notes=self.notes,
            seed=p.seed,
            steps=p.steps,
            repeats=p.repeats,
            samples={"instructions_per_step": self.per_step},
        )
        return [train] + [
            Record(
                key("inference", batch_size=b),
                seed=p.seed,
                steps=calls_for(p, b),
                repeats=p.repeats,
                samples={"instructions_per_call": counts},
            )
            for b, counts in self.per_call.items()
        ]


def count_instructions(
    plan: InstructionPlan, timeout_s: float = 600, env: Mapping[str, str] | None = None
) -> InstructionCounts:
    """Run `plan` in a child under callgrind (environment: this one's, updated with `env`);
    RuntimeError with the child's reason if it fails."""
    with tempfile.TemporaryDirectory(prefix="sumnet-callgrind-") as tmp:
        out = Path(tmp)
        command = [
            VALGRIND,
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}/cg.%p",
            sys.executable,
            "-m",
            "bench.measure.instructions",
            json.dumps(asdict(plan)),
        ]
        with (out / "valgrind.log").open("w") as log:
            child = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=ROOT,
                # numpy's BLAS sizes its own thread pool: at plan.threads, as torch's, or its workers'
                # spin-waits are counted (numpy-reference's 1,024-row call: 24 then 91 million)
                env={**os.environ, **(env or {}), **dict.fromkeys(BLAS_THREADS, str(plan.threads))},
            )
            _RUNNING.add(child)
            try:
                labels, result = _drive(child)
                child.wait(timeout=timeout_s)
            except BaseException:  # an interrupt or a hung child: it must not outlive the run
                child.kill()
                child.wait()
                raise
            finally:
                _RUNNING.discard(child)
        if result.get("error") or child.returncode != 0:
            raise RuntimeError(str(result.get("error") or _why_failed((out / "valgrind.log").read_text())))
        counts = dict(zip(labels, _dumped_totals(out, child.pid)))
    if len(counts) != len(labels):
        raise RuntimeError(f"callgrind wrote {len(counts)} counts for {len(labels)} regions")
    per_step = [counts[f"train {r}"] / plan.steps for r in range(plan.repeats)]
    per_call = {
        b: [counts[f"inference {b} {r}"] / calls_for(plan, b) for r in range(plan.repeats)]
        for b in plan.inference_batch_sizes
    }
    return InstructionCounts(plan, per_step, per_call, list(result.get("notes", [])))


def stop_children() -> None:
    """Kill the counting children (an interrupt reaches the main thread, not the counting ones)."""
    for child in list(_RUNNING):
        child.kill()


def _control(pid: int, *args: str) -> None:
    subprocess.run([CALLGRIND_CONTROL, *args, str(pid)], check=True, capture_output=True, timeout=120)


def _drive(child: subprocess.Popen) -> tuple[list[str], dict]:
    """Answer the child's `ready`/`done` lines: instrumentation on before a region, off and dumped
    after it. Returns the regions' labels in order and the child's last message."""
    assert child.stdin is not None and child.stdout is not None
    labels: list[str] = []
    for line in child.stdout:
        message = json.loads(line)
        if "ready" in message:
            _control(child.pid, "-i", "on")
        elif "done" in message:
            _control(child.pid, "-i", "off")
            _control(child.pid, "--dump")
            labels.append(message["done"])
        else:
            return labels, message
        child.stdin.write("\n")
        child.stdin.flush()
    return labels, {}


def _why_failed(log: str) -> str:
    """One line from valgrind's log on why the child died."""
    if "unhandled instruction bytes" in log:
        return "valgrind cannot run this mode's code: an instruction it does not know (AVX-512 code?)"
    lines = [line for line in log.splitlines() if line.strip("=0123456789 ")]
    return lines[-1].split("== ", 1)[-1] if lines else "the valgrind child exited without a count"


def _dumped_totals(out: Path, pid: int) -> list[int]:
    """The instruction total of each dump, in dump order (cg.PID.1, cg.PID.2, ...)."""
    dumps = sorted(out.glob(f"cg.{pid}.*"), key=lambda p: int(p.suffix[1:]))
    totals = []
    for path in dumps:
        line = next(t for t in path.read_text().splitlines() if t.startswith("totals:"))
        totals.append(int(line.split()[1]))
    return totals


def _child(plan: InstructionPlan) -> None:
    """The measured side: build, warm up, then a `ready`/`done` pair around each region."""

    def region(label: str, fn, times: int) -> None:
        print(json.dumps({"ready": label}), flush=True)
        sys.stdin.readline()
        for _ in range(times):
            fn()
        print(json.dumps({"done": label}), flush=True)
        sys.stdin.readline()

    torch.set_num_threads(plan.threads)
    net_config = NetConfig(output_activation=plan.output_activation)
    config = TrainConfig(batch_size=plan.batch_size, seed=plan.seed)
    notes: list[str] = []
    for r in range(plan.repeats):
        trainer = with_extra_work(build_trainer(plan.mode, "cpu", net_config, config), plan.batch_size)
        for _ in range(plan.warmup_steps):
            trainer.step()
        region(f"train {r}", trainer.step, plan.steps)
        notes = trainer.notes
    for b in plan.inference_batch_sizes:
        run = trainer.inference(make_batch(b, make_generator(99))[0])
        for r in range(plan.repeats):
            run()  # warm-up: the first call on a shape compiles
            region(f"inference {b} {r}", run, calls_for(plan, b))
    print(json.dumps({"notes": notes}), flush=True)


def _main(argv: list[str]) -> int:
    doc = json.loads(argv[0])
    plan = InstructionPlan(**{**doc, "inference_batch_sizes": tuple(doc["inference_batch_sizes"])})
    try:
        _child(plan)
    except Exception as err:  # the parent records it as the configuration's failed row
        print(json.dumps({"error": describe(err)}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
