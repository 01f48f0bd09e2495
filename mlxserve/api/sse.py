"""Server-sent events framing and the streaming response that carries them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse

from mlxserve.api.errors import error_body
from mlxserve.errors import MlxserveError

ErrorEvents = Callable[[MlxserveError], list[str]]
T = TypeVar("T")


def _json(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(',', ':'))


def sse_data(body: Any) -> str:
    return f"data: {_json(body)}\n\n"


def sse_event(name: str, body: Any) -> str:
    """A named event (Anthropic and the Responses API name each event)."""
    return f"event: {name}\ndata: {_json(body)}\n\n"


async def encoded_events(encoder: Any, deltas: AsyncIterator[Any]) -> AsyncIterator[dict]:
    """The events of an event encoder (Anthropic, Responses): ``start()``, then
    ``feed(delta)`` for each MessageDelta."""
    for event in encoder.start():
        yield event
    async for delta in deltas:
        for event in encoder.feed(delta):
            yield event


async def with_pings(items: AsyncIterator[T], interval_s: float, ping: T) -> AsyncIterator[T]:
    """``items``, with ``ping`` put in whenever none came for ``interval_s`` (a queued
    request, a long prefill), so the client and proxies see the connection alive."""
    pending: asyncio.Future | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({pending}, timeout=interval_s)
            if not done:
                yield ping
                continue
            finished, pending = pending, None
            try:
                item = finished.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await items.aclose()


async def named_sse(events: AsyncIterator[dict]) -> AsyncIterator[str]:
    """Event dicts as SSE events named by their ``type``."""
    async for event in events:
        yield sse_event(event["type"], event)


def sse_done() -> str:
    return "data: [DONE]\n\n"


def openai_error_events(e: MlxserveError) -> list[str]:
    return [sse_data(error_body(e.status, e.message, e.param, e.code)), sse_done()]


async def _with_error_event(events: AsyncIterator[str], error_events: ErrorEvents
                            ) -> AsyncIterator[str]:
    """Once the 200 is sent, a failure can only be told as an error event."""
    try:
        async for event in events:
            yield event
    except MlxserveError as e:
        for event in error_events(e):
            yield event
    finally:
        await events.aclose()


def sse_response(events: AsyncIterator[str], error_events: ErrorEvents = openai_error_events
                 ) -> StreamingResponse:
    return StreamingResponse(_with_error_event(events, error_events),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
