"""fused: the one-kernel training step against torch eager on the same batches.

Without a GPU the kernel runs in Triton's interpreter on CPU tensors: this module sets
TRITON_INTERPRET=1 before triton (and bench.modes.fused_kernel, whose @triton.jit reads it) is imported.
With a GPU it leaves the variable alone, so the same tests run the compiled kernel on CUDA and the
rest of the session's Triton kernels (inductor's) stay compiled. Tests skip where triton is absent.
The interpreter computes every `tl.dot` in float32 whatever its input_precision, so "ieee" and
"tf32x3" differ only in the CUDA tests.

    .venv/bin/python -m pytest -q tests/test_fused.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the first `import triton`

import pytest

pytest.importorskip("triton", reason="triton is not installed: the fused mode's kernel needs it")

from bench.modes import fused  # noqa: E402
from bench.modes.fused import FusedTrainer  # noqa: E402
from sumnet.data import make_batch, make_generator, make_test_set  # noqa: E402
from sumnet.evaluate import metrics_from_predictions  # noqa: E402
from sumnet.model import NetConfig  # noqa: E402
from sumnet.train import TrainConfig, init_net, make_optimizer, train_step  # noqa: E402

INTERPRETING = fused._interpreting()
DEVICE = torch.device("cpu" if INTERPRETING else "cuda")
# Kernel and eager differ only in summation order (the dots, the loss and bias reductions), one
# float32 ulp (6e-8 relative) per reduction, which Adam carries forward: measured 1.4e-7 relative on
# the losses after 20 interpreter steps, 3e-8 absolute on the weights. The tolerances allow 70x
# that; a real fault moves the losses by 1e-3 or more (Adam's bias correction one step late: 2.6e-3).
# On CUDA eager's foreach Adam and cuBLAS round in their own ways: ten times looser.
LOSS_RTOL = 1e-5 if INTERPRETING else 1e-4
PARAM_ATOL = 2e-6 if INTERPRETING else 2e-5

COMPILED_ONLY = "TRITON_INTERPRET=1 is set: the CUDA tests need the compiled kernel"
# In a whole-suite run another module may import triton first (torch.utils.flop_counter does):
# then triton's library is compiled and the interpreter cannot run the kernel; say so and skip.
# (Also skips with TRITON_INTERPRET=0 set by hand and no GPU.)
KERNEL_UNAVAILABLE = fused.unavailable_reason(DEVICE)
runs_kernel = pytest.mark.skipif(KERNEL_UNAVAILABLE is not None, reason=str(KERNEL_UNAVAILABLE))


def _eager_on(batches, net_config, config):
    """torch eager (init_net, torch.optim.Adam, train_step) on the given batches: (losses, net, optimizer)."""
    net = init_net(net_config, config.seed, DEVICE)
    optimizer = make_optimizer(net, config.lr)
    losses = torch.stack([train_step(net, optimizer, x, y.reshape(-1, 1)) for x, y in zip(*batches)])
    return losses, net, optimizer


def _assert_matches_eager(fused_trainer, eager_losses, losses, net, optimizer):
    torch.testing.assert_close(losses, eager_losses, rtol=LOSS_RTOL, atol=0)
    for name, param in fused_trainer.parameters().items():
        torch.testing.assert_close(param, net.get_parameter(name), rtol=0, atol=PARAM_ATOL, msg=name)
    for name, exp_avg in fused_trainer.views(fused_trainer.exp_avg).items():
        want = optimizer.state[net.get_parameter(name)]["exp_avg"]
        torch.testing.assert_close(exp_avg, want, rtol=LOSS_RTOL, atol=1e-7, msg=name)


@runs_kernel
@pytest.mark.parametrize(
    "net_config, batch_size, seed",
    [
        # The article's Net (30 -> 32, 60 -> 64 padded); seed 4 starts with about half the outputs
        # above 0, so the output ReLU's gradient mask is exercised both ways.
        (NetConfig(output_activation="relu"), 32, 4),
        (NetConfig(hidden_size=50, output_activation="none"), 20, 3),  # padded rows and units
    ],
)
def test_matches_eager_on_the_same_batches(net_config, batch_size, seed):
    """12 steps fed torch's batches (one launch of 8, then 4), against eager on those batches."""
    config = TrainConfig(batch_size=batch_size, seed=seed)
    generator = make_generator(5, DEVICE)
    x, y = (torch.stack(t) for t in zip(*(make_batch(batch_size, generator) for _ in range(12))))
    eager_losses, net, optimizer = _eager_on((x, y), net_config, config)
    trainer = FusedTrainer(DEVICE, net_config, config)
    losses = torch.cat([trainer.launch(8, batches=(x[:8], y[:8])), trainer.launch(4, batches=(x[8:], y[8:]))])
    _assert_matches_eager(trainer, eager_losses, losses, net, optimizer)
    start = init_net(net_config, seed, DEVICE)
    assert all(not torch.equal(p, start.get_parameter(n)) for n, p in trainer.parameters().items())
    assert int(trainer.steps_done) == 12
    probe = make_batch(64, make_generator(9, DEVICE))[0]
    with torch.no_grad():
        torch.testing.assert_close(trainer.predict(probe), net(probe), rtol=1e-5, atol=PARAM_ATOL)


