"""`python -m bench history ingest|trend|gate`: the results history (SQLite by default, PostgreSQL
with --db). The commands live in bench.history.cli, which `python -m bench.history` also runs
without importing torch (the fast path for `trend`).

    python -m bench history ingest results/reference/*/
    python -m bench history trend --last 10
"""

from bench.history.cli import add_arguments, main

__all__ = ["add_arguments", "main"]
