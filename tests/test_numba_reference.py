"""numba-reference: the same Net, data and Adam as torch's eager training, as one compiled step.

Tolerance against torch: rtol 1e-4 on each loss and on the weights after 20 steps. Both sides are
IEEE float32 without fast-math, but they sum the products of each matrix product in another order
(tiles of 2 x 64 here, MKL/oneDNN blocks in torch), so each step differs by rounding: about 2e-7
relative, measured. 1e-4 leaves room for that to grow over 20 Adam steps, and is still 10 to 100
times smaller than what a wrong term (a missed bias gradient, Adam without bias correction, a ReLU
gate on the wrong side) does to the loss within those steps.

    .venv/bin/python -m pytest tests/test_numba_reference.py
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bench
from bench.modes import numba_reference
from bench.modes.numba_reference import EXP_AVG, EXP_AVG_SQ, GRADS, PARAMS, NumbaNet
from sumnet.data import make_batch, make_generator, make_test_set
from sumnet.evaluate import metrics_from_predictions, verdict
from sumnet.model import NetConfig
from sumnet.train import TrainConfig, init_net, make_optimizer, train_step


def _step_on_batch(model: NumbaNet, x: np.ndarray, y: np.ndarray) -> float:
    """The compiled step on a given batch x (batch, input_size), y (batch, 1) instead of a drawn one."""
    _inputs(model)[...] = x
    _targets(model)[...] = y
    return numba_reference._train_step(model.ws, model.meta, model.state, model.lr, False)


needs_numba = pytest.mark.skipif(numba_reference.numba is None, reason=numba_reference.NUMBA_MISSING)
RTOL = 1e-4  # see the module docstring
STEPS = 20
CPU = torch.device("cpu")
MASK64 = 2**64 - 1
GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _torch_params(net):
    return [p.detach().numpy() for p in net.parameters()]


def _inputs(model: NumbaNet) -> np.ndarray:
    """A view of the batch the last step trained on, (batch, input_size), in the workspace."""
    m = model.meta
    bp, width = m[numba_reference._BATCH_PAD], m[numba_reference._INPUT_PAD]
    x = model.ws[m[numba_reference._X] :][: bp * width].reshape(bp, width)
    return x[: m[numba_reference._BATCH], : m[numba_reference._INPUT]]


def _targets(model: NumbaNet) -> np.ndarray:
    """A view of the last batch's targets, (batch, 1), in the workspace."""
    return model.ws[model.meta[numba_reference._Y] :][: model.meta[numba_reference._BATCH], None]


def _layer_parameters(model: NumbaNet) -> list[np.ndarray]:
    """(weight (out, in), bias (out,)) of each layer from the padded workspace, in torch's order."""
    config, result = model.config, []
    for layer in range(config.hidden_layers):
        wt, b = model.hidden_weights(layer)
        n_in = config.input_size if layer == 0 else config.hidden_size
        result += [wt[:n_in, : config.hidden_size].T.copy(), b[: config.hidden_size].copy()]
    w_out, b_out = model.output_weights()
    return [*result, w_out[None, : config.hidden_size].copy(), b_out.copy()]


def _splitmix64(counter: int) -> int:
    """splitmix64's output for a counter value, in plain Python integers (the reference)."""
    z = counter & MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def _lemire(bits64: int) -> tuple[int, bool]:
    """(integer 0..100, accepted) from the top 32 bits, as Lemire's unbiased method draws it."""
    m = (bits64 >> 32) * 101
    return m >> 32, (m & 0xFFFFFFFF) >= 2**32 % 101


def _model(net_config=NetConfig(), seed=0, batch_size=32):
    return NumbaNet(init_net(net_config, seed), batch_size=batch_size, lr=1e-3, seed=seed)


