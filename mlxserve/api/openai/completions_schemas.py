"""POST /v1/completions request body."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from mlxserve.api.openai.prompt_logprobs_encode import PromptLogprobsAsked
from mlxserve.api.openai.sampling_fields import SamplingFields
from mlxserve.errors import InvalidRequest
from mlxserve.serving.chat_input import CompletionInput

MAX_LEGACY_LOGPROBS = 20


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = False
    logprobs: int | None = None
    suffix: str | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, value: Any) -> Any:
        def token_ids(v: Any) -> bool:
            return isinstance(v, list) and all(
                isinstance(t, int) and not isinstance(t, bool) for t in v)

        if isinstance(value, str) or token_ids(value) or (isinstance(value, list) and (
                all(isinstance(p, str) for p in value) or all(token_ids(p) for p in value))):
            return value
        raise ValueError("must be a string, an array of strings, an array of token ids or "
                         "an array of token-id arrays")

    def _prompts(self) -> list[str | list[int]]:
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if not prompt:
            raise InvalidRequest("'prompt' must not be empty", param="prompt")
        if all(isinstance(p, int) for p in prompt):
            return [list(prompt)]
        for p in prompt:
            if isinstance(p, list) and not p:
                raise InvalidRequest("'prompt' has an empty token list", param="prompt")
        return list(prompt)

    def prompt_logprobs_asked(self) -> PromptLogprobsAsked:
        echo_top = self.logprobs if self.echo and self.logprobs is not None else None
        return PromptLogprobsAsked(echo_top, self.prompt_logprobs)

    def to_completion_input(self) -> CompletionInput:
        if self.suffix:
            raise InvalidRequest("'suffix' is not supported", param="suffix")
        logprobs = self.logprobs
        if logprobs is not None and not 0 <= logprobs <= MAX_LEGACY_LOGPROBS:
            raise InvalidRequest(f"'logprobs' must be between 0 and {MAX_LEGACY_LOGPROBS}",
                                 param="logprobs")
        options = self.to_options(self.max_tokens if self.max_tokens is not None else 16,
                                  logprobs is not None, logprobs or 0)
        if self.echo and logprobs is not None:  # the echoed prompt carries its logprobs
            options.prompt_logprobs = max(options.prompt_logprobs or 0, logprobs)
        return CompletionInput(prompts=self._prompts(), options=options,
                               echo=bool(self.echo), n=1 if self.n is None else self.n)
