"""Chat completions through the official openai client against the real server."""

from __future__ import annotations

import pytest

from e2e_support import TINY_NAME, same_usage_but_cache

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say something about the sea."}]


def collect_chat_stream(client, **kwargs):
    """(per-choice content, per-choice finish_reason, usage, chunks) of a streamed call."""
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    contents: dict[int, str] = {}
    finishes: dict[int, str] = {}
    roles: dict[int, str] = {}
    usage = None
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.role:
                roles.setdefault(choice.index, choice.delta.role)
            contents[choice.index] = contents.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    return contents, finishes, roles, usage, chunks


def test_chat_stream_equals_non_stream(tiny_client):
    request = dict(model=TINY_NAME, messages=MESSAGES, max_tokens=24, temperature=0)
    full = tiny_client.chat.completions.create(**request)
    contents, finishes, roles, usage, chunks = collect_chat_stream(
        tiny_client, stream_options={"include_usage": True}, **request)
    choice = full.choices[0]
    assert full.object == "chat.completion" and full.id.startswith("chatcmpl-")
    assert full.model == TINY_NAME
    assert choice.message.role == "assistant"
    assert contents[0] == choice.message.content
    assert finishes[0] == choice.finish_reason
    assert roles == {0: "assistant"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and usage is not None
    assert same_usage_but_cache(usage, full.usage)
    assert full.usage.completion_tokens > 0
    assert full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_chat_max_tokens_gives_length(tiny_client):
    full = tiny_client.chat.completions.create(
        model=TINY_NAME, messages=MESSAGES, max_completion_tokens=3, temperature=0,
        extra_body={"ignore_eos": True})
    assert full.choices[0].finish_reason == "length"
    assert full.usage.completion_tokens == 3


def test_chat_n_choices_stream_equals_non_stream(tiny_client):
    request = dict(model="tiny-alias", messages=MESSAGES, max_tokens=12, temperature=0, n=3)
    full = tiny_client.chat.completions.create(**request)
    contents, finishes, roles, _, _ = collect_chat_stream(tiny_client, **request)
    assert [c.index for c in full.choices] == [0, 1, 2]
    assert len({c.message.content for c in full.choices}) == 1  # greedy: all the same
    for choice in full.choices:
        assert contents[choice.index] == choice.message.content
        assert finishes[choice.index] == choice.finish_reason
    assert set(roles) == {0, 1, 2}


def test_chat_logprobs_shape_and_agreement(tiny_client):
    request = dict(model=TINY_NAME, messages=MESSAGES, max_tokens=6, temperature=0,
                   logprobs=True, top_logprobs=3)
    full = tiny_client.chat.completions.create(**request)
    entries = full.choices[0].logprobs.content
    assert len(entries) == full.usage.completion_tokens
    for entry in entries:
        assert entry.logprob <= 0.0
        assert len(entry.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert entry.logprob == pytest.approx(max(t.logprob for t in entry.top_logprobs))
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
    raw = bytes(b for entry in entries for b in entry.bytes)
    assert raw.decode("utf-8", "replace") == full.choices[0].message.content
    streamed = []
    for chunk in tiny_client.chat.completions.create(stream=True, **request):
        for choice in chunk.choices:
            if choice.logprobs and choice.logprobs.content:
                streamed.extend(choice.logprobs.content)
    assert [e.token for e in streamed] == [e.token for e in entries]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in entries])


def test_chat_content_parts_and_developer_role_match_plain_text(tiny_client):
    plain = tiny_client.chat.completions.create(
        model=TINY_NAME, max_tokens=8, temperature=0,
        messages=[{"role": "system", "content": "A\n\nB"}, {"role": "user", "content": "x\ny"}])
    parts = tiny_client.chat.completions.create(
        model=TINY_NAME, max_tokens=8, temperature=0,
        messages=[{"role": "developer", "content": "A"},
                  {"role": "user", "content": [{"type": "text", "text": "x"},
                                               {"type": "text", "text": "y"}]},
                  {"role": "system", "content": "B"}])
    assert parts.usage.prompt_tokens == plain.usage.prompt_tokens
    assert parts.choices[0].message.content == plain.choices[0].message.content


def test_chat_unknown_fields_ignored_and_text_response_format(tiny_client):
    full = tiny_client.chat.completions.create(
        model=TINY_NAME, messages=MESSAGES, max_tokens=4, temperature=0, user="someone",
        response_format={"type": "text"}, extra_body={"some_future_field": {"x": 1}})
    assert full.choices[0].message.content is not None


def test_chat_stop_string_is_not_in_output(tiny_client):
    base = tiny_client.chat.completions.create(
        model=TINY_NAME, messages=MESSAGES, max_tokens=24, temperature=0,
        extra_body={"ignore_eos": True})
    text = base.choices[0].message.content
    visible = [ch for ch in text[3:] if ch.isprintable() and not ch.isspace() and ch != "\ufffd"]
    if not visible:
        pytest.skip("the tiny model's output has no printable character to stop on")
    stop = visible[0]
    cut = tiny_client.chat.completions.create(
        model=TINY_NAME, messages=MESSAGES, max_tokens=24, temperature=0, stop=[stop],
        extra_body={"ignore_eos": True})
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(stop)]


@pytest.mark.slow
def test_default_model_knows_paris(default_client):
    question = [{"role": "user", "content": "What is the capital of France?"}]
    full = default_client.chat.completions.create(
        model="smollm2-135m", messages=question, max_tokens=40, temperature=0)
    contents, finishes, _, _, _ = collect_chat_stream(
        default_client, model="smollm2-135m", messages=question, max_tokens=40, temperature=0)
    assert "Paris" in full.choices[0].message.content
    assert contents[0] == full.choices[0].message.content
    assert finishes[0] == full.choices[0].finish_reason


def test_chat_n_with_seed_gives_distinct_reproducible_choices(tiny_client):
    """Choice j samples with seed + j (as vLLM does): n=2 with a seed is not two copies of
    one answer, and the same request gives the same choices again."""
    request = dict(model=TINY_NAME, messages=MESSAGES, max_tokens=12, temperature=1, seed=7,
                   n=2, logprobs=True, extra_body={"ignore_eos": True})

    def token_lists():
        reply = tiny_client.chat.completions.create(**request)
        return [[t.token for t in choice.logprobs.content] for choice in reply.choices]

    first = token_lists()
    assert len(first) == 2 and first[0] != first[1]
    assert token_lists() == first
    single = tiny_client.chat.completions.create(**{**request, "n": 1})
    assert [t.token for t in single.choices[0].logprobs.content] == first[0]
