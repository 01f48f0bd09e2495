"""The engine's one host-side record of an admitted request. Pure Python: no MLX import.

Created when the scheduler admits the request (not at submit: a waiting request holds no
cache and no detokenizer), dropped when it finishes. It holds the host token history
(prompt and output ids), how many tokens the cache holds, the position delta (position -
tokens stored: non-zero after a sparse prefill or a prefix placed at another offset), the
media key (per-item content hashes, what a prefix cache keys media on) and the prefix-cache
locks the request holds; the scheduler's ``SeqState`` and the runner's device-side ``Row``
are its other two faces, under the same request id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from mlxserve.engine.request import EngineDelta, GenerateRequest

DeltaSink = Callable[[EngineDelta], None]


@dataclass
class Submitted:
    """A request as it waits for admission."""

    request: GenerateRequest
    sink: DeltaSink
    seed: int
    added_at: float = 0.0  # time.monotonic() when it reached the engine thread


@dataclass
class RequestState:
    request: GenerateRequest
    sink: DeltaSink
    output: Any  # engine.stops.OutputStream: detokenizer and stop checks
    seed: int
    output_ids: list[int] = field(default_factory=list)
    position_delta: int = 0
    locks: list = field(default_factory=list)  # prefix-cache entries held while it runs
    cached_tokens: int = 0  # prompt tokens a prefix-cache hit supplied (not prefilled)
    sparse: bool = False  # SpecPrefill: never stored in the prefix cache
    prefilled_tokens: int | None = None  # the sparse prefill's kept tokens, once scored
    uncovered_logprobs: list = field(default_factory=list)  # their text is not sent yet
    queue_time_s: float | None = None  # added → admitted (first prefill chunk scheduled)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def prompt_ids(self) -> list[int]:
        return self.request.prompt_tokens

    @property
    def media_key(self) -> str:
        media = self.request.multimodal
        return media.cache_key if media is not None else ""

    @property
    def completion_tokens(self) -> int:
        return len(self.output_ids)

    @property
    def tokens_computed(self) -> int:
        """Prompt + output tokens whose KV the cache holds (the newest output token's KV
        is written by the step that consumes it)."""
        return len(self.request.prompt_tokens) + max(0, len(self.output_ids) - 1)

    def commit(self, token_id: int) -> None:
        """One token accepted as output (a verify step commits each accepted token)."""
        self.output_ids.append(token_id)

    def covered_logprobs(self, logprob, covered: int) -> list | None:
        """The logprobs of the tokens whose text goes out now (None when not requested)."""
        if logprob is None:
            return None
        pending = self.uncovered_logprobs
        pending.append(logprob)
        out = pending[:covered]
        del pending[:covered]
        return out


def resumable(request: GenerateRequest) -> bool:
    """Whether a preempted request can resume by recomputing its prompt + output as a
    prompt: not with media (its embeddings cover the prompt only) or prompt logprobs
    (they would be computed twice)."""
    return request.multimodal is None and request.prompt_logprobs is None
