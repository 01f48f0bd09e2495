"""POST /v1/messages and /v1/messages/count_tokens request bodies (Anthropic's shape).

Unknown fields (context_management, betas, service_tier, ...) are accepted and ignored;
wrong types are 400s in Anthropic's error body (see api/errors.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from mlxserve.api.anthropic.convert import (
    anthropic_messages, anthropic_tool_choice, anthropic_tools, reasoning_switches,
    thinking_budget,
)
from mlxserve.errors import InvalidRequest
from mlxserve.serving.chat_input import ChatInput, GenerationOptions
from mlxserve.structured.spec import JSON_SCHEMA, StructuredOutput


class CountTokensRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    messages: list[Any]
    system: Any = None  # a string or text blocks (checked in convert)
    tools: list[Any] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None

    def structured_output(self) -> StructuredOutput | None:
        """``output_config.format``: {"type": "json_schema", "schema": {...}}."""
        spec = (self.output_config or {}).get("format")
        if spec is None:
            return None
        param = "output_config.format"
        if not isinstance(spec, dict) or spec.get("type") != "json_schema" or not isinstance(
                spec.get("schema"), dict):
            raise InvalidRequest(f"{param} must be {{'type': 'json_schema', 'schema': {{...}}}}",
                                 param=param)
        return StructuredOutput(JSON_SCHEMA, schema=spec["schema"], param=param)

    def _max_tokens(self) -> int | None:
        return None  # count_tokens has none

    def to_chat_input(self, options: GenerationOptions | None = None) -> ChatInput:
        thinking, effort = reasoning_switches(self.thinking, self.output_config)
        budget = thinking_budget(self.thinking, self._max_tokens())
        options = options or GenerationOptions()
        options.structured = self.structured_output()
        return ChatInput(
            messages=anthropic_messages(self.system, self.messages),
            options=options,
            tools=anthropic_tools(self.tools), tool_choice=anthropic_tool_choice(self.tool_choice),
            parallel_tool_calls=not (self.tool_choice or {}).get("disable_parallel_tool_use"),
            thinking=thinking, reasoning_effort=effort, thinking_budget_tokens=budget,
        )


class MessagesRequest(CountTokensRequest):
    max_tokens: int  # required, as Anthropic requires; a cap clamped to what fits
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    metadata: dict[str, Any] | None = None  # accepted and ignored
    ignore_eos: bool = False  # an mlxserve extension, as on the OpenAI routes (benchmarks)

    def _max_tokens(self) -> int | None:
        return self.max_tokens

    def _options(self) -> GenerationOptions:
        if self.max_tokens < 1:
            raise InvalidRequest("max_tokens: must be at least 1", param="max_tokens")
        stops = tuple(self.stop_sequences or ())
        if len(stops) > 16:
            raise InvalidRequest("stop_sequences: at most 16 are accepted",
                                 param="stop_sequences")
        return GenerationOptions(max_tokens=self.max_tokens, temperature=self.temperature,
                                 top_p=self.top_p, top_k=self.top_k, stop=stops,
                                 clamp_max_tokens=True, ignore_eos=self.ignore_eos)

    def to_chat_input(self, options: GenerationOptions | None = None) -> ChatInput:
        return super().to_chat_input(options or self._options())
