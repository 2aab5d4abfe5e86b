"""Argument parsing for `python -m sumnet`: a parser that reports bad input as one line with exit
code 2 (never a usage dump or a traceback), and argument types. The harness reuses the parser and
types; its own errors and interrupt handling live in bench.errors and bench.commands.session.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

USAGE_ERROR = 2  # exit code for bad input, as argparse uses


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


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a seed, 0 to 2**63 - 1."""
    value = non_negative_int(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be at most 2**63 - 1, got {value}")
    return value


def bounded_positive_int(maximum: int):
    """argparse type factory: an integer from 1 to `maximum`."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"expected at most {maximum:,}, got {value:,}")
        return value

    parse.__name__ = f"integer_up_to_{maximum}"
    return parse
