"""SIGTERM drains: new requests and /health, /ready get 503 while the requests in flight
finish for --shutdown-grace-seconds; what is left then gets the shutdown error; the process
exits by itself. A second signal exits at once."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx

from robust_support import TINY_CONTEXT, TINY_NAME, engine_stats
from server_process import start_server

BODY = {"model": TINY_NAME, "messages": [{"role": "user", "content": "go"}], "temperature": 0,
        "ignore_eos": True, "stream": True}


async def _stream(client: httpx.AsyncClient, url: str, max_tokens: int) -> tuple[str, int]:
    """("done", tokens) when the stream completed, ("aborted", tokens) on the shutdown
    error event."""
    tokens, outcome = 0, "cut"
    async with client.stream("POST", url, json={**BODY, "max_tokens": max_tokens}) as response:
        if response.status_code == 503:  # aborted before its first token
            error = json.loads(await response.aread())["error"]
            assert "aborted by the server" in error["message"], error
            return "aborted", 0
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                assert "aborted by the server" in event["error"]["message"], event
                outcome = "aborted"
                continue
            choice = event["choices"][0]
            outcome = "done" if choice["finish_reason"] == "length" else outcome
            tokens += bool(choice["delta"].get("content"))
    return outcome, tokens


def _refused_while_draining(base: str) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{base}/ready").status_code == 200:
        assert time.monotonic() < deadline, "never started draining"
        time.sleep(0.02)
    assert httpx.get(f"{base}/health").status_code == 503
    refused = httpx.post(f"{base}/v1/chat/completions", json={**BODY, "stream": False,
                                                              "max_tokens": 4})
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0
    assert refused.json()["error"]["code"] == "server_shutting_down"


async def _until(server, condition) -> None:
    while not condition(await asyncio.to_thread(engine_stats, server)):
        await asyncio.sleep(0.02)


async def _load_then_sigterm(server) -> list[tuple[str, int]]:
    """2 short requests take both slots (--max-num-seqs 2) and finish within the grace;
    30 long ones queue behind them and cannot."""
    url = f"{server.base_url}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=60) as client:
        short = [asyncio.create_task(_stream(client, url, 20)) for _ in range(2)]
        await _until(server, lambda s: s["running"] == 2)
        long = [asyncio.create_task(_stream(client, url, 480)) for _ in range(30)]
        await _until(server, lambda s: s["waiting"] > 0)
        server.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(_refused_while_draining, server.base_url)
        return await asyncio.gather(*short, *long)


def test_sigterm_drains_then_exits(robust_model_path):
    server = start_server(robust_model_path, [
        "--served-model-name", TINY_NAME, "--max-model-len", str(TINY_CONTEXT),
        "--max-num-seqs", "2", "--shutdown-grace-seconds", "3", "--log-level", "info"])
    try:
        outcomes = asyncio.run(_load_then_sigterm(server))
        returncode = server.process.wait(timeout=30)
    finally:
        server.stop()
    kinds = [kind for kind, _ in outcomes]
    assert set(kinds) <= {"done", "aborted"}, kinds  # nobody was cut off or left hanging
    assert kinds[:2] == ["done"] * 2 and "aborted" in kinds, kinds
    assert returncode == 0, server.log_tail()
    log = server.log_tail(200_000)
    assert "shutdown grace over: aborting" in log and "Traceback" not in log, log


def test_a_second_signal_exits_at_once(robust_model_path):
    server = start_server(robust_model_path, ["--served-model-name", TINY_NAME,
                                              "--max-model-len", str(TINY_CONTEXT),
                                              "--max-num-seqs", "1"])

    async def run() -> list[tuple[str, int]]:
        url = f"{server.base_url}/v1/chat/completions"
        async with httpx.AsyncClient(timeout=60) as client:
            tasks = [asyncio.create_task(_stream(client, url, 480)) for _ in range(8)]
            await asyncio.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)  # drains for the default 30 s ...
            await asyncio.to_thread(_refused_while_draining, server.base_url)
            server.process.send_signal(signal.SIGTERM)  # ... unless told again
            return await asyncio.gather(*tasks)

    try:
        outcomes = asyncio.run(run())
        server.process.wait(timeout=15)  # well inside the 30 s grace
    finally:
        server.stop()
    assert {kind for kind, _ in outcomes} <= {"done", "aborted"}
    assert "aborted" in {kind for kind, _ in outcomes}
