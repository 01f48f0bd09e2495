"""Structured outputs: bad schemas, regexes, grammars and combinations are 400s in OpenAI's
error body, naming the field, before anything enters the engine; the server carries on."""

from __future__ import annotations

import httpx
import pytest

from e2e_support import TINY_NAME

USER = [{"role": "user", "content": "hello"}]
BAD = [
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}},
     "response_format.json_schema.schema", "object"),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "foo"}}}}, "response_format", "foo"),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "not": {"type": "string"}}}}},
     "response_format", "not"),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {
            "a": {"$ref": "#/$defs/missing"}}}}}}, "response_format", "missing"),
    ({"guided_json": "{not json"}, "guided_json", "JSON"),
    ({"guided_regex": "[a-"}, "guided_regex", "regex"),
    ({"guided_choice": []}, "guided_choice", "choices"),
    ({"guided_grammar": "start: undefined_rule"}, "guided_grammar", "undefined_rule"),
    ({"structured_outputs": {"regex": "a+", "choice": ["a"]}}, "structured_outputs",
     "regex, choice"),
    ({"guided_regex": "a+", "response_format": {"type": "json_object"}}, "guided_regex",
     "only one"),
]


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=60)


def finished(server) -> int:
    return httpx.get(f"{server.base_url}/metrics/json", timeout=10).json()["engine"]["total_finished"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_bad_structured_output_is_a_400_before_the_engine(tiny_server, path):
    before = finished(tiny_server)
    for fields, param, words in BAD:
        body = {"model": TINY_NAME, "max_tokens": 4, **fields}
        body.update({"messages": USER} if "chat" in path else {"prompt": "hi"})
        response = post(tiny_server, path, body)
        assert response.status_code == 400, (fields, response.text)
        error = response.json()["error"]
        assert error["param"] == param, (fields, error)
        assert words in error["message"], (fields, error)
        assert "Traceback" not in error["message"]
    assert finished(tiny_server) == before  # none of them reached the engine
    ok = post(tiny_server, path, {"model": TINY_NAME, "max_tokens": 3, "messages": USER,
                                  "prompt": "hi", "guided_regex": "[a-z]{3}"})
    assert ok.status_code == 200


def test_forced_tool_choice_cannot_be_combined_with_response_format(tiny_server):
    """Without a tool parser, the forced choice is a 400 (as before); response_format
    alone is accepted by the same server."""
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    body = {"model": TINY_NAME, "max_tokens": 3, "messages": USER, "tools": [tool],
            "tool_choice": "required", "response_format": {"type": "json_object"}}
    assert post(tiny_server, "/v1/chat/completions", body).status_code == 400
