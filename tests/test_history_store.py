"""The history store, the same tests on SQLite and on a real PostgreSQL server started for the session
(initdb / pg_ctl in a temporary directory; skipped with one line when PostgreSQL is not installed,
failed instead when CI=true): idempotent ingest of run folders, run.json and pytest-benchmark JSON,
raw samples kept, schema version checked, two processes writing at once, bad URLs."""

from __future__ import annotations

import contextlib
import copy
import glob
import json
import multiprocessing
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.optional import require, skip_or_fail

require("sqlalchemy", "the results history's database")

import sqlalchemy as sa  # noqa: E402

from bench.errors import UsageError  # noqa: E402
from bench.history.db import SCHEMA_VERSION, open_history, records_table, samples_table, schema_table  # noqa: E402
from bench.history.ingest import entry_of, ingest, machine_of  # noqa: E402
from tests.history_demo import CPU_BOX, config, synthetic_run  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "results/baselines/intel-r-xeon-r-processor/vm-20261127T062315Z"


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server on a Unix socket in a temporary directory, for the whole session.

    initdb refuses to run as root: as root the server runs as the `postgres` user (Debian's package
    creates it), else as `nobody`; the directory is made theirs."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        skip_or_fail("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="history-pg-"))  # not tmp_path: its parents are private to root
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
        shutil.chown(base, user)
        run_as = ["runuser", "-u", user, "--"]
    port = _free_port()
    data = base / "data"

    def run(*cmd: str) -> None:
        subprocess.run([*run_as, *cmd], check=True, capture_output=True, timeout=120)

    try:
        run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-k {base} -p {port} -c listen_addresses='' -c fsync=off -c max_connections=50"
        run(pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "-t", "60", "start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        shutil.rmtree(base, ignore_errors=True)
        detail = getattr(err, "stderr", b"") or b""
        skip_or_fail(f"could not start PostgreSQL: {detail.decode(errors='replace').strip()[:200] or err}")
    try:
        yield f"postgresql+psycopg://postgres@/{{db}}?host={base}&port={port}"
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request, tmp_path) -> str:
    """A new, empty history: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "history.db")
    template = request.getfixturevalue("postgres_server")
    name = f"history_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(template.format(db="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return template.format(db=name)


def _copy_run(tmp_path: Path, name: str, timestamp: str, scale: float = 1.0) -> Path:
    """The committed baseline's run.json as another run: a new timestamp, its samples scaled."""
    doc = json.loads((BASELINE / "run.json").read_text())
    doc = copy.deepcopy(doc)
    doc["env"]["timestamp_utc"] = timestamp
    for row in doc["rows"]:
        for metric in ("step_ms", "latency_ms"):
            if isinstance(row["samples"].get(metric), list):
                row["samples"][metric] = [v * scale for v in row["samples"][metric]]
            if isinstance(row["row"].get(metric), (int, float)):
                row["row"][metric] *= scale
    path = tmp_path / name / "run.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    return path


def _pytest_benchmark_json(tmp_path: Path) -> Path:
    data = [0.0010, 0.0011, 0.0009, 0.0010, 0.00105, 0.00098]
    doc = {
        "machine_info": {"node": "laptop", "cpu": {"brand_raw": "Laptop CPU", "count": 2}},
        "commit_info": {"id": "abc123", "dirty": False},
        "datetime": "2025-01-01T00:00:00+00:00",
        "version": "5.3.1",
        "benchmarks": [
            {
                "name": "test_train_step",
                "fullname": "tests/bench.py::test_train_step",
                "params": None,
                "extra_info": {
                    "workload": "train",
                    "device": "cpu",
                    "mode": "eager",
                    "batch_size": 32,
                    "threads": 2,
                    "output_activation": "relu",
                },
                "stats": {"median": 0.001, "min": 0.0009, "iqr": 0.0001, "data": data},
            }
        ],
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    return path


def _count(url: str, table: sa.Table) -> int:
    with open_history(url, create=False) as history, history.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar())


