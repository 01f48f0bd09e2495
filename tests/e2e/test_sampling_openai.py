"""Sampling parameters through the real server and the official openai client."""

from __future__ import annotations

import pytest

from e2e_support import TINY_NAME

POEM = [{"role": "user", "content": "Write a poem about rain."}]


@pytest.mark.parametrize("temperature", [1e-38, 1e-45, 5e-324])
def test_tiny_positive_temperature_answers_like_greedy(tiny_client, temperature):
    request = dict(model=TINY_NAME, messages=POEM, max_tokens=12,
                   extra_body={"ignore_eos": True})
    greedy = tiny_client.chat.completions.create(temperature=0, **request)
    tiny = tiny_client.chat.completions.create(temperature=temperature, **request)
    assert greedy.choices[0].message.content
    assert tiny.choices[0].message.content == greedy.choices[0].message.content


@pytest.mark.slow
@pytest.mark.parametrize("seed,n,max_tokens", [(5, 1, 30), (0, 8, 40)])
def test_top_k_one_sampling_equals_greedy_on_the_real_vocabulary(default_client, seed, n,
                                                                  max_tokens):
    """SmolLM2's 49152 tokens at temperature 1, top_k 1: every seeded choice is the greedy
    answer (a one-in-2^24 noise defect put ' debilitating' into seed 5's poem)."""
    request = dict(model="smollm2-135m", messages=POEM, max_tokens=max_tokens)
    greedy = default_client.chat.completions.create(
        temperature=0, extra_body={"ignore_eos": True}, **request)
    sampled = default_client.chat.completions.create(
        temperature=1, seed=seed, n=n, extra_body={"ignore_eos": True, "top_k": 1}, **request)
    expected = greedy.choices[0].message.content
    assert [c.message.content for c in sampled.choices] == [expected] * n
