"""Neutral request records built by the protocol layers (OpenAI, Anthropic).

Values a client left out are ``None`` here; serving.params resolves every default in one
place, so both protocols behave the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlxserve.engine.request import SpecPrefillOptions
from mlxserve.structured.spec import StructuredOutput


@dataclass
class GenerationOptions:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[int, float] | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    structured: StructuredOutput | None = None  # the output must match this (a grammar)
    # True: max_tokens is a cap, lowered to what fits the context (Anthropic clients send
    # far more than a local model holds); False: a prompt + max_tokens over it is a 400.
    clamp_max_tokens: bool = False
    prompt_logprobs: int | None = None  # logprobs of the prompt tokens, k alternatives each
    timeout: float | None = None  # seconds for the whole request; None: the server's
    specprefill: SpecPrefillOptions | None = None  # SpecPrefill fields; None: the server's
    speculative: bool = True  # False: this request never speculates (`"speculative": false`)
    skip_special_tokens: bool = True  # False: the tokenizer's special tokens stay in the text


@dataclass
class ChatInput:
    """A chat request: messages in OpenAI's shape (dicts), tools in OpenAI's shape."""

    messages: list[dict[str, Any]]
    options: GenerationOptions = field(default_factory=GenerationOptions)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True  # False: at most one call in the answer
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    n: int = 1
    video_fps: float | None = None  # None: the server default (MediaConfig)
    video_max_frames: int | None = None
    # Reasoning switches, applied where the chat template has them (enable_thinking,
    # reasoning_effort); None leaves the template's default. chat_template_kwargs win.
    thinking: bool | None = None
    reasoning_effort: str | None = None
    # generated tokens after which open reasoning is closed (serving/thinking_budget.py)
    thinking_budget_tokens: int | None = None


@dataclass
class CompletionInput:
    """A raw-text completion request: one or more prompts, each text or token ids."""

    prompts: list[str | list[int]]
    options: GenerationOptions = field(default_factory=GenerationOptions)
    echo: bool = False
    n: int = 1

    @property
    def score_only(self) -> bool:
        """``max_tokens: 0``: score the (echoed) prompt, generate nothing."""
        return self.options.max_tokens == 0
