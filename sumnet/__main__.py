"""`python -m sumnet`: the article's demo (sumnet/demo.py). Ctrl-C or SIGTERM, even while torch is
still loading, ends in one line and exit 130; a Python without torch gets one line saying how to
install it.

    python -m sumnet --steps 200
"""

from sumnet.cli_args import run_entry


def _main() -> int:
    from sumnet.demo import main  # after the signal handling: torch's import takes seconds

    return main()


if __name__ == "__main__":
    run_entry("python -m sumnet", _main)
