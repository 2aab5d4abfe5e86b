"""The results history: every run of every machine in one database, SQLite (one machine, a CI cache)
or PostgreSQL (a team's machines), one SQLAlchemy Core schema for both, and what it stores: machines,
runs and their records keyed by the harness's ConfigKey. Writes are idempotent and safe when several
processes write at once (SQLite: WAL on a local disk, BEGIN IMMEDIATE; both retry a lost lock race).

    python -c "from bench.history.db import open_history; print(open_history().count_runs())"
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as _pg
from sqlalchemy.dialects import sqlite as _sqlite

from bench.errors import UsageError, first_line
from bench.history import DB_ENV, DEFAULT_DB  # their one home: importable without sqlalchemy
from bench.records import ConfigKey, json_safe

SCHEMA_VERSION = 1  # bump on any change to the tables below; an older or newer database is refused
BUSY_TIMEOUT_S = 60.0  # SQLite: how long a writer waits for another writer's lock
CONNECT_TIMEOUT_S = 5  # PostgreSQL: an unreachable server fails after this, not after minutes
WRITE_ATTEMPTS = 5  # a transaction that lost a lock race (SQLite busy, PostgreSQL deadlock) is retried
_RETRY_SQLSTATES = ("40001", "40P01")  # serialization failure, deadlock detected
_SCHEMA_LOCK = 0x5375_6D4E  # PostgreSQL advisory lock held while creating the tables ("SumN")
_WRITE = "history_write"  # execution option: this connection writes (SQLite: BEGIN IMMEDIATE)


@dataclass(frozen=True)
class Machine:
    """A machine type: timings compare only within one fingerprint (bench.records.MUST_MATCH)."""

    fingerprint: str
    cpu_model: str
    gpu_name: str
    torch_version: str
    cuda_version: str

    @property
    def label(self) -> str:
        """`Intel Xeon · NVIDIA H200 · torch 2.11.0+cu130 · CUDA 13.0`, for tables and charts."""
        gpu = self.gpu_name or "no GPU"
        cuda = f"CUDA {self.cuda_version}" if self.cuda_version else "no CUDA"
        return f"{self.cpu_model or '?'} · {gpu} · torch {self.torch_version or '?'} · {cuda}"


@dataclass
class RecordEntry:
    """One configuration's outcome in one run, as stored: records_table's columns (see there)."""

    config: ConfigKey
    status: str
    reason: str = ""
    flags: str = ""
    metric: str | None = None
    median: float | None = None
    median_rel_se: float | None = None
    n_samples: int = 0
    converged: bool | None = None
    mae: float | None = None
    row: dict[str, object] = field(default_factory=dict)
    samples: dict[str, object] = field(default_factory=dict)


@dataclass
class RunEntry:
    """One run with its records, ready to store: runs_table's columns (see there)."""

    run_id: str
    machine: Machine
    time_utc: _dt.datetime
    git_commit: str
    git_dirty: bool | None
    host: str
    source: str
    env: dict[str, object]
    records: list[RecordEntry]


class Point(NamedTuple):
    """One run's median of one configuration on one machine, a trend's point (a named tuple: a trend
    over 10,000 runs builds tens of thousands)."""

    fingerprint: str
    config_key: str
    metric: str
    run_id: str
    time_utc: _dt.datetime
    git_commit: str
    git_dirty: bool | None
    median: float
    median_rel_se: float | None


metadata = sa.MetaData()

