"""Handing deltas from the engine thread to their consumers, one batch per step.

A sink is a callable taking one ``EngineDelta``. A sink with a ``hub`` attribute (the
asyncio client's: one hub per event loop) is not called per delta: the engine collects a
step's deltas and calls ``hub(items)`` once with the list of ``(sink, delta)``, so a step
of 128 rows costs one thread-safe wake-up of the event loop, not 128.

On the consumer's side, ``coalesce`` folds the deltas a consumer has not read yet into
one (several tokens' ids, text and logprobs), so a consumer that falls behind the engine
reads, encodes and sends one chunk per read, not one per token.
"""

from __future__ import annotations

import logging
from typing import Callable

from mlxserve.engine.request import FINISH_ABORT, FINISH_ERROR, EngineDelta
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
        key = id(hub)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = (hub, [])
        batch[1].append((sink, delta))
        if on_gone is not None:
            self._gone[key] = on_gone

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


def coalesce(deltas: list[EngineDelta]) -> list[EngineDelta]:
    """Consecutive deltas of one request folded into one: token ids, text and logprobs
    joined in order, the finish and usage of the last, the prompt logprobs and queue time
    of the first that has them. An error or abort (or a refusal) stays a delta of its own,
    after the folded output before it, so the text already produced is still delivered."""
    if len(deltas) < 2:
        return deltas
    out: list[EngineDelta] = []
    run: list[EngineDelta] = []
    for delta in deltas:
        if delta.error is not None or delta.refused is not None or delta.finish_reason in (
                FINISH_ERROR, FINISH_ABORT):
            if run:
                out.append(_fold(run))
                run = []
            out.append(delta)
        else:
            run.append(delta)
    if run:
        out.append(_fold(run))
    return out


def _fold(run: list[EngineDelta]) -> EngineDelta:
    if len(run) == 1:
        return run[0]
    last = run[-1]
    logprobs = [lp for d in run if d.logprobs is not None for lp in d.logprobs]
    return EngineDelta(
        last.request_id, [t for d in run for t in d.token_ids], "".join(d.text for d in run),
        logprobs if any(d.logprobs is not None for d in run) else None,
        next((d.prompt_logprobs for d in run if d.prompt_logprobs is not None), None),
        last.finish_reason, last.stop_reason, last.prompt_tokens, last.completion_tokens,
        last.cached_tokens, prefilled_tokens=last.prefilled_tokens,
        queue_time_s=next((d.queue_time_s for d in run if d.queue_time_s is not None), None))
