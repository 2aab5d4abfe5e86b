"""The batched ensemble trains each member exactly as the plain Net trains alone."""

import pytest
import torch

from bench.measure.ensemble import (
    EnsembleNet,
    ensemble_step,
    init_ensemble,
    make_ensemble_optimizer,
    make_member_batches,
    make_member_generators,
    member_losses,
    member_metrics,
)
from sumnet.data import make_batch, make_generator, make_test_set
from sumnet.evaluate import evaluate
from sumnet.model import NetConfig
from sumnet.train import init_net, make_optimizer, train_step

SEEDS = [0, 1, 2]


def _plain_params(net):
    return [p.detach() for layer in [*net.hidden, net.out] for p in (layer.weight, layer.bias)]


def _member_params(ensemble, i):
    return [p.detach() for w, b in zip(ensemble.weights, ensemble.biases) for p in (w[i], b[i])]


@pytest.mark.parametrize("activation", ["relu", "none"])
def test_members_start_as_the_plain_net_of_their_seed(activation):
    config = NetConfig(output_activation=activation)
    ensemble = init_ensemble(config, SEEDS)
    assert ensemble.members == len(SEEDS)
    assert [tuple(w.shape) for w in ensemble.weights] == [(3, 60, 30), (3, 60, 60), (3, 1, 60)]
    for i, seed in enumerate(SEEDS):
        for got, want in zip(_member_params(ensemble, i), _plain_params(init_net(config, seed))):
            assert torch.equal(got, want)


def test_member_batches_equal_make_batch_from_each_seed():
    gens = make_member_generators(SEEDS)
    plain = [make_generator(s) for s in SEEDS]
    for _ in range(3):
        x, y = make_member_batches(gens, 32)
        assert x.shape == (3, 32, 30) and y.shape == (3, 32, 1)
        for i, gen in enumerate(plain):
            px, py = make_batch(32, gen)
            assert torch.equal(x[i], px)
            torch.testing.assert_close(y[i], py)


def test_forward_and_losses_match_each_plain_net():
    config = NetConfig(output_activation="none")
    ensemble = init_ensemble(config, SEEDS)
    x, y = make_member_batches(make_member_generators(SEEDS), 32)
    out = ensemble(x)
    losses = member_losses(ensemble, x, y)
    for i, seed in enumerate(SEEDS):
        net = init_net(config, seed)
        torch.testing.assert_close(out[i], net(x[i]))
        torch.testing.assert_close(losses[i], torch.nn.functional.mse_loss(net(x[i]), y[i]))


@pytest.mark.parametrize("activation", ["relu", "none"])
def test_ensemble_training_equals_plain_training_per_member(activation):
    """Same initial weights and batches: after several Adam steps member i == plain Net of seed i."""
    config = NetConfig(output_activation=activation)
    seeds = [3, 4, 5]  # under relu seed 3's output is dead at init and seed 4's partly: covered too
    ensemble = init_ensemble(config, seeds)
    optimizer = make_ensemble_optimizer(ensemble)
    gens = make_member_generators(seeds)
    batches = [make_member_batches(gens, 32) for _ in range(20)]
    for x, y in batches:
        ensemble_step(ensemble, optimizer, x, y)
    changed = []
    for i, seed in enumerate(seeds):
        net = init_net(config, seed)
        opt = make_optimizer(net)
        for x, y in batches:
            train_step(net, opt, x[i], y[i])
        before = _plain_params(init_net(config, seed))
        after = _plain_params(net)
        changed.append(any(not torch.equal(a, b) for a, b in zip(after, before)))
        for got, want in zip(_member_params(ensemble, i), after):
            torch.testing.assert_close(got, want)
    # a dead output ReLU gets no gradient, so only seed 3 under relu stays put
    assert changed == [activation == "none", True, True]


def test_ensemble_step_returns_detached_per_member_losses():
    ensemble = init_ensemble(NetConfig(), SEEDS)
    x, y = make_member_batches(make_member_generators(SEEDS), 32)
    losses = ensemble_step(ensemble, make_ensemble_optimizer(ensemble), x, y)
    assert losses.shape == (3,) and not losses.requires_grad


def test_member_metrics_and_member_copy_match_plain_evaluation():
    config = NetConfig()
    ensemble = init_ensemble(config, SEEDS)
    test_set = make_test_set(500)
    metrics = member_metrics(ensemble, test_set.inputs, test_set.targets)
    for i, seed in enumerate(SEEDS):
        want = evaluate(init_net(config, seed), test_set)
        assert metrics[i].mae == pytest.approx(want.mae, rel=1e-5)
        assert metrics[i].zero_fraction == want.zero_fraction
        assert evaluate(ensemble.member(i), test_set) == want


def test_member_metrics_in_chunks_equal_one_pass(monkeypatch):
    ensemble = init_ensemble(NetConfig(output_activation="none"), [0, 1, 2, 3, 4])
    test_set = make_test_set(200)
    whole = member_metrics(ensemble, test_set.inputs, test_set.targets)
    monkeypatch.setattr("bench.measure.ensemble.EVAL_MEMBERS_PER_CHUNK", 2)  # chunks of 2, 2 and 1 members
    chunked = member_metrics(ensemble, test_set.inputs, test_set.targets)
    # a one-member chunk may take another matmul path: equal up to float rounding
    assert [m.mae for m in chunked] == pytest.approx([m.mae for m in whole], rel=1e-6)
    assert [m.zero_fraction for m in chunked] == [m.zero_fraction for m in whole]
    assert len(whole) == 5 and len({m.mae for m in whole}) == 5


def test_empty_ensemble_is_refused():
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleNet.from_nets([])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_ensemble_training_equals_plain_training_on_cuda():
    config = NetConfig(output_activation="none")
    ensemble = init_ensemble(config, SEEDS, "cuda")
    optimizer = make_ensemble_optimizer(ensemble)
    gens = make_member_generators(SEEDS, "cuda")
    plain_gens = [make_generator(s, "cuda") for s in SEEDS]
    nets = [init_net(config, s, "cuda") for s in SEEDS]
    opts = [make_optimizer(n) for n in nets]
    for _ in range(20):
        x, y = make_member_batches(gens, 32)
        ensemble_step(ensemble, optimizer, x, y)
        for net, opt, gen in zip(nets, opts, plain_gens):
            train_step(net, opt, *make_batch(32, gen))
    for i, net in enumerate(nets):
        for got, want in zip(_member_params(ensemble, i), _plain_params(net)):
            torch.testing.assert_close(got, want)
