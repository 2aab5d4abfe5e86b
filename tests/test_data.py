import torch

from sumnet.data import make_batch, make_generator, make_test_set


def test_batch_range_and_exact_sum_targets():
    x, y = make_batch(4096, make_generator(1))
    assert x.shape == (4096, 30) and y.shape == (4096, 1)
    assert x.dtype == torch.float32
    ints = torch.round(x * 100)
    assert torch.equal(ints, x.mul(100).round())
    assert ints.min().item() == 0 and ints.max().item() == 100  # both ends are drawn
    torch.testing.assert_close(y, x.sum(dim=1, keepdim=True))
    torch.testing.assert_close(y * 100, ints.sum(dim=1, keepdim=True), atol=1e-3, rtol=0)


def test_same_seed_same_batches_other_seed_other_batches():
    a = make_batch(8, make_generator(3))[0]
    b = make_batch(8, make_generator(3))[0]
    c = make_batch(8, make_generator(4))[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_test_set_is_fixed_and_ten_thousand_rows():
    t1, t2 = make_test_set(), make_test_set()
    assert t1.inputs.shape == (10_000, 30)
    assert torch.equal(t1.inputs, t2.inputs) and torch.equal(t1.targets, t2.targets)
