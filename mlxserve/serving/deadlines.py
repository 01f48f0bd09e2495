"""Request deadlines: ``--request-timeout`` and a request's own ``timeout`` field.

The deadline counts from the HTTP request's arrival; the shorter of the two wins. Past it
the request's stream raises ``RequestTimedOut`` (a 408 before the first byte, an error
event after) and the service aborts the engine request, so nothing keeps running for it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from mlxserve.errors import InvalidRequest, RequestTimedOut


def request_deadline(timeout: Any, server_timeout_s: float | None, arrival: float
                     ) -> float | None:
    """The time.monotonic() deadline of a request, or None when it has none."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(
            timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0):
        raise InvalidRequest("'timeout' must be a positive number of seconds", param="timeout")
    bounds = [t for t in (timeout, server_timeout_s) if t is not None]
    return arrival + min(bounds) if bounds else None


async def until_deadline(deltas: AsyncIterator[Any], deadline: float | None,
                         arrival: float) -> AsyncIterator[Any]:
    """``deltas``, failing with RequestTimedOut once ``deadline`` (monotonic) passes."""
    if deadline is None:
        async for delta in deltas:
            yield delta
        return
    while True:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            delta = await asyncio.wait_for(deltas.__anext__(), remaining)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise RequestTimedOut(f"the request did not finish within its timeout of "
                                  f"{deadline - arrival:g} s", param="timeout") from None
        yield delta
