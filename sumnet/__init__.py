"""sumnet: the article's tiny network that learns to sum 30 numbers.

python -m sumnet

The names below load on first use (PEP 562), so `import sumnet.cli_args` does not import torch:
`python -m bench.history trend` starts in a fraction of a second.
"""

import sys
import types
from importlib import import_module

_HOMES = {
    "TestSet": "sumnet.data",
    "make_batch": "sumnet.data",
    "make_generator": "sumnet.data",
    "make_test_set": "sumnet.data",
    "DEFAULT_TARGET_MAE": "sumnet.evaluate",
    "Metrics": "sumnet.evaluate",
    "Verdict": "sumnet.evaluate",
    "evaluate": "sumnet.evaluate",
    "verdict": "sumnet.evaluate",
    "Net": "sumnet.model",
    "NetConfig": "sumnet.model",
    "count_parameters": "sumnet.model",
    "TrainConfig": "sumnet.train",
    "TrainResult": "sumnet.train",
    "init_net": "sumnet.train",
    "make_optimizer": "sumnet.train",
    "train": "sumnet.train",
    "train_step": "sumnet.train",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'sumnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


class _Package(types.ModuleType):
    """`sumnet.train` and `sumnet.evaluate` are the functions, as they always were here, though
    modules of the same names exist: importing a submodule sets its name on the package, and this
    keeps that from hiding the function (`from sumnet.train import ...` still finds the module)."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _HOMES.get(name) == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
