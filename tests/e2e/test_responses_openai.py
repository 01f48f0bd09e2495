"""The OpenAI Responses API end to end: the real default model (SmolLM2-135M) and the
official openai client's ``client.responses``; greedy decoding."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from anthropic_support import post, sse_events

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
QUESTION = "What is the capital of France?"


def ask(client, **fields):
    return client.responses.create(**{"model": MODEL, "input": QUESTION, "temperature": 0,
                                      "max_output_tokens": 64,
                                      "instructions": "Be brief.", **fields})


def test_plain_answer(default_client):
    response = ask(default_client)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed"
    assert response.model == default_client.models.list().data[0].id
    (item,) = response.output
    assert item.type == "message" and item.role == "assistant" and item.status == "completed"
    assert item.content[0].type == "output_text"
    assert "Paris" in response.output_text
    usage = response.usage
    assert usage.input_tokens > 10 and 0 < usage.output_tokens < 64
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_streaming_equals_non_streaming(default_client):
    whole = ask(default_client, store=False)
    with default_client.responses.stream(model=MODEL, input=QUESTION, temperature=0,
                                         max_output_tokens=64, instructions="Be brief.",
                                         store=False) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == whole.output_text == final.output_text
    assert comparable(final) == comparable(whole)


def comparable(response) -> dict:
    """The response without its ids and time (and the stream helper's parsed=None)."""
    body = response.model_dump(exclude={"id", "created_at"})
    for item in body["output"]:
        item.pop("id")
        for part in item.get("content") or []:
            part.pop("parsed", None)
    return body


def test_raw_semantic_events_with_sequence_numbers(default_server):
    response = post(default_server, "/v1/responses", {
        "model": MODEL, "input": QUESTION, "stream": True, "max_output_tokens": 8,
        "temperature": 0, "store": False})
    events = sse_events(response)
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    names = [name for name, _ in events]
    assert names[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert set(names[4:-4]) == {"response.output_text.delta"}
    assert names[-4:-1] == ["response.output_text.done", "response.content_part.done",
                            "response.output_item.done"]
    last = events[-1][1]["response"]
    assert names[-1] == f"response.{last['status']}" and last["status"] in (
        "completed", "incomplete")
    assert last["output"][0]["content"][0]["text"] == events[-4][1]["text"]


def test_max_output_tokens_gives_an_incomplete_response(default_client):
    response = ask(default_client, max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 3


def test_previous_response_id_continues_the_conversation(default_client):
    first = ask(default_client, input="My name is Ada. Reply with OK.")
    again = ask(default_client, input="What is my name?", previous_response_id=first.id)
    assert again.previous_response_id == first.id
    assert "Ada" in again.output_text
    alone = ask(default_client, input="What is my name?", store=False)
    assert again.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens


def test_get_and_delete_a_stored_response(default_client):
    response = ask(default_client)
    fetched = default_client.responses.retrieve(response.id)
    assert fetched.output_text == response.output_text and fetched.id == response.id
    default_client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        default_client.responses.retrieve(response.id)
    unstored = ask(default_client, store=False)
    with pytest.raises(openai.NotFoundError):
        default_client.responses.retrieve(unstored.id)
    with pytest.raises(openai.NotFoundError):
        ask(default_client, previous_response_id=unstored.id)


def test_codex_shaped_request_is_accepted(default_server):
    """What Codex CLI sends: developer + user items with input_text parts, function,
    namespace and hosted tools, reasoning summary, include, store false, cache keys."""
    schema = {"type": "object", "properties": {"cmd": {"type": "string"}}}
    body = {
        "model": MODEL, "stream": True, "store": False, "temperature": 0,
        "max_output_tokens": 16, "instructions": "You are a coding agent.",
        "input": [{"type": "message", "role": "developer",
                   "content": [{"type": "input_text", "text": "Be careful."}]},
                  {"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": QUESTION}]}],
        "tools": [{"type": "function", "name": "shell", "description": "Run a command",
                   "strict": False, "parameters": schema},
                  {"type": "namespace", "name": "mcp__files", "description": "Files",
                   "tools": [{"type": "function", "name": "read", "parameters": schema}]},
                  {"type": "web_search", "external_web_access": False}],
        "tool_choice": "auto", "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "abc", "client_metadata": {"x": "y"},
    }
    response = post(default_server, "/v1/responses", body)
    assert response.status_code == 200, response.text
    names = [name for name, _ in sse_events(response)]
    assert names[0] == "response.created"
    assert names[-1] in ("response.completed", "response.incomplete")


def test_text_format_json_schema_constrains_the_answer(default_client):
    schema = {"type": "object", "properties": {"capital": {"type": "string"}},
              "required": ["capital"], "additionalProperties": False}
    response = ask(default_client, store=False, text={"format": {
        "type": "json_schema", "name": "capital", "schema": schema, "strict": True}})
    assert list(json.loads(response.output_text)) == ["capital"]


def _text(item) -> str:
    return "".join(part.text for part in item.content)


def test_input_items_list_what_the_model_read_in_pages(default_client):
    first = ask(default_client, input="My name is Ada. Reply with OK.", max_output_tokens=4)
    new = [{"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Hello."}]},
           {"role": "user", "content": "What is my name?"}]
    again = ask(default_client, input=new, previous_response_id=first.id, max_output_tokens=4)
    pages = default_client.responses.input_items
    listed = list(pages.list(again.id, order="asc"))  # the chain: first's turn, then this
    assert [(i.type, i.role) for i in listed] == [("message", "user"), ("message", "assistant"),
                                                  ("message", "user"), ("message", "user")]
    assert [_text(i) for i in listed] == ["My name is Ada. Reply with OK.",
                                          first.output_text, "Hello.", "What is my name?"]
    assert listed[1].id == first.output[0].id and len({i.id for i in listed}) == 4
    page = pages.list(again.id, limit=3, order="asc")
    assert [i.id for i in page.data] == [i.id for i in listed[:3]] and page.has_more
    # the SDK follows `after` page by page (limit 1); newest first is the default order
    assert [i.id for i in pages.list(again.id, limit=1)] == [i.id for i in listed[::-1]]
    with pytest.raises(openai.NotFoundError):
        pages.list("resp_unknown")
    with pytest.raises(openai.BadRequestError):
        pages.list(again.id, limit=0)


def test_cached_tokens_are_part_of_input_tokens(default_server, default_client):
    """OpenAI's usage: input_tokens is the whole prompt, cached_tokens the part of it the
    prefix cache held."""
    httpx.delete(f"{default_server.base_url}/v1/cache", timeout=30)
    cold, warm = (ask(default_client, store=False, max_output_tokens=4) for _ in range(2))
    assert cold.usage.input_tokens_details.cached_tokens == 0
    assert 0 < warm.usage.input_tokens_details.cached_tokens < warm.usage.input_tokens
    assert warm.usage.input_tokens == cold.usage.input_tokens
