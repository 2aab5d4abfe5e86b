"""Test factories: results rows and records written by hand, in the current schema.

`row(...)` is a results row as a dict (every schema column, like a line of results.csv);
`record(...)` turns the same keyword values plus raw samples into a Record the writer stores.
"""

from __future__ import annotations

from bench.records import SCHEMA_VERSION, ConfigKey, Record
from bench.store.run_folder import COLUMNS

_RECORD_FIELDS = ("status", "reason", "seed", "steps", "repeats")
_SUMMARY = ("step_ms", "latency_ms")


def row(**values: object) -> dict[str, object]:
    """A results row with every schema column; unknown names refused."""
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not in the results schema: {sorted(unknown)}")
    out: dict[str, object] = dict.fromkeys(COLUMNS)
    out.update(schema_version=SCHEMA_VERSION, status="ok", reason="", flags="", world_size=1, backend="")
    out.update(values)
    return out


def record(
    samples: dict[str, object] | None = None, notes: list[str] | None = None, **values: object
) -> Record:
    """A Record from row-style keyword values: key columns, record fields, the rest measured.

    A median given for a metric that has raw samples is dropped: the record computes it from them.
    """
    full = row(**values)
    samples = dict(samples or {})
    measured = {
        k: v
        for k, v in values.items()
        if k not in ConfigKey.columns() and k not in _RECORD_FIELDS and not (k in _SUMMARY and samples.get(k))
    }
    return Record(
        key=ConfigKey.from_row(full),
        status=str(full["status"]),
        reason=str(full["reason"]),
        notes=list(notes or []),
        seed=full["seed"],  # type: ignore[arg-type]
        steps=full["steps"],  # type: ignore[arg-type]
        repeats=full["repeats"],  # type: ignore[arg-type]
        measured=measured,
        samples=samples,
    )
