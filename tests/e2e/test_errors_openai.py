"""Bad input gets OpenAI's error body with the right status; the server carries on."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from e2e_support import GUARD_KEY, GUARD_MAX_BYTES, TINY_CONTEXT, TINY_NAME

USER = [{"role": "user", "content": "hello"}]


def post(server, path: str, body, headers=None) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"{server.base_url}{path}", content=content, timeout=60,
                      headers={"content-type": "application/json", **(headers or {})})


def assert_error(response: httpx.Response, status: int, param: str | None = None,
                 code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and isinstance(error["message"], str)
    for leak in ("Traceback", "/work", ".py", "mlxserve.", "pydantic"):
        assert leak not in error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


def chat(**fields) -> dict:
    return {"model": TINY_NAME, "messages": USER, "max_tokens": 4, **fields}


@pytest.mark.parametrize("fields, param", [
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": 5}, "temperature"),
    ({"temperature": -0.5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"n": 9}, "n"),
    ({"n": 0}, "n"),
    ({"top_logprobs": 50, "logprobs": True}, "top_logprobs"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"stop_token_ids": [-1]}, "stop_token_ids"),
    ({"stop_token_ids": [2**40]}, "stop_token_ids"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
])
def test_invalid_values_are_400(tiny_server, fields, param):
    assert_error(post(tiny_server, "/v1/chat/completions", chat(**fields)), 400, param)


@pytest.mark.parametrize("body", [
    {"model": TINY_NAME, "messages": USER, "temperature": "hot"},
    {"model": TINY_NAME, "messages": "hello"},
    {"model": TINY_NAME},
    {"model": TINY_NAME, "messages": []},
    {"model": TINY_NAME, "messages": [{"role": "wizard", "content": "hi"}]},
    {"model": TINY_NAME, "messages": [{"role": "user", "content": 5}]},
    {"model": TINY_NAME, "messages": USER, "max_tokens": 2.5},
    {"model": TINY_NAME, "messages": USER, "stop": 7},
])
def test_schema_errors_are_400_not_422(tiny_server, body):
    assert_error(post(tiny_server, "/v1/chat/completions", body), 400)


def test_invalid_json_is_400(tiny_server):
    assert_error(post(tiny_server, "/v1/chat/completions", b"{not json"), 400)


def test_huge_max_tokens_is_400(tiny_server):
    assert_error(post(tiny_server, "/v1/chat/completions", chat(max_tokens=10**9)), 400,
                 "max_tokens", "context_length_exceeded")


def test_prompt_over_context_after_template_is_400(tiny_server):
    long_text = " ".join(["word"] * TINY_CONTEXT)
    body = chat(messages=[{"role": "user", "content": long_text}])
    assert_error(post(tiny_server, "/v1/chat/completions", body), 400,
                 code="context_length_exceeded")
    completion = {"model": TINY_NAME, "prompt": long_text, "max_tokens": 1}
    assert_error(post(tiny_server, "/v1/completions", completion), 400,
                 code="context_length_exceeded")


def test_unknown_model_is_404(tiny_server, tiny_client):
    assert_error(post(tiny_server, "/v1/chat/completions", chat(model="gpt-7")), 404,
                 "model", "model_not_found")
    with pytest.raises(openai.NotFoundError):
        tiny_client.completions.create(model="gpt-7", prompt="hi", max_tokens=2)


def test_model_accepted_by_served_name_alias_and_path(tiny_server, tiny_model_path):
    for name in (TINY_NAME, "tiny-alias", tiny_model_path):
        assert post(tiny_server, "/v1/chat/completions", chat(model=name)).status_code == 200


def test_unknown_response_format_rejected_clearly(tiny_server):
    error = assert_error(post(tiny_server, "/v1/chat/completions",
                              chat(response_format={"type": "xml"})), 400, "response_format")
    assert "json_schema" in error["message"]


def test_streaming_request_with_bad_value_is_a_plain_400(tiny_server):
    response = post(tiny_server, "/v1/chat/completions", chat(stream=True, temperature=9))
    assert response.headers["content-type"].startswith("application/json")
    assert_error(response, 400, "temperature")


def test_tool_choice_without_tool_parser_is_400(tiny_server):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert_error(post(tiny_server, "/v1/chat/completions",
                      chat(tools=tools, tool_choice="auto")), 400, "tool_choice")


@pytest.mark.parametrize("body", [
    {"model": TINY_NAME, "prompt": []},
    {"model": TINY_NAME, "prompt": [[]]},
    {"model": TINY_NAME, "prompt": [10**9]},
    {"model": TINY_NAME, "prompt": [-1]},
    {"model": TINY_NAME, "prompt": [[1, 2], [2**70]]},
    {"model": TINY_NAME, "prompt": "hi", "logprobs": 99},
    {"model": TINY_NAME, "prompt": {"text": "hi"}},
])
def test_bad_completion_prompts_are_400(tiny_server, body):
    assert_error(post(tiny_server, "/v1/completions", body), 400)


def test_openai_client_raises_bad_request(tiny_client):
    with pytest.raises(openai.BadRequestError) as info:
        tiny_client.chat.completions.create(model=TINY_NAME, messages=USER, temperature=3)
    assert info.value.status_code == 400


def test_server_still_serves_after_bad_requests(tiny_client):
    answer = tiny_client.chat.completions.create(model=TINY_NAME, messages=USER, max_tokens=3,
                                                 temperature=0)
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_unknown_route_is_openai_shaped_404(tiny_server):
    assert_error(httpx.get(f"{tiny_server.base_url}/v1/nothing-here"), 404)


def test_health_models_version(tiny_server, tiny_client):
    assert httpx.get(f"{tiny_server.base_url}/health").status_code == 200
    assert httpx.get(f"{tiny_server.base_url}/version").json()["version"]
    ids = [m.id for m in tiny_client.models.list().data]
    assert ids == [TINY_NAME, "tiny-alias"]


def test_api_key_required(guarded_server):
    url = guarded_server.base_url
    body = {"messages": USER, "max_tokens": 2}
    assert_error(post(guarded_server, "/v1/chat/completions", body), 401,
                 code="invalid_api_key")
    assert_error(post(guarded_server, "/v1/chat/completions", body,
                      {"authorization": "Bearer wrong"}), 401)
    ok = post(guarded_server, "/v1/chat/completions", body,
              {"authorization": f"Bearer {GUARD_KEY}"})
    assert ok.status_code == 200
    assert httpx.get(f"{url}/health").status_code == 200
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=GUARD_KEY, max_retries=0)
    assert client.models.list().data


def test_body_too_large_is_413(guarded_server):
    auth = {"authorization": f"Bearer {GUARD_KEY}"}
    big = {"messages": [{"role": "user", "content": "x" * (GUARD_MAX_BYTES * 2)}]}
    assert_error(post(guarded_server, "/v1/chat/completions", big, auth), 413)

    def chunks():  # no Content-Length: the streamed size is what counts
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(GUARD_MAX_BYTES // 512 + 2):
            yield b"y" * 512
        yield b'"}]}'

    response = httpx.post(f"{guarded_server.base_url}/v1/chat/completions", content=chunks(),
                          headers={"content-type": "application/json", **auth}, timeout=60)
    assert_error(response, 413)


@pytest.mark.parametrize("content, content_type", [
    (b"hello", "text/plain"), (b"model=x", "application/x-www-form-urlencoded"),
    (b"[1, 2]", "application/json"), (b"null", "application/json"),
])
def test_body_that_is_not_a_json_object_is_400_with_a_clear_message(tiny_server, content,
                                                                     content_type):
    error = assert_error(post(tiny_server, "/v1/chat/completions", content,
                              {"content-type": content_type}), 400)
    assert error["message"] == ("the request body must be a JSON object "
                                "(Content-Type: application/json)")


def test_validator_messages_carry_no_pydantic_prefix(tiny_server):
    error = assert_error(post(tiny_server, "/v1/chat/completions",
                              {"model": TINY_NAME, "messages": []}), 400, "messages")
    assert error["message"] == "'messages': must be a non-empty array"


@pytest.mark.parametrize("prompt", [["a", [1, 2]], [True], {"text": "hi"}, 5, [[1], "a"]])
def test_completion_prompt_of_a_wrong_shape_says_what_is_accepted(tiny_server, prompt):
    error = assert_error(post(tiny_server, "/v1/completions",
                              {"model": TINY_NAME, "prompt": prompt}), 400, "prompt")
    assert "an array of token ids" in error["message"]


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}'),
    ("/v1/chat/completions",
     b'{"messages": [{"role": "user", "content": "\\udfff"}], "stream": true}'),
    ("/v1/completions", b'{"prompt": "a\\ud800b"}'),
])
def test_lone_surrogate_in_text_is_400_not_500(tiny_server, path, body):
    """JSON may escape a lone UTF-16 surrogate; the tokenizer cannot take it."""
    error = assert_error(post(tiny_server, path, body), 400)
    assert "surrogate" in error["message"]
    assert post(tiny_server, "/v1/chat/completions", chat()).status_code == 200


@pytest.mark.parametrize("fields, param, message", [
    ({"stop": 5}, "stop", "'stop' must be a string or an array of strings"),
    ({"tool_choice": 5}, "tool_choice", "'tool_choice' must be a string or an object"),
    ({"logit_bias": {"1": "x"}}, "logit_bias", None),
    ({"stream": True, "stream_options": {"include_usage": 3}}, "stream_options", None),
])
def test_error_param_is_the_request_field_not_a_validator_path(tiny_server, fields, param,
                                                               message):
    error = assert_error(post(tiny_server, "/v1/chat/completions", chat(**fields)), 400, param,
                         "invalid_request")
    assert ".str" not in error["message"] and "dict[" not in error["message"]
    if message is not None:
        assert error["message"] == message


@pytest.mark.parametrize("body, words, code", [
    # refused by the depth guard (--max-json-depth) before the body is parsed
    (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nesting depth",
     "limit_exceeded"),
    (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', "not valid UTF-8",
     "invalid_request"),
])
def test_unreadable_body_is_invalid_request_like_other_malformed_bodies(tiny_server, body,
                                                                         words, code):
    error = assert_error(post(tiny_server, "/v1/chat/completions", body), 400, code=code)
    assert words in error["message"] and error["type"] == "invalid_request_error"
    assert_error(post(tiny_server, "/v1/chat/completions", b"{not json"), 400,
                 code="invalid_request")


CALL = {"type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize("messages", [
    [{"role": "tool", "tool_call_id": ["a"], "content": "r"}],
    [{"role": "tool", "tool_call_id": {"id": "a"}, "content": "r"}],
    [{"role": "tool", "tool_call_id": "a", "name": ["f"], "content": "r"}],
    [{"role": "assistant", "tool_calls": [{**CALL, "id": ["a"]}]}],
    [{"role": "assistant", "tool_calls": [{**CALL, "id": {"x": 1}}]}],
    [{"role": "assistant", "content": "x", "reasoning_content": ["r"]}],
])
def test_non_string_tool_call_ids_are_400_naming_messages(tiny_client, messages):
    with pytest.raises(openai.BadRequestError) as info:
        tiny_client.chat.completions.create(
            model=TINY_NAME, messages=[{"role": "user", "content": "hi"}, *messages],
            max_tokens=2)
    assert info.value.status_code == 400
    assert info.value.body["param"] == "messages" and "must be a string" in info.value.body["message"]


def test_metrics_label_is_the_served_name_and_probes_answer_head(guarded_server):
    """No --served-model-name: the served name is the folder's, not the path it was loaded
    by; /metrics labels every series with it. Load balancers probe with HEAD."""
    base, auth = guarded_server.base_url, {"authorization": f"Bearer {GUARD_KEY}"}
    (served,) = [m["id"] for m in httpx.get(f"{base}/v1/models", headers=auth).json()["data"]]
    body = {"model": served, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert post(guarded_server, "/v1/chat/completions", body, auth).status_code == 200
    labels = {line.split('model_name="', 1)[1].split('"', 1)[0]
              for line in httpx.get(f"{base}/metrics").text.splitlines()
              if 'model_name="' in line}
    assert labels == {served}
    for path in ("/metrics", "/health", "/ready"):
        head = httpx.head(f"{base}{path}")
        assert head.status_code == 200 and head.content == b"", path
