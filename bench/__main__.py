"""Command line: `python -m bench COMMAND [flags]`; `python -m bench COMMAND -h` for each.

    python -m bench run --preset quick          # time and check the matrix, write results/
    python -m bench compare RUN RUN             # put runs side by side with intervals
    python -m bench gate --baseline RUN --current RUN
    python -m bench ab BASE [HEAD]              # two commits interleaved, judged on paired rounds
    python -m bench convergence --seeds 32      # how often and how fast each config learns
    python -m bench ddp --nproc 1,2             # DistributedDataParallel through torchrun
    python -m bench history trend               # the results history: series and changepoints
    python -m bench dashboard --out DIR         # a static page of the history

Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import NoReturn

from bench.commands.session import EXIT_INTERRUPTED, interrupt_on_sigterm
from bench.errors import UsageError, missing_package
from sumnet.cli_args import OneLineArgumentParser, fail

# command -> module with add_arguments(parser) and main(args) -> exit code; imported on use,
# so `run` does not pay for the imports of `compare`.
COMMANDS = {
    "run": "bench.commands.run",
    "compare": "bench.commands.compare",
    "gate": "bench.commands.gate",
    "ab": "bench.commands.ab",
    "convergence": "bench.commands.convergence",
    "ddp": "bench.commands.ddp",
    "history": "bench.commands.history",
    "dashboard": "bench.commands.dashboard",
}


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
    interrupt_on_sigterm()  # from here on SIGTERM is a Ctrl-C: one line and exit 130, or a kept run
    try:
        module = importlib.import_module(COMMANDS[command])
        parser = OneLineArgumentParser(prog=prog, description=(module.__doc__ or "").splitlines()[0])
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        return module.main(args)
    except UsageError as err:
        fail(prog, str(err))
    except ModuleNotFoundError as err:  # a third-party package this command needs (not ours: a bug)
        package = missing_package(err)
        if package is None:
            raise
        fail(prog, f"this command needs the Python module {package!r}, not installed here: pip install -e .")
    except KeyboardInterrupt:  # before a run folder existed, or in a command that keeps nothing
        print(f"{prog}: interrupted before anything was measured", file=sys.stderr)
        return EXIT_INTERRUPTED


def exit_shielded(code: int) -> NoReturn:
    """Exit with `code`, ignoring SIGINT and SIGTERM from here on. Everything is written by now; a
    late signal (nox sends SIGTERM 0.3 s after Ctrl-C) must not land in interpreter shutdown, where
    Python has reset its handlers to the default, and turn exit 130 into death by signal."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(code)


def cli() -> NoReturn:
    """The `sumnet-bench` console script: `python -m bench`, exit included."""
    exit_shielded(main())


if __name__ == "__main__":
    cli()
