"""The article's demo: train the Net to sum 30 numbers, then print its test table.

    python -m sumnet                      # the article: 3000 steps, batch 32, Adam lr 1e-3
    python -m sumnet --output-activation none --device auto --seed 3

Ends with the held-out MAE on 10,000 fixed rows, the exact-sum accuracy and a verdict.
"""

from __future__ import annotations

import argparse

import torch

from sumnet.cli_args import OneLineArgumentParser, fail, positive_float, positive_int, seed_int
from sumnet.data import make_batch, make_generator, make_test_set
from sumnet.device import resolve_device
from sumnet.evaluate import DEFAULT_TARGET_MAE, evaluate, verdict
from sumnet.model import OUTPUT_ACTIVATIONS, Net, NetConfig, count_parameters
from sumnet.train import TrainConfig, train

DEFAULT_SEED = 0  # documented in the README; the article's Net converges from it
DEMO_ROWS = 10  # the article prints 10 fresh test rows
DEMO_ROWS_SEED = 7  # seed of those rows, apart from training and the held-out set


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineArgumentParser(prog="python -m sumnet", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive_int, default=3000, help="batch updates (default 3000)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="rows per step (default 32)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--seed", type=seed_int, default=DEFAULT_SEED, help="init and data seed")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    parser.add_argument("--output-activation", choices=OUTPUT_ACTIVATIONS, default="relu")
    parser.add_argument("--target-mae", type=positive_float, default=DEFAULT_TARGET_MAE)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    prog = "python -m sumnet"
    try:
        device, _ = resolve_device(args.device)
    except ValueError as err:
        fail(prog, str(err))
    net_config = NetConfig(output_activation=args.output_activation)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)

    print(
        f"Training the Net ({count_parameters(Net(net_config)):,} parameters) on {device}, seed {args.seed}..."
    )
    result = train(
        config,
        net_config,
        device,
        on_log=lambda step, loss: print(f"Epoch [{step}/{config.steps}], Loss: {loss:.4f}"),
    )
    net = result.net.eval()

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
