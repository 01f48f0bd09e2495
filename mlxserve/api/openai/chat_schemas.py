"""POST /v1/chat/completions request body."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from mlxserve.api.openai.sampling_fields import SamplingFields
from mlxserve.errors import InvalidRequest
from mlxserve.serving.chat_input import ChatInput


class ChatCompletionRequest(SamplingFields):
    messages: list[Any]
    max_completion_tokens: int | None = None
    logprobs: bool | None = False
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    video_fps: float | None = None  # frames sampled per second of video (server default)
    video_max_frames: int | None = None  # most frames sampled from one video

    @field_validator("messages")
    @classmethod
    def _messages_not_empty(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("must be a non-empty array")
        return value

    def to_chat_input(self) -> ChatInput:
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
        max_tokens = self.max_completion_tokens
        if max_tokens is None:
            max_tokens = self.max_tokens
        options = self.to_options(max_tokens, bool(self.logprobs), self.top_logprobs or 0)
        return ChatInput(
            messages=list(self.messages), options=options, tools=self.tools,
            tool_choice=self.tool_choice, parallel_tool_calls=self.parallel_tool_calls is not False,
            chat_template_kwargs=dict(self.chat_template_kwargs or {}),
            n=1 if self.n is None else self.n,
            video_fps=self.video_fps, video_max_frames=self.video_max_frames,
        )
