"""What a test needs beyond torch and the scientific stack (a package such as sqlalchemy, a tool such
as Chromium or PostgreSQL): where it is absent, as on the project's GPU machine, the test or its
module skips with one line; under CI=true, where .ci/run installs all of it, that is a failure,
never a silent skip."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the calling test, or its whole module at import time, saying `reason`; fail under CI=true."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require(module: str, why: str) -> ModuleType:
    """Import `module`, or skip the calling test or module (fail under CI=true) saying why it is needed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        skip_or_fail(f"{module} is not installed ({why}): pip install -e '.[all]'")