@needs_numba
def test_initial_weights_are_init_nets_exactly():
    model = _model(seed=4)
    for got, want in zip(_layer_parameters(model), _torch_params(init_net(NetConfig(), seed=4))):
        assert got.dtype == np.float32 and np.array_equal(got, want)
    assert sum(p.size for p in _layer_parameters(model)) == 5581  # the article's Net
    assert model.ws.ctypes.data % 64 == 0  # every region starts on a cache line


@needs_numba
@pytest.mark.parametrize("activation", ["relu", "none"])
def test_same_batches_give_torch_eager_training(activation):
    net_config = NetConfig(output_activation=activation)
    net = init_net(net_config, seed=2)
    optimizer = make_optimizer(net)
    model = _model(net_config, seed=2)
    generator = make_generator(8)
    for _ in range(STEPS):
        x, y = make_batch(32, generator)
        want = train_step(net, optimizer, x, y).item()
        assert _step_on_batch(model, x.numpy(), y.numpy()) == pytest.approx(want, rel=RTOL)
    for got, want in zip(_layer_parameters(model), _torch_params(net)):
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), rtol=RTOL, atol=1e-6)
    x = make_batch(101, make_generator(3))[0]  # an odd count: the padding row must not leak
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(model.predict(x.numpy())), net(x), rtol=RTOL, atol=1e-5)


@needs_numba
@pytest.mark.parametrize(
    "net_config, batch_size",
    [
        (NetConfig(input_size=5, hidden_size=100, hidden_layers=1, output_activation="none"), 7),
        (NetConfig(input_size=31, hidden_size=17, hidden_layers=3), 33),
    ],
)
def test_other_shapes_pad_and_still_match_torch(net_config, batch_size):
    """Odd batch and input widths, a hidden width padded to 128 or from 17, one and three layers."""
    net = init_net(net_config, seed=1)
    optimizer = make_optimizer(net)
    model = _model(net_config, seed=1, batch_size=batch_size)
    generator = make_generator(5)
    for _ in range(5):
        x, y = make_batch(batch_size, generator, net_config.input_size)
        want = train_step(net, optimizer, x, y).item()
        assert _step_on_batch(model, x.numpy(), y.numpy()) == pytest.approx(want, rel=RTOL)
    for got, want in zip(_layer_parameters(model), _torch_params(net)):
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), rtol=RTOL, atol=1e-6)


def _dead_output_model(activation):
    """Output weights 0 and bias -1: the output's pre-activation is -1 on every row."""
    model = _model(NetConfig(output_activation=activation), batch_size=4)
    w_out, b_out = model.output_weights()
    w_out[:] = 0.0
    b_out[:] = -1.0
    return model


@needs_numba
def test_output_relu_blocks_gradient_where_output_is_zero():
    """With every output clamped to 0 by the ReLU, no gradient flows: Adam leaves the weights alone,
    and moments below float32's smallest normal are flushed to zero instead of kept as subnormals."""
    model = _dead_output_model("relu")
    model.flat(EXP_AVG)[:] = 1.2e-38  # times 0.9 this step: subnormal
    model.flat(EXP_AVG_SQ)[:] = 0.0
    before = model.flat(PARAMS).copy()
    x, y = np.full((4, 30), 0.5, dtype=np.float32), np.full((4, 1), 15.0, dtype=np.float32)
    assert _step_on_batch(model, x, y) == pytest.approx(15.0**2)
    assert not model.flat(GRADS).any()
    assert not model.flat(EXP_AVG).any()
    assert np.array_equal(model.flat(PARAMS), before)


@needs_numba
def test_output_activation_none_trains_through_a_negative_output():
    """The same Net with output_activation "none": the output stays -1, and every layer gets a gradient."""
    model = _dead_output_model("none")
    x = np.full((4, 30), 0.5, dtype=np.float32)
    assert model.predict(x)[:, 0].tolist() == [-1.0] * 4
    assert _step_on_batch(model, x, np.full((4, 1), 15.0, dtype=np.float32)) == pytest.approx(16.0**2)
    _, db_out = model.output_weights(GRADS)
    assert db_out[0] == pytest.approx(2 * -16.0)  # d mean((out - y)^2) / d bias
    w_out_grad, _ = model.output_weights(GRADS)
    assert w_out_grad[:60].any()  # the hidden layers' outputs feed the output weights' gradient


