"""The dashboard: a static site from the history that opens from file:// with no server and no network:
index.html (the latest result of every configuration per machine and device, recent change points,
the machines) and series/<name>.html (one trend chart per machine and configuration, its changes and
runs). Everything is inline; a folder without the MARKER file is refused, never overwritten.

    python -m bench dashboard --out results/dashboard
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import html
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from itertools import groupby
from pathlib import Path

from bench.errors import UsageError
from bench.history import add_db_argument
from bench.history.chart import sparkline_svg, trend_svg
from bench.history.db import open_history
from bench.history.trend import Series, commit_label, describe_change, trends

RECENT_RUNS = 5  # a change among a series' last this many runs is flagged in the index
MAX_CHART_RUNS = 400  # a series page charts its last this many runs
SPARK_RUNS = 30  # the index's small trend shows the last this many runs
WORKLOAD_ORDER = {"train": 0, "ddp": 1, "inference": 2, "convergence": 3}
MARKER = ".sumnet-bench-dashboard"  # written into the folder: it is the dashboard's, to rewrite

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1200px;
       padding: 0 16px; color: #1f2328; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #59636e; margin: 0 0 12px; }
table { border-collapse: collapse; margin: 6px 0 16px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.empty { color: #9aa4ad; text-align: center; }
a { color: #0b5cad; text-decoration: none; } a:hover { text-decoration: underline; }
.slower { color: #c0392b; font-weight: 600; } .faster { color: #1e8449; font-weight: 600; }
svg.trend { width: 100%; height: auto; border: 1px solid #eaeef2; background: #fff; }
svg.spark { vertical-align: middle; }
svg .tick, svg .xlabel { font: 11px system-ui, sans-serif; fill: #59636e; }
svg .axis { font: 12px system-ui, sans-serif; fill: #1f2328; }
svg .change-label { font: 12px system-ui, sans-serif; font-weight: 600; }
code { font-size: 12px; } #script-errors { color: #c0392b; white-space: pre-wrap; }
"""
# Records any script error in the page (a browser test reads #script-errors); the pages need no script.
_ERROR_HOOK = (
    "<script>window.addEventListener('error',function(e){var p=document.getElementById('script-errors');"
    "if(p){p.hidden=false;p.textContent+=String(e.message)+'\\n';}});</script>"
)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>{_ERROR_HOOK}</head>\n"
        f'<body>\n<pre id="script-errors" hidden></pre>\n{body}\n</body></html>\n'
    )


def _change_cell(change) -> str:
    if change is None:
        return ""
    arrow = "&#9650;" if change.slower else "&#9660;"  # up / down triangle
    return (
        f' <span class="{change.direction}" title="recent change">{arrow}&nbsp;{change.ratio - 1:+.0%}</span>'
    )


def _spark(s: Series) -> str:
    """The last SPARK_RUNS medians as a small inline chart, with the changes among them."""
    offset = max(0, len(s.points) - SPARK_RUNS)
    shown = [replace(c, first=c.first - offset, last=c.last - offset) for c in s.changes if c.last > offset]
    return sparkline_svg([p.median for p in s.points[offset:]], shown)


def _page_names(series: Sequence[Series]) -> dict[Series, str]:
    """series/<machine>-<config slug>.html, made unique with a hash when two slugs collide."""
    names: dict[Series, str] = {}
    used: set[str] = set()
    for s in series:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", str(s.config)).strip("-")
        name = f"{s.machine.fingerprint}-{slug}"
        if name in used:
            name += "-" + hashlib.sha256(str(s.config).encode()).hexdigest()[:6]
        used.add(name)
        names[s] = f"series/{name}.html"
    return names


def _row_key(s: Series) -> tuple:
    c = s.config
    return (
        WORKLOAD_ORDER.get(c.workload, 9),
        c.workload,
        c.mode,
        c.batch_size or 0,
        c.output_activation,
        c.world_size,
        c.backend,
    )


def _column_key(s: Series) -> tuple:
    device_rank = 0 if s.config.device == "cpu" else 1
    return (s.machine.label, s.machine.fingerprint, device_rank, s.config.device, s.config.threads or 0)


