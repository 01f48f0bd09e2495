"""Server-sent events framing and the streaming response that carries them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from mlxserve.api.errors import error_body
from mlxserve.errors import MlxserveError


def sse_data(body: Any) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"


def sse_done() -> str:
    return "data: [DONE]\n\n"


async def _with_error_event(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """Once the 200 is sent, a failure can only be told as an error event."""
    try:
        async for event in events:
            yield event
    except MlxserveError as e:
        yield sse_data(error_body(e.status, e.message, e.param, e.code))
        yield sse_done()
    finally:
        await events.aclose()


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(_with_error_event(events), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
