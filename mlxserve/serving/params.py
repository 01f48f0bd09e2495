"""API field values → SamplingParams / StopParams. Every default is decided here."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mlxserve.engine.request import SamplingParams, StopParams
from mlxserve.errors import InvalidRequest
from mlxserve.serving.chat_input import GenerationOptions

DEFAULT_TEMPERATURE = 1.0


@dataclass(frozen=True)
class ContextLimits:
    context_length: int  # the model's context (or --max-model-len)
    max_tokens_cap: int | None = None  # server bound on a default max_tokens


def _or(value, default):
    return default if value is None else value


API_DEFAULTS = dict(temperature=DEFAULT_TEMPERATURE, top_p=1.0, top_k=0, min_p=0.0,
                    repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0)


def resolve_sampling(options: GenerationOptions, defaults: dict | None = None
                     ) -> SamplingParams:
    """A request's sampling: its own fields, else ``defaults`` (the server's: the model's
    generation_config.json and --override-generation-config), else the API's."""
    base = {**API_DEFAULTS, **(defaults or {})}
    params = SamplingParams(
        temperature=_or(options.temperature, base["temperature"]),
        top_p=_or(options.top_p, base["top_p"]),
        top_k=_or(options.top_k, base["top_k"]),
        min_p=_or(options.min_p, base["min_p"]),
        repetition_penalty=_or(options.repetition_penalty, base["repetition_penalty"]),
        presence_penalty=_or(options.presence_penalty, base["presence_penalty"]),
        frequency_penalty=_or(options.frequency_penalty, base["frequency_penalty"]),
        logit_bias=options.logit_bias or None,
        seed=options.seed,
        logprobs=options.logprobs,
        top_logprobs=options.top_logprobs,
    )
    params.validate()
    return params


def choice_sampling(sampling: SamplingParams, index: int) -> SamplingParams:
    """Sampling for choice ``index`` of an ``n > 1`` request: a given seed becomes seed +
    index (as vLLM does), so the choices differ and the request stays reproducible."""
    if sampling.seed is None or index == 0:
        return sampling
    return replace(sampling, seed=sampling.seed + index)


def default_max_tokens(prompt_len: int, limits: ContextLimits) -> int:
    """What is left of the context, bounded by the server's cap; at least 1."""
    remaining = limits.context_length - prompt_len
    if limits.max_tokens_cap is not None:
        remaining = min(remaining, limits.max_tokens_cap)
    return max(1, remaining)


def resolve_stop(options: GenerationOptions, prompt_len: int, limits: ContextLimits) -> StopParams:
    max_tokens = options.max_tokens
    if max_tokens is None:
        max_tokens = default_max_tokens(prompt_len, limits)
    elif options.clamp_max_tokens and max_tokens > 0:
        max_tokens = min(max_tokens, default_max_tokens(prompt_len, limits))
    params = StopParams(
        max_tokens=max_tokens,
        stop=tuple(options.stop),
        stop_token_ids=tuple(options.stop_token_ids),
        ignore_eos=options.ignore_eos,
    )
    params.validate()
    return params


def check_n(n: int, max_n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= max_n:
        raise InvalidRequest(f"'n' must be an integer between 1 and {max_n}", param="n")
