"""Faults over real HTTP against a real server (fault_server.py: a real tiny model whose
forward raises for a marked prompt). After each: nothing running or waiting, no KV held,
the server's RSS within 5% of its warmed-up size."""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx
import pytest

from fault_server import FAIL_MARKER
from robust_support import TINY_NAME, assert_idle, rss_bytes

LONG = {"model": TINY_NAME, "max_tokens": 400, "temperature": 0, "ignore_eos": True}
RSS_TOLERANCE = 1.05


def chat_body(text: str, **fields) -> dict:
    return {**LONG, "messages": [{"role": "user", "content": text}], **fields}


async def _disconnecting_client(client: httpx.AsyncClient, base: str, rng: random.Random,
                                i: int) -> int:
    """Stream, read a random number of events (maybe none), leave. Returns events read."""
    path, body = (("/v1/completions", {**LONG, "prompt": f"story {i}"}) if i % 3 == 0 else
                  ("/v1/chat/completions", chat_body(f"tell story {i}", n=1 + i % 2)))
    keep = rng.choice([0, 1, 2, 5, 20, 60, 200])
    read = 0
    async with client.stream("POST", base + path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if read >= keep:
                break
            read += line.startswith("data: ")
    return read


def _disconnect_storm(server, clients: int, seed: int) -> list[int]:
    rng = random.Random(seed)

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(
                max_connections=clients)) as client:
            return await asyncio.gather(*(_disconnecting_client(client, server.base_url, rng, i)
                                          for i in range(clients)))

    return asyncio.run(run())


@pytest.fixture(scope="module")
def warm_rss(robust_server) -> int:
    """RSS after the same kinds of work once (model, caches and pools warmed up)."""
    for seed in (1, 2):  # twice: the allocator's pools settle after the first storm
        _disconnect_storm(robust_server, 100, seed=seed)
    assert_idle(robust_server)
    return _rss_without_cache(robust_server)


def _rss_without_cache(server) -> int:
    """RSS once the prefix cache (which keeps entries by design) has dropped its entries."""
    assert httpx.delete(f"{server.base_url}/v1/cache", timeout=30).status_code == 200
    return rss_bytes(server.process.pid)


def assert_recovered(server, warm: int) -> None:
    assert_idle(server)
    rss = _rss_without_cache(server)
    assert rss <= warm * RSS_TOLERANCE, f"RSS {rss / 2**20:.1f} MiB vs warm {warm / 2**20:.1f}"


def test_100_streaming_clients_disconnect_at_random_points(robust_server, warm_rss):
    read = _disconnect_storm(robust_server, 100, seed=3)
    assert len(read) == 100 and min(read) == 0 and max(read) >= 60  # early, late and between
    assert_recovered(robust_server, warm_rss)


def _read_stream(lines) -> tuple[str, list[dict]]:
    """Content and events of an SSE stream's lines (an iterator, maybe partly read)."""
    events = [json.loads(line[6:]) for line in lines
              if line.startswith("data: ") and line != "data: [DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in events
                   if c.get("choices")), events


def test_slow_consumers_do_not_stall_others_and_get_everything(robust_server, warm_rss):
    url = f"{robust_server.base_url}/v1/chat/completions"
    reference = httpx.post(url, json=chat_body("slow"), timeout=120).json()
    expected = reference["choices"][0]["message"]["content"]
    with httpx.Client(timeout=120) as slow:
        streams = [slow.stream("POST", url, json=chat_body("slow", stream=True))
                   for _ in range(4)]
        responses = [s.__enter__() for s in streams]  # sent; nobody reads for a while
        try:
            meanwhile = httpx.post(url, json=chat_body("quick", max_tokens=50), timeout=60)
            assert meanwhile.status_code == 200
            assert meanwhile.json()["usage"]["completion_tokens"] == 50
            time.sleep(1.0)
            texts = [_read_stream(r.iter_lines())[0] for r in responses]
        finally:
            for s in streams:
                s.__exit__(None, None, None)
    assert texts == [expected] * 4
    assert_recovered(robust_server, warm_rss)


def test_requests_killed_mid_prefill(robust_server, warm_rss):
    """Long prompts prefill 64 tokens per step (--max-num-batched-tokens 64), so they are
    still prefilling when their clients give up."""
    prompt = " ".join(f"w{i}" for i in range(100))  # ~390 tokens: 7 steps of 64

    async def give_up(client: httpx.AsyncClient, i: int) -> bool:
        try:
            await client.post(f"{robust_server.base_url}/v1/completions",
                              json={**LONG, "prompt": f"{i} {prompt}", "max_tokens": 8},
                              timeout=httpx.Timeout(60, read=0.05 + 0.01 * i))
        except httpx.ReadTimeout:
            return True
        return False  # done before its client gave up (a fast machine)

    async def run() -> tuple[int, list[bool]]:
        async with httpx.AsyncClient() as client, httpx.AsyncClient() as probe:
            clients = asyncio.gather(*(give_up(client, i) for i in range(12)))
            most_busy = 0  # ~90 prefill steps: seen in the engine while clients give up
            while not clients.done():
                stats = (await probe.get(f"{robust_server.base_url}/metrics/json")).json()
                most_busy = max(most_busy, stats["engine"]["running"] +
                                stats["engine"]["waiting"])
            return most_busy, await clients

    most_busy, gave_up = asyncio.run(run())
    assert most_busy >= 1
    assert sum(gave_up) >= 6, gave_up
    assert_recovered(robust_server, warm_rss)


def test_a_failing_forward_fails_only_its_request(robust_server, warm_rss):
    url = f"{robust_server.base_url}/v1/chat/completions"
    expected = httpx.post(url, json=chat_body("steady"), timeout=120).json()
    with httpx.Client(timeout=120) as client:
        streams = [client.stream("POST", url, json=chat_body("steady", stream=True))
                   for _ in range(3)]
        lines = [s.__enter__().iter_lines() for s in streams]
        try:
            for stream_lines in lines:  # all three are decoding before the bad one arrives
                next(line for line in stream_lines if '"content"' in line)
            failed = httpx.post(url, json=chat_body(f"x {FAIL_MARKER} y", max_tokens=8),
                                timeout=60)
            with httpx.stream("POST", url, json=chat_body(FAIL_MARKER, stream=True),
                              timeout=60) as failed_stream:
                failed_events = list(failed_stream.iter_lines())
            outcomes = [_read_stream(stream_lines)[1] for stream_lines in lines]
        finally:
            for s in streams:
                s.__exit__(None, None, None)
    assert failed.status_code == 500, failed.text
    assert "deliberate forward failure" in failed.json()["error"]["message"]
    assert any("deliberate forward failure" in line for line in failed_events), failed_events
    for events in outcomes:
        finishes = [c["choices"][0]["finish_reason"] for c in events if c.get("choices")]
        assert finishes[-1] == "length" and "error" not in json.dumps(events[-1])
    assert expected["choices"][0]["finish_reason"] == "length"
    assert_recovered(robust_server, warm_rss)
