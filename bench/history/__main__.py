"""`python -m bench.history ingest|trend|gate|dashboard ...`: the history's commands on their own,
until `python -m bench history ...` and `python -m bench dashboard` are registered.

    python -m bench.history ingest results/reference/*/run.json
    python -m bench.history trend --last 5
    python -m bench.history dashboard --out results/dashboard

Bad input exits 2 with one line on stderr. It starts without torch, which reading a database does
not need.
"""

from __future__ import annotations

import sys

from bench.errors import UsageError, first_line, missing_package
from bench.history import cli
from sumnet.cli_args import OneLineArgumentParser

PROG = "python -m bench.history"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog=PROG, description=(__doc__ or "").splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True, metavar="{ingest,trend,gate,dashboard}")
    cli.add_actions(actions)
    cli.add_dashboard_arguments(actions.add_parser("dashboard", help="write the static site"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return cli.dashboard_main(args) if args.action == "dashboard" else cli.main(args)
    except UsageError as err:
        print(f"{PROG} {args.action}: error: {first_line(err, 'bad input')}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:  # sqlalchemy, psycopg, ruptures: the history's own packages
        package = missing_package(err)
        if package is None:
            raise
        print(
            f"{PROG} {args.action}: error: needs the Python module {package!r}: pip install -e .",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