def _latest_table(series: Sequence[Series], pages: dict[Series, str]) -> str:
    """One table: a row per configuration (less device and threads), a column per machine, device and
    thread count, so a CPU and a GPU of one machine (and different machines) sit side by side."""
    columns = sorted({_column_key(s) for s in series})
    rows = sorted({_row_key(s) for s in series})
    cells = {(_row_key(s), _column_key(s)): s for s in series}
    head1 = "".join(
        f'<th colspan="{len(list(cols))}">{html.escape(label)}</th>'
        for label, cols in groupby(columns, key=lambda col: col[0])
    )
    head2 = "".join(f"<th>{html.escape(col[3])} &middot; {col[4]} threads</th>" for col in columns)
    out = [
        '<table id="latest">',
        f'<tr><th rowspan="2">workload</th><th rowspan="2">mode</th><th rowspan="2">batch</th>'
        f'<th rowspan="2">output</th><th rowspan="2">metric</th>{head1}</tr>',
        f"<tr>{head2}</tr>",
    ]
    for row in rows:
        first = next(s for (r, _), s in cells.items() if r == row)
        c = first.config
        extra = f" ws{c.world_size} {html.escape(c.backend)}" if c.world_size != 1 or c.backend else ""
        tds = [
            f"<td>{html.escape(c.workload)}{extra}</td><td>{html.escape(c.mode)}</td>"
            f'<td class="num">{c.batch_size if c.batch_size is not None else ""}</td>'
            f"<td>{html.escape(c.output_activation)}</td><td>{html.escape(first.metric)}</td>"
        ]
        for col in columns:
            s = cells.get((row, col))
            if s is None:
                tds.append('<td class="empty">&ndash;</td>')
                continue
            p = s.points[-1]
            tip = f"{len(s.points)} runs; latest {p.time_utc:%Y-%m-%d %H:%M} UTC, commit {commit_label(p)}"
            tds.append(
                f'<td class="num"><a href="{pages[s]}" title="{html.escape(tip)}">{_spark(s)} {p.median:.4g}</a>'
                f"{_change_cell(s.recent_change(RECENT_RUNS))}</td>"
            )
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _index(series: Sequence[Series], pages, where: str, runs_total: int, generated: str) -> str:
    esc = html.escape
    parts = [
        "<h1>sumnet-bench history</h1>",
        f'<p class="meta">{runs_total} runs, {len(series)} series from <code>{esc(where)}</code>; '
        f"generated {generated} UTC. Times are medians in ms (lower is better); &#9650; / &#9660; marks a "
        f"change point among a series' last {RECENT_RUNS} runs. Each cell: the last runs' trend, the latest median; click it for the full trend.</p>",
        "<h2>Latest results per machine</h2>",
        _latest_table(series, pages) if series else "<p>No timed runs in the history yet.</p>",
    ]
    changes = [(s, c) for s in series for c in s.changes]
    changes.sort(key=lambda sc: sc[0].points[sc[1].last].time_utc, reverse=True)
    parts.append("<h2>Change points</h2>")
    if changes:
        parts.append(
            '<table id="changes"><tr><th>when</th><th>machine</th><th>configuration</th><th>change</th></tr>'
        )
        for s, c in changes:
            parts.append(
                f"<tr><td>{s.points[c.last].time_utc:%Y-%m-%d %H:%M}</td><td>{esc(s.machine.fingerprint)}</td>"
                f'<td><a href="{pages[s]}">{esc(str(s.config))}</a></td>'
                f'<td class="{c.direction}">{esc(describe_change(s, c))}</td></tr>'
            )
        parts.append("</table>")
    else:
        parts.append("<p>No change point in any series.</p>")
    parts.append(
        '<h2>Machines</h2><table id="machines"><tr><th>fingerprint</th><th>CPU</th><th>GPU</th>'
        "<th>torch</th><th>CUDA</th><th>series</th></tr>"
    )
    seen = Counter(s.machine.fingerprint for s in series)
    for fp, m in sorted({s.machine.fingerprint: s.machine for s in series}.items()):
        parts.append(
            f"<tr><td><code>{esc(fp)}</code></td><td>{esc(m.cpu_model)}</td><td>{esc(m.gpu_name or 'none')}</td>"
            f'<td>{esc(m.torch_version)}</td><td>{esc(m.cuda_version or "none")}</td><td class="num">{seen[fp]}</td></tr>'
        )
    parts.append("</table>")
    return _page("sumnet-bench history", "\n".join(parts))


