"""Request fields shared by chat and completions, and their conversion to the neutral
GenerationOptions. Unknown fields are ignored (as OpenAI does); wrong types are 400s."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from mlxserve.api.openai.structured_fields import StructuredFields
from mlxserve.engine.request import MAX_PROMPT_LOGPROBS, SpecPrefillOptions
from mlxserve.errors import InvalidRequest
from mlxserve.serving.chat_input import GenerationOptions


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool | None = False


class SamplingFields(StructuredFields):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool | None = False
    skip_special_tokens: bool | None = True  # vLLM's: special tokens out of the text
    n: int | None = 1
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: Any = None  # accepted and ignored
    prompt_logprobs: int | None = None  # vLLM's field: logprobs of the prompt tokens
    timeout: float | None = None  # seconds for the whole request (bounded by the server's)
    specprefill: bool | None = None  # vllm-mlx's: force (true) or skip (false) SpecPrefill
    specprefill_keep_pct: float | None = None  # its keep fraction, (0, 1]
    speculative: bool | None = None  # false: no speculative decoding for this request

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def _logit_bias(self) -> dict[int, float] | None:
        if not self.logit_bias:
            return None
        try:
            return {int(token): bias for token, bias in self.logit_bias.items()}
        except ValueError:
            raise InvalidRequest("'logit_bias' keys must be token ids", param="logit_bias") from None

    def _stop(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def checked_prompt_logprobs(self) -> int | None:
        k = self.prompt_logprobs
        if k is None:
            return None
        if not 0 <= k <= MAX_PROMPT_LOGPROBS:
            raise InvalidRequest(f"'prompt_logprobs' must be between 0 and {MAX_PROMPT_LOGPROBS}",
                                 param="prompt_logprobs")
        if self.stream:  # as vLLM
            raise InvalidRequest("'prompt_logprobs' is not available with 'stream': true",
                                 param="prompt_logprobs")
        return k

    def to_options(self, max_tokens: int | None, logprobs: bool, top_logprobs: int
                   ) -> GenerationOptions:
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest("'stream_options' is only allowed when 'stream' is true",
                                 param="stream_options")
        return GenerationOptions(
            max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p,
            top_k=self.top_k, min_p=self.min_p, presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            repetition_penalty=self.repetition_penalty, logit_bias=self._logit_bias(),
            seed=self.seed, stop=self._stop(), stop_token_ids=tuple(self.stop_token_ids or ()),
            ignore_eos=bool(self.ignore_eos), logprobs=logprobs, top_logprobs=top_logprobs,
            structured=self.structured_output(),
            prompt_logprobs=self.checked_prompt_logprobs(), timeout=self.timeout,
            specprefill=self._specprefill(),
            speculative=self.speculative is not False,
            skip_special_tokens=self.skip_special_tokens is not False,
        )

    def _specprefill(self) -> SpecPrefillOptions | None:
        if self.specprefill is None and self.specprefill_keep_pct is None:
            return None
        options = SpecPrefillOptions(self.specprefill, self.specprefill_keep_pct)
        options.validate()
        return options
