"""The mlxserve command: start-up errors are one line with exit code 2; generate streams."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import openai
import pytest

from server_process import run_cli, start_server


def assert_one_line_error(result, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("mlxserve: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_unknown_model_exits_2(tmp_path):
    result = run_cli(["serve", str(tmp_path / "no-such-model"), "--port", "0"])
    assert_one_line_error(result, "not found")


def test_unknown_parser_exits_2(tiny_model_path):
    result = run_cli(["serve", tiny_model_path, "--port", "0", "--tool-call-parser", "nope",
                      "--enable-auto-tool-choice"])
    assert_one_line_error(result, "nope")
    result = run_cli(["serve", tiny_model_path, "--port", "0", "--reasoning-parser", "nope"])
    assert_one_line_error(result, "nope")


def test_bad_options_exit_2(tiny_model_path, tmp_path):
    result = run_cli(["serve", tiny_model_path, "--default-chat-template-kwargs", "{oops"])
    assert_one_line_error(result, "--default-chat-template-kwargs")
    result = run_cli(["serve", tiny_model_path, "--chat-template", str(tmp_path / "none.j2")])
    assert_one_line_error(result, "--chat-template")


@pytest.mark.slow
def test_generate_streams_the_same_answer_as_the_server(tiny_model_path, tiny_server):
    result = run_cli(["generate", tiny_model_path, "--prompt", "Hello there", "--max-tokens",
                      "12", "--temperature", "0"])
    assert result.returncode == 0, result.stderr
    client = openai.OpenAI(base_url=f"{tiny_server.base_url}/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "Hello there"}],
        max_tokens=12, temperature=0)
    assert result.stdout == answer.choices[0].message.content + "\n"
    raw = run_cli(["generate", tiny_model_path, "--prompt", "Hello there", "--max-tokens", "5",
                   "--temperature", "0", "--raw"])
    completion = client.completions.create(model="tiny-chat", prompt="Hello there",
                                           max_tokens=5, temperature=0)
    assert raw.returncode == 0 and raw.stdout == completion.choices[0].text + "\n"


def test_serve_with_parsers_template_and_kwargs(tiny_model_path, tmp_path):
    template = tmp_path / "template.jinja"
    template.write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if greeting %}{{ greeting }}{% endif %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    server = start_server(tiny_model_path, [
        "--chat-template", str(template), "--tool-call-parser", "hermes",
        "--enable-auto-tool-choice", "--reasoning-parser", "auto",
        "--default-chat-template-kwargs", '{"greeting": "Hi"}'])
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
        messages = [{"role": "user", "content": "x"}]
        with_default = client.chat.completions.create(messages=messages, model=tiny_model_path,
                                                      max_tokens=2, temperature=0)
        body = {"messages": messages, "max_tokens": 2}
        usage = {}
        for name, kwargs in (("default", None), ("off", {"greeting": ""}),
                             ("long", {"greeting": "Hi Hi Hi Hi"})):
            response = httpx.post(f"{server.base_url}/v1/chat/completions",
                                  json={**body, "chat_template_kwargs": kwargs} if kwargs
                                  else body, timeout=60)
            assert response.status_code == 200, response.text
            usage[name] = response.json()["usage"]["prompt_tokens"]
        assert usage["off"] < usage["default"] < usage["long"]
        assert with_default.usage.prompt_tokens == usage["default"]  # the server default kwargs
        # This template does not render tools: the prompt is the same with them, and the
        # random model's text comes through the hermes parser unchanged (no call in it).
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}]
        plain, answer = (client.chat.completions.create(
            messages=messages, model=tiny_model_path, max_tokens=8, temperature=0, **extra)
            for extra in ({}, {"tools": tools, "tool_choice": "auto"}))
        assert answer.usage.prompt_tokens == plain.usage.prompt_tokens
        assert answer.choices[0].message.content == plain.choices[0].message.content
        assert answer.choices[0].message.tool_calls is None
        assert answer.choices[0].finish_reason == plain.choices[0].finish_reason
    finally:
        server.stop()


def test_sigint_while_requests_run_exits_at_once_without_traceback(tiny_model_path):
    """Ctrl-C with a stream and a non-streamed request in flight: both end with the
    "aborted by the server" error, the server exits at once (not after uvicorn's 5 s grace
    period, which cancelled the tasks with a traceback and crashed the process at exit)."""
    server = start_server(tiny_model_path)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000,
            "ignore_eos": True}
    url = f"{server.base_url}/v1/chat/completions"
    results: dict = {}

    def plain() -> None:
        results["plain"] = httpx.post(url, json=body, timeout=30)

    try:
        waiter = threading.Thread(target=plain)
        with httpx.stream("POST", url, json={**body, "stream": True}, timeout=30) as response:
            lines = response.iter_lines()
            next(lines)  # the stream is running
            waiter.start()
            time.sleep(0.5)
            server.process.send_signal(signal.SIGINT)
            rest = [line for line in lines if line]
        server.process.wait(timeout=20)
        waiter.join(timeout=20)
    finally:
        server.stop()
    log = server.log_tail(20000)
    assert "Traceback" not in log and "terminate called" not in log, log
    assert server.process.returncode in (0, 130, -signal.SIGINT), log
    # The requests were ended by the server, not cancelled by uvicorn's grace timeout.
    assert "timeout graceful shutdown exceeded" not in log, log
    assert rest[-1] == "data: [DONE]" and "aborted by the server" in rest[-2]
    assert results["plain"].status_code == 503
    assert "aborted by the server" in results["plain"].json()["error"]["message"]