@runs_kernel
def test_philox_batches_lie_on_the_grid_and_train_as_eager_does():
    """The in-kernel batch: values k/100 for k in 0..100, target the row sum, and eager trained on
    the very batches the kernel recorded follows the kernel's losses."""
    steps, config = 6, TrainConfig(seed=1)
    trainer = FusedTrainer(DEVICE, NetConfig(), config)
    x = torch.full((steps, 32, 30), -1.0, device=DEVICE)
    y = torch.full((steps, 32), -1.0, device=DEVICE)
    losses = trainer.launch(steps, record=(x, y))
    assert x.min() >= 0 and x.max() <= 1
    ints = (x * 100).round()
    assert torch.equal(ints / 100, x)  # exactly torch's `ints / 100` in float32: on the 1/100 grid
    assert set(ints.unique().tolist()) == set(range(101))  # 5,760 draws show every value 0..100
    torch.testing.assert_close(y, x.sum(dim=2), rtol=0, atol=1e-5)  # a few float32 ulps of a sum <= 30
    assert all(not torch.equal(x[i], x[i + 1]) for i in range(steps - 1))  # a fresh batch per step
    eager_losses, net, optimizer = _eager_on((x, y), NetConfig(), config)
    _assert_matches_eager(trainer, eager_losses, losses, net, optimizer)


@runs_kernel
def test_k_steps_in_one_launch_equal_k_launches_of_one_step():
    """The persistent loop keeps state on chip between steps exactly as a store and reload would."""
    one_launch = FusedTrainer(DEVICE, NetConfig(), TrainConfig(seed=2))
    many = FusedTrainer(DEVICE, NetConfig(), TrainConfig(seed=2))
    losses = one_launch.launch(7)
    single = torch.stack([many.launch(1)[0] for _ in range(7)])
    assert torch.equal(losses, single)
    for got, want in zip(one_launch._state(), many._state()):
        assert torch.equal(got, want)


@runs_kernel
def test_seed_picks_the_batches():
    def first_losses(seed):
        return FusedTrainer(DEVICE, NetConfig(), TrainConfig(seed=seed)).launch(3)

    assert torch.equal(first_losses(0), first_losses(0))
    # Other seed: other initial weights and other draws.
    assert not torch.equal(first_losses(0), first_losses(1))


@runs_kernel
def test_trainer_interface_and_notes():
    trainer = fused.build_trainer(DEVICE, NetConfig(), TrainConfig())
    losses = [trainer.step() for _ in range(3)]
    assert all(loss.dim() == 0 and torch.isfinite(loss) for loss in losses)
    x = make_batch(10, make_generator(0, DEVICE))[0]
    assert trainer.predict(x).shape == (10, 1)
    torch.testing.assert_close(trainer.inference(x)(), trainer.predict(x))
    notes = " | ".join(trainer.notes)
    assert "fp32 dots" in notes and "K = 1 step per launch" in notes and "tl.randint" in notes


