"""Warm prompts (`--warm-prompts FILE`, vllm-mlx's name): prompts prefilled at start-up
into the prefix cache and pinned there (never evicted, kept by DELETE /v1/cache).

The file is a JSON list; each entry is a list of chat messages (OpenAI's shape, rendered
with the model's chat template and the generation prompt, as /v1/chat/completions does)
or a string (a raw prompt, tokenized as /v1/completions does). A list of system messages
only gets an empty user turn after them (templates want one; what real requests share
with it is the system turn). A request that starts with the same tokens (the same system
prompt, say) prefills only the rest.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams
from mlxserve.errors import InvalidRequest, MlxserveError
from mlxserve.serving.chat_input import ChatInput

log = logging.getLogger("mlxserve.serving")

WarmPrompt = str | list[dict[str, Any]]


def parse_warm_prompts(text: str) -> tuple[WarmPrompt, ...]:
    """The entries of a warm-prompts file; ValueError saying what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e.msg} (line {e.lineno})") from None
    if not isinstance(value, list):
        raise ValueError("must be a JSON list of message lists or strings")
    for i, entry in enumerate(value):
        if isinstance(entry, str) and entry:
            continue
        if not (isinstance(entry, list) and entry
                and all(isinstance(m, dict) and "role" in m for m in entry)):
            raise ValueError(f"entry {i} must be a non-empty string or a non-empty list of "
                             "messages with a role")
    return tuple(value)


def read_warm_prompts(path: str) -> tuple[WarmPrompt, ...]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    return parse_warm_prompts(text)


async def prompt_ids(service: Any, entry: WarmPrompt) -> list[int]:
    if isinstance(entry, str):
        return service.tokenize(entry, add_special_tokens=True)
    messages = list(entry)
    if all(m.get("role") in ("system", "developer") for m in messages):
        messages.append({"role": "user", "content": ""})  # templates need a turn after it
    ids, _, multimodal, _ = await service.chat_prompt(ChatInput(messages=messages))
    if multimodal is not None:
        raise InvalidRequest("warm prompts are text only", param="messages")
    return ids


async def warm_prefix_cache(service: Any, engine: Any, entries: tuple) -> int:
    """Prefill each entry (one output token) and pin its prompt; how many were run. An
    entry the template rejects raises its InvalidRequest, naming the entry."""
    if entries and engine.stats().prefix_cache is None:
        log.warning("--warm-prompts ignored: the prefix cache is off for this model")
        return 0
    for i, entry in enumerate(entries):
        try:
            await _warm_one(service, engine, i, entry)
        except MlxserveError as e:
            raise InvalidRequest(f"warm prompt {i}: {e.message}") from None
    return len(entries)


async def _warm_one(service: Any, engine: Any, i: int, entry: WarmPrompt) -> None:
    ids = await prompt_ids(service, entry)
    request = GenerateRequest(f"warm-{i}", ids, SamplingParams(temperature=0.0),
                              StopParams(max_tokens=1, ignore_eos=True), pin_prefix=True)
    async for delta in engine.generate(request):
        if delta.error:
            raise InvalidRequest(delta.error)
    log.info("warm prompt %d: %d tokens prefilled and pinned", i, len(ids))
