"""`python -m bench ab BASE [HEAD]`: two commits measured in alternating processes, judged on paired rounds.

BASE (a git ref) is checked out into a temporary git worktree (removed at the end, also on error or
Ctrl-C); HEAD is another ref, checked out the same way, or by default the working tree as it is,
uncommitted changes included. Then rounds of one `python -m bench run` process per arm, in the
balanced order AB BA AB BA ..., each started in its own tree so that it imports that tree's code. One
Python environment (this interpreter and its packages) serves both trees, so the two commits'
pyproject.toml dependency lists must agree (else exit 2). The verdict per configuration comes from
the per-round ratios HEAD / BASE (bench.analysis.paired): a burst of load that hits a round hits
both of its arms.

Exit codes: 0 pass, 1 regression, 2 bad input, 3 inconclusive (rerun with more --rounds), 130
interrupted (the rounds measured so far are judged and kept).

    python -m bench ab HEAD~1 --device cpu --mode eager,compile-fullstep --threads 1
    nox -s ab -- main --rounds 8 --metric instructions

Writes results/ab-<UTC time>/ with round-NN-A/ and round-NN-B/ (each a `bench run --out`, raw
samples included), ab.json (the pairs and verdicts) and report.md, which is also printed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.analysis.paired import INCONCLUSIVE, REGRESSION, Outcome, RoundValues, gated_metric, judge
from bench.analysis.significance import INSTRUCTIONS, RegressionCheck, default_check
from bench.commands import run as run_command
from bench.commands.session import signals_ignored
from bench.errors import EXIT_INTERRUPTED, UsageError, first_line
from bench.history import record_run
from bench.measure.lockstep import Conductor
from bench.render.ab_report import heading, render_ab_markdown
from bench.store.load import load_run
from sumnet.cli_args import OneLineArgumentParser, positive_int

try:
    import tomllib
except ImportError:  # Python 3.10: tomli where present, else the whole files are compared
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

EXIT_REGRESSION, EXIT_INCONCLUSIVE = 1, 3
DEFAULT_ROUNDS = {"time": 6, "instructions": 3}  # a valgrind round costs minutes; counts hardly move
STOP_GRACE_S = 30  # a child asked to stop (SIGINT) gets this long to write its partial run

# bench run's flags that `ab` passes through unchanged (dest -> flag), and ab's defaults for some:
# a short block per process, so that many rounds fit in a CI job.
PASSED_THROUGH = {
    "device": "--device",
    "mode": "--mode",
    "threads": "--threads",
    "preset": "--preset",
    "steps": "--steps",
    "repeats": "--repeats",
    "batch_size": "--batch-size",
    "batch_sizes": "--batch-sizes",
    "seed": "--seed",
    "output_activation": "--output-activation",
    "metric": "--metric",
}
RUN_DEFAULTS = {"preset": "quick"}
ALWAYS = ["--no-figures", "--no-progress", "--no-history"]  # ab records the history itself (--db)
# A tree whose bench has this module takes turns at every timed block (bench.measure.lockstep); an
# older BASE without it runs its processes one after the other.
LOCKSTEP_MODULE = Path("bench") / "measure" / "lockstep.py"


@dataclass(frozen=True)
class Arm:
    label: str  # A (BASE) or B (HEAD)
    name: str  # BASE or HEAD
    ref: str  # as the user gave it; "" for the working tree
    commit: str
    tree: Path  # where its processes start
    dirty: bool = False  # the working tree, with uncommitted changes

    def describe(self) -> str:
        what = (
            f"`{self.ref}` at {self.commit[:12]}" if self.ref else f"the working tree at {self.commit[:12]}"
        )
        return what + (", with uncommitted changes" if self.dirty else "")


# --- git --------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    """Run git in `repo`; UsageError with git's first line when it fails."""
    try:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    except FileNotFoundError:
        raise UsageError("git is not installed: bench ab checks commits out with git worktree") from None
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {first_line(done.stderr, f'exit {done.returncode}')}")
    return done.stdout.strip()


