import subprocess
import sys

import pytest
import torch


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "sumnet", *args], capture_output=True, text=True, timeout=300
    )


def test_demo_prints_article_log_table_and_verdict():
    proc = _run("--steps", "200")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "Epoch [100/200], Loss: " in proc.stdout and "Epoch [200/200], Loss: " in proc.stdout
    table = [line for line in lines if line[:2].strip().isdigit()]
    assert len(table) == 10 and table[0].startswith("1 ") and table[-1].startswith("10 ")
    assert "Held-out (10,000 rows): MAE" in lines[-1] and "CONVERGED" in lines[-1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "positive integer"),
        (["--batch-size", "-3"], "positive integer"),
        (["--lr", "0"], "positive number"),
        (["--device", "tpu"], "unknown device"),
        (["--output-activation", "tanh"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    proc = _run(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_exits_2():
    proc = _run("--device", "cuda")
    assert proc.returncode == 2 and "not available" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
