"""Handing deltas from the engine thread to their consumers, one batch per step.

A sink is a callable taking one ``EngineDelta``. A sink with a ``hub`` attribute (the
asyncio client's: one hub per event loop) is not called per delta: the engine collects a
step's deltas and calls ``hub(items)`` once with the list of ``(sink, delta)``, so a step
of 128 rows costs one thread-safe wake-up of the event loop, not 128.
"""

from __future__ import annotations

import logging
from typing import Callable

from mlxserve.engine.request import FINISH_ERROR, EngineDelta
from mlxserve.errors import MlxserveError

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self) -> None:
        self._batches: dict[int, tuple[Callable, list]] = {}
        self._gone: dict[int, Callable[[str], None]] = {}

    def put(self, sink, delta: EngineDelta, on_gone: Callable[[str], None] | None = None
            ) -> None:
        """Queue ``delta`` for ``sink`` (plain sinks are called at once). ``on_gone``
        hears the request id of a delta whose consumer has gone away."""
        hub = getattr(sink, "hub", None)
        if hub is None:
            if not send(sink, delta) and on_gone is not None and not delta.finished:
                on_gone(delta.request_id)
            return
        self._batches.setdefault(id(hub), (hub, []))[1].append((sink, delta))
        if on_gone is not None:
            self._gone[id(hub)] = on_gone

    def flush(self) -> None:
        """Hand every hub its deltas of this step."""
        batches, self._batches = self._batches, {}
        gone, self._gone = self._gone, {}
        for key, (hub, items) in batches.items():
            try:
                hub(items)
            except Exception:  # e.g. RuntimeError: event loop is closed
                log.debug("dropped %d deltas: consumer gone", len(items))
                callback = gone.get(key)
                for _, delta in items:
                    if callback is not None and not delta.finished:
                        callback(delta.request_id)


def send(sink, delta: EngineDelta) -> bool:
    """Hand a delta to a plain sink; False when the consumer is gone (its loop closed)."""
    try:
        sink(delta)
        return True
    except Exception:
        log.debug("dropped a delta of request %s: consumer gone", delta.request_id)
        return False


def error_delta(request_id: str, error: Exception) -> EngineDelta:
    """The one delta of a refused request; it carries the typed error (EngineOverloaded:
    503, InvalidRequest: 400) so the client raises it before anything is streamed."""
    typed = error if isinstance(error, MlxserveError) else None
    return EngineDelta(request_id=request_id, finish_reason=FINISH_ERROR,
                       error=str(getattr(error, "message", error)), refused=typed)