def _repo_root(cwd: Path) -> Path:
    try:
        return Path(_git(cwd, "rev-parse", "--show-toplevel"))
    except UsageError:
        raise UsageError(
            f"{cwd} is not inside a git repository: bench ab compares two commits of one"
        ) from None


def _commit(repo: Path, ref: str) -> str:
    """The commit a ref names; UsageError for an unknown ref or one that names no commit."""
    if not ref.strip() or ref.startswith("-"):
        raise UsageError(f"{ref!r} is not a git ref")
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    except UsageError:
        raise UsageError(f"unknown git ref {ref!r}: no commit of that name in {repo}") from None


def _dependencies(text: str | None, where: str) -> object:
    """pyproject.toml's dependency lists (required and optional), normalised; None without the file
    (the whole text where no TOML parser is at hand)."""
    if text is None or tomllib is None:
        return text
    try:
        project = tomllib.loads(text).get("project", {})
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{where}: pyproject.toml does not parse: {err}") from None

    def norm(items: list[str]) -> list[str]:
        return sorted("".join(str(i).split()).lower() for i in items)

    extras = project.get("optional-dependencies", {})
    return norm(project.get("dependencies", [])), {k: norm(v) for k, v in sorted(extras.items())}


def _pyproject(repo: Path, commit: str) -> str | None:
    done = subprocess.run(
        ["git", "show", f"{commit}:pyproject.toml"], cwd=repo, capture_output=True, text=True
    )
    return done.stdout if done.returncode == 0 else None


def refuse_different_dependencies(base: str | None, head: str | None, base_name: str, head_name: str) -> None:
    """UsageError when the two pyproject.toml texts declare different dependencies: one environment
    serves both arms, so one of them would run with packages it does not declare."""
    if _dependencies(base, base_name) != _dependencies(head, head_name):
        raise UsageError(
            f"{base_name} and {head_name} declare different dependencies in pyproject.toml: one Python "
            "environment serves both arms, so compare them with bench gate on two stored runs instead"
        )


@contextmanager
def checked_out(repo: Path, commits: list[str]) -> Iterator[list[Path]]:
    """Temporary detached worktrees of `commits`, removed on the way out whatever happened."""
    tmp = Path(tempfile.mkdtemp(prefix="sumnet-ab-"))
    made: list[Path] = []
    try:
        for index, commit in enumerate(commits):
            path = tmp / f"tree-{index}"
            _git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
            made.append(path)
        yield made
    finally:
        with signals_ignored():
            for path in made:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(path)], cwd=repo, capture_output=True
                )
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)


# --- the rounds -------------------------------------------------------------------------------


def balanced_order(rounds: int) -> list[tuple[int, str]]:
    """(round, arm) in the order AB BA AB BA ...: each arm goes first in half the rounds, so a drift
    of the machine over the job favours neither."""
    return [(r, arm) for r in range(1, rounds + 1) for arm in (("A", "B") if r % 2 else ("B", "A"))]


