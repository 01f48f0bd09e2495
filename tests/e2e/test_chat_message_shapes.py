"""Chat messages of any JSON shape reach the serving layer (normalization, media parts,
tool plan, chat template) and come back as a 200 or an OpenAI-shaped 400, never a 5xx;
and the streamed chunks have OpenAI's shape."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e_support import TINY_NAME

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=6))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6)


def maybe(value: st.SearchStrategy) -> st.SearchStrategy:
    """The value, any other JSON in its place, or (as None) the key left out."""
    return st.one_of(value, JSON, st.none())


PART_TYPES = st.sampled_from(["text", "input_text", "image_url", "input_image", "video_url",
                              "video", "image", "audio", "refusal"])
PART = st.one_of(st.fixed_dictionaries({"type": maybe(PART_TYPES), "text": maybe(st.text(max_size=8)),
                                        "image_url": maybe(st.fixed_dictionaries({"url": JSON}))}),
                 JSON)
CONTENT = st.one_of(st.text(max_size=10), st.lists(PART, max_size=3), JSON)
FUNCTION = st.fixed_dictionaries({"name": maybe(st.sampled_from(["f", "get_weather", ""])),
                                  "arguments": maybe(st.sampled_from(["{}", '{"a": 1}', "[1]", "{bad"]))})
TOOL_CALL = st.one_of(st.fixed_dictionaries({"id": maybe(st.text(max_size=4)),
                                             "type": maybe(st.just("function")),
                                             "function": maybe(FUNCTION)}), JSON)
ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "wizard"])
MESSAGE = st.one_of(st.fixed_dictionaries({
    "role": maybe(ROLES), "content": maybe(CONTENT), "name": maybe(st.text(max_size=4)),
    "tool_calls": maybe(st.lists(TOOL_CALL, max_size=2)),
    "tool_call_id": maybe(st.text(max_size=4)), "reasoning_content": maybe(st.text(max_size=4)),
}), JSON)
TOOL = st.one_of(st.fixed_dictionaries({"type": maybe(st.just("function")),
                                        "function": maybe(FUNCTION)}), JSON)
BODY_EXTRAS = st.fixed_dictionaries({}, optional={
    "tools": st.one_of(st.lists(TOOL, max_size=2), JSON),
    "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), JSON),
    "parallel_tool_calls": st.one_of(st.booleans(), JSON),
})


def without_nones(message):
    if isinstance(message, dict):
        return {key: value for key, value in message.items() if value is not None}
    return message


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(messages=st.one_of(st.lists(MESSAGE.map(without_nones), min_size=1, max_size=4), JSON),
       extras=BODY_EXTRAS)
def test_any_message_shape_is_answered_without_a_server_error(tiny_server, messages, extras):
    body = {"model": TINY_NAME, "messages": messages, "max_tokens": 1, **extras}
    response = httpx.post(f"{tiny_server.base_url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code in (200, 400), (json.dumps(body), response.text)
    if response.status_code == 400:
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"], response.text
        assert error["param"] in ("messages", "tools", "tool_choice", "parallel_tool_calls"), response.text


def test_role_chunk_carries_no_content(tiny_client):
    """OpenAI's first chunk is the role alone; content arrives in later chunks."""
    chunks = list(tiny_client.chat.completions.create(
        model=TINY_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=3,
        temperature=0, stream=True))
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content is None
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
