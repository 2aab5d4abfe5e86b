"""`python -m bench dashboard --out DIR`: a static site of the results history that opens from
file:// with no server and no network: the latest results per machine, a trend chart per
configuration with its changepoints.

    python -m bench dashboard --out results/dashboard
"""

from bench.history.cli import add_dashboard_arguments as add_arguments
from bench.history.cli import dashboard_main as main

__all__ = ["add_arguments", "main"]
