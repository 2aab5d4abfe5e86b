"""`python -m sumnet` and the `sumnet` console script: the article's demo (sumnet/demo.py), started
by run_entry (one line and exit 130 on Ctrl-C or SIGTERM, even while torch loads).

    python -m sumnet --steps 200
"""

from typing import NoReturn

from sumnet.cli_args import run_entry


def _demo() -> int:
    from sumnet.demo import main  # after the signal handling: torch's import takes seconds

    return main()


def main() -> NoReturn:
    run_entry("python -m sumnet", _demo)


if __name__ == "__main__":
    main()
