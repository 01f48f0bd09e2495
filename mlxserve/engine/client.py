"""The asyncio face of the engine: ``AsyncEngine``.

    engine = AsyncEngine(ModelConfig(model="smollm2-135m"), EngineConfig())
    await engine.start()                      # loads the model on the engine thread
    async for delta in engine.generate(req):  # EngineDelta objects; the last is finished
        ...
    await engine.shutdown()

``generate`` validates the request before anything runs (raises ``InvalidRequest`` /
``EngineOverloaded``). If the consumer stops iterating or is cancelled, the request is
aborted. Only plain Python objects cross to the engine thread; the deltas of one engine
step arrive in one hand-off per event loop (``_LoopHub``), not one wake-up per token, and
the deltas a consumer has not read yet reach it folded into one (``delivery.coalesce``).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import AsyncIterator

from mlxserve.config import EngineConfig, ModelConfig
from mlxserve.engine.core import EngineCore
from mlxserve.engine.delivery import coalesce
from mlxserve.engine.request import EngineDelta, GenerateRequest
from mlxserve.engine.stats import EngineStats
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
        self._hubs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

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

    async def clear_prefix_cache(self) -> int:
        """Drop the prefix cache's unlocked entries (on the engine thread); how many."""
        loop = asyncio.get_running_loop()
        dropped: asyncio.Future = loop.create_future()

        def done(count: int) -> None:
            loop.call_soon_threadsafe(lambda: dropped.done() or dropped.set_result(count))

        self._core.submit_clear_prefix_cache(done)
        return await dropped

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
        """Raise the typed error this request would get, without running it (a quick check
        from this thread; the engine thread decides: a request it refuses raises the same
        typed error, e.g. EngineOverloaded, on the stream's first iteration)."""
        if not self.ready:
            raise EngineOverloaded("the engine is not running")
        vocab = self.model.capabilities.vocab_size or None
        request.validate(vocab, self.max_model_len)
        self._core.scheduler.check_request(len(request.prompt_tokens), request.stop.max_tokens)
        self._core.specprefill.check(request)

    def generate(self, request: GenerateRequest) -> AsyncIterator[EngineDelta]:
        """Validate now (raising here), then stream the request's deltas."""
        self.check(request)
        return self._stream(request)

    async def _stream(self, request: GenerateRequest) -> AsyncIterator[EngineDelta]:
        sink = _DeltaSink(self._hub())
        self._core.submit_add(request, sink)
        finished = False
        first = True
        try:
            while not finished:
                # what arrived since the last read, folded: a consumer that fell behind
                # gets one delta carrying several tokens, not one per token
                for delta in coalesce(await sink.take()):
                    finished = delta.finished
                    if first and delta.refused is not None:  # refused on the engine side
                        raise delta.refused
                    first = False
                    yield delta
        finally:
            if not finished:
                self._core.submit_abort(request.request_id)

    def _hub(self) -> _LoopHub:
        """The hand-off point of the running event loop (one wake-up per engine step)."""
        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is None:
            hub = self._hubs[loop] = _LoopHub(loop)
        return hub

    def abort(self, request_id: str) -> None:
        self._core.submit_abort(request_id)


class _LoopHub:
    """Called on the engine thread with one step's ``(sink, delta)`` pairs for this loop:
    a single ``call_soon_threadsafe`` puts them all in their queues."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop

    def __call__(self, items: list) -> None:
        self.loop.call_soon_threadsafe(_dispatch, items)


def _dispatch(items: list) -> None:
    for sink, delta in items:
        sink.push(delta)


class _DeltaSink:
    """One request's sink: the deltas its consumer has not taken yet, reached through its
    loop's hub; ``take`` waits for at least one and returns them all."""

    __slots__ = ("hub", "pending", "waiter")

    def __init__(self, hub: _LoopHub):
        self.hub = hub
        self.pending: list[EngineDelta] = []
        self.waiter: asyncio.Future | None = None

    def __call__(self, delta: EngineDelta) -> None:  # a single delta, outside a step
        self.hub([(self, delta)])

    def push(self, delta: EngineDelta) -> None:
        """On the event loop's thread."""
        self.pending.append(delta)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[EngineDelta]:
        while not self.pending:
            self.waiter = self.hub.loop.create_future()
            await self.waiter
        taken, self.pending = self.pending, []
        return taken


__all__ = ["AsyncEngine", "EngineStats", "MlxserveError"]
