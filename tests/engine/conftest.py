"""Fixtures for engine tests: tiny model folders."""

from __future__ import annotations

import pytest

from tiny_models import make_tiny_model


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-engine")
    return lambda family: make_tiny_model(root, family)
