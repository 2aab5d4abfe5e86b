"""The harness's one error type for bad input, and how an error becomes one line.

Every layer may raise `UsageError`; `python -m bench` prints its message as one line on stderr and
exits 2. `describe` turns any other exception into the one line recorded in a failed row. The exit
codes, `first_line` and `missing_package` are sumnet.cli_args's, shared with `python -m sumnet`.
"""

from __future__ import annotations

from sumnet.cli_args import EXIT_INTERRUPTED, first_line, install_hint, missing_package

__all__ = ["EXIT_INTERRUPTED", "UsageError", "describe", "first_line", "install_hint", "missing_package"]


class UsageError(Exception):
    """Bad input (a flag, a file, an environment variable); the CLI prints it on one line, exit 2."""


def describe(err: BaseException, limit: int = 300) -> str:
    """`TypeName: first line of the message`, at most `limit` characters: a failed row's reason."""
    return f"{type(err).__name__}: {first_line(err)}".strip().rstrip(":")[:limit]
