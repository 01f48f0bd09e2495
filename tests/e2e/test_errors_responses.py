"""Bad input on the Responses routes → OpenAI's error body and status (never 422 or 500,
streaming or not); the server keeps serving. The tiny random model is enough."""

from __future__ import annotations

import openai
import pytest

from e2e_support import GUARD_KEY, GUARD_MAX_BYTES, TINY_NAME
from test_errors_openai import assert_error, post


def body(**fields) -> dict:
    return {"model": TINY_NAME, "input": "hello", "max_output_tokens": 4, **fields}


CALL = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}

BAD = [
    pytest.param({"model": TINY_NAME}, 400, "input", id="missing-input"),
    pytest.param(body(input=5), 400, "input", id="input-of-a-wrong-type"),
    pytest.param(body(input=[{"type": "function_call_output", "call_id": "call_nope",
                              "output": "1"}]), 400, "input", id="output-for-unknown-call"),
    pytest.param(body(input=[CALL, {"type": "function_call_output", "call_id": "call_2",
                                    "output": "1"}]), 400, "input", id="output-for-other-call"),
    pytest.param(body(input=[{"type": "computer_call", "call_id": "c"}]), 400, "input",
                 id="unknown-item-type"),
    pytest.param(body(input=[{"role": "robot", "content": "x"}]), 400, "input",
                 id="unknown-role"),
    pytest.param(body(input=[{"role": "user", "content": [{"type": "input_image",
                                                           "image_url": "data:,x"}]}]),
                 400, "messages", id="image-on-a-text-model"),
    pytest.param(body(previous_response_id="resp_unknown"), 404, "previous_response_id",
                 id="unknown-previous-response"),
    pytest.param(body(text={"format": {"type": "json_schema", "name": "x"}}),
                 400, "text.format", id="structured-output-without-schema"),
    pytest.param(body(text={"format": {"type": "yaml"}}), 400, "text.format",
                 id="structured-output-of-unknown-type"),
    pytest.param(body(reasoning={"effort": "extreme"}), 400, "reasoning.effort",
                 id="bad-effort"),
    pytest.param(body(tool_choice={"type": "file_search"}), 400, "tool_choice",
                 id="bad-tool-choice"),
    pytest.param(body(tools=[{"type": "function"}]), 400, "tools", id="function-without-name"),
    pytest.param(body(max_output_tokens=0), 400, "max_output_tokens",
                 id="zero-max-output-tokens"),
    pytest.param(body(max_output_tokens=-1), 400, "max_output_tokens",
                 id="negative-max-output-tokens"),
    pytest.param(body(temperature=-1), 400, "temperature", id="negative-temperature"),
    pytest.param(body(model="gpt-7"), 404, "model", id="unknown-model"),
]


@pytest.mark.parametrize("payload, status, param", BAD)
@pytest.mark.parametrize("stream", [False, True])
def test_bad_requests_are_openai_errors(tiny_server, payload, status, param, stream):
    payload = dict(payload, stream=True) if stream else payload
    assert_error(post(tiny_server, "/v1/responses", payload), status, param)


def test_unknown_response_ids_are_404(tiny_server, tiny_client):
    for method in (tiny_client.responses.retrieve, tiny_client.responses.delete):
        with pytest.raises(openai.NotFoundError):
            method("resp_nothing")


def test_oversize_body_is_openai_413(guarded_server):
    big = body(input="x" * (GUARD_MAX_BYTES * 2))
    assert_error(post(guarded_server, "/v1/responses", big,
                      {"authorization": f"Bearer {GUARD_KEY}"}), 413)


def test_server_keeps_serving(tiny_client):
    with pytest.raises(openai.BadRequestError):
        tiny_client.responses.create(model=TINY_NAME, input=[{"type": "bogus"}])
    answer = tiny_client.responses.create(model=TINY_NAME, input="hi", max_output_tokens=3)
    assert answer.status in ("completed", "incomplete") and answer.output is not None
