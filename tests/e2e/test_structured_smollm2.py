"""Structured outputs on the real SmolLM2-135M (its GGUF-built tokenizer): the schema
corpus greedy and sampled, mixed batches, JSON mode, regex and choice, streaming."""

from __future__ import annotations

import asyncio
import json
import re

import openai
import pytest

from structured_schemas import SCHEMAS
from structured_support import run_corpus, schema_format, validate

pytestmark = [pytest.mark.slow, pytest.mark.real_model]
MODEL = "smollm2-135m"


def test_every_corpus_answer_validates_greedy_and_sampled(default_server):
    problems = run_corpus(f"{default_server.base_url}/v1", MODEL)
    assert not problems, "\n".join(problems)


def _chat(client: openai.OpenAI, content: str, **extra):
    extra.setdefault("max_tokens", 48)
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], temperature=0, **extra)


MIXED = [
    ("Give a person as JSON.", {"response_format": schema_format(SCHEMAS[0][2], "person")}),
    ("What is the capital of France?", {}),
    ("Is water wet?", {"extra_body": {"guided_choice": ["yes", "no", "maybe"]}}),
    ("Tell me about cats.", {}),
    ("Give a US zip code.", {"extra_body": {"guided_regex": "[0-9]{5}"}}),
]


def test_constrained_and_free_rows_in_one_batch_equal_their_lone_answers(default_server):
    async def together():
        async with openai.AsyncOpenAI(base_url=f"{default_server.base_url}/v1",
                                      api_key="unused", max_retries=0, timeout=600) as client:
            return await asyncio.gather(*(client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": text}], temperature=0,
                max_tokens=48, **extra) for text, extra in MIXED))

    client = openai.OpenAI(base_url=f"{default_server.base_url}/v1", api_key="unused",
                           max_retries=0, timeout=600)
    lone = [_chat(client, text, **extra).choices[0].message.content for text, extra in MIXED]
    batched = [r.choices[0].message.content for r in asyncio.run(together())]
    assert batched == lone
    validate(SCHEMAS[0][2], lone[0])
    assert lone[2] in ("yes", "no", "maybe")
    assert re.fullmatch("[0-9]{5}", lone[4])
    assert not lone[1].startswith("{")  # the free rows were not constrained


def test_json_object_mode_streams_one_valid_object(default_client):
    kwargs = dict(response_format={"type": "json_object"})
    whole = _chat(default_client, "Describe a dog in JSON.", **kwargs).choices[0]
    chunks = list(_chat(default_client, "Describe a dog in JSON.", stream=True, **kwargs))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert streamed == whole.message.content
    assert finishes == [whole.finish_reason]
    if whole.finish_reason == "stop":
        assert isinstance(json.loads(streamed), dict)
    else:  # cut off by max_tokens: an honest prefix of an object
        assert whole.finish_reason == "length" and streamed.startswith("{")


def test_max_tokens_mid_object_is_length(default_client):
    choice = _chat(default_client, "Give a person as JSON.", max_tokens=5,
                   response_format=schema_format(SCHEMAS[0][2], "person")).choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content.startswith('{"name": ')
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice.message.content)


def test_guided_choice_and_regex_on_completions(default_client):
    choice = default_client.completions.create(
        model=MODEL, prompt="The sky is", max_tokens=8, temperature=0,
        extra_body={"guided_choice": [" blue", " green", " made of cheese"]}).choices[0]
    assert choice.text in (" blue", " green", " made of cheese") and choice.finish_reason == "stop"
    sampled = default_client.completions.create(
        model=MODEL, prompt="My phone number is", max_tokens=16, temperature=1.0, seed=3, n=3,
        extra_body={"structured_outputs": {"regex": r" \(\d{3}\) \d{3}-\d{4}"}}).choices
    assert len(sampled) == 3
    for c in sampled:
        assert re.fullmatch(r" \(\d{3}\) \d{3}-\d{4}", c.text) and c.finish_reason == "stop"


def test_guided_grammar_gbnf_on_chat(default_client):
    grammar = 'root ::= "The answer is " [0-9] "."'
    reply = _chat(default_client, "What is 2 + 2?", extra_body={"guided_grammar": grammar})
    assert re.fullmatch(r"The answer is [0-9]\.", reply.choices[0].message.content)
