"""Model-loading tests use the session's one model cache (tests/conftest.py)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def session_cache():
    return os.environ["MLXSERVE_CACHE"]
