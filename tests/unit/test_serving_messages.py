"""Chat message normalization (pure Python)."""

from __future__ import annotations

import pytest

from mlxserve.errors import InvalidRequest
from mlxserve.serving.messages import normalize_messages


def test_developer_becomes_system_and_systems_are_hoisted_and_merged():
    out = normalize_messages([
        {"role": "user", "content": "q"},
        {"role": "developer", "content": "rule 1"},
        {"role": "system", "content": "rule 2"},
    ])
    assert out == [{"role": "system", "content": "rule 1\n\nrule 2"},
                   {"role": "user", "content": "q"}]


def test_content_parts_become_text_and_same_roles_merge():
    out = normalize_messages([
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "x"},
        {"role": "assistant", "content": None},
    ])
    assert out == [{"role": "user", "content": "a\nb\n\nc"}, {"role": "assistant", "content": "x"}]


def test_tool_calls_get_dict_arguments_and_tool_messages_get_names():
    out = normalize_messages([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_1", "content": "still sunny"},
    ])
    assert out[1]["tool_calls"] == [{"type": "function", "id": "call_1", "function": {
        "name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert out[2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1",
                      "name": "get_weather"}
    assert len(out) == 4  # tool results are never merged


@pytest.mark.parametrize("messages", [
    [], "hi", [{"role": "wizard", "content": "x"}], [{"content": "x"}],
    [{"role": "user", "content": 3}], [{"role": "system", "content": "only system"}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}]}],
])
def test_bad_messages_raise_invalid_request(messages):
    with pytest.raises(InvalidRequest) as info:
        normalize_messages(messages)
    assert info.value.param == "messages"
