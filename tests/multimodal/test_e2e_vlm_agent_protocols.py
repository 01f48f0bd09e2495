"""Images through the Anthropic Messages and OpenAI Responses APIs on a tiny Qwen2.5-VL
(random weights: the text is noise, the token counts are exact): base64 and tool_result
images, input_image parts, count_tokens with media, and bad images as each protocol's 400."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import anthropic
import openai
import pytest
from e2e.server_process import start_server
from media_samples import gradient_image, image_bytes
from tiny_vlms import make_tiny_vlm

sys.path.insert(0, str(Path(__file__).parent.parent / "e2e"))
from anthropic_support import assert_anthropic_error, post, prompt_tokens  # noqa: E402

pytestmark = pytest.mark.slow

PNG = base64.b64encode(image_bytes(gradient_image(80, 60, seed=1))).decode()
IMAGE_TOKENS = 6 + 2  # 80x60 → 6 merged patches, plus the vision start/end markers
IMAGE_BLOCK = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                           "data": PNG}}
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def vlm_server(tmp_path_factory):
    folder = make_tiny_vlm(tmp_path_factory.mktemp("vlm"), "qwen2_5_vl")
    server = start_server(str(folder), ["--served-model-name", "tiny-vlm"])
    yield server
    server.stop()


@pytest.fixture()
def claude(vlm_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=vlm_server.base_url, api_key="x", max_retries=0,
                               timeout=120)


def ask(claude, content, **extra):
    return claude.messages.create(model="tiny-vlm", max_tokens=4, extra_body=GREEDY,
                                  messages=[{"role": "user", "content": content}], **extra)


def test_anthropic_base64_image_counts_media_tokens(claude):
    plain = ask(claude, [{"type": "text", "text": "describe"}])
    with_image = ask(claude, [IMAGE_BLOCK, {"type": "text", "text": "describe"}])
    assert prompt_tokens(with_image.usage) == prompt_tokens(plain.usage) + IMAGE_TOKENS
    assert with_image.usage.output_tokens == 4 and with_image.content[0].type == "text"
    counted = claude.messages.count_tokens(model="tiny-vlm", messages=[
        {"role": "user", "content": [IMAGE_BLOCK, {"type": "text", "text": "describe"}]}])
    assert counted.input_tokens == prompt_tokens(with_image.usage)


def test_anthropic_image_in_a_tool_result(claude):
    call = {"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1",
              "content": [{"type": "text", "text": "here"}, IMAGE_BLOCK]}
    tools = [{"name": "screenshot", "input_schema": {"type": "object"}}]
    messages = [{"role": "user", "content": "look"}, {"role": "assistant", "content": [call]}]
    without = claude.messages.count_tokens(model="tiny-vlm", tools=tools, messages=[
        *messages, {"role": "user", "content": [dict(result, content="here")]}])
    answer = claude.messages.create(model="tiny-vlm", max_tokens=3, tools=tools,
                                    extra_body=GREEDY,
                                    messages=[*messages, {"role": "user", "content": [result]}])
    assert prompt_tokens(answer.usage) > without.input_tokens + IMAGE_TOKENS - 1


@pytest.mark.parametrize("source", [
    {"type": "base64", "media_type": "image/png", "data": base64.b64encode(b"nope").decode()},
    {"type": "base64", "media_type": "image/png", "data": "%%% not base64 %%%"},
    {"type": "url", "url": "http://127.0.0.1:9/private.png"},
])
def test_anthropic_bad_image_is_anthropic_400(vlm_server, claude, source):
    body = {"model": "tiny-vlm", "max_tokens": 2, "messages": [
        {"role": "user", "content": [{"type": "image", "source": source}]}]}
    assert_anthropic_error(post(vlm_server, "/v1/messages", body), 400,
                           "invalid_request_error")
    assert ask(claude, "still there?").stop_reason in ("end_turn", "max_tokens")


def test_responses_input_image(vlm_server):
    client = openai.OpenAI(base_url=f"{vlm_server.base_url}/v1", api_key="x", max_retries=0,
                           timeout=120)

    def respond(parts):
        return client.responses.create(model="tiny-vlm", max_output_tokens=4, temperature=0,
                                       input=[{"role": "user", "content": parts}], store=False)

    text = {"type": "input_text", "text": "describe"}
    image = {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}
    assert respond([image, text]).usage.input_tokens == (
        respond([text]).usage.input_tokens + IMAGE_TOKENS)
    with pytest.raises(openai.BadRequestError):
        respond([{"type": "input_image", "image_url": "data:image/png;base64,bm9wZQ=="}, text])