schema_table = sa.Table(
    "history_schema",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(64), nullable=False),
)
machines_table = sa.Table(
    "history_machines",
    metadata,
    sa.Column("fingerprint", sa.String(16), primary_key=True),  # sha256 of the four fields, 12 hex
    sa.Column("cpu_model", sa.Text, nullable=False),
    sa.Column("gpu_name", sa.Text, nullable=False),  # "" without a GPU
    sa.Column("torch_version", sa.String(64), nullable=False),
    sa.Column("cuda_version", sa.String(64), nullable=False),  # "" for a CPU build
)
configs_table = sa.Table(
    "history_configs",
    metadata,
    sa.Column("config_key", sa.String(255), primary_key=True),  # `train/cpu/eager/32/2/relu[/ws2/gloo]`
    sa.Column("workload", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(64), nullable=False),
    sa.Column("batch_size", sa.Integer),
    sa.Column("threads", sa.Integer),
    sa.Column("output_activation", sa.String(32), nullable=False),
    sa.Column("world_size", sa.Integer, nullable=False),
    sa.Column("backend", sa.String(32), nullable=False),
)
runs_table = sa.Table(
    "history_runs",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("fingerprint", sa.ForeignKey("history_machines.fingerprint"), nullable=False),
    sa.Column("time_utc", sa.DateTime, nullable=False),  # when the run was made (naive UTC)
    sa.Column("git_commit", sa.String(64), nullable=False),  # "" when unknown
    sa.Column("git_dirty", sa.Boolean),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # the path it was ingested from
    sa.Column("env_json", sa.Text, nullable=False),  # the run's whole environment
    sa.Column("ingested_utc", sa.DateTime, nullable=False),
    sa.Index("history_runs_by_machine_time", "fingerprint", "time_utc"),
)
records_table = sa.Table(
    "history_records",
    metadata,
    sa.Column("run_id", sa.ForeignKey("history_runs.run_id"), primary_key=True),
    sa.Column("config_key", sa.ForeignKey("history_configs.config_key"), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # ok | skipped | failed
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("flags", sa.Text, nullable=False),
    sa.Column("metric", sa.String(64)),  # the speed's raw samples: step_ms, latency_ms; None: untimed
    sa.Column("median", sa.Float),  # of the metric's raw samples (else the results row's value)
    sa.Column("median_rel_se", sa.Float),  # standard error of that median / median, from the samples
    sa.Column("n_samples", sa.Integer, nullable=False),
    sa.Column("converged", sa.Boolean),
    sa.Column("mae", sa.Float),
    sa.Column("row_json", sa.Text, nullable=False),  # every column of the results row
    sa.Index("history_records_by_config", "config_key"),
)
samples_table = sa.Table(
    "history_samples",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("config_key", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),  # step_ms, latency_ms, run_s, loss_curve, ...
    sa.Column("values_json", sa.Text, nullable=False),
    sa.ForeignKeyConstraint(
        ["run_id", "config_key"], ["history_records.run_id", "history_records.config_key"]
    ),
)


# --- opening -------------------------------------------------------------------------------------


def resolve_url(db: str | Path | None) -> sa.URL:
    """A file path (SQLite) or a database URL -> a SQLAlchemy URL; UsageError for anything else.
    None: $SUMNET_BENCH_HISTORY_DB when set (a team's shared database), else results/history.db."""
    text = (os.environ.get(DB_ENV) or DEFAULT_DB) if db is None else str(db).strip()
    if not text:
        raise UsageError("empty --db: give a SQLite file path or a postgresql+psycopg:// URL")
    if "://" not in text:
        return sa.URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    try:
        url = sa.make_url(text)
    except (sa.exc.ArgumentError, ValueError):
        raise UsageError(
            f"malformed database URL {text!r}: expected a SQLite path or postgresql+psycopg://user@host/db"
        ) from None
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise UsageError(f"{text}: an in-memory SQLite history would vanish; give a file path")
        return url.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        if "+" in url.drivername and driver != "psycopg":
            raise UsageError(f"{text}: PostgreSQL is reached through psycopg 3; use postgresql+psycopg://")
        if not url.database:
            raise UsageError(f"{text}: name the database, e.g. postgresql+psycopg://user@host/bench")
        return url.set(drivername="postgresql+psycopg")
    raise UsageError(f"{text}: unsupported database {backend!r}; use a SQLite path or postgresql+psycopg://")


def open_history(db: str | Path | None = None, create: bool = True) -> History:
    """Open (and with `create`, make on first use) the history at `db` (default results/history.db).

    UsageError with one line for: a malformed or unsupported URL, an unreachable server, a file that
    is not a database, a database of another schema version, and (create=False) no history yet.
    """
    url = resolve_url(db)
    where = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if not path.exists():
            if not create:
                raise UsageError(
                    f"{path}: no history database here yet; add runs with `python -m bench history ingest RUN`"
                )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UsageError(f"cannot create {path.parent}: {err.strerror or err}") from None
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        _configure_sqlite(engine)
    else:
        query = dict(url.query)
        connect_args = {} if "connect_timeout" in query else {"connect_timeout": CONNECT_TIMEOUT_S}
        engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.NullPool)
    history = History(engine, where)
    try:
        history._prepare(create)
    except sa.exc.DBAPIError as err:
        engine.dispose()
        raise UsageError(f"cannot open the history database {where}: {_describe(err)}") from None
    except UsageError:
        engine.dispose()
        raise
    return history


