"""Session-scoped real servers for the robustness tests: one on a real tiny model whose
forward fails for a marked prompt (fault_server.py), one with tight limits."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

from robust_support import (ALLOWED_ORIGIN, API_KEY, FAULT_SERVER, TIGHT_LIMITS,  # noqa: E402
                            TINY_CONTEXT, TINY_NAME)
from server_process import start_server  # noqa: E402
from tiny_models import make_tiny_model  # noqa: E402



@pytest.fixture(scope="session")
def robust_model_path(tmp_path_factory) -> str:
    return str(make_tiny_model(tmp_path_factory.mktemp("robust-tiny"), "qwen2"))


@pytest.fixture(scope="session")
def robust_server(robust_model_path):
    """Default limits; a small step budget so long prompts prefill over several steps."""
    server = start_server(robust_model_path, [
        "--served-model-name", TINY_NAME, "--max-model-len", str(TINY_CONTEXT),
        "--max-num-batched-tokens", "64", "--log-level", "info"],
        launcher=(FAULT_SERVER,))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tight_server(robust_model_path):
    limits = [str(a) for pair in TIGHT_LIMITS.items() for a in pair]
    server = start_server(robust_model_path, [
        "--served-model-name", TINY_NAME, "--max-model-len", str(TINY_CONTEXT),
        "--max-concurrent-requests", "2", "--allowed-origins", ALLOWED_ORIGIN,
        "--api-key", API_KEY, "--metrics-require-api-key", "--log-prompts",
        "--log-level", "info", *limits])
    yield server
    server.stop()
