"""POST /v1/messages and /v1/messages/count_tokens request bodies (Anthropic's shape).

Unknown fields (context_management, betas, service_tier, ...) are accepted and ignored;
wrong types are 400s in Anthropic's error body (see api/errors.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from mlxserve.api.anthropic.convert import (
    anthropic_messages, anthropic_tool_choice, anthropic_tools, reasoning_switches,
)
from mlxserve.errors import InvalidRequest
from mlxserve.serving.chat_input import ChatInput, GenerationOptions


class CountTokensRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    messages: list[Any]
    system: Any = None  # a string or text blocks (checked in convert)
    tools: list[Any] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None

    def _check_output_format(self) -> None:
        if (self.output_config or {}).get("format") is not None:
            raise InvalidRequest("output_config.format (structured outputs) is not supported "
                                 "yet", param="output_config")

    def to_chat_input(self, options: GenerationOptions | None = None) -> ChatInput:
        self._check_output_format()
        thinking, effort = reasoning_switches(self.thinking, self.output_config)
        return ChatInput(
            messages=anthropic_messages(self.system, self.messages),
            options=options or GenerationOptions(),
            tools=anthropic_tools(self.tools), tool_choice=anthropic_tool_choice(self.tool_choice),
            parallel_tool_calls=not (self.tool_choice or {}).get("disable_parallel_tool_use"),
            thinking=thinking, reasoning_effort=effort,
        )


class MessagesRequest(CountTokensRequest):
    max_tokens: int  # required, as Anthropic requires; a cap clamped to what fits
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    metadata: dict[str, Any] | None = None  # accepted and ignored

    def _options(self) -> GenerationOptions:
        if self.max_tokens < 1:
            raise InvalidRequest("max_tokens: must be at least 1", param="max_tokens")
        stops = tuple(self.stop_sequences or ())
        if len(stops) > 16:
            raise InvalidRequest("stop_sequences: at most 16 are accepted",
                                 param="stop_sequences")
        return GenerationOptions(max_tokens=self.max_tokens, temperature=self.temperature,
                                 top_p=self.top_p, top_k=self.top_k, stop=stops,
                                 clamp_max_tokens=True)

    def to_chat_input(self, options: GenerationOptions | None = None) -> ChatInput:
        return super().to_chat_input(options or self._options())
