"""`numpy-reference`: the article's step written with NumPy alone, the floor a hand-written loop reaches.

Same Net, data distribution, MSE loss and Adam (PyTorch's defaults) as eager, in float32, from
init_net's weights; batches from a NumPy Generator seeded with the config's seed. Every buffer is
allocated once and written with `out=`; each layer's bias is folded into its weight matrix (a ones
column on the activations), so one matmul gives `x @ W.T + b` forward and `dW`, `db` backward;
Adam runs once over one flat buffer of every parameter.

    python -c "from bench.modes.numpy_reference import build_trainer; import torch; t = build_trainer(torch.device('cpu'), __import__('sumnet').NetConfig(), __import__('sumnet').TrainConfig()); print([float(t.step()) for _ in range(3)])"
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from bench.modes.base import BETA1, BETA2, EPS, Trainer, array_trainer, require_cpu
from sumnet.data import HIGH, LOW, SCALE
from sumnet.model import Net, NetConfig
from sumnet.train import TrainConfig, init_net

F32 = np.float32


class NumpyNet:
    """The Net's parameters and Adam state in flat float32 buffers, plus a training step on them.

    Layer l is stored as an augmented matrix M_l of shape (in + 1, out): rows 0..in-1 hold W.T,
    the last row holds b, so that `[a, 1] @ M_l == a @ W.T + b`. `params`, `grads`, `exp_avg` and
    `exp_avg_sq` are flat buffers; `weights[l]` and `weight_grads[l]` are views into them.
    """

    def __init__(self, net: Net, batch_size: int, lr: float) -> None:
        config: NetConfig = net.config
        self.relu_out = config.output_activation == "relu"
        self.batch_size = batch_size
        self.lr = lr
        self.input_size = config.input_size
        layers = [*net.hidden, net.out]
        shapes = [(layer.in_features + 1, layer.out_features) for layer in layers]
        offsets = np.cumsum([0, *(a * b for a, b in shapes)])
        self.params = np.empty(offsets[-1], dtype=F32)
        self.grads, self.exp_avg, self.exp_avg_sq = (np.zeros_like(self.params) for _ in range(3))
        self._tmp, self._tmp2 = np.empty_like(self.params), np.empty_like(self.params)  # Adam's scratch
        self.steps_done = 0
        spans = list(zip(offsets, offsets[1:], shapes))
        self.weights = [self.params[a:b].reshape(s) for a, b, s in spans]
        self.weight_grads = [self.grads[a:b].reshape(s) for a, b, s in spans]
        for m, layer in zip(self.weights, layers):
            m[:-1] = layer.weight.detach().cpu().numpy().T
            m[-1] = layer.bias.detach().cpu().numpy()
        # Activations with a ones column: acts[0] is the input batch, acts[l] the output of hidden layer l.
        self.acts = self._activation_buffers(batch_size)
        self.inputs = self.acts[0][:, :-1]  # (B, input_size) view the data is drawn into
        self.targets = np.empty((batch_size, 1), dtype=F32)
        self.out = np.empty((batch_size, 1), dtype=F32)
        self._diff = np.empty((batch_size, 1), dtype=F32)
        # Gradients w.r.t. each hidden layer's pre-activation, (B, width).
        self._dpre = [np.empty((batch_size, m.shape[1]), dtype=F32) for m in self.weights[:-1]]
        # Views the backward pass reads, made once: np.dot wants them ready, and views cost a call each.
        self._acts_t = [a.T for a in self.acts]  # [a, 1].T, (in + 1, B)
        self._weights_t = [m[:-1].T for m in self.weights]  # W, (out, in)
        self._hidden = [a[:, :-1] for a in self.acts]  # activations without the ones column
        self._row_sum = np.ones((self.acts[0].shape[1], 1), dtype=F32)
        self._row_sum[-1] = 0.0  # [x, 1] @ [1, ..., 1, 0].T is the row sum of x

    def _activation_buffers(self, rows: int) -> list[np.ndarray]:
        widths = [m.shape[0] for m in self.weights]  # in + 1 of each layer
        acts = [np.empty((rows, w), dtype=F32) for w in widths]
        for a in acts:
            a[:, -1] = 1.0
        return acts

    # --- forward -----------------------------------------------------------------------------
    def forward_into(self, acts: list[np.ndarray], out: np.ndarray) -> np.ndarray:
        """Forward pass on acts[0][:, :-1] (already filled); writes every activation and `out`."""
        for m, a, a_next in zip(self.weights, acts, acts[1:]):
            hidden = a_next[:, :-1]
            np.matmul(a, m, out=hidden)  # (B, in+1) @ (in+1, width) = a @ W.T + b
            np.maximum(a_next, 0.0, out=a_next)  # ReLU; the ones column stays 1
        np.matmul(acts[-1], self.weights[-1], out=out)  # (B, 60+1) @ (61, 1)
        if self.relu_out:
            np.maximum(out, 0.0, out=out)
        return out

    def forward_on(self, x: np.ndarray) -> Callable[[], np.ndarray]:
        """A call running the forward on x (N, input_size) into buffers made here, once: (N, 1)."""
        acts = self._activation_buffers(len(x))
        acts[0][:, :-1] = x
        return partial(self.forward_into, acts, np.empty((len(x), 1), dtype=F32))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward_on(x)()

    # --- one training step ---------------------------------------------------------------------
    def train_on_buffers(self) -> float:
        """One step on the batch already in `inputs`/`targets`: forward, MSE, backward, Adam."""
        acts, weights, grads = self.acts, self.weights, self.weight_grads
        out = self.forward_into(acts, self.out)
        diff = np.subtract(out, self.targets, out=self._diff)  # (B, 1)
        flat = diff.reshape(-1)
        loss = float(np.dot(flat, flat)) / self.batch_size
        # d loss / d out = 2 (out - y) / B; the output ReLU passes it only where out > 0.
        diff *= F32(2.0 / self.batch_size)
        if self.relu_out:
            np.multiply(diff, out > 0.0, out=diff)
        delta = diff  # gradient w.r.t. the current layer's pre-activation, (B, width)
        for layer in range(len(weights) - 1, -1, -1):
            np.dot(self._acts_t[layer], delta, out=grads[layer])  # dW.T and db in one: [a, 1].T @ delta
            if layer == 0:
                break
            below = self._dpre[layer - 1]
            np.dot(delta, self._weights_t[layer], out=below)  # back through W: (B, out) @ (out, in)
            np.multiply(below, self._hidden[layer] > 0.0, out=below)  # ReLU: a > 0 exactly where pre > 0
            delta = below
        self._adam()
        return loss

    def _adam(self) -> None:
        """torch.optim.Adam's update (single-tensor, no weight decay), over the flat buffer at once."""
        self.steps_done += 1
        t = self.steps_done
        g, m, v, tmp, tmp2 = self.grads, self.exp_avg, self.exp_avg_sq, self._tmp, self._tmp2
        # exp_avg.lerp_(grad, 1 - beta1): m + w (g - m), as torch computes it for w < 0.5
        np.subtract(g, m, out=tmp)
        tmp *= F32(1.0 - BETA1)
        m += tmp
        # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        np.multiply(g, g, out=tmp)
        tmp *= F32(1.0 - BETA2)
        v *= F32(BETA2)
        v += tmp
        step_size = self.lr / (1.0 - BETA1**t)
        bias_correction2_sqrt = (1.0 - BETA2**t) ** 0.5
        # denom = sqrt(v) / sqrt(bc2) + eps; param -= step_size * m / denom
        np.sqrt(v, out=tmp)
        np.divide(tmp, F32(bias_correction2_sqrt), out=tmp)
        tmp += F32(EPS)
        np.divide(m, tmp, out=tmp2)
        tmp2 *= F32(step_size)
        self.params -= tmp2


