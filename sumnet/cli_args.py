"""What every entry point shares, importable without torch (so here, as sumnet never imports bench):
bad input as one line and exit 2, argument types, Ctrl-C / SIGTERM as one line and exit 130.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

USAGE_ERROR = 2  # exit code for bad input, as argparse uses
EXIT_INTERRUPTED = 130  # exit code after Ctrl-C or SIGTERM, as a shell reports SIGINT
EXIT_BROKEN_PIPE = 141  # stdout's reader left (`| head`), as a shell reports SIGPIPE
_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def ignore_interrupts() -> None:
    """Ignore SIGINT and SIGTERM for the rest of the process, interpreter shutdown included."""
    for sig in _INTERRUPTS:
        signal.signal(sig, signal.SIG_IGN)


def interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM (a CI timeout) raise KeyboardInterrupt once, later ones are ignored (nox
    sends SIGTERM right after Ctrl-C), so a command keeps what it measured and exits 130."""

    def handler(signum, frame):
        ignore_interrupts()
        raise KeyboardInterrupt

    for sig in _INTERRUPTS:
        signal.signal(sig, handler)


def missing_package(err: ModuleNotFoundError) -> str | None:
    """The third-party package a failed import lacks (`sqlalchemy` for `sqlalchemy.dialects`), or
    None when the missing module is one of ours (a bug, to be raised as it is)."""
    top = (err.name or "").split(".")[0]
    return None if top in ("", "bench", "sumnet") else top


# pyproject.toml's extra that brings each optional package; anything else is a core dependency
EXTRA_OF = {
    "sqlalchemy": "history",
    "psycopg": "history",
    "ruptures": "history",
    "numba": "floor",
    "tqdm": "progress",
}


def install_hint(package: str) -> str:
    """The one message for a package this command needs and this Python lacks."""
    extra = EXTRA_OF.get(package)
    target = f"'.[{extra}]'" if extra else "."
    return (
        f"needs the Python module {package!r}, not installed in {sys.executable}: "
        f"pip install -e {target} (or run it through nox: nox -l lists the sessions)"
    )


def run_entry(prog: str, main: Callable[[], int]) -> NoReturn:
    """Install the signal handling, run `main()` (which imports torch), exit with its code. Ctrl-C or
    SIGTERM, even during imports: one line, exit 130; a missing package: one line, exit 2; a reader
    of stdout that left (`| head`): exit 141, as any Unix tool."""
    interrupt_on_signals()
    try:
        try:
            code = main()
        finally:
            sys.stdout.flush()  # here, where a closed pipe is caught, not in interpreter shutdown
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush cannot fail again
        code = EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        ignore_interrupts()
        print(f"{prog}: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except ModuleNotFoundError as err:
        package = missing_package(err)
        if package is None:
            raise
        print(f"{prog}: error: {install_hint(package)}", file=sys.stderr)
        code = USAGE_ERROR
    ignore_interrupts()  # all is written: a late signal must not turn the exit code into death by signal
    raise SystemExit(code)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exit 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def first_line(message: object, default: str = "") -> str:
    """The first line of a message or exception text, or `default` when it is empty."""
    lines = str(message).strip().splitlines()
    return lines[0] if lines else default


def fail(prog: str, message: str) -> NoReturn:
    """Print `prog: error: message` on stderr and exit 2."""
    print(f"{prog}: error: {first_line(message, 'bad input')}", file=sys.stderr)
    raise SystemExit(USAGE_ERROR)


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type factory: an integer from `low` to `high` (no bound when None)."""
    expected = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected at most {high:,}, got {value:,}")
        return value

    return parse


positive_int = int_in(1)
non_negative_int = int_in(0)


def bounded_positive_int(maximum: int) -> Callable[[str], int]:
    """argparse type factory: an integer from 1 to `maximum`."""
    return int_in(1, maximum)


def seed_int(text: str) -> int:
    """argparse type: a seed, 0 to 2**63 - 1 (torch.Generator.manual_seed's signed 64 bits)."""
    value = non_negative_int(text)
    if value > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"a seed must be at most 2**63 - 1, got {value}")
    return value


def float_in(expected: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """argparse type factory: a finite float for which `ok` holds; `expected` names it in the error."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and ok(value)):  # also refuses nan
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


positive_float = float_in("a positive number", lambda value: value > 0)
