import pytest
import torch

from sumnet.data import make_batch, make_generator, make_test_set
from sumnet.evaluate import evaluate, verdict
from sumnet.model import NetConfig
from sumnet.train import TrainConfig, init_net, make_optimizer, train, train_step


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
    a = train(TrainConfig(steps=200, seed=5), log_every=10)
    b = train(TrainConfig(steps=200, seed=5), log_every=10)
    assert a.losses == b.losses
    for pa, pb in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(pa, pb)
    c = train(TrainConfig(steps=200, seed=6), log_every=10)
    assert c.losses != a.losses


def test_train_step_returns_detached_loss_without_sync():
    net = init_net(NetConfig(), seed=0)
    loss = train_step(net, make_optimizer(net), *make_batch(32, make_generator(0)))
    assert loss.shape == () and not loss.requires_grad


def test_article_training_converges_for_the_default_seed():
    test_set = make_test_set()
    result = train(TrainConfig(steps=3000, seed=0), log_every=100)
    metrics = evaluate(result.net, test_set)
    assert verdict(metrics).converged, verdict(metrics).reason
    assert metrics.exact_accuracy > 0.5
    assert sorted(result.losses) == list(range(100, 3001, 100))


def test_early_stop_on_target_mae():
    result = train(
        TrainConfig(steps=3000, seed=0, lr=1e-3),
        NetConfig(output_activation="none"),
        test_set=make_test_set(2000),
        eval_every=100,
        stop_at_mae=0.5,
    )
    assert result.steps_run < 3000
    assert result.maes[result.steps_run] < 0.5
    assert all(mae >= 0.5 for step, mae in result.maes.items() if step < result.steps_run)


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError):
        TrainConfig(steps=0)
    with pytest.raises(ValueError):
        TrainConfig(lr=0)
