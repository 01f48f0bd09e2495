"""Special tokens stay out of the output text, as vLLM's default ``skip_special_tokens``:
the real Qwen2.5-Coder-0.5B, made to sample ``<|im_start|>`` (a special token its chat
template uses; seen in a Claude Code run leading a tool call written as text) by a
logit_bias, over the official openai client. The tokens still count, and
``skip_special_tokens: false`` keeps them, as in vLLM."""

from __future__ import annotations

import openai
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

MODEL = "qwen2.5-coder-0.5b"
IM_START = 151644  # <|im_start|> in Qwen2.5's tokenizer (special: true)
FORCED = {"logit_bias": {str(IM_START): 100}, "max_tokens": 3, "temperature": 0.0}


@pytest.fixture(scope="module")
def client(qwen_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=qwen_server.base_url + "/v1", api_key="unused", max_retries=0)


def _chat(client: openai.OpenAI, **extra):
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi."}], **FORCED, **extra)


def test_a_sampled_special_token_is_not_content(client):
    reply = _chat(client, logprobs=True)
    assert reply.choices[0].message.content == ""
    assert reply.usage.completion_tokens == 3
    tokens = [entry.token for entry in reply.choices[0].logprobs.content]
    assert tokens == ["<|im_start|>"] * 3  # the logprobs still name what was sampled


def test_streamed_and_completions_hide_it_too(client):
    stream = _chat(client, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ""
    text = client.completions.create(model=MODEL, prompt="Hello", **FORCED).choices[0].text
    assert text == ""


def test_skip_special_tokens_false_keeps_it(client):
    reply = _chat(client, extra_body={"skip_special_tokens": False})
    assert reply.choices[0].message.content == "<|im_start|>" * 3
