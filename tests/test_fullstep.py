"""compile-fullstep: the functional step is torch.optim.Adam + train_step, eagerly to the bit, compiled
within float tolerances; the compiled trainer learns what eager learns from the same seed."""

import pytest
import torch

from bench.modes import fullstep
from bench.modes.fullstep import AdamState, adam_update_, flat_step_function, flat_tensors, make_step_function
from sumnet.data import HIGH, LOW, make_batch, make_generator
from sumnet.model import NetConfig
from sumnet.train import TrainConfig, init_net, make_optimizer, train_step

STEPS = 20


def _functional(net_config: NetConfig, seed: int = 0):
    net = init_net(net_config, seed)
    params = {name: p.detach() for name, p in net.named_parameters()}
    return net, params, AdamState.zeros_like(params)


def _eager_reference(net_config: NetConfig, seed: int, steps: int):
    """sumnet's own training: the Net, torch.optim.Adam and train_step on make_batch's batches."""
    net = init_net(net_config, seed)
    optimizer = make_optimizer(net)
    generator = make_generator(seed)
    losses = [train_step(net, optimizer, *make_batch(32, generator)).item() for _ in range(steps)]
    return net, losses


def test_adam_update_matches_torch_adam_bit_for_bit():
    torch.manual_seed(3)
    params = {"w": torch.randn(60, 30), "b": torch.randn(60)}  # long enough for vectorized kernels
    reference = [p.clone().requires_grad_(True) for p in params.values()]
    optimizer = torch.optim.Adam(reference, lr=3e-3)
    state = AdamState.zeros_like(params)
    for _ in range(7):
        grads = {k: torch.randn_like(p) for k, p in params.items()}
        for p, g in zip(reference, grads.values()):
            p.grad = g.clone()
        optimizer.step()
        adam_update_(params, grads, state, lr=3e-3)
    assert state.step.dtype == torch.float32 and state.step.item() == 7
    for got, want in zip(params.values(), reference):
        assert torch.equal(got, want.detach())
    for name, p in zip(params, reference):
        assert torch.equal(state.exp_avg[name], optimizer.state[p]["exp_avg"])
        assert torch.equal(state.exp_avg_sq[name], optimizer.state[p]["exp_avg_sq"])


@pytest.mark.parametrize("activation", ["relu", "none"])
def test_uncompiled_functional_step_is_train_step_with_adam(activation):
    net_config = NetConfig(output_activation=activation)
    reference, reference_losses = _eager_reference(net_config, seed=0, steps=STEPS)
    net, params, state = _functional(net_config)
    step = make_step_function(net, lr=1e-3)
    generator = make_generator(0)
    ints = torch.empty(32, 30, dtype=torch.int64)
    losses = []
    for _ in range(STEPS):
        torch.randint(LOW, HIGH + 1, ints.shape, generator=generator, out=ints)
        losses.append(step(params, state, ints).item())
    assert losses == reference_losses
    for got, want in zip(net.parameters(), reference.parameters()):
        assert torch.equal(got, want)  # the same aten kernels in the same order: bit for bit
    assert state.step.item() == STEPS


def test_randint_out_draws_make_batch_values():
    ints = torch.empty(32, 30, dtype=torch.int64)
    torch.randint(LOW, HIGH + 1, ints.shape, generator=make_generator(5), out=ints)
    inputs, _ = make_batch(32, make_generator(5))
    assert torch.equal(ints.to(torch.float32) / 100, inputs)


@pytest.mark.slow
def test_compiled_trainer_trains_like_eager():
    """build_trainer's compiled step: same losses and weights as eager within float32 tolerances."""
    reference, reference_losses = _eager_reference(NetConfig(), seed=0, steps=STEPS)
    trainer = fullstep.build_trainer(torch.device("cpu"), NetConfig(), TrainConfig(seed=0))
    losses = [float(trainer.step()) for _ in range(STEPS)]
    assert any("inductor" in note for note in trainer.notes), trainer.notes
    torch.testing.assert_close(losses, reference_losses, rtol=1e-4, atol=1e-5)
    x = make_batch(64, make_generator(9))[0]
    with torch.no_grad():
        torch.testing.assert_close(trainer.predict(x), reference(x), rtol=1e-4, atol=1e-5)
    run = trainer.inference(x)
    torch.testing.assert_close(run(), trainer.predict(x))


@pytest.mark.slow
def test_fallback_to_torch_compile_is_still_the_same_training(monkeypatch):
    """When tracing fails, torch.compile(fullgraph=True) runs the same step, and the notes say why."""

    def broken(*args, **kwargs):
        raise RuntimeError("tracing refused\nsecond line")

    monkeypatch.setattr(fullstep, "_graph_compile", broken)
    net_config = NetConfig()
    reference, _ = _eager_reference(net_config, seed=1, steps=5)
    net, params, state = _functional(net_config, seed=1)
    flat = flat_step_function(list(params), make_step_function(net, lr=1e-3))
    ints = torch.empty(32, 30, dtype=torch.int64)
    args = [ints, *flat_tensors(params, state)]
    compiled, how, failures = fullstep.compile_step(flat, args, torch.device("cpu"))
    assert how == "torch.compile(fullgraph=True)"
    assert len(failures) == 2 and all("RuntimeError: tracing refused" in f for f in failures)
    generator = make_generator(1)
    for _ in range(5):
        torch.randint(LOW, HIGH + 1, ints.shape, generator=generator, out=ints)
        compiled(*args)
    assert state.step.item() == 5  # the in-place counter update survives compilation
    for got, want in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphed_fullstep_trains_like_eager():
    device = torch.device("cuda")
    graphed = fullstep.build_trainer(device, NetConfig(), TrainConfig())
    losses = [float(graphed.step()) for _ in range(20)]
    assert any("replayed as one CUDA graph" in n for n in graphed.notes), graphed.notes
    eager_net = init_net(NetConfig(), 0, device)
    optimizer = make_optimizer(eager_net)
    generator = make_generator(0, device)
    reference = [float(train_step(eager_net, optimizer, *make_batch(32, generator))) for _ in range(20)]
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(reference), rtol=1e-4, atol=1e-6)
