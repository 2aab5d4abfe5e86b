"""numpy-reference: the same Net, data and Adam as torch's eager training, in NumPy alone."""

import numpy as np
import pytest
import torch

from bench.modes import numpy_reference
from bench.modes.numpy_reference import NumpyDataStep, NumpyNet, _flush_to_zero_active
from sumnet.data import make_batch, make_generator, make_test_set
from sumnet.evaluate import metrics_from_predictions
from sumnet.model import NetConfig
from sumnet.train import TrainConfig, init_net, make_optimizer, train_step


def _train_on(model: NumpyNet, x: np.ndarray, y: np.ndarray) -> float:
    """One step on a given batch instead of a drawn one."""
    model.inputs[...] = x
    model.targets[...] = y
    return model.train_on_buffers()


def _torch_params(net):
    return [p.detach().numpy() for p in net.parameters()]


def _layer_parameters(model: NumpyNet) -> list[np.ndarray]:
    """(weight (out, in), bias (out,)) of each layer from the bias-folded matrices, in torch's order."""
    return [a for m in model.weights for a in (np.ascontiguousarray(m[:-1].T), m[-1].copy())]


def test_initial_weights_are_init_nets_exactly():
    net = init_net(NetConfig(), seed=4)
    model = NumpyNet(init_net(NetConfig(), seed=4), batch_size=32, lr=1e-3)
    for got, want in zip(_layer_parameters(model), _torch_params(net)):
        assert got.dtype == np.float32 and np.array_equal(got, want)
    assert model.params.size == 5581  # the article's Net: every parameter in the one flat buffer


@pytest.mark.parametrize("activation", ["relu", "none"])
def test_same_batches_give_torch_eager_training(activation):
    net_config = NetConfig(output_activation=activation)
    net = init_net(net_config, seed=2)
    optimizer = make_optimizer(net)
    model = NumpyNet(init_net(net_config, seed=2), batch_size=32, lr=1e-3)
    generator = make_generator(8)
    for _ in range(10):
        x, y = make_batch(32, generator)
        want = train_step(net, optimizer, x, y).item()
        got = _train_on(model, x.numpy(), y.numpy())
        assert got == pytest.approx(want, rel=1e-5)
    for got, want in zip(_layer_parameters(model), _torch_params(net)):
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), rtol=1e-5, atol=1e-6)
    x = make_batch(100, make_generator(3))[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(model.predict(x.numpy())), net(x), rtol=1e-5, atol=1e-5)


def test_output_relu_blocks_gradient_where_output_is_zero():
    """With every output clamped to 0 by the ReLU, no gradient flows: Adam leaves the weights alone."""
    model = NumpyNet(init_net(NetConfig(), seed=0), batch_size=4, lr=1e-3)
    model.weights[-1][:] = 0.0
    model.weights[-1][-1] = -1.0  # output bias -1, weights 0: pre-activation -1 on every row
    before = model.params.copy()
    _train_on(model, np.full((4, 30), 0.5, dtype=np.float32), np.full((4, 1), 15.0, dtype=np.float32))
    assert np.array_equal(model.params, before)
    assert not model.grads.any()


def test_batches_are_integers_over_100_with_row_sum_targets_and_fresh_each_step():
    model = NumpyNet(init_net(NetConfig(), seed=0), batch_size=256, lr=1e-3)
    step = NumpyDataStep(model, seed=1)
    step()
    first = model.inputs.copy()
    scaled = first * 100
    assert np.allclose(scaled, np.round(scaled), atol=1e-4)
    assert first.min() >= 0.0 and first.max() <= 1.0 and len(np.unique(np.round(scaled))) == 101
    np.testing.assert_allclose(model.targets[:, 0], first.astype(np.float64).sum(axis=1), rtol=1e-6)
    step()
    assert not np.array_equal(model.inputs, first)
    again = NumpyDataStep(NumpyNet(init_net(NetConfig(), seed=0), 256, 1e-3), seed=1)
    again()
    assert np.array_equal(again.model.inputs, first)  # the seed reproduces the batches


def test_flush_to_zero_is_scoped_to_the_step():
    model = NumpyNet(init_net(NetConfig(), seed=0), batch_size=32, lr=1e-3)
    assert not _flush_to_zero_active()
    NumpyDataStep(model, seed=0)()
    assert not _flush_to_zero_active()  # restored: other modes in this process are untouched
    tiny = np.float32(1e-30)
    assert float(tiny * np.float32(1e-10)) > 0.0


@pytest.mark.parametrize("activation", ["relu", "none"])
def test_article_training_converges(activation):
    net_config = NetConfig(output_activation=activation)
    trainer = numpy_reference.build_trainer(torch.device("cpu"), net_config, TrainConfig(steps=3000, seed=0))
    losses = [float(trainer.step()) for _ in range(3000)]
    assert losses[-1] < losses[0] / 100
    test_set = make_test_set()
    predictions = trainer.predict(test_set.inputs)
    assert isinstance(predictions, torch.Tensor) and predictions.shape == (len(test_set.inputs), 1)
    metrics = metrics_from_predictions(predictions, test_set.targets)
    assert metrics.mae < 0.01, metrics
    x = test_set.inputs[:1024]
    np.testing.assert_array_equal(trainer.inference(x)(), trainer.predict(x).numpy())


def test_refuses_other_devices():
    with pytest.raises(ValueError, match="CPU only"):
        numpy_reference.build_trainer(torch.device("cuda"), NetConfig(), TrainConfig())