def _stop(proc: subprocess.Popen) -> None:
    """Ask a child to stop as Ctrl-C does (it keeps its partial run), then kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class _Process:
    arm: Arm
    round_: int
    folder: Path
    proc: subprocess.Popen
    before: float  # 1-minute load average at its start
    started: float


def _launch(
    arm: Arm, round_: int, folder: Path, run_argv: list[str], env: dict[str, str], fds=()
) -> _Process:
    """Start one `bench run` process of `arm` writing into `folder`."""
    folder.mkdir(parents=True)
    cmd = [sys.executable, "-m", "bench", "run", *run_argv, "--out", str(folder)]
    before, started = os.getloadavg()[0], time.perf_counter()
    with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, cwd=arm.tree, env=env, stdout=out, stderr=err, pass_fds=fds)
    return _Process(arm, round_, folder, proc, before, started)


def _measure(processes: list[_Process], conductor: Conductor | None = None) -> dict[str, dict]:
    """Wait for the round's processes (conducted in lockstep when `conductor` is given); label ->
    its run folder, seconds and load average. Ctrl-C stops them all."""
    if conductor is not None:
        conductor.started()
        conductor.start()
    try:
        codes = [p.proc.wait() for p in processes]
    except KeyboardInterrupt:
        for p in processes:
            _stop(p.proc)
        raise
    if conductor is not None:
        conductor.join(STOP_GRACE_S)
    if EXIT_INTERRUPTED in codes:
        raise KeyboardInterrupt
    return {p.arm.label: _finished(p, code) for p, code in zip(processes, codes)}


def _finished(p: _Process, code: int) -> dict:
    arm, round_, folder, started, before = p.arm, p.round_, p.folder, p.started, p.before
    runs = sorted(found.parent for found in folder.glob("*/run.json"))
    if code != 0 or not runs:
        lines = (folder / "stderr.txt").read_text(errors="replace").strip().splitlines()
        raise UsageError(
            f"{arm.name} ({arm.describe()}): `bench run` exited {code} in round {round_}: "
            f"{lines[-1] if lines else 'no message'} (log: {folder}/stderr.txt)"
        )
    took, after = time.perf_counter() - started, os.getloadavg()[0]
    print(f"round {round_} {arm.label} ({arm.name}): {took:.0f} s, load average {before:.1f} -> {after:.1f}",
          file=sys.stderr, flush=True)  # fmt: skip
    return {
        "run": str(runs[-1].resolve()),
        "seconds": round(took, 2),
        "load_before": before,
        "load_after": after,
    }


def round_values(run_dir: str, instructions: bool, q: float) -> RoundValues:
    """One arm's run of one round -> key -> (status, reason, the q-quantile of the gated metric's
    samples, the samples in the order they were timed)."""
    out = {}
    for record in load_run(run_dir).records:
        samples = tuple(
            v
            for v in record.raw(gated_metric(record.key.workload, instructions))
            if math.isfinite(v) and v > 0
        )
        value = float(np.quantile(samples, q)) if samples else None
        out[record.key] = (record.status, record.reason, value, samples)
    return out


# --- the command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "One Python environment (this interpreter and its packages) serves both trees: two commits whose "
        "pyproject.toml declare different dependencies are refused. Exit codes: 0 pass, 1 regression, "
        "2 bad input, 3 inconclusive, 130 interrupted. Writes OUT/ab-<UTC time>/ (report.md, ab.json, "
        "round-NN-A/, round-NN-B/)."
    )
    parser.add_argument(
        "base", metavar="BASE", help="git ref of the baseline (checked out in a temporary worktree)"
    )
    parser.add_argument(
        "head",
        metavar="HEAD",
        nargs="?",
        default=None,
        help="git ref under test (default: the working tree as it is)",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=None,
        help="rounds of one process per arm (default 6; 3 with --metric instructions)",
    )
    parser.add_argument(
        "--max-slowdown",
        default=None,
        metavar="PCT",
        help="largest tolerated paired slowdown, e.g. 10%% or p10:10%% (default 10%%; 1%% with --metric instructions)",
    )
    parser.add_argument(
        "--out", default="results", help="parent folder of the ab-<time> folder (default results)"
    )
    parser.add_argument(
        "--db", default=None, metavar="URL", help="record both arms' runs in this results history"
    )
    parser.add_argument(
        "--head-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for HEAD's processes only (validation, e.g. SUMNET_BENCH_SLOWDOWN=0.10)",
    )
    for dest, flag in PASSED_THROUGH.items():
        parser.add_argument(
            flag,
            dest=dest,
            default=RUN_DEFAULTS.get(dest),
            help=f"as bench run's {flag}"
            + (f" (default {RUN_DEFAULTS[dest]})" if dest in RUN_DEFAULTS else ""),
        )
    parser.add_argument("--no-inference", action="store_true", help="as bench run's --no-inference")


def run_arguments(args: argparse.Namespace) -> list[str]:
    """The flags every `bench run` process gets, validated here by bench run's own parser and checks."""
    argv = [x for dest, flag in PASSED_THROUGH.items() if getattr(args, dest) is not None
            for x in (flag, str(getattr(args, dest)))]  # fmt: skip
    argv += ["--no-inference"] * args.no_inference + ALWAYS
    parser = OneLineArgumentParser(prog="python -m bench ab (flags for bench run)")
    run_command.add_arguments(parser)
    run_command.options_from_args(parser.parse_args(argv))  # exits 2 / UsageError on a flag run refuses
    return argv


