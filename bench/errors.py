"""The harness's one error type for bad input (any layer may raise it), and how an error becomes one
line. The exit codes, `first_line` and `missing_package` are sumnet.cli_args's, shared with `python -m sumnet`.
"""

from __future__ import annotations

from sumnet.cli_args import EXIT_INTERRUPTED, first_line, install_hint, missing_package

__all__ = ["EXIT_INTERRUPTED", "UsageError", "describe", "first_line", "install_hint", "missing_package"]


class UsageError(Exception):
    """Bad input (a flag, a file, an environment variable); the CLI prints it on one line, exit 2."""


def describe(err: BaseException, limit: int = 300) -> str:
    """`TypeName: first line of the message`, at most `limit` characters: a failed row's reason."""
    return f"{type(err).__name__}: {first_line(err)}".strip().rstrip(":")[:limit]
