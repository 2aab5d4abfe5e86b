"""sumnet: the article's tiny network that learns to sum 30 numbers.

python -m sumnet
"""

from sumnet.data import TestSet, make_batch, make_generator, make_test_set
from sumnet.evaluate import DEFAULT_TARGET_MAE, Metrics, Verdict, evaluate, verdict
from sumnet.model import Net, NetConfig, count_parameters
from sumnet.train import TrainConfig, TrainResult, init_net, make_optimizer, train, train_step

__all__ = [
    "DEFAULT_TARGET_MAE",
    "Metrics",
    "Net",
    "NetConfig",
    "TestSet",
    "TrainConfig",
    "TrainResult",
    "Verdict",
    "count_parameters",
    "evaluate",
    "init_net",
    "make_batch",
    "make_generator",
    "make_optimizer",
    "make_test_set",
    "train",
    "train_step",
    "verdict",
]
