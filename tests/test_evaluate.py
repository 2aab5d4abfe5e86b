import pytest
import torch

from sumnet.data import make_test_set
from sumnet.evaluate import evaluate, metrics_from_predictions, verdict
from sumnet.model import Net


def test_metrics_on_hand_made_predictions():
    targets = torch.tensor([[10.0], [20.0], [30.0], [5.0]])
    predictions = torch.tensor([[10.001], [20.5], [29.0], [0.0]])
    m = metrics_from_predictions(predictions, targets)
    errors = [0.001, 0.5, 1.0, 5.0]
    assert m.mae == pytest.approx(sum(errors) / 4, abs=1e-5)
    assert m.exact_accuracy == 0.25  # only the 0.001 error rounds to the exact sum
    assert m.zero_fraction == 0.25


def test_dead_output_is_reported_as_not_converged_with_its_reason():
    net = Net()
    with torch.no_grad():
        net.out.bias.fill_(-100.0)  # the output ReLU can never fire
    test_set = make_test_set(1000)
    m = evaluate(net, test_set)
    assert m.zero_fraction == 1.0
    assert m.mae == pytest.approx(test_set.targets.mean().item(), rel=1e-5)  # about 15
    v = verdict(m)
    assert not v.converged and "dead output" in v.reason


def test_verdict_above_target_says_so():
    m = metrics_from_predictions(torch.tensor([[1.0], [2.5]]), torch.tensor([[1.1], [2.4]]))
    assert not verdict(m, target_mae=0.01).converged
    assert "above target" in verdict(m, target_mae=0.01).reason
    assert verdict(m, target_mae=0.2).converged


def test_evaluate_restores_training_mode():
    net = Net().train()
    evaluate(net, make_test_set(10))
    assert net.training