def test_ingest_is_idempotent_and_keeps_the_raw_samples(history_url, tmp_path):
    bench_json = _pytest_benchmark_json(tmp_path)
    with open_history(history_url) as history:
        first = ingest(history, [BASELINE, BASELINE / "run.json", bench_json])
        again = ingest(history, [BASELINE, bench_json])
        assert [i.added for i in first] == [True, False, True]  # the folder and its run.json: one run
        assert [i.added for i in again] == [False, False]
        assert history.count_runs() == 2
        run_id = first[0].run_id
        key = "train/cpu/eager/32/2/relu"
        raw = json.loads((BASELINE / "run.json").read_text())["rows"][0]["samples"]["step_ms"]
        assert history.samples_of(key, "step_ms", [run_id])[run_id] == pytest.approx(raw)
        points = {p.run_id: p for p in history.points([key])}
        assert points[run_id].median == pytest.approx(float(np.median(raw)))
        assert points[run_id].git_commit == "09f6630bc8c1" and points[first[2].run_id].git_commit == "abc123"
        assert len(points) == 2  # the same configuration on two machines (fingerprints differ)
        assert history.configs()[key].world_size == 1 and history.configs()[key].backend == ""
    assert _count(history_url, records_table) == 5 + 1


def test_fingerprint_depends_on_the_four_fields_only():
    env = {"cpu_model": "X", "gpu_name": "", "torch_version": "2.13.0+cpu", "cuda_version": "", "host": "a"}
    same = machine_of({**env, "host": "b", "threads": 8})
    assert machine_of(env) == same
    assert machine_of({**env, "torch_version": "2.12.0"}).fingerprint != same.fingerprint


def test_a_database_of_another_schema_version_is_refused_in_one_line(history_url):
    with open_history(history_url) as history, history.engine.begin() as conn:
        conn.execute(sa.update(schema_table).values(value=str(SCHEMA_VERSION + 1)))
    with pytest.raises(UsageError, match=f"schema version {SCHEMA_VERSION + 1}; this harness reads") as err:
        open_history(history_url, create=False)
    assert "\n" not in str(err.value)


def _writer(url: str, first: int, count: int, go: str) -> None:
    """A separate process: wait for the start signal, open (maybe create) the history, then add runs
    first .. first+count-1, one transaction each."""
    rng = np.random.default_rng(first)
    configs = {config("train/cpu/eager/32/2/relu"): 0.5, config("inference/cpu/eager/32/2/relu"): 0.03}
    entries = [synthetic_run(i, CPU_BOX, configs, rng) for i in range(first, first + count)]
    while not os.path.exists(go):
        pass
    with open_history(url) as history:
        for entry in entries:
            history.add_run(entry)


def test_two_processes_creating_and_ingesting_at_once_lose_nothing(history_url, tmp_path):
    go = str(tmp_path / "go")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(history_url, start, 30, go)) for start in (0, 15)]
    for w in workers:
        w.start()
    Path(go).touch()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    with open_history(history_url, create=False) as history:
        assert history.count_runs() == 45  # 0-29 and 15-44: the 15 shared runs once each
    assert _count(history_url, records_table) == 90
    assert _count(history_url, samples_table) == 90


def _open_together(path: str, barrier, results) -> None:
    barrier.wait()  # every process opens the new file at the same moment
    try:
        with open_history(path) as history:
            results.put(history.count_runs())
    except UsageError as err:
        results.put(str(err))


def test_processes_creating_one_new_sqlite_history_together_never_see_it_locked(tmp_path):
    """Switching a new file to WAL takes a lock SQLite does not wait for: four processes opening
    one new history together failed 'database is locked' in 5 of 40 trials before db._use_wal."""
    ctx = multiprocessing.get_context("fork")
    for trial in range(20):
        path, barrier, results = str(tmp_path / f"h{trial}.db"), ctx.Barrier(4), ctx.Queue()
        workers = [ctx.Process(target=_open_together, args=(path, barrier, results)) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        assert [results.get(timeout=5) for _ in workers] == [0, 0, 0, 0], f"trial {trial}"


def test_runs_are_read_back_by_time_with_their_commits(history_url, tmp_path):
    paths = [_copy_run(tmp_path, f"r{i}", f"2026-12-0{i + 1}T00:00:00Z", 1 + 0.1 * i) for i in range(3)]
    with open_history(history_url) as history:
        ingest(history, list(reversed(paths)))
        points = history.points(["train/cpu/eager/32/2/relu"])
        assert [p.time_utc.day for p in points] == [1, 2, 3]
        assert points[2].median / points[0].median == pytest.approx(1.2)
        fp = points[0].fingerprint
        recent = history.recent_runs(fp, "train/cpu/eager/32/2/relu", 2, exclude_run=points[2].run_id)
        assert [r[0] for r in recent] == [points[1].run_id, points[0].run_id]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://:::x", "malformed database URL"),
        ("mysql://user@host/db", "unsupported database 'mysql'"),
        ("postgresql+psycopg2://user@host/db", "through psycopg 3"),
        ("sqlite://", "in-memory SQLite"),
        ("postgresql+psycopg://nobody@127.0.0.1:1/bench", "cannot open the history database"),
    ],
)
def test_bad_database_urls_are_one_line_usage_errors(url, message):
    with pytest.raises(UsageError, match=message) as err:
        open_history(url)
    assert "\n" not in str(err.value)