_TINY, _TINY_FACTOR = F32(1e-30), F32(1e-10)  # their product, 1e-40, is subnormal in float32


def _flush_to_zero_active() -> bool:
    """Whether this thread flushes subnormal float32 results to zero (a product that would be one)."""
    return float(_TINY * _TINY_FACTOR) == 0.0


class NumpyDataStep:
    """A fresh batch from a NumPy Generator each step, then one training step on it, with flush-to-zero
    on (torch.set_flush_denormal, restored after): the exp_avg of dead ReLU units decays into float32
    subnormals, which are slow (docs/validation.md). It changes only values below 1.2e-38."""

    def __init__(self, model: NumpyNet, seed: int) -> None:
        self.model = model
        self.rng = np.random.default_rng(seed)
        self._shape = (model.batch_size, model.input_size)

    def __call__(self) -> float:
        model = self.model
        ints = self.rng.integers(LOW, HIGH + 1, size=self._shape)
        np.divide(ints, F32(SCALE), out=model.inputs)
        np.dot(model.acts[0], model._row_sum, out=model.targets)  # row sums, one BLAS call
        if _flush_to_zero_active():
            return model.train_on_buffers()
        torch.set_flush_denormal(True)
        try:
            return model.train_on_buffers()
        finally:
            torch.set_flush_denormal(False)


def build_trainer(device: torch.device, net_config: NetConfig, config: TrainConfig) -> Trainer:
    """The numpy-reference Trainer (CPU only): initial weights from init_net(net_config, config.seed)."""
    require_cpu("numpy-reference", device)
    model = NumpyNet(init_net(net_config, config.seed, "cpu"), config.batch_size, config.lr)
    notes = [
        "NumPy float32, batches from numpy.random.default_rng(seed): same distribution as torch, other draws",
        "biases folded into augmented weight matrices; Adam over one flat buffer",
        "flush-to-zero on during each step (subnormal exp_avg of dead units doubled late steps)",
    ]
    return array_trainer(NumpyDataStep(model, config.seed), model.forward_on, notes)
