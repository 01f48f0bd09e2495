"""What a request did, for the metrics and the access log. Pure Python.

- ``ChoiceRecord``: one engine request (one choice): its timings, token counts and how it
  ended. ``GenerationService`` fills it from the engine's deltas and hands it to a
  ``RequestObserver`` (the Prometheus metrics implement one).
- ``HttpTelemetry``: one HTTP request, summed over its choices. The access-log middleware
  opens one per request in ``current_http`` (a context variable, so the service finds it
  without being passed it) and writes the log line from it when the response is done.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from typing import Protocol

# How a choice ended, besides the finish reasons the client sees (stop, length, tool_calls).
OUTCOME_ERROR = "error"
OUTCOME_ABORT = "abort"  # the server aborted it (shutdown)
OUTCOME_TIMEOUT = "timeout"  # --request-timeout or the request's `timeout` field
OUTCOME_CANCELLED = "cancelled"  # the client went away


@dataclass
class ChoiceRecord:
    arrival: float  # time.monotonic() when the HTTP request arrived
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_at: float | None = None
    last_token_at: float | None = None
    finished_at: float | None = None
    queue_time_s: float | None = None  # from the engine, when it reports it
    outcome: str = OUTCOME_CANCELLED

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.arrival

    @property
    def e2e_s(self) -> float:
        return (self.finished_at or time.monotonic()) - self.arrival

    @property
    def succeeded(self) -> bool:
        return self.outcome not in (OUTCOME_ERROR, OUTCOME_ABORT, OUTCOME_TIMEOUT,
                                    OUTCOME_CANCELLED)


class RequestObserver(Protocol):
    def on_tokens(self, record: ChoiceRecord, gap_s: float | None, count: int) -> None:
        """``count`` new tokens; ``gap_s`` since the previous ones (None for the first)."""

    def on_finish(self, record: ChoiceRecord) -> None:
        ...


@dataclass
class HttpTelemetry:
    request_id: str
    started: float  # time.monotonic()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_at: float | None = None
    prompt_text: str | None = None  # logged only with --log-prompts

    def add_prompt(self, tokens: int, text: str) -> None:
        self.prompt_tokens += tokens
        self.prompt_text = text if self.prompt_text is None else self.prompt_text + "\n" + text

    def add_tokens(self, count: int, now: float) -> None:
        self.completion_tokens += count
        if self.first_token_at is None:
            self.first_token_at = now


current_http: contextvars.ContextVar[HttpTelemetry | None] = contextvars.ContextVar(
    "mlxserve_http_telemetry", default=None)


def arrival_time() -> float:
    """When the current HTTP request arrived (now, outside one)."""
    http = current_http.get()
    return http.started if http is not None else time.monotonic()


def record_tokens(record: ChoiceRecord, count: int, observer: RequestObserver | None
                  ) -> None:
    """Book ``count`` new tokens of ``record`` (and of the current HTTP request)."""
    now = time.monotonic()
    gap = None if record.last_token_at is None else now - record.last_token_at
    if record.first_token_at is None:
        record.first_token_at = now
    record.last_token_at = now
    record.completion_tokens += count
    http = current_http.get()
    if http is not None:
        http.add_tokens(count, now)
    if observer is not None:
        observer.on_tokens(record, gap, count)


def record_finish(record: ChoiceRecord, outcome: str, observer: RequestObserver | None
                  ) -> None:
    record.outcome = outcome
    record.finished_at = time.monotonic()
    if observer is not None:
        observer.on_finish(record)
