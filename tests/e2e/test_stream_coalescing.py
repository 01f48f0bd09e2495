"""Streams stay valid for the official SDKs when the client falls behind the engine.

The client stops reading after the first chunk until the engine has finished the request,
so the server's consumer reads many deltas at once and sends them folded into chunks of
several tokens (engine/delivery.coalesce; on this machine 1500 tokens with 20 alternatives
came in ~540 chunks of up to ~40 tokens, against ~850 unfolded, where tokens holding part
of a UTF-8 character already share a chunk): the text, every token's logprob and the
usage must still add up. The fold itself is pinned in tests/engine/test_delivery.py."""

from __future__ import annotations

import anthropic
import openai

from e2e_support import GUARD_KEY
from test_disconnect_and_load import wait_until_idle

TOKENS = 1000  # the guarded server has the tiny model's 4096-token context
PROMPT = [{"role": "user", "content": "Tell a long story."}]


def test_openai_stream_with_logprobs_stays_whole_when_the_client_falls_behind(guarded_server):
    client = openai.OpenAI(base_url=f"{guarded_server.base_url}/v1", api_key=GUARD_KEY,
                           max_retries=0, timeout=300)
    whole = client.chat.completions.create(
        model="", messages=PROMPT, max_tokens=TOKENS, temperature=0, logprobs=True,
        extra_body={"ignore_eos": True}).choices[0]
    stream = client.chat.completions.create(
        model="", messages=PROMPT, max_tokens=TOKENS, temperature=0, logprobs=True,
        top_logprobs=20, stream=True, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True})
    chunks = iter(stream)
    read = [next(chunks)]
    assert wait_until_idle(guarded_server)["running"] == 0  # finished while we did not read
    read += list(chunks)
    content, usage, finish = "", None, None
    entries = []
    for chunk in read:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
            got = choice.logprobs.content if choice.logprobs and choice.logprobs.content else []
            entries += got
    assert finish == "length" and usage.completion_tokens == TOKENS
    assert len(entries) == TOKENS  # one logprob per token, whatever the chunking
    assert all(len(e.top_logprobs) == 20 for e in entries)
    assert content == whole.message.content
    assert [(e.token, e.bytes) for e in entries] == [(e.token, e.bytes)
                                                      for e in whole.logprobs.content]


def test_anthropic_stream_stays_valid_when_the_client_falls_behind(guarded_server):
    client = anthropic.Anthropic(base_url=guarded_server.base_url, api_key=GUARD_KEY,
                                 max_retries=0, timeout=300)
    with client.messages.stream(model="", max_tokens=TOKENS, messages=PROMPT) as stream:
        events = iter(stream)
        seen = [next(events)]
        assert wait_until_idle(guarded_server)["running"] == 0
        seen += list(events)
        final = stream.get_final_message()
    text = "".join(e.delta.text for e in seen if e.type == "content_block_delta")
    assert final.content[0].text == text and text
    assert final.stop_reason in ("max_tokens", "end_turn") and final.usage.output_tokens > 0
    assert seen[-1].type == "message_stop"
