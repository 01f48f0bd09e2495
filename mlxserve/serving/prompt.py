"""Chat template application and prompt tokenization.

The template gets the normalized messages, the tools (OpenAI shape, which HF templates
take as is) and the template kwargs: the server default merged with the request's own.
"""

from __future__ import annotations

from typing import Any

from mlxserve.errors import InvalidRequest


def merge_template_kwargs(server_default: dict[str, Any], per_request: dict[str, Any] | None
                          ) -> dict[str, Any]:
    """The request's chat_template_kwargs override the server default key by key."""
    merged = dict(server_default)
    merged.update(per_request or {})
    reserved = {"messages", "tools", "add_generation_prompt", "tokenize", "chat_template"}
    clash = reserved.intersection(merged)
    if clash:
        raise InvalidRequest(f"chat_template_kwargs may not set {', '.join(sorted(clash))}",
                             param="chat_template_kwargs")
    return merged


def _has_template(tokenizer: Any, override: str | None) -> bool:
    return bool(override) or bool(getattr(tokenizer, "chat_template", None))


def render_chat_prompt(tokenizer: Any, messages: list[dict[str, Any]],
                       tools: list[dict[str, Any]] | None, template_kwargs: dict[str, Any],
                       chat_template: str | None = None) -> str:
    """The prompt text produced by the chat template (or ``chat_template`` when given)."""
    if not _has_template(tokenizer, chat_template):
        raise InvalidRequest("this model has no chat template; use /v1/completions or start "
                             "the server with --chat-template", param="messages")
    extra: dict[str, Any] = dict(template_kwargs)
    if chat_template:
        extra["chat_template"] = chat_template
    try:
        text = tokenizer.apply_chat_template(
            messages, tools=tools or None, add_generation_prompt=True, tokenize=False, **extra
        )
    except InvalidRequest:
        raise
    except Exception as e:  # jinja2 errors raised by the template itself (raise_exception)
        lines = str(e).splitlines()
        message = lines[0] if lines else type(e).__name__
        raise InvalidRequest(f"the chat template rejected the messages: {message}",
                             param="messages") from None
    if not isinstance(text, str):  # some tokenizers return a list for batch input
        text = text[0]
    return text


def encode_prompt_text(tokenizer: Any, text: str, *, add_special_tokens: bool,
                       param: str = "prompt") -> list[int]:
    """Token ids of ``text``. Templated prompts carry their own special tokens."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # valid JSON ("\ud800") that no tokenizer takes
        raise InvalidRequest("the text has a lone UTF-16 surrogate (e.g. \\ud800); send valid "
                             "Unicode", param=param) from None
    return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))


def decode_tokens(tokenizer: Any, token_ids: list[int]) -> str:
    return tokenizer.decode(token_ids)