def _check(args: argparse.Namespace, instructions: bool) -> RegressionCheck:
    if args.max_slowdown is None:  # 10% for times, 1% for counts, which load does not change
        return default_check(INSTRUCTIONS if instructions else "step_ms")
    try:
        return RegressionCheck.parse(args.max_slowdown)
    except ValueError as err:
        raise UsageError(f"--max-slowdown: {err}") from None


def _head_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--head-env expects NAME=VALUE, got {pair!r}")
        out[name.strip()] = value
    return out


def main(args: argparse.Namespace) -> int:
    instructions = "instructions" in str(args.metric or "")
    check, head_env = _check(args, instructions), _head_env(args.head_env)
    args.rounds = args.rounds or DEFAULT_ROUNDS["instructions" if instructions else "time"]
    repo = _repo_root(Path.cwd())
    base_commit = _commit(repo, args.base)
    head_commit = _commit(repo, args.head) if args.head is not None else _commit(repo, "HEAD")
    head_text = _pyproject(repo, head_commit) if args.head is not None else None
    if args.head is None and (repo / "pyproject.toml").exists():
        head_text = (repo / "pyproject.toml").read_text()
    refuse_different_dependencies(
        _pyproject(repo, base_commit), head_text, f"BASE {args.base}", f"HEAD {args.head or '(working tree)'}"
    )
    run_argv = run_arguments(args)
    dirty = args.head is None and bool(_git(repo, "status", "--porcelain"))
    with checked_out(repo, [base_commit] + ([head_commit] if args.head is not None else [])) as trees:
        arms = {
            "A": Arm("A", "BASE", args.base, base_commit, trees[0]),
            "B": Arm(
                "B", "HEAD", args.head or "", head_commit, trees[1] if args.head is not None else repo, dirty
            ),
        }
        folder = Path(args.out).resolve() / f"ab-{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%SZ}"
        try:
            folder.mkdir(parents=True, exist_ok=False)
        except OSError as err:
            raise UsageError(f"cannot make {folder}: {err.strerror or err}") from None
        return _run_rounds(args, arms, run_argv, folder, check, instructions, head_env)