def test_unavailable_reason(monkeypatch):
    if INTERPRETING:
        assert fused.unavailable_reason("cpu") == KERNEL_UNAVAILABLE  # None, unless triton came first
        assert "interpreter" in fused.unavailable_reason("cuda")
    monkeypatch.setenv(fused.INTERPRET_ENV, "0")
    assert fused.unavailable_reason("cpu") == (
        "fused runs on cuda only (set TRITON_INTERPRET=1 to run it on the CPU interpreter for tests)"
    )
    monkeypatch.setattr(fused.importlib.util, "find_spec", lambda name: None)
    assert fused.unavailable_reason("cuda") == "triton is not installed"
    with pytest.raises(ValueError, match="triton is not installed"):
        fused.build_trainer(DEVICE, NetConfig(), TrainConfig())


@pytest.mark.parametrize(
    "kwargs, net_config, config, match",
    [
        ({"precision": "tf32"}, NetConfig(), TrainConfig(), "precision must be one of ieee, tf32x3"),
        ({}, NetConfig(hidden_layers=3), TrainConfig(), "2 hidden layers"),
        ({}, NetConfig(), TrainConfig(batch_size=200), "batch_size <= 128"),
    ],
)
def test_refuses_what_it_cannot_run(kwargs, net_config, config, match):
    with pytest.raises(ValueError, match=match):
        FusedTrainer(DEVICE, net_config, config, **kwargs)


@pytest.mark.slow
def test_compiles_for_sm90_without_a_gpu():
    """The interpreter cannot tell whether the kernel lowers for a GPU; ptxas (shipped with triton) can,
    here: compiled for sm_90 in a process without TRITON_INTERPRET, within the register file."""
    code = "import json; from bench.modes.fused_kernel import compiled_resources; print(json.dumps(compiled_resources()))"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_DEFAULT_FP_FUSION"} | {"TRITON_INTERPRET": "0"}
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    usage = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0 < usage["registers"] <= 255 and usage["shared_bytes"] <= 228 * 1024, usage
    assert "FP_FUSION" not in done.stderr  # the kernel states its FMA choice; Triton need not warn


@pytest.mark.parametrize("precision", ["ieee", "tf32x3"])
@pytest.mark.cuda
@pytest.mark.skipif(INTERPRETING, reason=COMPILED_ONLY)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_converges_on_cuda(precision):
    """The article's 3000 steps, one graph replay each: held-out MAE below 0.01 (eager reaches 0.0017)."""
    trainer = FusedTrainer(torch.device("cuda"), NetConfig(), TrainConfig(), precision=precision)
    for _ in range(3000):
        loss = trainer.step()
    assert torch.isfinite(loss)
    test_set = make_test_set().to("cuda")
    metrics = metrics_from_predictions(trainer.predict(test_set.inputs), test_set.targets)
    assert metrics.mae < 0.01, metrics


@pytest.mark.cuda
@pytest.mark.skipif(INTERPRETING, reason=COMPILED_ONLY)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_graph_replays_equal_direct_launches_on_cuda():
    """Graph replays (of 1-step and 30-step launches) continue from device state bit for bit as direct launches."""
    graphed = FusedTrainer(torch.device("cuda"), NetConfig(), TrainConfig())
    direct = FusedTrainer(torch.device("cuda"), NetConfig(), TrainConfig(), cuda_graph=False)
    replayed = torch.stack([graphed.step().clone() for _ in range(20)])
    launched = torch.stack([direct.launch(1)[0] for _ in range(20)])
    assert torch.equal(replayed, launched)
    assert torch.equal(graphed.train_steps(30), direct.launch(30))
