"""The harness's one error type for bad input, and how an error becomes one line.

Every layer may raise `UsageError`; `python -m bench` prints its message as one line on stderr and
exits 2. `describe` turns any other exception into the one line recorded in a failed row.
"""

from __future__ import annotations

USAGE_ERROR = 2  # exit code for bad input, as argparse uses


class UsageError(Exception):
    """Bad input (a flag, a file, an environment variable); the CLI prints it on one line, exit 2."""


def first_line(message: object, default: str = "") -> str:
    """The first line of a message or exception text, or `default` when it is empty."""
    lines = str(message).strip().splitlines()
    return lines[0] if lines else default


def describe(err: BaseException, limit: int = 300) -> str:
    """`TypeName: first line of the message`, at most `limit` characters: a failed row's reason."""
    return f"{type(err).__name__}: {first_line(err)}".strip().rstrip(":")[:limit]


def missing_package(err: ModuleNotFoundError) -> str | None:
    """The third-party package a failed import lacks (`sqlalchemy` for `sqlalchemy.dialects`), or
    None when the missing module is one of ours (a bug, to be raised as it is)."""
    top = (err.name or "").split(".")[0]
    return None if top in ("", "bench", "sumnet") else top
