"""Test modules that need a package beyond torch and the scientific stack (the history's sqlalchemy
and ruptures) call `require` first: where it is absent, as on the project's GPU machine, the module
skips with one line instead of failing collection for the whole suite. Under CI=true, where .ci/run
installs every dependency, an absent package is a failure, never a silent skip."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str, why: str) -> ModuleType:
    """Import `module`, or skip the calling test module (fail under CI=true) saying why it is needed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} is not installed ({why}): pip install -e ."
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason, allow_module_level=True)