@needs_numba
def test_batches_are_splitmix64_lemire_draws_over_100_with_row_sum_targets():
    """The draws are the documented stream, exactly: value n (row-major) of step s is Lemire's
    integer from splitmix64 of counter seed + (960 s + n + 1) * golden; each value is that integer
    divided by 100 as torch divides it, and the target is the row sum."""
    seed = 11
    model = _model(seed=seed)
    torch_values = (torch.arange(101, dtype=torch.float32) / 100).numpy()
    for step in range(2):
        model.step()
        ints = []
        for n in range(32 * 30):
            value, accepted = _lemire(_splitmix64(seed + (step * 960 + n + 1) * GOLDEN))
            assert accepted  # a rejection here would need the redraw path (tested below)
            ints.append(value)
        want = torch_values[np.array(ints).reshape(32, 30)]
        np.testing.assert_array_equal(_inputs(model), want)
        np.testing.assert_allclose(_targets(model)[:, 0], want.astype(np.float64).sum(axis=1), rtol=1e-6)


@needs_numba
def test_a_rejected_draw_is_redrawn_from_the_stream_after_the_batch():
    """splitmix64 maps counter 0 to 0, which Lemire's method rejects (probability 68 in 2**32)."""
    model = _model()
    base = -GOLDEN & MASK64  # the batch's first counter, base + GOLDEN, is 0
    model.state[numba_reference._STATE_RNG] = base
    model.step()
    assert _lemire(_splitmix64(0)) == (0, False)
    redraw, accepted = _lemire(_splitmix64(base + (32 * 30 + 1) * GOLDEN))
    assert accepted
    assert _inputs(model)[0, 0] == np.float32(redraw) / np.float32(100)
    second, _ = _lemire(_splitmix64(base + 2 * GOLDEN))
    assert _inputs(model)[0, 1] == np.float32(second) / np.float32(100)
    assert int(model.state[numba_reference._STATE_RNG]) == (base + (32 * 30 + 1) * GOLDEN) & MASK64


@needs_numba
def test_batch_values_cover_0_to_100_evenly():
    model = _model(batch_size=256)
    counts = np.zeros(101, dtype=np.int64)
    for _ in range(10):  # 76,800 draws, about 760 per value
        model.step()
        counts += np.bincount(np.rint(_inputs(model) * 100).astype(np.int64).ravel(), minlength=101)
    expected = counts.sum() / 101
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert counts.min() > 0 and chi_square < 161  # 100 degrees of freedom: P(chi2 > 161) = 1e-4


@needs_numba
def test_same_seed_same_losses_and_trainers_do_not_share_a_stream():
    config = TrainConfig(seed=0)
    first = numba_reference.build_trainer(CPU, NetConfig(), config)
    solo = [first.step() for _ in range(50)]
    a = numba_reference.build_trainer(CPU, NetConfig(), config)
    b = numba_reference.build_trainer(CPU, NetConfig(), config)
    interleaved = []
    for _ in range(50):
        interleaved.append(a.step())
        b.step()
    assert interleaved == solo  # exact: same seed, same draws and same arithmetic
    other = numba_reference.build_trainer(CPU, NetConfig(), TrainConfig(seed=1))
    assert [other.step() for _ in range(50)] != solo


@needs_numba
@pytest.mark.parametrize("activation", ["relu", "none"])
def test_article_training_converges(activation):
    trainer = numba_reference.build_trainer(
        CPU, NetConfig(output_activation=activation), TrainConfig(steps=3000, seed=0)
    )
    losses = [trainer.step() for _ in range(3000)]
    assert all(isinstance(loss, float) for loss in losses[:3])
    assert losses[-1] < losses[0] / 100
    test_set = make_test_set()
    predictions = trainer.predict(test_set.inputs)
    assert isinstance(predictions, torch.Tensor) and predictions.shape == (len(test_set.inputs), 1)
    metrics = metrics_from_predictions(predictions, test_set.targets)
    assert verdict(metrics).converged and metrics.mae < 0.01, metrics
    x = test_set.inputs[:1023]
    np.testing.assert_array_equal(trainer.inference(x)(), trainer.predict(x).numpy())


