"""The asyncio face of the engine: ``AsyncEngine``.

    engine = AsyncEngine(ModelConfig(model="smollm2-135m"), EngineConfig())
    await engine.start()                      # loads the model on the engine thread
    async for delta in engine.generate(req):  # EngineDelta objects; the last is finished
        ...
    await engine.shutdown()

``generate`` validates the request before anything runs (raises ``InvalidRequest`` /
``EngineOverloaded``). If the consumer stops iterating or is cancelled, the request is
aborted. Only plain Python objects cross to the engine thread.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from mlxserve.config import EngineConfig, ModelConfig
from mlxserve.engine.core import EngineCore, EngineStats
from mlxserve.engine.request import EngineDelta, GenerateRequest
from mlxserve.errors import EngineOverloaded, MlxserveError


class AsyncEngine:
    def __init__(self, model_config: ModelConfig, engine_config: EngineConfig | None = None,
                 *, loader=None):
        """``loader`` replaces ``mlxserve.models.load_model`` (tests, adapters)."""
        self.model_config = model_config
        self.engine_config = engine_config or EngineConfig()
        self._core = EngineCore(model_config, self.engine_config, loader)
        self._ready = False
        self._closed = False

    # ---- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future = loop.create_future()

        def on_ready(error: BaseException | None) -> None:
            def settle() -> None:
                if not ready.done():
                    ready.set_exception(error) if error else ready.set_result(None)
            loop.call_soon_threadsafe(settle)

        self._core.start(on_ready)
        await ready
        self._ready = True

    @property
    def ready(self) -> bool:
        return self._ready and not self._closed

    @property
    def model(self):
        """The LoadedModel (read-only use from asyncio: tokenizer, capabilities)."""
        return self._core.loaded

    @property
    def max_model_len(self) -> int:
        return self._core.max_model_len

    def stats(self) -> EngineStats:
        return self._core.stats

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._core.submit_shutdown()
        thread = self._core.thread
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)

    # ---- requests -----------------------------------------------------------------
    def check(self, request: GenerateRequest) -> None:
        """Raise the typed error this request would get, without running it."""
        if not self.ready:
            raise EngineOverloaded("the engine is not running")
        vocab = self.model.capabilities.vocab_size or None
        request.validate(vocab, self.max_model_len)
        self._core.scheduler.check_request(len(request.prompt_tokens), request.stop.max_tokens)

    def generate(self, request: GenerateRequest) -> AsyncIterator[EngineDelta]:
        """Validate now (raising here), then stream the request's deltas."""
        self.check(request)
        return self._stream(request)

    async def _stream(self, request: GenerateRequest) -> AsyncIterator[EngineDelta]:
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[EngineDelta] = asyncio.Queue()

        def sink(delta: EngineDelta) -> None:
            loop.call_soon_threadsafe(deltas.put_nowait, delta)

        self._core.submit_add(request, sink)
        finished = False
        try:
            while not finished:
                delta = await deltas.get()
                finished = delta.finished
                yield delta
        finally:
            if not finished:
                self._core.submit_abort(request.request_id)

    def abort(self, request_id: str) -> None:
        self._core.submit_abort(request_id)


__all__ = ["AsyncEngine", "EngineStats", "MlxserveError"]
