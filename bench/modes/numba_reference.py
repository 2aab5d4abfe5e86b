"""`numba-reference`: the whole training step as one compiled Numba function, the CPU floor.

Same Net, data distribution, MSE loss and Adam (PyTorch's defaults) as eager, in float32 without
fast-math, from init_net's weights: the losses match torch's to rounding. One call of `_train_step`
is one article iteration (batch draw, forward, loss, backward, Adam) that allocates nothing. Batches
come from the trainer's own splitmix64 stream (seeded with the seed), each integer by Lemire's
unbiased multiply-shift: torch's distribution, other draws. Why it is fast (docs/validation.md, "The
floors' design"): register-tiled products (`_product`) over zero-padded widths, a transposed weight
copy for contiguous backward loops, Adam over one flat buffer. cache=True keeps the compiled code.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python -c "import torch; from bench.modes.numba_reference import build_trainer; from sumnet.model import NetConfig; from sumnet.train import TrainConfig; t = build_trainer(torch.device('cpu'), NetConfig(), TrainConfig()); print([round(t.step(), 4) for _ in range(5)])"
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from bench.modes.base import BETA1, BETA2, EPS, Trainer, array_trainer, require_cpu
from sumnet.data import HIGH, LOW, SCALE
from sumnet.model import NetConfig
from sumnet.train import TrainConfig, init_net

try:
    import numba
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # the mode is skipped with unavailable_reason(); the rest of the harness runs
    numba = None

NUMBA_MISSING = "numba is not installed: pip install numba"

F32 = np.float32
ROWS = 2  # rows of a register tile; batch and input width are padded to a multiple of it
LANES = 64  # columns of a register tile (4 AVX-512 vectors); hidden widths are padded to it
TILE = ROWS * LANES
SUM_LANES = 16  # partial sums of the width-1 output layer's dot products (one vector)
FLOAT32_MIN_NORMAL = F32(np.finfo(np.float32).tiny)  # moments below it are flushed to zero
_DRAW_RANGE_U = np.uint64(HIGH - LOW + 1)  # 101 integers
_REJECT_BELOW_U = np.uint64(2**32 % (HIGH - LOW + 1))  # Lemire: a low half below it is redrawn
_MASK32 = np.uint64(0xFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment and mixing constants
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)

# meta: the int64 layout array the compiled step reads its sizes and offsets from.
_BATCH, _BATCH_PAD, _INPUT, _INPUT_PAD, _HIDDEN, _HIDDEN_PAD, _HIDDEN_ROWS, _LAYERS, _RELU_OUT = range(9)
_PARAM_COUNT, _X, _Y, _ACTS, _DELTAS, _OUT, _DOUT, _WCOPY = range(9, 17)
_HEADER = 17  # then the offset of each hidden layer's weights (its bias follows them), then the output's
_STATE_RNG, _STATE_STEPS = 0, 1  # uint64 state: splitmix64 counter, Adam steps done
PARAMS, GRADS, EXP_AVG, EXP_AVG_SQ = range(4)  # the workspace opens with these flat regions, in order


def unavailable_reason() -> str | None:
    """Why this mode cannot run here (numba missing), or None when it can."""
    return NUMBA_MISSING if numba is None else None


def _jit(fn):
    """numba.njit where numba is installed (build_trainer refuses to run without it). error_model
    "numpy": division by zero gives inf as in torch, with no per-division check to stop vectorizing."""
    return fn if numba is None else numba.njit(cache=True, fastmath=False, error_model="numpy")(fn)


_stack_buffer = None
if numba is not None:

    @intrinsic
    def _stack_buffer(typingctx, count, dtype):
        """A pointer to `count` (a compile-time constant) values of `dtype` on the stack.

        Wrapped with numba.carray it is a register tile: LLVM knows a stack slot aliases none of the
        arrays, so it keeps the tile in registers through a loop that reads those arrays.
        """
        if not isinstance(count, types.IntegerLiteral):
            return None  # numba retries with the literal type
        element, size = dtype.dtype, count.literal_value

        def codegen(context, builder, signature, args):
            return cgutils.alloca_once(
                builder, context.get_value_type(element), size=context.get_constant(types.intp, size)
            )

        return types.CPointer(element)(count, dtype), codegen


# --- the step: one article iteration -------------------------------------------------------------
@_jit
def _train_step(ws, meta, state, lr, draw):
    """One article iteration on the workspace; draws a fresh batch first when `draw`. Returns the loss."""
    bp = meta[_BATCH_PAD]
    x = _matrix(ws, meta[_X], bp, meta[_INPUT_PAD])
    y = ws[meta[_Y] : meta[_Y] + bp]
    acts = _stack3(ws, meta[_ACTS], meta, bp)
    deltas = _stack3(ws, meta[_DELTAS], meta, bp)
    out, dout = ws[meta[_OUT] : meta[_OUT] + bp], ws[meta[_DOUT] : meta[_DOUT] + bp]
    if draw:
        _draw_batch(x, y, meta[_BATCH], meta[_INPUT], state)
    _forward(ws, meta, x, acts, out)
    loss = _loss_and_output_grad(out, y, meta[_BATCH], meta[_RELU_OUT] != 0, dout)
    _backward(ws, meta, x, acts, deltas, dout)
    _adam(ws, meta, state, lr)
    _refresh_weight_copies(ws, meta)
    return loss


@_jit
def _u(index):
    """An index as unsigned: numba then skips its negative-index wraparound, which LLVM cannot prove
    unneeded for a runtime offset such as j0 + v, and which turns contiguous vector loads into gathers."""
    return np.uint64(index)


# --- products --------------------------------------------------------------------------------
@_jit
def _product(lhs, k_count, rhs, bias, relu, gate, out):
    """out[i, :] = bias + sum over k < k_count of lhs[i, k] * rhs[k, :], in ROWS x LANES tiles; relu
    keeps positive results (forward), gate those where gate > 0 (ReLU's backward). lhs may be a
    transposed view: it is read one scalar at a time."""
    acc = numba.carray(_stack_buffer(TILE, np.float32), (ROWS, LANES))
    rows, cols = out.shape
    for i0 in range(0, rows, ROWS):
        for j0 in range(0, cols, LANES):
            for r in range(ROWS):
                for v in range(LANES):
                    acc[r, v] = bias[_u(j0 + v)] if bias is not None else F32(0.0)
            for k in range(k_count):
                for r in range(ROWS):
                    x = lhs[i0 + r, k]
                    for v in range(LANES):
                        acc[r, v] += x * rhs[k, _u(j0 + v)]
            for r in range(ROWS):
                for v in range(LANES):
                    s = acc[r, v]
                    if relu and not s > F32(0.0):
                        s = F32(0.0)
                    if gate is not None and not gate[i0 + r, _u(j0 + v)] > F32(0.0):
                        s = F32(0.0)
                    out[i0 + r, _u(j0 + v)] = s


@_jit
def _output_forward(a, w, b, relu, out):
    """out[i] = b + a[i, :] . w, then ReLU if relu: the width-1 output layer, 16 partial sums a row."""
    part = numba.carray(_stack_buffer(SUM_LANES, np.float32), (SUM_LANES,))
    rows, cols = a.shape
    for i in range(rows):
        for v in range(SUM_LANES):
            part[v] = F32(0.0)
        for k0 in range(0, cols, SUM_LANES):
            for v in range(SUM_LANES):
                part[v] += a[i, _u(k0 + v)] * w[_u(k0 + v)]
        width = SUM_LANES // 2
        while width > 0:  # pairwise: a few vector steps instead of a 16-add chain
            for v in range(width):
                part[v] += part[v + width]
            width //= 2
        s = part[0] + b
        out[i] = max(s, F32(0.0)) if relu else s


@_jit
def _column_sums(d, out):
    """out[:] = sum over rows of d: a bias gradient."""
    rows, cols = d.shape
    for v in range(cols):
        out[v] = F32(0.0)
    for i in range(rows):
        for v in range(cols):
            out[v] += d[i, v]


# --- views of the one float32 workspace -------------------------------------------------------
@_jit
def _matrix(ws, offset, rows, cols):
    return ws[offset : offset + rows * cols].reshape((rows, cols))


@_jit
def _layer_weights(ws, meta, layer):
    """(rows, Hp) transposed weights W.T of hidden layer `layer` and its (Hp,) bias."""
    rows = meta[_INPUT_PAD] if layer == 0 else meta[_HIDDEN_ROWS]
    hp = meta[_HIDDEN_PAD]
    offset = meta[_HEADER + layer]
    return _matrix(ws, offset, rows, hp), ws[offset + rows * hp : offset + rows * hp + hp]


@_jit
def _output_weights(ws, meta):
    """The output layer's (Hp,) weights and the offset of its bias."""
    offset = meta[_HEADER + meta[_LAYERS]]
    hp = meta[_HIDDEN_PAD]
    return ws[offset : offset + hp], offset + hp


@_jit
def _weight_copy(ws, meta, layer):
    """W of hidden layer `layer` >= 1 as (H, Hp): the backward pass reads W's rows contiguously."""
    hp = meta[_HIDDEN_PAD]
    return _matrix(ws, meta[_WCOPY] + (layer - 1) * meta[_HIDDEN] * hp, meta[_HIDDEN], hp)


@_jit
def _stack3(ws, offset, meta, rows):
    return ws[offset : offset + meta[_LAYERS] * rows * meta[_HIDDEN_PAD]].reshape(
        (meta[_LAYERS], rows, meta[_HIDDEN_PAD])
    )


# --- forward, data, backward, Adam -------------------------------------------------------------
@_jit
def _forward(ws, meta, x, acts, out):
    """Forward pass of x (rows, Inp): acts[l] (rows, Hp) after hidden layer l, out (rows,)."""
    a, k_count = x, meta[_INPUT]
    for layer in range(meta[_LAYERS]):
        wt, b = _layer_weights(ws, meta, layer)
        _product(a, k_count, wt, b, True, None, acts[layer])  # (rows, K) @ (K, Hp) + b, ReLU
        a, k_count = acts[layer], meta[_HIDDEN]
    w_out, b_out = _output_weights(ws, meta)
    _output_forward(a, w_out, ws[b_out], meta[_RELU_OUT] != 0, out)


@_jit
def _mix64(z):
    """splitmix64's output function: 64 well-mixed bits from a counter value."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@_jit
def _lemire(z):
    """Lemire's multiply-shift on the top 32 bits of z: the drawn integer (0..100) sits in the high
    half, and a low half below _REJECT_BELOW_U means the draw must be rejected to stay unbiased."""
    return (z >> _S32) * _DRAW_RANGE_U


@_jit
def _draw_batch(x, y, batch, width, state):
    """Fill x[:batch, :width] with integers LOW..HIGH / SCALE and y[:batch] with the row sums.

    Value n of the batch comes from splitmix64 output n after the stream's position; splitmix64 is
    a counter hashed, so the loop computes every output at once (it vectorizes). A draw Lemire's
    method rejects (68 in 2**32) is replaced by the next output after the batch's.
    """
    base = state[_STATE_RNG]
    rejected = 0
    for i in range(batch):
        row = base + np.uint64(i * width) * _GOLDEN
        for k in range(width):
            m = _lemire(_mix64(row + np.uint64(k + 1) * _GOLDEN))
            rejected += np.int64((m & _MASK32) < _REJECT_BELOW_U)
            x[i, k] = F32(np.int64(m >> _S32) + LOW) / F32(SCALE)  # as torch: ints.to(float32) / 100
    state[_STATE_RNG] = base + np.uint64(batch * width) * _GOLDEN
    if rejected > 0:
        for i in range(batch):
            row = base + np.uint64(i * width) * _GOLDEN
            for k in range(width):
                m = _lemire(_mix64(row + np.uint64(k + 1) * _GOLDEN))
                while (m & _MASK32) < _REJECT_BELOW_U:
                    state[_STATE_RNG] += _GOLDEN
                    m = _lemire(_mix64(state[_STATE_RNG]))
                x[i, k] = F32(np.int64(m >> _S32) + LOW) / F32(SCALE)
    for i in range(batch):
        total = F32(0.0)
        for k in range(width):
            total += x[i, k]
        y[i] = total


@_jit
def _loss_and_output_grad(out, y, batch, relu, dout):
    """MSE over the first `batch` rows; dout = d loss / d out's pre-activation (0 on padding rows)."""
    total = F32(0.0)
    scale = F32(2.0 / batch)
    for i in range(out.shape[0]):
        if i < batch:
            diff = out[i] - y[i]
            total += diff * diff
            dout[i] = diff * scale if (not relu or out[i] > F32(0.0)) else F32(0.0)
        else:
            dout[i] = F32(0.0)
    return total / F32(batch)


@_jit
def _backward(ws, meta, x, acts, deltas, dout):
    """Gradients of every parameter into the grads region (same layout as the params region)."""
    layers, hidden = meta[_LAYERS], meta[_HIDDEN]
    grads_shift = meta[_PARAM_COUNT]  # grads lie right after the params
    w_out, b_out = _output_weights(ws, meta)
    top, last = deltas[layers - 1], acts[layers - 1]
    rows, hp = last.shape
    dw_out = ws[meta[_HEADER + layers] + grads_shift : meta[_HEADER + layers] + grads_shift + hp]
    total = F32(0.0)
    for v in range(hp):
        dw_out[v] = F32(0.0)
    for i in range(rows):
        d = dout[i]
        total += d
        for v in range(hp):
            dw_out[v] += d * last[i, v]
            top[i, v] = d * w_out[v] if last[i, v] > F32(0.0) else F32(0.0)  # through ReLU
    ws[b_out + grads_shift] = total
    for layer in range(layers - 1, -1, -1):
        wt, _ = _layer_weights(ws, meta, layer)
        k_rows = wt.shape[0]
        offset = meta[_HEADER + layer] + grads_shift
        dwt = _matrix(ws, offset, k_rows, hp)
        below = x if layer == 0 else acts[layer - 1]
        _product(below.T, rows, deltas[layer], None, False, None, dwt)  # sum_i a[i, k] d[i, :]
        _column_sums(deltas[layer], ws[offset + k_rows * hp : offset + k_rows * hp + hp])
        if layer > 0:  # d below = (d @ W) where the layer below's output > 0
            w = _weight_copy(ws, meta, layer)
            _product(deltas[layer], hidden, w, None, False, acts[layer - 1], deltas[layer - 1])


@_jit
def _adam(ws, meta, state, lr):
    """torch.optim.Adam's update (single-tensor, no weight decay) over the flat parameter buffer."""
    n = meta[_PARAM_COUNT]
    params, grads = ws[PARAMS * n : (PARAMS + 1) * n], ws[GRADS * n : (GRADS + 1) * n]
    exp_avg, exp_avg_sq = ws[EXP_AVG * n : (EXP_AVG + 1) * n], ws[EXP_AVG_SQ * n : (EXP_AVG_SQ + 1) * n]
    state[_STATE_STEPS] += np.uint64(1)
    t = float(state[_STATE_STEPS])
    step_size = F32(lr / (1.0 - BETA1**t))
    bias_correction2_sqrt = F32((1.0 - BETA2**t) ** 0.5)
    w1, beta2, w2, eps = F32(1.0 - BETA1), F32(BETA2), F32(1.0 - BETA2), F32(EPS)
    for j in range(n):
        g = grads[j]
        m = exp_avg[j]
        m = m + w1 * (g - m)  # exp_avg.lerp_(grad, 1 - beta1)
        v = exp_avg_sq[j] * beta2 + w2 * (g * g)  # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
        m = m if abs(m) >= FLOAT32_MIN_NORMAL else F32(0.0)
        v = v if v >= FLOAT32_MIN_NORMAL else F32(0.0)
        exp_avg[j] = m
        exp_avg_sq[j] = v
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
        params[j] = params[j] - step_size * (m / denom)  # param.addcdiv_(exp_avg, denom, -step_size)


@_jit
def _refresh_weight_copies(ws, meta):
    for layer in range(1, meta[_LAYERS]):
        wt, _ = _layer_weights(ws, meta, layer)
        w = _weight_copy(ws, meta, layer)
        for j in range(w.shape[0]):  # contiguous stores, strided loads: the faster order here
            for k in range(wt.shape[0]):
                w[j, k] = wt[k, j]


# --- the Python side: layout, weights in and out, the Trainer ---------------------------------
def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def plan_layout(net_config: NetConfig, batch_size: int) -> tuple[np.ndarray, int]:
    """(meta, float32 elements in all): where each buffer lives in the one float32 workspace; every
    region starts on 64 bytes."""
    c, layers = net_config, net_config.hidden_layers
    meta = np.zeros(_HEADER + layers + 1, dtype=np.int64)
    meta[_BATCH : _RELU_OUT + 1] = [  # the sizes, in the order of their slots
        batch_size, _round_up(batch_size, ROWS), c.input_size, _round_up(c.input_size, ROWS), c.hidden_size,
        _round_up(c.hidden_size, LANES), _round_up(c.hidden_size, ROWS), layers, c.output_activation == "relu",
    ]  # fmt: skip
    bp, hidden_pad = int(meta[_BATCH_PAD]), int(meta[_HIDDEN_PAD])
    end = 0

    def region(count: int) -> int:
        nonlocal end
        start, end = end, end + _round_up(count, 16)
        return start

    for layer in range(layers):
        rows = meta[_INPUT_PAD] if layer == 0 else meta[_HIDDEN_ROWS]
        meta[_HEADER + layer] = region(rows * hidden_pad + hidden_pad)  # W.T, then b
    meta[_HEADER + layers] = region(hidden_pad + 1)  # output weights, then its bias
    meta[_PARAM_COUNT] = end
    region(3 * end)  # gradients, exp_avg, exp_avg_sq: the same layout, one after the other
    for slot, count in (
        (_X, bp * meta[_INPUT_PAD]),
        (_Y, bp),
        (_ACTS, layers * bp * hidden_pad),
        (_DELTAS, layers * bp * hidden_pad),
        (_OUT, bp),
        (_DOUT, bp),
        (_WCOPY, (layers - 1) * net_config.hidden_size * hidden_pad),
    ):
        meta[slot] = region(count)
    return meta, int(end)


def _aligned_zeros(count: int, align_bytes: int = 64) -> np.ndarray:
    """float32 zeros whose first element sits on `align_bytes` (full-vector loads never split a line)."""
    raw = np.zeros(count + align_bytes // 4, dtype=F32)
    skip = (-raw.ctypes.data % align_bytes) // 4
    return raw[skip : skip + count]


class NumbaNet:
    """The Net's parameters, Adam state and every step buffer in one float32 workspace: hidden layer l
    as W.T (in rows, Hp) zero-padded then its bias (Hp,), the output layer as w (Hp,) then b. Gradients,
    exp_avg and exp_avg_sq follow in the same layout, so Adam is one loop over four flat slices."""

    def __init__(self, net: torch.nn.Module, batch_size: int, lr: float, seed: int) -> None:
        self.config: NetConfig = net.config
        self.meta, size = plan_layout(self.config, batch_size)
        self.ws = _aligned_zeros(size)
        self.lr = float(lr)
        self.state = np.zeros(2, dtype=np.uint64)  # splitmix64 counter, Adam steps done
        self.state[_STATE_RNG] = np.uint64(seed % 2**64)
        for layer, linear in enumerate(net.hidden):
            wt, b = self.hidden_weights(layer)
            wt[: linear.in_features, : linear.out_features] = linear.weight.detach().cpu().numpy().T
            b[: linear.out_features] = linear.bias.detach().cpu().numpy()
        w_out, b_out = self.output_weights()
        w_out[: net.out.in_features] = net.out.weight.detach().cpu().numpy()[0]
        b_out[:] = net.out.bias.detach().cpu().numpy()
        _refresh_weight_copies(self.ws, self.meta)  # the backward pass's copies of W

    def flat(self, region: int) -> np.ndarray:
        """The flat view of PARAMS, GRADS, EXP_AVG or EXP_AVG_SQ (padding included)."""
        count = self.meta[_PARAM_COUNT]
        return self.ws[region * count : (region + 1) * count]

    def hidden_weights(self, layer: int, region: int = PARAMS) -> tuple[np.ndarray, np.ndarray]:
        """Views of hidden layer `layer`'s W.T (padded) and bias in `region` (PARAMS, GRADS...)."""
        return _layer_weights(self.flat(region), self.meta, layer)

    def output_weights(self, region: int = PARAMS) -> tuple[np.ndarray, np.ndarray]:
        """Views of the output layer's weights (padded) and its bias (one element)."""
        w, bias = _output_weights(self.flat(region), self.meta)
        return w, self.flat(region)[bias : bias + 1]

    def step(self) -> float:
        """One article iteration: a fresh batch, forward, MSE, backward, Adam. Returns the loss."""
        return _train_step(self.ws, self.meta, self.state, self.lr, True)

    def forward_on(self, x: np.ndarray) -> Callable[[], np.ndarray]:
        """A call running the forward on x (N, input_size) into zero-padded buffers made here, once: (N, 1)."""
        padded, ws, meta = _round_up(len(x), ROWS), self.ws, self.meta
        xp = np.zeros((padded, meta[_INPUT_PAD]), dtype=F32)
        xp[: len(x), : x.shape[1]] = x
        acts = np.zeros((meta[_LAYERS], padded, meta[_HIDDEN_PAD]), dtype=F32)
        out = np.zeros(padded, dtype=F32)
        result = out[: len(x), None]

        def run() -> np.ndarray:
            _forward(ws, meta, xp, acts, out)
            return result

        return run

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward_on(x)().copy()


def build_trainer(device: torch.device, net_config: NetConfig, config: TrainConfig) -> Trainer:
    """The numba-reference Trainer (CPU only): initial weights from init_net(net_config, config.seed).
    RuntimeError where numba is not installed."""
    if numba is None:
        raise RuntimeError(f"numba-reference cannot run: {NUMBA_MISSING}")
    require_cpu("numba-reference", device)
    model = NumbaNet(init_net(net_config, config.seed, "cpu"), config.batch_size, config.lr, config.seed)
    train, ws, meta, state, lr = _train_step, model.ws, model.meta, model.state, model.lr

    def step() -> float:  # not model.step: no attribute lookups in the timed call
        return train(ws, meta, state, lr, True)

    notes = [
        "one Numba-compiled function per step (batch draw included), no allocation, float32, no fast-math",
        "batches from a splitmix64 stream seeded with the seed: same distribution as torch, other draws",
        "register-tiled hand-written products; widths padded to 64; Adam over one flat buffer",
        "Adam moments below 1.2e-38 flushed to zero (subnormals of dead units are slow)",
    ]
    return array_trainer(step, model.forward_on, notes)
