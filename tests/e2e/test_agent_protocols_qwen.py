"""Full tool loops as an agent runs them, on the real Qwen2.5-Coder-0.5B (hermes tool
calls, parsed by ``auto``): Anthropic tool_use → tool_result → answer, and Responses
function_call → function_call_output → answer (also through previous_response_id);
streaming == non-streaming; hosted-model names accepted (--accept-vendor-model-names).

What the 0.5B model does under greedy decoding (checked on this server): the turn after
the tool result repeats the call (stop_reason tool_use) and writes the result's values
("18", "light rain") as text beside it, while tools stay offered (the OpenAI chat route
gives the same: the same prompt). So the tests check that the result reached the model
(its values show up), that stop_reason agrees with the blocks, and that the agent's usual
way out, tool_choice none, ends the turn with end_turn and no call.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from anthropic_support import prompt_tokens

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

QUESTION = "What is the weather like in Paris right now?"
SYSTEM = "You are a helpful assistant. Use the tools when they help."
SCHEMA = {"type": "object", "properties": {"city": {"type": "string",
                                                    "description": "The city name"}},
          "required": ["city"]}
WEATHER = '{"city": "Paris", "temperature_celsius": 18, "conditions": "light rain"}'
GREEDY = {"temperature": 0}


@pytest.fixture()
def claude(qwen_agent_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=qwen_agent_server.base_url, api_key="unused",
                               max_retries=0, timeout=600)


@pytest.fixture()
def codex(qwen_agent_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{qwen_agent_server.base_url}/v1", api_key="unused",
                         max_retries=0, timeout=600)


ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Get the current weather in a "
                    "given city", "input_schema": SCHEMA}]


def claude_ask(client, messages, **extra):
    return client.messages.create(model="claude-opus-5-5", max_tokens=64, system=SYSTEM,
                                  tools=ANTHROPIC_TOOLS, messages=messages,
                                  extra_body=GREEDY, **extra)


def test_anthropic_tool_loop(claude):
    messages = [{"role": "user", "content": QUESTION}]
    first = claude_ask(claude, messages)
    assert first.stop_reason == "tool_use" and first.model == "claude-opus-5-5"
    (call,) = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input["city"].lower() == "paris"
    assert call.id
    messages += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                               "content": WEATHER}]}]
    final = claude_ask(claude, messages)
    assert prompt_tokens(final.usage) > prompt_tokens(first.usage) + first.usage.output_tokens
    assert final.usage.cache_read_input_tokens > 0  # the first turn's prompt, cached
    text = "".join(b.text for b in final.content if b.type == "text")
    assert "18" in text and "light rain" in text
    calls = [b for b in final.content if b.type == "tool_use"]
    assert (final.stop_reason == "tool_use") == bool(calls), final.stop_reason
    closing = claude_ask(claude, messages, tool_choice={"type": "none"})
    assert closing.stop_reason == "end_turn"
    assert [b.type for b in closing.content] == ["text"] and "18" in closing.content[0].text


def test_anthropic_tool_call_streaming_equals_non_streaming(claude):
    messages = [{"role": "user", "content": QUESTION}]
    whole = claude_ask(claude, messages)
    with claude.messages.stream(model="claude-opus-5-5", max_tokens=64, system=SYSTEM,
                                tools=ANTHROPIC_TOOLS, messages=messages,
                                extra_body=GREEDY) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert "input_json_delta" in kinds
    assert without_ids(final) == without_ids(whole)
    assert prompt_tokens(final.usage) == prompt_tokens(whole.usage)


def without_ids(message) -> dict:
    """The message without its id and its tool_use ids (fresh in every request), and its
    usage but the output tokens (a repeated request may read more from the prefix cache)."""
    body = message.model_dump(exclude={"id"})
    body["usage"] = body["usage"]["output_tokens"]
    for block in body["content"]:
        block.pop("id", None)
    return body


RESPONSES_TOOLS = [{"type": "function", "name": "get_weather",
                    "description": "Get the current weather in a given city",
                    "parameters": SCHEMA},
                   {"type": "web_search"}]  # hosted: left out


def codex_ask(client, input_items, **extra):
    return client.responses.create(model="gpt-5-codex", instructions=SYSTEM, input=input_items,
                                   tools=RESPONSES_TOOLS, max_output_tokens=64,
                                   temperature=0, **extra)


def _only_call(response):
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert call.name == "get_weather" and "paris" in call.arguments.lower()
    assert call.call_id and call.id.startswith("fc_") and call.status == "completed"
    return call


def test_responses_tool_loop_stateless_and_with_previous_response_id(codex):
    """The second turn sent both ways: the whole history with store false (as Codex CLI
    does), and only the function_call_output after previous_response_id."""
    items = [{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}]
    first = codex_ask(codex, items)
    call = _only_call(first)
    output = {"type": "function_call_output", "call_id": call.call_id, "output": WEATHER}
    history = items + [item.model_dump(exclude_none=True) for item in first.output] + [output]
    stateless = codex_ask(codex, history, store=False)
    chained = codex_ask(codex, [output], previous_response_id=first.id)
    assert "18" in stateless.output_text and "light rain" in stateless.output_text
    assert chained.output_text == stateless.output_text
    assert chained.usage.input_tokens == stateless.usage.input_tokens
    assert chained.usage.input_tokens_details.cached_tokens > 0  # the first turn, cached
    closing = codex_ask(codex, [output], previous_response_id=first.id, tool_choice="none")
    assert [item.type for item in closing.output] == ["message"]
    assert closing.status == "completed" and "18" in closing.output_text


def test_responses_namespace_tools_are_flattened(codex):
    tools = [{"type": "namespace", "name": "weather", "description": "Weather tools",
              "tools": [dict(RESPONSES_TOOLS[0])]}]
    response = codex.responses.create(model="gpt-5-codex", instructions=SYSTEM, input=QUESTION,
                                      tools=tools, max_output_tokens=64, temperature=0,
                                      store=False)
    assert _only_call(response).namespace == "weather"


def test_responses_function_call_streaming_equals_non_streaming(codex):
    whole = codex_ask(codex, QUESTION, store=False)
    with codex.responses.stream(model="gpt-5-codex", instructions=SYSTEM, input=QUESTION,
                                tools=RESPONSES_TOOLS, max_output_tokens=64, temperature=0,
                                store=False) as stream:
        deltas = [e.delta for e in stream
                  if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    call = _only_call(final)
    assert "".join(deltas) == call.arguments == _only_call(whole).arguments
    # the second of two equal requests may read more of its prompt from the prefix cache
    assert final.usage.model_dump(exclude={"input_tokens_details"}) == whole.usage.model_dump(
        exclude={"input_tokens_details"})
