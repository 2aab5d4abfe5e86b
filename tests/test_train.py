import re

import pytest
import torch

from sumnet.data import make_batch, make_generator, make_test_set
from sumnet.evaluate import evaluate, verdict
from sumnet.model import NetConfig
from sumnet.train import (
    MAX_BATCH_SIZE,
    MAX_LR,
    MAX_STEPS,
    MIN_LR,
    TrainConfig,
    init_net,
    make_optimizer,
    train,
    train_step,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: the Net's 60-wide matmuls gain nothing from a second, and on a loaded
    machine a second thread waiting for a busy core made every step many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _reference_adam_training(params, batches, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """Plain autograd + Adam written out by hand (Kingma & Ba), as the reference."""
    w1, b1, w2, b2, w3, b3 = (p.detach().clone().requires_grad_(True) for p in params)
    state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in (w1, b1, w2, b2, w3, b3)]
    for t, (x, y) in enumerate(batches, start=1):
        h = torch.relu(x @ w1.T + b1)
        h = torch.relu(h @ w2.T + b2)
        out = torch.relu(h @ w3.T + b3)
        loss = ((out - y) ** 2).mean()
        grads = torch.autograd.grad(loss, (w1, b1, w2, b2, w3, b3))
        with torch.no_grad():
            for i, (p, g) in enumerate(zip((w1, b1, w2, b2, w3, b3), grads)):
                m, v = state[i]
                m = betas[0] * m + (1 - betas[0]) * g
                v = betas[1] * v + (1 - betas[1]) * g * g
                state[i] = (m, v)
                m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
                p -= lr * m_hat / (v_hat.sqrt() + eps)
    return [p.detach() for p in (w1, b1, w2, b2, w3, b3)]


def test_train_step_matches_handwritten_adam_reference():
    net = init_net(NetConfig(), seed=0)
    start = [p.detach().clone() for p in net.parameters()]
    gen = make_generator(11)
    batches = [make_batch(32, gen) for _ in range(5)]
    optimizer = make_optimizer(net, lr=1e-3)
    for x, y in batches:
        train_step(net, optimizer, x, y)
    expected = _reference_adam_training(start, batches)
    for got, want in zip(net.parameters(), expected):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)


def test_same_seed_gives_identical_losses_and_weights_on_cpu():
    a = train(TrainConfig(steps=60, seed=5), log_every=10)
    b = train(TrainConfig(steps=60, seed=5), log_every=10)
    assert sorted(a.losses) == [10, 20, 30, 40, 50, 60]
    assert a.losses == b.losses
    for pa, pb in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(pa, pb)
    c = train(TrainConfig(steps=60, seed=6), log_every=10)
    assert c.losses != a.losses


def test_sixty_steps_cut_the_loss_tenfold():
    """The fast check that training learns at all; the slow test below checks convergence."""
    losses = train(TrainConfig(steps=60, seed=5), log_every=10).losses
    assert losses[60] < losses[10] / 10, losses


def test_train_step_returns_detached_loss_without_sync():
    net = init_net(NetConfig(), seed=0)
    loss = train_step(net, make_optimizer(net), *make_batch(32, make_generator(0)))
    assert loss.shape == () and not loss.requires_grad


@pytest.mark.slow
def test_article_training_converges_for_the_default_seed():
    test_set = make_test_set()
    result = train(TrainConfig(steps=3000, seed=0), log_every=100)
    metrics = evaluate(result.net, test_set)
    assert verdict(metrics).converged, verdict(metrics).reason
    assert metrics.exact_accuracy > 0.5
    assert sorted(result.losses) == list(range(100, 3001, 100))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=0), "steps must be from 1 to 10,000,000, got 0"),
        (dict(steps=MAX_STEPS + 1), "steps must be from 1 to 10,000,000"),
        (dict(batch_size=0), "batch_size must be from 1 to 1,048,576, got 0"),
        (dict(batch_size=10**10), "batch_size must be from 1 to 1,048,576"),
        (dict(lr=0), "lr must be from 1e-08 to 1, got 0"),
        (dict(lr=1e39), "lr must be from 1e-08 to 1, got 1e+39"),
        (dict(lr=float("nan")), "got nan"),
        (dict(lr=float("inf")), "got inf"),
    ],
)
def test_train_config_rejects_values_a_run_cannot_honour(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**kwargs)


def test_train_config_accepts_its_bounds():
    high = TrainConfig(steps=MAX_STEPS, batch_size=MAX_BATCH_SIZE, lr=MAX_LR)
    low = TrainConfig(steps=1, batch_size=1, lr=MIN_LR)
    assert (high.steps, high.batch_size, high.lr) == (10_000_000, 1_048_576, 1.0)
    assert (low.steps, low.batch_size, low.lr) == (1, 1, 1e-8)
