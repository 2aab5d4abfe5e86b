"""`python -m sumnet`: the demo's output, its verdict line, and one line with exit 2 for bad input.

Everything runs in-process through `sumnet.demo.main(argv)`; one subprocess run checks the
real `python -m sumnet` entry point end to end.
"""

import re
import subprocess
import sys

import pytest
import torch

from sumnet import demo as cli
from sumnet.train import MAX_BATCH_SIZE, MAX_STEPS

VERDICT_LINE = re.compile(
    r"^Held-out \(10,000 rows\): MAE (?P<mae>\d+\.\d{4}), exact-sum accuracy \d+\.\d%, "
    r"(?P<verdict>NOT CONVERGED|CONVERGED): (?P<reason>.+)$"
)


def _verdict(last_line: str) -> re.Match:
    match = VERDICT_LINE.match(last_line)
    assert match is not None, f"not a verdict line: {last_line!r}"
    return match


def _bad_input(capsys, argv: list[str], started: bool = False) -> str:
    """Run main(argv), expect exit 2 and one line on stderr; return that line.

    Input refused before the run `started` prints nothing on stdout.
    """
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert started or out == ""
    assert len(err.splitlines()) == 1 and err.startswith("python -m sumnet: error: "), err
    assert "Traceback" not in err
    return err


def test_demo_end_to_end_prints_log_table_and_exact_verdict():
    """The one real subprocess: `python -m sumnet` as a user types it (200 steps: not yet converged)."""
    proc = subprocess.run(
        [sys.executable, "-m", "sumnet", "--steps", "200"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Training the Net (5,581 parameters) on cpu, seed 0")
    assert "Epoch [100/200], Loss: " in proc.stdout and "Epoch [200/200], Loss: " in proc.stdout
    table = [line for line in lines if line[:2].strip().isdigit()]
    assert len(table) == 10 and table[0].startswith("1 ") and table[-1].startswith("10 ")
    verdict = _verdict(lines[-1])
    assert verdict["verdict"] == "NOT CONVERGED"
    assert verdict["reason"] == f"MAE {verdict['mae']} still above target 0.01"


def test_verdict_says_converged_when_mae_is_below_the_target(capsys):
    assert cli.main(["--steps", "20", "--target-mae", "100"]) == 0
    verdict = _verdict(capsys.readouterr().out.splitlines()[-1])
    assert verdict["verdict"] == "CONVERGED"
    assert verdict["reason"] == f"MAE {verdict['mae']} < target 100"


def test_verdict_names_a_dead_output_relu(capsys):
    """Two steps at lr 1 kill the output ReLU from seed 0: every prediction 0, said as such."""
    assert cli.main(["--steps", "2", "--lr", "1"]) == 0
    verdict = _verdict(capsys.readouterr().out.splitlines()[-1])
    assert verdict["verdict"] == "NOT CONVERGED"
    assert verdict["reason"].startswith("dead output: every prediction is 0")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "expected a positive integer, got 0"),
        (["--steps", "-5"], "expected a positive integer, got -5"),
        (["--steps", "abc"], "expected a positive integer, got 'abc'"),
        (["--steps", "99999999999999999999999"], f"expected at most {MAX_STEPS:,}"),
        (["--steps", str(MAX_STEPS + 1)], f"expected at most {MAX_STEPS:,}"),
        (["--batch-size", "-3"], "expected a positive integer, got -3"),
        (["--batch-size", "10000000000", "--steps", "1"], f"expected at most {MAX_BATCH_SIZE:,}"),
        (["--batch-size", str(MAX_BATCH_SIZE + 1)], f"expected at most {MAX_BATCH_SIZE:,}"),
        (["--lr", "0"], "expected a learning rate from 1e-08 to 1, got 0"),
        (["--lr=-1e-3"], "expected a learning rate from 1e-08 to 1"),
        (["--lr", "1e39"], "expected a learning rate from 1e-08 to 1, got 1e39"),
        (["--lr", "1e38"], "expected a learning rate from 1e-08 to 1"),
        (["--lr", "1.5"], "expected a learning rate from 1e-08 to 1"),
        (["--lr", "1e-9"], "expected a learning rate from 1e-08 to 1"),
        (["--lr", "nan"], "expected a learning rate from 1e-08 to 1, got nan"),
        (["--lr", "inf"], "expected a learning rate from 1e-08 to 1, got inf"),
        (["--lr", "abc"], "expected a number, got 'abc'"),
        (["--seed", "-1"], "expected an integer >= 0"),
        (["--seed", str(2**63)], "at most 2**63 - 1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--device", ""], "unknown device ''"),
        (["--device", "cuda:-1"], "unknown device 'cuda:-1'"),
        (["--output-activation", "tanh"], "invalid choice"),
        (["--target-mae", "0"], "expected a positive number"),
        (["--target-mae", "nan"], "expected a positive number"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert message in _bad_input(capsys, argv)


def test_the_bounds_themselves_are_accepted():
    args = cli._parse(["--steps", str(MAX_STEPS), "--batch-size", str(MAX_BATCH_SIZE), "--lr", "1"])
    assert (args.steps, args.batch_size, args.lr) == (MAX_STEPS, MAX_BATCH_SIZE, 1.0)
    assert cli._parse(["--lr", "1e-8"]).lr == 1e-8


def test_help_states_the_bounds(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert f"1 to {MAX_STEPS:,}" in out and f"1 to {MAX_BATCH_SIZE:,}" in out and "1e-08 to 1" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_exits_2(capsys):
    assert "not available" in _bad_input(capsys, ["--device", "cuda"])


def _raise(err: BaseException):
    def run(*args, **kwargs):
        raise err

    return run


def test_allocation_failure_is_one_line_and_exit_2(capsys, monkeypatch):
    """What the CPU allocator raises when a batch does not fit (seen with --batch-size 1e10)."""
    oom = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 2400000000000 bytes.\nError code 12 (Cannot allocate memory)"
    )
    monkeypatch.setattr(cli, "train", _raise(oom))
    line = _bad_input(capsys, ["--batch-size", "1000"], started=True)
    assert "out of memory on cpu with --batch-size 1,000" in line and "can't allocate memory" in line


def test_cuda_out_of_memory_is_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.setattr(cli, "train", _raise(torch.cuda.OutOfMemoryError("CUDA out of memory.\nTried ...")))
    assert "out of memory on cpu" in _bad_input(capsys, [], started=True)


def test_other_runtime_errors_are_not_hidden(monkeypatch):
    """Only allocation failures become a usage error; a bug keeps its traceback."""
    monkeypatch.setattr(cli, "train", _raise(RuntimeError("mat1 and mat2 shapes cannot be multiplied")))
    with pytest.raises(RuntimeError, match="shapes"):
        cli.main([])
