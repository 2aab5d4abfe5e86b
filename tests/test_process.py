"""bench.measure.process: malloc's thresholds are pinned with glibc's mallopt, and page faults count."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure import process


class _FakeLibc:
    def __init__(self, result: int = 1):
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


def test_pin_malloc_sets_the_trim_then_the_mmap_threshold(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(process.ctypes, "CDLL", lambda name: libc)
    monkeypatch.setattr(process.sys, "platform", "linux")
    assert process.pin_malloc() is True
    assert libc.calls == [(-1, 1 << 30), (-3, 32 << 20)]  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD of malloc.h


def test_pin_malloc_is_false_where_mallopt_refuses_or_is_absent(monkeypatch):
    monkeypatch.setattr(process.sys, "platform", "linux")
    monkeypatch.setattr(process.ctypes, "CDLL", lambda name: _FakeLibc(result=0))
    assert process.pin_malloc() is False
    monkeypatch.setattr(process.ctypes, "CDLL", lambda name: object())  # musl: no mallopt
    assert process.pin_malloc() is False
    monkeypatch.setattr(process.sys, "platform", "darwin")
    assert process.pin_malloc() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_pin_malloc_takes_effect_with_the_real_glibc():
    code = "from bench.measure.process import pin_malloc; print(pin_malloc())"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.stdout.strip() == "True", proc.stderr


def test_minor_page_faults_count_the_pages_a_fresh_mapping_touches():
    import mmap

    pages = 256
    with mmap.mmap(-1, pages * mmap.PAGESIZE) as region:
        before = process.minor_page_faults()
        for page in range(pages):
            region[page * mmap.PAGESIZE] = 1
        assert process.minor_page_faults() - before >= pages // 2  # each fresh page faults (THP may merge)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux's /proc/self/clear_refs")
def test_the_peak_rss_is_reset_per_configuration():
    """A 400 MB array freed before the reset does not count in the next configuration's peak."""
    code = (
        "import numpy as np; from bench.measure.process import peak_rss_bytes, reset_peak_rss\n"
        "a = np.ones(50_000_000); before = peak_rss_bytes(); del a\n"
        "assert reset_peak_rss(); after = peak_rss_bytes()\n"
        "print(before > 350e6, after < before - 300e6)"
    )
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.stdout.split() == ["True", "True"], proc.stderr


def test_peak_rss_reads_vmhwm_and_none_without_it(tmp_path):
    (tmp_path / "status").write_text("Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n")
    assert process.peak_rss_bytes(tmp_path) == 2048 * 1024
    assert process.peak_rss_bytes(tmp_path / "absent") is None
    assert process.reset_peak_rss(tmp_path / "absent") is False