def _describe(err: sa.exc.DBAPIError) -> str:
    return first_line(err.orig, default=type(err.orig).__name__)


def _configure_sqlite(engine: sa.Engine) -> None:
    """WAL (readers never wait for the writer), a busy timeout, foreign keys, and BEGIN emitted by us:
    IMMEDIATE for writers, so two writers queue at BEGIN instead of failing at their first write."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the driver's own implicit BEGIN off; see _on_begin
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _use_wal(cursor)
        # consistent after any crash; a power cut may lose the last commits (re-ingesting is idempotent)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _use_wal(cursor) -> None:
    """Put the file in WAL mode (set once, then only read). Switching takes an exclusive lock that
    busy_timeout does not cover, so processes creating one history at once retry here."""
    deadline, delay = time.monotonic() + BUSY_TIMEOUT_S, 0.01
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if not _lost_race(err) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.5)


def _lost_race(err: BaseException) -> bool:
    """A lock race worth retrying: SQLite busy/locked, PostgreSQL deadlock or serialization failure."""
    text = str(err).lower()
    return "locked" in text or "busy" in text or getattr(err, "sqlstate", None) in _RETRY_SQLSTATES


T = TypeVar("T")


def _json(value: object) -> str:
    return json.dumps(json_safe(value), separators=(",", ":"), default=str)


# --- the store -----------------------------------------------------------------------------------


class History:
    """A connection to one history database. Open it with `open_history`."""

    def __init__(self, engine: sa.Engine, where: str) -> None:
        self.engine = engine
        self.where = where  # the URL, password hidden: for messages
        self.postgres = engine.dialect.name == "postgresql"  # else SQLite

    def __enter__(self) -> History:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.engine.dispose()

    # transactions

    def _write(self, work: Callable[[sa.Connection], T]) -> T:
        """Run `work` in one write transaction, retried when it lost a lock race. UsageError when the
        database cannot be written (a read-only file or folder, a read-only role)."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self.engine.connect() as conn:
                    conn = conn.execution_options(**{_WRITE: True})
                    with conn.begin():
                        return work(conn)
            except sa.exc.OperationalError as err:
                if attempt == WRITE_ATTEMPTS - 1 or not _lost_race(err.orig):
                    raise UsageError(f"cannot write to the history {self.where}: {_describe(err)}") from None
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _insert(self, table: sa.Table):
        """INSERT ... ON CONFLICT DO NOTHING in this database's dialect."""
        insert = _pg.insert if self.postgres else _sqlite.insert
        return insert(table).on_conflict_do_nothing()

    def _prepare(self, create: bool) -> None:
        """Check the schema version; create the tables on first use (under a lock, so two first
        writers do not both create them)."""
        ours = set(metadata.tables)
        with self.engine.connect() as conn:
            present = ours & set(sa.inspect(conn).get_table_names())
        if "history_schema" in present:
            self._check_version()  # an older layout missing a table: the version says so
        if present == ours:
            return
        if present:
            raise UsageError(
                f"{self.where}: an incomplete history (tables {', '.join(sorted(present))}); not this harness's schema"
            )
        if not create:
            raise UsageError(
                f"{self.where}: no history here yet; add runs with `python -m bench history ingest RUN`"
            )

        def make(conn: sa.Connection) -> None:
            if self.postgres:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            metadata.create_all(conn, checkfirst=True)
            conn.execute(
                self._insert(schema_table), [{"name": "schema_version", "value": str(SCHEMA_VERSION)}]
            )

        self._write(make)
        self._check_version()

    def _check_version(self) -> None:
        with self.engine.connect() as conn:
            version = conn.execute(
                sa.select(schema_table.c.value).where(schema_table.c.name == "schema_version")
            ).scalar()
        if version != str(SCHEMA_VERSION):
            raise UsageError(
                f"{self.where}: history schema version {version or '(none)'}; this harness reads version "
                f"{SCHEMA_VERSION} (use another --db, or migrate that one)"
            )

    # writing

    def add_runs(self, entries: Sequence[RunEntry]) -> list[bool]:
        """Store runs in one transaction; for each, whether it was new (False: stored already)."""
        return self._write(lambda conn: [self._add(conn, e) for e in entries])

    def _add(self, conn: sa.Connection, entry: RunEntry) -> bool:
        m = entry.machine
        conn.execute(self._insert(machines_table), [dataclasses.asdict(m)])  # the table's columns
        configs = {str(r.config): r.config for r in entry.records}
        if configs:  # sorted: concurrent writers take row locks in one order (no deadlock)
            rows = [{"config_key": key, **dataclasses.asdict(c)} for key, c in sorted(configs.items())]
            conn.execute(self._insert(configs_table), rows)
        inserted = conn.execute(  # RETURNING: the driver's rowcount is -1 here on psycopg
            self._insert(runs_table).returning(runs_table.c.run_id),
            {
                **_fields(entry, "machine", "env", "records"),
                "fingerprint": m.fingerprint,
                "env_json": _json(entry.env),
                "ingested_utc": _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None),
            },
        ).first()
        if inserted is None:
            return False  # stored before (by us or by a concurrent writer): idempotent
        rows = [  # a RecordEntry's fields are the table's columns, but for the key and the row
            {"run_id": entry.run_id, "config_key": str(r.config), "row_json": _json(r.row)}
            | _fields(r, "config", "row", "samples")
            for r in entry.records
        ]
        if rows:
            conn.execute(records_table.insert(), rows)
        sample_rows = [
            {"run_id": entry.run_id, "config_key": str(r.config), "name": name, "values_json": _json(values)}
            for r in entry.records
            for name, values in r.samples.items()
            if values is not None
        ]
        if sample_rows:
            conn.execute(samples_table.insert(), sample_rows)
        return True

    # reading

    def count_runs(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(runs_table)).scalar() or 0)

    def machines(self) -> dict[str, Machine]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(machines_table)).mappings().all()
        return {r["fingerprint"]: Machine(**r) for r in rows}

    def configs(self) -> dict[str, ConfigKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(configs_table)).mappings().all()
        return {r["config_key"]: ConfigKey(**{k: v for k, v in r.items() if k != "config_key"}) for r in rows}

    def points(self, config_keys: Iterable[str] | None = None) -> list[Point]:
        """Every ok, timed record as a trend point, ordered by machine, configuration, time."""
        r, run = records_table, runs_table
        columns = [(run if name in run.c else r).c[name] for name in Point._fields]  # Point's order
        query = (
            sa.select(*columns)
            .select_from(r.join(run, r.c.run_id == run.c.run_id))
            .where(r.c.status == "ok", r.c.median.is_not(None), r.c.metric.is_not(None))
            .order_by(run.c.fingerprint, r.c.config_key, run.c.time_utc, run.c.run_id)
        )
        if config_keys is not None:
            query = query.where(r.c.config_key.in_(sorted(set(config_keys))))
        with self.engine.connect() as conn:
            return [Point(*row) for row in conn.execute(query)]

    def samples_of(self, config_key: str, name: str, run_ids: Iterable[str]) -> dict[str, list[float]]:
        """Raw samples `name` of one configuration in the given runs: run id -> values."""
        s = samples_table
        query = sa.select(s.c.run_id, s.c.values_json).where(
            s.c.config_key == config_key, s.c.name == name, s.c.run_id.in_(sorted(set(run_ids)))
        )
        with self.engine.connect() as conn:
            stored = {run_id: json.loads(text) for run_id, text in conn.execute(query)}
        return {
            i: [float(v) for v in vs if v is not None] for i, vs in stored.items() if isinstance(vs, list)
        }

    def recent_runs(
        self,
        fingerprint: str,
        config_key: str,
        limit: int,
        before: _dt.datetime | None = None,
        exclude_run: str | None = None,
    ) -> list[tuple[str, str, _dt.datetime]]:
        """(run id, commit, time) of the last `limit` runs where this configuration ran ok on this
        machine, newest first; only runs up to `before` when given; never `exclude_run`."""
        r, run = records_table, runs_table
        query = (
            sa.select(run.c.run_id, run.c.git_commit, run.c.time_utc)
            .select_from(r.join(run, r.c.run_id == run.c.run_id))
            .where(run.c.fingerprint == fingerprint, r.c.config_key == config_key, r.c.status == "ok")
            .order_by(run.c.time_utc.desc(), run.c.run_id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(run.c.time_utc <= before)
        if exclude_run is not None:
            query = query.where(run.c.run_id != exclude_run)
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def _fields(record, *left_out: str) -> dict[str, object]:
    """A dataclass's fields by name (not copied, unlike dataclasses.asdict), less `left_out`."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name not in left_out}
