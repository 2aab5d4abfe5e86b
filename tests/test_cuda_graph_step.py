"""cudagraph: the captured step replays eager training from the same seed. CUDA tests skip without a GPU;
the rewind that makes replay 1 equal eager step 1 is checked on the CPU too."""

import pytest
import torch

from bench.modes import cuda_graph_step
from bench.modes.cuda_graph_step import warm_up_and_rewind
from sumnet.data import make_batch, make_generator
from sumnet.model import NetConfig
from sumnet.train import TrainConfig, init_net, make_optimizer, train_step


def _eager(device, seed, steps, net_config=NetConfig()):
    net = init_net(net_config, seed, device)
    optimizer = make_optimizer(net)
    generator = make_generator(seed, device)
    losses = [train_step(net, optimizer, *make_batch(32, generator)).item() for _ in range(steps)]
    return net, losses


def test_refuses_the_cpu_with_a_clear_error():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        cuda_graph_step.build_trainer(torch.device("cpu"), NetConfig(), TrainConfig())


def test_warm_up_and_rewind_leaves_a_fresh_start():
    """Warm-up steps, rewound in place, then training: the very losses and weights of a fresh run."""
    _, fresh_losses = _eager("cpu", seed=3, steps=6)
    net = init_net(NetConfig(), 3)
    optimizer = make_optimizer(net)
    generator = make_generator(3)

    def step():
        return train_step(net, optimizer, *make_batch(32, generator))

    warm_up_and_rewind(step, net, optimizer, generator, steps=4)
    rewound = [t for state in optimizer.state.values() for t in state.values()]
    assert len(rewound) == 18 and all(not t.any() for t in rewound)  # 6 x (step, exp_avg, exp_avg_sq)
    for got, want in zip(net.parameters(), init_net(NetConfig(), 3).parameters()):
        assert torch.equal(got, want)
    losses = [step().item() for _ in range(6)]
    assert losses == fresh_losses
    after = [t for state in optimizer.state.values() for t in state.values()]
    assert all(a is b for a, b in zip(after, rewound))  # same objects: a capture sees them


def test_capturable_adam_keeps_its_step_on_the_parameters_device():
    net = init_net(NetConfig(), 0)
    optimizer, description = cuda_graph_step.make_capturable_adam(net, lr=1e-3)
    assert "Adam" in description and optimizer.defaults["capturable"]
    assert optimizer.defaults["lr"] == 1e-3


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("activation", ["relu", "none"])
def test_replays_match_eager_cuda_steps(activation):
    net_config = NetConfig(output_activation=activation)
    reference, eager_losses = _eager("cuda", seed=0, steps=50, net_config=net_config)
    trainer = cuda_graph_step.build_trainer(torch.device("cuda"), net_config, TrainConfig(seed=0))
    losses = [float(trainer.step()) for _ in range(50)]
    # Fused vs foreach Adam may round differently; the batches and the first step are identical.
    assert losses[0] == pytest.approx(eager_losses[0], rel=1e-6)
    torch.testing.assert_close(losses, eager_losses, rtol=1e-3, atol=1e-4)
    x = make_batch(256, make_generator(9, "cuda"))[0]
    with torch.no_grad():
        torch.testing.assert_close(trainer.predict(x), reference(x), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(trainer.inference(x)(), trainer.predict(x))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_replays_draw_fresh_batches_and_seed_reproduces_them():
    def run(seed):
        trainer = cuda_graph_step.build_trainer(torch.device("cuda"), NetConfig(), TrainConfig(seed=seed))
        return [float(trainer.step()) for _ in range(10)], trainer.notes

    losses, notes = run(0)
    assert len(set(losses)) == len(losses)  # a new batch (and update) every replay
    assert run(0)[0] == losses
    assert run(1)[0] != losses
    assert any("CUDA graph" in note for note in notes)
