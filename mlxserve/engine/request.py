"""Plain records that cross the engine boundary. Pure Python: no MLX import.

``GenerateRequest`` goes in, ``EngineDelta`` objects come out. Validation that does not
need the model (ranges, types) lives in ``validate()`` here, so it runs before a request
ever reaches the engine thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mlxserve.errors import InvalidRequest

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_ABORT = "abort"
FINISH_ERROR = "error"
GREEDY_BELOW = 1e-5  # a temperature below this samples greedily
MAX_PROMPT_LOGPROBS = 20


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 (or below GREEDY_BELOW) = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    min_p: float = 0.0
    repetition_penalty: float = 1.0  # 1 = off (multiplicative, over prompt + output)
    presence_penalty: float = 0.0  # additive, over output tokens
    frequency_penalty: float = 0.0  # additive per occurrence, over output tokens
    logit_bias: dict[int, float] | None = None
    seed: int | None = None  # reproducible per request, whatever else is in the batch
    logprobs: bool = False
    top_logprobs: int = 0  # alternatives per position, 0..20

    @property
    def greedy(self) -> bool:
        """Temperatures below GREEDY_BELOW are greedy: logits / temperature would overflow
        float32 (1e-38 answered nothing but EOS), and above it they are greedy in effect."""
        return self.temperature < GREEDY_BELOW

    def validate(self, vocab_size: int | None = None) -> None:
        def bad(param: str, why: str) -> InvalidRequest:
            return InvalidRequest(f"'{param}' {why}", param=param)

        def finite(name: str, v: float) -> None:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise bad(name, "must be a finite number")

        for name in ("temperature", "top_p", "min_p", "repetition_penalty",
                     "presence_penalty", "frequency_penalty"):
            finite(name, getattr(self, name))
        if not 0.0 <= self.temperature <= 2.0:
            raise bad("temperature", "must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise bad("top_p", "must be in (0, 1]")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise bad("top_k", "must be an integer >= 0 (0 disables it)")
        if not 0.0 <= self.min_p <= 1.0:
            raise bad("min_p", "must be between 0 and 1")
        if not 0.0 < self.repetition_penalty <= 10.0:
            raise bad("repetition_penalty", "must be in (0, 10]")
        if not -2.0 <= self.presence_penalty <= 2.0:
            raise bad("presence_penalty", "must be between -2 and 2")
        if not -2.0 <= self.frequency_penalty <= 2.0:
            raise bad("frequency_penalty", "must be between -2 and 2")
        if not 0 <= self.top_logprobs <= 20:
            raise bad("top_logprobs", "must be between 0 and 20")
        if self.seed is not None and not isinstance(self.seed, int):
            raise bad("seed", "must be an integer")
        for tok, bias in (self.logit_bias or {}).items():
            if vocab_size is not None and not 0 <= int(tok) < vocab_size:
                raise bad("logit_bias", f"has token id {tok} outside the vocabulary")
            finite("logit_bias", bias)
            if not -100.0 <= bias <= 100.0:
                raise bad("logit_bias", "values must be between -100 and 100")


@dataclass(frozen=True)
class StopParams:
    max_tokens: int = 256
    stop: tuple[str, ...] = ()  # stop strings: never part of the output
    stop_token_ids: tuple[int, ...] = ()  # in addition to the model's EOS ids
    ignore_eos: bool = False

    def validate(self) -> None:
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool):
            raise InvalidRequest("'max_tokens' must be an integer", param="max_tokens")
        if self.max_tokens <= 0:
            raise InvalidRequest("'max_tokens' must be at least 1", param="max_tokens")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidRequest("'stop' entries must be non-empty strings", param="stop")


@dataclass(frozen=True)
class SpecPrefillOptions:
    """A request's SpecPrefill fields (vllm-mlx's names); None: the server's setting."""

    enabled: bool | None = None  # specprefill: true forces a sparse prefill, false: dense
    keep_pct: float | None = None  # specprefill_keep_pct: share of the prompt kept, (0, 1]

    def validate(self) -> None:
        k = self.keep_pct
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, float))
                              or not 0.0 < k <= 1.0):
            raise InvalidRequest("'specprefill_keep_pct' must be in (0, 1]",
                                 param="specprefill_keep_pct")