def _run_rounds(
    args: argparse.Namespace,
    arms: dict[str, Arm],
    run_argv: list[str],
    folder: Path,
    check: RegressionCheck,
    instructions: bool,
    head_env: dict[str, str],
) -> int:
    order = balanced_order(args.rounds)
    lockstep = not instructions and all((arm.tree / LOCKSTEP_MODULE).exists() for arm in arms.values())
    record = {
        "base": arms["A"].describe(),
        "head": arms["B"].describe(),
        "python": f"{sys.executable}, Python {sys.version.split()[0]}",
        "run_argv": run_argv,
        "head_env": head_env,
        "rounds_planned": args.rounds,
        "order": ["".join(a for r2, a in order if r2 == r) for r in range(1, args.rounds + 1)],
        "check": {
            "max_slowdown": check.max_slowdown,
            "statistic": check.statistic,
            "instructions": instructions,
        },
        "lockstep": lockstep,
        "schedule": (
            "both arms of a round run together and take turns at every timed block (lockstep: block k of "
            "HEAD is judged against block k of BASE, timed moments apart)"
            if lockstep
            else "both arms of a round run at once (a count does not depend on the load)"
            if instructions
            else "the arms of a round run one after the other"
        ),
        "rounds": [],
        "complete_rounds": [],
        "interrupted": False,
    }
    values: list[dict] = []
    envs = {label: {**os.environ, **(head_env if label == "B" else {})} for label in ("A", "B")}
    try:
        for round_ in range(1, args.rounds + 1):
            labels = [label for r, label in order if r == round_]
            record["rounds"].append({"round": round_})  # how it was scheduled: record["lockstep"]
            sub = {label: folder / f"round-{round_:02d}-{label}" for label in labels}
            if lockstep:  # both at once, taking turns at every timed block
                conductor = Conductor(2)
                processes = [_launch(arms[label], round_, sub[label], run_argv, {**envs[label], **conductor.env(i)},
                                     conductor.child_fds(i)) for i, label in enumerate(labels)]  # fmt: skip
                record["rounds"][-1].update(_measure(processes, conductor))
                for label, turns in zip(labels, conductor.turns):
                    record["rounds"][-1][label]["turns"] = turns  # blocks it timed in lockstep
            elif instructions:  # both at once: a count does not depend on the load
                processes = [
                    _launch(arms[label], round_, sub[label], run_argv, envs[label]) for label in labels
                ]
                record["rounds"][-1].update(_measure(processes))
            else:  # one after the other
                for label in labels:
                    process = _launch(arms[label], round_, sub[label], run_argv, envs[label])
                    record["rounds"][-1].update(_measure([process]))
            done = record["rounds"][-1]
            values.append({**{a: round_values(done[a]["run"], instructions, check.q) for a in ("A", "B")},
                           "lockstep": lockstep})  # fmt: skip
            record["complete_rounds"].append(round_)
    except KeyboardInterrupt:
        record["interrupted"] = True
    with signals_ignored():
        outcome = judge(values, instructions, check)
        _say_when_busy(outcome, record)
        if not outcome.lines and not record["interrupted"]:
            raise UsageError(
                f"no configuration was measured in both arms ({'; '.join(outcome.not_compared) or 'no rows'})"
            )
        markdown = render_ab_markdown(outcome, record, check, instructions)
        record["configs"] = [line.as_json() for line in outcome.lines]
        record["not_compared"] = outcome.not_compared
        code = _exit_code(outcome, record["interrupted"])
        record["verdict"], record["exit_code"] = (
            heading(outcome, record["interrupted"], len(values), args.rounds),
            code,
        )
        (folder / "ab.json").write_text(json.dumps(record, indent=1, default=str))
        (folder / "report.md").write_text(markdown)
        print(markdown)
        print(f"\nA/B results in {folder}/ (report.md, ab.json, round-NN-A/ and round-NN-B/)")
        if args.db is not None:
            _record_history([r[a]["run"] for r in record["rounds"] for a in ("A", "B") if a in r], args.db)
    return code


def _say_when_busy(outcome: Outcome, record: dict) -> None:
    """An inconclusive verdict on a machine that other work kept busy says so: the likely cause."""
    loads = [arm["load_after"] for r in record["rounds"] for arm in r.values() if isinstance(arm, dict)]
    cpus = os.cpu_count() or 1
    if loads and max(loads) > cpus:
        busy = f"; the machine was busy (1-minute load average up to {max(loads):.1f} on {cpus} CPUs)"
        for line in outcome.lines:
            if line.verdict == INCONCLUSIVE:
                line.why += busy


def _exit_code(outcome: Outcome, interrupted: bool) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    if outcome.count(REGRESSION):
        return EXIT_REGRESSION
    return EXIT_INCONCLUSIVE if outcome.count(INCONCLUSIVE) else 0


def _record_history(run_dirs: list[str], db: str) -> None:
    """Both arms' runs into the history; one that cannot be written is a note, never a lost A/B."""
    added = 0
    for run_dir in run_dirs:
        try:
            added += bool(record_run(run_dir, db).added)
        except UsageError as err:
            print(f"note: the history was not updated: {err}", file=sys.stderr)
            return
    print(f"history: {added} of {len(run_dirs)} runs added to {db}")
