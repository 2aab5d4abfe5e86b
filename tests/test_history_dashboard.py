"""The static dashboard: pages, links and charts checked in the HTML, then loaded from file:// in a
real headless Chromium (Debian's `chromium`): the rendered DOM has the tables and the SVG charts, no
script error and no console message, and a screenshot is saved in the test's tmp dir for a person to
look at. Without Chromium the browser tests skip with one line (fail when CI=true)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.optional import require, skip_or_fail

require("sqlalchemy", "the results history's database")

from bench.history.dashboard import _page as dashboard_page  # noqa: E402
from bench.history.dashboard import write_dashboard  # noqa: E402
from bench.history.db import open_history  # noqa: E402
from tests.history_demo import fill_demo  # noqa: E402

BROWSER_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dashboard")
    with open_history(root / "history.db") as history:
        fill_demo(history)
    write_dashboard(root / "history.db", root / "site")
    return root / "site"


class _Refs(HTMLParser):
    """Every href / src in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [value for name, value in attrs if name in ("href", "src") and value is not None]


def _refs(page: Path) -> list[str]:
    parser = _Refs()
    parser.feed(page.read_text())
    return parser.refs


def test_every_page_is_self_contained_and_every_link_resolves(site):
    pages = [site / "index.html", *sorted((site / "series").glob("*.html"))]
    assert len(pages) == 5  # the index and one page per machine and configuration
    for page in pages:
        text = page.read_text()
        assert not re.search(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", text), (
            f"{page} fetches from the network"
        )
        assert '<link rel="stylesheet"' not in text and "<script src" not in text
        for ref in _refs(page):
            if ref.startswith(("data:", "#")):
                continue
            assert (page.parent / ref).resolve().exists(), f"{page.name} links to missing {ref}"


def test_index_puts_cpu_and_gpu_side_by_side_in_one_table(site):
    index = (site / "index.html").read_text()
    table = index[index.index('<table id="latest">') : index.index("</table>")]
    assert "cpu &middot; 2 threads" in table and "cuda &middot; 16 threads" in table
    assert "NVIDIA H200" in table and "no GPU" in table
    eager_row = next(r for r in table.split("<tr>") if "<td>eager</td>" in r and "step_ms" in r)
    assert eager_row.count('class="num"><a href="series/') == 2  # both machines' train/eager


def test_series_page_charts_medians_with_commits_and_the_change(site):
    page = (site / "series" / "cpu0cpu0cpu0-train-cpu-eager-32-2-relu.html").read_text()
    assert page.count("<circle") == 40 and "<polyline" in page
    assert f">{60:012x}</text>" in page  # commits label the x axis
    assert 'class="change"' in page and re.search(r">\+(19|20)\.\d% \[", page)  # the label: size [interval]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    skip_or_fail("chromium not found for the browser test (apt-get install chromium; .ci/run installs it)")


def _browse(page: Path, profile: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # as root (containers, CI) Chromium refuses to start with its sandbox
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",  # console messages come out as `...:CONSOLE:...] "message"` lines
        "--v=0",
        f"--user-data-dir={profile}",
        *flags,
        page.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("index.html", ['<table id="latest">', '<table id="changes">', "train/cpu/eager/32/2/relu"]),
        (
            "series/cpu0cpu0cpu0-train-cpu-compile-32-2-relu.html",
            ["<svg", "<polyline", 'class="change"', "drift"],
        ),
    ],
)
def test_pages_render_in_chromium_without_errors(site, tmp_path, page, expected):
    result = _browse(site / page, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    for needle in expected:
        assert needle in dom
    errors = re.search(r'<pre id="script-errors"([^>]*)>(.*?)</pre>', dom, re.S)
    assert errors and "hidden" in errors.group(1) and errors.group(2) == "", errors.group(0)
    assert _console_lines(result.stderr) == []
    shot = tmp_path / (Path(page).stem + ".png")
    result = _browse(site / page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1300,1000")
    assert result.returncode == 0 and shot.stat().st_size > 20_000  # a rendered page, not a blank one
    assert _console_lines(result.stderr) == []


def test_the_browser_check_does_catch_a_script_error(tmp_path):
    """The negative control: a dashboard page (its real error hook) with a failing script is caught
    by both checks above."""
    page = tmp_path / "broken.html"
    page.write_text(dashboard_page("broken", '<script>console.error("boom"); undefinedFunction();</script>'))
    result = _browse(page, tmp_path / "profile", "--dump-dom")
    assert "undefinedFunction is not defined" in result.stdout
    assert any('"boom"' in line for line in _console_lines(result.stderr))


def test_a_folder_holding_the_users_own_index_html_is_refused_and_left_alone(site, tmp_path, capsys):
    """`bench dashboard --out DIR` rewrites only a folder it made (its marker file is there)."""
    from bench.__main__ import main as bench_main

    db = str(site.parent / "history.db")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("<p>my own page</p>")
    with pytest.raises(SystemExit) as exit_:
        bench_main(["dashboard", "--db", db, "--out", str(mine)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(
        f"python -m bench dashboard: error: {mine} already holds index.html that the dashboard"
    )
    assert (mine / "index.html").read_text() == "<p>my own page</p>" and sorted(mine.iterdir()) == [
        mine / "index.html"
    ]
    for _ in range(2):  # a folder the dashboard made is its own to rewrite
        assert bench_main(["dashboard", "--db", db, "--out", str(tmp_path / "made")]) == 0
    assert (tmp_path / "made/index.html").exists() and (site / ".sumnet-bench-dashboard").exists()
