"""Command line: `python -m bench COMMAND [flags]`; `python -m bench COMMAND -h` for each.

    python -m bench run --preset quick          # time and check the matrix, write results/
    python -m bench compare RUN RUN             # put runs side by side with intervals
    python -m bench gate --baseline RUN --current RUN
    python -m bench ab BASE [HEAD]              # two commits interleaved, judged on paired rounds
    python -m bench convergence --seeds 32      # how often and how fast each config learns
    python -m bench ddp --nproc 1,2             # DistributedDataParallel through torchrun
    python -m bench history trend               # the results history: series and changepoints
    python -m bench dashboard --out DIR         # a static page of the history

Bad input exits 2 with one line on stderr; Ctrl-C or SIGTERM exits 130 with one line, or with the
run kept. Starting costs no torch: each command's module is imported when it is chosen, after the
signal handling is in place (`history trend` and `dashboard` never import torch).
"""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn

from bench.errors import EXIT_INTERRUPTED, UsageError, install_hint, missing_package
from sumnet.cli_args import OneLineArgumentParser, fail, run_entry

# command -> module with add_arguments(parser) and main(args) -> exit code; imported on use,
# so `run` does not pay for the imports of `compare`, nor `history trend` for torch's.
COMMANDS = {name: f"bench.commands.{name}" for name in ("run", "compare", "gate", "ab", "convergence", "ddp")}
COMMANDS.update(history="bench.history.cli", dashboard="bench.history.dashboard")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        fail("python -m bench", f"missing command: choose from {', '.join(COMMANDS)} (-h for help)")
    if argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        fail("python -m bench", f"unknown command {command!r}: choose from {', '.join(COMMANDS)}")
    prog = f"python -m bench {command}"
    try:
        module = importlib.import_module(COMMANDS[command])
        parser = OneLineArgumentParser(prog=prog, description=(module.__doc__ or "").splitlines()[0])
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        if hasattr(args, "action"):  # history's sub-commands name themselves in their messages
            prog = f"{prog} {args.action}"
        return module.main(args)
    except UsageError as err:
        fail(prog, str(err))
    except ModuleNotFoundError as err:  # a third-party package this command needs (not ours: a bug)
        package = missing_package(err)
        if package is None:
            raise
        fail(prog, install_hint(package))
    except KeyboardInterrupt:  # before a run folder existed, or in a command that keeps nothing
        print(f"{prog}: interrupted before anything was measured", file=sys.stderr)
        return EXIT_INTERRUPTED


def cli() -> NoReturn:
    """`python -m bench` and the `sumnet-bench` console script: Ctrl-C and SIGTERM are handled from
    before the first heavy import to the exit."""
    run_entry("python -m bench", main)


if __name__ == "__main__":
    cli()
