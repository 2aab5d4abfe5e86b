"""`python -m bench.crosscheck`: the harness's step time against torch.utils.benchmark.Timer
(bench/commands/crosscheck.py), started by run_entry (signals handled before torch loads).

    python -m bench.crosscheck --rounds 5 --calls 100
"""

from sumnet.cli_args import run_entry


def _main() -> int:
    from bench.commands.crosscheck import main  # after the signal handling: torch's import takes seconds

    return main()


if __name__ == "__main__":
    run_entry("python -m bench.crosscheck", _main)
