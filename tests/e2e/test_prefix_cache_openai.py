"""The prefix cache through the real server and the official openai client (SmolLM2,
cache on by default): a chat's second turn reports cached prompt tokens and answers as it
does after the cache was dropped; completions too, streamed and not; /v1/cache/stats,
DELETE /v1/cache and /metrics/json report it."""

from __future__ import annotations

import httpx
from e2e_support import TINY_NAME, WARM_SYSTEM
from server_process import run_cli

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


def _cached(usage) -> int:
    details = usage.prompt_tokens_details
    return 0 if details is None or details.cached_tokens is None else details.cached_tokens


def _chat(client, messages, stream=False):
    args = dict(model="smollm2-135m", messages=messages, max_tokens=16, temperature=0)
    if not stream:
        reply = client.chat.completions.create(**args)
        return reply.choices[0].message.content, _cached(reply.usage)
    chunks = list(client.chat.completions.create(**args, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, _cached(chunks[-1].usage)


def _drop(server) -> int:
    reply = httpx.delete(f"{server.base_url}/v1/cache", timeout=30)
    assert reply.status_code == 200
    return reply.json()["dropped_entries"]


def test_second_chat_turn_hits_and_answers_as_without_the_cache(default_server,
                                                                default_client):
    _drop(default_server)
    first, cached_first = _chat(default_client, QUESTION)
    assert cached_first == 0
    turn2 = QUESTION + [{"role": "assistant", "content": first},
                        {"role": "user", "content": "And two more?"}]
    hit, cached = _chat(default_client, turn2)
    streamed, cached_streamed = _chat(default_client, turn2, stream=True)
    assert cached > 0 and cached_streamed > cached  # the stream also hits turn 2's answer
    stats = httpx.get(f"{default_server.base_url}/v1/cache/stats", timeout=30).json()
    assert stats["enabled"] and stats["hits"] >= 2 and stats["entries"] >= 1
    assert 0 < stats["bytes"] <= stats["budget_bytes"]
    assert _drop(default_server) >= 1
    cold, cached_cold = _chat(default_client, turn2)
    assert cached_cold == 0
    assert hit == streamed == cold
    engine = httpx.get(f"{default_server.base_url}/metrics/json", timeout=30).json()["engine"]
    assert engine["prefix_cache"]["hits"] >= 2 and engine["prefix_cache_hits"] > 0
    text = httpx.get(f"{default_server.base_url}/metrics", timeout=30).text
    hits = [line for line in text.splitlines()
            if line.startswith("mlxserve:prefix_cache_hits_total{")]
    assert hits and float(hits[0].split()[-1]) == engine["prefix_cache_hits"]


def test_completions_report_cached_tokens_streamed_and_not(default_server, default_client):
    _drop(default_server)
    prompt = "The capital of France is Paris. The capital of Italy is"
    args = dict(model="smollm2-135m", prompt=prompt, max_tokens=8, temperature=0)
    first = default_client.completions.create(**args)
    again = default_client.completions.create(**args)
    chunks = list(default_client.completions.create(**args, stream=True,
                                                    stream_options={"include_usage": True}))
    assert _cached(first.usage) == 0
    n = first.usage.prompt_tokens
    assert _cached(again.usage) == n - 1  # all but the last prompt token, which runs
    assert _cached(chunks[-1].usage) == n - 1
    assert again.choices[0].text == first.choices[0].text
    assert "".join(c.choices[0].text for c in chunks if c.choices) == first.choices[0].text


def test_warm_prompts_are_pinned_at_start_up_and_hit(tiny_server, tiny_client):
    """tiny_server starts with --warm-prompts (WARM_SYSTEM as a message list, and a string):
    both are pinned, survive DELETE /v1/cache, and a chat with that system prompt hits."""
    base = tiny_server.base_url
    assert httpx.delete(f"{base}/v1/cache", timeout=30).status_code == 200
    stats = httpx.get(f"{base}/v1/cache/stats", timeout=30).json()
    assert stats["pinned"] == 2 and stats["entries"] >= 2 and stats["pinned_bytes"] > 0
    system = {"role": "system", "content": WARM_SYSTEM}
    messages = [system, {"role": "user", "content": "What colour is the sea?"}]
    reply = tiny_client.chat.completions.create(model=TINY_NAME, messages=messages,
                                                max_tokens=4, temperature=0)
    rendered = tiny_client.completions.create(model=TINY_NAME, prompt=WARM_SYSTEM,
                                              max_tokens=1, temperature=0)
    assert _cached(reply.usage) > rendered.usage.prompt_tokens  # the whole system turn
    after = httpx.get(f"{base}/v1/cache/stats", timeout=30).json()
    assert after["pinned"] == 2 and after["hits"] > stats["hits"]


def test_a_bad_warm_prompts_file_is_a_clear_start_up_error(tiny_model_path, tmp_path):
    bad = tmp_path / "warm.json"
    bad.write_text('{"not": "a list"}')
    result = run_cli(["serve", tiny_model_path, "--port", "0", "--warm-prompts", str(bad)])
    assert result.returncode == 2
    assert "--warm-prompts: must be a JSON list" in result.stderr