def _series_page(s: Series, generated: str) -> str:
    esc = html.escape
    shown = s.points[-MAX_CHART_RUNS:]
    offset = len(s.points) - len(shown)
    shifted = [
        replace(c, first=c.first - offset, last=c.last - offset) for c in s.changes if c.first > offset
    ]
    labels = [commit_label(p, missing=f"{p.time_utc:%m-%d %H:%M}") for p in shown]
    tips = [f"{commit_label(p)} at {p.time_utc:%Y-%m-%d %H:%M} UTC: {p.median:.4g} ms" for p in shown]
    svg = trend_svg(
        [p.median for p in shown], labels, shifted, tips, title=f"{s.config} on {s.machine.label}"
    )
    parts = [
        '<p><a href="../index.html">&larr; all results</a></p>',
        f"<h1>{esc(str(s.config))}</h1>",
        f'<p class="meta">{esc(s.metric)} on machine <code>{esc(s.machine.fingerprint)}</code> '
        f"({esc(s.machine.label)}); {len(s.points)} runs"
        + (f", the last {len(shown)} charted" if offset else "")
        + f"; generated {generated} UTC.</p>",
        svg,
        "<h2>Change points</h2>",
    ]
    if s.changes:
        parts.append(
            "<ul>"
            + "".join(f'<li class="{c.direction}">{esc(describe_change(s, c))}</li>' for c in s.changes)
            + "</ul>"
        )
    else:
        parts.append("<p>None found.</p>")
    parts.append(
        '<h2>Runs</h2><table id="runs"><tr><th>time (UTC)</th><th>commit</th>'
        f"<th>median {esc(s.metric)}</th><th>std. error of the median</th><th>run id</th></tr>"
    )
    for p in reversed(shown):
        se = "" if p.median_rel_se is None else f"{p.median_rel_se:.1%}"
        parts.append(
            f"<tr><td>{p.time_utc:%Y-%m-%d %H:%M}</td><td><code>{esc(commit_label(p))}</code></td>"
            f'<td class="num">{p.median:.4g}</td><td class="num">{se}</td><td><code>{esc(p.run_id)}</code></td></tr>'
        )
    parts.append("</table>")
    return _page(f"{str(s.config)} - sumnet-bench history", "\n".join(parts))


def write_dashboard(db: str | Path | None, out_dir: str | Path) -> Path:
    """Write the site for the history `db` (a path or URL; None: results/history.db) into `out_dir`;
    returns the index.html path. UsageError when out_dir cannot be written."""
    with open_history(db, create=False) as history:
        series, runs_total, where = trends(history), history.count_runs(), history.where
    out = Path(out_dir)
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    pages = _page_names(series)
    theirs = [name for name in ("index.html", "series") if (out / name).exists()]
    if theirs and not (out / MARKER).exists():
        raise UsageError(
            f"{out} already holds {' and '.join(theirs)} that the dashboard did not write (no {MARKER}): "
            "give a new or empty folder"
        )
    try:
        (out / "series").mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("written by `python -m bench dashboard`: it rewrites this folder\n")
        for s in series:
            (out / pages[s]).write_text(_series_page(s, generated))
        index = out / "index.html"
        index.write_text(_index(series, pages, where, runs_total, generated))
    except OSError as err:
        raise UsageError(f"cannot write the dashboard to {out}: {err.strerror or err}") from None
    return index


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`python -m bench dashboard --out DIR [--db URL]`."""
    parser.add_argument("--out", type=Path, required=True, help="folder for index.html and series/")
    add_db_argument(parser)


def main(args: argparse.Namespace) -> int:
    index = write_dashboard(args.db, args.out)
    print(f"wrote {index} (open it in a browser: file://{index.resolve()})")
    return 0