@dataclass
class MultimodalInputs:
    """What the vision front hands the runner for one request (filled by multimodal/).

    ``embeddings`` is an (L, hidden) array replacing the prompt's token embeddings, and
    ``position_ids`` a (3, L) array for M-RoPE families; both are MLX arrays created on
    the engine thread by ``encode`` (a callable run there). ``media_tokens`` counts the
    prompt tokens that stand for media (reported in usage), ``cache_key`` identifies the
    media content for prefix/embedding caches. ``key_tokens`` is what a prefix cache keys
    the request on: the prompt tokens with each media token replaced by an id of its
    item's content and place in it (negative, so never a real token), so the same image
    matches and a different one with the same placeholders never does.
    """

    encode: Any = None  # Callable[[model], tuple[embeddings, position_ids | None, extras]]
    media_tokens: int = 0
    cache_key: str = ""
    key_tokens: list[int] | None = None  # None: no prefix-cache key (the cache skips it)


@dataclass
class GenerateRequest:
    request_id: str
    prompt_tokens: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: StopParams = field(default_factory=StopParams)
    multimodal: MultimodalInputs | None = None
    # structured.GrammarConstraint (or None): its token masks are applied to this request's
    # logits; the engine thread advances it with every token the request emits.
    constraint: Any = None
    # Logprobs of the prompt tokens, with this many alternatives each (0..20); None: not
    # computed (the prefill then never builds logits for the prompt positions).
    prompt_logprobs: int | None = None
    specprefill: SpecPrefillOptions | None = None  # None: the server's SpecPrefill setting
    # Store this request's prompt in the prefix cache pinned (never evicted): warm prompts.
    pin_prefix: bool = False
    speculative: bool = True  # False: never speculate for this request (the API's opt-out)
    # Token ids whose text never reaches the output (the tokenizer's special tokens that no
    # parser of the server reads, as vLLM's skip_special_tokens); they still count as tokens.
    hidden_token_ids: frozenset[int] = frozenset()

    def validate(self, vocab_size: int | None = None, max_model_len: int | None = None) -> None:
        if not self.prompt_tokens:
            raise InvalidRequest("the prompt is empty", param="prompt")
        if self.specprefill is not None:
            self.specprefill.validate()
        k = self.prompt_logprobs
        if k is not None and (not isinstance(k, int) or isinstance(k, bool)
                              or not 0 <= k <= MAX_PROMPT_LOGPROBS):
            raise InvalidRequest(f"'prompt_logprobs' must be an integer between 0 and "
                                 f"{MAX_PROMPT_LOGPROBS}", param="prompt_logprobs")
        self.sampling.validate(vocab_size)
        self.stop.validate()
        if vocab_size is not None and any(
            not 0 <= t < vocab_size for t in self.prompt_tokens
        ):
            raise InvalidRequest("the prompt has token ids outside the vocabulary", param="prompt")
        if vocab_size is not None and any(
            not 0 <= t < vocab_size for t in self.stop.stop_token_ids
        ):
            raise InvalidRequest("'stop_token_ids' has ids outside the vocabulary",
                                 param="stop_token_ids")
        if max_model_len is not None:
            n = len(self.prompt_tokens)
            if n >= max_model_len:
                raise InvalidRequest(
                    f"the prompt has {n} tokens; this model's context length is {max_model_len}",
                    param="messages", code="context_length_exceeded",
                )
            if n + self.stop.max_tokens > max_model_len:
                raise InvalidRequest(
                    f"the prompt ({n} tokens) plus max_tokens ({self.stop.max_tokens}) exceeds "
                    f"this model's context length of {max_model_len}",
                    param="max_tokens", code="context_length_exceeded",
                )


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)  # (token id, logprob)
    rank: int | None = None  # of token_id among the vocabulary (1 = most likely), when known


@dataclass(slots=True)
class EngineDelta:
    """New output of one request since its previous delta.

    ``text`` is the detokenized text of ``token_ids`` with stop strings removed (it may lag
    the ids by a few tokens while a stop string could still be forming, or a multi-byte
    character is incomplete). The last delta has ``finish_reason`` set.
    """

    request_id: str
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    logprobs: list[TokenLogprob] | None = None
    # on the request's first delta, when it asked: one entry per prompt token (first None)
    prompt_logprobs: list[TokenLogprob | None] | None = None
    finish_reason: str | None = None  # stop | length | abort | error
    stop_reason: str | int | None = None  # the stop string or token id that matched
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    prefilled_tokens: int | None = None  # a sparse prefill's kept tokens (None: dense)
    error: str | None = None  # set with finish_reason == "error"
    # the typed error (an MlxserveError) that refused the request before it ran: the
    # client raises it, so an engine-side refusal (a full queue) is a 503, not a stream
    refused: Exception | None = None
    queue_time_s: float | None = None  # on the first delta: seconds it waited to be scheduled

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None
