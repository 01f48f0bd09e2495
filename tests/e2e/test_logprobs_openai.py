"""Output logprobs through the real server and the official openai client: their tokens
and raw bytes rebuild exactly the returned text (stop strings, EOS and characters split
over several tokens included)."""

from __future__ import annotations

import httpx
import pytest
from openai.types import Completion

from e2e_support import TINY_NAME

SEA = [{"role": "user", "content": "Say something about the sea."}]
CHINA = [{"role": "user", "content": "Write the Chinese word for China (中国) three times."}]
COUNT = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]


def _joined_bytes(entries) -> bytes:
    return bytes(b for entry in entries for b in entry.bytes)


def _is_whole_text(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _streamed(client, **request) -> tuple[str, list]:
    content, entries = "", []
    for chunk in client.chat.completions.create(stream=True, **request):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            if choice.logprobs and choice.logprobs.content:
                entries += choice.logprobs.content
    return content, entries


def test_chat_logprob_bytes_are_raw_and_rebuild_characters_split_over_tokens(tiny_client):
    """The tiny model's bytes include characters split over byte tokens: each such token's
    `bytes` is its own raw part (not U+FFFD's), so the joined bytes are the content (special
    tokens kept in the text: with EOS ignored it samples <|endoftext|>, whose logprob entry
    is there either way)."""
    reply = tiny_client.chat.completions.create(
        model=TINY_NAME, messages=SEA, max_tokens=24, temperature=0, logprobs=True,
        top_logprobs=2, extra_body={"ignore_eos": True, "skip_special_tokens": False})
    content = reply.choices[0].message.content
    entries = reply.choices[0].logprobs.content
    assert any(not _is_whole_text(bytes(e.bytes)) for e in entries)  # the case is here
    assert _joined_bytes(entries).decode("utf-8", "replace") == content
    for entry in entries:
        for alternative in [entry, *entry.top_logprobs]:
            assert bytes(alternative.bytes).decode("utf-8", "replace") == alternative.token


def test_completion_logprobs_zero_gives_the_sampled_token_in_the_sdk_shape(tiny_server):
    body = dict(model=TINY_NAME, prompt="The sea is", max_tokens=5, temperature=0, logprobs=0)
    raw = httpx.post(f"{tiny_server.base_url}/v1/completions", json=body, timeout=60).json()
    logprobs = Completion.model_validate(raw).choices[0].logprobs
    assert len(logprobs.tokens) == 5
    assert logprobs.top_logprobs == [{token: lp} for token, lp
                                     in zip(logprobs.tokens, logprobs.token_logprobs)]


@pytest.mark.slow
def test_real_model_logprobs_rebuild_chinese_text_and_leave_out_eos(default_client):
    """SmolLM2 writes "中国" as byte-level pieces, then ends with its EOS token."""
    choice = default_client.chat.completions.create(
        model="smollm2-135m", messages=CHINA, max_tokens=60, temperature=0,
        logprobs=True).choices[0]
    entries = choice.logprobs.content
    assert choice.finish_reason == "stop" and "中国" in choice.message.content
    assert _joined_bytes(entries).decode("utf-8") == choice.message.content
    assert "<|im_end|>" not in [e.token for e in entries]


@pytest.mark.slow
def test_real_model_logprobs_stop_where_the_stop_string_cuts_the_text(default_client):
    request = dict(model="smollm2-135m", messages=COUNT, max_tokens=30, temperature=0,
                   logprobs=True, stop=[" 3"])
    content, streamed = _streamed(default_client, **request)
    assert content.endswith("3.")  # "1. 1\n2. 2\n3." and not the " 3" after it
    assert "".join(e.token for e in streamed) == content
    completion = default_client.completions.create(
        model="smollm2-135m", prompt="1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", max_tokens=12,
        temperature=0, logprobs=1, stop=[" 13"])
    legacy = completion.choices[0]
    assert legacy.finish_reason == "stop" and legacy.text.endswith("12,")
    assert "".join(legacy.logprobs.tokens) == legacy.text
