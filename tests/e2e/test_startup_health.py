"""While the model loads /ready answers 503 and /health (live) 200 "loading"; after, both
200; API routes say so in OpenAI's error shape. The app runs in-process under uvicorn with a real engine whose loader waits
on a gate."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from mlxserve.api.app import build_app
from mlxserve.config import EngineConfig, ModelConfig, ServerConfig
from mlxserve.engine.client import AsyncEngine
from mlxserve.models import load_model
from server_process import free_port


def wait_for(url: str, status: int, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == status:
                return response
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered {status}"
        time.sleep(0.1)


def test_ready_is_503_until_the_model_is_loaded(tiny_model_path):
    gate = threading.Event()

    def gated_loader(config: ModelConfig):
        assert gate.wait(60)
        return load_model(config)

    engine = AsyncEngine(ModelConfig(model=tiny_model_path), EngineConfig(), loader=gated_loader)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(engine, ServerConfig()), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        loading = wait_for(f"{base}/ready", 503)
        assert loading.json()["error"]["code"] == "model_not_ready"
        assert httpx.get(f"{base}/health").json() == {"status": "loading"}
        models = httpx.get(f"{base}/v1/models")
        assert models.status_code == 503 and models.json()["error"]["message"]
        assert httpx.get(f"{base}/version").status_code == 200
        gate.set()
        assert wait_for(f"{base}/ready", 200).json()["status"] == "ready"
        assert httpx.get(f"{base}/health").json()["status"] == "ok"
        assert httpx.get(f"{base}/v1/models").json()["data"][0]["id"]
    finally:
        gate.set()
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()
