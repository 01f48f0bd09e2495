"""Legacy completions through the official openai client against the real server."""

from __future__ import annotations

import pytest

from e2e_support import TINY_NAME, same_usage_but_cache

PROMPT = "The sea is"


def collect_completion_stream(client, **kwargs):
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    usage = None
    for chunk in client.completions.create(stream=True, **kwargs):
        assert chunk.object == "text_completion"
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    return texts, finishes, usage


def assert_stream_matches(client, **request):
    full = client.completions.create(**request)
    texts, finishes, usage = collect_completion_stream(
        client, stream_options={"include_usage": True}, **request)
    assert [c.index for c in full.choices] == list(range(len(full.choices)))
    for choice in full.choices:
        assert texts[choice.index] == choice.text
        assert finishes[choice.index] == choice.finish_reason
    assert same_usage_but_cache(usage, full.usage)
    return full


def test_completion_string_prompt(tiny_client):
    full = assert_stream_matches(tiny_client, model=TINY_NAME, prompt=PROMPT, max_tokens=16,
                                 temperature=0)
    assert full.id.startswith("cmpl-") and full.object == "text_completion"
    assert full.usage.completion_tokens > 0
    assert full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens


def test_completion_token_ids_equal_string(tiny_client, tiny_model_path):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tiny_model_path).encode(PROMPT)
    by_text = tiny_client.completions.create(model=TINY_NAME, prompt=PROMPT, max_tokens=10,
                                             temperature=0)
    by_ids = assert_stream_matches(tiny_client, model=TINY_NAME, prompt=ids, max_tokens=10,
                                   temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == len(ids)


def test_completion_list_of_prompts_and_n(tiny_client, tiny_model_path):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tiny_model_path).encode("Once")
    full = assert_stream_matches(tiny_client, model=TINY_NAME, prompt=[ids, [i for i in ids]],
                                 max_tokens=8, temperature=0, n=2)
    assert len(full.choices) == 4
    assert len({c.text for c in full.choices}) == 1
    two_text = tiny_client.completions.create(model=TINY_NAME, prompt=[PROMPT, "Once"],
                                              max_tokens=8, temperature=0)
    assert len(two_text.choices) == 2
    single = tiny_client.completions.create(model=TINY_NAME, prompt="Once", max_tokens=8,
                                            temperature=0)
    assert two_text.choices[1].text == single.choices[0].text
    assert two_text.usage.prompt_tokens == single.usage.prompt_tokens + len(
        AutoTokenizer.from_pretrained(tiny_model_path).encode(PROMPT))


def test_completion_echo(tiny_client):
    plain = tiny_client.completions.create(model=TINY_NAME, prompt=PROMPT, max_tokens=6,
                                           temperature=0)
    echoed = assert_stream_matches(tiny_client, model=TINY_NAME, prompt=PROMPT, max_tokens=6,
                                   temperature=0, echo=True)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text


def test_completion_logprobs(tiny_client):
    full = tiny_client.completions.create(model=TINY_NAME, prompt=PROMPT, max_tokens=5,
                                          temperature=0, logprobs=2)
    lp = full.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert "".join(lp.tokens) == full.choices[0].text  # '\x00' (byte token 'Ā') included
    assert lp.text_offset == [sum(map(len, lp.tokens[:i])) for i in range(5)]
    # the 2 best alternatives, plus the sampled token when it is not among them
    assert all(len(top) <= 3 and top[tok] == v
               for top, tok, v in zip(lp.top_logprobs, lp.tokens, lp.token_logprobs))
    assert all(v <= 0 for v in lp.token_logprobs)


def test_completion_stop(tiny_client):
    base = tiny_client.completions.create(model=TINY_NAME, prompt=PROMPT, max_tokens=24,
                                          temperature=0, extra_body={"ignore_eos": True})
    text = base.choices[0].text
    visible = [ch for ch in text[3:] if ch.isprintable() and not ch.isspace() and ch != "\ufffd"]
    if not visible:
        pytest.skip("the tiny model's output has no printable character to stop on")
    cut = assert_stream_matches(tiny_client, model=TINY_NAME, prompt=PROMPT, max_tokens=24,
                                temperature=0, stop=visible[0], extra_body={"ignore_eos": True})
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[: text.index(visible[0])]


def test_completion_default_max_tokens_is_16(tiny_client):
    full = tiny_client.completions.create(model=TINY_NAME, prompt=PROMPT, temperature=0,
                                          extra_body={"ignore_eos": True})
    assert full.usage.completion_tokens == 16 and full.choices[0].finish_reason == "length"


@pytest.mark.slow
def test_default_model_completion_stream_equals_non_stream(default_client):
    full = assert_stream_matches(default_client, model="smollm2-135m",
                                 prompt="The capital of France is", max_tokens=12,
                                 temperature=0)
    assert full.choices[0].text


@pytest.mark.slow
def test_default_model_completion_keeps_the_leading_space(default_client):
    """The continuation of "The capital of France is" starts with a space token; the text
    must keep it (prompt + text reads naturally) and equal the joined logprob tokens."""
    full = default_client.completions.create(model="smollm2-135m",
                                             prompt="The capital of France is", max_tokens=6,
                                             temperature=0, logprobs=1)
    choice = full.choices[0]
    assert choice.logprobs.tokens[0].startswith(" ")
    assert choice.text == "".join(choice.logprobs.tokens)
    assert choice.logprobs.text_offset[0] == 0 and choice.logprobs.text_offset[1] == len(
        choice.logprobs.tokens[0])
