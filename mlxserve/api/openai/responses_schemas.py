"""POST /v1/responses request body. Fields that cannot apply here (include, encrypted
reasoning, prompt_cache_key, client_metadata, truncation, service_tier, ...) are accepted
and ignored; wrong types are 400s."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from mlxserve.api.openai.responses_input import (
    ResponseTools, input_items, items_to_messages, response_tool_choice, response_tools,
)
from mlxserve.errors import InvalidRequest
from mlxserve.serving.chat_input import ChatInput, GenerationOptions
from mlxserve.structured.spec import JSON_OBJECT, JSON_SCHEMA, StructuredOutput

EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
NO_REASONING = ("none", "minimal")


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    input: Any  # a string or an array of items (checked by input_items)
    instructions: str | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None  # checked by response_tool_choice
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool | None = False
    store: bool | None = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    def items(self) -> list[dict]:
        """This request's own input items."""
        return input_items(self.input)

    def structured_output(self) -> StructuredOutput | None:
        """``text.format``: text, json_object, or json_schema with a ``schema``."""
        spec = (self.text or {}).get("format") or {"type": "text"}
        param = "text.format"
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind == "text":
            return None
        if kind == JSON_OBJECT:
            return StructuredOutput(JSON_OBJECT, param=param)
        if kind == JSON_SCHEMA and isinstance(spec.get("schema"), dict):
            return StructuredOutput(JSON_SCHEMA, schema=spec["schema"], name=spec.get("name"),
                                    param=param)
        raise InvalidRequest("text.format must be {'type': 'text'}, {'type': 'json_object'} "
                             "or {'type': 'json_schema', 'name': ..., 'schema': {...}}",
                             param=param)

    def _reasoning(self) -> tuple[bool | None, str | None]:
        effort = (self.reasoning or {}).get("effort")
        if effort is None:
            return None, None
        if effort in NO_REASONING:
            return False, None
        if effort not in EFFORTS:
            raise InvalidRequest("reasoning.effort must be none, minimal, low, medium, high "
                                 "or xhigh", param="reasoning.effort")
        return None, EFFORTS[effort]

    def tool_set(self) -> ResponseTools:
        return response_tools(self.tools)

    def to_chat_input(self, conversation: list[dict], tools: ResponseTools) -> ChatInput:
        """``conversation``: the earlier items (previous_response_id) and this input."""
        messages = items_to_messages(conversation)
        if self.instructions:
            messages.insert(0, {"role": "system", "content": self.instructions})
        thinking, effort = self._reasoning()
        if self.max_output_tokens is not None and self.max_output_tokens < 1:
            raise InvalidRequest("'max_output_tokens' must be at least 1",
                                 param="max_output_tokens")
        options = GenerationOptions(max_tokens=self.max_output_tokens,
                                    temperature=self.temperature, top_p=self.top_p,
                                    structured=self.structured_output())
        return ChatInput(messages=messages, options=options, tools=tools.tools,
                         tool_choice=response_tool_choice(self.tool_choice),
                         parallel_tool_calls=self.parallel_tool_calls is not False,
                         thinking=thinking, reasoning_effort=effort)