@needs_numba
def test_the_compiled_step_allocates_nothing():
    """NRT counts every allocation; a step makes only the argument wrappers a no-op call makes."""
    import numba
    from numba.core.runtime import _nrt_python, rtsys

    model = _model()
    args = (model.ws, model.meta, model.state, model.lr, True)
    probe = numba.njit(lambda ws, meta, state, lr, draw: 0.0)
    probe(*args)
    model.step()
    was_enabled = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    try:
        start = rtsys.get_allocation_stats().alloc
        for _ in range(10):
            probe(*args)
        middle = rtsys.get_allocation_stats().alloc
        for _ in range(10):
            model.step()
        end = rtsys.get_allocation_stats().alloc
    finally:
        if not was_enabled:
            _nrt_python.memsys_disable_stats()
    assert end - middle == middle - start


@needs_numba
def test_refuses_other_devices():
    with pytest.raises(ValueError, match="CPU only"):
        numba_reference.build_trainer(torch.device("cuda"), NetConfig(), TrainConfig())


@needs_numba
def test_unavailable_reason_is_none_with_numba():
    assert numba_reference.unavailable_reason() is None


def test_without_numba_the_module_imports_and_says_why_it_cannot_run(monkeypatch):
    """Import the module's file afresh while `import numba` fails, as on a machine without numba."""
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    spec = importlib.util.spec_from_file_location("_numba_reference_without_numba", numba_reference.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert module.unavailable_reason() == "numba is not installed: pip install numba"
    with pytest.raises(RuntimeError, match="pip install numba"):
        module.build_trainer(CPU, NetConfig(), TrainConfig())


def test_build_trainer_refuses_when_numba_is_missing(monkeypatch):
    monkeypatch.setattr(numba_reference, "numba", None)
    assert numba_reference.unavailable_reason() == numba_reference.NUMBA_MISSING
    with pytest.raises(RuntimeError, match="numba is not installed"):
        numba_reference.build_trainer(CPU, NetConfig(), TrainConfig())


_CACHE_PROBE = """
import importlib
import torch
from sumnet.model import NetConfig
from sumnet.train import TrainConfig
nr = importlib.import_module("{module}")
nr.build_trainer(torch.device("cpu"), NetConfig(), TrainConfig()).step()
stats = nr._train_step.stats
print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), stats.cache_path)
"""


@pytest.mark.slow
@needs_numba
def test_compiled_step_is_cached_where_the_package_cannot_be_written(tmp_path):
    """A file stands where the module's __pycache__ would go, so nothing can be written there (as in a
    read-only install): numba falls back to the user-wide cache, and a second process loads the
    compiled step from it instead of compiling again."""
    root = Path(bench.__file__).resolve().parents[1]
    tree = tmp_path / "tree"
    for package in ("bench", "sumnet"):
        shutil.copytree(root / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    module_dir = tree.joinpath(*numba_reference.__name__.split(".")[:-1])
    (module_dir / "__pycache__").write_text("not a directory")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(tree), XDG_CACHE_HOME=str(tmp_path / "user-cache"), PYTHONDONTWRITEBYTECODE="1")

    def run() -> list[str]:
        probe = subprocess.run(
            [sys.executable, "-c", _CACHE_PROBE.format(module=numba_reference.__name__)],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert probe.returncode == 0, probe.stderr
        return probe.stdout.split()

    hits, misses, cache_path = run()
    assert (hits, misses) == ("0", "1") and cache_path.startswith(str(tmp_path / "user-cache"))
    hits, misses, _ = run()
    assert (hits, misses) == ("1", "0")
