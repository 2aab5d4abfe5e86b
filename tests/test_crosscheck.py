"""`python -m bench.crosscheck`: its flags, one line with exit 2 for bad input, and a tiny real run.

All in-process through `bench.crosscheck.main(argv)`.
"""

import re

import pytest
import torch

from bench.commands import crosscheck

RATIO_LINE = re.compile(
    r"^harness (?P<ours>\d+\.\d) us/step, torch Timer (?P<theirs>\d+\.\d) us/step, ratio (?P<ratio>\d+\.\d{3})$"
)


def _bad_input(capsys, argv: list[str]) -> str:
    """Run main(argv), expect exit 2, nothing on stdout and one line on stderr; return that line."""
    with pytest.raises(SystemExit) as exit_info:
        crosscheck.main(argv)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("python -m bench.crosscheck: error: "), err
    return err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "-5"], "unrecognized arguments: --steps -5"),
        (["--rounds", "0"], "argument --rounds: expected a positive integer, got 0"),
        (["--rounds=-3"], "argument --rounds: expected a positive integer, got -3"),
        (["--rounds", "1001"], "argument --rounds: expected at most 1,000"),
        (["--calls", "abc"], "argument --calls: expected a positive integer, got 'abc'"),
        (["--calls", "0"], "argument --calls: expected a positive integer, got 0"),
        (["--calls", "99999999999999999999"], "argument --calls: expected at most 100,000"),
        (["--mode", "turbo"], "argument --mode: invalid choice: 'turbo'"),
        (["--mode", "cudagraph", "--device", "cpu"], "--mode cudagraph cannot run on cpu"),
        (["--mode", "numpy-reference", "--device", "meta"], "unknown device 'meta'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert message in _bad_input(capsys, argv)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_exits_2(capsys):
    assert "device cuda is not available" in _bad_input(capsys, ["--device", "cuda"])


def test_bad_slowdown_variable_exits_2(capsys, monkeypatch):
    monkeypatch.setenv("SUMNET_BENCH_SLOWDOWN", "abc")
    assert "SUMNET_BENCH_SLOWDOWN" in _bad_input(capsys, ["--rounds", "1", "--calls", "1"])


def test_help_lists_the_flags_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        crosscheck.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--device", "--mode", "--rounds", "--calls"):
        assert flag in out


def test_tiny_real_run_prints_the_ratio_line_and_a_consistent_verdict(capsys):
    """Two rounds of five eager steps: too short to agree reliably, so only the format and the
    agreement between ratio, verdict and exit code are checked."""
    code = crosscheck.main(["--device", "cpu", "--mode", "eager", "--rounds", "2", "--calls", "5"])
    ratio_line, verdict_line = capsys.readouterr().out.splitlines()
    match = RATIO_LINE.match(ratio_line)
    assert match is not None, ratio_line
    ours, theirs, ratio = (float(match[k]) for k in ("ours", "theirs", "ratio"))
    assert ours > 0 and theirs > 0
    assert ratio == pytest.approx(ours / theirs, rel=0.01, abs=0.002)  # the printed values are rounded
    within = abs(ratio - 1) <= crosscheck.TOLERANCE
    assert verdict_line == ("within 10%" if within else "OUTSIDE 10%")
    assert code == (0 if within else 1)


@pytest.mark.parametrize(
    "medians, code, verdict", [((1.0, 1.05), 0, "within 10%"), ((1.0, 1.25), 1, "OUTSIDE 10%")]
)
def test_exit_code_follows_the_ratio(capsys, monkeypatch, medians, code, verdict):
    monkeypatch.setattr(crosscheck, "crosscheck", lambda *args: medians)
    assert crosscheck.main([]) == code
    assert capsys.readouterr().out.splitlines()[-1] == verdict


def test_flags_reach_the_check(monkeypatch):
    seen = []
    monkeypatch.setattr(crosscheck, "crosscheck", lambda *args: seen.append(args) or (1.0, 1.0))
    assert crosscheck.main(["--mode", "numpy-reference", "--rounds", "3", "--calls", "7"]) == 0
    assert seen == [("cpu", "numpy-reference", 3, 7)]
