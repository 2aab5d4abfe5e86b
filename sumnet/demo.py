"""The article's demo: train the Net to sum 30 numbers, then print its test table. Run it as
`python -m sumnet` (sumnet/__main__.py installs the signal handling before this module loads torch).

    python -m sumnet                      # the article: 3000 steps, batch 32, Adam lr 1e-3
    python -m sumnet --output-activation none --device auto --seed 3

Ends with the held-out MAE on 10,000 fixed rows, the exact-sum accuracy and a verdict.
"""

from __future__ import annotations

import argparse
import re

import torch

from sumnet.cli_args import (
    OneLineArgumentParser,
    bounded_positive_int,
    fail,
    first_line,
    float_in,
    positive_float,
    seed_int,
)
from sumnet.data import make_batch, make_generator, make_test_set
from sumnet.device import resolve_device
from sumnet.evaluate import DEFAULT_TARGET_MAE, evaluate, verdict
from sumnet.model import OUTPUT_ACTIVATIONS, Net, NetConfig, count_parameters
from sumnet.train import MAX_BATCH_SIZE, MAX_LR, MAX_STEPS, MIN_LR, TrainConfig, train

PROG = "python -m sumnet"
DEFAULT_SEED = 0  # documented in the README; the article's Net converges from it
DEMO_ROWS = 10  # the article prints 10 fresh test rows
DEMO_ROWS_SEED = 7  # seed of those rows, apart from training and the held-out set
OUT_OF_MEMORY = re.compile("can't allocate memory|out of memory")  # the CPU and MPS allocators' errors
learning_rate = float_in(f"a learning rate from {MIN_LR:g} to {MAX_LR:g}", lambda lr: MIN_LR <= lr <= MAX_LR)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--steps", type=bounded_positive_int(MAX_STEPS), default=3000, help=f"1 to {MAX_STEPS:,}")
    batch_help = f"rows per step, 1 to {MAX_BATCH_SIZE:,} (default 32)"
    add("--batch-size", type=bounded_positive_int(MAX_BATCH_SIZE), default=32, help=batch_help)
    add("--lr", type=learning_rate, default=1e-3, help=f"Adam, {MIN_LR:g} to {MAX_LR:g} (default 1e-3)")
    add("--seed", type=seed_int, default=DEFAULT_SEED, help="init and data seed")
    add("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    add("--output-activation", choices=OUTPUT_ACTIVATIONS, default="relu")
    add("--target-mae", type=positive_float, default=DEFAULT_TARGET_MAE)
    return parser.parse_args(argv)


def _demo(args: argparse.Namespace, device: torch.device) -> None:
    """Train, print the article's log and test table, then the held-out verdict line."""
    net_config = NetConfig(output_activation=args.output_activation)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)

    size = count_parameters(Net(net_config))
    print(f"Training the Net ({size:,} parameters) on {device}, seed {args.seed}...")

    def log(step: int, loss: float) -> None:
        print(f"Epoch [{step}/{config.steps}], Loss: {loss:.4f}")

    net = train(config, net_config, device, on_log=log).net.eval()

    print("Testing!")
    inputs, targets = make_batch(DEMO_ROWS, make_generator(DEMO_ROWS_SEED, "cpu"))
    with torch.no_grad():
        predicted = net(inputs.to(device)).cpu()
    for i in range(DEMO_ROWS):
        first5 = "[" + ", ".join(f"{v:g}" for v in inputs[i, :5].tolist()) + ", ...]"
        p, t = predicted[i].item(), targets[i].item()
        print(f"{i + 1:<4} {first5:<32} {p:<12.2f} {t:<12.2f} {abs(p - t):<10.2f}")

    test_set = make_test_set()
    metrics = evaluate(net, test_set.to(device))
    v = verdict(metrics, args.target_mae)
    print(
        f"Held-out ({len(test_set.inputs):,} rows): MAE {metrics.mae:.4f}, "
        f"exact-sum accuracy {metrics.exact_accuracy:.1%}, "
        f"{'CONVERGED' if v.converged else 'NOT CONVERGED'}: {v.reason}"
    )


def main(argv: list[str] | None = None) -> int:
    """Exit 0 after the demo, 2 with one line on bad input or an allocation failure (Ctrl-C: run_entry)."""
    args = _parse(argv)
    try:
        device, _ = resolve_device(args.device)
    except ValueError as err:
        fail(PROG, str(err))
    try:
        _demo(args, device)
    except RuntimeError as err:
        if not isinstance(err, torch.cuda.OutOfMemoryError) and not OUT_OF_MEMORY.search(str(err)):
            raise
        fail(PROG, f"out of memory on {device} with --batch-size {args.batch_size:,}: {first_line(err)}")
    return 0
