"""Client disconnects abort engine work; many concurrent streaming clients all get their
complete answer."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from e2e_support import GUARD_KEY, TINY_NAME

# The guarded server has the tiny model's whole 4096-token context: 4000 tokens are many
# seconds of work, so a request that ends early was aborted, not finished by itself.
LONG_TOKENS = 4000
LONG = {"model": "", "messages": [{"role": "user", "content": "Tell a long story."}],
        "max_tokens": LONG_TOKENS, "temperature": 0, "ignore_eos": True}
AUTH = {"Authorization": f"Bearer {GUARD_KEY}"}


def engine_stats(server) -> dict:
    return httpx.get(f"{server.base_url}/metrics/json", headers=AUTH, timeout=10).json()["engine"]


def wait_until_idle(server, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    stats = engine_stats(server)
    while (stats["running"] or stats["waiting"]) and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = engine_stats(server)
    return stats


def _work_since(before: dict, after: dict) -> tuple[int, int]:
    """(requests aborted, tokens generated) between two stats snapshots."""
    return (after["total_aborted"] - before["total_aborted"],
            after["total_generated_tokens"] - before["total_generated_tokens"])


def test_stream_disconnect_aborts_engine_request(guarded_server):
    before = wait_until_idle(guarded_server)
    with httpx.Client(timeout=60, headers=AUTH) as client:
        with client.stream("POST", f"{guarded_server.base_url}/v1/chat/completions",
                           json={**LONG, "stream": True}) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            seen = [line for _, line in zip(range(6), lines)]
            assert any(line.startswith("data: ") for line in seen)
    stats = wait_until_idle(guarded_server)
    assert stats["running"] == 0 and stats["waiting"] == 0
    aborted, generated = _work_since(before, stats)
    assert aborted == 1 and generated < LONG_TOKENS


def test_non_stream_disconnect_aborts_engine_request(guarded_server):
    before = wait_until_idle(guarded_server)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{guarded_server.base_url}/v1/chat/completions", json={**LONG, "n": 4},
                   headers=AUTH, timeout=httpx.Timeout(60, read=0.3))
    stats = wait_until_idle(guarded_server)
    assert stats["running"] == 0 and stats["waiting"] == 0
    aborted, generated = _work_since(before, stats)
    assert aborted == 4 and generated < 4 * LONG_TOKENS


def test_32_concurrent_streaming_clients(tiny_server, tiny_client):
    prompts = ["Say one.", "Say two words.", "Count to three.", "What is four?"]
    expected = {}
    for prompt in prompts:
        full = tiny_client.chat.completions.create(
            model=TINY_NAME, messages=[{"role": "user", "content": prompt}], max_tokens=32,
            temperature=0)
        expected[prompt] = (full.choices[0].message.content, full.choices[0].finish_reason,
                            full.usage.completion_tokens)

    async def one(client: openai.AsyncOpenAI, prompt: str):
        stream = await client.chat.completions.create(
            model=TINY_NAME, messages=[{"role": "user", "content": prompt}], max_tokens=32,
            temperature=0, stream=True, stream_options={"include_usage": True})
        text, finish, usage = "", None, None
        async for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        return prompt, text, finish, usage.completion_tokens

    async def run_all():
        client = openai.AsyncOpenAI(base_url=f"{tiny_server.base_url}/v1", api_key="unused",
                                    max_retries=0, timeout=120)
        try:
            return await asyncio.gather(*(one(client, prompts[i % len(prompts)])
                                          for i in range(32)))
        finally:
            await client.close()

    results = asyncio.run(run_all())
    assert len(results) == 32
    for prompt, text, finish, tokens in results:
        assert (text, finish, tokens) == expected[prompt]
    assert wait_until_idle(tiny_server)["running"] == 0
