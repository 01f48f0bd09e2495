"""Parsers by name, with ``auto`` detection from the chat template and the vocabulary.

Tables map a name to ``"module:Class"``; a parser module is imported only when a parser
of that name is made.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection

from .base import ReasoningParser, ToolParser

_PACKAGE = "mlxserve.parsers"

REASONING_PARSERS: dict[str, str] = {
    "qwen3": "reasoning.think_tags:Qwen3ReasoningParser",
    "deepseek_r1": "reasoning.think_tags:DeepSeekR1ReasoningParser",
    "gpt_oss": "reasoning.gpt_oss:GptOssReasoningParser",
    "harmony": "reasoning.gpt_oss:GptOssReasoningParser",
    "generic": "reasoning.think_tags:GenericReasoningParser",
    "magistral": "reasoning.think_tags:MagistralReasoningParser",
}

TOOL_PARSERS: dict[str, str] = {
    "hermes": "tools.hermes:HermesToolParser",
    "qwen2_5": "tools.hermes:Qwen25ToolParser",
    "qwen3_coder": "tools.qwen3_coder:Qwen3CoderToolParser",
    "llama3_json": "tools.llama3_json:Llama3JsonToolParser",
    "mistral": "tools.mistral:MistralToolParser",
    "deepseek_v3": "tools.deepseek:DeepSeekV3ToolParser",
    "deepseek_r1": "tools.deepseek:DeepSeekV3ToolParser",
    "deepseek_v31": "tools.deepseek:DeepSeekV3ToolParser",
    "pythonic": "tools.pythonic:PythonicToolParser",
    "gpt_oss": "tools.gpt_oss:GptOssToolParser",
    "harmony": "tools.gpt_oss:GptOssToolParser",
    "glm45": "tools.glm45:Glm45ToolParser",
}


def reasoning_parser_names() -> list[str]:
    return sorted(REASONING_PARSERS)


def tool_parser_names() -> list[str]:
    return sorted(TOOL_PARSERS)


def _load(table: dict[str, str], name: str, kind: str) -> type:
    target = table.get(name)
    if target is None:
        valid = ", ".join(sorted(table))
        raise ValueError(f"unknown {kind} parser {name!r}; valid names: {valid}")
    module_name, class_name = target.split(":")
    module = importlib.import_module(f"{_PACKAGE}.{module_name}")
    return getattr(module, class_name)


def reasoning_parser_class(name: str) -> type[ReasoningParser]:
    """The class for ``name``; ValueError listing the valid names when unknown (use at
    start-up to fail early)."""
    return _load(REASONING_PARSERS, name, "reasoning")


def tool_parser_class(name: str) -> type[ToolParser]:
    return _load(TOOL_PARSERS, name, "tool-call")


def make_reasoning_parser(name: str, *, prompt_opens_reasoning: bool = False) -> ReasoningParser:
    return reasoning_parser_class(name)(prompt_opens_reasoning=prompt_opens_reasoning)


def make_tool_parser(name: str, tools: list[dict] | None) -> ToolParser:
    return tool_parser_class(name)(tools)


def _has(marker: str, template: str, vocab: Collection[str]) -> bool:
    return marker in template or marker in vocab


def detect_tool_parser(chat_template: str | None, vocab: Collection[str]) -> str | None:
    """The tool parser a model's template and special tokens point to, or None."""
    template = chat_template or ""
    if _has("<|channel|>", template, vocab) and ("to=functions" in template or "<|call|>" in vocab):
        return "gpt_oss"
    if _has("<｜tool▁calls▁begin｜>", template, vocab):
        return "deepseek_v3"
    if _has("[TOOL_CALLS]", template, vocab):
        return "mistral"
    if _has("<tool_call>", template, vocab):
        if "<arg_key>" in template or "<arg_key>" in vocab:
            return "glm45"
        if "<function=" in template:
            return "qwen3_coder"
        return "hermes"
    if _has("<|python_start|>", template, vocab) or "[func_name1(" in template:
        return "pythonic"
    if _has("<|python_tag|>", template, vocab):
        return "llama3_json"
    return None


def detect_reasoning_parser(chat_template: str | None, vocab: Collection[str]) -> str | None:
    """The reasoning parser a model's template and special tokens point to, or None."""
    template = chat_template or ""
    if _has("<|channel|>", template, vocab) and "analysis" in template:
        return "gpt_oss"
    if _has("<think>", template, vocab) or _has("</think>", template, vocab):
        deepseek = _has("<｜Assistant｜>", template, vocab) or _has("<｜end▁of▁sentence｜>", template, vocab)
        return "deepseek_r1" if deepseek else "qwen3"
    if _has("[THINK]", template, vocab):
        return "magistral"
    return None
