import pytest
import torch

from sumnet.model import Net, NetConfig, count_parameters


def test_article_net_has_5581_parameters_and_the_articles_layers():
    net = Net()
    assert count_parameters(net) == 30 * 60 + 60 + 60 * 60 + 60 + 60 * 1 + 1 == 5581
    assert [tuple(layer.weight.shape) for layer in net.hidden] == [(60, 30), (60, 60)]
    assert tuple(net.out.weight.shape) == (1, 60)


def test_forward_shape_and_output_relu():
    net = Net()
    with torch.no_grad():
        net.out.bias.fill_(-1e3)  # force every pre-activation negative
        y = net(torch.rand(7, 30))
    assert y.shape == (7, 1)
    assert torch.equal(y, torch.zeros(7, 1))


def test_output_activation_none_passes_negatives_through():
    net = Net(NetConfig(output_activation="none"))
    with torch.no_grad():
        net.out.bias.fill_(-1e3)
        assert (net(torch.rand(4, 30)) < 0).all()


def test_config_is_configurable_and_validated():
    net = Net(NetConfig(input_size=5, hidden_size=8, hidden_layers=3))
    assert net(torch.rand(2, 5)).shape == (2, 1)
    assert len(net.hidden) == 3
    with pytest.raises(ValueError, match="output_activation"):
        NetConfig(output_activation="tanh")
    with pytest.raises(ValueError, match="hidden_size"):
        NetConfig(hidden_size=0)
