"""Model-loading tests write converted models into a temporary cache, never ~/.cache."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """A fresh cache per session (as on CI); MLXSERVE_TEST_CACHE reuses one across runs."""
    return os.environ.get("MLXSERVE_TEST_CACHE") or str(tmp_path_factory.mktemp("mlxserve-cache"))


@pytest.fixture(autouse=True)
def _temp_cache(monkeypatch, session_cache):
    monkeypatch.setenv("MLXSERVE_CACHE", session_cache)