def test_a_file_that_is_not_a_database_and_a_missing_one(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite")
    with pytest.raises(UsageError, match="file is not a database"):
        open_history(junk)
    with pytest.raises(UsageError, match="no history database here yet"):
        open_history(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_a_run_that_cannot_be_read_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        entry_of(tmp_path / "nope")


def _no_machine(tmp_path: Path) -> Path:
    path = _pytest_benchmark_json(tmp_path)
    doc = json.loads(path.read_text())
    del doc["machine_info"]
    path.write_text(json.dumps(doc))
    return path


def _no_name(tmp_path: Path) -> Path:
    path = _pytest_benchmark_json(tmp_path)
    doc = json.loads(path.read_text())
    doc["benchmarks"][0].update(name=None, fullname=None, extra_info={})
    path.write_text(json.dumps(doc))
    return path


def _text_threads(tmp_path: Path) -> Path:
    lines = (BASELINE / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("threads")] = "many"
    path = tmp_path / "run" / "results.csv"
    path.parent.mkdir()
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    return path


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_no_machine, "a pytest-benchmark file without machine_info"),
        (_no_name, "a benchmark without a name"),
        (_text_threads, "line 2: threads is 'many', not a number"),
    ],
)
def test_ingest_refuses_a_run_it_could_not_key_in_one_line(tmp_path, capsys, build, message):
    """Issue 20: these were stored as `?/////relu` on a blank machine, or with threads blank."""
    from bench.__main__ import main as bench_main

    path = build(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        bench_main(["history", "ingest", str(path), "--db", str(tmp_path / "h.db")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and message in err


@contextlib.contextmanager
def _read_only(path: Path):
    """`path` (a file or a folder) read-only to this process: chmod, or for root (whom modes do not
    stop) the immutable attribute, as `chattr +i` sets it."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode
    ):
        pytest.skip("running as root without `chattr +i`: nothing can be made read-only to this process")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _bench(argv: list[str]) -> int:
    from bench.__main__ import main

    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize("read_only", ["file", "folder"])
def test_ingest_into_a_history_the_user_cannot_write_is_one_line_and_exit_2(tmp_path, capsys, read_only):
    folder = tmp_path / "histories"
    folder.mkdir()
    db = folder / "history.db"
    assert _bench(["history", "ingest", str(BASELINE), "--db", str(db)]) == 0
    capsys.readouterr()
    for wal in folder.glob("history.db-*"):
        wal.unlink()  # as a history copied from elsewhere: only the database file
    with _read_only(db if read_only == "file" else folder):
        assert (
            _bench(["history", "ingest", str(REPO / "results/reference/cpu-2core-default"), "--db", str(db)])
            == 2
        )
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and err.startswith("python -m bench history ingest: error: cannot "), (
        err
    )
    assert "sqlite:///" in err and "Traceback" not in err


def test_bench_run_into_a_history_the_user_cannot_write_keeps_the_run_notes_it_and_exits_0(tmp_path, capsys):
    db = tmp_path / "history.db"
    with open_history(db) as history:
        assert history.count_runs() == 0
    for wal in tmp_path.glob("history.db-*"):
        wal.unlink()
    argv = ["run", "--device", "cpu", "--mode", "eager", "--threads", "1", "--steps", "20", "--repeats", "1"]
    argv += [
        "--no-inference",
        "--no-figures",
        "--no-progress",
        "--out",
        str(tmp_path / "out"),
        "--db",
        str(db),
    ]
    with _read_only(db):
        assert _bench(argv) == 0
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if line.startswith("note: the history was not updated")]
    assert len(notes) == 1 and "cannot write to the history" in notes[0] and "Traceback" not in err, err
    assert (tmp_path / "out/latest/report.md").exists() and "results in" in out


def test_two_runs_of_one_commit_started_in_the_same_second_get_two_ids():
    """bench ab starts both arms of a round together: their run_uuid keeps both in the history,
    and a run without one (made before it existed) keeps the id it always had."""
    from bench.history.ingest import run_id_of

    env = {"timestamp_utc": "2026-12-02T10:50:20Z", "host": "vm", "git_commit": "f3200a7"}
    assert run_id_of(env, "a", "1" * 32) != run_id_of(env, "b", "2" * 32)
    assert run_id_of(env, "a") == run_id_of(env, "b") == run_id_of(env, "c", None)
